//! Revoked token ids, shared by every replica that checks tokens.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use moka::Expiry;
use moka::sync::Cache;

/// The future a store operation returns. Boxed so the traits stay usable as `Arc<dyn ...>`; for
/// the in-memory stores it is ready at once.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A shared-state store could not answer. Checks that depend on it fail closed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store did not answer in time or could not be reached.
    #[error("state store unavailable: {0}")]
    Unavailable(String),
    /// The store answered with something this client cannot use.
    #[error("state store answered unexpectedly: {0}")]
    Protocol(String),
}

/// The reason a check that needs a store gives when the store cannot answer.
pub const STORE_UNAVAILABLE: crate::Reason = crate::Reason::new(
    "store.unavailable",
    "A required service is temporarily unavailable.",
);

/// The signal a fail-open check adds when its store could not answer.
pub const STORE_DEGRADED: &str = "store.degraded";

impl StoreError {
    /// The refusal for a request whose check needed the store: 503 with `Retry-After: 1` and
    /// reason `store.unavailable`, from `layer`.
    pub fn rejection(&self, layer: &'static str) -> crate::Rejection {
        crate::Rejection::new(
            crate::RejectionKind::Unavailable { retry_after: 1 },
            STORE_UNAVAILABLE,
        )
        .with_layer(layer)
    }
}

/// Revoked token ids (`jti`), checked on every request.
///
/// `revoke(jti, until)` records a revocation that must last at least until `until`, normally the
/// token's own expiry: after that the token is refused as expired anyway, so a store may forget it.
///
/// Implementations: [`MemoryRevocationStore`] here (one process); a Redis store in
/// `zerotrust-redis` for many replicas.
pub trait RevocationStore: Send + Sync + 'static {
    /// Whether `jti` is revoked.
    fn is_revoked<'a>(&'a self, jti: &'a str) -> StoreFuture<'a, bool>;
    /// Whether `jti` is revoked, if the store can tell without waiting (an in-memory store);
    /// `None` means "ask [`is_revoked`](Self::is_revoked)". Checked on every request before
    /// `is_revoked`, so a store that answers here spares the caller a boxed future. The default
    /// is `None`; an answer here must be the one `is_revoked` would give.
    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>> {
        let _ = jti;
        None
    }
    /// Revokes `jti` until `until`.
    fn revoke<'a>(&'a self, jti: &'a str, until: SystemTime) -> StoreFuture<'a, ()>;
}

/// Revocations held in this process, each forgotten when its `until` passes.
///
/// Bounded: at most `max_entries` revocations are held (default 1,000,000). Past that the store
/// evicts the least useful entries, so size it above the number of live revoked tokens.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::{Duration, SystemTime};
/// use zerotrust_core::{MemoryRevocationStore, RevocationStore};
///
/// let store = MemoryRevocationStore::new();
/// store.revoke("jti-1", SystemTime::now() + Duration::from_secs(60)).await.unwrap();
/// assert!(store.is_revoked("jti-1").await.unwrap());
/// assert!(!store.is_revoked("jti-2").await.unwrap());
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryRevocationStore {
    entries: Cache<Box<str>, SystemTime>,
    /// Set before the first revocation is stored (shared by clones, like the cache). Until then
    /// a lookup is one atomic load: most services revoke rarely, and a cache lookup costs a good
    /// share of what a verification spends beside the signature.
    holds_any: Arc<AtomicBool>,
}

impl std::fmt::Debug for MemoryRevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRevocationStore")
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

struct UntilExpiry;

impl Expiry<Box<str>, SystemTime> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &Box<str>,
        until: &SystemTime,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        Some(
            until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }

    fn expire_after_update(
        &self,
        _key: &Box<str>,
        until: &SystemTime,
        _now: std::time::Instant,
        _current: Option<Duration>,
    ) -> Option<Duration> {
        Some(
            until
                .duration_since(SystemTime::now())
                .unwrap_or(Duration::ZERO),
        )
    }
}

impl Default for MemoryRevocationStore {
    fn default() -> Self {
        Self::with_capacity(1_000_000)
    }
}

impl MemoryRevocationStore {
    /// A store holding up to 1,000,000 revocations.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding up to `max_entries` revocations.
    pub fn with_capacity(max_entries: u64) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(max_entries)
                .expire_after(UntilExpiry)
                .build(),
            holds_any: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether `jti` is revoked, without going through a future.
    pub fn contains(&self, jti: &str) -> bool {
        self.holds_any.load(Ordering::Acquire)
            && self
                .entries
                .get(jti)
                .is_some_and(|until| until > SystemTime::now())
    }

    /// Records a revocation at once.
    pub fn insert(&self, jti: &str, until: SystemTime) {
        self.holds_any.store(true, Ordering::Release);
        let until = match self.entries.get(jti) {
            Some(existing) if existing > until => existing,
            _ => until,
        };
        self.entries.insert(jti.into(), until);
    }
}

impl RevocationStore for MemoryRevocationStore {
    fn is_revoked<'a>(&'a self, jti: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(self.contains(jti))))
    }

    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>> {
        Some(Ok(self.contains(jti)))
    }

    fn revoke<'a>(&'a self, jti: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        self.insert(jti, until);
        Box::pin(std::future::ready(Ok(())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocation_is_forgotten_after_until() {
        let store = MemoryRevocationStore::new();
        store.insert("a", SystemTime::now() + Duration::from_millis(50));
        assert!(store.contains("a"));
        std::thread::sleep(Duration::from_millis(80));
        assert!(!store.contains("a"));
    }

    #[test]
    fn answers_at_once_what_the_future_answers() {
        let store = MemoryRevocationStore::new();
        store.insert("a", SystemTime::now() + Duration::from_secs(60));
        for jti in ["a", "b"] {
            let later = poll_once(store.is_revoked(jti));
            assert_eq!(store.is_revoked_now(jti).and_then(Result::ok), later.ok());
        }
    }

    /// Polls a future that is ready at once.
    fn poll_once<T>(fut: StoreFuture<'_, T>) -> Result<T, StoreError> {
        let mut fut = fut;
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(answer) => answer,
            std::task::Poll::Pending => Err(StoreError::Unavailable("pending".into())),
        }
    }

    #[test]
    fn a_shorter_revocation_never_shortens_a_longer_one() {
        let store = MemoryRevocationStore::new();
        store.insert("a", SystemTime::now() + Duration::from_secs(60));
        store.insert("a", SystemTime::now() - Duration::from_secs(1));
        assert!(store.contains("a"));
    }
}

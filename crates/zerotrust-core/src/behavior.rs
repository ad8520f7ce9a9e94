//! What each subject has been doing lately: failed requests, request rate, sensitive routes
//! touched, and lockouts. The decision layer turns it into signals for the next requests.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use moka::sync::Cache;

use crate::revocation::StoreFuture;

/// The windows the counters run over. Counters are fixed windows (aligned to multiples of their
/// length since the Unix epoch), as `INCR` + `EXPIRE` gives them in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BehaviorWindows {
    /// Failed requests (401/403) are counted over this window (default 5 minutes).
    pub failures: Duration,
    /// Requests are counted over this window for the burst signal (default 1 minute).
    pub requests: Duration,
    /// Distinct sensitive routes are counted over this window (default 10 minutes).
    pub sensitive_routes: Duration,
}

impl Default for BehaviorWindows {
    fn default() -> Self {
        Self {
            failures: Duration::from_secs(300),
            requests: Duration::from_secs(60),
            sensitive_routes: Duration::from_secs(600),
        }
    }
}

/// A subject's recent behaviour, counted in the current windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Behavior {
    /// Failed requests in the current failure window.
    pub failures: u32,
    /// Requests in the current request window, this one included.
    pub requests: u32,
    /// Distinct sensitive routes in the current window, this one included.
    pub sensitive_routes: u32,
    /// Locked out until then (seconds since the Unix epoch), if locked.
    pub locked_until: Option<i64>,
}

/// Per-subject behaviour, shared by every replica with a shared store.
///
/// Implementations: [`MemoryBehaviorStore`] here; a Redis store in `zerotrust-redis`. All pass
/// `zerotrust_testkit::behavior_store_tests!`.
pub trait BehaviorStore: Send + Sync + 'static {
    /// Counts a request of `subject` at `now` (seconds since the epoch), and `route` among its
    /// distinct sensitive routes when given; answers the counts with this request included.
    fn observe<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        route: Option<&'a str>,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, Behavior>;

    /// Counts a failed request of `subject` at `now`; answers the failures in the window,
    /// this one included.
    fn record_failure<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, u32>;

    /// Locks `subject` out until `until` (a later lock is never shortened).
    fn lock_out<'a>(&'a self, subject: &'a str, until: i64) -> StoreFuture<'a, ()>;
}

impl<B: BehaviorStore + ?Sized> BehaviorStore for Arc<B> {
    fn observe<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        route: Option<&'a str>,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, Behavior> {
        (**self).observe(subject, now, route, windows)
    }

    fn record_failure<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, u32> {
        (**self).record_failure(subject, now, windows)
    }

    fn lock_out<'a>(&'a self, subject: &'a str, until: i64) -> StoreFuture<'a, ()> {
        (**self).lock_out(subject, until)
    }
}

/// One fixed-window counter.
#[derive(Debug, Default)]
struct Window {
    start: i64,
    count: u32,
}

impl Window {
    /// Moves to the window containing `now`, resetting the count when it is a new one.
    fn roll(&mut self, now: i64, len: Duration) -> bool {
        let len = i64::try_from(len.as_secs().max(1)).unwrap_or(i64::MAX);
        let start = now - now.rem_euclid(len);
        if start != self.start {
            self.start = start;
            self.count = 0;
            true
        } else {
            false
        }
    }
}

#[derive(Debug, Default)]
struct SubjectState {
    failures: Window,
    requests: Window,
    routes_window: Window,
    routes: HashSet<Box<str>>,
    locked_until: Option<i64>,
}

/// At most this many distinct sensitive routes are remembered per subject and window.
const MAX_ROUTES: usize = 256;

/// Behaviour held in this process, bounded in subjects, each forgotten an hour after its last
/// request. Each subject's counters sit behind a small mutex held for a few additions, never
/// across an `.await`.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use zerotrust_core::{BehaviorStore, BehaviorWindows, MemoryBehaviorStore};
///
/// let store = MemoryBehaviorStore::new();
/// let w = BehaviorWindows::default();
/// store.record_failure("alice", 1_900_000_000, &w).await.unwrap();
/// let seen = store.observe("alice", 1_900_000_001, Some("/admin"), &w).await.unwrap();
/// assert_eq!((seen.failures, seen.requests, seen.sensitive_routes), (1, 1, 1));
/// # });
/// ```
#[derive(Clone)]
pub struct MemoryBehaviorStore {
    subjects: Cache<String, Arc<Mutex<SubjectState>>>,
}

impl std::fmt::Debug for MemoryBehaviorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBehaviorStore")
            .field("subjects", &self.subjects.entry_count())
            .finish()
    }
}

impl Default for MemoryBehaviorStore {
    fn default() -> Self {
        Self::with_capacity(1_000_000)
    }
}

impl MemoryBehaviorStore {
    /// Up to 1,000,000 subjects.
    pub fn new() -> Self {
        Self::default()
    }

    /// Up to `max_subjects` subjects.
    pub fn with_capacity(max_subjects: u64) -> Self {
        Self {
            subjects: Cache::builder()
                .max_capacity(max_subjects)
                .time_to_idle(Duration::from_secs(3600))
                .build(),
        }
    }

    fn with_state<T>(&self, subject: &str, f: impl FnOnce(&mut SubjectState) -> T) -> T {
        let slot = self
            .subjects
            .get_with_by_ref(subject, || Arc::new(Mutex::new(SubjectState::default())));
        // Counters stay consistent under a panic elsewhere (each update is a few plain writes).
        let mut state = slot.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut state)
    }

    /// [`BehaviorStore::observe`], at once.
    pub fn observe_now(
        &self,
        subject: &str,
        now: i64,
        route: Option<&str>,
        windows: &BehaviorWindows,
    ) -> Behavior {
        self.with_state(subject, |s| {
            s.requests.roll(now, windows.requests);
            s.requests.count = s.requests.count.saturating_add(1);
            if s.routes_window.roll(now, windows.sensitive_routes) {
                s.routes.clear();
            }
            if let Some(route) = route
                && s.routes.len() < MAX_ROUTES
                && !s.routes.contains(route)
            {
                s.routes.insert(route.into());
            }
            s.failures.roll(now, windows.failures);
            Behavior {
                failures: s.failures.count,
                requests: s.requests.count,
                sensitive_routes: u32::try_from(s.routes.len()).unwrap_or(u32::MAX),
                locked_until: s.locked_until.filter(|&until| until > now),
            }
        })
    }

    /// [`BehaviorStore::record_failure`], at once.
    pub fn record_failure_now(&self, subject: &str, now: i64, windows: &BehaviorWindows) -> u32 {
        self.with_state(subject, |s| {
            s.failures.roll(now, windows.failures);
            s.failures.count = s.failures.count.saturating_add(1);
            s.failures.count
        })
    }

    /// [`BehaviorStore::lock_out`], at once.
    pub fn lock_out_now(&self, subject: &str, until: i64) {
        self.with_state(subject, |s| {
            s.locked_until = Some(s.locked_until.map_or(until, |current| current.max(until)));
        });
    }
}

impl BehaviorStore for MemoryBehaviorStore {
    fn observe<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        route: Option<&'a str>,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, Behavior> {
        Box::pin(std::future::ready(Ok(
            self.observe_now(subject, now, route, windows)
        )))
    }

    fn record_failure<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, u32> {
        Box::pin(std::future::ready(Ok(
            self.record_failure_now(subject, now, windows)
        )))
    }

    fn lock_out<'a>(&'a self, subject: &'a str, until: i64) -> StoreFuture<'a, ()> {
        self.lock_out_now(subject, until);
        Box::pin(std::future::ready(Ok(())))
    }
}

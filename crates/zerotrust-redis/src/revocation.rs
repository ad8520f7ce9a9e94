//! [`RedisRevocationStore`]: revoked `jti`s in Redis, pushed to every replica, answered from a
//! local cache when it can.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant, SystemTime};

use redis::Script;
use zerotrust_core::{RevocationStore, StoreError, StoreFuture};

use crate::stores::{Cached, Shared};

/// Keeps the longer of the stored and the new revocation, then announces it to every replica.
/// KEYS[1] the revocation; ARGV: time to live (ms), events channel, event.
static REVOKE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local ttl = tonumber(ARGV[1])
local current = redis.call('PTTL', KEYS[1])
if current ~= -1 and current < ttl then
  redis.call('SET', KEYS[1], '1', 'PX', ttl)
end
redis.call('PUBLISH', ARGV[2], ARGV[3])
return 1
",
    )
});

/// Revoked token ids in Redis, shared by every replica.
///
/// - `revoke` stores the revocation with a time to live up to its `until` (a later, longer
///   revocation extends it; a shorter one never shortens it) and publishes it on the
///   deployment's events channel: every replica puts it into its local cache at once.
/// - `is_revoked_now` answers from the local cache: "revoked" until the revocation ends, "not
///   revoked" for a short time (default 500 ms) and only while the events feed is connected.
///   Otherwise `is_revoked` asks Redis (`PTTL`, one round trip) within the operation timeout.
///
/// Made by [`RedisStores::revocations`](crate::RedisStores::revocations).
#[derive(Clone)]
pub struct RedisRevocationStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisRevocationStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisRevocationStore")
            .finish_non_exhaustive()
    }
}

impl RedisRevocationStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The local answer, if there is one that may be used.
    fn local(&self, jti: &str) -> Option<bool> {
        match self.shared.revoked.get(jti)? {
            Cached::Revoked(until) if until > Instant::now() => Some(true),
            Cached::Revoked(_) => None,
            Cached::NotRevoked if self.shared.live() => Some(false),
            Cached::NotRevoked => None,
        }
    }

    async fn ask(&self, jti: &str) -> Result<bool, StoreError> {
        if let Some(answer) = self.local(jti) {
            self.shared.stats.revocation(true);
            return Ok(answer);
        }
        self.shared.stats.revocation(false);
        let epoch = self.shared.epoch();
        let key = self.shared.keys.revocation(jti);
        let pttl: i64 = self
            .shared
            .run("revocation check", |mut c| async move {
                redis::cmd("PTTL").arg(&key).query_async(&mut c).await
            })
            .await?;
        let revoked = pttl > 0 || pttl == -1;
        if pttl > 0 {
            let until = Instant::now() + Duration::from_millis(pttl.unsigned_abs());
            self.shared
                .revoked
                .insert(jti.into(), Cached::Revoked(until));
        } else if !revoked
            && self.shared.cache_not_revoked
            && self.shared.live()
            && self.shared.epoch() == epoch
        {
            // Never over a revocation announced meanwhile (inserted by the events feed).
            let _ = self
                .shared
                .revoked
                .entry_by_ref(jti)
                .or_insert(Cached::NotRevoked);
        }
        Ok(revoked)
    }

    async fn store(&self, jti: &str, until: SystemTime) -> Result<(), StoreError> {
        let Ok(left) = until.duration_since(SystemTime::now()) else {
            // Already over: the token is refused as expired anyway.
            return Ok(());
        };
        let ttl_ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
        let key = self.shared.keys.revocation(jti);
        let channel = self.shared.keys.events_channel();
        let event = format!("r {ttl_ms} {jti}");
        self.shared
            .run("revoke", |mut c| async move {
                REVOKE
                    .key(key)
                    .arg(ttl_ms)
                    .arg(channel)
                    .arg(event)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await?;
        // This replica knows at once, whatever the feed does.
        let local_until = Instant::now() + left;
        let keep = match self.shared.revoked.get(jti) {
            Some(Cached::Revoked(existing)) if existing > local_until => existing,
            _ => local_until,
        };
        self.shared
            .revoked
            .insert(jti.into(), Cached::Revoked(keep));
        Ok(())
    }
}

impl RevocationStore for RedisRevocationStore {
    fn is_revoked<'a>(&'a self, jti: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(self.ask(jti))
    }

    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>> {
        let answer = self.local(jti)?;
        self.shared.stats.revocation(true);
        Some(Ok(answer))
    }

    fn revoke<'a>(&'a self, jti: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        Box::pin(self.store(jti, until))
    }
}

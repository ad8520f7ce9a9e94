//! [`RedisBehaviorStore`]: per-subject fixed-window counters and lockouts, each operation one
//! Lua script so replicas' counts add up exactly.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::Script;
use zerotrust_core::{Behavior, BehaviorStore, BehaviorWindows, StoreError, StoreFuture};

use crate::conn::protocol;
use crate::stores::Shared;

/// At most this many distinct sensitive routes are remembered per subject and window (as in
/// the in-memory store).
const MAX_ROUTES: u32 = 256;

/// Counts a request (and a sensitive route) and reads the failures and the lockout.
/// KEYS: requests counter, routes set, failures counter, lockout. ARGV: the requests' and the
/// routes' time to live (s), the route, whether there is one ('1'), the route limit.
static OBSERVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local requests = redis.call('INCR', KEYS[1])
if requests == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
if ARGV[4] == '1' and redis.call('SCARD', KEYS[2]) < tonumber(ARGV[5]) then
  redis.call('SADD', KEYS[2], ARGV[3])
  if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
end
local routes = redis.call('SCARD', KEYS[2])
local failures = redis.call('GET', KEYS[3]) or '0'
local locked = redis.call('GET', KEYS[4]) or ''
return {tostring(requests), tostring(routes), failures, locked}
",
    )
});

/// Counts a failure. KEYS[1] the failures counter; ARGV[1] its time to live (s).
static FAILURE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local failures = redis.call('INCR', KEYS[1])
if failures == 1 or redis.call('TTL', KEYS[1]) < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
return failures
",
    )
});

/// Locks out until ARGV[1] unless a later lockout is stored. KEYS[1] the lockout; ARGV[2] its
/// time to live (s), never shortened.
static LOCK_OUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local current = tonumber(redis.call('GET', KEYS[1]) or '')
if not current or tonumber(ARGV[1]) > current then
  redis.call('SET', KEYS[1], ARGV[1], 'KEEPTTL')
end
if redis.call('TTL', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('EXPIRE', KEYS[1], ARGV[2])
end
return 1
",
    )
});

/// Per-subject behaviour in Redis, shared by every replica: failures counted on one replica
/// lock the subject out on all of them.
///
/// Counters are fixed windows as in the in-memory store: one key per subject, counter and window
/// (`<prefix>beh:{<subject>}:r:<window start>`), incremented by a script and expiring with
/// the window. A subject's keys share a Redis Cluster hash slot, so one script reads and
/// updates them all atomically. The lockout is kept until it ends plus the lockout retention
/// (default 1 hour).
///
/// Made by [`RedisStores::behavior`](crate::RedisStores::behavior).
#[derive(Clone)]
pub struct RedisBehaviorStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisBehaviorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBehaviorStore").finish_non_exhaustive()
    }
}

/// The start of the window of length `len` that holds `now`, and the window key's time to live:
/// twice the window, so a counter outlives its window whatever the clocks say, and then goes.
fn window(now: i64, len: Duration) -> (i64, u64) {
    let secs = len.as_secs().max(1);
    let len = i64::try_from(secs).unwrap_or(i64::MAX);
    (now - now.rem_euclid(len), secs.saturating_mul(2))
}

fn number(text: &str) -> Result<u32, StoreError> {
    let n: i64 = text
        .parse()
        .map_err(|_| protocol("behavior", "a count is not a number"))?;
    Ok(u32::try_from(n.max(0)).unwrap_or(u32::MAX))
}

impl RedisBehaviorStore {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    async fn count(
        &self,
        subject: &str,
        now: i64,
        route: Option<&str>,
        windows: &BehaviorWindows,
    ) -> Result<Behavior, StoreError> {
        let keys = &self.shared.keys;
        let (requests_start, requests_ttl) = window(now, windows.requests);
        let (routes_start, routes_ttl) = window(now, windows.sensitive_routes);
        let (failures_start, _) = window(now, windows.failures);
        let requests_key = keys.behavior(subject, "r", Some(requests_start));
        let routes_key = keys.behavior(subject, "s", Some(routes_start));
        let failures_key = keys.behavior(subject, "f", Some(failures_start));
        let lock_key = keys.behavior(subject, "lock", None);
        let reply: Vec<String> = self
            .shared
            .run("behavior observe", |mut c| async move {
                OBSERVE
                    .key(requests_key)
                    .key(routes_key)
                    .key(failures_key)
                    .key(lock_key)
                    .arg(requests_ttl)
                    .arg(routes_ttl)
                    .arg(route.unwrap_or(""))
                    .arg(if route.is_some() { "1" } else { "0" })
                    .arg(MAX_ROUTES)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let [requests, routes, failures, locked] = reply.as_slice() else {
            return Err(protocol("behavior observe", "unexpected reply"));
        };
        let locked_until = match locked.as_str() {
            "" => None,
            text => Some(
                text.parse::<i64>()
                    .map_err(|_| protocol("behavior observe", "unreadable lockout"))?,
            ),
        };
        Ok(Behavior {
            failures: number(failures)?,
            requests: number(requests)?,
            sensitive_routes: number(routes)?,
            locked_until: locked_until.filter(|&until| until > now),
        })
    }

    async fn fail(
        &self,
        subject: &str,
        now: i64,
        windows: &BehaviorWindows,
    ) -> Result<u32, StoreError> {
        let (start, ttl) = window(now, windows.failures);
        let key = self.shared.keys.behavior(subject, "f", Some(start));
        let failures: i64 = self
            .shared
            .run("behavior failure", |mut c| async move {
                FAILURE.key(key).arg(ttl).invoke_async(&mut c).await
            })
            .await?;
        Ok(u32::try_from(failures.max(0)).unwrap_or(u32::MAX))
    }

    async fn lock(&self, subject: &str, until: i64) -> Result<(), StoreError> {
        let key = self.shared.keys.behavior(subject, "lock", None);
        // Kept until the lockout ends by this replica's clock (at most 30 days ahead), plus the
        // retention: Redis's own clock may differ, and a lockout must not vanish early.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
        let left = u64::try_from(until.saturating_sub(now).clamp(0, 30 * 86_400)).unwrap_or(0);
        let ttl = left.saturating_add(self.shared.behavior_retention.as_secs().max(1));
        let _: i64 = self
            .shared
            .run("behavior lockout", |mut c| async move {
                LOCK_OUT
                    .key(key)
                    .arg(until)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(())
    }
}

impl BehaviorStore for RedisBehaviorStore {
    fn observe<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        route: Option<&'a str>,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, Behavior> {
        Box::pin(self.count(subject, now, route, windows))
    }

    fn record_failure<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, u32> {
        Box::pin(self.fail(subject, now, windows))
    }

    fn lock_out<'a>(&'a self, subject: &'a str, until: i64) -> StoreFuture<'a, ()> {
        Box::pin(self.lock(subject, until))
    }
}

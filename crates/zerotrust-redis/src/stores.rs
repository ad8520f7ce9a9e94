//! [`RedisStores`]: one connection, one pub/sub subscription and the local caches, shared by the
//! four stores it hands out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use moka::Expiry;
use moka::sync::Cache;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use zerotrust_core::{DeviceRecord, StoreError};

use crate::conn::{self, Conn};
use crate::keys::Keys;
use crate::{RedisBehaviorStore, RedisDeviceRegistry, RedisLocationHistory, RedisRevocationStore};

/// Why [`RedisStoresBuilder::connect`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisSetupError {
    /// A URL could not be parsed (the URL itself is not repeated: it may hold a password).
    #[error("invalid redis URL: {0}")]
    InvalidUrl(String),
    /// The configuration is not usable.
    #[error("invalid redis store configuration: {0}")]
    Config(&'static str),
    /// The server (or cluster) could not be reached at start-up.
    #[error("redis unreachable at start-up: {0}")]
    Unreachable(StoreError),
}

#[derive(Debug, Clone)]
enum Target {
    Single(String),
    Cluster(Vec<String>),
}

/// Builds [`RedisStores`]. Start from [`RedisStores::builder`] or [`RedisStores::cluster`].
///
/// The defaults are the strict ones: 50 ms per operation, "not revoked" answers kept locally for
/// at most 500 ms and only while the revocation feed is connected, certificate checks on for
/// `rediss://`.
#[derive(Clone)]
pub struct RedisStoresBuilder {
    target: Target,
    prefix: String,
    operation_timeout: Duration,
    connect_timeout: Duration,
    reconnect_max_delay: Duration,
    negative_cache_ttl: Duration,
    revocation_cache_entries: u64,
    device_cache_ttl: Duration,
    device_cache_entries: u64,
    device_ttl: Duration,
    location_retention: Duration,
    behavior_retention: Duration,
    allow_insecure_tls: bool,
}

impl std::fmt::Debug for RedisStoresBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URLs are left out: they may carry passwords.
        f.debug_struct("RedisStoresBuilder")
            .field("prefix", &self.prefix)
            .field("operation_timeout", &self.operation_timeout)
            .field("negative_cache_ttl", &self.negative_cache_ttl)
            .field("device_cache_ttl", &self.device_cache_ttl)
            .finish_non_exhaustive()
    }
}

impl RedisStoresBuilder {
    fn new(target: Target) -> Self {
        Self {
            target,
            prefix: "zt:".into(),
            operation_timeout: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(1),
            reconnect_max_delay: Duration::from_millis(500),
            negative_cache_ttl: Duration::from_millis(500),
            revocation_cache_entries: 100_000,
            device_cache_ttl: Duration::from_secs(1),
            device_cache_entries: 100_000,
            device_ttl: Duration::from_secs(90 * 24 * 3600),
            location_retention: Duration::from_secs(24 * 3600),
            behavior_retention: Duration::from_secs(3600),
            allow_insecure_tls: false,
        }
    }

    /// The prefix of every key and of the events channel (default `zt:`), so several deployments
    /// can share one Redis. It may not contain `{` or `}` (they delimit Redis Cluster hash tags).
    ///
    /// ```
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::builder("redis://127.0.0.1:6379").prefix("payments:zt:");
    /// # let _ = builder;
    /// ```
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long one operation may take before the store answers
    /// [`StoreError::Unavailable`] (default 50 ms). Checks that need the store then fail closed
    /// (503 with `Retry-After`) unless configured fail-open.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::builder("redis://127.0.0.1:6379")
    ///     .operation_timeout(Duration::from_millis(20));
    /// # let _ = builder;
    /// ```
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.operation_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How long a connection attempt may take (default 1 s), at start-up and when reconnecting,
    /// and the longest wait between reconnection attempts (default 500 ms).
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::builder("redis://127.0.0.1:6379")
    ///     .connection(Duration::from_millis(500), Duration::from_millis(250));
    /// # let _ = builder;
    /// ```
    pub fn connection(mut self, connect_timeout: Duration, reconnect_max_delay: Duration) -> Self {
        self.connect_timeout = connect_timeout.max(Duration::from_millis(1));
        self.reconnect_max_delay = reconnect_max_delay.max(Duration::from_millis(1));
        self
    }

    /// How long a "not revoked" answer is kept in this process (default 500 ms, at most 1 s),
    /// and how many revocation answers are kept (default 100,000).
    ///
    /// Revocations are pushed to every replica at once through pub/sub, and "not revoked"
    /// answers are only kept while that feed is connected (the cache is emptied whenever it
    /// connects or drops), so this bounds how stale an answer can be if a push is lost.
    /// `Duration::ZERO` asks Redis on every request.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::builder("redis://127.0.0.1:6379")
    ///     .revocation_cache(Duration::from_millis(200), 50_000);
    /// # let _ = builder;
    /// ```
    pub fn revocation_cache(mut self, not_revoked_ttl: Duration, max_entries: u64) -> Self {
        self.negative_cache_ttl = not_revoked_ttl.min(Duration::from_secs(1));
        self.revocation_cache_entries = max_entries;
        self
    }

    /// How long a device record read from Redis is kept in this process (default 1 s, at most
    /// 10 s), and how many (default 100,000). Changes made through any replica drop the entry
    /// everywhere at once (pub/sub); records are only kept while that feed is connected.
    /// `Duration::ZERO` reads Redis every time.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::builder("redis://127.0.0.1:6379")
    ///     .device_cache(Duration::ZERO, 0);
    /// # let _ = builder;
    /// ```
    pub fn device_cache(mut self, ttl: Duration, max_entries: u64) -> Self {
        self.device_cache_ttl = ttl.min(Duration::from_secs(10));
        self.device_cache_entries = max_entries;
        self
    }

    /// How long Redis keeps what it holds: a device record after its last change or `touch`
    /// (default 90 days), a subject's last sighting (default 1 day), a subject's lockout beyond
    /// its end (default 1 hour). Counters expire with their windows.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_redis::RedisStores;
    ///
    /// let day = Duration::from_secs(86_400);
    /// let builder = RedisStores::builder("redis://127.0.0.1:6379").retention(30 * day, day, day);
    /// # let _ = builder;
    /// ```
    pub fn retention(mut self, devices: Duration, locations: Duration, lockouts: Duration) -> Self {
        self.device_ttl = devices.max(Duration::from_secs(1));
        self.location_retention = locations.max(Duration::from_secs(1));
        self.behavior_retention = lockouts.max(Duration::from_secs(1));
        self
    }

    /// Accepts `rediss://...#insecure` URLs, which turn off certificate checks.
    ///
    /// # Warning
    ///
    /// Without certificate checks anyone on the path can read and change revocations, devices
    /// and counters. For tests against a self-signed server only.
    ///
    /// ```
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::builder("rediss://127.0.0.1:6380/#insecure").allow_insecure_tls();
    /// # let _ = builder;
    /// ```
    pub fn allow_insecure_tls(mut self) -> Self {
        tracing::warn!(target: "zerotrust::redis", "TLS certificate checks may be turned off for Redis");
        self.allow_insecure_tls = true;
        self
    }

    fn check(&self) -> Result<(), RedisSetupError> {
        if self.prefix.contains(['{', '}']) {
            return Err(RedisSetupError::Config(
                "the key prefix may not contain `{` or `}`",
            ));
        }
        let urls: &[String] = match &self.target {
            Target::Single(url) => std::slice::from_ref(url),
            Target::Cluster(urls) if urls.is_empty() => {
                return Err(RedisSetupError::Config("a cluster needs at least one node"));
            }
            Target::Cluster(urls) => urls,
        };
        if !self.allow_insecure_tls && urls.iter().any(|u| u.ends_with("#insecure")) {
            return Err(RedisSetupError::Config(
                "`#insecure` turns TLS certificate checks off; call allow_insecure_tls() to accept it",
            ));
        }
        Ok(())
    }

    /// Connects, checks the server answers (`PING`), subscribes to the events channel in the
    /// background, and answers the stores. Needs a Tokio runtime (the connection and the
    /// subscription run on it).
    ///
    /// Strict: fails when Redis cannot be reached now. Once connected, an outage makes the stores
    /// answer [`StoreError::Unavailable`] within the operation timeout, and the connection comes
    /// back by itself.
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// use zerotrust_redis::RedisStores;
    ///
    /// let stores = RedisStores::builder("redis://127.0.0.1:6379").connect().await?;
    /// let revocations = stores.revocations();
    /// # let _ = revocations;
    /// # Ok::<_, zerotrust_redis::RedisSetupError>(())
    /// # });
    /// ```
    pub async fn connect(self) -> Result<RedisStores, RedisSetupError> {
        self.check()?;
        let invalid = |e: redis::RedisError| RedisSetupError::InvalidUrl(e.kind_name());
        let (conn, feeds) = match &self.target {
            Target::Single(url) => {
                let client = redis::Client::open(url.as_str()).map_err(invalid)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.connect_timeout))
                    .set_response_timeout(Some(
                        self.operation_timeout.max(Duration::from_millis(250)),
                    ))
                    .set_max_delay(self.reconnect_max_delay)
                    .set_number_of_retries(3);
                let manager = ConnectionManager::new_lazy_with_config(client.clone(), config)
                    .map_err(invalid)?;
                (Conn::Single(manager), vec![client])
            }
            Target::Cluster(urls) => {
                let feeds = urls
                    .iter()
                    .map(|u| redis::Client::open(u.as_str()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                let client = ClusterClient::builder(urls.iter().map(String::as_str))
                    .connection_timeout(self.connect_timeout)
                    .response_timeout(self.operation_timeout.max(Duration::from_millis(250)))
                    .build()
                    .map_err(invalid)?;
                let conn =
                    tokio::time::timeout(self.connect_timeout, client.get_async_connection())
                        .await
                        .map_err(|_| {
                            RedisSetupError::Unreachable(StoreError::Unavailable(
                                "cluster connection timed out".into(),
                            ))
                        })?
                        .map_err(|e| {
                            RedisSetupError::Unreachable(StoreError::Unavailable(e.kind_name()))
                        })?;
                (Conn::Cluster(conn), feeds)
            }
        };
        let keys = Keys::new(&self.prefix);
        let channel = keys.events_channel();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let shared = Arc::new(Shared {
            conn,
            keys,
            timeout: self.operation_timeout,
            revoked: Cache::builder()
                .max_capacity(self.revocation_cache_entries)
                .expire_after(RevocationExpiry {
                    not_revoked: self.negative_cache_ttl,
                })
                .build(),
            devices: Cache::builder()
                .max_capacity(self.device_cache_entries)
                .time_to_live(self.device_cache_ttl.max(Duration::from_millis(1)))
                .build(),
            cache_not_revoked: !self.negative_cache_ttl.is_zero(),
            cache_devices: !self.device_cache_ttl.is_zero() && self.device_cache_entries > 0,
            feed_connected: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            stats: Stats::default(),
            device_ttl: self.device_ttl,
            location_retention: self.location_retention,
            behavior_retention: self.behavior_retention,
            _stop: stop,
        });
        let ping = redis::cmd("PING");
        conn::run(
            &shared.conn,
            self.connect_timeout,
            "ping",
            |mut c| async move { ping.query_async::<String>(&mut c).await },
        )
        .await
        .map_err(RedisSetupError::Unreachable)?;
        tokio::spawn(events_feed(
            Arc::downgrade(&shared),
            feeds,
            channel,
            self.connect_timeout,
            self.reconnect_max_delay,
            stopped,
        ));
        Ok(RedisStores { shared })
    }
}

/// Short, credential-free names for errors met while setting up.
trait KindName {
    fn kind_name(&self) -> String;
}

impl KindName for redis::RedisError {
    fn kind_name(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// The Redis state stores of one deployment: revocations, devices, locations and behaviour,
/// sharing one connection, one subscription to the deployment's events and the local caches.
///
/// Cheap to clone. The stores it hands out keep the connection alive; when the last is dropped,
/// the connection and the subscription end.
///
/// ```no_run
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use zerotrust_redis::RedisStores;
///
/// let stores = RedisStores::builder("rediss://redis.internal:6380")
///     .prefix("reports:zt:")
///     .operation_timeout(Duration::from_millis(50))
///     .connect()
///     .await?;
/// // JwtVerifier::builder().revocation_store(Arc::new(stores.revocations()))
/// // DeviceCheck::builder(stores.devices())
/// // GeoRisk::builder().location_history(stores.locations())
/// // StepUpPolicy::builder().behavior(stores.behavior(), BehaviorPolicy::default())
/// let revocations = Arc::new(stores.revocations());
/// # let _ = revocations;
/// # Ok::<_, zerotrust_redis::RedisSetupError>(())
/// # });
/// ```
#[derive(Clone)]
pub struct RedisStores {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RedisStores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStores")
            .field("feed_connected", &self.is_feed_connected())
            .field("cache", &self.cache_stats())
            .finish_non_exhaustive()
    }
}

impl RedisStores {
    /// A builder for one Redis server: `redis://[user:password@]host:port[/db]`, or `rediss://`
    /// for TLS (rustls, the platform's root certificates).
    ///
    /// ```
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::builder("rediss://:secret@redis.internal:6380/0");
    /// # let _ = builder;
    /// ```
    pub fn builder(url: impl Into<String>) -> RedisStoresBuilder {
        RedisStoresBuilder::new(Target::Single(url.into()))
    }

    /// A builder for a Redis Cluster, from some of its nodes' URLs (the rest are discovered).
    ///
    /// ```
    /// use zerotrust_redis::RedisStores;
    ///
    /// let builder = RedisStores::cluster(["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"]);
    /// # let _ = builder;
    /// ```
    pub fn cluster(nodes: impl IntoIterator<Item = impl Into<String>>) -> RedisStoresBuilder {
        RedisStoresBuilder::new(Target::Cluster(nodes.into_iter().map(Into::into).collect()))
    }

    /// Connects to one server with the defaults: [`RedisStores::builder`] then
    /// [`connect`](RedisStoresBuilder::connect).
    ///
    /// ```no_run
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let stores = zerotrust_redis::RedisStores::connect("redis://127.0.0.1:6379").await?;
    /// # let _ = stores;
    /// # Ok::<_, zerotrust_redis::RedisSetupError>(())
    /// # });
    /// ```
    pub async fn connect(url: impl Into<String>) -> Result<Self, RedisSetupError> {
        Self::builder(url).connect().await
    }

    /// The revocation store.
    pub fn revocations(&self) -> RedisRevocationStore {
        RedisRevocationStore::new(Arc::clone(&self.shared))
    }

    /// The device registry.
    pub fn devices(&self) -> RedisDeviceRegistry {
        RedisDeviceRegistry::new(Arc::clone(&self.shared))
    }

    /// The location history.
    pub fn locations(&self) -> RedisLocationHistory {
        RedisLocationHistory::new(Arc::clone(&self.shared))
    }

    /// The behaviour store.
    pub fn behavior(&self) -> RedisBehaviorStore {
        RedisBehaviorStore::new(Arc::clone(&self.shared))
    }

    /// Hits and misses of the local caches since start. Also exported as the counters
    /// `zerotrust_redis_cache_hits_total` and `zerotrust_redis_cache_misses_total` (label `cache`:
    /// `revocation` or `device`).
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.stats.snapshot()
    }

    /// Whether the subscription to revocation and device events is connected now. While it is
    /// not, nothing negative is answered from the local cache.
    pub fn is_feed_connected(&self) -> bool {
        self.shared.feed_connected.load(Ordering::Acquire)
    }
}

/// Hits and misses of the local caches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Revocation checks answered locally.
    pub revocation_hits: u64,
    /// Revocation checks that asked Redis.
    pub revocation_misses: u64,
    /// Device reads answered locally.
    pub device_hits: u64,
    /// Device reads that asked Redis.
    pub device_misses: u64,
}

impl CacheStats {
    /// The share of revocation checks answered locally, 0 to 1 (0 when there were none).
    pub fn revocation_hit_rate(&self) -> f64 {
        rate(self.revocation_hits, self.revocation_misses)
    }

    /// The share of device reads answered locally, 0 to 1 (0 when there were none).
    pub fn device_hit_rate(&self) -> f64 {
        rate(self.device_hits, self.device_misses)
    }
}

#[allow(clippy::cast_precision_loss)] // a ratio for a report
fn rate(hits: u64, misses: u64) -> f64 {
    let total = hits.saturating_add(misses);
    if total == 0 {
        0.0
    } else {
        hits as f64 / total as f64
    }
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    revocation_hits: AtomicU64,
    revocation_misses: AtomicU64,
    device_hits: AtomicU64,
    device_misses: AtomicU64,
}

impl Stats {
    pub(crate) fn revocation(&self, hit: bool) {
        if hit {
            self.revocation_hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("zerotrust_redis_cache_hits_total", "cache" => "revocation")
                .increment(1);
        } else {
            self.revocation_misses.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("zerotrust_redis_cache_misses_total", "cache" => "revocation")
                .increment(1);
        }
    }

    pub(crate) fn device(&self, hit: bool) {
        if hit {
            self.device_hits.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("zerotrust_redis_cache_hits_total", "cache" => "device").increment(1);
        } else {
            self.device_misses.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("zerotrust_redis_cache_misses_total", "cache" => "device")
                .increment(1);
        }
    }

    fn snapshot(&self) -> CacheStats {
        CacheStats {
            revocation_hits: self.revocation_hits.load(Ordering::Relaxed),
            revocation_misses: self.revocation_misses.load(Ordering::Relaxed),
            device_hits: self.device_hits.load(Ordering::Relaxed),
            device_misses: self.device_misses.load(Ordering::Relaxed),
        }
    }
}

/// A revocation answer kept locally.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cached {
    /// Revoked until then (revocations are never lifted, so this is kept until it ends).
    Revoked(Instant),
    /// Not revoked when Redis was asked; kept briefly.
    NotRevoked,
}

struct RevocationExpiry {
    not_revoked: Duration,
}

impl Expiry<String, Cached> for RevocationExpiry {
    fn expire_after_create(&self, _: &String, value: &Cached, now: Instant) -> Option<Duration> {
        Some(self.ttl(value, now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Cached,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.ttl(value, now))
    }
}

impl RevocationExpiry {
    fn ttl(&self, value: &Cached, now: Instant) -> Duration {
        match value {
            Cached::Revoked(until) => until.saturating_duration_since(now),
            Cached::NotRevoked => self.not_revoked,
        }
    }
}

/// What the stores share.
pub(crate) struct Shared {
    pub(crate) conn: Conn,
    pub(crate) keys: Keys,
    pub(crate) timeout: Duration,
    pub(crate) revoked: Cache<String, Cached>,
    pub(crate) devices: Cache<String, Arc<DeviceRecord>>,
    pub(crate) cache_not_revoked: bool,
    pub(crate) cache_devices: bool,
    /// Whether the events subscription is live: local negative answers and device records are
    /// used only then.
    pub(crate) feed_connected: AtomicBool,
    /// Bumped by every event and every (re)subscription or loss of it. A read from Redis is
    /// cached only if the epoch did not move while it was under way, so a change announced
    /// meanwhile is never covered by the older answer.
    pub(crate) epoch: AtomicU64,
    pub(crate) stats: Stats,
    pub(crate) device_ttl: Duration,
    pub(crate) location_retention: Duration,
    pub(crate) behavior_retention: Duration,
    /// Dropped with the last store: ends the events task.
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Shared {
    /// Runs one operation under the operation timeout.
    pub(crate) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        conn::run(&self.conn, self.timeout, op, f).await
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    pub(crate) fn live(&self) -> bool {
        self.feed_connected.load(Ordering::Acquire)
    }

    /// Forgets everything cached: the feed (re)connected or dropped, so events may have been
    /// missed.
    fn reset(&self, connected: bool) {
        self.feed_connected.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.revoked.invalidate_all();
        self.devices.invalidate_all();
        if connected {
            self.feed_connected.store(true, Ordering::Release);
        }
        metrics::gauge!("zerotrust_redis_events_connected").set(if connected { 1.0 } else { 0.0 });
    }

    /// One event from the channel: `r <ttl_ms> <jti>` (revoked for that long) or `d <id>`
    /// (device changed). Anything else is ignored.
    fn on_event(&self, payload: &[u8]) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let Ok(text) = std::str::from_utf8(payload) else {
            return;
        };
        if let Some(rest) = text.strip_prefix("r ") {
            let Some((ttl, jti)) = rest.split_once(' ') else {
                return;
            };
            let Ok(ttl_ms) = ttl.parse::<u64>() else {
                return;
            };
            let until = Instant::now() + Duration::from_millis(ttl_ms);
            self.revoked.insert(jti.into(), Cached::Revoked(until));
        } else if let Some(id) = text.strip_prefix("d ") {
            self.devices.invalidate(id);
        }
    }
}

/// Keeps a subscription to the events channel, reconnecting (through the nodes in turn, for a
/// cluster) until the stores are dropped.
async fn events_feed(
    shared: Weak<Shared>,
    clients: Vec<redis::Client>,
    channel: String,
    connect_timeout: Duration,
    max_delay: Duration,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut attempt: usize = 0;
    let mut delay = Duration::from_millis(25);
    loop {
        let Some(client) = clients.get(attempt % clients.len().max(1)) else {
            return;
        };
        attempt = attempt.wrapping_add(1);
        let session = async {
            let mut pubsub = tokio::time::timeout(connect_timeout, client.get_async_pubsub())
                .await
                .ok()?
                .ok()?;
            tokio::time::timeout(connect_timeout, pubsub.subscribe(&channel))
                .await
                .ok()?
                .ok()?;
            shared.upgrade()?.reset(true);
            tracing::debug!(target: "zerotrust::redis", "events feed connected");
            let mut messages = pubsub.on_message();
            while let Some(msg) = messages.next().await {
                shared.upgrade()?.on_event(msg.get_payload_bytes());
            }
            Some(())
        };
        let connected_once = tokio::select! {
            _ = &mut stop => return,
            outcome = session => outcome.is_some(),
        };
        let Some(alive) = shared.upgrade() else {
            return;
        };
        if alive.live() || connected_once {
            tracing::warn!(target: "zerotrust::redis", "events feed lost; local cache emptied until it is back");
            delay = Duration::from_millis(25);
        }
        alive.reset(false);
        drop(alive);
        tokio::select! {
            _ = &mut stop => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(max_delay);
    }
}

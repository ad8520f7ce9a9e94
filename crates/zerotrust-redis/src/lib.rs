#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// How a request meets these stores (read top to bottom):
// 1. `RedisStores::builder(url).connect()` (stores.rs) opens one connection (the `redis`
//    crate's connection manager, which reconnects by itself, or a cluster connection), checks it
//    with PING, and starts the events feed: a pub/sub subscription to `<prefix>events` that
//    carries revocations and device changes to every replica.
// 2. Each check's store operation (revocation.rs, devices.rs, locations.rs, behavior.rs) is one
//    command or one Lua script, under the operation timeout (conn.rs, default 50 ms). No answer
//    in time, or an error, is `StoreError::Unavailable`: the layer refuses with 503 and
//    `Retry-After` (reason `store.unavailable`), or goes on with `store.degraded` when the
//    operator made that check fail-open. Nothing waits longer than the timeout, nothing panics.
// 3. Hot reads go to the local moka caches first: a revocation (every request with a `jti`) and
//    a device record. "Not revoked" and device records are answered locally only while the
//    events feed is connected, for a short time, and never over a change announced meanwhile;
//    the caches are emptied whenever the feed connects or drops.
// 4. Keys are `<prefix><kind>:{<id>}...` (keys.rs) with a time to live on every one.

mod behavior;
mod conn;
mod devices;
mod keys;
mod locations;
mod revocation;
mod stores;

pub use behavior::RedisBehaviorStore;
pub use devices::RedisDeviceRegistry;
pub use locations::RedisLocationHistory;
pub use revocation::RedisRevocationStore;
pub use stores::{CacheStats, RedisSetupError, RedisStores, RedisStoresBuilder};

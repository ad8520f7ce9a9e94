//! The Redis stores against the in-memory ones, each operation on its own (criterion), then a
//! load run on loopback: the full stack (JwtVerify, GeoRisk, StepUp) served twice, once over the
//! in-memory stores and once over Redis, requests interleaved, p50 and p99 per request, and the
//! revocation cache's hit rate.
//!
//! `cargo bench -p zerotrust-redis --bench stores` starts its own `redis-server` on 127.0.0.1.
//! Under `cargo test` (no `--bench`) every case runs once and the load run is a short smoke run.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::print_stdout,
    clippy::indexing_slicing,
    unreachable_pub
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use common::RedisServer;
use common::app::{Stack, State, client, serve};
use criterion::Criterion;
use zerotrust_core::geo::GeoPoint;
use zerotrust_core::{
    BehaviorStore, BehaviorWindows, DeviceRecord, DeviceRegistry, LocationHistory,
    MemoryBehaviorStore, MemoryDeviceRegistry, MemoryLocationHistory, MemoryRevocationStore,
    RevocationStore, Sighting,
};
use zerotrust_redis::RedisStores;
use zerotrust_testkit::DevIssuer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn sighting(at: i64) -> Sighting {
    Sighting {
        at,
        point: GeoPoint::new(52.52, 13.40).unwrap(),
        accuracy_km: 20.0,
        country: None,
        ip: "192.0.2.1".parse().unwrap(),
    }
}

fn stores_bench(c: &mut Criterion, rt: &tokio::runtime::Runtime, redis: &RedisServer) {
    let connect = |builder: zerotrust_redis::RedisStoresBuilder| {
        rt.block_on(async {
            builder
                .operation_timeout(Duration::from_secs(1))
                .connect()
                .await
        })
        .unwrap()
    };
    let cached = connect(RedisStores::builder(redis.url()).prefix("bench:"));
    let uncached = connect(
        RedisStores::builder(redis.url())
            .prefix("bench:")
            .revocation_cache(Duration::ZERO, 0)
            .device_cache(Duration::ZERO, 0),
    );
    // The cache answers "not revoked" only once the events feed is up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cached.is_feed_connected() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }

    let mut group = c.benchmark_group("revocation_check");
    let memory = MemoryRevocationStore::new();
    let until = SystemTime::now() + Duration::from_secs(600);
    memory.insert("revoked", until);
    let (hot, cold) = (cached.revocations(), uncached.revocations());
    rt.block_on(hot.revoke("revoked", until)).unwrap();
    group.bench_function("memory", |b| {
        b.iter(|| rt.block_on(memory.is_revoked(black_box("jti-1"))).unwrap())
    });
    group.bench_function("redis_local_cache", |b| {
        b.iter(|| {
            match hot.is_revoked_now(black_box("jti-1")) {
                Some(answer) => answer,
                None => rt.block_on(hot.is_revoked("jti-1")),
            }
            .unwrap()
        })
    });
    group.bench_function("redis_round_trip", |b| {
        b.iter(|| rt.block_on(cold.is_revoked(black_box("jti-1"))).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("device_get");
    let memory = MemoryDeviceRegistry::new();
    memory.insert_new(DeviceRecord {
        owners: vec!["alice".into()],
        ..DeviceRecord::new("d-1", 1_900_000_000)
    });
    let (hot, cold) = (cached.devices(), uncached.devices());
    rt.block_on(hot.register(DeviceRecord {
        owners: vec!["alice".into()],
        ..DeviceRecord::new("d-1", 1_900_000_000)
    }))
    .unwrap();
    group.bench_function("memory", |b| {
        b.iter(|| rt.block_on(memory.get(black_box("d-1"))).unwrap())
    });
    group.bench_function("redis_local_cache", |b| {
        b.iter(|| rt.block_on(hot.get(black_box("d-1"))).unwrap())
    });
    group.bench_function("redis_round_trip", |b| {
        b.iter(|| rt.block_on(cold.get(black_box("d-1"))).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("location_swap");
    let memory = MemoryLocationHistory::new();
    let redis_history = cached.locations();
    let mut at = 1_900_000_000;
    group.bench_function("memory", |b| {
        b.iter(|| {
            at += 1;
            rt.block_on(memory.swap("alice", sighting(at))).unwrap()
        })
    });
    group.bench_function("redis", |b| {
        b.iter(|| {
            at += 1;
            rt.block_on(redis_history.swap("alice", sighting(at)))
                .unwrap()
        })
    });
    group.finish();

    let mut group = c.benchmark_group("behavior_observe");
    let windows = BehaviorWindows::default();
    let memory = MemoryBehaviorStore::new();
    let redis_behavior = cached.behavior();
    group.bench_function("memory", |b| {
        b.iter(|| {
            rt.block_on(memory.observe("alice", 1_900_000_200, Some("/admin"), &windows))
                .unwrap()
        })
    });
    group.bench_function("redis", |b| {
        b.iter(|| {
            rt.block_on(redis_behavior.observe("alice", 1_900_000_200, Some("/admin"), &windows))
                .unwrap()
        })
    });
    group.finish();
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The full stack twice, requests interleaved so both see the same machine load.
fn load_run(rt: &tokio::runtime::Runtime, redis: &RedisServer, requests: usize) {
    rt.block_on(async {
        let dev = DevIssuer::start().await.unwrap();
        let stores = RedisStores::builder(redis.url())
            .prefix("load:")
            .connect()
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !stores.is_feed_connected() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let stack = Stack {
            lockout_after: u32::MAX,
            ..Stack::default()
        };
        let (memory_base, _, _) = serve(&dev, State::memory(), stack).await;
        let (redis_base, _, _) = serve(&dev, State::redis(&stores, stack), stack).await;
        let http = client();
        let token = dev.mint();
        let before = stores.cache_stats();
        let mut times: [Vec<Duration>; 2] = [Vec::new(), Vec::new()];
        for i in 0..requests + 50 {
            for (slot, base) in [&memory_base, &redis_base].into_iter().enumerate() {
                let started = Instant::now();
                let resp = http
                    .get(format!("{base}/api/open"))
                    .bearer_auth(&token)
                    .header("x-forwarded-for", "193.99.144.80")
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200);
                let _ = resp.bytes().await.unwrap();
                // The first 50 of each warm up connections, keys and scripts.
                if i >= 50 {
                    times[slot].push(started.elapsed());
                }
            }
        }
        let after = stores.cache_stats();
        let [mut memory, mut redis_times] = times;
        memory.sort_unstable();
        redis_times.sort_unstable();
        let (m50, m99) = (percentile(&memory, 0.5), percentile(&memory, 0.99));
        let (r50, r99) = (
            percentile(&redis_times, 0.5),
            percentile(&redis_times, 0.99),
        );
        let hits = after.revocation_hits - before.revocation_hits;
        let misses = after.revocation_misses - before.revocation_misses;
        #[allow(clippy::cast_precision_loss)]
        let rate = hits as f64 / (hits + misses).max(1) as f64;
        println!("load run: {requests} sequential requests per stack, interleaved, loopback");
        println!("  in-memory stores: p50 {m50:?}  p99 {m99:?}");
        println!("  redis stores:     p50 {r50:?}  p99 {r99:?}");
        println!(
            "  added by redis:   p50 {:?}  p99 {:?}  (ratio p50 {:.2}x, p99 {:.2}x)",
            r50.saturating_sub(m50),
            r99.saturating_sub(m99),
            r50.as_secs_f64() / m50.as_secs_f64().max(1e-9),
            r99.as_secs_f64() / m99.as_secs_f64().max(1e-9),
        );
        println!(
            "  revocation cache: {hits} hits, {misses} misses, hit rate {:.1}%",
            rate * 100.0
        );
    });
}

fn main() {
    let benching = std::env::args().any(|a| a == "--bench");
    let redis = RedisServer::start();
    let rt = runtime();
    let mut criterion = Criterion::default().configure_from_args();
    if benching {
        criterion = criterion
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
    }
    stores_bench(&mut criterion, &rt, &redis);
    criterion.final_summary();
    load_run(&rt, &redis, if benching { 5000 } else { 20 });
}

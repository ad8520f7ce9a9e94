//! DeviceCheckLayer and GeoRiskLayer together, with the in-memory stores and the embedded geo
//! data: the figure for issue 3's 5 µs budget.
//!
//! `cargo bench --bench stack`
//!
//! Requests go through an axum `Router` by `oneshot` (no sockets) and finish on their first poll.
//! Each carries a verified identity (as behind JwtVerifyLayer) and a public peer address, so
//! every check runs: device lookup and posture policy, geo lookup and network rules, and the
//! impossible-travel swap in the location history.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use zerotrust::device::{DeviceCheck, DeviceCheckLayer};
use zerotrust::geo::{GeoRisk, GeoRiskLayer};
use zerotrust::{Identity, MemoryDeviceRegistry, MemoryLocationHistory, ZeroTrust};
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{DeviceRecord, PeerAddr, Posture};

fn router() -> Router {
    Router::new().route("/api", get(|| async { "ok" }))
}

fn call(app: &Router, identity: &Arc<Identity>, peer: SocketAddr) -> u16 {
    let mut req = Request::get("/api")
        .header("x-device-id", "d-1")
        .header("x-device-fingerprint", "fp-0123456789abcdef")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut().insert(PeerAddr(peer));
    ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::clone(identity));
    zerotrust_testkit::respond_now(app, req).status().as_u16()
}

fn bench_stack(c: &mut Criterion) {
    let now = zerotrust_testkit::unix_now();
    let identity = Arc::new(Identity::new("alice", "https://idp.test", now + 3600));
    let registry = Arc::new(MemoryDeviceRegistry::new());
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("fp-0123456789abcdef")),
        owners: vec!["alice".into()],
        posture: Posture {
            platform: Some("macos".into()),
            os_version: Some("14.4.1".into()),
            disk_encrypted: Some(true),
            edr_running: Some(true),
            jailbroken: Some(false),
            reported_at: Some(now),
        },
        ..DeviceRecord::new("d-1", now)
    });
    let device = || {
        DeviceCheckLayer::new(
            DeviceCheck::builder(registry.clone())
                .device_headers()
                .build()
                .unwrap(),
        )
    };
    let geo = || {
        GeoRiskLayer::new(
            GeoRisk::builder()
                .location_history(MemoryLocationHistory::new())
                .build()
                .unwrap(),
        )
    };
    let bare = router();
    let device_only = router().layer(device());
    let geo_only = router().layer(geo());
    let both = router().layer(geo()).layer(device());
    let peer: SocketAddr = "8.8.8.8:50000".parse().unwrap();
    for app in [&bare, &device_only, &geo_only, &both] {
        assert_eq!(call(app, &identity, peer), 200);
    }

    let mut group = c.benchmark_group("stack");
    group.bench_function("bare_router", |b| {
        b.iter(|| black_box(call(&bare, &identity, peer)))
    });
    group.bench_function("device", |b| {
        b.iter(|| black_box(call(&device_only, &identity, peer)))
    });
    group.bench_function("geo", |b| {
        b.iter(|| black_box(call(&geo_only, &identity, peer)))
    });
    group.bench_function("device_and_geo", |b| {
        b.iter(|| black_box(call(&both, &identity, peer)))
    });
    group.finish();
}

criterion_group!(benches, bench_stack);
criterion_main!(benches);

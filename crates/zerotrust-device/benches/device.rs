//! What DeviceCheckLayer adds to a request, with the in-memory registry.
//!
//! `cargo bench -p zerotrust-device --bench device`
//!
//! Requests are polled inline (`now_or_never`): the in-memory registry answers at once, so the
//! figures are the layer's own work plus axum's routing, compared with the bare router in the
//! same run. Each request carries a verified identity, as it would behind JwtVerifyLayer.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use serde_json::json;
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{DeviceRecord, Identity, MemoryDeviceRegistry, Posture, ZeroTrust};
use zerotrust_device::{DeviceCheck, DeviceCheckLayer, PostureAssertions};
use zerotrust_jwt::{KeyPolicy, KeySet, VerifyingKey};
use zerotrust_testkit::{SigningKey, TokenBuilder, unix_now};

fn router() -> Router {
    Router::new().route("/api", get(|| async { "ok" }))
}

fn call(app: &Router, identity: &Arc<Identity>, headers: &[(&'static str, &str)]) -> u16 {
    let mut req = Request::get("/api");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::clone(identity));
    zerotrust_testkit::respond_now(app, req).status().as_u16()
}

fn bench_device(c: &mut Criterion) {
    let now = unix_now();
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
    let mdm = SigningKey::es256("mdm-1");
    let keys = || {
        KeySet::from_keys(VerifyingKey::from_jwk(&mdm.public_jwk(), &KeyPolicy::remote()).unwrap())
    };
    let assertion = TokenBuilder::new()
        .header("typ", "device-posture+jwt")
        .claim("iss", "https://mdm.test")
        .claim("iat", now)
        .claim("exp", now + 3600)
        .claim("device_id", "d-1")
        .claim("owner", "alice")
        .claim(
            "posture",
            json!({"platform": "macos", "os_version": "14.4.1", "disk_encrypted": true,
                   "edr_running": true, "jailbroken": false}),
        )
        .sign(&mdm);
    let layer = |cache: u64| {
        let check = DeviceCheck::builder_shared(registry.clone())
            .device_headers()
            .posture_assertions(
                PostureAssertions::new(keys(), "https://mdm.test").cache_verified(cache),
            )
            .build()
            .unwrap();
        router().layer(DeviceCheckLayer::new(check))
    };
    let cached = layer(10_000);
    let uncached = layer(0);
    let bare = router();
    let by_headers = [
        ("x-device-id", "d-1"),
        ("x-device-fingerprint", "fp-0123456789abcdef"),
    ];
    let by_assertion = [("x-device-posture", assertion.as_str())];
    assert_eq!(call(&cached, &identity, &by_headers), 200);
    assert_eq!(call(&cached, &identity, &by_assertion), 200);
    assert_eq!(call(&uncached, &identity, &by_assertion), 200);

    let mut group = c.benchmark_group("device");
    group.bench_function("bare_router", |b| {
        b.iter(|| black_box(call(&bare, &identity, &by_headers)))
    });
    group.bench_function("layer_headers_known_device", |b| {
        b.iter(|| black_box(call(&cached, &identity, &by_headers)))
    });
    group.bench_function("layer_assertion_cached", |b| {
        b.iter(|| black_box(call(&cached, &identity, &by_assertion)))
    });
    group.bench_function("layer_assertion_uncached_es256", |b| {
        b.iter(|| black_box(call(&uncached, &identity, &by_assertion)))
    });
    group.finish();
}

criterion_group!(benches, bench_device);
criterion_main!(benches);

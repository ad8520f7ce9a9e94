//! Refusals carry the request's context, with the device assessment, for the audit layer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::Request;
use tower::ServiceExt;
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{
    DeviceBinding, DeviceRecord, DeviceStatus, Identity, MemoryDeviceRegistry, Outcome, ZeroTrust,
};
use zerotrust_device::{DeviceCheck, DeviceCheckLayer};

#[tokio::test]
async fn a_fingerprint_mismatch_refusal_records_the_device_and_the_decision() {
    let registry = Arc::new(MemoryDeviceRegistry::new());
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("right")),
        owners: vec!["alice".into()],
        ..DeviceRecord::new("d-1", 1_900_000_000)
    });
    let check = DeviceCheck::builder_shared(registry)
        .device_headers()
        .build()
        .unwrap();
    let app = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(DeviceCheckLayer::new(check));
    let mut req = Request::get("/")
        .header("x-device-id", "d-1")
        .header("x-device-fingerprint", "wrong")
        .body(Body::empty())
        .unwrap();
    ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::new(Identity::new(
        "alice",
        "https://idp",
        1_900_000_000,
    )));

    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 403);
    let zt = resp
        .extensions()
        .get::<ZeroTrust>()
        .expect("context in the response");
    assert_eq!(zt.subject(), Some("alice"));
    let device = zt.device().expect("device assessment recorded");
    assert_eq!(&*device.device_id, "d-1");
    assert_eq!(device.binding, DeviceBinding::Header);
    assert_eq!(device.status, DeviceStatus::Known);
    let decision = zt.decision().unwrap();
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.layer, "device");
    assert_eq!(decision.reason.code(), "device.fingerprint_mismatch");
}

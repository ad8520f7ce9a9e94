//! DeviceCheckLayer under each `Enforcement` mode: report-only passes every refusal (immediate or
//! from the registry) and records the would-be decision, off skips the check entirely, and a
//! roll-out enforces for a stable share of the verified subjects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use http::{Request, Response};
use serde_json::{Value, json};
use tower::ServiceExt;
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{
    DeviceRecord, DeviceRegistry, Identity, MemoryDeviceRegistry, Posture, ZeroTrust,
};
use zerotrust_device::{
    DeviceCheck, DeviceCheckBuilder, DeviceCheckLayer, Enforcement, PostureAssertions,
};
use zerotrust_testkit::{TokenBuilder, respond_now, unix_now};

const NOW: i64 = 1_900_000_000;

/// What the handler saw: the context (if any), its device, signals, trust and decision.
async fn probe(zt: Option<ZeroTrust>) -> Json<Value> {
    let Some(zt) = zt else {
        return Json(json!({ "context": false }));
    };
    Json(json!({
        "context": true,
        "sub": zt.subject(),
        "device": zt.device().map(|d| d.device_id.to_string()),
        "signals": zt.signals().iter().map(|s| json!({"name": s.name(), "weight": s.weight()})).collect::<Vec<_>>(),
        "trust": zt.trust_level().as_str(),
        "decision": zt.decision().map(|d| json!({
            "enforced": d.enforced,
            "layer": d.layer,
            "code": d.reason.code(),
            "outcome": d.outcome.as_str(),
        })),
    }))
}

/// A registry holding `d-1` (fingerprint `right`, owned by `owner`) and `jb-1` (fingerprint
/// `right`, owned by `alice`, jailbroken).
fn registry() -> Arc<MemoryDeviceRegistry> {
    let registry = Arc::new(MemoryDeviceRegistry::new());
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("right")),
        owners: vec!["owner".into()],
        ..DeviceRecord::new("d-1", NOW)
    });
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("right")),
        owners: vec!["alice".into()],
        posture: Posture {
            jailbroken: Some(true),
            reported_at: Some(NOW),
            ..Posture::default()
        },
        ..DeviceRecord::new("jb-1", NOW)
    });
    registry
}

fn app_with(
    registry: Arc<dyn DeviceRegistry>,
    mode: Enforcement,
    configure: impl FnOnce(DeviceCheckBuilder) -> DeviceCheckBuilder,
) -> Router {
    let builder = DeviceCheck::builder_shared(registry)
        .device_headers()
        .clock(|| NOW)
        .enforcement(mode);
    let check = configure(builder).build().unwrap();
    Router::new()
        .route("/", get(probe))
        .layer(DeviceCheckLayer::new(check))
}

fn app(mode: Enforcement) -> Router {
    app_with(registry(), mode, |b| b)
}

/// A request of `subject` (verified by an earlier layer, if given) with `headers`.
fn request(subject: Option<&str>, headers: &[(&str, &str)]) -> Request<Body> {
    let mut req = Request::get("/");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let mut req = req.body(Body::empty()).unwrap();
    if let Some(subject) = subject {
        ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::new(Identity::new(
            subject,
            "https://idp",
            4_000_000_000,
        )));
    }
    req
}

async fn json_of(resp: Response<Body>) -> (u16, Value) {
    let status = resp.status().as_u16();
    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

async fn call(router: &Router, req: Request<Body>) -> (u16, Value) {
    json_of(router.clone().oneshot(req).await.unwrap()).await
}

/// Asserts a pass with the unenforced decision of the device layer.
fn assert_reported(status: u16, body: &Value, code: &str) {
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        json!({"enforced": false, "layer": "device", "code": code, "outcome": "deny"}),
        "{body}"
    );
}

const WRONG_FP: &[(&str, &str)] = &[("x-device-id", "d-1"), ("x-device-fingerprint", "wrong")];

#[tokio::test]
async fn enforce_is_the_default_and_refuses() {
    let check = DeviceCheck::builder(MemoryDeviceRegistry::new())
        .device_headers()
        .build()
        .unwrap();
    assert_eq!(check.enforcement(), Enforcement::Enforce);
    let (status, body) = call(&app(Enforcement::Enforce), request(Some("owner"), WRONG_FP)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "device.fingerprint_mismatch");
}

#[tokio::test]
async fn report_only_passes_a_fingerprint_mismatch_and_records_the_refusal() {
    let (status, body) = call(
        &app(Enforcement::ReportOnly),
        request(Some("owner"), WRONG_FP),
    )
    .await;
    assert_reported(status, &body, "device.fingerprint_mismatch");
    assert_eq!(body["sub"], "owner");
    // A device the layer would refuse is not recorded as established.
    assert_eq!(body["device"], Value::Null, "{body}");
}

#[tokio::test]
async fn report_only_passes_immediate_refusals_and_records_them() {
    let router = app(Enforcement::ReportOnly);
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "device.required"),
        (&[("x-device-id", "d-1")], "device.malformed_headers"),
        (
            &[("x-device-id", "not an id"), ("x-device-fingerprint", "x")],
            "device.malformed_headers",
        ),
    ];
    for (headers, code) in cases {
        let (status, body) = call(&router, request(Some("alice"), headers)).await;
        assert_reported(status, &body, code);
        assert_eq!(body["device"], Value::Null, "{body}");
        assert_eq!(body["signals"], json!([]), "{body}");
    }
}

#[tokio::test]
async fn report_only_passes_an_invalid_assertion_and_records_it() {
    let (_, keys) = common::mdm_keys();
    let router = app_with(registry(), Enforcement::ReportOnly, |b| {
        b.posture_assertions(PostureAssertions::new(keys, common::MDM).audience(common::API))
    });
    let (status, body) = call(
        &router,
        request(Some("alice"), &[("x-device-posture", "not.a.jws")]),
    )
    .await;
    assert_reported(status, &body, "device.assertion_invalid");
}

#[tokio::test]
async fn report_only_never_lends_a_refused_devices_binding_to_the_trust_level() {
    // A genuine, signed assertion for bob's device, presented by alice: owner mismatch.
    let (mdm, keys) = common::mdm_keys();
    let router = app_with(registry(), Enforcement::ReportOnly, |b| {
        b.posture_assertions(PostureAssertions::new(keys, common::MDM).audience(common::API))
            .clock(unix_now)
    });
    let now = unix_now();
    let assertion = TokenBuilder::new()
        .header("typ", "device-posture+jwt")
        .claim("iss", common::MDM)
        .claim("aud", common::API)
        .claim("iat", now)
        .claim("exp", now + 600)
        .claim("device_id", "bobs-laptop")
        .claim("owner", "bob")
        .claim(
            "posture",
            json!({"platform": "macos", "os_version": "14.4.1", "disk_encrypted": true,
                   "edr_running": true, "jailbroken": false}),
        )
        .sign(&mdm);
    let (status, body) = call(
        &router,
        request(Some("alice"), &[("x-device-posture", &assertion)]),
    )
    .await;
    assert_reported(status, &body, "device.owner_mismatch");
    assert_eq!(body["device"], Value::Null, "{body}");
    assert_ne!(body["trust"], "verified", "{body}");
}

#[tokio::test]
async fn report_only_passes_a_blocking_posture_rule_and_keeps_its_signal() {
    let (status, body) = call(
        &app(Enforcement::ReportOnly),
        request(
            Some("alice"),
            &[("x-device-id", "jb-1"), ("x-device-fingerprint", "right")],
        ),
    )
    .await;
    assert_reported(status, &body, "device.noncompliant.jailbroken");
    let signals = body["signals"].as_array().unwrap();
    let noncompliant = signals
        .iter()
        .find(|s| s["name"] == "device.noncompliant")
        .unwrap_or_else(|| panic!("{body}"));
    assert_eq!(noncompliant["weight"], 1.0);
}

#[tokio::test]
async fn report_only_passes_when_the_registry_is_down_and_records_an_error() {
    struct Down;
    impl DeviceRegistry for Down {
        fn get<'a>(
            &'a self,
            _: &'a str,
        ) -> zerotrust_core::StoreFuture<'a, Option<Arc<DeviceRecord>>> {
            Box::pin(async { Err(zerotrust_core::StoreError::Unavailable("down".into())) })
        }
        fn register(
            &self,
            _: DeviceRecord,
        ) -> zerotrust_core::StoreFuture<'_, zerotrust_core::Registration> {
            Box::pin(async { Err(zerotrust_core::StoreError::Unavailable("down".into())) })
        }
        fn update_posture<'a>(
            &'a self,
            _: &'a str,
            _: Posture,
            _: zerotrust_core::Compliance,
        ) -> zerotrust_core::StoreFuture<'a, bool> {
            Box::pin(async { Err(zerotrust_core::StoreError::Unavailable("down".into())) })
        }
        fn bind_owner<'a>(
            &'a self,
            _: &'a str,
            _: &'a str,
        ) -> zerotrust_core::StoreFuture<'a, bool> {
            Box::pin(async { Err(zerotrust_core::StoreError::Unavailable("down".into())) })
        }
        fn touch<'a>(&'a self, _: &'a str, _: i64) -> zerotrust_core::StoreFuture<'a, bool> {
            Box::pin(async { Err(zerotrust_core::StoreError::Unavailable("down".into())) })
        }
        fn remove<'a>(&'a self, _: &'a str) -> zerotrust_core::StoreFuture<'a, bool> {
            Box::pin(async { Err(zerotrust_core::StoreError::Unavailable("down".into())) })
        }
    }
    let right = [("x-device-id", "d-1"), ("x-device-fingerprint", "right")];
    let reporting = app_with(Arc::new(Down), Enforcement::ReportOnly, |b| b);
    let (status, body) = call(&reporting, request(Some("owner"), &right)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        json!({"enforced": false, "layer": "device", "code": "store.unavailable", "outcome": "error"}),
        "{body}"
    );
    let enforcing = app_with(Arc::new(Down), Enforcement::Enforce, |b| b);
    let (status, body) = call(&enforcing, request(Some("owner"), &right)).await;
    assert_eq!(status, 503, "{body}");
}

#[tokio::test]
async fn off_skips_the_check_entirely() {
    let registry = registry();
    let router = app_with(registry.clone(), Enforcement::Off, |b| b.auto_register());
    // A refused device, no device at all, an unknown device: all untouched.
    for headers in [
        WRONG_FP,
        &[],
        &[("x-device-id", "new-1"), ("x-device-fingerprint", "fp")],
    ] {
        let (status, body) = call(&router, request(Some("alice"), headers)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["device"], Value::Null, "{body}");
        assert_eq!(body["signals"], json!([]), "{body}");
        assert_eq!(body["decision"], Value::Null, "{body}");
    }
    // Nothing registered, and no context created for a request that had none.
    assert!(registry.lookup("new-1").is_none());
    let (status, body) = call(&router, request(None, WRONG_FP)).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({ "context": false }));
}

#[tokio::test]
async fn rollout_enforces_for_requests_without_a_subject() {
    let (status, body) = call(&app(Enforcement::rollout(0)), request(None, WRONG_FP)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "device.fingerprint_mismatch");
}

#[tokio::test]
async fn rollout_enforces_for_the_configured_share_of_subjects_stably() {
    let mode = Enforcement::rollout(30);
    let router = app(mode);
    let total: u32 = 10_000;
    let mut enforced: u32 = 0;
    for i in 0..total {
        let subject = format!("user-{i}");
        // d-1 belongs to `owner`; every other subject presenting it is refused (owner
        // mismatch). The in-memory registry answers at once: inline, no runtime needed.
        let right = [("x-device-id", "d-1"), ("x-device-fingerprint", "right")];
        let resp = respond_now(&router, request(Some(&subject), &right));
        match resp.status().as_u16() {
            403 => {
                enforced += 1;
                assert!(mode.enforces_for(Some(&subject)), "{subject}");
            }
            200 => {
                assert!(!mode.enforces_for(Some(&subject)), "{subject}");
                if i % 100 == 0 {
                    let (_, body) = json_of(resp).await;
                    assert_reported(200, &body, "device.owner_mismatch");
                    assert_eq!(body["sub"], subject.as_str());
                }
            }
            other => panic!("unexpected status {other} for {subject}"),
        }
    }
    let share = f64::from(enforced) / f64::from(total);
    assert!(
        (0.27..0.33).contains(&share),
        "{enforced} of {total} enforced"
    );
    // Stable: the same subject gets the same answer on every request.
    for i in 0..500 {
        let subject = format!("user-{i}");
        let statuses: Vec<u16> = (0..3)
            .map(|_| {
                let req = request(Some(&subject), WRONG_FP);
                respond_now(&router, req).status().as_u16()
            })
            .collect();
        let expected = if mode.enforces_for(Some(&subject)) {
            403
        } else {
            200
        };
        assert_eq!(statuses, [expected; 3], "{subject}");
    }
}

//! Every outcome of the device layer, through real HTTP on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::revocation::StoreFuture;
use zerotrust_core::{
    Compliance, DeviceRecord, DeviceRegistry, MemoryDeviceRegistry, Posture, Registration,
    StoreError,
};
use zerotrust_device::{PosturePolicy, RuleAction};
use zerotrust_testkit::{SigningKey, unix_now};

use common::{Env, env, env_with};

fn compliant_mac() -> Posture {
    Posture {
        platform: Some("macos".into()),
        os_version: Some("14.4.1".into()),
        disk_encrypted: Some(true),
        edr_running: Some(true),
        jailbroken: Some(false),
        reported_at: Some(unix_now()),
    }
}

/// Registers `id` with fingerprint `fp`, owned by `owner`, with a compliant posture.
fn register(env: &Env, id: &str, fp: &str, owner: &str) {
    env.registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of(fp)),
        owners: vec![owner.into()],
        posture: compliant_mac(),
        ..DeviceRecord::new(id, unix_now() - 3600)
    });
}

#[tokio::test]
async fn known_device_with_its_fingerprint_passes_reported_as_weakly_bound() {
    let env = env(|b| b.device_headers()).await;
    register(&env, "d-1", "fp-secret", "alice");
    let r = env
        .get(
            "alice",
            &[
                ("x-device-id", "d-1"),
                ("x-device-fingerprint", "fp-secret"),
            ],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["device"]["id"], "d-1");
    assert_eq!(r.body["device"]["binding"], "header");
    assert_eq!(r.body["device"]["status"], "known");
    assert_eq!(r.body["device"]["owned"], true);
    assert_eq!(r.signal_names(), vec!["device.weak_binding"]);
    // Header-bound devices never earn `verified`.
    assert_eq!(r.body["trust"], "high");
    // last_seen was an hour ago: the layer moved it forward.
    let rec = env.registry.lookup("d-1").unwrap();
    assert!(rec.last_seen >= unix_now() - 5);
}

#[tokio::test]
async fn fingerprint_mismatch_is_403() {
    let env = env(|b| b.device_headers()).await;
    register(&env, "d-1", "fp-secret", "alice");
    let r = env
        .get(
            "alice",
            &[("x-device-id", "d-1"), ("x-device-fingerprint", "fp-guess")],
        )
        .await;
    r.assert_refused(403, "device.fingerprint_mismatch");
    assert!(!r.body.to_string().contains("fp-secret"));
}

#[tokio::test]
async fn device_registered_without_fingerprint_cannot_be_claimed_by_headers() {
    let env = env(|b| b.device_headers()).await;
    env.registry
        .insert_new(DeviceRecord::new("cert-device", unix_now()));
    let r = env
        .get(
            "alice",
            &[
                ("x-device-id", "cert-device"),
                ("x-device-fingerprint", "anything"),
            ],
        )
        .await;
    r.assert_refused(403, "device.fingerprint_mismatch");
}

#[tokio::test]
async fn device_owned_by_another_subject_is_403() {
    let env = env(|b| b.device_headers()).await;
    register(&env, "d-1", "fp", "bob");
    let r = env
        .get(
            "alice",
            &[("x-device-id", "d-1"), ("x-device-fingerprint", "fp")],
        )
        .await;
    r.assert_refused(403, "device.owner_mismatch");
}

#[tokio::test]
async fn unknown_device_without_auto_registration_is_signalled_not_registered() {
    let env = env(|b| b.device_headers()).await;
    let r = env
        .get(
            "alice",
            &[("x-device-id", "d-new"), ("x-device-fingerprint", "fp")],
        )
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["device"]["status"], "unknown");
    assert_eq!(r.body["device"]["owned"], false);
    let unknown = r.signal("device.unknown").expect("device.unknown signal");
    assert_eq!(unknown["weight"], 0.5);
    assert_eq!(unknown["evidence"], "device d-new is not registered");
    assert!(env.registry.lookup("d-new").is_none());
}

#[tokio::test]
async fn first_sight_registers_the_device_to_the_subject_and_binds_its_fingerprint() {
    let env = env(|b| b.device_headers().auto_register()).await;
    let headers = [("x-device-id", "d-7"), ("x-device-fingerprint", "fp-7")];
    let first = env.get("alice", &headers).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert_eq!(first.body["device"]["status"], "new");
    assert!(first.signal_names().contains(&"device.new".to_owned()));
    let rec = env.registry.lookup("d-7").unwrap();
    assert_eq!(rec.owners, vec!["alice".to_owned()]);
    assert!(
        rec.fingerprint
            .unwrap()
            .matches(&FingerprintDigest::of("fp-7"))
    );

    let second = env.get("alice", &headers).await;
    assert_eq!(second.body["device"]["status"], "known");
    assert!(!second.signal_names().contains(&"device.new".to_owned()));

    // The device is alice's now: bob cannot use it, nor can a different fingerprint.
    env.get("bob", &headers)
        .await
        .assert_refused(403, "device.owner_mismatch");
    env.get(
        "alice",
        &[("x-device-id", "d-7"), ("x-device-fingerprint", "fp-other")],
    )
    .await
    .assert_refused(403, "device.fingerprint_mismatch");
}

#[tokio::test]
async fn an_unowned_known_device_is_bound_to_its_first_subject_when_auto_registering() {
    let env = env(|b| b.device_headers().auto_register()).await;
    env.registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("fp")),
        ..DeviceRecord::new("d-free", unix_now())
    });
    let headers = [("x-device-id", "d-free"), ("x-device-fingerprint", "fp")];
    let r = env.get("alice", &headers).await;
    assert_eq!(r.body["device"]["owned"], true, "{r:?}");
    assert!(env.registry.lookup("d-free").unwrap().is_owned_by("alice"));
    env.get("bob", &headers)
        .await
        .assert_refused(403, "device.owner_mismatch");
}

#[tokio::test]
async fn no_device_evidence_is_403_unless_allowed_then_signalled() {
    let strict = env(|b| b.device_headers()).await;
    strict
        .get("alice", &[])
        .await
        .assert_refused(403, "device.required");

    let relaxed = env(|b| b.device_headers().allow_missing_device(0.4)).await;
    let r = relaxed.get("alice", &[]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["device"], serde_json::Value::Null);
    assert_eq!(r.signal("device.absent").unwrap()["weight"], 0.4);
}

#[tokio::test]
async fn malformed_device_headers_are_400() {
    let env = env(|b| b.device_headers()).await;
    for headers in [
        vec![("x-device-id", "d-1")],
        vec![("x-device-fingerprint", "fp")],
        vec![("x-device-id", "d 1"), ("x-device-fingerprint", "fp")],
        vec![("x-device-id", ""), ("x-device-fingerprint", "fp")],
        vec![
            ("x-device-id", "d-1"),
            ("x-device-id", "d-2"),
            ("x-device-fingerprint", "fp"),
        ],
    ] {
        let r = env.get("alice", &headers).await;
        r.assert_refused(400, "device.malformed_headers");
    }
    let long = "x".repeat(129);
    env.get(
        "alice",
        &[("x-device-id", &long), ("x-device-fingerprint", "fp")],
    )
    .await
    .assert_refused(400, "device.malformed_headers");
}

#[tokio::test]
async fn signed_posture_assertion_identifies_the_device_and_updates_its_posture() {
    let env = env(|b| b).await;
    env.registry.insert_new(DeviceRecord {
        owners: vec!["alice".into()],
        ..DeviceRecord::new("mac-1", unix_now() - 60)
    });
    let token = env.sign(&env.assertion("mac-1", "alice"));
    let r = env.get("alice", &[("x-device-posture", &token)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["device"]["binding"], "assertion");
    assert_eq!(r.body["device"]["os_version"], "14.4.1");
    assert_eq!(r.signal_names(), Vec::<String>::new());
    // Identity, a cryptographically bound device and no signals: the highest trust.
    assert_eq!(r.body["trust"], "verified");
    let rec = env.registry.lookup("mac-1").unwrap();
    assert_eq!(rec.posture.os_version.as_deref(), Some("14.4.1"));
    assert_eq!(rec.compliance, Compliance::Compliant);
}

#[tokio::test]
async fn forged_or_foreign_assertions_are_403_invalid() {
    let env = env(|b| b).await;
    let good = env.assertion("mac-1", "alice");
    let forger = SigningKey::es256("mdm-1"); // same kid, other key
    let cases = vec![
        ("forged signature", good.sign(&forger)),
        ("wrong typ", env.sign(&good.clone().header("typ", "at+jwt"))),
        ("no typ", env.sign(&good.clone().without_header("typ"))),
        (
            "wrong issuer",
            env.sign(&good.clone().claim("iss", "https://evil.test")),
        ),
        (
            "wrong audience",
            env.sign(&good.clone().claim("aud", "https://other.test")),
        ),
        (
            "no device id",
            env.sign(&good.clone().without_claim("device_id")),
        ),
        (
            "issued in the future",
            env.sign(&good.clone().claim("iat", unix_now() + 3600)),
        ),
        ("alg none", good.unsigned("none")),
        ("garbage", "not-a-jws".to_owned()),
    ];
    for (what, token) in cases {
        let r = env.get("alice", &[("x-device-posture", &token)]).await;
        assert_eq!(r.code(), "device.assertion_invalid", "{what}: {r:?}");
        r.assert_refused(403, "device.assertion_invalid");
    }
}

#[tokio::test]
async fn expired_or_stale_assertions_are_403_expired() {
    let env = env(|b| b).await;
    let now = unix_now();
    let expired = env.sign(
        &env.assertion("mac-1", "alice")
            .claim("iat", now - 1200)
            .claim("exp", now - 600),
    );
    env.get("alice", &[("x-device-posture", &expired)])
        .await
        .assert_refused(403, "device.assertion_expired");
    // Not expired, but issued two hours ago: older than the one-hour freshness limit.
    let stale = env.sign(
        &env.assertion("mac-1", "alice")
            .claim("iat", now - 7200)
            .claim("exp", now + 600),
    );
    env.get("alice", &[("x-device-posture", &stale)])
        .await
        .assert_refused(403, "device.assertion_expired");
}

#[tokio::test]
async fn assertion_for_another_owner_is_403() {
    let env = env(|b| b).await;
    let token = env.sign(&env.assertion("mac-1", "bob"));
    env.get("alice", &[("x-device-posture", &token)])
        .await
        .assert_refused(403, "device.owner_mismatch");
}

#[tokio::test]
async fn evidence_naming_two_devices_is_403() {
    let env = env(|b| b.device_headers()).await;
    register(&env, "d-2", "fp", "alice");
    let token = env.sign(&env.assertion("mac-1", "alice"));
    env.get(
        "alice",
        &[
            ("x-device-posture", &token),
            ("x-device-id", "d-2"),
            ("x-device-fingerprint", "fp"),
        ],
    )
    .await
    .assert_refused(403, "device.id_conflict");
}

#[tokio::test]
async fn noncompliant_posture_is_a_signal_naming_the_rule_or_403_when_blocking() {
    let policy = || {
        PosturePolicy::builder()
            .min_os_version("macos", "15.0")
            .os_version_action(RuleAction::Signal(0.4))
            .require_edr(RuleAction::Block)
            .build()
    };
    let env = env(move |b| b.posture_policy(policy())).await;
    // OS too old: a signal with the rule and the versions as evidence.
    let token = env.sign(&env.assertion("mac-1", "alice"));
    let r = env.get("alice", &[("x-device-posture", &token)]).await;
    assert_eq!(r.status, 200, "{r:?}");
    let s = r.signal("device.noncompliant").unwrap();
    assert_eq!(s["weight"], 0.4);
    assert_eq!(s["evidence"], "os_version: macos 14.4.1 is below 15.0");
    assert_eq!(r.body["device"]["violations"], json!(["os_version"]));
    // EDR off breaks a blocking rule: 403 naming it.
    let token = env.sign(&env.assertion("mac-1", "alice").claim(
        "posture",
        json!({"platform": "macos", "os_version": "15.1", "disk_encrypted": true,
               "edr_running": false, "jailbroken": false}),
    ));
    env.get("alice", &[("x-device-posture", &token)])
        .await
        .assert_refused(403, "device.noncompliant.edr");
}

#[tokio::test]
async fn jailbroken_devices_are_blocked_by_the_default_policy() {
    let env = env(|b| b).await;
    let token = env.sign(&env.assertion("phone-1", "alice").claim(
        "posture",
        json!({"platform": "ios", "os_version": "17.4", "disk_encrypted": true,
               "jailbroken": true}),
    ));
    env.get("alice", &[("x-device-posture", &token)])
        .await
        .assert_refused(403, "device.noncompliant.jailbroken");
}

/// A registry that cannot answer.
struct DownRegistry;

impl DeviceRegistry for DownRegistry {
    fn get<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Arc<DeviceRecord>>> {
        Box::pin(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Err(StoreError::Unavailable("connection refused".into()))
        })
    }
    fn register(&self, _: DeviceRecord) -> StoreFuture<'_, Registration> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
    fn update_posture<'a>(
        &'a self,
        _: &'a str,
        _: Posture,
        _: Compliance,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
    fn bind_owner<'a>(&'a self, _: &'a str, _: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
    fn touch<'a>(&'a self, _: &'a str, _: i64) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
    fn remove<'a>(&'a self, _: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::Unavailable("down".into())) })
    }
}

#[tokio::test]
async fn registry_down_is_503_unless_fail_open_then_degraded_signal() {
    let headers = [("x-device-id", "d-1"), ("x-device-fingerprint", "fp")];
    let unused = Arc::new(MemoryDeviceRegistry::new());
    let closed = env_with(Arc::new(DownRegistry), unused.clone(), |b| {
        b.device_headers()
    })
    .await;
    let r = closed.get("alice", &headers).await;
    r.assert_refused(503, "store.unavailable");
    assert_eq!(r.retry_after.as_deref(), Some("1"));
    assert!(!r.body.to_string().contains("connection refused"));

    let open = env_with(Arc::new(DownRegistry), unused, |b| {
        b.device_headers().fail_open_on_store_error(0.6)
    })
    .await;
    let r = open.get("alice", &headers).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.signal("store.degraded").unwrap()["weight"], 0.6);
}

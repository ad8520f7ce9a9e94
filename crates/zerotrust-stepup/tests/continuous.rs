//! Continuous verification (behaviour, lockout), roll-outs and workload identities, with the
//! layer called inline: identities and certificates are put into the request as the earlier
//! layers and the TLS acceptor would.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, Response, StatusCode};
use rcgen::{CertificateParams, KeyPair, SanType};
use zerotrust_core::revocation::StoreFuture;
use zerotrust_core::{
    Behavior, BehaviorStore, BehaviorWindows, Enforcement, Identity, MemoryBehaviorStore,
    PeerCertificate, StoreError, ZeroTrust,
};
use zerotrust_stepup::{BehaviorPolicy, Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::respond_now;

const T0: i64 = 1_900_000_200;

async fn handler(zt: ZeroTrust) -> String {
    zt.signals()
        .iter()
        .map(|s| s.name().to_owned())
        .collect::<Vec<_>>()
        .join(",")
}

fn app(policy: StepUpPolicy) -> Router {
    Router::new()
        .route("/{*path}", get(handler))
        .layer(StepUpLayer::new(policy))
}

fn request(path: &str, subject: Option<&str>, cert: Option<&PeerCertificate>) -> Request<Body> {
    let mut req = Request::get(path).body(Body::empty()).unwrap();
    if let Some(subject) = subject {
        ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::new(Identity::new(
            subject,
            "https://idp",
            T0 + 86_400,
        )));
    }
    if let Some(cert) = cert {
        req.extensions_mut().insert(cert.clone());
    }
    req
}

fn code(resp: &Response<Body>) -> String {
    resp.extensions()
        .get::<ZeroTrust>()
        .and_then(|zt| zt.decision())
        .map(|d| d.reason.code().to_owned())
        .unwrap_or_default()
}

#[test]
fn repeated_failures_lock_the_subject_out_and_the_lockout_ends() {
    let now = Arc::new(AtomicI64::new(T0));
    let clock = Arc::clone(&now);
    let policy = StepUpPolicy::builder()
        .route("/open", Requirements::new())
        .route("/admin", Requirements::new().any_role(["admin"]))
        .behavior(
            MemoryBehaviorStore::new(),
            BehaviorPolicy {
                lockout_after: 3,
                lockout_for: Duration::from_secs(120),
                failures_from: 2,
                ..BehaviorPolicy::default()
            },
        )
        .clock(move || clock.load(Ordering::SeqCst))
        .build()
        .unwrap();
    let app = app(policy);
    let get = |path: &str, who: &str| respond_now(&app, request(path, Some(who), None));

    assert_eq!(get("/admin", "mallory").status(), StatusCode::FORBIDDEN);
    assert_eq!(get("/admin", "mallory").status(), StatusCode::FORBIDDEN);
    // Two failures: the next request carries behavior.failures.
    let body = get("/open", "mallory");
    assert_eq!(body.status(), StatusCode::OK);
    let text = futures_text(body.into_body());
    assert!(text.contains("behavior.failures"), "{text}");
    // The third failure locks mallory out, even from routes she may use.
    assert_eq!(get("/admin", "mallory").status(), StatusCode::FORBIDDEN);
    let locked = get("/open", "mallory");
    assert_eq!(locked.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(code(&locked), "stepup.locked_out");
    assert_eq!(locked.headers()["retry-after"], "120");
    // Others are not affected.
    assert_eq!(get("/open", "alice").status(), StatusCode::OK);
    // After the lockout (and past the failure window) mallory is back.
    now.store(T0 + 301, Ordering::SeqCst);
    let back = get("/open", "mallory");
    assert_eq!(back.status(), StatusCode::OK);
    assert_eq!(futures_text(back.into_body()), "");
}

fn futures_text(body: Body) -> String {
    use std::future::Future;
    let fut = std::pin::pin!(axum::body::to_bytes(body, 1 << 20));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.poll(&mut cx) {
        std::task::Poll::Ready(Ok(bytes)) => String::from_utf8(bytes.to_vec()).unwrap(),
        _ => panic!("body not ready"),
    }
}

#[test]
fn bursts_and_sensitive_route_sweeps_become_signals() {
    let policy = StepUpPolicy::builder()
        .route("/admin/*", Requirements::new().sensitive())
        .behavior(
            MemoryBehaviorStore::new(),
            BehaviorPolicy {
                burst_above: 5,
                sensitive_routes_above: 2,
                ..BehaviorPolicy::default()
            },
        )
        .clock(|| T0)
        .build()
        .unwrap();
    let app = app(policy);
    let mut last = String::new();
    for _ in 0..6 {
        last = futures_text(respond_now(&app, request("/admin/a", Some("eve"), None)).into_body());
    }
    assert!(last.contains("behavior.burst"), "{last}");
    assert!(!last.contains("behavior.sensitive_routes"), "{last}");
    // The same pattern counts once: /admin/* is one sensitive route, whatever the path below.
    let policy = StepUpPolicy::builder()
        .route("/admin/*", Requirements::new().sensitive())
        .route("/billing/*", Requirements::new().sensitive())
        .route("/keys/*", Requirements::new().sensitive())
        .behavior(
            MemoryBehaviorStore::new(),
            BehaviorPolicy {
                sensitive_routes_above: 2,
                ..BehaviorPolicy::default()
            },
        )
        .clock(|| T0)
        .build()
        .unwrap();
    let app = Router::new()
        .route("/{*path}", get(handler))
        .layer(StepUpLayer::new(policy));
    for path in ["/admin/x", "/admin/y", "/billing/x"] {
        let text = futures_text(respond_now(&app, request(path, Some("eve"), None)).into_body());
        assert!(
            !text.contains("behavior.sensitive_routes"),
            "{path}: {text}"
        );
    }
    let text = futures_text(respond_now(&app, request("/keys/x", Some("eve"), None)).into_body());
    assert!(text.contains("behavior.sensitive_routes"), "{text}");
}

/// A behaviour store that cannot answer.
struct Down;

impl BehaviorStore for Down {
    fn observe<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: Option<&'a str>,
        _: &'a BehaviorWindows,
    ) -> StoreFuture<'a, Behavior> {
        Box::pin(async { Err(StoreError::Unavailable("refused".into())) })
    }
    fn record_failure<'a>(
        &'a self,
        _: &'a str,
        _: i64,
        _: &'a BehaviorWindows,
    ) -> StoreFuture<'a, u32> {
        Box::pin(async { Err(StoreError::Unavailable("refused".into())) })
    }
    fn lock_out<'a>(&'a self, _: &'a str, _: i64) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreError::Unavailable("refused".into())) })
    }
}

#[test]
fn an_unreachable_behaviour_store_is_503_unless_fail_open() {
    let closed = app(StepUpPolicy::builder()
        .route("/open", Requirements::new())
        .behavior(Down, BehaviorPolicy::default())
        .build()
        .unwrap());
    let r = respond_now(&closed, request("/open", Some("alice"), None));
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(code(&r), "store.unavailable");
    let open = app(StepUpPolicy::builder()
        .route("/open", Requirements::new())
        .behavior(
            Down,
            BehaviorPolicy {
                fail_open: true,
                ..BehaviorPolicy::default()
            },
        )
        .build()
        .unwrap());
    let r = respond_now(&open, request("/open", Some("alice"), None));
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(futures_text(r.into_body()), "store.degraded");
}

#[test]
fn a_rollout_enforces_for_its_share_of_subjects_stably() {
    let policy = StepUpPolicy::builder()
        .route(
            "/beta",
            Requirements::new()
                .any_role(["beta"])
                .enforcement(Enforcement::rollout(30)),
        )
        .build()
        .unwrap();
    let app = app(policy);
    let mut refused = 0;
    for i in 0..10_000 {
        let subject = format!("user-{i}");
        let r = respond_now(&app, request("/beta", Some(&subject), None));
        match r.status() {
            StatusCode::FORBIDDEN => refused += 1,
            StatusCode::OK => {}
            other => panic!("{other}"),
        }
        // The same subject lands on the same side every time.
        if i % 500 == 0 {
            let again = respond_now(&app, request("/beta", Some(&subject), None));
            assert_eq!(again.status(), r.status());
        }
    }
    assert!(
        (2_700..=3_300).contains(&refused),
        "{refused} of 10,000 enforced"
    );
}

fn cert(uri: &str) -> PeerCertificate {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    PeerCertificate::from_der(cert.der()).unwrap()
}

#[test]
fn workload_routes_accept_only_the_listed_workloads() {
    let frontend = "spiffe://example.test/ns/prod/sa/frontend";
    let policy = StepUpPolicy::builder()
        .route(
            "/internal/*",
            Requirements::new().anonymous().workloads([frontend]),
        )
        .build()
        .unwrap();
    let app = app(policy);
    let ok = respond_now(
        &app,
        request("/internal/orders", None, Some(&cert(frontend))),
    );
    assert_eq!(ok.status(), StatusCode::OK);
    let other = cert("spiffe://example.test/ns/prod/sa/batch");
    let r = respond_now(&app, request("/internal/orders", None, Some(&other)));
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(code(&r), "stepup.workload_not_allowed");
    let r = respond_now(&app, request("/internal/orders", Some("alice"), None));
    assert_eq!(code(&r), "stepup.workload_not_allowed");
}

#[test]
fn routes_need_an_identity_unless_anonymous() {
    let policy = StepUpPolicy::builder()
        .route("/healthz", Requirements::new().anonymous())
        .route("/me", Requirements::new())
        .build()
        .unwrap();
    let app = app(policy);
    assert_eq!(
        respond_now(&app, request("/healthz", None, None)).status(),
        StatusCode::OK
    );
    let r = respond_now(&app, request("/me", None, None));
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_eq!(code(&r), "stepup.identity_required");
}

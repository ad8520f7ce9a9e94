//! JwtVerifyLayer under each `Enforcement` mode: report-only passes refused requests without an
//! identity and records the would-be refusal, off leaves the request untouched, and a roll-out
//! enforces every refusal of an anonymous request while splitting requests whose subject an
//! earlier layer verified.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)] // test code asserts by panicking

mod common;

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use common::{Reply, client, issuer_for, send, serve};
use http::Request;
use serde_json::{Value, json};
use zerotrust_core::{Identity, RevocationStore, StoreError, StoreFuture, ZeroTrust};
use zerotrust_jwt::{Enforcement, JwtVerifier, JwtVerifyLayer};
use zerotrust_testkit::{DevIssuer, b64url, respond_now, unix_now};

/// What the handler saw: whether any context exists, the subject, the decision, the signals.
async fn probe(zt: Option<ZeroTrust>) -> Json<Value> {
    let Some(zt) = zt else {
        return Json(json!({ "context": false }));
    };
    Json(json!({
        "context": true,
        "sub": zt.subject(),
        "signals": zt.signals().len(),
        "decision": zt.decision().map(|d| json!({
            "enforced": d.enforced,
            "layer": d.layer,
            "code": d.reason.code(),
            "outcome": d.outcome.as_str(),
        })),
    }))
}

fn app(layer: JwtVerifyLayer) -> Router {
    Router::new().route("/api/me", get(probe)).layer(layer)
}

fn layer(verifier: JwtVerifier, mode: Enforcement) -> JwtVerifyLayer {
    JwtVerifyLayer::new(verifier).realm("api").enforcement(mode)
}

fn verifier(dev: &DevIssuer) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(issuer_for(dev))
        .build()
        .unwrap()
}

async fn start(dev: &DevIssuer, mode: Enforcement) -> String {
    let addr = serve(app(layer(verifier(dev), mode))).await;
    format!("http://{addr}")
}

async fn get_as(base: &str, token: Option<&str>) -> Reply {
    let mut req = client().get(format!("{base}/api/me"));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    send(req).await
}

/// Asserts the request passed with a context, no identity, and the unenforced decision.
fn assert_reported(reply: &Reply, code: &str, outcome: &str) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["context"], true, "{reply:?}");
    assert_eq!(reply.body["sub"], Value::Null, "no identity: {reply:?}");
    let decision = &reply.body["decision"];
    assert_eq!(decision["enforced"], false, "{reply:?}");
    assert_eq!(decision["layer"], "jwt", "{reply:?}");
    assert_eq!(decision["code"], code, "{reply:?}");
    assert_eq!(decision["outcome"], outcome, "{reply:?}");
}

/// `token` with its claims replaced by `claims` and its signature kept: a forgery.
fn tampered(token: &str, claims: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    format!("{}.{}.{}", parts[0], b64url(claims), parts[2])
}

#[tokio::test]
async fn report_only_passes_an_expired_token_without_identity_and_records_the_refusal() {
    let dev = DevIssuer::start().await.unwrap();
    let base = start(&dev, Enforcement::ReportOnly).await;
    let expired = dev.sign(&dev.token().claim("exp", unix_now() - 3600));
    let reply = get_as(&base, Some(&expired)).await;
    assert_reported(&reply, "token.expired", "deny");
}

#[tokio::test]
async fn report_only_never_passes_the_unverified_subject_of_a_forged_token() {
    let dev = DevIssuer::start().await.unwrap();
    let base = start(&dev, Enforcement::ReportOnly).await;
    let forged = tampered(
        &dev.mint(),
        &dev.token().claim("sub", "mallory").claims_json(),
    );
    let reply = get_as(&base, Some(&forged)).await;
    assert_reported(&reply, "token.signature_invalid", "deny");
}

#[tokio::test]
async fn report_only_passes_a_request_without_a_token_and_records_the_challenge() {
    let dev = DevIssuer::start().await.unwrap();
    let base = start(&dev, Enforcement::ReportOnly).await;
    let reply = get_as(&base, None).await;
    assert_reported(&reply, "token.missing", "challenge");
    assert!(reply.challenge.is_none(), "no challenge on a pass");
}

#[tokio::test]
async fn report_only_passes_a_malformed_request_and_records_it() {
    let dev = DevIssuer::start().await.unwrap();
    let base = start(&dev, Enforcement::ReportOnly).await;
    let token = format!("Bearer {}", dev.mint());
    let reply = send(
        client()
            .get(format!("{base}/api/me"))
            .header("authorization", &token)
            .header("authorization", &token),
    )
    .await;
    assert_reported(&reply, "request.multiple_credentials", "deny");
}

#[tokio::test]
async fn report_only_keeps_the_identity_of_a_valid_token_and_records_nothing() {
    let dev = DevIssuer::start().await.unwrap();
    let base = start(&dev, Enforcement::ReportOnly).await;
    let reply = get_as(&base, Some(&dev.mint())).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["sub"], "alice");
    assert_eq!(reply.body["decision"], Value::Null);
}

#[tokio::test]
async fn report_only_passes_when_the_issuer_keys_are_unavailable_and_records_an_error() {
    let dev = DevIssuer::start().await.unwrap();
    let token = dev.mint();
    dev.set_failing(true);
    let base = start(&dev, Enforcement::ReportOnly).await;
    let reply = get_as(&base, Some(&token)).await;
    assert_reported(&reply, "issuer.keys_unavailable", "error");
    assert!(reply.retry_after.is_none());

    // The same outage with the default mode is still 503, never a pass.
    let enforcing = start(&dev, Enforcement::Enforce).await;
    let reply = get_as(&enforcing, Some(&token)).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.code(), "issuer.keys_unavailable");
}

struct BrokenStore;

impl RevocationStore for BrokenStore {
    fn is_revoked<'a>(&'a self, _jti: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }
    fn revoke<'a>(&'a self, _jti: &'a str, _until: SystemTime) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }
}

#[tokio::test]
async fn report_only_passes_a_valid_token_without_identity_when_the_revocation_store_is_down() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev))
        .revocation_store(Arc::new(BrokenStore))
        .build()
        .unwrap();
    let base = format!(
        "http://{}",
        serve(app(layer(verifier, Enforcement::ReportOnly))).await
    );
    let reply = get_as(&base, Some(&dev.mint())).await;
    // Not revocation-checked, so not an identity: the token's subject is not passed on.
    assert_reported(&reply, "store.unavailable", "error");
}

#[tokio::test]
async fn off_calls_the_service_untouched() {
    let dev = DevIssuer::start().await.unwrap();
    let base = start(&dev, Enforcement::Off).await;
    let expired = dev.sign(&dev.token().claim("exp", unix_now() - 3600));
    for token in [None, Some(expired.as_str()), Some(&dev.mint())] {
        let reply = get_as(&base, token).await;
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body, json!({ "context": false }), "{reply:?}");
    }
    // Nothing was verified, so the issuer was never asked for keys.
    assert_eq!(dev.discovery_hits(), 0);
    assert_eq!(dev.jwks_hits(), 0);
}

#[tokio::test]
async fn rollout_enforces_every_refusal_of_an_anonymous_request_whatever_the_percentage() {
    let dev = DevIssuer::start().await.unwrap();
    // Even a roll-out to 0% enforces: a refused token has no verified subject to bucket by.
    let base = start(&dev, Enforcement::rollout(0)).await;
    let expired = dev.sign(&dev.token().claim("exp", unix_now() - 3600));
    get_as(&base, Some(&expired))
        .await
        .assert_invalid_token("token.expired");
    let reply = get_as(&base, None).await;
    assert_eq!(reply.status, 401, "{reply:?}");
    assert_eq!(reply.code(), "token.missing");
    let reply = get_as(&base, Some(&dev.mint())).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["sub"], "alice");
}

/// A request without a token whose context already holds `subject`'s identity (as an earlier
/// authentication layer would have set it).
fn anonymous_request_of(subject: &str) -> Request<Body> {
    let mut req = Request::get("/api/me").body(Body::empty()).unwrap();
    ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::new(Identity::new(
        subject,
        "https://idp",
        4_000_000_000,
    )));
    req
}

#[tokio::test]
async fn rollout_splits_refusals_by_a_subject_an_earlier_layer_verified() {
    let dev = DevIssuer::start().await.unwrap();
    let mode = Enforcement::rollout(30);
    let router = app(layer(verifier(&dev), mode));
    let total = 10_000;
    let mut enforced = 0;
    for i in 0..total {
        let subject = format!("user-{i}");
        // A missing token is refused before any await: the router answers on its first poll.
        let resp = respond_now(&router, anonymous_request_of(&subject));
        match resp.status().as_u16() {
            401 => {
                enforced += 1;
                assert!(mode.enforces_for(Some(&subject)), "{subject}");
            }
            200 => {
                assert!(!mode.enforces_for(Some(&subject)), "{subject}");
                if i % 500 == 0 {
                    let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                        .await
                        .unwrap();
                    let body: Value = serde_json::from_slice(&body).unwrap();
                    assert_eq!(body["sub"], subject.as_str());
                    assert_eq!(
                        body["decision"],
                        json!({"enforced": false, "layer": "jwt", "code": "token.missing", "outcome": "challenge"})
                    );
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
    // Stable: the same subject gets the same answer every time.
    for i in 0..200 {
        let subject = format!("user-{i}");
        let first = respond_now(&router, anonymous_request_of(&subject)).status();
        let again = respond_now(&router, anonymous_request_of(&subject)).status();
        assert_eq!(first, again, "{subject}");
    }
}

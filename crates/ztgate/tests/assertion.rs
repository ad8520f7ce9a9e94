//! The identity assertion binds the query, and is reused for identical requests only when
//! `identity.reuse_seconds` asks for it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use http::StatusCode;
use serde_json::Value;

/// The assertion the upstream received for GET `path` (with any query).
async fn assertion_for(env: &Env, c: &HttpClient, path: &str, extra: &[(&str, &str)]) -> String {
    let a = env.get_with_token(c, path, extra).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    echoed_assertion(&a.json()).to_owned()
}

async fn claims(env: &Env, c: &HttpClient, assertion: &str) -> Value {
    verify_assertion(c, &env.base(), assertion, &env.up.url()).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_assertion_carries_the_query_the_upstream_receives_and_none_without_one() {
    let env = env("query", API_ROUTE).await;
    let c = client();
    let with = assertion_for(&env, &c, "/api/reports?b=2&a=%20x", &[]).await;
    let claims_with = claims(&env, &c, &with).await;
    assert_eq!(claims_with["path"], "/api/reports");
    assert_eq!(claims_with["query"], "b=2&a=%20x");
    let without = assertion_for(&env, &c, "/api/reports", &[]).await;
    assert!(claims(&env, &c, &without).await.get("query").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn without_reuse_every_request_gets_a_fresh_assertion() {
    let env = env("no-reuse", API_ROUTE).await;
    let c = client();
    let a = assertion_for(&env, &c, "/api/x?q=1", &[]).await;
    let b = assertion_for(&env, &c, "/api/x?q=1", &[]).await;
    assert_ne!(a, b);
    assert_ne!(
        claims(&env, &c, &a).await["jti"],
        claims(&env, &c, &b).await["jti"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn with_reuse_identical_requests_share_an_assertion_and_any_claim_change_gets_a_new_one() {
    let routes = format!(
        "[identity]\nreuse_seconds = 1\n[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{API_ROUTE}"
    );
    let env = env("reuse", &routes).await;
    let c = client();
    let xff = [("x-forwarded-for", "203.0.113.7")];
    let first = assertion_for(&env, &c, "/api/x?q=1", &xff).await;
    let again = assertion_for(&env, &c, "/api/x?q=1", &xff).await;
    assert_eq!(
        first, again,
        "an identical request within the window reuses"
    );
    let claims_first = claims(&env, &c, &first).await;
    // It keeps at least ttl - reuse_seconds of validity (30 - 1), give or take the clock's second.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(claims_first["exp"].as_i64().unwrap() - now >= 28);

    // Any difference in the claims: a new assertion.
    for (path, extra) in [
        ("/api/y?q=1", &xff[..]),
        ("/api/x?q=2", &xff[..]),
        ("/api/x", &xff[..]),
        ("/api/x?q=1", &[("x-forwarded-for", "203.0.113.8")][..]),
    ] {
        let other = assertion_for(&env, &c, path, extra).await;
        assert_ne!(other, first, "{path} {extra:?}");
    }
    let posted = {
        let req = env
            .request_with_token(http::Method::POST, "/api/x?q=1")
            .header("x-forwarded-for", "203.0.113.7")
            .body(axum::body::Body::empty())
            .unwrap();
        let a = send(&c, req).await;
        assert_eq!(a.status, StatusCode::OK);
        echoed_assertion(&a.json()).to_owned()
    };
    assert_ne!(posted, first, "another method");

    // After the window, a fresh one.
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let later = assertion_for(&env, &c, "/api/x?q=1", &xff).await;
    assert_ne!(later, first);
}

#[test]
fn reuse_seconds_must_be_at_most_10_and_below_the_ttl() {
    let parse = |identity: &str| parse_config(&format!("{MINIMAL_CONFIG}[identity]\n{identity}\n"));
    assert!(parse("reuse_seconds = 10").is_ok());
    let e = parse("reuse_seconds = 11").unwrap_err();
    assert_eq!(e.key, "identity.reuse_seconds", "{e}");
    let e = parse("ttl_seconds = 5\nreuse_seconds = 5").unwrap_err();
    assert_eq!(e.key, "identity.reuse_seconds", "{e}");
    assert_eq!(parse("").unwrap().identity.reuse_seconds, 0);
}

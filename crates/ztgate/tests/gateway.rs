//! ztgate in front of a real upstream on 127.0.0.1: decisions, identity to the upstream,
//! header hygiene, upstream failures, operator endpoints.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use http::StatusCode;

const ROUTE: &str = r#"
[[route]]
prefix = "/api"
upstream = "{upstream}"
[route.policy]
scopes = ["reports:read"]

[[route]]
prefix = "/admin"
upstream = "{upstream}"
[route.policy]
scopes = ["admin:write"]

[[route]]
prefix = "/public"
upstream = "{upstream}"
[route.policy]
anonymous = true

[[route]]
prefix = "/audit-trial"
upstream = "{upstream}"
[route.policy]
scopes = ["admin:write"]
mode = "report_only"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn allowed_request_reaches_upstream_with_an_assertion_it_can_verify() {
    let env = env("allowed", ROUTE).await;
    let c = client();
    let a = env.get_with_token(&c, "/api/reports?x=1", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let echo = a.json();
    assert_eq!(echo["path"], "/api/reports");
    assert_eq!(echo["query"], "x=1");
    let claims = env.echoed_claims(&c, &echo).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], "ztgate");
    assert_eq!(claims["aud"], env.up.url());
    assert_eq!(claims["method"], "GET");
    assert_eq!(claims["path"], "/api/reports");
    assert_eq!(claims["zt"]["decision"], "allow");
    assert_eq!(claims["zt"]["idp"], env.dev.issuer());
    assert!(claims["zt"]["trust_level"].is_string());
    assert!(claims["zt"]["risk"].is_number());
    // The bearer token is not replayed upstream; Host is the upstream's authority.
    assert!(echoed_header(&echo, "authorization").is_none());
    assert_eq!(
        echoed_header(&echo, "host"),
        Some(env.up.addr.to_string().as_str())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_token_is_401_with_a_bearer_challenge_and_never_reaches_upstream() {
    let env = env("missing", ROUTE).await;
    let c = client();
    let a = get(&c, &env.url("/api/reports"), None, &[]).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert!(
        a.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
    assert_eq!(a.headers["content-type"], "application/problem+json");
    let bad = get(&c, &env.url("/api/reports"), Some("a.b.c"), &[]).await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(
        bad.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(env.up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn token_without_the_route_scope_is_403_and_never_reaches_upstream() {
    let env = env("scope", ROUTE).await;
    let c = client();
    let a = env.get_with_token(&c, "/admin/users", &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json()["status"], 403);
    assert_eq!(env.up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn report_only_route_forwards_a_refused_request_and_tells_the_upstream() {
    let env = env("report-only", ROUTE).await;
    let c = client();
    let a = env.get_with_token(&c, "/audit-trial/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let echo = a.json();
    let claims = env.echoed_claims(&c, &echo).await;
    assert_eq!(claims["zt"]["decision"], "deny");
    assert_eq!(claims["zt"]["enforced"], false);
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_route_forwards_without_a_token_and_without_a_subject() {
    let env = env("anonymous", ROUTE).await;
    let c = client();
    let a = get(&c, &env.url("/public/info"), None, &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    let echo = a.json();
    let claims = env.echoed_claims(&c, &echo).await;
    assert!(claims.get("sub").is_none());
    // No route for the path: 404 problem, not forwarded.
    let none = get(&c, &env.url("/publicity"), None, &[]).await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);
    assert_eq!(env.up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn ambiguous_paths_that_could_escape_a_route_prefix_are_refused() {
    let env = env("ambiguous", ROUTE).await;
    let c = client();
    let token = env.dev.mint();
    for path in [
        "/api/../admin/users",
        "/api/%2e%2e/admin/users",
        "/api//x",
        "/api/a%2fb",
    ] {
        let a = get(&c, &env.url(path), Some(&token), &[]).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
    }
    assert_eq!(env.up.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn spoofed_identity_headers_are_stripped_and_replaced_by_the_gateways() {
    let routes = format!("[identity]\nplain_headers = true\n{ROUTE}");
    let env = env("spoof", &routes).await;
    let c = client();
    let forged = env.dev.mint(); // a real JWT, but not one the gateway signed
    let a = env
        .get_with_token(
            &c,
            "/api/reports",
            &[
                ("x-zt-assertion", forged.as_str()),
                ("x-zt-subject", "mallory"),
                ("x-zt-trust-level", "verified"),
                ("x-zt-anything", "1"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let echo = a.json();
    assert_eq!(
        echo["headers"]["x-zt-assertion"].as_array().unwrap().len(),
        1
    );
    assert_ne!(
        echoed_header(&echo, "x-zt-assertion"),
        Some(forged.as_str())
    );
    env.echoed_claims(&c, &echo).await;
    assert_eq!(echoed_header(&echo, "x-zt-subject"), Some("alice"));
    assert_ne!(echoed_header(&echo, "x-zt-trust-level"), Some("verified"));
    assert!(echoed_header(&echo, "x-zt-anything").is_none());

    // Also on an anonymous route, where the gateway vouches for nobody.
    let a = get(
        &c,
        &env.url("/public/x"),
        None,
        &[("x-zt-subject", "mallory")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(echoed_header(&a.json(), "x-zt-subject").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn hop_by_hop_and_spoofed_forwarding_headers_do_not_reach_the_upstream() {
    let env = env("hop", ROUTE).await;
    let c = client();
    let a = env
        .get_with_token(
            &c,
            "/api/reports",
            &[
                ("connection", "x-private"),
                ("x-private", "secret"),
                ("keep-alive", "timeout=5"),
                ("proxy-authorization", "Basic Zm9vOmJhcg=="),
                ("te", "trailers"),
                ("x-forwarded-for", "203.0.113.66"),
                ("forwarded", "for=203.0.113.66"),
            ],
        )
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let echo = a.json();
    for gone in ["x-private", "keep-alive", "proxy-authorization", "te"] {
        assert!(echoed_header(&echo, gone).is_none(), "{gone} was forwarded");
    }
    // The client is not a trusted proxy: its forwarding headers are replaced, not appended to.
    assert_eq!(echoed_header(&echo, "x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(
        echoed_header(&echo, "forwarded").map(|f| f.starts_with("for=127.0.0.1;proto=http")),
        Some(true)
    );
    assert_eq!(echoed_header(&echo, "x-forwarded-proto"), Some("http"));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_is_502_with_a_problem_body_and_an_audit_record() {
    let closed = closed_port().await;
    let env = env("down", &route("/down", &format!("http://{closed}"), "")).await;
    let c = client();
    let a = env.get_with_token(&c, "/down/x", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.headers["content-type"], "application/problem+json");
    let problem = a.json();
    assert_eq!(problem["status"], 502);
    assert_eq!(problem["code"], "upstream.unavailable");
    let record = env
        .audit_record(|r| r["http"]["response"]["status_code"] == 502)
        .await;
    assert_eq!(record["url"]["path"], "/down/x");
    assert_eq!(record["user"]["id"], "alice");
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_without_response_headers_in_time_is_504() {
    let routes = format!("[upstream]\nresponse_header_timeout_ms = 300\n{ROUTE}");
    let env = env("timeout", &routes).await;
    let c = client();
    let a = env.get_with_token(&c, "/api/slow", &[]).await;
    assert_eq!(a.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(a.json()["code"], "upstream.timeout");
    env.up.state.release.notify_one();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trusted_proxy_forwarding_list_is_kept_and_the_client_ip_comes_from_it() {
    let routes = format!("[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n{ROUTE}");
    let env = env("trusted", &routes).await;
    let c = client();
    let a = env
        .get_with_token(&c, "/api/reports", &[("x-forwarded-for", "203.0.113.7")])
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let echo = a.json();
    assert_eq!(
        echoed_header(&echo, "x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1")
    );
    let claims = env.echoed_claims(&c, &echo).await;
    assert_eq!(claims["zt"]["client_ip"], "203.0.113.7");
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_and_allowed_requests_are_audited() {
    let env = env("audit", ROUTE).await;
    let c = client();
    env.get_with_token(&c, "/api/a", &[]).await;
    get(&c, &env.url("/api/b"), None, &[]).await;
    let records = env.audit_records().await;
    let status = |path: &str| {
        records
            .iter()
            .find(|r| r["url"]["path"] == path)
            .map(|r| r["http"]["response"]["status_code"].clone())
    };
    assert_eq!(status("/api/a"), Some(200.into()));
    assert_eq!(status("/api/b"), Some(401.into()));
}

#[tokio::test(flavor = "multi_thread")]
async fn health_readiness_metrics_and_jwks_are_served_by_the_gateway() {
    let env = env("ops", ROUTE).await;
    let c = client();
    assert_eq!(
        get(&c, &env.url("/healthz"), None, &[]).await.status,
        StatusCode::OK
    );
    // Ready once the issuer's keys are loaded (in the background, bounded wait).
    let gw = &env.gw;
    eventually(|| gw.is_ready()).await;
    assert_eq!(
        get(&c, &env.url("/readyz"), None, &[]).await.status,
        StatusCode::OK
    );
    env.get_with_token(&c, "/api/x", &[]).await;
    let m = get(&c, &env.url("/metrics"), None, &[]).await;
    assert_eq!(m.status, StatusCode::OK);
    let text = String::from_utf8_lossy(&m.body);
    assert!(text.contains("zerotrust_decisions_total"), "{text}");
    let jwks = get(&c, &env.url(ztgate::JWKS_PATH), None, &[]).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let key = &jwks.json()["keys"][0];
    assert_eq!(key["kty"], "EC");
    assert_eq!(key["alg"], "ES256");
    assert!(key.get("d").is_none(), "private key material published");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_is_503_while_the_issuer_keys_cannot_be_loaded() {
    let env = env("notready", ROUTE).await;
    // A gateway whose issuer is down from the start.
    let dir = temp_dir("notready2");
    let down = closed_port().await;
    let text = format!(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[[issuer]]\nissuer = \"http://{down}\"\naudiences = [\"x\"]\nallow_insecure_http = true\n[audit]\nfile = \"{}\"\n[[route]]\nprefix = \"/\"\nupstream = \"{}\"\n",
        dir.join("audit.jsonl").display(),
        env.up.url()
    );
    let gw = start_gateway(&write_config(&dir, &text)).await;
    let c = client();
    let a = get(
        &c,
        &format!("http://{}/readyz", gw.local_addrs()[0]),
        None,
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(!gw.is_ready());
    gw.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_drains_and_closes_the_audit_log() {
    let env = env("shutdown", ROUTE).await;
    let c = client();
    env.get_with_token(&c, "/api/x", &[]).await;
    let base = env.base();
    tokio::time::timeout(WAIT, env.gw.shutdown())
        .await
        .unwrap()
        .unwrap();
    let lines = audit_log(&env.dir);
    assert!(lines.contains("/api/x"));
    // Not accepting any more.
    let refused = tokio::time::timeout(
        WAIT,
        c.request(
            http::Request::get(format!("{base}/healthz"))
                .body(axum::body::Body::empty())
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    assert!(refused.is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn device_section_requires_device_evidence_and_forwards_the_device() {
    let routes = format!("[device]\nheaders = true\nauto_register = true\n{ROUTE}");
    let env = env("device", &routes).await;
    let c = client();
    let none = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
    let fp = "a".repeat(64);
    let device = [
        ("x-device-id", "laptop-1"),
        ("x-device-fingerprint", fp.as_str()),
    ];
    let a = env.get_with_token(&c, "/api/x", &device).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let echo = a.json();
    let claims = env.echoed_claims(&c, &echo).await;
    assert_eq!(claims["zt"]["device"], "laptop-1");
}

#[tokio::test(flavor = "multi_thread")]
async fn geo_section_refuses_a_blocked_network() {
    let routes = format!("[geo]\nblocked_networks = [\"127.0.0.0/8\"]\n{ROUTE}");
    let env = env("geo", &routes).await;
    let c = client();
    let a = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(env.up.hits(), 0);
}

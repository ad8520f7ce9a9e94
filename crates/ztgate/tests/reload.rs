//! Reloading the configuration (what SIGHUP does) switches routes for new requests while a
//! request in flight finishes on the old route; an invalid file leaves the running one in place.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use axum::body::Body;
use common::*;
use http::StatusCode;

const ROUTE: &str = r#"
[[route]]
prefix = "/api"
upstream = "{upstream}"
[route.policy]
scopes = ["reports:read"]
"#;

#[tokio::test(flavor = "multi_thread")]
async fn reload_switches_routes_without_dropping_an_in_flight_request() {
    let env = env("reload", ROUTE).await;
    let b = upstream("b").await;
    let c = client();
    let token = env.dev.mint();

    // A request in flight on upstream "a", held there until released.
    let req = http::Request::get(format!("{}/api/slow", env.base()))
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let client = c.clone();
    let in_flight = tokio::spawn(async move { send(&client, req).await });
    tokio::time::timeout(WAIT, env.up.state.started.notified())
        .await
        .expect("the slow request reached upstream a");

    // Point /api at upstream "b" and reload.
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace(&env.up.url(), &b.url());
    std::fs::write(&env.config_path, text).unwrap();
    env.gw.reload().await.unwrap();

    let now = get(&c, &format!("{}/api/who", env.base()), Some(&token), &[]).await;
    assert_eq!(now.status, StatusCode::OK);
    assert_eq!(now.json()["upstream"], "b");

    // The old request completes, from "a".
    env.up.state.release.notify_one();
    let old = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.json()["upstream"], "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_file_on_reload_is_refused_and_the_running_configuration_stays() {
    let env = env("reload-bad", ROUTE).await;
    let c = client();
    let good = std::fs::read_to_string(&env.config_path).unwrap();
    std::fs::write(&env.config_path, good.replace("prefix", "prefx")).unwrap();
    let e = env.gw.reload().await.unwrap_err();
    assert!(e.to_string().contains("prefx"), "{e}");
    let a = get(
        &c,
        &format!("{}/api/x", env.base()),
        Some(&env.dev.mint()),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["upstream"], "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_a_new_route_policy() {
    let env = env("reload-policy", ROUTE).await;
    let c = client();
    let token = env.dev.mint();
    let url = format!("{}/api/x", env.base());
    assert_eq!(
        get(&c, &url, Some(&token), &[]).await.status,
        StatusCode::OK
    );
    let text = std::fs::read_to_string(&env.config_path).unwrap().replace(
        "scopes = [\"reports:read\"]",
        "scopes = [\"reports:write\"]",
    );
    std::fs::write(&env.config_path, text).unwrap();
    env.gw.reload().await.unwrap();
    assert_eq!(
        get(&c, &url, Some(&token), &[]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_a_request_in_flight_finish_before_closing_the_audit_log() {
    let env = env("drain", ROUTE).await;
    let c = client();
    let req = http::Request::get(format!("{}/api/slow", env.base()))
        .header("authorization", format!("Bearer {}", env.dev.mint()))
        .body(Body::empty())
        .unwrap();
    let client = c.clone();
    let in_flight = tokio::spawn(async move { send(&client, req).await });
    tokio::time::timeout(WAIT, env.up.state.started.notified())
        .await
        .unwrap();
    let dir = env.dir.clone();
    let shutdown = tokio::spawn(env.gw.shutdown());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(
        !shutdown.is_finished(),
        "shutdown did not wait for the request"
    );
    env.up.state.release.notify_one();
    let done = tokio::time::timeout(WAIT, in_flight)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.status, StatusCode::OK);
    tokio::time::timeout(WAIT, shutdown)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let log = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(log.contains("/api/slow"), "the drained request was audited");
}

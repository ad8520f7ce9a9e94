//! Reloading the configuration (what SIGHUP does) switches routes for new requests while a
//! request in flight finishes on the old route; an invalid file leaves the running one in place.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use common::*;
use http::StatusCode;

#[tokio::test(flavor = "multi_thread")]
async fn reload_switches_routes_without_dropping_an_in_flight_request() {
    let env = env("reload", API_ROUTE).await;
    let b = upstream("b").await;
    let c = client();

    // A request in flight on upstream "a", held there until released.
    let in_flight = env.slow_request_in_flight(&c).await;

    // Point /api at upstream "b" and reload.
    env.edit_config(&env.up.url(), &b.url());
    env.reload().await.unwrap();

    let now = env.get_with_token(&c, "/api/who", &[]).await;
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
    let env = env("reload-bad", API_ROUTE).await;
    let c = client();
    env.edit_config("prefix", "prefx");
    let e = env.reload().await.unwrap_err();
    assert!(e.to_string().contains("prefx"), "{e}");
    let a = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["upstream"], "a");
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_applies_a_new_route_policy() {
    let env = env("reload-policy", API_ROUTE).await;
    let c = client();
    assert_eq!(
        env.get_with_token(&c, "/api/x", &[]).await.status,
        StatusCode::OK
    );
    env.edit_config(
        "scopes = [\"reports:read\"]",
        "scopes = [\"reports:write\"]",
    );
    env.reload().await.unwrap();
    assert_eq!(
        env.get_with_token(&c, "/api/x", &[]).await.status,
        StatusCode::FORBIDDEN
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_lets_a_request_in_flight_finish_before_closing_the_audit_log() {
    let env = env("drain", API_ROUTE).await;
    let c = client();
    let in_flight = env.slow_request_in_flight(&c).await;
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
    let log = audit_log(&dir);
    assert!(log.contains("/api/slow"), "the drained request was audited");
}

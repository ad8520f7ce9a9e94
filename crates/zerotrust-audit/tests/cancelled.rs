//! A request cancelled while a layer waits for its store is audited with the context the layers
//! before it established: here the location history of the travel check never answers, the
//! client gives up, and the `cancelled` record still names the verified user.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::routing::get;
use http::Request;
use serde_json::Value;
use tower::{ServiceBuilder, ServiceExt};
use zerotrust_audit::{Audit, AuditLogLayer, JsonFileSink};
use zerotrust_core::{LocationHistory, Sighting, StoreFuture};
use zerotrust_geo::{GeoRisk, GeoRiskLayer};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer};

/// A location history that never answers (a store that hangs).
struct Hanging;

impl LocationHistory for Hanging {
    fn last<'a>(&'a self, _subject: &'a str) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(std::future::pending())
    }
    fn swap<'a>(&'a self, _subject: &'a str, _at: Sighting) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_cancelled_while_the_travel_check_waits_is_audited_with_its_user() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(dev.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .build()
        .unwrap();
    let geo = GeoRisk::builder()
        .location_history(Hanging)
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("zt-cancelled-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let audit = Audit::builder()
        .sink(JsonFileSink::open(dir.join("audit.jsonl")).unwrap())
        .start()
        .unwrap();
    let app = Router::new().route("/r", get(|| async { "ok" })).layer(
        ServiceBuilder::new()
            .layer(AuditLogLayer::new(audit.clone()))
            .layer(JwtVerifyLayer::new(verifier))
            .layer(GeoRiskLayer::new(geo)),
    );

    // A public address (London in the embedded data), so the travel check runs and waits.
    let mut request = Request::get("/r")
        .header("authorization", format!("Bearer {}", dev.mint()))
        .header("x-request-id", "cancelled-1")
        .body(Body::empty())
        .unwrap();
    let peer: SocketAddr = "81.2.69.160:40000".parse().unwrap();
    request.extensions_mut().insert(ConnectInfo(peer));
    let gave_up = tokio::time::timeout(Duration::from_millis(500), app.oneshot(request)).await;
    assert!(
        gave_up.is_err(),
        "the hanging store must keep the request waiting"
    );

    tokio::time::timeout(Duration::from_secs(10), audit.flush())
        .await
        .unwrap()
        .unwrap();
    let text = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let record: Value = text
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|r| r["http"]["request"]["id"] == "cancelled-1")
        .unwrap_or_else(|| panic!("no record of the request in:\n{text}"));
    assert_eq!(record["zerotrust"]["interrupted"], "cancelled", "{record}");
    assert_eq!(
        record["user"]["id"], "alice",
        "the user JwtVerify established: {record}"
    );
    assert_eq!(
        record["zerotrust"]["identity"]["issuer"],
        dev.issuer(),
        "{record}"
    );
    tokio::time::timeout(Duration::from_secs(10), audit.shutdown())
        .await
        .unwrap()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

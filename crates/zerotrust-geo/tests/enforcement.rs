//! GeoRiskLayer under each `Enforcement` mode: report-only passes every refusal (network rules,
//! impossible travel, an unreachable history, an unresolvable client address) and records the
//! would-be decision, off skips the layer entirely, and a roll-out enforces for a stable share of
//! the verified subjects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::routing::get;
use axum::{Json, Router};
use http::{Request, Response};
use serde_json::{Value, json};
use tower::ServiceExt;
use zerotrust_core::{
    ClientIpResolver, ForwardedSource, Identity, LocationHistory, MemoryLocationHistory, PeerAddr,
    Sighting, StoreError, StoreFuture, ZeroTrust,
};
use zerotrust_geo::{Enforcement, GeoRisk, GeoRiskBuilder, GeoRiskLayer, ManualClock};
use zerotrust_testkit::respond_now;

const US: &str = "8.8.8.8";
const DE: &str = "193.99.144.80";
const JP: &str = "202.12.27.33";

/// What the handler saw: the context (if any), its network, signals and decision.
async fn probe(zt: Option<ZeroTrust>) -> Json<Value> {
    let Some(zt) = zt else {
        return Json(json!({ "context": false }));
    };
    Json(json!({
        "context": true,
        "sub": zt.subject(),
        "network": zt.network().map(|n| json!({
            "zone": n.zone.as_str(),
            "country": n.location.country.map(|c| c.to_string()),
            "travel_impossible": n.travel.map(|t| t.impossible),
        })),
        "signals": zt.signals().iter().map(|s| s.name()).collect::<Vec<_>>(),
        "decision": zt.decision().map(|d| json!({
            "enforced": d.enforced,
            "layer": d.layer,
            "code": d.reason.code(),
            "outcome": d.outcome.as_str(),
        })),
    }))
}

fn app(risk: GeoRisk) -> Router {
    Router::new()
        .route("/", get(probe))
        .layer(GeoRiskLayer::new(risk))
}

/// Builder defaults: a fixed clock, so sightings are ordered by the test.
fn builder(clock: &ManualClock) -> GeoRiskBuilder {
    GeoRisk::builder().clock(clock.clone())
}

/// A request from the socket peer `ip` of `subject` (verified by an earlier layer, if given).
fn request(ip: &str, subject: Option<&str>) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(PeerAddr(SocketAddr::new(ip.parse().unwrap(), 443)));
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

fn decision(layer: &str, code: &str, outcome: &str) -> Value {
    json!({"enforced": false, "layer": layer, "code": code, "outcome": outcome})
}

#[tokio::test]
async fn report_only_passes_a_blocked_country_with_its_network_and_the_would_be_decision() {
    let clock = ManualClock::at_unix(1_900_000_000);
    let router = app(builder(&clock)
        .block_countries(["US"])
        .enforcement(Enforcement::ReportOnly)
        .build()
        .unwrap());
    let (status, body) = call(&router, request(US, None)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        decision("geo", "network.blocked_country", "deny")
    );
    assert_eq!(body["network"]["country"], "US");
    assert_eq!(body["signals"], json!(["network.public"]));
}

#[tokio::test]
async fn report_only_passes_impossible_travel_and_records_it() {
    let clock = ManualClock::at_unix(1_900_000_000);
    let router = app(builder(&clock)
        .deny_impossible_travel()
        .enforcement(Enforcement::ReportOnly)
        .build()
        .unwrap());
    assert_eq!(call(&router, request(DE, Some("ivan"))).await.0, 200);
    clock.advance(std::time::Duration::from_secs(600));
    let (status, body) = call(&router, request(JP, Some("ivan"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        decision("geo", "travel.impossible", "deny")
    );
    assert_eq!(body["network"]["travel_impossible"], true);
    assert!(
        body["signals"]
            .as_array()
            .unwrap()
            .contains(&json!("travel.impossible"))
    );
}

#[derive(Default)]
struct DownHistory;

impl LocationHistory for DownHistory {
    fn last<'a>(&'a self, _: &'a str) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }
    fn swap<'a>(&'a self, _: &'a str, _: Sighting) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }
}

#[tokio::test]
async fn report_only_passes_when_the_location_history_is_down_and_records_an_error() {
    let clock = ManualClock::at_unix(1_900_000_000);
    let router = app(builder(&clock)
        .location_history(DownHistory)
        .report_only()
        .build()
        .unwrap());
    let (status, body) = call(&router, request(DE, Some("ivan"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        decision("geo", "store.unavailable", "error")
    );
    assert_eq!(body["network"]["country"], "DE");
}

#[tokio::test]
async fn report_only_passes_an_unresolvable_client_address_and_records_it() {
    let clock = ManualClock::at_unix(1_900_000_000);
    let resolver = ClientIpResolver::builder()
        .trusted_proxies(["127.0.0.0/8".parse().unwrap()])
        .source(ForwardedSource::XForwardedFor)
        .build();
    let router = app(builder(&clock)
        .client_ip_resolver(resolver)
        .report_only()
        .build()
        .unwrap());
    // 400: the trusted proxy forwards something that is not an address.
    let mut req = request("127.0.0.1", Some("ivan"));
    req.headers_mut()
        .insert("x-forwarded-for", "not-an-address".parse().unwrap());
    let (status, body) = call(&router, req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        decision("client_ip", "network.forwarded_invalid", "deny")
    );
    assert_eq!(body["network"], Value::Null, "{body}");

    // 500: the server never recorded the peer.
    let req = Request::get("/").body(Body::empty()).unwrap();
    let (status, body) = call(&router, req).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["decision"],
        decision("client_ip", "network.peer_unknown", "error")
    );
}

#[tokio::test]
async fn off_skips_the_layer_entirely() {
    let clock = ManualClock::at_unix(1_900_000_000);
    let history = Arc::new(MemoryLocationHistory::new());
    let router = app(builder(&clock)
        .block_countries(["US"])
        .shared_location_history(history.clone())
        .enforcement(Enforcement::Off)
        .build()
        .unwrap());
    // Blocked, and no peer at all: untouched, and no context created.
    let (status, body) = call(&router, request(US, None)).await;
    assert_eq!((status, body), (200, json!({ "context": false })));
    let req = Request::get("/").body(Body::empty()).unwrap();
    let (status, body) = call(&router, req).await;
    assert_eq!((status, body), (200, json!({ "context": false })));
    // With a subject: nothing located, signalled, decided or recorded.
    let (status, body) = call(&router, request(US, Some("ivan"))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["network"], Value::Null);
    assert_eq!(body["signals"], json!([]));
    assert_eq!(body["decision"], Value::Null);
    assert!(history.last("ivan").await.unwrap().is_none());
}

#[tokio::test]
async fn rollout_enforces_for_requests_without_a_subject() {
    let clock = ManualClock::at_unix(1_900_000_000);
    let router = app(builder(&clock)
        .block_countries(["US"])
        .enforcement(Enforcement::rollout(0))
        .build()
        .unwrap());
    let (status, body) = call(&router, request(US, None)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "network.blocked_country");
}

#[tokio::test]
async fn rollout_enforces_for_the_configured_share_of_subjects_stably() {
    let clock = ManualClock::at_unix(1_900_000_000);
    let mode = Enforcement::rollout(30);
    let router = app(builder(&clock)
        .block_countries(["US"])
        .enforcement(mode)
        .build()
        .unwrap());
    let total: u32 = 10_000;
    let mut enforced: u32 = 0;
    for i in 0..total {
        let subject = format!("user-{i}");
        // A block is decided without I/O: the router answers on its first poll.
        let resp = respond_now(&router, request(US, Some(&subject)));
        match resp.status().as_u16() {
            403 => {
                enforced += 1;
                assert!(mode.enforces_for(Some(&subject)), "{subject}");
            }
            200 => {
                assert!(!mode.enforces_for(Some(&subject)), "{subject}");
                if i % 100 == 0 {
                    let (_, body) = json_of(resp).await;
                    assert_eq!(
                        body["decision"],
                        decision("geo", "network.blocked_country", "deny")
                    );
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
                respond_now(&router, request(US, Some(&subject)))
                    .status()
                    .as_u16()
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

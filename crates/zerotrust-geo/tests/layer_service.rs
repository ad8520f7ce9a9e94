//! The layer as a tower service, where no socket matters: what a refusal carries for the audit
//! layer, the client address handed over by an earlier layer, and a server that never recorded
//! the peer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::convert::Infallible;
use std::net::SocketAddr;

use axum_core::body::Body;
use http::{Request, Response};
use tower::{ServiceBuilder, ServiceExt, service_fn};
use zerotrust_core::geo::NetworkZone;
use zerotrust_core::{ClientIpResolver, Outcome, PeerAddr, ZeroTrust};
use zerotrust_geo::{GeoRisk, GeoRiskLayer};

async fn echo(req: Request<Body>) -> Result<Response<Body>, Infallible> {
    let zt = req.extensions().get::<ZeroTrust>().cloned().unwrap();
    let mut resp = Response::new(Body::empty());
    resp.extensions_mut().insert(zt);
    Ok(resp)
}

fn request_from(peer: &str) -> Request<Body> {
    let mut req = Request::new(Body::empty());
    req.extensions_mut()
        .insert(PeerAddr(peer.parse::<SocketAddr>().unwrap()));
    req
}

#[tokio::test]
async fn a_refusal_carries_the_context_with_network_and_decision_for_the_audit_layer() {
    let risk = GeoRisk::builder().block_countries(["US"]).build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(GeoRiskLayer::new(risk))
        .service(service_fn(echo));
    let resp = svc.oneshot(request_from("8.8.8.8:443")).await.unwrap();
    assert_eq!(resp.status(), 403);
    let zt = resp.extensions().get::<ZeroTrust>().unwrap();
    let decision = zt.decision().unwrap();
    assert_eq!(decision.reason.code(), "network.blocked_country");
    assert_eq!(decision.layer, "geo");
    assert_eq!(decision.outcome, Outcome::Deny);
    assert!(decision.enforced);
    let network = zt.network().unwrap();
    assert_eq!(network.location.country.unwrap().as_str(), "US");
    assert_eq!(network.zone, NetworkZone::Public);
    assert_eq!(zt.client_ip().unwrap().addr().to_string(), "8.8.8.8");
    assert_eq!(zt.signals()[0].name(), "network.public");
}

#[tokio::test]
async fn a_client_address_recorded_by_an_earlier_layer_is_used_as_is() {
    let risk = GeoRisk::builder().build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(GeoRiskLayer::new(risk))
        .service(service_fn(echo));
    // The earlier layer resolved 193.99.144.80 behind its trusted proxy; the peer is that proxy.
    let earlier = ClientIpResolver::builder()
        .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
        .source(zerotrust_core::ForwardedSource::XForwardedFor)
        .build();
    let mut headers = http::HeaderMap::new();
    headers.insert("x-forwarded-for", "193.99.144.80".parse().unwrap());
    let client = earlier
        .resolve("10.0.0.1".parse().unwrap(), &headers)
        .unwrap();
    let mut req = request_from("10.0.0.1:5000");
    ZeroTrust::get_or_insert(req.extensions_mut()).set_client_ip(client);

    let resp = svc.oneshot(req).await.unwrap();
    let zt = resp.extensions().get::<ZeroTrust>().unwrap();
    let network = zt.network().unwrap();
    assert_eq!(network.client_ip.to_string(), "193.99.144.80");
    assert_eq!(network.location.country.unwrap().as_str(), "DE");
}

#[tokio::test]
async fn a_server_that_never_recorded_the_peer_gets_500_not_a_pass() {
    let risk = GeoRisk::builder().build().unwrap();
    let svc = ServiceBuilder::new()
        .layer(GeoRiskLayer::new(risk))
        .service(service_fn(echo));
    let resp = svc.oneshot(Request::new(Body::empty())).await.unwrap();
    assert_eq!(resp.status(), 500);
    let zt = resp.extensions().get::<ZeroTrust>().unwrap();
    assert_eq!(zt.decision().unwrap().reason.code(), "network.peer_unknown");
}

#[tokio::test]
async fn ipv4_mapped_peers_are_judged_as_ipv4() {
    let risk = GeoRisk::builder()
        .blocked_networks(["193.99.144.0/24".parse().unwrap()])
        .build()
        .unwrap();
    let svc = ServiceBuilder::new()
        .layer(GeoRiskLayer::new(risk))
        .service(service_fn(echo));
    let resp = svc
        .oneshot(request_from("[::ffff:193.99.144.80]:443"))
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[test]
fn building_refuses_nonsense_configuration() {
    use zerotrust_geo::{GeoRiskError, GeoSignal};
    assert!(matches!(
        GeoRisk::builder().allow_countries(["DEU"]).build(),
        Err(GeoRiskError::InvalidCountry(c)) if c == "DEU"
    ));
    assert!(matches!(
        GeoRisk::builder()
            .allow_countries(Vec::<String>::new())
            .build(),
        Err(GeoRiskError::EmptyAllowlist)
    ));
    assert!(matches!(
        GeoRisk::builder().max_travel_speed_kmh(0.0).build(),
        Err(GeoRiskError::InvalidSpeed(_))
    ));
    assert!(matches!(
        GeoRisk::builder().max_travel_speed_kmh(f64::NAN).build(),
        Err(GeoRiskError::InvalidSpeed(_))
    ));
    assert!(matches!(
        GeoRisk::builder()
            .signal_weight(GeoSignal::Anonymizer, 1.5)
            .build(),
        Err(GeoRiskError::InvalidWeight {
            signal: "network.anonymizer",
            ..
        })
    ));
    assert!(matches!(
        GeoRisk::builder()
            .blocked_networks_file("no/such/list.txt")
            .build(),
        Err(GeoRiskError::Lists(_))
    ));
}

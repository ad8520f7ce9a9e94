//! What a geo lookup and the GeoRiskLayer cost per request.
//!
//! `cargo bench -p zerotrust-geo --bench geo`
//!
//! - `locate/*`: one lookup in the embedded tables (IPv4 and IPv6), a MaxMind City+ASN lookup, a
//!   country centre, and an anonymiser list of 10,000 networks; addresses rotate so no single
//!   path stays hot in the cache.
//! - `layer/*`: a request through an axum `Router` by `oneshot` (no sockets), bare and behind the
//!   layer: a public address without a subject (lookups only, no allocation of a future) and with
//!   one (the travel check against the in-memory history, one boxed future).
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    unreachable_pub,
    dead_code // the shared test helpers hold more than the bench uses
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;
use zerotrust_core::geo::{CountryCode, GeoLocator};
use zerotrust_core::{Identity, PeerAddr, ZeroTrust};
use zerotrust_geo::{EmbeddedGeo, GeoRisk, GeoRiskLayer, MaxMindGeo};

const V4: &[&str] = &[
    "8.8.8.8",
    "1.1.1.1",
    "9.9.9.9",
    "193.99.144.80",
    "194.25.2.129",
    "202.12.27.33",
    "200.160.0.8",
    "81.2.69.142",
    "195.154.0.1",
    "77.88.8.8",
    "168.126.63.1",
    "114.114.114.114",
    "139.130.4.5",
    "80.80.80.80",
    "208.67.222.222",
    "94.140.14.14",
];

const V6: &[&str] = &[
    "2001:4860:4860::8888",
    "2606:4700:4700::1111",
    "2001:200::1",
    "2a00:1450:4001::1",
    "2a02:6b8::feed:0ff",
    "2001:218::1",
    "2c0f:fb50:4003::1",
    "2400:cb00::1",
];

fn addrs(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

fn locate(c: &mut Criterion) {
    let embedded = EmbeddedGeo::new();
    let maxmind = MaxMindGeo::builder()
        .city_bytes(common::city_db())
        .asn_bytes(common::asn_db())
        .build()
        .unwrap();
    let v4 = addrs(V4);
    let v6 = addrs(V6);
    let mm = addrs(&[
        "81.2.69.160",
        "216.160.83.56",
        "89.160.20.112",
        "2001:218::1",
    ]);

    let mut group = c.benchmark_group("locate");
    let mut i = 0usize;
    group.bench_function("embedded/ipv4", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(embedded.locate(black_box(v4[i % v4.len()])))
        })
    });
    group.bench_function("embedded/ipv6", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(embedded.locate(black_box(v6[i % v6.len()])))
        })
    });
    group.bench_function("maxmind/city+asn", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(maxmind.locate(black_box(mm[i % mm.len()])))
        })
    });
    let codes: Vec<CountryCode> = ["US", "DE", "JP", "BR", "ZA", "NZ"]
        .iter()
        .map(|c| CountryCode::new(c).unwrap())
        .collect();
    group.bench_function("centroid", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(zerotrust_geo::centroid(black_box(codes[i % codes.len()])))
        })
    });
    // 10,000 anonymiser networks (a large Tor + VPN list), looked up hit and miss.
    let nets = (0..10_000u32).map(|n| {
        let addr = Ipv4Addr::from(0x5000_0000 + n * 613);
        ipnet::IpNet::from(IpAddr::V4(addr))
    });
    let risk = GeoRisk::builder()
        .anonymizer_networks("tor", nets)
        .without_travel_check()
        .build()
        .unwrap();
    let probes: Vec<IpAddr> = (0..64u32)
        .map(|n| IpAddr::V4(Ipv4Addr::from(0x5000_0000 + n * 613 * 150 + (n % 2))))
        .collect();
    group.bench_function("lists/10k", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(risk.lists().lookup(black_box(probes[i % probes.len()])))
        })
    });
    group.finish();
}

fn request(peer: SocketAddr, subject: Option<&Arc<Identity>>) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.extensions_mut().insert(PeerAddr(peer));
    if let Some(identity) = subject {
        ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::clone(identity));
    }
    req
}

fn layer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let bare: Router = Router::new().route("/", get(|| async { "ok" }));
    let risk = GeoRisk::builder()
        .trusted_networks(["10.0.0.0/8".parse().unwrap()])
        .anonymizer_networks("tor", ["185.220.101.0/24".parse().unwrap()])
        .block_countries(["KP"])
        .build()
        .unwrap();
    let guarded: Router = Router::new()
        .route("/", get(|| async { "ok" }))
        .layer(GeoRiskLayer::new(risk));
    let peer: SocketAddr = "193.99.144.80:443".parse().unwrap();
    let alice = Arc::new(Identity::new("alice", "https://idp.test", 4_000_000_000));

    // Every variant must answer 200 (a refusal would be cheaper and prove nothing).
    for (router, subject) in [(&bare, None), (&guarded, None), (&guarded, Some(&alice))] {
        let resp = rt
            .block_on(router.clone().oneshot(request(peer, subject)))
            .unwrap();
        assert_eq!(resp.status(), 200);
    }

    let mut group = c.benchmark_group("layer");
    group.bench_function("bare_router", |b| {
        b.iter(|| rt.block_on(bare.clone().oneshot(request(peer, None))))
    });
    group.bench_function("geo/public_no_subject", |b| {
        b.iter(|| rt.block_on(guarded.clone().oneshot(request(peer, None))))
    });
    group.bench_function("geo/public_with_travel_check", |b| {
        b.iter(|| rt.block_on(guarded.clone().oneshot(request(peer, Some(&alice)))))
    });
    group.finish();
}

criterion_group!(benches, locate, layer);
criterion_main!(benches);

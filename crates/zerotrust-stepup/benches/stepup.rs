//! What a StepUp decision costs: the route lookup with 10 and with 10,000 route policies, and the
//! full decision (matcher, RBAC, risk, acr) through an axum router.
//!
//! `cargo bench -p zerotrust-stepup --bench stepup`
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stderr
)]

use std::hint::black_box;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{Method, Request};
use zerotrust_core::{Identity, IdentityParts, RiskSignal, ZeroTrust};
use zerotrust_stepup::{Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::respond_now;

const NOW: i64 = 1_900_000_000;

/// `n` routes of the shapes real services have: static, parameters, wildcards, per method.
fn policy(n: usize) -> StepUpPolicy {
    let mut b = StepUpPolicy::builder()
        .role("admin", ["reports:write", "reports:read"])
        .role("analyst", ["reports:read"])
        .clock(|| NOW);
    for i in 0..n {
        let r = Requirements::new()
            .scopes(["reports:read"])
            .permissions(["reports:read"])
            .acr(["urn:acr:mfa", "urn:acr:hwk"])
            .max_risk(0.8)
            .challenge_above(0.5);
        b = match i % 4 {
            0 => b.route(format!("/svc{i}/items"), r),
            1 => b.route(format!("/svc{i}/items/{{id}}"), r),
            2 => b.route(format!("/svc{i}/admin/*"), r),
            _ => b.route_for(["POST"], format!("/svc{i}/orders/{{id}}/pay"), r),
        };
    }
    b.build().unwrap()
}

fn identity() -> Arc<Identity> {
    Arc::new(Identity::from_parts(IdentityParts {
        subject: "alice".into(),
        issuer: "https://idp".into(),
        expires_at: NOW + 3600,
        scopes: vec!["openid".into(), "reports:read".into()],
        roles: vec!["analyst".into()],
        acr: Some("urn:acr:mfa".into()),
        auth_time: Some(NOW - 60),
        ..Default::default()
    }))
}

fn request(path: &str, identity: &Arc<Identity>) -> Request<Body> {
    let mut req = Request::get(path).body(Body::empty()).unwrap();
    let zt = ZeroTrust::get_or_insert(req.extensions_mut());
    zt.set_identity(Arc::clone(identity));
    zt.add_signal(RiskSignal::new("device.weak_binding", 0.1, "headers"));
    zt.add_signal(RiskSignal::new("network.public", 0.02, "public"));
    req
}

fn bench(c: &mut Criterion) {
    let small = policy(10);
    let large = policy(10_000);
    let mut lookups = c.benchmark_group("stepup_lookup");
    // The same shapes of path in both: an item id below a service in the middle of the table.
    lookups.bench_function("10_routes", |b| {
        b.iter(|| black_box(small.matched(&Method::GET, black_box("/svc5/items/42"))))
    });
    lookups.bench_function("10000_routes", |b| {
        b.iter(|| black_box(large.matched(&Method::GET, black_box("/svc5005/items/42"))))
    });
    lookups.finish();

    let id = identity();
    let bare = Router::new().route("/{*p}", get(|| async { "ok" }));
    let small_app = bare.clone().layer(StepUpLayer::new(small));
    let large_app = bare.clone().layer(StepUpLayer::new(large));
    assert_eq!(
        respond_now(&small_app, request("/svc5/items/42", &id)).status(),
        200
    );
    assert_eq!(
        respond_now(&large_app, request("/svc5005/items/42", &id)).status(),
        200
    );
    interleaved(&bare, &small_app, &large_app, &id);

    let mut group = c.benchmark_group("stepup_decision");
    group.bench_function("bare_router", |b| {
        b.iter(|| black_box(respond_now(&bare, request("/svc5/items/42", &id)).status()))
    });
    group.bench_function("layer_10_routes", |b| {
        b.iter(|| black_box(respond_now(&small_app, request("/svc5/items/42", &id)).status()))
    });
    group.bench_function("layer_10000_routes", |b| {
        b.iter(|| black_box(respond_now(&large_app, request("/svc5005/items/42", &id)).status()))
    });
    group.finish();
}

/// The 10 and 10,000 route layers (and the bare router) in alternating blocks, so that the
/// machine's drift hits all three alike; prints the median over rounds of the per-round ratio of
/// what each layer adds to the bare router.
fn interleaved(bare: &Router, small: &Router, large: &Router, id: &Arc<Identity>) {
    const BLOCK: u32 = 400;
    let rounds = if std::env::args().any(|a| a == "--bench") {
        200
    } else {
        2
    };
    let time = |app: &Router, path: &str| {
        let start = std::time::Instant::now();
        for _ in 0..BLOCK {
            black_box(respond_now(app, request(path, id)).status());
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(BLOCK)
    };
    let mut ratios = Vec::new();
    let mut added = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let b = time(bare, "/svc5/items/42");
        let s = time(small, "/svc5/items/42");
        let l = time(large, "/svc5005/items/42");
        ratios.push((l - b) / (s - b));
        added.0.push(s - b);
        added.1.push(l - b);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
    };
    eprintln!(
        "interleaved over {rounds} rounds: layer adds {:.2} µs (10 routes) and {:.2} µs (10,000 routes); ratio {:.3}",
        median(&mut added.0),
        median(&mut added.1),
        median(&mut ratios)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! What a StepUp decision costs: the route lookup with 10 and with 10,000 route policies, and the
//! full decision (matcher, RBAC, risk, acr) through an axum router. With the `cedar` feature, the
//! same decision with Cedar policies too (group `stepup_cedar`), and Cedar's parts on their own
//! (group `cedar_parts`).
//!
//! `cargo bench -p zerotrust-stepup --bench stepup`
//! `cargo bench -p zerotrust-stepup --bench stepup --features cedar -- cedar`
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
    policy_with(n, |r| r)
}

/// `policy(n)` with `extra` applied to every route's requirements.
fn policy_with(n: usize, extra: impl Fn(Requirements) -> Requirements) -> StepUpPolicy {
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
        let r = extra(r);
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

/// Cedar in the decision: the same layer with and without a realistic policy set, for a request
/// with an identity only and for one with a device and a network too; then Cedar's parts.
#[cfg(feature = "cedar")]
mod cedar {
    use super::*;

    use std::collections::{HashMap, HashSet};
    use std::str::FromStr;

    use cedar_policy::{
        Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet,
        Request as CedarRequest, RestrictedExpression,
    };
    use zerotrust_core::{
        CountryCode, DeviceAssessment, DeviceBinding, DeviceStatus, GeoLocation, NetworkAssessment,
        NetworkZone, Posture,
    };
    use zerotrust_stepup::CedarPolicies;

    pub(super) const POLICIES: &str = r#"
        @id("read")
        permit(principal is User, action in [Action::"GET", Action::"HEAD"], resource)
        when { principal.roles.contains("analyst") || principal.roles.contains("admin") };
        @id("write")
        permit(principal is User, action in [Action::"POST", Action::"PUT", Action::"DELETE"], resource)
        when { principal.roles.contains("admin") };
        @id("risk")
        forbid(principal, action, resource) when { context.risk > 800 };
        @id("admin-trust")
        forbid(principal, action, resource) when { resource.path like "*/admin/*" && context.trust_rank < 3 };
        @id("device")
        forbid(principal, action, resource) when { context has device && !context.device.compliant };
        @id("tor")
        forbid(principal, action, resource) when { context has network && context.network.zone == "anonymizer" };
    "#;

    /// The request of the plain bench with a device and a network added.
    fn full_request(path: &str, identity: &Arc<Identity>) -> Request<Body> {
        let mut req = request(path, identity);
        let zt = ZeroTrust::get_or_insert(req.extensions_mut());
        zt.set_device(DeviceAssessment {
            device_id: Arc::from("d-1"),
            binding: DeviceBinding::Header,
            status: DeviceStatus::Known,
            owned_by_subject: true,
            posture: Posture::default(),
            violations: Vec::new(),
        });
        zt.set_network(NetworkAssessment {
            client_ip: "192.0.2.7".parse().unwrap(),
            location: GeoLocation {
                country: CountryCode::new("SE"),
                ..GeoLocation::default()
            },
            zone: NetworkZone::Public,
            travel: None,
        });
        req
    }

    pub(super) fn bench(c: &mut Criterion) {
        let cedar = Arc::new(POLICIES.parse::<CedarPolicies>().unwrap());
        let id = identity();
        let path = "/svc5/items/42";
        let without = Router::new()
            .route("/{*p}", get(|| async { "ok" }))
            .layer(StepUpLayer::new(policy(10)));
        let with = Router::new()
            .route("/{*p}", get(|| async { "ok" }))
            .layer(StepUpLayer::new(policy_with(10, |r| {
                r.cedar(Arc::clone(&cedar))
            })));
        for app in [&without, &with] {
            assert_eq!(respond_now(app, request(path, &id)).status(), 200);
            assert_eq!(respond_now(app, full_request(path, &id)).status(), 200);
        }
        interleaved(&without, &with, &id, path);

        let mut group = c.benchmark_group("stepup_cedar");
        group.bench_function("identity_without_cedar", |b| {
            b.iter(|| black_box(respond_now(&without, request(path, &id)).status()))
        });
        group.bench_function("identity_with_cedar", |b| {
            b.iter(|| black_box(respond_now(&with, request(path, &id)).status()))
        });
        group.bench_function("full_context_without_cedar", |b| {
            b.iter(|| black_box(respond_now(&without, full_request(path, &id)).status()))
        });
        group.bench_function("full_context_with_cedar", |b| {
            b.iter(|| black_box(respond_now(&with, full_request(path, &id)).status()))
        });
        group.finish();

        parts(c);
    }

    /// With and without Cedar in alternating blocks; prints the median of what Cedar adds.
    fn interleaved(without: &Router, with: &Router, id: &Arc<Identity>, path: &str) {
        const BLOCK: u32 = 400;
        let rounds = if std::env::args().any(|a| a == "--bench") {
            200
        } else {
            2
        };
        let time = |app: &Router, full: bool| {
            let start = std::time::Instant::now();
            for _ in 0..BLOCK {
                let req = if full {
                    full_request(path, id)
                } else {
                    request(path, id)
                };
                black_box(respond_now(app, req).status());
            }
            start.elapsed().as_secs_f64() * 1e6 / f64::from(BLOCK)
        };
        let (mut base, mut added, mut base_full, mut added_full) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for _ in 0..rounds {
            let b = time(without, false);
            added.push(time(with, false) - b);
            base.push(b);
            let b = time(without, true);
            added_full.push(time(with, true) - b);
            base_full.push(b);
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
        };
        eprintln!(
            "interleaved over {rounds} rounds: decision without Cedar {:.2} µs, Cedar adds {:.2} µs \
             (identity only); {:.2} µs, Cedar adds {:.2} µs (identity, device, network)",
            median(&mut base),
            median(&mut added),
            median(&mut base_full),
            median(&mut added_full)
        );
    }

    /// Cedar's parts for the full context: building every attribute the layer can provide from
    /// values (as the layer does, before it leaves out what no policy names) or from JSON (the
    /// alternative), and the evaluation alone.
    fn parts(c: &mut Criterion) {
        let policies = PolicySet::from_str(POLICIES).unwrap();
        let authorizer = Authorizer::new();
        // Type names parsed once, as the layer does; ids made directly.
        let uid = |t: &EntityTypeName, id: &str| {
            EntityUid::from_type_name_and_id(t.clone(), EntityId::new(id))
        };
        let (user_t, route_t, action_t) = (
            EntityTypeName::from_str("User").unwrap(),
            EntityTypeName::from_str("Route").unwrap(),
            EntityTypeName::from_str("Action").unwrap(),
        );
        let user = |attrs: HashMap<String, RestrictedExpression>| {
            Entity::new(uid(&user_t, "alice"), attrs, HashSet::new()).unwrap()
        };
        let strings = |v: &[&str]| {
            RestrictedExpression::new_set(
                v.iter()
                    .map(|s| RestrictedExpression::new_string((*s).to_owned())),
            )
        };
        let by_values = || {
            let principal = user(HashMap::from([
                ("roles".to_owned(), strings(&["analyst"])),
                ("scopes".to_owned(), strings(&["openid", "reports:read"])),
                ("amr".to_owned(), strings(&[])),
                (
                    "acr".to_owned(),
                    RestrictedExpression::new_string("urn:acr:mfa".into()),
                ),
                ("auth_age".to_owned(), RestrictedExpression::new_long(60)),
                (
                    "trust".to_owned(),
                    RestrictedExpression::new_string("high".into()),
                ),
                ("trust_rank".to_owned(), RestrictedExpression::new_long(3)),
                ("risk".to_owned(), RestrictedExpression::new_long(118)),
            ]));
            let resource = Entity::new(
                uid(&route_t, "/svc5/items/{id}"),
                HashMap::from([(
                    "path".to_owned(),
                    RestrictedExpression::new_string("/svc5/items/42".into()),
                )]),
                HashSet::new(),
            )
            .unwrap();
            let context = Context::from_pairs([
                ("risk".to_owned(), RestrictedExpression::new_long(118)),
                (
                    "trust".to_owned(),
                    RestrictedExpression::new_string("high".into()),
                ),
                ("trust_rank".to_owned(), RestrictedExpression::new_long(3)),
                (
                    "signals".to_owned(),
                    strings(&["device.weak_binding", "network.public"]),
                ),
                (
                    "device".to_owned(),
                    RestrictedExpression::new_record([
                        (
                            "id".to_owned(),
                            RestrictedExpression::new_string("d-1".into()),
                        ),
                        (
                            "binding".to_owned(),
                            RestrictedExpression::new_string("header".into()),
                        ),
                        (
                            "status".to_owned(),
                            RestrictedExpression::new_string("known".into()),
                        ),
                        ("compliant".to_owned(), RestrictedExpression::new_bool(true)),
                        ("owned".to_owned(), RestrictedExpression::new_bool(true)),
                    ])
                    .unwrap(),
                ),
                (
                    "network".to_owned(),
                    RestrictedExpression::new_record([
                        (
                            "zone".to_owned(),
                            RestrictedExpression::new_string("public".into()),
                        ),
                        (
                            "country".to_owned(),
                            RestrictedExpression::new_string("SE".into()),
                        ),
                    ])
                    .unwrap(),
                ),
                ("ip".to_owned(), RestrictedExpression::new_ip("192.0.2.7")),
            ])
            .unwrap();
            let p = principal.uid();
            let r = resource.uid();
            let entities = Entities::from_entities([principal, resource], None).unwrap();
            let req = CedarRequest::new(p, uid(&action_t, "GET"), r, context, None).unwrap();
            (req, entities)
        };
        let by_json = || {
            let entities = serde_json::json!([
                {
                    "uid": { "type": "User", "id": "alice" },
                    "attrs": {
                        "roles": ["analyst"], "scopes": ["openid", "reports:read"], "amr": [],
                        "acr": "urn:acr:mfa", "auth_age": 60, "trust": "high", "trust_rank": 3,
                        "risk": 118
                    },
                    "parents": []
                },
                {
                    "uid": { "type": "Route", "id": "/svc5/items/{id}" },
                    "attrs": { "path": "/svc5/items/42" },
                    "parents": []
                }
            ]);
            let context = serde_json::json!({
                "risk": 118, "trust": "high", "trust_rank": 3,
                "signals": ["device.weak_binding", "network.public"],
                "device": { "id": "d-1", "binding": "header", "status": "known",
                            "compliant": true, "owned": true },
                "network": { "zone": "public", "country": "SE" },
                "ip": { "__extn": { "fn": "ip", "arg": "192.0.2.7" } }
            });
            let entities = Entities::from_json_value(entities, None).unwrap();
            let context = Context::from_json_value(context, None).unwrap();
            let req = CedarRequest::new(
                uid(&user_t, "alice"),
                uid(&action_t, "GET"),
                uid(&route_t, "/svc5/items/{id}"),
                context,
                None,
            )
            .unwrap();
            (req, entities)
        };
        let (req, entities) = by_values();
        let decision = authorizer.is_authorized(&req, &policies, &entities);
        assert_eq!(decision.decision(), cedar_policy::Decision::Allow);
        assert_eq!(decision.diagnostics().errors().count(), 0);
        let (json_req, json_entities) = by_json();
        assert_eq!(
            authorizer
                .is_authorized(&json_req, &policies, &json_entities)
                .decision(),
            cedar_policy::Decision::Allow
        );

        let mut group = c.benchmark_group("cedar_parts");
        group.bench_function("build_from_values", |b| b.iter(|| black_box(by_values())));
        group.bench_function("build_from_json", |b| b.iter(|| black_box(by_json())));
        group.bench_function("evaluate_6_policies", |b| {
            b.iter(|| {
                black_box(
                    authorizer
                        .is_authorized(&req, &policies, &entities)
                        .decision(),
                )
            })
        });
        group.finish();
    }
}

#[cfg(feature = "cedar")]
criterion_group!(benches, bench, cedar::bench);
#[cfg(not(feature = "cedar"))]
criterion_group!(benches, bench);
criterion_main!(benches);

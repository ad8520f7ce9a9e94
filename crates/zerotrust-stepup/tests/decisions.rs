//! Every decision path of the step-up layer, through the whole stack over real HTTP on 127.0.0.1:
//! tokens minted by a dev issuer, risk from the device and geo layers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use serde_json::json;
use zerotrust_core::TrustLevel;
use zerotrust_stepup::{Requirements, StepUpPolicy};
use zerotrust_testkit::unix_now;

use common::{KNOWN_DEVICE, Net, UNKNOWN_DEVICE, app};

const PWD: &str = "urn:example:acr:pwd";
const MFA: &str = "urn:example:acr:mfa";
const HWK: &str = "urn:example:acr:hwk";

#[tokio::test]
async fn weak_acr_is_challenged_with_the_accepted_values_and_a_stronger_token_passes() {
    let policy = StepUpPolicy::builder()
        .route("/api/admin/*", Requirements::new().acr([HWK, MFA]))
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let weak = app
        .get("/api/admin/users", &app.token(&[("acr", json!(PWD))]))
        .await;
    assert_eq!(weak.status, 401, "{weak:?}");
    assert_eq!(
        weak.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"A stronger authentication is required.\", \
             acr_values=\"urn:example:acr:hwk urn:example:acr:mfa\""
        )
    );
    assert_eq!(weak.code(), "stepup.acr_too_weak");
    assert_eq!(weak.body["acr_values"], format!("{HWK} {MFA}"));

    // The client steps up and returns with a stronger token.
    let strong = app
        .get("/api/admin/users", &app.token(&[("acr", json!(MFA))]))
        .await;
    assert_eq!(strong.status, 200, "{strong:?}");
    assert_eq!(strong.body["decision"]["outcome"], "allow");
    assert_eq!(strong.body["decision"]["layer"], "stepup");
}

#[tokio::test]
async fn stale_auth_time_is_challenged_with_max_age_and_fresh_passes() {
    let policy = StepUpPolicy::builder()
        .route(
            "/api/payments",
            Requirements::new().max_auth_age(Duration::from_secs(600)),
        )
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let stale = app
        .get(
            "/api/payments",
            &app.token(&[("auth_time", json!(unix_now() - 3600))]),
        )
        .await;
    assert_eq!(stale.status, 401);
    assert_eq!(
        stale.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"A more recent authentication is required.\", max_age=\"600\""
        )
    );
    assert_eq!(stale.body["max_age"], 600);
    let fresh = app.get("/api/payments", &app.token(&[])).await;
    assert_eq!(fresh.status, 200, "{fresh:?}");
}

#[tokio::test]
async fn missing_amr_is_challenged() {
    let policy = StepUpPolicy::builder()
        .route(
            "/api/keys",
            Requirements::new().amr(["mfa", "hwk"]).acr([HWK]),
        )
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let r = app
        .get(
            "/api/keys",
            &app.token(&[("acr", json!(HWK)), ("amr", json!(["pwd", "mfa"]))]),
        )
        .await;
    assert_eq!((r.status, r.code()), (401, "stepup.amr_missing"));
    let ok = app
        .get(
            "/api/keys",
            &app.token(&[("acr", json!(HWK)), ("amr", json!(["mfa", "hwk"]))]),
        )
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
}

fn risky_route() -> StepUpPolicy {
    StepUpPolicy::builder()
        .route(
            "/transfer",
            Requirements::new()
                .challenge_above(0.3)
                .max_risk(0.8)
                .step_up([HWK], Duration::from_secs(300)),
        )
        .build()
        .unwrap()
}

#[tokio::test]
async fn risk_above_the_challenge_threshold_is_challenged_and_a_stepped_up_session_passes() {
    let app = app(risky_route(), Net::Trusted).await;
    let token = app.token(&[("acr", json!(PWD))]);
    // Known device: only device.weak_binding (0.1).
    let low = app.send("POST", "/transfer", &token, &KNOWN_DEVICE).await;
    assert_eq!(low.status, 200, "{low:?}");
    // Unknown device: 1 - 0.5 * 0.9 = 0.55, above 0.3.
    let risky = app.send("POST", "/transfer", &token, &UNKNOWN_DEVICE).await;
    assert_eq!(risky.status, 401, "{risky:?}");
    assert_eq!(
        risky.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"Unusual activity: authenticate again to continue.\", \
             acr_values=\"urn:example:acr:hwk\", max_age=\"300\""
        )
    );
    assert_eq!(risky.code(), "stepup.risk_challenge");
    // The same risk with a stepped-up token (hwk, authenticated just now) passes.
    let stepped = app.token(&[("acr", json!(HWK)), ("auth_time", json!(unix_now()))]);
    let ok = app
        .send("POST", "/transfer", &stepped, &UNKNOWN_DEVICE)
        .await;
    assert_eq!(ok.status, 200, "{ok:?}");
    // A strong acr from an old authentication is not a stepped-up session.
    let old = app.token(&[("acr", json!(HWK)), ("auth_time", json!(unix_now() - 3600))]);
    let r = app.send("POST", "/transfer", &old, &UNKNOWN_DEVICE).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn risk_above_the_deny_threshold_is_403_even_for_a_stepped_up_session() {
    // Unknown device and an anonymiser: 1 - 0.5 * 0.9 * 0.4 = 0.82, above 0.8.
    let app = app(risky_route(), Net::Anonymizer).await;
    let stepped = app.token(&[("acr", json!(HWK)), ("auth_time", json!(unix_now()))]);
    let r = app
        .send("POST", "/transfer", &stepped, &UNKNOWN_DEVICE)
        .await;
    assert_eq!((r.status, r.code()), (403, "stepup.risk_too_high"), "{r:?}");
    assert_eq!(r.challenge, None);
}

#[tokio::test]
async fn trust_below_the_route_minimum_is_403() {
    let policy = StepUpPolicy::builder()
        .route(
            "/api/vault",
            Requirements::new().min_trust(TrustLevel::High),
        )
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let ok = app.get("/api/vault", &app.token(&[])).await;
    assert_eq!((ok.status, &ok.body["trust"]), (200, &json!("high")));
    let r = app
        .send("GET", "/api/vault", &app.token(&[]), &UNKNOWN_DEVICE)
        .await;
    assert_eq!((r.status, r.code()), (403, "stepup.trust_too_low"));
}

#[tokio::test]
async fn missing_scope_is_403_insufficient_scope_naming_the_scopes() {
    let policy = StepUpPolicy::builder()
        .route_for(
            ["POST"],
            "/api/reports",
            Requirements::new().scopes(["reports:write", "reports:read"]),
        )
        .route("/api/reports", Requirements::new().scopes(["reports:read"]))
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let token = app.token(&[]); // scope: openid reports:read
    assert_eq!(app.get("/api/reports", &token).await.status, 200);
    let r = app
        .send("POST", "/api/reports", &token, &KNOWN_DEVICE)
        .await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_scope\", error_description=\"The access token does not \
             grant the scope this resource needs.\", scope=\"reports:write reports:read\""
        )
    );
    assert_eq!(r.body["scope"], "reports:write reports:read");
}

#[tokio::test]
async fn rbac_roles_and_permissions_allow_and_forbid() {
    let policy = StepUpPolicy::builder()
        .role("analyst", ["reports:read"])
        .role("admin", ["reports:read", "reports:write"])
        .route(
            "/api/reports/*",
            Requirements::new().permissions(["reports:write"]),
        )
        .route("/api/ops/*", Requirements::new().any_role(["ops", "admin"]))
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let analyst = app.token(&[("roles", json!(["analyst"]))]);
    let admin = app.token(&[("roles", json!(["analyst", "admin"]))]);
    let r = app.get("/api/reports/q3", &analyst).await;
    assert_eq!((r.status, r.code()), (403, "stepup.permission_required"));
    assert_eq!(app.get("/api/reports/q3", &admin).await.status, 200);
    let r = app.get("/api/ops/restart", &analyst).await;
    assert_eq!((r.status, r.code()), (403, "stepup.role_required"));
    assert_eq!(app.get("/api/ops/restart", &admin).await.status, 200);
}

#[tokio::test]
async fn predicates_decide_on_attributes() {
    let policy = StepUpPolicy::builder()
        .route(
            "/api/tenants/*",
            Requirements::new().predicate("tenant acme", |zt| {
                zt.identity()
                    .and_then(|id| id.claim("tenant"))
                    .is_some_and(|t| t == "acme")
            }),
        )
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let acme = app.token(&[("tenant", json!("acme"))]);
    let other = app.token(&[("tenant", json!("globex"))]);
    assert_eq!(app.get("/api/tenants/x", &acme).await.status, 200);
    let r = app.get("/api/tenants/x", &other).await;
    assert_eq!((r.status, r.code()), (403, "stepup.policy_denied"));
    assert!(!r.body.to_string().contains("tenant acme"));
}

#[tokio::test]
async fn unmatched_routes_are_denied_unless_a_default_is_configured() {
    let closed = StepUpPolicy::builder()
        .route("/api/known", Requirements::new())
        .build()
        .unwrap();
    let app1 = app(closed, Net::Trusted).await;
    let r = app1.get("/unlisted", &app1.token(&[])).await;
    assert_eq!((r.status, r.code()), (403, "stepup.no_route"));

    let open = StepUpPolicy::builder()
        .default_route(Requirements::new())
        .build()
        .unwrap();
    let app2 = app(open, Net::Trusted).await;
    assert_eq!(app2.get("/unlisted", &app2.token(&[])).await.status, 200);
}

#[tokio::test]
async fn ambiguous_paths_are_400_before_any_route_is_chosen() {
    let policy = StepUpPolicy::builder()
        .default_route(Requirements::new())
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    for path in ["/api/public/..%2fadmin", "/api/a%2Fb", "/api//admin"] {
        let r = app.get(path, &app.token(&[])).await;
        assert_eq!(
            (r.status, r.code()),
            (400, "request.ambiguous_path"),
            "{path}"
        );
    }
}

#[tokio::test]
async fn report_only_routes_pass_and_record_the_would_be_denial() {
    let policy = StepUpPolicy::builder()
        .route(
            "/api/beta/*",
            Requirements::new()
                .any_role(["beta"])
                .enforcement(zerotrust_core::Enforcement::ReportOnly),
        )
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let r = app.get("/api/beta/feature", &app.token(&[])).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(
        r.body["decision"],
        json!({"outcome": "deny", "code": "stepup.role_required", "layer": "stepup", "enforced": false})
    );
}

#[tokio::test]
async fn toml_policy_drives_the_same_decisions() {
    let policy = StepUpPolicy::from_toml(&format!(
        r#"
        [rbac]
        admin = ["reports:write"]

        [[route]]
        path = "/api/admin/*"
        acr = ["{HWK}"]
        permissions = ["reports:write"]
        "#
    ))
    .unwrap()
    .build()
    .unwrap();
    let app = app(policy, Net::Trusted).await;
    let admin_pwd = app.token(&[("roles", json!(["admin"])), ("acr", json!(PWD))]);
    let admin_hwk = app.token(&[("roles", json!(["admin"])), ("acr", json!(HWK))]);
    let r = app.get("/api/admin/x", &admin_pwd).await;
    assert_eq!((r.status, r.code()), (401, "stepup.acr_too_weak"));
    assert_eq!(app.get("/api/admin/x", &admin_hwk).await.status, 200);
    let r = app.get("/unlisted", &admin_hwk).await;
    assert_eq!(r.code(), "stepup.no_route");
}

#[tokio::test]
async fn a_weak_acr_challenge_also_names_the_routes_max_age_so_one_step_up_is_enough() {
    let policy = StepUpPolicy::builder()
        .route(
            "/api/payments",
            Requirements::new()
                .acr([MFA])
                .max_auth_age(Duration::from_secs(300)),
        )
        .build()
        .unwrap();
    let app = app(policy, Net::Trusted).await;
    let weak = app
        .get("/api/payments", &app.token(&[("acr", json!(PWD))]))
        .await;
    assert_eq!(weak.status, 401, "{weak:?}");
    assert_eq!(weak.code(), "stepup.acr_too_weak");
    assert_eq!(
        weak.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"A stronger authentication is required.\", \
             acr_values=\"urn:example:acr:mfa\", max_age=\"300\""
        )
    );
    let strong = app
        .get("/api/payments", &app.token(&[("acr", json!(MFA))]))
        .await;
    assert_eq!(strong.status, 200, "{strong:?}");
}

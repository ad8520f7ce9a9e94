//! The `realm` of the step-up layer's challenges: configured on the policy, rendered through the
//! same core code as `JwtVerifyLayer`'s, so a stack of both shows one protection space; absent
//! when unset. Over real HTTP on 127.0.0.1 (the whole stack), plus the 401 for a missing
//! identity, which the JWT layer in front would answer first, driven directly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::{Router, routing::get};
use serde_json::json;
use zerotrust_core::MemoryBehaviorStore;
use zerotrust_stepup::{BehaviorPolicy, Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::{respond_now, unix_now};

use common::{App, KNOWN_DEVICE, Net, Reply, app_with_jwt_realm};

const PWD: &str = "urn:example:acr:pwd";
const HWK: &str = "urn:example:acr:hwk";

/// The routes every test here declares: one per kind of step-up challenge, one plain refusal.
fn routes(builder: zerotrust_stepup::StepUpPolicyBuilder) -> zerotrust_stepup::StepUpPolicyBuilder {
    builder
        .role("admin", ["reports:delete"])
        .route("/api/admin/*", Requirements::new().acr([HWK]))
        .route(
            "/api/payments",
            Requirements::new().max_auth_age(Duration::from_secs(600)),
        )
        .route(
            "/api/reports",
            Requirements::new().scopes(["reports:write"]),
        )
        .route(
            "/api/purge",
            Requirements::new().permissions(["reports:delete"]),
        )
        .route("/api/me", Requirements::new())
}

/// The `realm` parameter of a `WWW-Authenticate` value, if it has one.
fn realm_of(challenge: Option<&str>) -> Option<String> {
    let params = challenge?.strip_prefix("Bearer")?;
    let start = params.find("realm=\"")? + "realm=\"".len();
    let rest = params.get(start..)?;
    Some(rest.get(..rest.find('"')?)?.to_owned())
}

/// One request of each kind a step-up challenge answers, plus a 403 without a challenge.
struct StepUpReplies {
    weak_acr: Reply,
    stale_auth: Reply,
    missing_scope: Reply,
    ambiguous_path: Reply,
    missing_permission: Reply,
}

async fn step_up_replies(app: &App) -> StepUpReplies {
    let weak = app.token(&[("acr", json!(PWD))]);
    StepUpReplies {
        weak_acr: app.get("/api/admin/users", &weak).await,
        stale_auth: app
            .get(
                "/api/payments",
                &app.token(&[("auth_time", json!(unix_now() - 3600))]),
            )
            .await,
        missing_scope: app.get("/api/reports", &weak).await,
        ambiguous_path: app.get("/api/a%2Fb", &weak).await,
        missing_permission: app.get("/api/purge", &weak).await,
    }
}

/// A request with no token at all: refused by the JWT layer in front.
async fn without_token(app: &App) -> (u16, Option<String>) {
    let resp = app
        .client
        .get(format!("{}/api/me", app.base))
        .send()
        .await
        .unwrap();
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned());
    (resp.status().as_u16(), challenge)
}

#[tokio::test]
async fn step_up_challenges_carry_the_configured_realm() {
    let policy = routes(StepUpPolicy::builder().realm("api"))
        .build()
        .unwrap();
    let app = app_with_jwt_realm(policy, Net::Trusted, None).await;
    let r = step_up_replies(&app).await;

    assert_eq!(
        (r.weak_acr.status, r.weak_acr.code()),
        (401, "stepup.acr_too_weak")
    );
    assert_eq!(
        r.weak_acr.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_user_authentication\", \
             error_description=\"A stronger authentication is required.\", \
             acr_values=\"urn:example:acr:hwk\""
        )
    );
    assert_eq!(r.weak_acr.body["acr_values"], HWK);

    assert_eq!(
        (r.stale_auth.status, r.stale_auth.code()),
        (401, "stepup.auth_too_old")
    );
    assert_eq!(
        r.stale_auth.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_user_authentication\", \
             error_description=\"A more recent authentication is required.\", max_age=\"600\""
        )
    );

    assert_eq!(
        (r.missing_scope.status, r.missing_scope.code()),
        (403, "stepup.insufficient_scope")
    );
    assert_eq!(
        r.missing_scope.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"insufficient_scope\", \
             error_description=\"The access token does not grant the scope this resource needs.\", \
             scope=\"reports:write\""
        )
    );

    assert_eq!(
        (r.ambiguous_path.status, r.ambiguous_path.code()),
        (400, "request.ambiguous_path")
    );
    assert_eq!(
        r.ambiguous_path.challenge.as_deref(),
        Some(
            "Bearer realm=\"api\", error=\"invalid_request\", \
             error_description=\"The request path is ambiguous.\""
        )
    );

    // A refusal no credential could fix carries no challenge, realm or not.
    assert_eq!(
        (r.missing_permission.status, r.missing_permission.code()),
        (403, "stepup.permission_required")
    );
    assert_eq!(r.missing_permission.challenge, None);

    // The JWT layer in front has no realm of its own: its challenge is bare. The realm is not
    // shared between the layers; each is configured (see the next test).
    assert_eq!(without_token(&app).await, (401, Some("Bearer".to_owned())));
}

#[tokio::test]
async fn jwt_and_step_up_challenges_name_the_same_realm() {
    // The step-up side from TOML, with behaviour tracking so that requests of a subject take the
    // tracked (boxed) path of the layer.
    let builder = StepUpPolicy::from_toml("realm = \"Example API\"\n")
        .unwrap()
        .behavior(MemoryBehaviorStore::new(), BehaviorPolicy::default());
    let policy = routes(builder).build().unwrap();
    assert_eq!(policy.realm(), Some("Example API"));
    let app = app_with_jwt_realm(policy, Net::Trusted, Some("Example API")).await;

    let (status, no_token) = without_token(&app).await;
    assert_eq!(status, 401);
    assert_eq!(no_token.as_deref(), Some("Bearer realm=\"Example API\""));
    let forged = app.send("GET", "/api/me", "not.a.jwt", &KNOWN_DEVICE).await;
    assert_eq!(forged.status, 401, "{forged:?}");
    let r = step_up_replies(&app).await;

    let challenges = [
        ("jwt: no token", no_token.as_deref()),
        ("jwt: bad token", forged.challenge.as_deref()),
        ("stepup: acr", r.weak_acr.challenge.as_deref()),
        ("stepup: max_age", r.stale_auth.challenge.as_deref()),
        ("stepup: scope", r.missing_scope.challenge.as_deref()),
        ("stepup: path", r.ambiguous_path.challenge.as_deref()),
    ];
    for (what, challenge) in challenges {
        assert_eq!(
            realm_of(challenge).as_deref(),
            Some("Example API"),
            "{what}: {challenge:?}"
        );
        // The same shape from both layers: the realm first, written the same way.
        assert!(
            challenge.is_some_and(|c| c.starts_with("Bearer realm=\"Example API\"")),
            "{what}: {challenge:?}"
        );
    }
    assert!(
        forged
            .challenge
            .as_deref()
            .is_some_and(|c| c.contains("error=\"invalid_token\""))
    );
}

#[tokio::test]
async fn without_a_realm_no_challenge_has_a_realm_parameter() {
    let policy = routes(StepUpPolicy::builder()).build().unwrap();
    assert_eq!(policy.realm(), None);
    let app = app_with_jwt_realm(policy, Net::Trusted, None).await;
    let r = step_up_replies(&app).await;
    let (_, no_token) = without_token(&app).await;
    for (status, challenge) in [
        (r.weak_acr.status, r.weak_acr.challenge.as_deref()),
        (r.stale_auth.status, r.stale_auth.challenge.as_deref()),
        (r.missing_scope.status, r.missing_scope.challenge.as_deref()),
        (
            r.ambiguous_path.status,
            r.ambiguous_path.challenge.as_deref(),
        ),
        (401, no_token.as_deref()),
    ] {
        let challenge = challenge.unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{status}: {challenge:?}");
        assert!(!challenge.contains("realm"), "{status}: {challenge:?}");
    }
    assert_eq!(
        r.weak_acr.challenge.as_deref(),
        Some(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"A stronger authentication is required.\", \
             acr_values=\"urn:example:acr:hwk\""
        )
    );
}

#[test]
fn a_missing_identity_is_challenged_with_the_realm() {
    let app = |policy: StepUpPolicy| {
        Router::new()
            .route("/me", get(|| async { "me" }))
            .layer(StepUpLayer::new(policy))
    };
    let request = || Request::get("/me").body(Body::empty()).unwrap();
    let with_realm = StepUpPolicy::builder()
        .realm("api")
        .route("/me", Requirements::new())
        .build()
        .unwrap();
    let r = respond_now(&app(with_realm), request());
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"api\"");

    let without = StepUpPolicy::builder()
        .route("/me", Requirements::new())
        .build()
        .unwrap();
    let r = respond_now(&app(without), request());
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
}

//! The step_up example, started as its `main` would start it: the RFC 9470 round trip it shows is
//! the one the README promises.

// A test: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../examples/step_up.rs"]
#[allow(dead_code, unreachable_pub)]
mod step_up;

use std::net::SocketAddr;

use step_up::{Challenge, MAX_AUTH_AGE, MFA, PASSWORD};
use zerotrust::stepup::reasons;
use zerotrust_testkit::unix_now;

// StepUpLayer has no realm of its own; only JwtVerifyLayer's challenges carry `realm="bank"`.
const ACR_CHALLENGE: &str = "Bearer error=\"insufficient_user_authentication\"";

#[tokio::test]
async fn weak_acr_is_challenged_then_allowed_after_step_up() {
    let ex = step_up::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let steps = step_up::walkthrough(&ex).await.unwrap();
    let seen: Vec<(u16, &str)> = steps.iter().map(|s| (s.status, s.code.as_str())).collect();
    assert_eq!(
        seen,
        vec![
            // A password session is enough for the balance...
            (200, "-"),
            // ...not for a transfer: challenged for its acr...
            (401, reasons::ACR_TOO_WEAK.code()),
            // ...and let in once stepped up.
            (200, "-"),
            // MFA, but 20 minutes ago: challenged for max_age...
            (401, reasons::AUTH_TOO_OLD.code()),
            // ...and let in after a fresh authentication.
            (200, "-"),
        ],
        "{steps:#?}"
    );

    // The acr challenge names the acceptable acr, in the header and in the problem body.
    let acr = &steps[1];
    assert!(acr.challenge.starts_with(ACR_CHALLENGE), "{acr:?}");
    assert_eq!(
        Challenge::parse(&acr.challenge)
            .unwrap()
            .acr_values
            .as_deref(),
        Some(MFA)
    );
    assert_eq!(acr.body["acr_values"], MFA, "{acr:?}");

    // The age challenge names the maximum age.
    let age = &steps[3];
    assert!(age.challenge.starts_with(ACR_CHALLENGE), "{age:?}");
    assert_eq!(
        Challenge::parse(&age.challenge).unwrap().max_age,
        Some(MAX_AUTH_AGE.as_secs())
    );
    assert_eq!(age.body["max_age"], MAX_AUTH_AGE.as_secs(), "{age:?}");

    // The stepped-up transfers ran with the stronger, fresh authentication.
    for allowed in [&steps[2], &steps[4]] {
        assert_eq!(allowed.body["transfer"], "accepted", "{allowed:?}");
        assert_eq!(allowed.body["acr"], MFA, "{allowed:?}");
        let auth_time = allowed.body["auth_time"].as_i64().unwrap();
        assert!(unix_now() - auth_time < 60, "{allowed:?}");
    }
    assert_eq!(steps[0].body["sub"], "alice");
}

#[tokio::test]
async fn challenge_parser_reads_rfc_9470_parameters() {
    let parsed = Challenge::parse(
        "Bearer realm=\"bank\", error=\"insufficient_user_authentication\", \
         error_description=\"A stronger, more recent login, please\", \
         acr_values=\"urn:example:acr:hwk urn:example:acr:mfa\", max_age=300",
    )
    .unwrap();
    assert_eq!(
        parsed,
        Challenge {
            acr_values: Some("urn:example:acr:hwk urn:example:acr:mfa".into()),
            max_age: Some(300),
        }
    );
    // Other errors are not step-up challenges.
    assert_eq!(
        Challenge::parse("Bearer realm=\"bank\", error=\"invalid_token\""),
        None
    );
    assert_eq!(Challenge::parse("Bearer realm=\"bank\""), None);
    // PASSWORD is what the example's weak sessions carry.
    assert_ne!(PASSWORD, MFA);
}

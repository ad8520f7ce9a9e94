//! The quickstart example, started as its `main` would start it: every answer it shows is the
//! one the README promises.

#[path = "../examples/quickstart.rs"]
#[allow(dead_code, unreachable_pub)]
mod quickstart;

use std::net::SocketAddr;

use zerotrust::jwt::reasons;

#[tokio::test]
async fn quickstart_walkthrough_answers_as_documented() {
    let qs = quickstart::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let steps = quickstart::walkthrough(&qs).await.unwrap();
    let seen: Vec<(&str, u16, &str)> = steps
        .iter()
        .map(|s| (s.request, s.status, s.code.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("valid token", 200, "-"),
            ("no token", 401, reasons::MISSING.code()),
            ("expired token", 401, reasons::EXPIRED.code()),
            ("token for another audience", 401, reasons::AUDIENCE.code()),
            ("signature of another token", 401, reasons::SIGNATURE.code()),
            ("alg none", 401, reasons::ALGORITHM.code()),
            (
                "ID token (typ JWT) as access token",
                401,
                reasons::TYPE.code()
            ),
            (
                "token in the query string",
                400,
                reasons::TOKEN_IN_QUERY.code()
            ),
        ]
    );
    assert_eq!(steps[0].challenge, "-");
    assert_eq!(steps[1].challenge, "Bearer realm=\"quickstart\"");
    for step in &steps[2..7] {
        assert!(
            step.challenge
                .starts_with("Bearer realm=\"quickstart\", error=\"invalid_token\""),
            "{step:?}"
        );
    }
    assert!(
        steps[7]
            .challenge
            .starts_with("Bearer realm=\"quickstart\", error=\"invalid_request\""),
        "{:?}",
        steps[7]
    );

    // The open route stays open.
    let health = reqwest::get(format!("{}/healthz", qs.base_url))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}

//! The demo's walk-through, run in-process as its `main` runs it: every scenario gets the answer
//! and the audit record the README promises, and the audit chain verifies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../examples/demo.rs"]
#[allow(dead_code, unreachable_pub)]
mod demo;

/// `(scenario, status, outcome, reason, enforced)` in the order the demo sends them.
const EXPECTED: &[(&str, u16, &str, &str, bool)] = &[
    ("allowed", 200, "allow", "stepup.allow", true),
    ("missing token", 401, "challenge", "token.missing", true),
    ("expired token", 401, "deny", "token.expired", true),
    ("revoked token", 401, "deny", "token.revoked", true),
    (
        "new device",
        401,
        "challenge",
        "stepup.risk_challenge",
        true,
    ),
    (
        "fingerprint mismatch",
        403,
        "deny",
        "device.fingerprint_mismatch",
        true,
    ),
    (
        "spoofed X-Forwarded-For: 10.1.2.3",
        200,
        "allow",
        "stepup.allow",
        true,
    ),
    (
        "travel: from London (via LB)",
        200,
        "allow",
        "stepup.allow",
        true,
    ),
    (
        "travel: Tokyo, moments later",
        403,
        "deny",
        "stepup.risk_too_high",
        true,
    ),
    (
        "blocked country: KP (via LB)",
        403,
        "deny",
        "network.blocked_country",
        true,
    ),
    ("weak acr", 401, "challenge", "stepup.acr_too_weak", true),
    ("after step-up", 200, "allow", "stepup.allow", true),
    (
        "report-only route",
        200,
        "deny",
        "stepup.role_required",
        false,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_walkthrough_gives_every_scenario_its_outcome_and_a_verified_chain() {
    let dir = demo::audit_dir();
    let running = demo::start(dir.clone()).await.unwrap();
    let report = demo::walkthrough(&running).await.unwrap();
    demo::print_report(&report);

    let seen: Vec<(&str, u16, &str, &str, bool)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.scenario,
                r.status,
                r.outcome.as_str(),
                r.reason.as_str(),
                r.enforced,
            )
        })
        .collect();
    assert_eq!(seen, EXPECTED);

    let row = |name: &str| report.rows.iter().find(|r| r.scenario == name).unwrap();
    // Refusals carry the same reason in the problem body as in the audit record.
    for r in report.rows.iter().filter(|r| r.status >= 400) {
        assert_eq!(r.code, r.reason, "{r:?}");
    }
    assert_eq!(row("allowed").trust, "high");
    assert!(row("new device").signals.iter().any(|s| s == "device.new"));
    assert!(
        row("new device")
            .challenge
            .contains(&format!("acr_values=\"{}\"", demo::STRONG_ACR))
    );
    // The spoofed header was not believed: the client is the socket peer.
    assert_eq!(
        row("spoofed X-Forwarded-For: 10.1.2.3").client_ip,
        "127.0.0.1"
    );
    // Through the trusted proxy the header is believed, and located.
    assert_eq!(
        row("travel: from London (via LB)").client_ip,
        format!("{} GB", demo::LONDON)
    );
    let tokyo = row("travel: Tokyo, moments later");
    assert_eq!(tokyo.client_ip, format!("{} JP", demo::TOKYO));
    assert_eq!(
        tokyo.signals.first().map(String::as_str),
        Some("travel.impossible")
    );
    assert_eq!(
        row("blocked country: KP (via LB)").client_ip,
        format!("{} KP", demo::PYONGYANG)
    );
    let weak = row("weak acr");
    assert!(
        weak.challenge
            .contains("error=\"insufficient_user_authentication\""),
        "{weak:?}"
    );
    assert!(
        weak.challenge
            .contains(&format!("acr_values=\"{}\"", demo::STRONG_ACR)),
        "{weak:?}"
    );

    // One file-start record plus one record per request, in an intact chain.
    let chain = report.chain.as_ref().unwrap();
    assert!(
        chain.starts_with(&format!("ok: {} records in 1 file(s)", EXPECTED.len() + 1)),
        "{chain}"
    );
    assert_eq!(report.audit_file, dir.join("audit.jsonl"));

    running.audit.shutdown().await.unwrap();
    drop(running);
    std::fs::remove_dir_all(&dir).unwrap();
}

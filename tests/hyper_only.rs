//! The hyper_only example, started as its `main` would start it: the zerotrust layers work on a
//! plain hyper server and `tower::service_fn`, without axum's `Router`, and the audit layer
//! records every request with the peer address the accept loop supplied.

// A test: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../examples/hyper_only.rs"]
#[allow(dead_code, unreachable_pub)]
mod hyper_only;

use std::net::SocketAddr;

use serde_json::{Value, json};
use zerotrust::jwt::reasons as jwt_reasons;
use zerotrust::stepup::reasons as stepup_reasons;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_guard_a_plain_hyper_service_and_audit_every_request() {
    let ex = hyper_only::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let steps = hyper_only::walkthrough(&ex).await.unwrap();
    let seen: Vec<(&str, u16, &str)> = steps
        .iter()
        .map(|s| (s.request, s.status, s.code.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("GET /api/reports, valid token", 200, "-"),
            (
                "GET /api/reports, no token",
                401,
                jwt_reasons::MISSING.code()
            ),
            (
                "GET /api/reports, token without reports:read",
                403,
                stepup_reasons::INSUFFICIENT_SCOPE.code()
            ),
            // No route in the policy: denied by default, never passed through.
            (
                "GET /api/unknown, valid token",
                403,
                stepup_reasons::NO_ROUTE.code()
            ),
            ("GET /healthz, no token", 200, "-"),
        ]
    );
    // The handler read the context the layers left in the request extensions.
    assert_eq!(steps[0].body["sub"], "alice");
    assert_eq!(steps[0].body["scopes"], json!(["openid", "reports:read"]));
    assert!(steps[0].body["trust_level"].is_string(), "{:?}", steps[0]);

    // One audit record per request, refusals included, each with the peer from the accept loop.
    let records = hyper_only::audit_records(&ex).await.unwrap();
    assert_eq!(records.len(), steps.len(), "{records:#?}");
    let status_of = |r: &Value| r.pointer("/http/response/status_code").cloned();
    let statuses: Vec<Option<Value>> = records.iter().map(status_of).collect();
    let expected: Vec<Option<Value>> = steps.iter().map(|s| Some(json!(s.status))).collect();
    assert_eq!(statuses, expected, "{records:#?}");
    for record in &records {
        assert_eq!(
            record.pointer("/source/ip"),
            Some(&json!("127.0.0.1")),
            "{record}"
        );
    }
    assert_eq!(
        records[0].pointer("/user/id"),
        Some(&json!("alice")),
        "{}",
        records[0]
    );
    assert_eq!(
        records[1].pointer("/event/reason"),
        Some(&json!(jwt_reasons::MISSING.code())),
        "{}",
        records[1]
    );

    ex.audit.shutdown().await.unwrap();
    let _ = std::fs::remove_file(&ex.audit_path);
}

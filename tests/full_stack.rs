//! The full_stack example, started as its `main` starts it: the handler sees the subject, the
//! device, the network, the trust level and the reasons; refusals come from the right layer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../examples/full_stack.rs"]
#[allow(dead_code, unreachable_pub)]
mod full_stack;

use std::net::SocketAddr;

use serde_json::Value;

fn reason_names(body: &Value) -> Vec<&str> {
    body["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_reads_identity_device_network_and_risk_from_zero_trust() {
    let stack = full_stack::start(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let steps = full_stack::walkthrough(&stack).await.unwrap();
    let seen: Vec<(&str, u16)> = steps.iter().map(|s| (s.request, s.status)).collect();
    assert_eq!(
        seen,
        vec![
            ("alice, registered laptop", 200),
            ("alice, new phone", 200),
            ("alice on /api/admin", 403),
        ]
    );

    let laptop = &steps[0].body;
    assert_eq!(laptop["subject"], "alice");
    assert_eq!(laptop["roles"], serde_json::json!(["analyst"]));
    assert_eq!(laptop["device"]["id"], full_stack::LAPTOP.0);
    assert_eq!(laptop["device"]["status"], "known");
    assert_eq!(laptop["device"]["binding"], "header");
    assert_eq!(laptop["device"]["owned_by_subject"], true);
    assert_eq!(laptop["network"]["client_ip"], "127.0.0.1");
    assert_eq!(laptop["network"]["zone"], "private");
    assert_eq!(laptop["trust_level"], "high");
    assert_eq!(
        reason_names(laptop),
        vec!["device.weak_binding", "network.private"]
    );

    // A phone never seen before is registered to alice on first use and weighs more.
    let phone = &steps[1].body;
    assert_eq!(phone["device"]["id"], "alice-phone");
    assert_eq!(phone["device"]["status"], "new");
    assert!(reason_names(phone).contains(&"device.new"), "{phone}");
    assert!(
        phone["risk_score"].as_f64().unwrap() > laptop["risk_score"].as_f64().unwrap(),
        "{phone}"
    );

    // The admin route needs a role alice does not have: refused by the decision layer.
    assert_eq!(steps[2].body["code"], "stepup.role_required");

    stack.audit.flush().await.unwrap();
    stack.audit.shutdown().await.unwrap();
}

//! The mtls_service_to_service example, started as its `main` starts it: over real mutual TLS on
//! 127.0.0.1, the billing workload may post charges to the ledger, the reports workload may not,
//! and a client without a certificate does not get through the handshake.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../examples/mtls_service_to_service.rs"]
#[allow(dead_code, unreachable_pub)]
mod mtls;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_allowed_workload_certificate_reaches_the_ledger() {
    let services = mtls::start().await.unwrap();
    let results = mtls::walkthrough(&services).await.unwrap();

    let (workload, status, body) = &results[0];
    assert_eq!(*workload, mtls::BILLING);
    assert_eq!(*status, 200, "{body}");
    assert_eq!(body["ledger"]["charged"], true);
    assert_eq!(body["ledger"]["caller"], mtls::BILLING);

    let (workload, status, body) = &results[1];
    assert_eq!(*workload, mtls::REPORTS);
    assert_eq!(*status, 403, "{body}");
    assert_eq!(body["ledger_status"], 403);
    assert_eq!(body["ledger"]["code"], "stepup.workload_not_allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_is_refused_in_the_handshake() {
    let services = mtls::start().await.unwrap();
    let client = reqwest::Client::builder()
        // Trusts any server certificate: only the server's demand for a client one is tested.
        .tls_danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let result = client
        .post(format!("https://{}/ledger/charges", services.ledger))
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
}

//! The tonic_grpc example, started as its `main` would start it and called with a tonic client:
//! the zerotrust layers guard a gRPC service, and their refusals reach gRPC clients as gRPC
//! statuses with the reason.

// A test: failing loudly is its job.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../examples/tonic_grpc.rs"]
#[allow(dead_code, unreachable_pub)]
mod tonic_grpc;

use std::net::SocketAddr;

use tonic::Code;
use zerotrust::jwt::reasons as jwt_reasons;
use zerotrust::stepup::reasons as stepup_reasons;

fn loopback() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_calls_are_verified_and_refusals_become_grpc_statuses() {
    let ex = tonic_grpc::start(loopback(), true).await.unwrap();
    let calls = tonic_grpc::walkthrough(&ex).await.unwrap();
    let codes: Vec<(&str, Code)> = calls.iter().map(|c| (c.request, c.code)).collect();
    assert_eq!(
        codes,
        vec![
            ("valid token", Code::Ok),
            ("no token", Code::Unauthenticated),
            ("token without reports:read", Code::PermissionDenied),
            ("expired token", Code::Unauthenticated),
        ],
        "{calls:#?}"
    );
    // The handler saw the verified identity.
    assert_eq!(calls[0].message, "report for alice");
    // The reason travels in grpc-message; the challenge as metadata.
    assert!(
        calls[1]
            .message
            .starts_with(&format!("{}: ", jwt_reasons::MISSING.code())),
        "{:?}",
        calls[1]
    );
    assert_eq!(
        calls[1].challenge.as_deref(),
        Some("Bearer realm=\"grpc\""),
        "{:?}",
        calls[1]
    );
    assert!(
        calls[2]
            .message
            .starts_with(stepup_reasons::INSUFFICIENT_SCOPE.code()),
        "{:?}",
        calls[2]
    );
    assert!(
        calls[2]
            .challenge
            .as_deref()
            .is_some_and(|c| c.contains("error=\"insufficient_scope\"")),
        "{:?}",
        calls[2]
    );
    assert!(
        calls[3].message.starts_with(jwt_reasons::EXPIRED.code()),
        "{:?}",
        calls[3]
    );

    // A method the policy does not name is refused before it reaches the service.
    let channel = tonic_grpc::connect(&ex.url).await.unwrap();
    let token = ex.issuer.mint();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(tonic_grpc::ReportRequest { id: "x".into() });
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let status = grpc
        .unary::<_, tonic_grpc::Report, _>(
            request,
            http::uri::PathAndQuery::from_static("/zerotrust.example.Reports/DeleteReport"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert!(
        status
            .message()
            .starts_with(stepup_reasons::NO_ROUTE.code()),
        "{status:?}"
    );

    ex.audit.shutdown().await.unwrap();
}

/// Why the example maps refusals: without the adapter a gRPC client gets an HTTP 401 with a JSON
/// problem body. tonic 0.14 reads that body as a gRPC frame and reports `INTERNAL` ("invalid
/// compression flag", the `{` of the JSON); the reason and the right code are lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_adapter_clients_see_only_an_http_error() {
    let ex = tonic_grpc::start(loopback(), false).await.unwrap();
    let calls = tonic_grpc::walkthrough(&ex).await.unwrap();
    assert_eq!(calls[0].code, Code::Ok, "{calls:#?}");
    let refused = &calls[1];
    assert_eq!(refused.code, Code::Internal, "{refused:?}");
    assert!(refused.message.contains("401"), "{refused:?}");
    assert!(
        !refused.message.contains(jwt_reasons::MISSING.code()),
        "{refused:?}"
    );
    ex.audit.shutdown().await.unwrap();
}

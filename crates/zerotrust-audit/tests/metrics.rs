//! The operator metrics, rendered by a Prometheus recorder: decisions by outcome and reason,
//! per-layer latency, JWKS fetches, cache hits and misses, audit queue and drops.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;
use zerotrust_audit::{Audit, AuditEvent, AuditLogLayer, AuditSink};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer};

struct Discard;

impl AuditSink for Discard {
    fn write(&mut self, _: &[AuditEvent]) -> std::io::Result<()> {
        Ok(())
    }
}

// One test per binary: the recorder is process-wide, and the writer thread records into it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_latencies_jwks_cache_and_queue_are_exported() {
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).unwrap();

    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(dev.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .cache_verified_tokens(100)
        .build()
        .unwrap();
    let audit = Audit::builder().sink(Discard).start().unwrap();
    let app = Router::new()
        .route("/api", get(|| async { "ok" }))
        .layer(JwtVerifyLayer::new(verifier))
        .layer(AuditLogLayer::new(audit.clone()));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let url = format!("http://{addr}/api");
    let token = dev.mint();
    for _ in 0..3 {
        let ok = client.get(&url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(ok.status(), 200);
    }
    let refused = client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    audit.flush().await.unwrap();

    let text = handle.render();
    for expected in [
        r#"zerotrust_decisions_total{outcome="allow",layer="zerotrust",reason="zerotrust.allow",enforced="true"} 3"#,
        r#"zerotrust_decisions_total{outcome="challenge",layer="jwt",reason="token.missing",enforced="true"} 1"#,
        r#"zerotrust_rejections_total{layer="jwt",reason="token.missing"} 1"#,
        r#"zerotrust_layer_duration_seconds{layer="jwt",quantile="0.5"}"#,
        r#"zerotrust_layer_duration_seconds_count{layer="jwt"} 4"#,
        r#"zerotrust_jwks_fetches_total{result="ok"} 1"#,
        "zerotrust_jwt_cache_hits_total 2",
        "zerotrust_jwt_cache_misses_total 1",
        "zerotrust_audit_records_total 4",
        "zerotrust_audit_queue_depth",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    audit.shutdown().await.unwrap();
}

//! A load target for the audit layer: the same route served bare and behind AuditLogLayer
//! (hash-chained JSON Lines, fsync per batch), on two loopback ports, for a load generator.
//!
//! ```sh
//! cargo run --release -p zerotrust-audit --example audit_load -- 40 &
//! wrk -t1 -c32 -d10s http://127.0.0.1:<bare port>/api
//! wrk -t1 -c32 -d10s http://127.0.0.1:<audited port>/api
//! ```
//!
//! The bare port also serves the metrics in Prometheus format at `/metrics`. After the given
//! number of seconds (default 60) it flushes, verifies the chain and prints how many records were
//! written.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::TcpListener;
use zerotrust_audit::{Audit, AuditLogLayer, JsonFileSink, VerifyOptions, verify_files};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let recorder = PrometheusBuilder::new().build_recorder();
    let metrics = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no other recorder");
    let dir = std::env::temp_dir().join(format!("zt-audit-load-{}", std::process::id()));
    let audit = Audit::builder()
        .sink(JsonFileSink::open(dir.join("audit.jsonl"))?)
        .queue_capacity(1 << 16)
        .start()?;
    let router = || Router::new().route("/api", get(|| async { "ok" }));
    let bare = TcpListener::bind(("127.0.0.1", 0)).await?;
    let audited = TcpListener::bind(("127.0.0.1", 0)).await?;
    println!("bare    http://{}/api", bare.local_addr()?);
    println!("audited http://{}/api", audited.local_addr()?);
    println!("audit   {}", dir.join("audit.jsonl").display());
    println!("metrics http://{}/metrics", bare.local_addr()?);
    let with_metrics = router().route("/metrics", get(move || async move { metrics.render() }));
    tokio::spawn(async move { axum::serve(bare, with_metrics).await });
    let app = router().layer(AuditLogLayer::new(audit.clone()));
    tokio::spawn(async move { axum::serve(audited, app).await });
    tokio::time::sleep(Duration::from_secs(seconds)).await;

    let start = Instant::now();
    audit.shutdown().await?;
    println!("drained in {:?}", start.elapsed());
    let files: Vec<_> = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    match verify_files(&files, &VerifyOptions::default()) {
        Ok(verified) => println!("{verified}"),
        Err(problem) => println!("chain broken: {problem}"),
    }
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

//! What AuditLogLayer costs a request, and how many records per second the file sink sustains.
//!
//! `cargo bench -p zerotrust-audit --bench audit`
//!
//! - `request/*`: one request through an axum `Router` (no sockets) on a current-thread runtime:
//!   bare; with AuditLogLayer and a sink that discards (the request path alone: the writer thread
//!   has next to nothing to do); with AuditLogLayer writing hash-chained JSON Lines (fsync per
//!   batch) on its own thread, which on a 2-core machine competes with the request loop for CPU;
//!   GeoRisk + StepUp (every check running, an identity already in the context, as behind
//!   JwtVerifyLayer) without and with the audit layer outside them, which adds the layers' tap
//!   snapshots to the audit layer's own work.
//! - `file_sink/10k_records`: 10,000 requests through the audit layer, then `flush()` (written
//!   and fsynced): the time per batch gives records/s end to end.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Request;
use tower::ServiceExt;
use zerotrust_audit::{Audit, AuditEvent, AuditLogLayer, AuditSink, JsonFileSink};
use zerotrust_core::{Identity, MemoryLocationHistory, PeerAddr, ZeroTrust};
use zerotrust_geo::{GeoRisk, GeoRiskLayer};
use zerotrust_stepup::{Requirements, StepUpLayer, StepUpPolicy};

/// Discards records: what remains is the request path's own cost.
struct Discard;

impl AuditSink for Discard {
    fn write(&mut self, batch: &[AuditEvent]) -> std::io::Result<()> {
        black_box(batch.len());
        Ok(())
    }
}

fn router() -> Router {
    Router::new().route("/api", get(|| async { "ok" }))
}

fn request(identity: &Arc<Identity>, peer: SocketAddr) -> Request<Body> {
    let mut req = Request::get("/api").body(Body::empty()).unwrap();
    req.extensions_mut().insert(PeerAddr(peer));
    ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::clone(identity));
    req
}

fn bench_audit(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("zt-audit-bench-{}", std::process::id()));
    let audit = Audit::builder()
        .sink(JsonFileSink::open(dir.join("audit.jsonl")).unwrap())
        .queue_capacity(1 << 16)
        .start()
        .unwrap();
    let now = zerotrust_testkit::unix_now();
    let identity = Arc::new(Identity::new("alice", "https://idp.test", now + 3600));
    let peer: SocketAddr = "8.8.8.8:50000".parse().unwrap();
    let geo = || {
        GeoRiskLayer::new(
            GeoRisk::builder()
                .location_history(MemoryLocationHistory::new())
                .build()
                .unwrap(),
        )
    };
    let policy = StepUpPolicy::builder()
        .route("/api", Requirements::new().max_risk(0.9))
        .build()
        .unwrap();
    let discard = Audit::builder()
        .sink(Discard)
        .queue_capacity(1 << 16)
        .start()
        .unwrap();
    let bare = router();
    let audited_discard = router().layer(AuditLogLayer::new(discard.clone()));
    let audited = router().layer(AuditLogLayer::new(audit.clone()));
    let checks = router()
        .layer(StepUpLayer::new(policy.clone()))
        .layer(geo());
    let audited_checks = router()
        .layer(StepUpLayer::new(policy))
        .layer(geo())
        .layer(AuditLogLayer::new(audit.clone()));
    let call = |app: &Router| {
        let app = app.clone();
        let req = request(&identity, peer);
        rt.block_on(async move { app.oneshot(req).await.unwrap().status().as_u16() })
    };
    let discard_checks = router()
        .layer(StepUpLayer::new(
            StepUpPolicy::builder()
                .route("/api", Requirements::new().max_risk(0.9))
                .build()
                .unwrap(),
        ))
        .layer(geo())
        .layer(AuditLogLayer::new(discard.clone()));
    for app in [
        &bare,
        &audited_discard,
        &audited,
        &checks,
        &discard_checks,
        &audited_checks,
    ] {
        assert_eq!(call(app), 200);
    }

    let mut group = c.benchmark_group("request");
    group.bench_function("bare_router", |b| b.iter(|| black_box(call(&bare))));
    group.bench_function("audit_discard", |b| {
        b.iter(|| black_box(call(&audited_discard)))
    });
    group.bench_function("audit_file", |b| b.iter(|| black_box(call(&audited))));
    group.bench_function("geo_stepup", |b| b.iter(|| black_box(call(&checks))));
    group.bench_function("audit_discard_geo_stepup", |b| {
        b.iter(|| black_box(call(&discard_checks)))
    });
    group.bench_function("audit_file_geo_stepup", |b| {
        b.iter(|| black_box(call(&audited_checks)))
    });
    group.finish();

    let mut group = c.benchmark_group("file_sink");
    group.throughput(Throughput::Elements(10_000));
    group.sample_size(10);
    group.bench_function("10k_records", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                rt.block_on(audit.flush()).unwrap();
                let start = Instant::now();
                for _ in 0..10_000 {
                    black_box(call(&audited_checks));
                }
                rt.block_on(audit.flush()).unwrap();
                total += start.elapsed();
            }
            total
        })
    });
    group.finish();
    rt.block_on(audit.shutdown()).unwrap();
    rt.block_on(discard.shutdown()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, bench_audit);
criterion_main!(benches);

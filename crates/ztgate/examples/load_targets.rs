//! Load targets for the north-star comparison in BENCHMARKS.md: the same trivial route served,
//! on 127.0.0.1, bare; behind JwtVerifyLayer alone (without and with the verified-token cache);
//! behind all five layers with the verified-token cache and without it; the stack built up one
//! layer at a time and the audit layer alone (cached tokens); and through ztgate in front of
//! the bare server (an assertion signed per request, and reused for 5 s).
//!
//! ```sh
//! ./scripts/load_run.sh            # builds this, runs wrk against every target, prints a table
//! # or by hand:
//! cargo run --release -p ztgate --example load_targets -- 240 > targets.txt &
//! wrk -t1 -c32 -d10s --latency -H "authorization: Bearer $TOKEN" \
//!     -H "x-device-id: d-load" -H "x-device-fingerprint: fp-load" $URL   # each printed URL
//! ```
//!
//! A development issuer signs one RS256 token valid for the whole run. The full stack writes its
//! audit records (hash-chained, fsync per batch) into a temporary directory, which is removed at
//! the end.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    missing_docs
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use zerotrust_audit::{Audit, AuditLogLayer, JsonFileSink};
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{DeviceRecord, MemoryDeviceRegistry, MemoryLocationHistory};
use zerotrust_device::{DeviceCheck, DeviceCheckLayer};
use zerotrust_geo::{GeoRisk, GeoRiskLayer};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_stepup::{Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

fn route() -> Router {
    Router::new().route("/api/reports", get(|| async { "ok" }))
}

async fn serve(name: &str, app: Router) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    println!("{name:<16} http://{addr}/api/reports");
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
    });
    addr
}

fn verifier(dev: &DevIssuer, cache: bool) -> JwtVerifier {
    let mut builder = JwtVerifier::builder().issuer(
        Issuer::discover(dev.issuer())
            .audience(DEFAULT_AUDIENCE)
            .allow_insecure_http(),
    );
    if cache {
        builder = builder.cache_verified_tokens(10_000);
    }
    builder.build().unwrap()
}

fn full_stack(dev: &DevIssuer, audit: &Audit, cache: bool) -> Router {
    layers(dev, audit, cache, 5)
}

/// The stack up to `depth` layers, to see where the time goes under load: 1 is JwtVerify alone,
/// 2 adds DeviceCheck, 3 GeoRisk, 4 StepUp and 5 AuditLog (the full stack).
fn layers(dev: &DevIssuer, audit: &Audit, cache: bool, depth: u8) -> Router {
    let registry = Arc::new(MemoryDeviceRegistry::new());
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("fp-load")),
        owners: vec!["alice".into()],
        ..DeviceRecord::new("d-load", unix_now())
    });
    let devices = DeviceCheck::builder(registry)
        .device_headers()
        .build()
        .unwrap();
    let geo = GeoRisk::builder()
        .location_history(MemoryLocationHistory::new())
        .build()
        .unwrap();
    let policy = StepUpPolicy::builder()
        .route(
            "/api/reports",
            Requirements::new().scopes(["reports:read"]).max_risk(0.9),
        )
        .build()
        .unwrap();
    // One `Router::layer` with the whole stack, as the README and the examples stack it: axum
    // clones a route's boxed service per request, and five separate `Router::layer` calls would
    // box (and clone) five times (~27 allocations and ~6,600 instructions more per request,
    // callgrind).
    route().layer(
        ServiceBuilder::new()
            .option_layer((depth >= 5).then(|| AuditLogLayer::new(audit.clone())))
            .layer(JwtVerifyLayer::new(verifier(dev, cache)))
            .option_layer((depth >= 2).then(|| DeviceCheckLayer::new(devices)))
            .option_layer((depth >= 3).then(|| GeoRiskLayer::new(geo)))
            .option_layer((depth >= 4).then(|| StepUpLayer::new(policy))),
    )
}

#[tokio::main]
async fn main() {
    let seconds: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let dev = DevIssuer::start().await.unwrap();
    let token = dev.sign(&dev.token().claim("sub", "alice").claim(
        "exp",
        unix_now() + i64::try_from(seconds).unwrap_or(300) + 600,
    ));
    let dir = std::env::temp_dir().join(format!("zt-load-{}", std::process::id()));
    let audit = Audit::builder()
        .sink(JsonFileSink::open(dir.join("audit.jsonl")).unwrap())
        .queue_capacity(1 << 16)
        .start()
        .unwrap();

    let bare = serve("bare", route()).await;
    serve(
        "jwt",
        route().layer(JwtVerifyLayer::new(verifier(&dev, false))),
    )
    .await;
    serve(
        "jwt_cached",
        route().layer(JwtVerifyLayer::new(verifier(&dev, true))),
    )
    .await;
    serve("full_cached", full_stack(&dev, &audit, true)).await;
    serve("full_uncached", full_stack(&dev, &audit, false)).await;
    // Cached tokens: the stack built up one layer at a time, and the audit layer alone.
    serve("jwt_device", layers(&dev, &audit, true, 2)).await;
    serve("jwt_device_geo", layers(&dev, &audit, true, 3)).await;
    serve("four_layers", layers(&dev, &audit, true, 4)).await;
    serve(
        "audit_only",
        route().layer(AuditLogLayer::new(audit.clone())),
    )
    .await;

    // ztgate in front of the bare server: a route that needs a valid token, no other checks;
    // once with an assertion signed per request (the default), once reusing it for 5 s.
    let mut gateways = Vec::new();
    for (name, identity) in [
        ("ztgate", ""),
        ("ztgate_reuse", "[identity]\nreuse_seconds = 5\n"),
    ] {
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                r#"
[[listener]]
addr = "127.0.0.1:0"

[[issuer]]
issuer = "{issuer}"
audiences = ["{audience}"]
allow_insecure_http = true

[[route]]
prefix = "/api"
upstream = "http://{bare}"

[route.policy]
scopes = ["reports:read"]

[audit]
file = "{audit}"

{identity}"#,
                issuer = dev.issuer(),
                audience = DEFAULT_AUDIENCE,
                audit = dir.join(format!("{name}-audit.jsonl")).display(),
            ),
        )
        .unwrap();
        let gateway = ztgate::Gateway::start(&config).await.unwrap();
        let gate = *gateway.local_addrs().first().expect("a listener");
        println!("{name:<16} http://{gate}/api/reports");
        gateways.push(gateway);
    }
    println!("TOKEN={token}");
    println!("headers: x-device-id: d-load, x-device-fingerprint: fp-load");

    // Until the time is up, or until stopped (scripts/load_run.sh sends SIGTERM): the audit files
    // under load grow by gigabytes and must not be left behind.
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(seconds)) => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    for gateway in gateways {
        let _ = gateway.shutdown().await;
    }
    let _ = audit.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

//! Full stack: every layer, every state store in memory, and a handler that reads what the layers
//! learned from `ZeroTrust`.
//!
//! ```text
//! cargo run --example full_stack             # walk through three requests, then serve until Ctrl-C
//! cargo run --example full_stack -- --once   # walk through and exit
//! ```
//!
//! The stack, outermost first: `AuditLogLayer` (records through `tracing`), `JwtVerifyLayer`
//! (revocations in a `MemoryRevocationStore`), `DeviceCheckLayer` (a `MemoryDeviceRegistry`),
//! `GeoRiskLayer` (embedded geo data, a `MemoryLocationHistory`) and `StepUpLayer` (route policy,
//! behaviour counters in a `MemoryBehaviorStore`). Swap the memory stores for the Redis ones
//! (`zerotrust::redis`, feature `redis`) when several replicas serve the same users.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use zerotrust::device::{PosturePolicy, RuleAction};
use zerotrust::stepup::BehaviorPolicy;
use zerotrust::{
    Audit, AuditLogLayer, DeviceCheck, DeviceCheckLayer, GeoRisk, GeoRiskLayer, Issuer,
    JwtVerifier, JwtVerifyLayer, MemoryBehaviorStore, MemoryDeviceRegistry, MemoryLocationHistory,
    MemoryRevocationStore, Requirements, StepUpLayer, StepUpPolicy, TracingSink, ZeroTrust,
};
use zerotrust::{Compliance, DeviceRecord, FingerprintDigest, Posture};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

type BoxError = Box<dyn Error + Send + Sync>;

/// Alice's registered laptop: id and fingerprint.
pub const LAPTOP: (&str, &str) = ("alice-laptop", "fp-5b0e4c1d");

/// The handler: everything the layers established, as JSON.
async fn me(zt: ZeroTrust) -> Json<Value> {
    let risk = zt.risk_assessment();
    Json(json!({
        "subject": zt.subject(),
        "roles": zt.identity().map(|id| id.roles()),
        "device": zt.device().map(|d| json!({
            "id": &*d.device_id,
            "binding": d.binding.as_str(),
            "status": d.status.as_str(),
            "owned_by_subject": d.owned_by_subject,
        })),
        "network": zt.network().map(|n| json!({
            "client_ip": n.client_ip.to_string(),
            "zone": n.zone.as_str(),
            "country": n.location.country.as_ref().map(|c| c.as_str().to_owned()),
        })),
        "trust_level": risk.trust_level.as_str(),
        "risk_score": risk.score,
        "reasons": risk.reasons.iter().map(|s| json!({
            "name": s.name(),
            "weight": s.weight(),
            "evidence": s.evidence(),
        })).collect::<Vec<_>>(),
    }))
}

/// The service: `/api/me` for any verified user on an acceptable device, `/api/admin` for
/// admins only, all five layers around both.
pub fn router(
    verifier: JwtVerifier,
    registry: Arc<MemoryDeviceRegistry>,
    audit: Audit,
) -> Result<Router, BoxError> {
    let devices = DeviceCheck::builder_shared(registry)
        .device_headers()
        .auto_register()
        .posture_policy(
            PosturePolicy::builder()
                .block_jailbroken()
                .require_disk_encryption(RuleAction::Signal(0.2))
                .build(),
        )
        .build()?;
    let geo = GeoRisk::builder()
        .location_history(MemoryLocationHistory::new())
        .block_countries(["KP"])
        .build()?;
    let policy = StepUpPolicy::builder()
        // Above 0.5 the caller must have logged in within the last 5 minutes (the default
        // step-up; `Requirements::step_up` can also demand an `acr`), above 0.8 nothing helps.
        .route(
            "/api/me",
            Requirements::new().challenge_above(0.5).max_risk(0.8),
        )
        .route("/api/admin", Requirements::new().any_role(["admin"]))
        .behavior(MemoryBehaviorStore::new(), BehaviorPolicy::default())
        .build()?;
    Ok(Router::new()
        .route("/api/me", get(me))
        .route("/api/admin", get(me))
        .layer(
            ServiceBuilder::new()
                .layer(AuditLogLayer::new(audit)) // outermost: sees every decision
                .layer(JwtVerifyLayer::new(verifier)) // who
                .layer(DeviceCheckLayer::new(devices)) // which device
                .layer(GeoRiskLayer::new(geo)) // from where
                .layer(StepUpLayer::new(policy)), // the decision
        ))
}

/// A running full stack.
pub struct FullStack {
    /// The development issuer.
    pub issuer: DevIssuer,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// The audit writer (records go to `tracing`, target `zerotrust::audit`).
    pub audit: Audit,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the issuer and the service on `addr` (a busy port falls back to a free one).
pub async fn start(addr: SocketAddr) -> Result<FullStack, BoxError> {
    let issuer = DevIssuer::start().await?;
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(issuer.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .revocation_store(Arc::new(MemoryRevocationStore::new()))
        .cache_verified_tokens(10_000)
        .build()?;
    verifier.prefetch().await?;

    let registry = Arc::new(MemoryDeviceRegistry::new());
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of(LAPTOP.1)),
        owners: vec!["alice".into()],
        posture: Posture {
            platform: Some("macos".into()),
            os_version: Some("14.5".into()),
            disk_encrypted: Some(true),
            edr_running: Some(true),
            jailbroken: Some(false),
            reported_at: Some(unix_now()),
        },
        compliance: Compliance::Compliant,
        ..DeviceRecord::new(LAPTOP.0, unix_now())
    });
    let audit = Audit::builder().sink(TracingSink).start()?;

    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            println!("{addr} is in use; taking a free port instead");
            TcpListener::bind((addr.ip(), 0)).await?
        }
        Err(err) => return Err(err.into()),
    };
    let base_url = format!("http://{}", listener.local_addr()?);
    let app = router(verifier, registry, audit.clone())?
        // The socket peer for GeoRiskLayer: the one address a client cannot spoof.
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(FullStack {
        issuer,
        base_url,
        audit,
        server,
    })
}

/// One request of the walk-through and the answer.
#[derive(Debug)]
pub struct Step {
    /// What was sent.
    pub request: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// The JSON body (the handler's view, or the problem document of a refusal).
    pub body: Value,
}

/// Alice on her laptop, alice on a phone never seen before, and alice on the admin route.
pub async fn walkthrough(stack: &FullStack) -> Result<Vec<Step>, BoxError> {
    let token = stack
        .issuer
        .sign(&stack.issuer.token().claim("roles", json!(["analyst"])));
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let cases = [
        ("alice, registered laptop", "/api/me", LAPTOP),
        ("alice, new phone", "/api/me", ("alice-phone", "fp-0a77e1")),
        ("alice on /api/admin", "/api/admin", LAPTOP),
    ];
    let mut steps = Vec::with_capacity(cases.len());
    for (request, path, (device, fingerprint)) in cases {
        let resp = client
            .get(format!("{}{path}", stack.base_url))
            .bearer_auth(&token)
            .header("x-device-id", device)
            .header("x-device-fingerprint", fingerprint)
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
        steps.push(Step {
            request,
            status,
            body,
        });
    }
    Ok(steps)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "zerotrust::audit=info".into()),
        )
        .init();
    let mut once = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--once" => once = true,
            other => return Err(format!("unknown argument {other}; use --once").into()),
        }
    }
    let stack = start(SocketAddr::from(([127, 0, 0, 1], 3001))).await?;
    for step in walkthrough(&stack).await? {
        println!("\n{} -> {}", step.request, step.status);
        println!("{}", serde_json::to_string_pretty(&step.body)?);
    }
    stack.audit.flush().await?;
    if once {
        return Ok(());
    }
    println!("\nServing {} until Ctrl-C.", stack.base_url);
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        result = stack.server => result??,
    }
    Ok(())
}

//! The demo: all five layers in front of one service, and a walk through what they answer.
//!
//! ```text
//! cargo run --example demo              # walk through the scenarios, print the table, exit
//! cargo run --example demo -- --serve   # the same, then keep serving until Ctrl-C
//! ```
//!
//! It starts, on 127.0.0.1:
//!
//! - a development issuer (OIDC discovery and a JWKS; tokens with any `acr`, `amr`, `auth_time`,
//!   scopes and roles),
//! - a protected service behind `AuditLogLayer` (outermost, writing a hash-chained JSON Lines
//!   file in a temporary directory), `JwtVerifyLayer`, `DeviceCheckLayer`, `GeoRiskLayer` and
//!   `StepUpLayer`, reachable two ways: directly, and through a "load balancer" entrance that
//!   believes `X-Forwarded-For` from the demo's own client (so the client can come from anywhere
//!   in the world),
//!
//! then sends one real HTTP request per scenario and prints, for each, the status, the decision
//! (outcome and reason), the risk score and trust level, the client address the layers
//! believed, and the signals behind the risk. The decision, risk and signals come from the audit
//! record of the request (matched by the `x-request-id` the demo sets). At the end it verifies
//! the audit file's hash chain.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use zerotrust::audit::{VerifyOptions, verify_files};
use zerotrust::device::{PosturePolicy, RuleAction};
use zerotrust::{
    Audit, AuditLogLayer, ClientIpResolver, DeviceCheck, DeviceCheckLayer, Enforcement, GeoRisk,
    GeoRiskLayer, Issuer, JsonFileSink, JwtVerifier, JwtVerifyLayer, LocationHistory,
    MemoryDeviceRegistry, MemoryLocationHistory, Requirements, StepUpLayer, StepUpPolicy,
    ZeroTrust,
};
use zerotrust::{Compliance, DeviceRecord, FingerprintDigest, ForwardedSource, Posture};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, TokenBuilder, unix_now};

type BoxError = Box<dyn Error + Send + Sync>;

/// The `acr` of a password-only login.
pub const WEAK_ACR: &str = "urn:demo:acr:password";
/// The `acr` of a login with a second factor, which the payments route asks for (RFC 9470).
pub const STRONG_ACR: &str = "urn:demo:acr:mfa";

/// Alice's registered laptop: its id and the fingerprint it was registered with.
const LAPTOP: (&str, &str) = ("alice-laptop", "fp-5b0e4c1d");

/// Public addresses the embedded geo data places far apart, and one in a blocked country.
pub const LONDON: &str = "81.2.69.142"; // GB
/// Tokyo (the WIDE project's root server).
pub const TOKYO: &str = "202.12.27.33"; // JP
/// Pyongyang (Star JV's network): the service blocks `KP`.
pub const PYONGYANG: &str = "175.45.176.1"; // KP

/// The service's route policy: what each route requires, decided by `StepUpLayer`.
fn policy() -> Result<StepUpPolicy, BoxError> {
    Ok(StepUpPolicy::builder()
        // Reports: the scope, and risk-based step-up: above 0.4 the caller must show a
        // fresh strong login, above 0.75 no login helps.
        .route(
            "/api/reports",
            Requirements::new()
                .scopes(["reports:read"])
                .challenge_above(0.4)
                .step_up([STRONG_ACR], Duration::from_secs(300))
                .max_risk(0.75),
        )
        // Payments: always a strong login (acr) of at most 10 minutes ago.
        .route(
            "/api/payments",
            Requirements::new()
                .acr([STRONG_ACR])
                .max_auth_age(Duration::from_secs(600))
                .max_risk(0.75),
        )
        // A new rule being rolled out: decided and recorded, not yet enforced.
        .route(
            "/api/beta",
            Requirements::new()
                .any_role(["beta-tester"])
                .enforcement(Enforcement::ReportOnly),
        )
        .build()?)
}

/// Every route answers with what the layers established about the request.
async fn whoami(zt: ZeroTrust) -> Json<Value> {
    let risk = zt.risk_assessment();
    Json(json!({
        "subject": zt.subject(),
        "device": zt.device().map(|d| d.device_id.to_string()),
        "client_ip": zt.network().map(|n| n.client_ip.to_string()),
        "trust": risk.trust_level.as_str(),
        "risk": risk.score,
        "signals": zt.signals().iter().map(|s| s.name()).collect::<Vec<_>>(),
    }))
}

/// What both entrances of the service share: one verifier, one device registry, one location
/// history, one audit log, so a request through either is the same service's request.
struct Shared {
    verifier: JwtVerifier,
    devices: DeviceCheck,
    locations: Arc<dyn LocationHistory>,
    audit: Audit,
}

/// The protected service, all five layers; `resolver` says whose `X-Forwarded-For` to believe.
fn service(shared: &Shared, resolver: ClientIpResolver) -> Result<Router, BoxError> {
    let geo = GeoRisk::builder()
        .client_ip_resolver(resolver)
        .trusted_networks(["10.0.0.0/8".parse()?]) // "the office"
        .block_countries(["KP"])
        .shared_location_history(Arc::clone(&shared.locations))
        .build()?;
    let layers = ServiceBuilder::new()
        .layer(AuditLogLayer::new(shared.audit.clone())) // outermost: records every decision
        .layer(JwtVerifyLayer::new(shared.verifier.clone()).realm("demo")) // who
        .layer(DeviceCheckLayer::new(shared.devices.clone())) // which device
        .layer(GeoRiskLayer::new(geo)) // from where
        .layer(StepUpLayer::new(policy()?)); // the decision
    Ok(Router::new()
        .route("/api/reports", get(whoami))
        .route("/api/payments", get(whoami).post(whoami))
        .route("/api/beta", get(whoami))
        .layer(layers))
}

/// A running demo.
pub struct Demo {
    /// The development issuer.
    pub issuer: DevIssuer,
    /// The verifier the service uses (revocations go through it).
    pub verifier: JwtVerifier,
    /// The service, reached directly: `X-Forwarded-For` is believed only from its load balancers
    /// (10.0.0.0/24), which the demo's client is not.
    pub direct_url: String,
    /// The same service behind a load balancer: the demo's client (127.0.0.1) is that trusted
    /// proxy, so its `X-Forwarded-For` is believed.
    pub edge_url: String,
    /// The audit writer.
    pub audit: Audit,
    /// The audit log file (JSON Lines, hash-chained).
    pub audit_file: PathBuf,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Demo {
    /// Waits until a server stops (it does not, unless it fails).
    pub async fn serve_forever(mut self) -> Result<(), BoxError> {
        for server in std::mem::take(&mut self.servers) {
            server.await??;
        }
        Ok(())
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        for server in &self.servers {
            server.abort();
        }
    }
}

async fn serve(app: Router) -> Result<(String, JoinHandle<std::io::Result<()>>), BoxError> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    // ConnectInfo gives the layers the socket peer, the one address nobody can spoof.
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    Ok((
        url,
        tokio::spawn(async move { axum::serve(listener, make).await }),
    ))
}

/// Starts the issuer and both entrances of the service; the audit log goes into `audit_dir`.
pub async fn start(audit_dir: PathBuf) -> Result<Demo, BoxError> {
    let issuer = DevIssuer::start().await?;
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(issuer.issuer())
                .audience(DEFAULT_AUDIENCE)
                // The development issuer speaks plain HTTP on loopback; real issuers use HTTPS.
                .allow_insecure_http(),
        )
        .cache_verified_tokens(10_000)
        .build()?;
    verifier.prefetch().await?;

    // Alice's laptop is registered with the posture its management agent reported; any other
    // device is registered on first use (device.new), with no posture known yet.
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

    std::fs::create_dir_all(&audit_dir)?;
    let audit_file = audit_dir.join("audit.jsonl");
    let audit = Audit::builder()
        .sink(JsonFileSink::open(&audit_file)?)
        .start()?;

    let shared = Shared {
        verifier: verifier.clone(),
        devices,
        locations: Arc::new(MemoryLocationHistory::new()),
        audit: audit.clone(),
    };
    let direct = ClientIpResolver::builder()
        .trusted_proxies(["10.0.0.0/24".parse()?])
        .source(ForwardedSource::XForwardedFor)
        .build();
    let edge = ClientIpResolver::builder()
        .trusted_proxies(["127.0.0.1/32".parse()?])
        .source(ForwardedSource::XForwardedFor)
        .build();
    let (direct_url, direct_server) = serve(service(&shared, direct)?).await?;
    let (edge_url, edge_server) = serve(service(&shared, edge)?).await?;
    Ok(Demo {
        issuer,
        verifier,
        direct_url,
        edge_url,
        audit,
        audit_file,
        servers: vec![direct_server, edge_server],
    })
}

/// One scenario: what was sent, what came back, and what the audit log says about it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The scenario.
    pub scenario: &'static str,
    /// Method and path.
    pub request: String,
    /// The HTTP status.
    pub status: u16,
    /// The problem code of the RFC 9457 body (`-` on success).
    pub code: String,
    /// The `WWW-Authenticate` header (`-` when absent).
    pub challenge: String,
    /// The audit record's decision: `allow`, `challenge`, `deny`.
    pub outcome: String,
    /// The audit record's deciding layer.
    pub layer: String,
    /// The audit record's reason code.
    pub reason: String,
    /// Whether the decision was enforced (`false`: report-only).
    pub enforced: bool,
    /// The risk score (absent when refused before anything was weighed).
    pub risk: Option<f64>,
    /// The trust level.
    pub trust: String,
    /// The client address the layers believed, and its country.
    pub client_ip: String,
    /// The signals behind the risk, strongest first.
    pub signals: Vec<String>,
}

/// The walk-through's result.
#[derive(Debug)]
pub struct Report {
    /// One row per request, in order.
    pub rows: Vec<Row>,
    /// The audit log file.
    pub audit_file: PathBuf,
    /// The chain check: `ok: N records ...`, or what is wrong.
    pub chain: Result<String, String>,
}

/// A request to send.
struct Call {
    scenario: &'static str,
    method: &'static str,
    base: &'static str, // "direct" or "edge"
    path: &'static str,
    token: Option<String>,
    device: Option<(&'static str, &'static str)>,
    forwarded_for: Option<&'static str>,
}

impl Call {
    fn new(scenario: &'static str, path: &'static str, token: Option<String>) -> Self {
        Self {
            scenario,
            method: "GET",
            base: "direct",
            path,
            token,
            device: Some(LAPTOP),
            forwarded_for: None,
        }
    }
    fn device(mut self, id: &'static str, fingerprint: &'static str) -> Self {
        self.device = Some((id, fingerprint));
        self
    }
    fn via_edge(mut self, client: &'static str) -> Self {
        self.base = "edge";
        self.forwarded_for = Some(client);
        self
    }
    fn spoofing(mut self, client: &'static str) -> Self {
        self.forwarded_for = Some(client);
        self
    }
    fn post(mut self) -> Self {
        self.method = "POST";
        self
    }
}

/// Alice's usual token: a password login, the reports scope, the analyst role.
fn alice(issuer: &DevIssuer) -> TokenBuilder {
    issuer
        .token()
        .claim("exp", unix_now() + 3600)
        .claim("acr", WEAK_ACR)
        .claim("amr", json!(["pwd"]))
        .claim("roles", json!(["analyst"]))
}

/// Sends every scenario with real HTTP, then reads the audit log and checks its chain.
pub async fn walkthrough(demo: &Demo) -> Result<Report, BoxError> {
    let issuer = &demo.issuer;
    let now = unix_now();
    let token = issuer.sign(&alice(issuer));

    // A token revoked through the verifier's revocation store before it is used.
    let revoked_jti = "demo-revoked-1";
    let revoked = issuer.sign(&alice(issuer).claim("jti", revoked_jti));
    demo.verifier
        .revoke(revoked_jti, SystemTime::now() + Duration::from_secs(3600))
        .await?;

    // After the step-up challenge the client logs in again with a second factor.
    let stepped_up = issuer.sign(
        &alice(issuer)
            .claim("acr", STRONG_ACR)
            .claim("amr", json!(["pwd", "otp"]))
            .claim("auth_time", now),
    );

    let calls = vec![
        Call::new("allowed", "/api/reports", Some(token.clone())),
        Call::new("missing token", "/api/reports", None),
        Call::new(
            "expired token",
            "/api/reports",
            Some(
                issuer.sign(
                    &alice(issuer)
                        .claim("iat", now - 7200)
                        .claim("exp", now - 3600),
                ),
            ),
        ),
        Call::new("revoked token", "/api/reports", Some(revoked)),
        Call::new("new device", "/api/reports", Some(token.clone()))
            .device("alice-new-phone", "fp-91d2aa07"),
        Call::new("fingerprint mismatch", "/api/reports", Some(token.clone()))
            .device(LAPTOP.0, "fp-stolen-id"),
        // Claims to be in the office (a trusted network); the header is not believed.
        Call::new(
            "spoofed X-Forwarded-For: 10.1.2.3",
            "/api/reports",
            Some(token.clone()),
        )
        .spoofing("10.1.2.3"),
        Call::new(
            "travel: from London (via LB)",
            "/api/reports",
            Some(token.clone()),
        )
        .via_edge(LONDON),
        Call::new(
            "travel: Tokyo, moments later",
            "/api/reports",
            Some(token.clone()),
        )
        .via_edge(TOKYO),
        Call::new(
            "blocked country: KP (via LB)",
            "/api/reports",
            Some(token.clone()),
        )
        .via_edge(PYONGYANG),
        Call::new("weak acr", "/api/payments", Some(token.clone())).post(),
        Call::new("after step-up", "/api/payments", Some(stepped_up)).post(),
        Call::new("report-only route", "/api/beta", Some(token)),
    ];

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut answers = Vec::with_capacity(calls.len());
    for (i, call) in calls.iter().enumerate() {
        let request_id = format!("demo-{:02}", i + 1);
        let base = if call.base == "edge" {
            &demo.edge_url
        } else {
            &demo.direct_url
        };
        let method = http::Method::from_bytes(call.method.as_bytes())?;
        let mut req = client
            .request(method, format!("{base}{}", call.path))
            .header("x-request-id", &request_id);
        if let Some(token) = &call.token {
            req = req.bearer_auth(token);
        }
        if let Some((id, fingerprint)) = call.device {
            req = req
                .header("x-device-id", id)
                .header("x-device-fingerprint", fingerprint);
        }
        if let Some(addr) = call.forwarded_for {
            req = req.header("x-forwarded-for", addr);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let challenge = header(&resp, http::header::WWW_AUTHENTICATE);
        let body: Value = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
        let code = body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned();
        answers.push((request_id, status, code, challenge));
    }

    // Every record is written and synced; read them back by request id.
    demo.audit.flush().await?;
    let records = read_records(&demo.audit_file)?;
    let mut rows = Vec::with_capacity(calls.len());
    for (call, (request_id, status, code, challenge)) in calls.iter().zip(answers) {
        let record = records
            .iter()
            .find(|r| field(r, "/http/request/id") == request_id)
            .ok_or_else(|| format!("no audit record for {request_id}"))?;
        rows.push(row(call, status, code, challenge, record));
    }

    let chain = verify_files(
        std::slice::from_ref(&demo.audit_file),
        &VerifyOptions::default(),
    )
    .map(|verified| verified.to_string())
    .map_err(|err| err.to_string());
    Ok(Report {
        rows,
        audit_file: demo.audit_file.clone(),
        chain,
    })
}

fn header(resp: &reqwest::Response, name: http::HeaderName) -> String {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

fn read_records(file: &PathBuf) -> Result<Vec<Value>, BoxError> {
    let text = std::fs::read_to_string(file)?;
    let mut records = Vec::new();
    for line in text.lines() {
        let record: Value = serde_json::from_str(line)?;
        if field(&record, "/event/action") == "zerotrust-decision" {
            records.push(record);
        }
    }
    Ok(records)
}

/// A text field of an audit record by JSON pointer (`-` when absent).
fn field(record: &Value, pointer: &str) -> String {
    record
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned()
}

fn row(call: &Call, status: u16, code: String, challenge: String, record: &Value) -> Row {
    let client_ip = match field(record, "/client/geo/country_iso_code").as_str() {
        "-" => field(record, "/client/ip"),
        country => format!("{} {country}", field(record, "/client/ip")),
    };
    Row {
        scenario: call.scenario,
        request: format!("{} {}", call.method, call.path),
        status,
        code,
        challenge,
        outcome: field(record, "/zerotrust/decision/outcome"),
        layer: field(record, "/zerotrust/decision/layer"),
        reason: field(record, "/zerotrust/decision/reason"),
        enforced: record
            .pointer("/zerotrust/decision/enforced")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        risk: record
            .pointer("/zerotrust/risk/score")
            .and_then(Value::as_f64),
        trust: field(record, "/zerotrust/risk/trust_level"),
        client_ip,
        signals: record
            .pointer("/zerotrust/risk/signals")
            .and_then(Value::as_array)
            .map(|signals| signals.iter().map(|s| field(s, "/name")).collect())
            .unwrap_or_default(),
    }
}

/// Prints the table, the challenges and the chain check.
pub fn print_report(report: &Report) {
    println!(
        "\n{:<34} {:<18} {:>6}  {:<40} {:<14} {:<18} signals",
        "scenario", "request", "status", "decision", "risk", "client ip"
    );
    for row in &report.rows {
        let mut decision = format!("{} {}", row.outcome, row.reason);
        if !row.enforced {
            decision.push_str(" (report-only)");
        }
        let risk = row
            .risk
            .map_or_else(|| "-".to_owned(), |r| format!("{r:.2} {}", row.trust));
        let signals = if row.signals.is_empty() {
            "-".to_owned()
        } else {
            row.signals.join(", ")
        };
        println!(
            "{:<34} {:<18} {:>6}  {:<40} {:<14} {:<18} {}",
            row.scenario, row.request, row.status, decision, risk, row.client_ip, signals
        );
    }
    println!("\nChallenges (WWW-Authenticate):");
    for row in report.rows.iter().filter(|r| r.challenge != "-") {
        println!("  {:<34} {}", row.scenario, row.challenge);
    }
    println!("\nAudit log: {}", report.audit_file.display());
    match &report.chain {
        Ok(verified) => println!("Chain:     {verified}"),
        Err(err) => println!("Chain:     BROKEN: {err}"),
    }
    println!(
        "Check it yourself: cargo run -p zerotrust-audit -- verify {}",
        report.audit_file.display()
    );
}

/// A fresh directory for this run's audit log.
pub fn audit_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!("zerotrust-demo-{}-{nanos}", std::process::id()))
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut serve = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--serve" => serve = true,
            "--once" => serve = false,
            other => return Err(format!("unknown argument {other}; use --serve").into()),
        }
    }

    let demo = start(audit_dir()).await?;
    println!("Issuer:  {} (discovery and JWKS)", demo.issuer.issuer());
    println!("Service: {} (direct)", demo.direct_url);
    println!(
        "         {} (behind a load balancer: the demo's client)",
        demo.edge_url
    );
    let report = walkthrough(&demo).await?;
    print_report(&report);
    if report.chain.is_err() {
        return Err("the audit chain did not verify".into());
    }
    if !serve {
        demo.audit.flush().await?;
        return Ok(());
    }
    let token = demo.issuer.sign(&alice(&demo.issuer));
    println!("\nA token for alice, valid for one hour:\n\nTOKEN={token}\n");
    println!("Try it:");
    println!(
        "  curl -i -H \"Authorization: Bearer $TOKEN\" -H 'x-device-id: {}' \
         -H 'x-device-fingerprint: {}' {}/api/reports",
        LAPTOP.0, LAPTOP.1, demo.direct_url
    );
    println!("\nServing until Ctrl-C.");
    let audit = demo.audit.clone();
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        result = demo.serve_forever() => result?,
    }
    audit.shutdown().await?;
    Ok(())
}

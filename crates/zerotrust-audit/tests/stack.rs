//! The whole stack over real HTTP on 127.0.0.1 with the audit layer outermost: 10,000 concurrent
//! requests, allowed and refused mixed, give exactly 10,000 records, each with the right
//! decision; the rotated files verify as one chain; no token appears in a record or a log line.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use zerotrust_audit::{
    Audit, AuditLogLayer, JsonFileSink, TracingSink, VerifyOptions, verify_files,
};
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{DeviceRecord, Enforcement, MemoryDeviceRegistry, ZeroTrust};
use zerotrust_device::{DeviceCheck, DeviceCheckLayer, PosturePolicy};
use zerotrust_geo::{GeoRisk, GeoRiskLayer};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_stepup::{Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

const REQUESTS: usize = 10_000;
const CONCURRENCY: usize = 64;

/// Everything the `tracing` subscriber printed, for the token scan.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What each kind of request must be recorded as.
struct Expect {
    status: u16,
    outcome: &'static str,
    reason: &'static str,
    layer: &'static str,
    enforced: bool,
    passed: bool,
}

const KINDS: [Expect; 5] = [
    Expect {
        status: 200,
        outcome: "allow",
        reason: "stepup.allow",
        layer: "stepup",
        enforced: true,
        passed: true,
    },
    Expect {
        status: 401,
        outcome: "challenge",
        reason: "token.missing",
        layer: "jwt",
        enforced: true,
        passed: false,
    },
    Expect {
        status: 401,
        outcome: "deny",
        reason: "token.expired",
        layer: "jwt",
        enforced: true,
        passed: false,
    },
    Expect {
        status: 403,
        outcome: "deny",
        reason: "stepup.role_required",
        layer: "stepup",
        enforced: true,
        passed: false,
    },
    Expect {
        status: 200,
        outcome: "deny",
        reason: "stepup.role_required",
        layer: "stepup",
        enforced: false,
        passed: true,
    },
];

#[test]
fn ten_thousand_concurrent_requests_give_exactly_ten_thousand_verifiable_records() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_env_filter(
            "zerotrust=trace,zerotrust_core=trace,zerotrust_jwt=trace,zerotrust_device=trace,\
             zerotrust_geo=trace,zerotrust_stepup=trace,zerotrust_audit=trace",
        )
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(run(captured));
}

async fn run(captured: Captured) {
    let dir = std::env::temp_dir().join(format!("zt-audit-stack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let audit = Audit::builder()
        .sink(
            JsonFileSink::builder(dir.join("audit.jsonl"))
                .max_file_size(1 << 20)
                .open()
                .unwrap(),
        )
        .sink(TracingSink)
        .start()
        .unwrap();

    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(dev.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .build()
        .unwrap();
    let registry = Arc::new(MemoryDeviceRegistry::new());
    registry.insert_new(DeviceRecord {
        fingerprint: Some(FingerprintDigest::of("fp-known")),
        owners: vec!["alice".into()],
        ..DeviceRecord::new("d-known", unix_now())
    });
    let devices = DeviceCheck::builder(registry)
        .device_headers()
        .posture_policy(PosturePolicy::builder().build())
        .build()
        .unwrap();
    let loopback: ipnet::IpNet = "127.0.0.0/8".parse().unwrap();
    let geo = GeoRisk::builder()
        .trusted_networks([loopback])
        .build()
        .unwrap();
    let policy = StepUpPolicy::builder()
        .route("/api/open", Requirements::new())
        .route("/api/admin", Requirements::new().any_role(["admin"]))
        .route(
            "/api/shadow",
            Requirements::new()
                .any_role(["admin"])
                .enforcement(Enforcement::ReportOnly),
        )
        .build()
        .unwrap();
    let handler = get(|zt: ZeroTrust| async move { zt.subject().unwrap_or("").to_owned() });
    let app = Router::new()
        .route("/api/open", handler.clone())
        .route("/api/admin", handler.clone())
        .route("/api/shadow", handler)
        .layer(StepUpLayer::new(policy))
        .layer(GeoRiskLayer::new(geo))
        .layer(DeviceCheckLayer::new(devices))
        .layer(JwtVerifyLayer::new(verifier))
        .layer(AuditLogLayer::new(audit.clone()));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });

    let valid: Vec<String> = (0..8)
        .map(|i| dev.sign(&dev.token().claim("jti", format!("valid-{i}"))))
        .collect();
    let expired: Vec<String> = (0..4)
        .map(|i| {
            dev.sign(
                &dev.token()
                    .claim("jti", format!("expired-{i}"))
                    .claim("iat", unix_now() - 7200)
                    .claim("exp", unix_now() - 3600),
            )
        })
        .collect();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://{addr}");

    let mut tasks = JoinSet::new();
    for worker in 0..CONCURRENCY {
        let (client, base, valid, expired) =
            (client.clone(), base.clone(), valid.clone(), expired.clone());
        tasks.spawn(async move {
            let mut statuses = Vec::new();
            for i in (worker..REQUESTS).step_by(CONCURRENCY) {
                let kind = i % KINDS.len();
                let path = match kind {
                    3 => "/api/admin",
                    4 => "/api/shadow",
                    _ => "/api/open",
                };
                let mut req = client
                    .get(format!("{base}{path}"))
                    .header("x-request-id", format!("req-{i}"))
                    .header("x-device-id", "d-known")
                    .header("x-device-fingerprint", "fp-known");
                match kind {
                    1 => {}
                    2 => req = req.bearer_auth(&expired[i % expired.len()]),
                    _ => req = req.bearer_auth(&valid[i % valid.len()]),
                }
                let resp = req.send().await.unwrap();
                assert_eq!(
                    resp.headers()["x-request-id"].to_str().unwrap(),
                    format!("req-{i}"),
                    "the request id comes back"
                );
                statuses.push((i, resp.status().as_u16()));
            }
            statuses
        });
    }
    let mut answered = 0;
    while let Some(done) = tokio::time::timeout(Duration::from_secs(300), tasks.join_next())
        .await
        .expect("requests finish")
    {
        for (i, status) in done.unwrap() {
            assert_eq!(status, KINDS[i % KINDS.len()].status, "request {i}");
            answered += 1;
        }
    }
    assert_eq!(answered, REQUESTS);
    audit.flush().await.unwrap();
    audit.shutdown().await.unwrap();
    server.abort();

    // The files form one chain.
    let files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(files.len() > 1, "1 MiB files rotate within 10,000 records");
    let verified = verify_files(&files, &VerifyOptions::default()).unwrap();
    assert_eq!(
        verified.records as usize,
        REQUESTS + files.len(),
        "one start record per file"
    );

    // Exactly one record per request, each with its decision.
    let mut by_id: HashMap<String, Value> = HashMap::new();
    let mut text = String::new();
    for file in &verified.files {
        text.push_str(&std::fs::read_to_string(file).unwrap());
    }
    for line in text.lines() {
        let record: Value = serde_json::from_str(line).unwrap();
        if record["event"]["action"] != "zerotrust-decision" {
            continue;
        }
        let id = record["http"]["request"]["id"].as_str().unwrap().to_owned();
        assert!(
            by_id.insert(id.clone(), record).is_none(),
            "{id} recorded twice"
        );
    }
    assert_eq!(by_id.len(), REQUESTS);
    for i in 0..REQUESTS {
        let record = &by_id[&format!("req-{i}")];
        let expect = &KINDS[i % KINDS.len()];
        let zt = &record["zerotrust"];
        assert_eq!(
            record["http"]["response"]["status_code"], expect.status,
            "req-{i}: {record}"
        );
        assert_eq!(
            zt["decision"]["outcome"], expect.outcome,
            "req-{i}: {record}"
        );
        assert_eq!(zt["decision"]["reason"], expect.reason, "req-{i}: {record}");
        assert_eq!(record["event"]["reason"], expect.reason, "req-{i}");
        assert_eq!(zt["decision"]["layer"], expect.layer, "req-{i}");
        assert_eq!(zt["decision"]["enforced"], expect.enforced, "req-{i}");
        assert_eq!(zt["passed"], expect.passed, "req-{i}");
        assert_eq!(record["ecs"]["version"], "8.11.0");
        assert_eq!(record["source"]["ip"], "127.0.0.1", "req-{i}");
        let layers: Vec<&str> = zt["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["name"].as_str().unwrap())
            .collect();
        match i % KINDS.len() {
            0 | 4 => {
                assert_eq!(record["event"]["type"], json!(["access", "allowed"]));
                assert_eq!(record["user"]["id"], "alice");
                assert_eq!(record["client"]["ip"], "127.0.0.1", "req-{i}");
                assert_eq!(zt["network"]["zone"], "trusted", "req-{i}");
                assert_eq!(record["device"]["id"], "d-known");
                assert!(
                    zt["identity"]["jti"]
                        .as_str()
                        .unwrap()
                        .starts_with("valid-")
                );
                assert_eq!(
                    zt["route"],
                    if i % 5 == 0 {
                        "/api/open"
                    } else {
                        "/api/shadow"
                    }
                );
                assert_eq!(layers, ["jwt", "device", "geo", "stepup"], "req-{i}");
                assert_eq!(
                    zt["risk"]["signals"][0]["name"], "device.weak_binding",
                    "req-{i}"
                );
            }
            1 | 2 => {
                assert_eq!(record["event"]["type"], json!(["access", "denied"]));
                assert!(record.get("user").is_none(), "no verified user: req-{i}");
                assert_eq!(layers, ["jwt"], "the refusing layer is timed: req-{i}");
                assert!(
                    zt.get("risk").is_none(),
                    "no risk assessed before the token check refused: req-{i}: {record}"
                );
            }
            _ => {
                assert_eq!(record["event"]["type"], json!(["access", "denied"]));
                assert_eq!(record["user"]["id"], "alice");
                assert_eq!(layers, ["jwt", "device", "geo", "stepup"], "req-{i}");
            }
        }
        let total = record["event"]["duration"].as_u64().unwrap();
        let zerotrust = zt["duration_ns"].as_u64().unwrap();
        assert!(zerotrust <= total, "req-{i}: {zerotrust} > {total}");
    }

    // No token anywhere: not in the records, not in any log line.
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.lines()
            .filter(|l| l.contains("zero-trust decision"))
            .count()
            >= REQUESTS,
        "the tracing sink logged every record"
    );
    for token in valid.iter().chain(&expired) {
        let signature = token.rsplit('.').next().unwrap();
        assert!(
            !text.contains(signature),
            "a token signature is in the audit file"
        );
        assert!(
            !logs.contains(signature),
            "a token signature is in the logs"
        );
        let payload = token.split('.').nth(1).unwrap();
        assert!(
            !text.contains(payload) && !logs.contains(payload),
            "a token payload leaked"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

//! Two replicas of one service sharing their zero-trust state in Redis: a token revoked on one is
//! refused by the other within a second.
//!
//! ```text
//! cargo run --example replicas_redis --features redis
//! ```
//!
//! It needs `redis-server` on the `PATH` (Debian: `apt-get install redis-server`): the example
//! starts its own on 127.0.0.1 and a free port, without persistence (`--save '' --appendonly
//! no`), and kills it at the end. Each replica has its own Redis connection, as separate processes
//! would, and keeps revocations, device registrations, last sightings and behaviour counters in
//! Redis. Revocations are pushed to every replica (pub/sub), so the other replica's short local
//! "not revoked" cache is dropped at once.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceBuilder;
use zerotrust::redis::RedisStores;
use zerotrust::stepup::BehaviorPolicy;
use zerotrust::{
    DeviceCheck, DeviceCheckLayer, GeoRisk, GeoRiskLayer, Issuer, JwtVerifier, JwtVerifyLayer,
    Requirements, StepUpLayer, StepUpPolicy, ZeroTrust,
};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer};

type BoxError = Box<dyn Error + Send + Sync>;

/// A `redis-server` process of this example, killed (and waited for) on drop.
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    child: Child,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts `redis-server` on a free loopback port and waits (at most 10 s) until it answers.
    pub fn start() -> Result<Self, BoxError> {
        let port = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
            .local_addr()?
            .port();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("zerotrust-replicas-{port}-{nanos}"));
        std::fs::create_dir_all(&dir)?;
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server ({e}); install it first"))?;
        let mut server = Self {
            url: format!("redis://127.0.0.1:{port}"),
            child,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(format!("redis-server exited at start: {status}").into());
            }
            if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
                return Ok(server);
            }
            if Instant::now() > deadline {
                server.stop();
                return Err("redis-server did not start within 10 s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn whoami(zt: ZeroTrust) -> Json<Value> {
    Json(json!({ "subject": zt.subject(), "trust": zt.trust_level().as_str() }))
}

/// One replica: its own Redis connection, verifier and server.
pub struct Replica {
    /// Its name, for the printout.
    pub name: &'static str,
    /// `http://127.0.0.1:PORT`.
    pub base_url: String,
    /// Its verifier (revocations go through it, into Redis).
    pub verifier: JwtVerifier,
    server: JoinHandle<std::io::Result<()>>,
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Starts a replica whose state lives in the Redis at `redis_url`.
pub async fn replica(
    name: &'static str,
    issuer: &DevIssuer,
    redis_url: &str,
) -> Result<Replica, BoxError> {
    let stores = RedisStores::connect(redis_url).await?;
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(issuer.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .revocation_store(Arc::new(stores.revocations()))
        .cache_verified_tokens(10_000)
        .build()?;
    verifier.prefetch().await?;
    let devices = DeviceCheck::builder(stores.devices())
        .device_headers()
        .auto_register()
        .build()?;
    let geo = GeoRisk::builder()
        .location_history(stores.locations())
        .build()?;
    let policy = StepUpPolicy::builder()
        .route("/api/reports", Requirements::new().max_risk(0.9))
        .behavior(stores.behavior(), BehaviorPolicy::default())
        .build()?;
    let app = Router::new().route("/api/reports", get(whoami)).layer(
        ServiceBuilder::new()
            .layer(JwtVerifyLayer::new(verifier.clone()))
            .layer(DeviceCheckLayer::new(devices))
            .layer(GeoRiskLayer::new(geo))
            .layer(StepUpLayer::new(policy)),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let base_url = format!("http://{}", listener.local_addr()?);
    let make = app.into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, make).await });
    Ok(Replica {
        name,
        base_url,
        verifier,
        server,
    })
}

/// One step of the walk-through.
#[derive(Debug)]
pub struct Step {
    /// The replica asked.
    pub replica: &'static str,
    /// What happened before.
    pub note: String,
    /// The status.
    pub status: u16,
    /// The problem code (`-` on success).
    pub code: String,
}

/// The walk-through's result.
#[derive(Debug)]
pub struct Outcome {
    /// The steps in order.
    pub steps: Vec<Step>,
    /// How long after the revocation on A the token was first refused on B.
    pub refused_on_b_after: Duration,
}

async fn get_reports(
    http: &reqwest::Client,
    replica: &Replica,
    token: &str,
) -> Result<(u16, String), BoxError> {
    let resp = http
        .get(format!("{}/api/reports", replica.base_url))
        .bearer_auth(token)
        .header("x-device-id", "alice-laptop")
        .header("x-device-fingerprint", "fp-5b0e4c1d")
        .send()
        .await?;
    let status = resp.status().as_u16();
    let body: Value = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
    let code = body
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned();
    Ok((status, code))
}

/// Both replicas accept a token; A revokes it; both refuse it (B within a second).
pub async fn walkthrough(
    issuer: &DevIssuer,
    a: &Replica,
    b: &Replica,
) -> Result<Outcome, BoxError> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let jti = "replicas-demo-1";
    let token = issuer.sign(&issuer.token().claim("jti", jti));
    let mut steps = Vec::new();
    for replica in [a, b] {
        let (status, code) = get_reports(&http, replica, &token).await?;
        steps.push(Step {
            replica: replica.name,
            note: "before the revocation".into(),
            status,
            code,
        });
    }

    let revoked_at = Instant::now();
    a.verifier
        .revoke(jti, SystemTime::now() + Duration::from_secs(600))
        .await?;
    let (status, code) = get_reports(&http, a, &token).await?;
    steps.push(Step {
        replica: a.name,
        note: "revoked on A".into(),
        status,
        code,
    });

    // Ask B until it refuses (bounded: 2 s; the push normally takes milliseconds).
    let (mut status, mut code) = get_reports(&http, b, &token).await?;
    let mut attempts = 1;
    while status == 200 && revoked_at.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        (status, code) = get_reports(&http, b, &token).await?;
        attempts += 1;
    }
    let refused_on_b_after = revoked_at.elapsed();
    steps.push(Step {
        replica: b.name,
        note: format!(
            "{} ms after the revocation (attempt {attempts})",
            refused_on_b_after.as_millis()
        ),
        status,
        code,
    });
    Ok(Outcome {
        steps,
        refused_on_b_after,
    })
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let redis = RedisServer::start()?;
    println!("redis-server: {}", redis.url);
    let issuer = DevIssuer::start().await?;
    let a = replica("A", &issuer, &redis.url).await?;
    let b = replica("B", &issuer, &redis.url).await?;
    println!("replica A:    {}", a.base_url);
    println!("replica B:    {}\n", b.base_url);
    let outcome = walkthrough(&issuer, &a, &b).await?;
    println!("{:<8} {:>6}  {:<16} when", "replica", "status", "code");
    for step in &outcome.steps {
        println!(
            "{:<8} {:>6}  {:<16} {}",
            step.replica, step.status, step.code, step.note
        );
    }
    println!(
        "\nRevoked on A, refused on B after {} ms.",
        outcome.refused_on_b_after.as_millis()
    );
    drop((a, b));
    drop(redis); // kills redis-server
    Ok(())
}

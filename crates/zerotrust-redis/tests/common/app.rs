//! Full axum stacks on 127.0.0.1 (JwtVerify, GeoRisk, StepUp) whose state lives in Redis: each
//! `Replica` has its own connection, as separate processes would.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    unreachable_pub
)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zerotrust_audit::{Audit, AuditEvent, AuditLogLayer, AuditSink};
use zerotrust_core::{
    BehaviorStore, ClientIpResolver, ForwardedSource, LocationHistory, MemoryBehaviorStore,
    MemoryLocationHistory, MemoryRevocationStore, RevocationStore, ZeroTrust,
};
use zerotrust_geo::{GeoRisk, GeoRiskLayer};
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_redis::RedisStores;
use zerotrust_stepup::{BehaviorPolicy, Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer};

/// Which checks keep their state in Redis, and how the behaviour check fails.
#[derive(Clone, Copy)]
pub struct Stack {
    /// Revocations in Redis (else in memory).
    pub redis_revocations: bool,
    /// The travel and behaviour checks let requests on with `store.degraded` when Redis is down.
    pub fail_open: bool,
    /// Failures after which a subject is locked out.
    pub lockout_after: u32,
}

impl Default for Stack {
    fn default() -> Self {
        Self {
            redis_revocations: true,
            fail_open: false,
            lockout_after: 10,
        }
    }
}

/// One app instance.
pub struct Replica {
    pub base: String,
    pub verifier: JwtVerifier,
    pub stores: RedisStores,
    pub http: reqwest::Client,
    pub audit: Audited,
}

/// One audit record, as the tests read it: `(status, outcome, reason, signals)`.
pub type Record = (Option<u16>, &'static str, &'static str, Vec<String>);

/// What the audit layer (outermost in every stack) recorded.
#[derive(Clone)]
pub struct Audited {
    pub audit: Audit,
    pub records: Arc<Mutex<Vec<Record>>>,
}

struct Collect(Arc<Mutex<Vec<Record>>>);

impl AuditSink for Collect {
    fn write(&mut self, batch: &[AuditEvent]) -> std::io::Result<()> {
        let mut records = self.0.lock().unwrap();
        for event in batch {
            let decision = event.decision();
            let signals = event
                .context()
                .map(|zt| zt.signals().iter().map(|s| s.name().to_owned()).collect())
                .unwrap_or_default();
            records.push((
                event.status(),
                decision.outcome.as_str(),
                decision.reason.code(),
                signals,
            ));
        }
        Ok(())
    }
}

impl Audited {
    fn start() -> Self {
        let records = Arc::new(Mutex::new(Vec::new()));
        let audit = Audit::builder()
            .sink(Collect(Arc::clone(&records)))
            .start()
            .unwrap();
        Self { audit, records }
    }

    /// Every record so far (after a flush), then forgets them.
    pub async fn take(&self) -> Vec<Record> {
        self.audit.flush().await.unwrap();
        std::mem::take(&mut *self.records.lock().unwrap())
    }
}

async fn seen(zt: ZeroTrust) -> axum::Json<Value> {
    axum::Json(json!({
        "sub": zt.subject(),
        "signals": zt.signals().iter().map(|s| s.name().to_owned()).collect::<Vec<_>>(),
    }))
}

/// Believes `X-Forwarded-For` from the loopback peer, so the tests' client can come from anywhere.
fn via_loopback_proxy() -> ClientIpResolver {
    ClientIpResolver::builder()
        .trusted_proxies(["127.0.0.0/8".parse().unwrap()])
        .source(ForwardedSource::XForwardedFor)
        .build()
}

/// Where a stack keeps its state.
#[derive(Clone)]
pub struct State {
    /// Revocations (the verifier's default, in memory, when `None`).
    pub revocations: Option<Arc<dyn RevocationStore>>,
    /// Last sightings.
    pub locations: Arc<dyn LocationHistory>,
    /// Behaviour counters and lockouts.
    pub behavior: Arc<dyn BehaviorStore>,
}

impl State {
    /// Everything in this process.
    pub fn memory() -> Self {
        Self {
            revocations: Some(Arc::new(MemoryRevocationStore::new())),
            locations: Arc::new(MemoryLocationHistory::new()),
            behavior: Arc::new(MemoryBehaviorStore::new()),
        }
    }

    /// Everything in Redis (revocations too unless `stack` says otherwise).
    pub fn redis(stores: &RedisStores, stack: Stack) -> Self {
        Self {
            revocations: stack
                .redis_revocations
                .then(|| Arc::new(stores.revocations()) as Arc<dyn RevocationStore>),
            locations: Arc::new(stores.locations()),
            behavior: Arc::new(stores.behavior()),
        }
    }
}

/// Serves JwtVerify, GeoRisk and StepUp over `state` on 127.0.0.1, inside an audit layer; answers
/// the base URL, the verifier and the audit records.
pub async fn serve(dev: &DevIssuer, state: State, stack: Stack) -> (String, JwtVerifier, Audited) {
    let mut verifier = JwtVerifier::builder().issuer(
        Issuer::discover(dev.issuer())
            .audience(DEFAULT_AUDIENCE)
            .allow_insecure_http(),
    );
    if let Some(store) = state.revocations {
        verifier = verifier.revocation_store(store);
    }
    let verifier = verifier.build().unwrap();
    let mut geo = GeoRisk::builder()
        .client_ip_resolver(via_loopback_proxy())
        .shared_location_history(state.locations);
    if stack.fail_open {
        geo = geo.travel_fail_open();
    }
    let geo = geo.build().unwrap();
    let policy = StepUpPolicy::builder()
        .route("/api/open", Requirements::new())
        .route("/api/admin", Requirements::new().any_role(["admin"]))
        .behavior(
            state.behavior,
            BehaviorPolicy {
                lockout_after: stack.lockout_after,
                failures_from: stack.lockout_after,
                fail_open: stack.fail_open,
                ..BehaviorPolicy::default()
            },
        )
        .build()
        .unwrap();
    let audited = Audited::start();
    let router = Router::new()
        .route("/api/{*rest}", get(seen))
        .layer(StepUpLayer::new(policy))
        .layer(GeoRiskLayer::new(geo))
        .layer(JwtVerifyLayer::new(verifier.clone()))
        .layer(AuditLogLayer::new(audited.audit.clone()));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    (format!("http://{addr}"), verifier, audited)
}

/// Connects to `redis_url` (as a separate replica would) and serves the stack.
pub async fn replica(dev: &DevIssuer, redis_url: &str, stack: Stack) -> Replica {
    let stores = RedisStores::builder(redis_url)
        .prefix("replicas:")
        .connect()
        .await
        .unwrap();
    let (base, verifier, audit) = serve(dev, State::redis(&stores, stack), stack).await;
    Replica {
        base,
        verifier,
        stores,
        http: client(),
        audit,
    }
}

/// An HTTP client with a 10 s timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A reply: status, `Retry-After`, and the JSON body (the handler's view, or a problem).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub body: Value,
}

impl Reply {
    /// The problem code of a refusal.
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    /// Whether the handler saw the signal `name`.
    pub fn has_signal(&self, name: &str) -> bool {
        self.body["signals"]
            .as_array()
            .is_some_and(|a| a.iter().any(|s| s == name))
    }
}

impl Replica {
    /// GET `path` with `token`, from the client address `from`.
    pub async fn get(&self, path: &str, token: &str, from: &str) -> Reply {
        let resp = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("x-forwarded-for", from)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.text().await.unwrap();
        Reply {
            status,
            retry_after,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        }
    }
}

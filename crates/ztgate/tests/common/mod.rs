//! A real upstream (axum on 127.0.0.1), a development issuer, ztgate started in-process from a
//! config file, and a plain hyper client. Every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code,
    unreachable_pub
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lc_rs::digest;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get as route_get, post};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt as _;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer};

/// The bound on any single wait in these tests.
pub const WAIT: Duration = Duration::from_secs(30);

/// Size of one generated chunk.
pub const CHUNK: usize = 64 * 1024;

/// Deterministic chunk `i` of a generated stream: a fixed pseudo-random block, stamped with `i`.
pub fn chunk(i: u64) -> Bytes {
    static BASE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    });
    let mut out = base.clone();
    out[..8].copy_from_slice(&i.to_le_bytes());
    Bytes::from(out)
}

/// SHA-256 (hex) of chunks `0..n`.
pub fn expected_sha256(n: u64) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for i in 0..n {
        ctx.update(&chunk(i));
    }
    hex(ctx.finish().as_ref())
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What the upstream shares with the test.
#[derive(Default)]
pub struct UpstreamState {
    pub name: String,
    pub hits: AtomicUsize,
    /// Released by the test: `/api/slow` and `/api/trickle` wait for it.
    pub release: Notify,
    /// Notified by the upstream when `/api/slow` started or `/api/first-chunk` got its first chunk.
    pub started: Notify,
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub state: Arc<UpstreamState>,
}

impl Upstream {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn headers_json(headers: &HeaderMap) -> Value {
    let mut map: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        map.entry(name.as_str().to_owned())
            .or_default()
            .push(value.to_str().unwrap_or("<binary>").to_owned());
    }
    json!(map)
}

async fn echo(State(s): State<Arc<UpstreamState>>, req: Request) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    axum::Json(json!({
        "upstream": s.name,
        "method": req.method().as_str(),
        "path": req.uri().path(),
        "query": req.uri().query(),
        "headers": headers_json(req.headers()),
    }))
    .into_response()
}

/// Hashes the request body as it streams in.
async fn upload(State(s): State<Arc<UpstreamState>>, req: Request) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let mut stream = req.into_body().into_data_stream();
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut len = 0usize;
    while let Some(frame) = stream.next().await {
        let Ok(data) = frame else {
            return StatusCode::BAD_REQUEST.into_response();
        };
        len += data.len();
        ctx.update(&data);
    }
    axum::Json(json!({ "len": len, "sha256": hex(ctx.finish().as_ref()) })).into_response()
}

/// Streams `n` generated chunks.
async fn download(State(s): State<Arc<UpstreamState>>, Path(n): Path<u64>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let stream = futures_util::stream::iter((0..n).map(|i| Ok::<_, std::io::Error>(chunk(i))));
    Body::from_stream(stream).into_response()
}

/// Answers once the test releases it.
async fn slow(State(s): State<Arc<UpstreamState>>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    s.started.notify_one();
    s.release.notified().await;
    axum::Json(json!({ "upstream": s.name, "slow": true })).into_response()
}

/// Sends one chunk, then the rest only after the test released it.
async fn trickle(State(s): State<Arc<UpstreamState>>) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let state = s;
    let stream = futures_util::stream::once(async { Ok::<_, std::io::Error>(chunk(0)) }).chain(
        futures_util::stream::once(async move {
            state.release.notified().await;
            Ok(chunk(1))
        }),
    );
    Body::from_stream(stream).into_response()
}

/// Signals the first chunk of the request body, then reads the rest.
async fn first_chunk(State(s): State<Arc<UpstreamState>>, req: Request) -> Response {
    s.hits.fetch_add(1, Ordering::SeqCst);
    let mut stream = req.into_body().into_data_stream();
    let mut len = 0usize;
    let mut first = true;
    while let Some(Ok(data)) = stream.next().await {
        len += data.len();
        if first {
            first = false;
            s.started.notify_one();
        }
    }
    axum::Json(json!({ "len": len })).into_response()
}

pub async fn upstream(name: &str) -> Upstream {
    let state = Arc::new(UpstreamState {
        name: name.into(),
        ..UpstreamState::default()
    });
    let app = Router::new()
        .route("/api/upload", post(upload))
        .route("/api/download/{n}", route_get(download))
        .route("/api/slow", route_get(slow))
        .route("/api/trickle", route_get(trickle))
        .route("/api/first-chunk", post(first_chunk))
        .fallback(any(echo))
        .with_state(state.clone());
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Upstream { addr, state }
}

/// An address nobody listens on.
pub async fn closed_port() -> SocketAddr {
    let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    addr
}

/// A fresh directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ztgate-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The common head of a config: one plain listener on a free port, the dev issuer, an audit file.
pub fn base_config(dev: &DevIssuer, dir: &std::path::Path) -> String {
    format!(
        r#"
[[listener]]
addr = "127.0.0.1:0"

[[issuer]]
issuer = "{issuer}"
audiences = ["{aud}"]
allow_insecure_http = true

[audit]
file = "{audit}"
"#,
        issuer = dev.issuer(),
        aud = DEFAULT_AUDIENCE,
        audit = dir.join("audit.jsonl").display()
    )
}

pub struct Env {
    pub dev: DevIssuer,
    pub up: Upstream,
    pub gw: ztgate::Gateway,
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

impl Env {
    pub fn base(&self) -> String {
        format!("http://{}", self.gw.local_addrs()[0])
    }
}

/// Starts an issuer, an upstream and a gateway with `routes` (TOML appended to the base config,
/// `{upstream}` replaced with the upstream's URL).
pub async fn env(tag: &str, routes: &str) -> Env {
    let dev = DevIssuer::start().await.unwrap();
    let up = upstream("a").await;
    let dir = temp_dir(tag);
    let text = base_config(&dev, &dir) + &routes.replace("{upstream}", &up.url());
    let config_path = dir.join("ztgate.toml");
    std::fs::write(&config_path, text).unwrap();
    let gw = tokio::time::timeout(WAIT, ztgate::Gateway::start(&config_path))
        .await
        .unwrap()
        .unwrap();
    Env {
        dev,
        up,
        gw,
        dir,
        config_path,
    }
}

pub type HttpClient = Client<HttpConnector, Body>;

pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
}

/// Sends `req` and reads the whole answer, within [`WAIT`].
pub async fn send(client: &HttpClient, req: http::Request<Body>) -> Answer {
    tokio::time::timeout(WAIT, async {
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        }
    })
    .await
    .expect("request timed out")
}

/// GET `url` with optional bearer token and extra headers.
pub async fn get(
    client: &HttpClient,
    url: &str,
    token: Option<&str>,
    extra: &[(&str, &str)],
) -> Answer {
    let mut b = http::Request::get(url);
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    for (n, v) in extra {
        b = b.header(*n, *v);
    }
    send(client, b.body(Body::empty()).unwrap()).await
}

/// Verifies an identity assertion with the JWKS served by the gateway at `base`, for `audience`;
/// answers its claims after checking `typ`, `kid`, `exp - iat <= 60`.
pub async fn verify_assertion(
    client: &HttpClient,
    base: &str,
    token: &str,
    audience: &str,
) -> Value {
    let jwks = get(client, &format!("{base}{}", ztgate::JWKS_PATH), None, &[]).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let jwks = jwks.json();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some(ztgate::ASSERTION_TYP));
    assert_eq!(header.alg, Algorithm::ES256);
    let kid = header.kid.unwrap();
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("the assertion's kid is in the gateway's JWKS");
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[audience]);
    validation.set_issuer(&["ztgate"]);
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iat", "aud", "iss"]);
    let data = jsonwebtoken::decode::<Value>(token, &key, &validation).unwrap();
    let claims = data.claims;
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert!((1..=60).contains(&lifetime), "lifetime {lifetime}");
    claims
}

/// The audit records written so far (after a flush).
pub async fn audit_records(gw: &ztgate::Gateway, dir: &std::path::Path) -> Vec<Value> {
    tokio::time::timeout(WAIT, gw.audit().flush())
        .await
        .unwrap()
        .unwrap();
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (bounded) until `f` holds.
pub async fn eventually(mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("condition not reached within 30 s");
}

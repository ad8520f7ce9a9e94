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
use std::future::Future;
use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::{Path as FsPath, PathBuf};
use std::process::{Command, Stdio};
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
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
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
    /// How many requests reached this upstream.
    pub fn hits(&self) -> usize {
        self.state.hits.load(Ordering::SeqCst)
    }
}

/// An upstream a gateway can be put in front of: what its routes name as `{upstream}`, and the
/// audience of the assertions it receives.
pub trait Origin {
    /// `scheme://host:port`.
    fn url(&self) -> String;
}

impl Origin for Upstream {
    fn url(&self) -> String {
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
    two_chunks(async move { s.release.notified().await }).into_response()
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

/// A body of two generated chunks: [`chunk`]`(0)` at once, [`chunk`]`(1)` once `before_second`
/// completes (its first bytes exist before its last ones do).
pub fn two_chunks(before_second: impl Future<Output = ()> + Send + 'static) -> Body {
    let first = futures_util::stream::once(async { Ok::<_, std::io::Error>(chunk(0)) });
    let second = futures_util::stream::once(async move {
        before_second.await;
        Ok(chunk(1))
    });
    Body::from_stream(first.chain(second))
}

// ------------------------------------------------------------------------------ files and configs

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

/// Writes `contents` to `dir/name`; answers the path as a config file would name it.
pub fn write_file(dir: &FsPath, name: &str, contents: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, contents).unwrap();
    path.display().to_string()
}

/// Writes `text` as `dir/ztgate.toml`; answers its path.
pub fn write_config(dir: &FsPath, text: &str) -> PathBuf {
    let path = dir.join("ztgate.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The common head of a config: one plain listener on a free port, the dev issuer, an audit file.
pub fn base_config(dev: &DevIssuer, dir: &FsPath) -> String {
    config_head(dev, dir, "")
}

/// [`base_config`] with `listener_tls` (a `[listener.tls]` table) for the listener.
pub fn config_head(dev: &DevIssuer, dir: &FsPath, listener_tls: &str) -> String {
    format!(
        r#"
[[listener]]
addr = "127.0.0.1:0"
{listener_tls}

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

/// The route most tests use: `/api` to `{upstream}`, for tokens with `reports:read`.
pub const API_ROUTE: &str = r#"
[[route]]
prefix = "/api"
upstream = "{upstream}"
[route.policy]
scopes = ["reports:read"]
"#;

/// A route for tokens with `reports:read`: `prefix` to `upstream`, then `tables` (TOML of the
/// route's own sub-tables such as `[route.tls]`, or empty).
pub fn route(prefix: &str, upstream: &str, tables: &str) -> String {
    format!(
        "[[route]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n[route.policy]\nscopes = [\"reports:read\"]\n{tables}\n"
    )
}

/// A complete config without a running issuer or upstream, for checks that only parse:
/// extend it with a section.
pub const MINIMAL_CONFIG: &str = "[[listener]]\naddr = \"127.0.0.1:0\"\n[[issuer]]\nissuer = \"https://idp.example.test\"\naudiences = [\"api\"]\n[[route]]\nprefix = \"/\"\nupstream = \"http://127.0.0.1:9\"\n";

/// Parses `text` as the file `gw.toml`.
pub fn parse_config(text: &str) -> Result<ztgate::Config, ztgate::ConfigError> {
    ztgate::Config::parse(text, FsPath::new("gw.toml"))
}

// ------------------------------------------------------------------------------ the gateway

/// Starts a gateway from the config file at `path`, within [`WAIT`]; panics when it is refused.
pub async fn start_gateway(path: &FsPath) -> ztgate::Gateway {
    tokio::time::timeout(WAIT, ztgate::Gateway::start(path))
        .await
        .expect("the gateway did not start in time")
        .unwrap_or_else(|e| panic!("the gateway refused to start: {e}"))
}

/// Starts a gateway from the config file at `path`, within [`WAIT`], expecting a refusal; answers
/// its text.
pub async fn start_refused(path: &FsPath) -> String {
    tokio::time::timeout(WAIT, ztgate::Gateway::start(path))
        .await
        .expect("the gateway did not answer in time")
        .expect_err("the gateway started")
        .to_string()
}

/// Writes the base config plus `rest(dir)` (`dir` is the test's directory, for files `rest`
/// names) and expects the gateway to refuse it; answers the refusal's text.
pub async fn start_refusal(tag: &str, rest: impl FnOnce(&FsPath) -> String) -> String {
    let dev = DevIssuer::start().await.unwrap();
    let dir = temp_dir(tag);
    let config_path = write_config(&dir, &(base_config(&dev, &dir) + &rest(&dir)));
    start_refused(&config_path).await
}

/// A running gateway in front of `up`, with the dev issuer it trusts and its files.
pub struct Env<U = Upstream> {
    pub dev: DevIssuer,
    pub up: U,
    pub gw: ztgate::Gateway,
    /// The test's directory: the config, the audit log, files the config names.
    pub dir: PathBuf,
    pub config_path: PathBuf,
}

/// Starts an issuer, an upstream and a gateway with `routes` (TOML appended to the base config,
/// `{upstream}` replaced with the upstream's URL).
pub async fn env(tag: &str, routes: &str) -> Env {
    env_for(tag, upstream("a").await, |_| routes.to_owned()).await
}

/// Starts an issuer and a gateway in front of `up`, with the base config plus `routes(dir)`
/// (`dir` is the test's directory, for files the routes name; `{upstream}` is replaced with
/// `up`'s URL).
pub async fn env_for<U: Origin>(
    tag: &str,
    up: U,
    routes: impl FnOnce(&FsPath) -> String,
) -> Env<U> {
    let dev = DevIssuer::start().await.unwrap();
    let dir = temp_dir(tag);
    let text = base_config(&dev, &dir) + &routes(&dir).replace("{upstream}", &up.url());
    let config_path = write_config(&dir, &text);
    let gw = start_gateway(&config_path).await;
    Env {
        dev,
        up,
        gw,
        dir,
        config_path,
    }
}

impl<U> Env<U> {
    /// The gateway's first listener, `http://host:port`.
    pub fn base(&self) -> String {
        format!("http://{}", self.gw.local_addrs()[0])
    }

    /// `path` (with any query) on the gateway.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// A request builder for `method path` on the gateway, with a fresh bearer token of the dev
    /// issuer (subject `alice`, scope `reports:read`).
    pub fn request_with_token(&self, method: http::Method, path: &str) -> http::request::Builder {
        http::Request::builder()
            .method(method)
            .uri(self.url(path))
            .header("authorization", format!("Bearer {}", self.dev.mint()))
    }

    /// GET `path` on the gateway with a fresh token of the dev issuer and `extra` headers.
    pub async fn get_with_token(
        &self,
        client: &HttpClient,
        path: &str,
        extra: &[(&str, &str)],
    ) -> Answer {
        get(client, &self.url(path), Some(&self.dev.mint()), extra).await
    }

    /// Replaces `from` with `to` in the config file (for a reload to pick up).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config_path)
            .unwrap()
            .replace(from, to);
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Reloads the config file, within [`WAIT`].
    pub async fn reload(&self) -> Result<(), ztgate::ConfigError> {
        tokio::time::timeout(WAIT, self.gw.reload())
            .await
            .expect("the reload did not finish in time")
    }

    /// The audit records written so far (after a flush).
    pub async fn audit_records(&self) -> Vec<Value> {
        tokio::time::timeout(WAIT, self.gw.audit().flush())
            .await
            .unwrap()
            .unwrap();
        audit_log(&self.dir)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The first audit record that `matches` (after a flush); panics listing them all when none
    /// does.
    pub async fn audit_record(&self, matches: impl Fn(&Value) -> bool) -> Value {
        let records = self.audit_records().await;
        records
            .iter()
            .find(|r| matches(r))
            .cloned()
            .unwrap_or_else(|| panic!("no such record in {records:#?}"))
    }
}

impl<U: Origin> Env<U> {
    /// Verifies the identity assertion the echoing upstream received (`echo` is its answer) with
    /// the gateway's JWKS, for the upstream's origin as audience; answers its claims.
    pub async fn echoed_claims(&self, client: &HttpClient, echo: &Value) -> Value {
        verify_assertion(client, &self.base(), echoed_assertion(echo), &self.up.url()).await
    }
}

impl Env {
    /// Sends GET `/api/slow` in the background and answers once the upstream holds it (until
    /// `up.state.release` is notified); the handle yields the answer.
    pub async fn slow_request_in_flight(&self, client: &HttpClient) -> JoinHandle<Answer> {
        let req = self
            .request_with_token(http::Method::GET, "/api/slow")
            .body(Body::empty())
            .unwrap();
        let client = client.clone();
        let in_flight = tokio::spawn(async move { send(&client, req).await });
        tokio::time::timeout(WAIT, self.up.state.started.notified())
            .await
            .expect("the slow request did not reach the upstream");
        in_flight
    }
}

// ------------------------------------------------------------------------------ the binary

/// `ztgate --config FILE` as a child process, killed when dropped however the test ends.
pub struct ZtgateProcess {
    pub child: std::process::Child,
    /// The address it reported listening on.
    pub addr: SocketAddr,
}

impl Drop for ZtgateProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary with `config` (logging at info, `setup` may change its environment) and waits
/// (bounded) until it logs the address it listens on.
pub fn spawn_ztgate(config: &FsPath, setup: impl FnOnce(&mut Command)) -> ZtgateProcess {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ztgate"));
    command
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "ztgate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    setup(&mut command);
    let mut child = command.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    // Kill it even when it never reports an address.
    let mut process = ZtgateProcess {
        child,
        addr: SocketAddr::from(([0, 0, 0, 0], 0)),
    };
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Keeps draining stderr after the address is found: a closed pipe would fail the child's
    // next log line.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    process.addr = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("ztgate did not report its address");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    process
}

// ------------------------------------------------------------------------------ certificates

/// A test certificate authority (rcgen).
pub struct Ca {
    pub der: CertificateDer<'static>,
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate signed by a [`Ca`], with its key, in DER (for rustls) and PEM (for config files).
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self {
            der: ca.der().clone(),
            pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A certificate for `sans`, for `usage`.
    pub fn leaf(&self, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A server certificate for the address 127.0.0.1.
    pub fn server_for_localhost(&self) -> Leaf {
        self.leaf(
            vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate naming the workload `uri` (a SPIFFE ID) as its URI SAN.
    pub fn client_for_uri(&self, uri: &str) -> Leaf {
        self.leaf(
            vec![SanType::URI(uri.try_into().unwrap())],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

/// The rustls crypto provider of the tests' TLS clients and servers.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

// ------------------------------------------------------------------------------ the client

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

/// Sends `req` and answers as soon as the status and headers arrived (within [`WAIT`]), leaving
/// the body to be read as it streams.
pub async fn send_for_head(
    client: &HttpClient,
    req: http::Request<Body>,
) -> http::Response<Incoming> {
    tokio::time::timeout(WAIT, client.request(req))
        .await
        .expect("no response head in time")
        .unwrap()
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

// ------------------------------------------------------------------------------ the identity assertion

/// The first value of the request header `name` as an echoing upstream reports it.
pub fn echoed_header<'a>(echo: &'a Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

/// The identity assertion an echoing upstream received.
pub fn echoed_assertion(echo: &Value) -> &str {
    echoed_header(echo, "x-zt-assertion").expect("the upstream received an assertion header")
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

// ------------------------------------------------------------------------------ waiting, auditing

/// The text of the audit file of the gateway started in `dir` (see [`base_config`]), as it is on
/// disk: after a shutdown, or after [`Env::audit_records`] flushed it.
pub fn audit_log(dir: &FsPath) -> String {
    std::fs::read_to_string(dir.join("audit.jsonl")).unwrap()
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

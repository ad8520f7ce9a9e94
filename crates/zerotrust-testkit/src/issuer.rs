use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{SigningKey, TokenBuilder, unix_now};

/// The audience [`DevIssuer::token`] puts into tokens.
pub const DEFAULT_AUDIENCE: &str = "https://api.example.test";

struct Shared {
    issuer: String,
    published: RwLock<Vec<Arc<SigningKey>>>,
    extra_jwks: RwLock<Vec<Value>>,
    active: RwLock<Arc<SigningKey>>,
    failing: AtomicBool,
    cache_control: RwLock<Option<String>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
}

/// An OpenID Provider's discovery document and JWK Set, served on 127.0.0.1 on a free port.
///
/// Tokens are minted with [`token`](DevIssuer::token) (pre-filled RFC 9068 access-token claims) and
/// signed with the active key. Keys can be rotated, extra (even unfit) JWKs published, the issuer
/// made to fail, and its own hit counters read, which is how tests prove how often a verifier
/// fetched.
pub struct DevIssuer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.shared.issuer)
            .finish_non_exhaustive()
    }
}

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/jwks.json", s.issuer),
        "token_endpoint": format!("{}/token", s.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
    }))
    .into_response()
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    s.jwks_hits.fetch_add(1, Ordering::SeqCst);
    if s.failing.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let mut keys: Vec<Value> = read(&s.published).iter().map(|k| k.public_jwk()).collect();
    keys.extend(read(&s.extra_jwks));
    let mut response = Json(json!({ "keys": keys })).into_response();
    if let Some(cc) = read(&s.cache_control)
        && let Ok(v) = HeaderValue::from_str(&cc)
    {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

fn random_id() -> String {
    let mut bytes = [0u8; 12];
    // A test helper: on the impossible failure of the system RNG, ids are still unique enough
    // for tests because the clock is mixed in below.
    let _ = SystemRandom::new().fill(&mut bytes);
    let mut id = crate::b64url(bytes);
    id.push_str(&format!("{:x}", unix_now()));
    id
}

impl DevIssuer {
    /// Starts an issuer publishing one new RSA key (`kid` `rsa-1`).
    pub async fn start() -> std::io::Result<Self> {
        Self::start_with(SigningKey::rsa("rsa-1")).await
    }

    /// Starts an issuer publishing `key` and signing with it.
    pub async fn start_with(key: SigningKey) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let key = Arc::new(key);
        let shared = Arc::new(Shared {
            issuer: format!("http://{addr}"),
            published: RwLock::new(vec![key.clone()]),
            extra_jwks: RwLock::new(Vec::new()),
            active: RwLock::new(key),
            failing: AtomicBool::new(false),
            cache_control: RwLock::new(None),
            discovery_hits: AtomicUsize::new(0),
            jwks_hits: AtomicUsize::new(0),
        });
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks.json", get(jwks))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The issuer identifier (`http://127.0.0.1:PORT`), also its base URL.
    pub fn issuer(&self) -> &str {
        &self.shared.issuer
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The JWK Set URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks.json", self.shared.issuer)
    }

    /// The active signing key.
    pub fn active_key(&self) -> Arc<SigningKey> {
        read(&self.shared.active)
    }

    /// A token builder pre-filled as an RFC 9068 access token of this issuer: `typ` `at+jwt`,
    /// `iss`, `sub` `alice`, `aud` [`DEFAULT_AUDIENCE`], `client_id`, `iat` and `auth_time` now,
    /// `exp` in 5 minutes, a random `jti`, `scope` `openid reports:read`.
    pub fn token(&self) -> TokenBuilder {
        let now = unix_now();
        TokenBuilder::new()
            .header("typ", "at+jwt")
            .claim("iss", self.shared.issuer.clone())
            .claim("sub", "alice")
            .claim("aud", DEFAULT_AUDIENCE)
            .claim("client_id", "demo-client")
            .claim("iat", now)
            .claim("auth_time", now)
            .claim("exp", now + 300)
            .claim("jti", random_id())
            .claim("scope", "openid reports:read")
    }

    /// Signs `builder` with the active key.
    pub fn sign(&self, builder: &TokenBuilder) -> String {
        builder.sign(&self.active_key())
    }

    /// A fresh default token, signed.
    pub fn mint(&self) -> String {
        self.sign(&self.token())
    }

    /// Replaces every published key with `key`, which becomes the active one.
    pub fn rotate_to(&self, key: SigningKey) {
        let key = Arc::new(key);
        write(&self.shared.published, vec![key.clone()]);
        write(&self.shared.active, key);
    }

    /// Publishes `key` too and makes it the active one (the old keys stay published).
    pub fn add_active_key(&self, key: SigningKey) {
        let key = Arc::new(key);
        let mut keys = read(&self.shared.published);
        keys.push(key.clone());
        write(&self.shared.published, keys);
        write(&self.shared.active, key);
    }

    /// Publishes extra raw JWKs after the real ones (to test how unfit keys are handled).
    pub fn publish_extra_jwks(&self, jwks: Vec<Value>) {
        write(&self.shared.extra_jwks, jwks);
    }

    /// Makes discovery and the JWK Set answer 503 (or work again).
    pub fn set_failing(&self, failing: bool) {
        self.shared.failing.store(failing, Ordering::SeqCst);
    }

    /// Sets the `Cache-Control` header of the JWK Set response.
    pub fn set_cache_control(&self, value: Option<&str>) {
        write(&self.shared.cache_control, value.map(str::to_owned));
    }

    /// How often the discovery document was requested.
    pub fn discovery_hits(&self) -> usize {
        self.shared.discovery_hits.load(Ordering::SeqCst)
    }

    /// How often the JWK Set was requested.
    pub fn jwks_hits(&self) -> usize {
        self.shared.jwks_hits.load(Ordering::SeqCst)
    }

    /// Stops serving: afterwards connections are refused.
    pub async fn stop(mut self) {
        self.shutdown().await;
    }

    async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for DevIssuer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

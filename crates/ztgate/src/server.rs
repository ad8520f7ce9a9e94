//! The running gateway: listeners, the request entry, built-in endpoints, reload and shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::body::Body;
use axum::response::IntoResponse as _;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower::{Layer as _, ServiceExt as _};
use zerotrust_audit::{Audit, AuditLog, AuditLogLayer, JsonFileSink, TracingSink};
use zerotrust_core::{
    MemoryDeviceRegistry, MemoryLocationHistory, PeerAddr, PeerCertificate, ZeroTrust,
};

use crate::config::{AuditConfig, Config, ConfigError, ListenerConfig, TlsConfig};
use crate::identity::{JWKS_PATH, KeyError, Signer};
use crate::problem;
use crate::proxy::Inbound;
use crate::stack::{self, Persistent, Stack};

/// The gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The audit log could not be opened.
    #[error("cannot open the audit log: {0}")]
    Audit(io::Error),
    /// The assertion signing key could not be loaded.
    #[error("identity.signing_key: {0}")]
    Key(#[from] KeyError),
}

/// The Prometheus recorder of this process, installed once (the first gateway installs it; if
/// another recorder was installed before, `/metrics` answers 404).
fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder).ok().map(|()| handle)
        })
        .clone()
}

struct Inner {
    file: PathBuf,
    stack: ArcSwap<Stack>,
    persistent: Persistent,
    audit: Audit,
    audited: AuditLog<Dispatch>,
    metrics: Option<PrometheusHandle>,
    reload_lock: tokio::sync::Mutex<()>,
}

/// A running gateway.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let gateway = ztgate::Gateway::start("ztgate.toml").await?;
/// println!("listening on {:?}", gateway.local_addrs());
/// gateway.run_until_signal().await?; // SIGHUP reloads, SIGTERM / Ctrl-C drains and stops
/// # Ok(()) }
/// ```
pub struct Gateway {
    inner: Arc<Inner>,
    addrs: Vec<SocketAddr>,
    stop: watch::Sender<bool>,
    accept_tasks: Vec<JoinHandle<()>>,
    graceful: Arc<std::sync::Mutex<Option<GracefulShutdown>>>,
    drain_timeout: Duration,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("file", &self.inner.file)
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

fn open_audit(c: &AuditConfig) -> Result<Audit, StartError> {
    let mut b = Audit::builder();
    match &c.file {
        Some(path) => {
            let mut sink = JsonFileSink::builder(path.clone());
            if let Some(n) = c.max_file_size {
                sink = sink.max_file_size(n);
            }
            if let Some(n) = c.keep_rotated {
                sink = sink.keep_rotated(n);
            }
            b = b.sink(sink.open().map_err(StartError::Audit)?);
            if c.log {
                b = b.sink(TracingSink);
            }
        }
        None => b = b.sink(TracingSink),
    }
    b.start().map_err(StartError::Audit)
}

fn read_config(file: &Path) -> Result<(Config, String), ConfigError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::new(file, "", format!("cannot read: {e}")))?;
    let config = Config::parse(&text, file)?;
    Ok((config, text))
}

impl Gateway {
    /// Reads the configuration at `file`, binds every listener and starts serving.
    ///
    /// Refuses an invalid file with [`StartError::Config`], which names the file, the line, the
    /// key and what is wrong.
    pub async fn start(file: impl AsRef<Path>) -> Result<Self, StartError> {
        let file = file.as_ref().to_owned();
        let (config, text) = read_config(&file)?;
        let pkcs8 = crate::identity::signing_key(config.identity.signing_key.as_deref())?;
        let header = http::HeaderName::from_bytes(config.identity.header.as_bytes())
            .map_err(|e| ConfigError::new(&file, "identity.header", e.to_string()))?;
        let signer = Signer::new(
            &pkcs8,
            config.identity.issuer.clone(),
            config.identity.ttl_seconds,
            header,
            config.identity.plain_headers,
            config.identity.reuse_seconds,
        )?;
        let plain = crate::client::plain(&config.upstream)
            .map_err(|e| ConfigError::new(&file, "upstream", e.to_string()))?;
        let persistent = Persistent {
            registry: Arc::new(MemoryDeviceRegistry::new()),
            history: Arc::new(MemoryLocationHistory::new()),
            signer: Arc::new(signer),
            plain,
            upstream: config.upstream.clone(),
        };
        let tls: Vec<Option<tokio_rustls::TlsAcceptor>> = config
            .listeners
            .iter()
            .enumerate()
            .map(|(i, l)| tls_acceptor(l, i, &file))
            .collect::<Result<_, _>>()?;
        let listeners_config = config.listeners.clone();
        let server = config.server.clone();
        let audit_config = config.audit.clone();
        let stack = stack::compile(config, &text, &file, None, &persistent)?;
        let audit = open_audit(&audit_config)?;

        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let dispatch = Dispatch {
                inner: weak.clone(),
            };
            Inner {
                file,
                stack: ArcSwap::from_pointee(stack),
                persistent,
                audited: AuditLogLayer::new(audit.clone()).layer(dispatch),
                audit,
                metrics: metrics_handle(),
                reload_lock: tokio::sync::Mutex::new(()),
            }
        });

        let (stop, stopped) = watch::channel(false);
        let graceful = Arc::new(std::sync::Mutex::new(Some(GracefulShutdown::new())));
        let mut addrs = Vec::new();
        let mut accept_tasks = Vec::new();
        let header_timeout = Duration::from_secs(server.header_read_timeout_seconds);
        for (l, tls) in listeners_config.iter().zip(tls) {
            let listener = TcpListener::bind(l.addr)
                .await
                .map_err(|source| StartError::Bind {
                    addr: l.addr,
                    source,
                })?;
            let addr = listener.local_addr().map_err(|source| StartError::Bind {
                addr: l.addr,
                source,
            })?;
            addrs.push(addr);
            tracing::info!(target: "ztgate", %addr, tls = tls.is_some(), "listening");
            accept_tasks.push(tokio::spawn(accept_loop(
                listener,
                tls,
                inner.clone(),
                stopped.clone(),
                graceful.clone(),
                header_timeout,
            )));
        }
        // Keys are loaded in the background until ready, so `/readyz` turns ready without a first
        // request; requests arriving before that fetch them themselves.
        tokio::spawn(prefetch_loop(Arc::downgrade(&inner), stopped));
        Ok(Self {
            inner,
            addrs,
            stop,
            accept_tasks,
            graceful,
            drain_timeout: Duration::from_secs(server.drain_timeout_seconds),
        })
    }

    /// The bound addresses, in the order of the `[[listener]]` entries (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }

    /// The audit handle (to flush it in tests, for example).
    pub fn audit(&self) -> &Audit {
        &self.inner.audit
    }

    /// Whether every issuer's keys are loaded (what `/readyz` answers).
    pub fn is_ready(&self) -> bool {
        self.inner.stack.load().is_ready()
    }

    /// The JWK Set of the identity assertions (what [`JWKS_PATH`] serves).
    pub fn jwks(&self) -> bytes::Bytes {
        self.inner.persistent.signer.jwks()
    }

    /// Re-reads the configuration file and swaps the compiled stack in; requests in flight finish
    /// on the stack they started on, connections stay open. On an error the running stack is
    /// kept. Listeners, `[audit]`, `[identity]` and `[upstream]` are read at start only: a
    /// change to them is logged and needs a restart.
    pub async fn reload(&self) -> Result<(), ConfigError> {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        let result = self.reload_locked();
        let label = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("ztgate_config_reloads_total", "result" => label).increment(1);
        match &result {
            Ok(()) => {
                tracing::info!(target: "ztgate", file = %self.inner.file.display(), "configuration reloaded")
            }
            Err(error) => {
                tracing::error!(target: "ztgate", %error, "reload refused; the running configuration stays")
            }
        }
        result
    }

    fn reload_locked(&self) -> Result<(), ConfigError> {
        let file = &self.inner.file;
        let (config, text) = read_config(file)?;
        let current = self.inner.stack.load_full();
        for (changed, section) in [
            (config.listeners != current.config.listeners, "listener"),
            (config.audit != current.config.audit, "audit"),
            (config.identity != current.config.identity, "identity"),
            (config.upstream != current.config.upstream, "upstream"),
            (config.server != current.config.server, "server"),
        ] {
            if changed {
                tracing::warn!(target: "ztgate", section, "changed, but only read at start: restart to apply");
            }
        }
        let stack = stack::compile(config, &text, file, Some(&current), &self.inner.persistent)?;
        self.inner.stack.store(Arc::new(stack));
        Ok(())
    }

    /// Stops accepting, lets requests in flight finish (at most `server.drain_timeout_seconds`),
    /// then drains and closes the audit log.
    pub async fn shutdown(self) -> io::Result<()> {
        let _ = self.stop.send(true);
        for task in self.accept_tasks {
            let _ = task.await;
        }
        let graceful = self
            .graceful
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(graceful) = graceful
            && tokio::time::timeout(self.drain_timeout, graceful.shutdown())
                .await
                .is_err()
        {
            tracing::warn!(target: "ztgate", "drain timeout: closing the remaining connections");
        }
        self.inner.audit.shutdown().await
    }

    /// Serves until SIGTERM or Ctrl-C (then [`shutdown`](Self::shutdown)); SIGHUP
    /// [reloads](Self::reload) the configuration.
    pub async fn run_until_signal(self) -> io::Result<()> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut hup = signal(SignalKind::hangup())?;
            let mut term = signal(SignalKind::terminate())?;
            loop {
                tokio::select! {
                    _ = hup.recv() => { let _ = self.reload().await; }
                    _ = term.recv() => break,
                    _ = tokio::signal::ctrl_c() => break,
                }
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await?;
        }
        tracing::info!(target: "ztgate", "shutting down: draining requests");
        self.shutdown().await
    }
}

async fn prefetch_loop(inner: std::sync::Weak<Inner>, mut stopped: watch::Receiver<bool>) {
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let stack = strong.stack.load_full();
        drop(strong);
        let wait = if stack.is_ready() {
            Duration::from_secs(5)
        } else {
            match tokio::time::timeout(Duration::from_secs(10), stack.verifier.prefetch()).await {
                Ok(Ok(())) => Duration::from_secs(5),
                _ => Duration::from_secs(1),
            }
        };
        drop(stack);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stopped.changed() => return,
        }
    }
}

fn tls_acceptor(
    l: &ListenerConfig,
    index: usize,
    file: &Path,
) -> Result<Option<tokio_rustls::TlsAcceptor>, ConfigError> {
    let Some(tls) = &l.tls else {
        return Ok(None);
    };
    server_tls(tls, &format!("listener[{index}].tls"), file).map(Some)
}

fn server_tls(
    tls: &TlsConfig,
    key: &str,
    file: &Path,
) -> Result<tokio_rustls::TlsAcceptor, ConfigError> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let err = |k: &str, m: String| ConfigError::new(file, format!("{key}.{k}"), m);
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|e| err("cert", format!("{}: {e}", tls.cert.display())))?;
    if certs.is_empty() {
        return Err(err(
            "cert",
            format!("{}: no certificate", tls.cert.display()),
        ));
    }
    let private = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| err("key", format!("{}: {e}", tls.key.display())))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| err("cert", e.to_string()))?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            let cas = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| err("client_ca", format!("{}: {e}", ca.display())))?;
            for c in cas {
                roots
                    .add(c)
                    .map_err(|e| err("client_ca", format!("{}: {e}", ca.display())))?;
            }
            // Every client must present a certificate of this CA: mutual TLS is required.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| err("client_ca", e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, private)
        .map_err(|e| err("key", e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    inner: Arc<Inner>,
    mut stopped: watch::Receiver<bool>,
    graceful: Arc<std::sync::Mutex<Option<GracefulShutdown>>>,
    header_timeout: Duration,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stopped.changed() => return,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(error) => {
                // Out of descriptors and the like: pause instead of spinning.
                tracing::warn!(target: "ztgate", %error, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let inner = inner.clone();
        let tls = tls.clone();
        // Shutting down: the connection is not taken on.
        let Some(watcher) = graceful
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(GracefulShutdown::watcher)
        else {
            return;
        };
        tokio::spawn(async move {
            serve_connection(tcp, peer, tls, inner, watcher, header_timeout).await;
        });
    }
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    inner: Arc<Inner>,
    watcher: hyper_util::server::graceful::Watcher,
    header_timeout: Duration,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout);
    match tls {
        None => {
            let inbound = Inbound { peer, tls: false };
            let service = entry_service(inner, inbound, None);
            let conn = http.serve_connection(TokioIo::new(tcp), service);
            let _ = watcher.watch(conn).await;
        }
        Some(acceptor) => {
            let Ok(Ok(stream)) = tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await
            else {
                return;
            };
            // Parsed once per connection, from the chain rustls verified.
            let certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| PeerCertificate::from_der(leaf).ok());
            let inbound = Inbound { peer, tls: true };
            let service = entry_service(inner, inbound, certificate);
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let _ = watcher.watch(conn).await;
        }
    }
}

/// A boxed response future that cannot fail.
type BoxResponse = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

fn entry_service(
    inner: Arc<Inner>,
    inbound: Inbound,
    certificate: Option<PeerCertificate>,
) -> impl hyper::service::Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = BoxResponse,
> + Clone {
    hyper::service::service_fn(move |req: Request<Incoming>| {
        let inner = inner.clone();
        let certificate = certificate.clone();
        let fut: BoxResponse =
            Box::pin(async move { Ok(entry(&inner, req, inbound, certificate).await) });
        fut
    })
}

/// Every request starts here: connection facts into the extensions, built-in endpoints, spoofed
/// identity headers out, then the audit layer and the route's stack.
async fn entry(
    inner: &Inner,
    req: Request<Incoming>,
    inbound: Inbound,
    certificate: Option<PeerCertificate>,
) -> Response<Body> {
    let mut req = req.map(Body::new);
    if let Some(response) = builtin(inner, &req) {
        return response;
    }
    let ext = req.extensions_mut();
    ext.insert(PeerAddr(inbound.peer));
    ext.insert(inbound);
    if let Some(c) = certificate {
        ext.insert(c);
    }
    inner
        .persistent
        .signer
        .strip_client_identity(req.headers_mut());
    match inner.audited.clone().oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn text(status: StatusCode, content_type: &'static str, body: impl Into<Body>) -> Response<Body> {
    let mut r = Response::new(body.into());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// `/healthz`, `/readyz`, `/metrics` and the JWKS, answered by the gateway itself (GET or HEAD),
/// before routing and without an audit record. They shadow upstream paths of the same name.
fn builtin(inner: &Inner, req: &Request<Body>) -> Option<Response<Body>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return None;
    }
    Some(match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "text/plain; charset=utf-8", "ok\n"),
        "/readyz" => {
            if inner.stack.load().is_ready() {
                text(StatusCode::OK, "text/plain; charset=utf-8", "ready\n")
            } else {
                problem::not_ready()
            }
        }
        "/metrics" => match &inner.metrics {
            Some(handle) => {
                handle.run_upkeep();
                text(
                    StatusCode::OK,
                    "text/plain; version=0.0.4; charset=utf-8",
                    handle.render(),
                )
            }
            None => problem::no_route(),
        },
        JWKS_PATH => {
            let mut r = text(
                StatusCode::OK,
                "application/jwk-set+json",
                inner.persistent.signer.jwks(),
            );
            r.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            r
        }
        _ => return None,
    })
}

/// Picks the route of the current stack and calls it. Holds the stack it started on until the
/// response headers are there, so a reload never changes a request midway.
#[derive(Clone)]
struct Dispatch {
    inner: std::sync::Weak<Inner>,
}

impl tower::Service<Request<Body>> for Dispatch {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        let Some(inner) = self.inner.upgrade() else {
            return Box::pin(async { Ok(problem::internal()) });
        };
        let stack = inner.stack.load_full();
        drop(inner);
        let Some(route) = stack.route(req.uri().path()) else {
            return Box::pin(async { Ok(problem::no_route()) });
        };
        let service = route.service.clone();
        let prefix: Arc<str> = Arc::from(route.prefix.as_str());
        match stack.resolver.resolve_request(&req) {
            Ok(ip) => {
                let zt = ZeroTrust::get_or_insert(req.extensions_mut());
                zt.set_client_ip(ip);
                zt.set_route(prefix);
            }
            Err(error) => {
                let zt = ZeroTrust::get_or_insert(req.extensions_mut()).clone();
                let response = error.rejection().with_context(zt).into_response();
                return Box::pin(async move { Ok(response) });
            }
        }
        Box::pin(async move {
            let response = service.oneshot(req).await;
            drop(stack);
            response
        })
    }
}

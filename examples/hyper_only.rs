//! The zerotrust stack on a plain hyper server: no axum `Router`, only tower.
//!
//! ```text
//! cargo run --example hyper_only             # walk through the answers, then serve until Ctrl-C
//! cargo run --example hyper_only -- --once   # walk through the answers and exit
//! cargo run --example hyper_only -- --addr 127.0.0.1:8080
//! ```
//!
//! The layers are ordinary tower layers over `http::Request<B>` / `http::Response<B>`, so they wrap
//! any tower service: here a `tower::service_fn` served by hyper (`hyper::server::conn::http1`
//! with hyper-util's `TowerToHyperService`), one task per connection.
//!
//! ```text
//! AuditLogLayer            every request, allowed or refused, one record in a hash-chained file
//! └─ route by path         /healthz answers at once; everything else goes on
//!    └─ JwtVerifyLayer     who: 401 on a missing or bad token
//!       └─ StepUpLayer     decide: scope reports:read for GET /api/reports, 403 without it
//!          └─ service_fn   reads the ZeroTrust context from the request extensions
//! ```
//!
//! Two things axum does that a plain server does itself:
//! - **Bodies.** A layer that refuses builds its answer with `axum_core::body::Body` (axum-core is
//!   the small crate under axum, already a dependency of zerotrust), so the service's response body
//!   must be `From<axum_core::body::Body>`. `Body` itself is, and `Body::new` wraps any
//!   `http_body::Body`, such as http-body-util's `Full` used below.
//! - **The peer address.** axum's `ConnectInfo` is replaced by a `PeerAddr` extension the accept
//!   loop sets on each request, which the layers and the audit record read.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::error::Error;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum_core::body::Body;
use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
use zerotrust::PeerAddr;
use zerotrust::audit::Audit;
use zerotrust::jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust::stepup::{Requirements, StepUpLayer, StepUpPolicy};
use zerotrust::{AuditLogLayer, JsonFileSink, ZeroTrust};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

type BoxError = Box<dyn Error + Send + Sync>;

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut response = Response::new(Body::new(Full::new(Bytes::from(value.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// The protected handler: a plain async function over `http` types.
async fn reports(req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // Behind the layers the context is always there; `get` keeps the handler total anyway.
    let zt = req.extensions().get::<ZeroTrust>();
    let id = zt.and_then(ZeroTrust::identity);
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "sub": id.map(|i| i.subject()),
            "scopes": id.map(|i| i.scopes()),
            "trust_level": zt.map(|z| z.trust_level().as_str()),
            "reports": ["q1", "q2"],
        }),
    ))
}

/// The whole service: audit outermost, then a path switch, then the checks around `reports`.
///
/// Generic over nothing and boxed nowhere: a `Clone` tower service from
/// `Request<Incoming>` to `Response<Body>` that never fails.
pub fn service(
    verifier: JwtVerifier,
    policy: StepUpPolicy,
    audit: Audit,
) -> impl Service<
    Request<Incoming>,
    Response = Response<Body>,
    Error = Infallible,
    Future = impl Send + 'static,
> + Clone
+ Send
+ 'static {
    let protected = ServiceBuilder::new()
        .layer(JwtVerifyLayer::new(verifier).realm("hyper-only"))
        .layer(StepUpLayer::new(policy))
        .service(service_fn(reports));
    let routes = service_fn(move |req: Request<Incoming>| {
        let protected = protected.clone();
        async move {
            if req.uri().path() == "/healthz" {
                return Ok(json_response(StatusCode::OK, &json!({ "status": "ok" })));
            }
            protected.oneshot(req).await
        }
    });
    ServiceBuilder::new()
        .layer(AuditLogLayer::new(audit))
        .service(routes)
}

/// The route policy: reading reports needs the `reports:read` scope; nothing else is open.
pub fn policy() -> Result<StepUpPolicy, BoxError> {
    Ok(StepUpPolicy::builder()
        .route_for(
            ["GET"],
            "/api/reports",
            Requirements::new().scopes(["reports:read"]),
        )
        .build()?)
}

/// Accepts connections on `listener` forever and serves each with hyper's HTTP/1 server.
pub async fn serve<S>(listener: TcpListener, service: S) -> std::io::Result<()>
where
    S: Service<Request<Incoming>, Response = Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    loop {
        let (stream, peer) = listener.accept().await?;
        // What axum's `ConnectInfo` would do: the socket peer goes into every request.
        let service = ServiceBuilder::new()
            .map_request(move |mut req: Request<Incoming>| {
                req.extensions_mut().insert(PeerAddr(peer));
                req
            })
            .service(service.clone());
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
            // A client that goes away mid-request is not the server's error.
            let _ = connection.await;
        });
    }
}

/// A running example: the issuer, the service's base URL and its audit log.
pub struct HyperOnly {
    /// The development issuer (discovery + JWKS on 127.0.0.1).
    pub issuer: DevIssuer,
    /// `http://127.0.0.1:PORT` of the service.
    pub base_url: String,
    /// The audit pipeline (flush it before reading the file).
    pub audit: Audit,
    /// The audit log file.
    pub audit_path: PathBuf,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the issuer, the audit log (a new file under the temporary directory) and the server on
/// `addr` (a busy port falls back to a free one).
pub async fn start(addr: SocketAddr) -> Result<HyperOnly, BoxError> {
    let issuer = DevIssuer::start().await?;
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(issuer.issuer())
                .audience(DEFAULT_AUDIENCE)
                // The development issuer speaks plain HTTP on loopback; real issuers use HTTPS.
                .allow_insecure_http(),
        )
        .build()?;
    verifier.prefetch().await?;

    let audit_path = std::env::temp_dir().join(format!(
        "zerotrust-hyper-only-{}-{}.jsonl",
        std::process::id(),
        unix_now()
    ));
    let audit = Audit::builder()
        .sink(JsonFileSink::open(&audit_path)?)
        .start()?;

    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            println!("{addr} is in use; taking a free port instead");
            TcpListener::bind((addr.ip(), 0)).await?
        }
        Err(err) => return Err(err.into()),
    };
    let base_url = format!("http://{}", listener.local_addr()?);
    let service = service(verifier, policy()?, audit.clone());
    let server = tokio::spawn(serve(listener, service));
    Ok(HyperOnly {
        issuer,
        base_url,
        audit,
        audit_path,
        server,
    })
}

/// One request of the walkthrough and what the service answered.
#[derive(Debug)]
pub struct Step {
    /// What was sent.
    pub request: &'static str,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The problem code of the RFC 9457 body (`-` on success).
    pub code: String,
    /// The body of the answer.
    pub body: Value,
}

/// A valid token, none, one without the scope, an unknown path and the open health check.
pub async fn walkthrough(ex: &HyperOnly) -> Result<Vec<Step>, BoxError> {
    let issuer = &ex.issuer;
    let cases: Vec<(&'static str, &'static str, Option<String>)> = vec![
        (
            "GET /api/reports, valid token",
            "/api/reports",
            Some(issuer.mint()),
        ),
        ("GET /api/reports, no token", "/api/reports", None),
        (
            "GET /api/reports, token without reports:read",
            "/api/reports",
            Some(issuer.sign(&issuer.token().claim("scope", "openid"))),
        ),
        (
            "GET /api/unknown, valid token",
            "/api/unknown",
            Some(issuer.mint()),
        ),
        ("GET /healthz, no token", "/healthz", None),
    ];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut steps = Vec::with_capacity(cases.len());
    for (request, path, token) in cases {
        let mut req = client.get(format!("{}{path}", ex.base_url));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body: Value = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
        let code = body
            .get("code")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_owned();
        steps.push(Step {
            request,
            status,
            code,
            body,
        });
    }
    Ok(steps)
}

/// The audit records written so far (after a flush), one JSON object per line.
pub async fn audit_records(ex: &HyperOnly) -> Result<Vec<Value>, BoxError> {
    ex.audit.flush().await?;
    // A small file, read once: blocking the runtime here does no harm.
    let text = std::fs::read_to_string(&ex.audit_path)?;
    Ok(text
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|record| record.pointer("/event/action") == Some(&json!("zerotrust-decision")))
        .collect())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut once = false;
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3000));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--once" => once = true,
            "--addr" => addr = args.next().ok_or("--addr needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other}; use --once or --addr").into()),
        }
    }

    let ex = start(addr).await?;
    let steps = walkthrough(&ex).await?;
    println!("\n{:<48} {:>6}  code", "request", "status");
    for step in &steps {
        println!("{:<48} {:>6}  {}", step.request, step.status, step.code);
    }
    let records = audit_records(&ex).await?;
    println!(
        "\nAudit log: {} ({} records so far)",
        ex.audit_path.display(),
        records.len()
    );
    for record in &records {
        println!(
            "  {}",
            record
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("(no message)")
        );
    }
    println!(
        "\nService: {}/api/reports\nTry it:\n  TOKEN={}\n  curl -i -H \"Authorization: Bearer $TOKEN\" {}/api/reports",
        ex.base_url,
        ex.issuer.mint(),
        ex.base_url
    );
    if !once {
        println!("\nServing until Ctrl-C.");
        tokio::select! {
            result = tokio::signal::ctrl_c() => result?,
            result = ex.server => result??,
        }
    }
    ex.audit.shutdown().await?;
    Ok(())
}

//! The zerotrust stack in front of a gRPC service served by tonic.
//!
//! ```text
//! cargo run --example tonic_grpc             # call the service, then serve until Ctrl-C
//! cargo run --example tonic_grpc -- --once   # call the service and exit
//! cargo run --example tonic_grpc -- --addr 127.0.0.1:50051
//! ```
//!
//! gRPC is HTTP/2 with `POST /package.Service/Method`, so the layers apply unchanged: the token
//! travels in the `authorization` metadata (an HTTP header), and the step-up policy names methods
//! by their path. No `protoc` and no build script: the protobuf messages are hand-written
//! `prost::Message` structs and the service glue is tonic's generic `server::Grpc` /
//! `client::Grpc` with the prost codec, which is what generated code calls too.
//!
//! ```text
//! GrpcRefusals              zerotrust refusals -> gRPC status (see below)
//! └─ AuditLogLayer          one record per call, refusals included
//!    └─ JwtVerifyLayer      who: the bearer token in the `authorization` metadata
//!       └─ StepUpLayer      decide: reports:read for Reports/GetReport, nothing else open
//!          └─ body adapter  tonic's body into axum_core's, which refusals are built with
//!             └─ tonic Routes -> the Reports service
//! ```
//!
//! **Why an adapter for refusals.** The layers answer in HTTP: 401 with `WWW-Authenticate`, 403,
//! 429, 503, with an RFC 9457 problem body. A gRPC client expects HTTP 200 and a `grpc-status`.
//! Given an HTTP error with a body, tonic 0.14 reads the JSON as a gRPC frame and reports
//! `INTERNAL` ("invalid compression flag"); at best a client guesses the code from the status line
//! with gRPC's HTTP-to-status table (401 `UNAUTHENTICATED`, 403 `PERMISSION_DENIED`, but 400
//! `INTERNAL`), and the reason is lost either way. [`grpc_refusals`] turns every zerotrust refusal
//! into a gRPC
//! "trailers-only" answer instead: HTTP 200, `grpc-status` from the refusal's kind, `grpc-message`
//! with its stable reason code and description, and the `WWW-Authenticate` and `Retry-After`
//! headers kept as metadata (a step-up challenge's `acr_values`/`max_age` reach the client).
//! Responses of the service itself pass untouched.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::error::Error;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_core::body::Body;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, StatusCode, header};
use tokio::net::TcpListener;
use tonic::server::{NamedService, UnaryService};
use tonic::transport::server::{TcpConnectInfo, TcpIncoming};
use tonic::transport::{Channel, Endpoint, Server};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::ServiceBuilder;
use tower::layer::util::Identity;
use tower::util::{Either, MapResponseLayer};
use zerotrust::PeerAddr;
use zerotrust::jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust::stepup::{Requirements, StepUpLayer, StepUpPolicy};
use zerotrust::{Audit, AuditLogLayer, Outcome, TracingSink, ZeroTrust};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

type BoxError = Box<dyn Error + Send + Sync>;

// --- The protocol: what a .proto file would say ------------------------------------------------
//
// package zerotrust.example;
// service Reports { rpc GetReport(ReportRequest) returns (Report); }
// message ReportRequest { string id = 1; }
// message Report { string id = 1; string title = 2; string subject = 3; string trust_level = 4; }

/// `zerotrust.example.ReportRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ReportRequest {
    /// The report wanted.
    #[prost(string, tag = "1")]
    pub id: String,
}

/// `zerotrust.example.Report`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Report {
    /// The report's id.
    #[prost(string, tag = "1")]
    pub id: String,
    /// Its title.
    #[prost(string, tag = "2")]
    pub title: String,
    /// Who asked: the verified subject, from `ZeroTrust`.
    #[prost(string, tag = "3")]
    pub subject: String,
    /// The trust level the layers gave the call.
    #[prost(string, tag = "4")]
    pub trust_level: String,
}

/// The service's name (`package.Service`).
pub const SERVICE: &str = "zerotrust.example.Reports";
/// The path of `Reports/GetReport`.
pub const GET_REPORT: &str = "/zerotrust.example.Reports/GetReport";

// --- The server side ---------------------------------------------------------------------------

/// The `GetReport` handler: reads the identity the layers put into the request extensions.
#[derive(Clone, Copy)]
struct GetReport;

impl UnaryService<ReportRequest> for GetReport {
    type Response = Report;
    type Future = std::future::Ready<Result<tonic::Response<Report>, Status>>;

    fn call(&mut self, request: tonic::Request<ReportRequest>) -> Self::Future {
        let zt = request.extensions().get::<ZeroTrust>();
        let subject = zt
            .and_then(ZeroTrust::subject)
            .unwrap_or_default()
            .to_owned();
        let trust_level = zt.map(|z| z.trust_level().as_str()).unwrap_or_default();
        let id = request.into_inner().id;
        std::future::ready(Ok(tonic::Response::new(Report {
            title: format!("Quarterly report {id}"),
            id,
            subject,
            trust_level: trust_level.to_owned(),
        })))
    }
}

/// The `Reports` service: what `tonic-build` would generate, by hand.
#[derive(Clone, Copy, Default)]
pub struct ReportsServer;

impl NamedService for ReportsServer {
    const NAME: &'static str = SERVICE;
}

impl tower::Service<Request<tonic::body::Body>> for ReportsServer {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        match req.uri().path() {
            GET_REPORT => Box::pin(async move {
                let mut grpc =
                    tonic::server::Grpc::new(ProstCodec::<Report, ReportRequest>::default());
                Ok(grpc.unary(GetReport, req).await)
            }),
            _ => Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) }),
        }
    }
}

/// The gRPC code for a zerotrust refusal of HTTP status `status`.
pub fn grpc_code(status: StatusCode) -> Code {
    match status {
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::BAD_REQUEST => Code::InvalidArgument,
        StatusCode::TOO_MANY_REQUESTS => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE => Code::Unavailable,
        _ => Code::Internal,
    }
}

/// Percent-encodes a `grpc-message` as the gRPC protocol asks (everything outside printable
/// ASCII, and `%`).
fn grpc_message(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if (0x20..=0x7e).contains(&byte) && byte != b'%' {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A zerotrust refusal as a gRPC trailers-only answer; any other response unchanged.
///
/// A refusal is recognised by the `ZeroTrust` context with a non-allow decision that every
/// zerotrust layer puts into the extensions of the response it answers, and a non-2xx status.
pub fn refusal_to_grpc(response: Response<Body>) -> Response<Body> {
    let refusal = response
        .extensions()
        .get::<ZeroTrust>()
        .and_then(ZeroTrust::decision)
        .filter(|d| d.outcome != Outcome::Allow)
        .map(|d| d.reason);
    let Some(reason) = refusal.filter(|_| !response.status().is_success()) else {
        return response;
    };
    let (parts, _problem_body) = response.into_parts();
    let code = grpc_code(parts.status);
    let message = grpc_message(&format!("{}: {}", reason.code(), reason.description()));
    let mut grpc = Response::new(Body::empty());
    let headers = grpc.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code as i32));
    if let Ok(value) = HeaderValue::from_str(&message) {
        headers.insert("grpc-message", value);
    }
    for name in [header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            headers.insert(name, value.clone());
        }
    }
    // Keep the context for any layer further out.
    *grpc.extensions_mut() = parts.extensions;
    grpc
}

/// The adapter layer: [`refusal_to_grpc`] on every response.
pub type GrpcRefusals = MapResponseLayer<fn(Response<Body>) -> Response<Body>>;

/// The adapter layer (see the module docs for why).
pub fn grpc_refusals() -> GrpcRefusals {
    MapResponseLayer::new(refusal_to_grpc as fn(Response<Body>) -> Response<Body>)
}

/// tonic's connection info as zerotrust's `PeerAddr`, so the layers and the audit record know
/// the peer.
fn peer_from_tonic<B>(mut req: Request<B>) -> Request<B> {
    if let Some(addr) = req
        .extensions()
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
    {
        req.extensions_mut().insert(PeerAddr(addr));
    }
    req
}

/// tonic's response body into `axum_core`'s, the body type the zerotrust layers answer with.
fn to_axum_body(response: Response<tonic::body::Body>) -> Response<Body> {
    response.map(Body::new)
}

/// The route policy: `GetReport` needs the `reports:read` scope; every other method is refused.
pub fn policy() -> Result<StepUpPolicy, BoxError> {
    Ok(StepUpPolicy::builder()
        .route_for(
            ["POST"],
            GET_REPORT,
            Requirements::new().scopes(["reports:read"]),
        )
        .build()?)
}

/// Serves `Reports` on `listener` behind the stack, with the refusal adapter or (to show what a
/// client sees without it) without.
pub async fn serve(
    listener: TcpListener,
    verifier: JwtVerifier,
    policy: StepUpPolicy,
    audit: Audit,
    with_adapter: bool,
) -> Result<(), tonic::transport::Error> {
    let adapter: Either<GrpcRefusals, Identity> = if with_adapter {
        Either::Left(grpc_refusals())
    } else {
        Either::Right(Identity::new())
    };
    let stack = ServiceBuilder::new()
        .layer(adapter)
        .map_request(peer_from_tonic)
        .layer(AuditLogLayer::new(audit))
        .layer(JwtVerifyLayer::new(verifier).realm("grpc"))
        .layer(StepUpLayer::new(policy))
        .map_response(to_axum_body)
        .into_inner();
    Server::builder()
        .timeout(Duration::from_secs(30))
        .layer(stack)
        .add_service(ReportsServer)
        .serve_with_incoming(TcpIncoming::from(listener))
        .await
}

// --- The client side ---------------------------------------------------------------------------

/// Calls `Reports/GetReport` with `token` (if any) in the `authorization` metadata.
pub async fn get_report(
    channel: Channel,
    token: Option<&str>,
    id: &str,
) -> Result<tonic::Response<Report>, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| Status::unavailable(format!("service not ready: {e}")))?;
    let mut request = tonic::Request::new(ReportRequest { id: id.to_owned() });
    if let Some(token) = token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("the token is not valid metadata"))?;
        request.metadata_mut().insert("authorization", value);
    }
    grpc.unary(
        request,
        PathAndQuery::from_static(GET_REPORT),
        ProstCodec::<ReportRequest, Report>::default(),
    )
    .await
}

/// A channel to `url` with bounded timeouts.
pub async fn connect(url: &str) -> Result<Channel, BoxError> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .connect()
        .await?)
}

// --- Running it --------------------------------------------------------------------------------

/// A running example: the issuer, the gRPC server's URL.
pub struct TonicExample {
    /// The development issuer (discovery + JWKS on 127.0.0.1).
    pub issuer: DevIssuer,
    /// `http://127.0.0.1:PORT` of the gRPC server.
    pub url: String,
    /// The audit pipeline (records go to `tracing`).
    pub audit: Audit,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

/// Starts the issuer and the gRPC server on `addr` (a busy port falls back to a free one).
pub async fn start(addr: SocketAddr, with_adapter: bool) -> Result<TonicExample, BoxError> {
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
    let audit = Audit::builder().sink(TracingSink).start()?;

    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            println!("{addr} is in use; taking a free port instead");
            TcpListener::bind((addr.ip(), 0)).await?
        }
        Err(err) => return Err(err.into()),
    };
    let url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(serve(
        listener,
        verifier,
        policy()?,
        audit.clone(),
        with_adapter,
    ));
    Ok(TonicExample {
        issuer,
        url,
        audit,
        server,
    })
}

/// One call of the walkthrough and what the client got.
#[derive(Debug)]
pub struct Call {
    /// What was sent.
    pub request: &'static str,
    /// The gRPC code (`Ok` on success).
    pub code: Code,
    /// `grpc-message` (or the report's subject on success).
    pub message: String,
    /// The `www-authenticate` metadata, if any.
    pub challenge: Option<String>,
}

/// A valid token, none, one without the scope, an expired one.
pub async fn walkthrough(ex: &TonicExample) -> Result<Vec<Call>, BoxError> {
    let issuer = &ex.issuer;
    let cases: Vec<(&'static str, Option<String>)> = vec![
        ("valid token", Some(issuer.mint())),
        ("no token", None),
        (
            "token without reports:read",
            Some(issuer.sign(&issuer.token().claim("scope", "openid"))),
        ),
        (
            "expired token",
            Some(issuer.sign(&issuer.token().claim("exp", unix_now() - 600))),
        ),
    ];
    let channel = connect(&ex.url).await?;
    let mut calls = Vec::with_capacity(cases.len());
    for (request, token) in cases {
        let call = match get_report(channel.clone(), token.as_deref(), "2025-q3").await {
            Ok(response) => Call {
                request,
                code: Code::Ok,
                message: format!("report for {}", response.get_ref().subject),
                challenge: None,
            },
            Err(status) => Call {
                request,
                code: status.code(),
                message: status.message().to_owned(),
                challenge: status
                    .metadata()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            },
        };
        calls.push(call);
    }
    Ok(calls)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut once = false;
    let mut addr: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 50051));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--once" => once = true,
            "--addr" => addr = args.next().ok_or("--addr needs a value")?.parse()?,
            other => return Err(format!("unknown argument {other}; use --once or --addr").into()),
        }
    }

    let ex = start(addr, true).await?;
    let calls = walkthrough(&ex).await?;
    println!("\n{:<28} {:<18} message", "call", "grpc-status");
    for call in &calls {
        println!(
            "{:<28} {:<18} {}",
            call.request,
            format!("{:?}", call.code),
            call.message
        );
    }
    println!(
        "\ngRPC service {SERVICE} at {}\nTry it (grpcurl needs the message types: -proto or a \
         descriptor set):\n  TOKEN={}",
        ex.url,
        ex.issuer.mint()
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

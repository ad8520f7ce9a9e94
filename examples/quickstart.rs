//! Quickstart: an axum service protected by `JwtVerifyLayer` against a local issuer.
//!
//! ```text
//! cargo run --example quickstart             # walk through the answers, then serve until Ctrl-C
//! cargo run --example quickstart -- --once   # walk through the answers and exit
//! cargo run --example quickstart -- --addr 127.0.0.1:8080
//! ```
//!
//! It starts, on 127.0.0.1, a development issuer (OIDC discovery and a JWKS with a fresh RSA
//! key) and a service whose `/api/me` route requires a valid access token of that issuer. It then
//! sends a valid token and several bad ones with real HTTP, prints what the service answered, and
//! prints a token and the `curl` commands to try the same by hand.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zerotrust::ZeroTrust;
use zerotrust::jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

type BoxError = Box<dyn Error + Send + Sync>;

/// The protected handler: the identity is there because the layer verified the token.
async fn me(zt: ZeroTrust) -> Json<Value> {
    match zt.identity() {
        Some(id) => Json(json!({
            "sub": id.subject(),
            "iss": id.issuer(),
            "scopes": id.scopes(),
            "expires_at": id.expires_at(),
        })),
        // Unreachable behind JwtVerifyLayer, which refuses requests without a valid token.
        None => Json(json!({ "sub": null })),
    }
}

/// The service: `/api/me` behind the layer, `/healthz` open.
pub fn router(verifier: JwtVerifier) -> Router {
    Router::new()
        .route("/api/me", get(me))
        .route_layer(JwtVerifyLayer::new(verifier).realm("quickstart"))
        .route("/healthz", get(|| async { "ok" }))
}

/// A running quickstart: the issuer, the service's base URL and a valid token.
pub struct Quickstart {
    /// The development issuer (discovery + JWKS on 127.0.0.1).
    pub issuer: DevIssuer,
    /// `http://127.0.0.1:PORT` of the protected service.
    pub base_url: String,
    /// A valid access token, good for one hour.
    pub token: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the issuer and the protected service on `addr` (a busy port falls back to a free one).
pub async fn start(addr: SocketAddr) -> Result<Quickstart, BoxError> {
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
    // Load the keys before the first request, so a misconfiguration shows here and not later.
    verifier.prefetch().await?;

    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            println!("{addr} is in use; taking a free port instead");
            TcpListener::bind((addr.ip(), 0)).await?
        }
        Err(err) => return Err(err.into()),
    };
    let base_url = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(async move { axum::serve(listener, router(verifier)).await });
    let token = issuer.sign(&issuer.token().claim("exp", unix_now() + 3600));
    Ok(Quickstart {
        issuer,
        base_url,
        token,
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
    /// The `WWW-Authenticate` header (`-` when absent).
    pub challenge: String,
}

/// Sends a valid token and the usual bad ones; returns the answers in order.
pub async fn walkthrough(qs: &Quickstart) -> Result<Vec<Step>, BoxError> {
    let issuer = &qs.issuer;
    let now = unix_now();
    let other_token = issuer.mint();
    let tampered = {
        // This token's header and claims with another token's signature.
        let (signed_part, _) = qs.token.rsplit_once('.').ok_or("token has no signature")?;
        let (_, signature) = other_token
            .rsplit_once('.')
            .ok_or("token has no signature")?;
        format!("{signed_part}.{signature}")
    };
    let cases: Vec<(&'static str, Option<String>)> = vec![
        ("valid token", Some(qs.token.clone())),
        ("no token", None),
        (
            "expired token",
            Some(issuer.sign(&issuer.token().claim("exp", now - 600))),
        ),
        (
            "token for another audience",
            Some(issuer.sign(&issuer.token().claim("aud", "https://other.example"))),
        ),
        ("signature of another token", Some(tampered)),
        ("alg none", Some(issuer.token().unsigned("none"))),
        (
            "ID token (typ JWT) as access token",
            Some(issuer.sign(&issuer.token().header("typ", "JWT"))),
        ),
    ];

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}/api/me", qs.base_url);
    let mut steps = Vec::with_capacity(cases.len() + 1);
    for (request, token) in cases {
        let mut req = client.get(&url);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        steps.push(answer(request, req).await?);
    }
    // A token in the URL leaks into logs and Referer headers: refused as a malformed request.
    let in_query = client.get(format!("{url}?access_token={}", qs.token));
    steps.push(answer("token in the query string", in_query).await?);
    Ok(steps)
}

async fn answer(request: &'static str, req: reqwest::RequestBuilder) -> Result<Step, BoxError> {
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let body: Value = serde_json::from_str(&resp.text().await?).unwrap_or(Value::Null);
    let code = body
        .get("code")
        .and_then(Value::as_str)
        .unwrap_or("-")
        .to_owned();
    Ok(Step {
        request,
        status,
        code,
        challenge,
    })
}

fn print_steps(steps: &[Step]) {
    println!(
        "\n{:<36} {:>6}  {:<22} WWW-Authenticate",
        "request", "status", "code"
    );
    for step in steps {
        println!(
            "{:<36} {:>6}  {:<22} {}",
            step.request, step.status, step.code, step.challenge
        );
    }
}

fn print_try_it(qs: &Quickstart) {
    let url = format!("{}/api/me", qs.base_url);
    println!("\nIssuer:  {} (discovery and JWKS)", qs.issuer.issuer());
    println!("Service: {url}");
    println!("\nA token valid for one hour:\n\nTOKEN={}\n", qs.token);
    println!("Try it:");
    println!("  curl -i -H \"Authorization: Bearer $TOKEN\" {url}   # 200 with your identity");
    println!("  curl -i {url}                                       # 401, bare Bearer challenge");
    println!("  curl -i -H \"Authorization: Bearer x$TOKEN\" {url}  # 401 invalid_token");
    println!("  curl -i \"{url}?access_token=$TOKEN\"                # 400 invalid_request");
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

    let qs = start(addr).await?;
    let steps = walkthrough(&qs).await?;
    print_steps(&steps);
    print_try_it(&qs);
    if once {
        return Ok(());
    }
    println!("\nServing until Ctrl-C.");
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        result = qs.server => result??,
    }
    Ok(())
}

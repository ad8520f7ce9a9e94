//! Step-up authentication, the RFC 9470 round trip: a route that needs multi-factor
//! authentication done recently challenges a weaker token, the client re-authenticates as the
//! challenge asks, and the stronger token is let in.
//!
//! ```text
//! cargo run --example step_up             # walk through the round trip, then serve until Ctrl-C
//! cargo run --example step_up -- --once   # walk through the round trip and exit
//! cargo run --example step_up -- --addr 127.0.0.1:8080
//! ```
//!
//! It starts, on 127.0.0.1, a development issuer (OIDC discovery and JWKS) and a service with two
//! routes behind `JwtVerifyLayer` and `StepUpLayer`:
//!
//! - `GET /api/balance`: any valid token;
//! - `POST /api/transfers`: `acr` must be [`MFA`] and the authentication at most five minutes old.
//!
//! A client holding a password-only token reads the balance, is challenged on a transfer
//! (`401`, `WWW-Authenticate: Bearer error="insufficient_user_authentication",
//! acr_values="..."`), steps up (here: asks the development issuer for a token with the `acr` the
//! challenge named and a fresh `auth_time`, as an authorization server would after the user
//! passed the second factor) and retries. A token whose MFA is too old gets a `max_age`
//! challenge and goes through the same loop.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::net::SocketAddr;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::ServiceBuilder;
use zerotrust::ZeroTrust;
use zerotrust::jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
use zerotrust::stepup::{Requirements, StepUpLayer, StepUpPolicy};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

type BoxError = Box<dyn Error + Send + Sync>;

/// The `acr` of a password-only login.
pub const PASSWORD: &str = "urn:example:acr:pwd";
/// The `acr` of a multi-factor login: what transfers need.
pub const MFA: &str = "urn:example:acr:mfa";
/// How recent the authentication behind a transfer must be.
pub const MAX_AUTH_AGE: Duration = Duration::from_secs(300);

async fn balance(zt: ZeroTrust) -> Json<Value> {
    Json(json!({ "sub": zt.subject(), "balance": "1234.56 EUR" }))
}

async fn transfer(zt: ZeroTrust) -> Json<Value> {
    let id = zt.identity();
    Json(json!({
        "sub": zt.subject(),
        "transfer": "accepted",
        "acr": id.and_then(|i| i.acr()),
        "auth_time": id.and_then(|i| i.auth_time()),
    }))
}

/// The route policy: transfers need MFA done at most [`MAX_AUTH_AGE`] ago.
pub fn policy() -> Result<StepUpPolicy, BoxError> {
    Ok(StepUpPolicy::builder()
        .route("/api/balance", Requirements::new())
        .route_for(
            ["POST"],
            "/api/transfers",
            Requirements::new()
                .acr([MFA])
                .max_auth_age(MAX_AUTH_AGE)
                .sensitive(),
        )
        .build()?)
}

/// The service: both routes behind JwtVerify (who) and StepUp (decide).
pub fn router(verifier: JwtVerifier, policy: StepUpPolicy) -> Router {
    Router::new()
        .route("/api/balance", get(balance))
        .route("/api/transfers", post(transfer))
        .layer(
            ServiceBuilder::new()
                .layer(JwtVerifyLayer::new(verifier).realm("bank"))
                .layer(StepUpLayer::new(policy)),
        )
}

/// A running step-up example: the issuer and the service's base URL.
pub struct StepUpExample {
    /// The development issuer (discovery + JWKS on 127.0.0.1), which also plays the
    /// authorization server the client steps up with.
    pub issuer: DevIssuer,
    /// `http://127.0.0.1:PORT` of the protected service.
    pub base_url: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Starts the issuer and the service on `addr` (a busy port falls back to a free one).
pub async fn start(addr: SocketAddr) -> Result<StepUpExample, BoxError> {
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

    let listener = match TcpListener::bind(addr).await {
        Ok(listener) => listener,
        Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
            println!("{addr} is in use; taking a free port instead");
            TcpListener::bind((addr.ip(), 0)).await?
        }
        Err(err) => return Err(err.into()),
    };
    let base_url = format!("http://{}", listener.local_addr()?);
    let app = router(verifier, policy()?);
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(StepUpExample {
        issuer,
        base_url,
        server,
    })
}

/// What the client's session holds: a token, and how and when the user logged in.
#[derive(Debug, Clone)]
pub struct Session {
    /// The access token.
    pub token: String,
    /// The `acr` of the login behind it.
    pub acr: String,
    /// When the user logged in (`auth_time`).
    pub auth_time: i64,
}

/// Logs `alice` in with `acr` at `auth_time` (what the authorization server would issue).
pub fn login(issuer: &DevIssuer, acr: &str, auth_time: i64) -> Session {
    let amr: &[&str] = if acr == MFA {
        &["pwd", "otp"]
    } else {
        &["pwd"]
    };
    let token = issuer.sign(
        &issuer
            .token()
            .claim("acr", acr)
            .claim("amr", json!(amr))
            .claim("auth_time", auth_time),
    );
    Session {
        token,
        acr: acr.to_owned(),
        auth_time,
    }
}

/// The RFC 9470 parameters of an `insufficient_user_authentication` challenge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Challenge {
    /// `acr_values`: acceptable `acr` values, in order of preference.
    pub acr_values: Option<String>,
    /// `max_age`: the oldest acceptable authentication, in seconds.
    pub max_age: Option<u64>,
}

impl Challenge {
    /// Reads an `insufficient_user_authentication` challenge from a `WWW-Authenticate` value.
    pub fn parse(header: &str) -> Option<Challenge> {
        let params = header.strip_prefix("Bearer")?;
        let mut error = None;
        let mut challenge = Challenge::default();
        for part in split_params(params) {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim() {
                "error" => error = Some(value.to_owned()),
                "acr_values" => challenge.acr_values = Some(value.to_owned()),
                "max_age" => challenge.max_age = value.parse().ok(),
                _ => {}
            }
        }
        (error.as_deref() == Some("insufficient_user_authentication")).then_some(challenge)
    }
}

/// Splits `a="x, y", b=1` at the commas outside quotes.
fn split_params(params: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in params.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.extend(params.get(start..i));
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.extend(params.get(start..));
    parts
}

/// The client's step up: log in again as the challenge asks, with the first acceptable `acr`
/// (or the session's own, when only `max_age` was asked) and a fresh authentication.
pub fn step_up(issuer: &DevIssuer, session: &Session, challenge: &Challenge) -> Session {
    let acr = challenge
        .acr_values
        .as_deref()
        .and_then(|values| values.split_whitespace().next())
        .unwrap_or(&session.acr);
    login(issuer, acr, unix_now())
}

/// One request of the walkthrough and what the service answered.
#[derive(Debug, Clone)]
pub struct Step {
    /// What was sent.
    pub request: String,
    /// The HTTP status of the answer.
    pub status: u16,
    /// The problem code of the RFC 9457 body (`-` on success).
    pub code: String,
    /// The `WWW-Authenticate` header (`-` when absent).
    pub challenge: String,
    /// The body of the answer.
    pub body: Value,
}

async fn send(
    client: &reqwest::Client,
    method: http::Method,
    url: &str,
    session: &Session,
    request: String,
) -> Result<Step, BoxError> {
    let resp = client
        .request(method, url)
        .bearer_auth(&session.token)
        .send()
        .await?;
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
        body,
    })
}

fn describe(session: &Session, now: i64) -> String {
    let acr = session.acr.rsplit(':').next().unwrap_or(&session.acr);
    format!("acr {acr}, auth {} s ago", now - session.auth_time)
}

/// Sends a transfer with `session`; on an RFC 9470 challenge steps up once and retries. Answers
/// every request made, and the session in use at the end.
pub async fn transfer_with_step_up(
    ex: &StepUpExample,
    client: &reqwest::Client,
    mut session: Session,
) -> Result<(Vec<Step>, Session), BoxError> {
    let url = format!("{}/api/transfers", ex.base_url);
    let mut steps = Vec::new();
    for attempt in 0..2 {
        let label = if attempt == 0 {
            "POST /api/transfers"
        } else {
            "POST /api/transfers (stepped up)"
        };
        let request = format!("{label} [{}]", describe(&session, unix_now()));
        let step = send(client, http::Method::POST, &url, &session, request).await?;
        let challenge = (step.status == 401)
            .then(|| Challenge::parse(&step.challenge))
            .flatten();
        steps.push(step);
        match challenge {
            Some(challenge) if attempt == 0 => {
                session = step_up(&ex.issuer, &session, &challenge);
            }
            _ => break,
        }
    }
    Ok((steps, session))
}

/// The walkthrough: a password session reads the balance, is challenged on a transfer for its
/// `acr`, steps up and transfers; an MFA session from 20 minutes ago is challenged for `max_age`,
/// re-authenticates and transfers.
pub async fn walkthrough(ex: &StepUpExample) -> Result<Vec<Step>, BoxError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let now = unix_now();
    let mut steps = Vec::new();

    let password = login(&ex.issuer, PASSWORD, now - 60);
    let url = format!("{}/api/balance", ex.base_url);
    let request = format!("GET /api/balance [{}]", describe(&password, now));
    steps.push(send(&client, http::Method::GET, &url, &password, request).await?);
    let (round_trip, _) = transfer_with_step_up(ex, &client, password).await?;
    steps.extend(round_trip);

    let old_mfa = login(&ex.issuer, MFA, now - 20 * 60);
    let (round_trip, _) = transfer_with_step_up(ex, &client, old_mfa).await?;
    steps.extend(round_trip);
    Ok(steps)
}

fn print_steps(steps: &[Step]) {
    println!(
        "\n{:<58} {:>6}  {:<22} WWW-Authenticate",
        "request", "status", "code"
    );
    for step in steps {
        println!(
            "{:<58} {:>6}  {:<22} {}",
            step.request, step.status, step.code, step.challenge
        );
    }
}

fn print_try_it(ex: &StepUpExample) {
    let now = unix_now();
    let weak = login(&ex.issuer, PASSWORD, now);
    let strong = login(&ex.issuer, MFA, now);
    let url = format!("{}/api/transfers", ex.base_url);
    println!("\nIssuer:  {} (discovery and JWKS)", ex.issuer.issuer());
    println!("Service: {url}");
    println!("\nA password-only token and an MFA token, each valid for 5 minutes:\n");
    println!("WEAK={}\n", weak.token);
    println!("STRONG={}\n", strong.token);
    println!("Try it:");
    println!("  curl -i -X POST -H \"Authorization: Bearer $WEAK\" {url}    # 401, acr_values");
    println!("  curl -i -X POST -H \"Authorization: Bearer $STRONG\" {url}  # 200");
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
    print_steps(&steps);
    print_try_it(&ex);
    if once {
        return Ok(());
    }
    println!("\nServing until Ctrl-C.");
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        result = ex.server => result??,
    }
    Ok(())
}

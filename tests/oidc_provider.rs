//! Against a real OpenID Provider: panva's `oidc-provider` (a certified OP, Node.js), started by
//! this test on 127.0.0.1 from `tests/idp/server.mjs`.
//!
//! The provider issues RFC 9068 `at+jwt` access tokens for resource indicators (RFC 8707) to a
//! confidential client (`client_credentials`, `client_secret_basic`). The test gets its tokens
//! exactly as a client would (discovery, then a POST to the token endpoint), and the protected
//! service knows nothing but the issuer URL and its own audience: it finds the keys through OIDC
//! discovery. Restarting the provider rotates its signing key; the same verifier, not restarted,
//! still accepts the new tokens (an unknown `kid` makes it refetch the JWK Set).
//!
//! Needs `node` (20 or later) and the provider installed from the lockfile:
//! `./scripts/test.sh` does it, or `npm ci --prefix tests/idp`. Without them the test fails; it
//! never skips.

// A test: failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zerotrust::ZeroTrust;
use zerotrust::jwt::{Issuer, JwtVerifier, JwtVerifyLayer, reasons};

/// The resource (RFC 8707) the protected service is, and so the audience it accepts.
const RESOURCE: &str = "https://reports.api.zerotrust.test";
/// Another resource server of the same provider: its tokens must not open this service.
const OTHER_RESOURCE: &str = "https://billing.api.zerotrust.test";
const CLIENT_ID: &str = "reports-batch-job";
const CLIENT_SECRET: &str = "s3cr3t-for-tests-only-2f8c7d4e9a1b";

/// How long the provider may take to start (Node.js and a 2048-bit RSA key).
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long any one HTTP exchange may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/idp")
}

/// One `node tests/idp/server.mjs` process; killed when dropped, also when a test panics.
struct Idp {
    child: Child,
    issuer: String,
    port: u16,
    kid: String,
    stderr: Arc<Mutex<String>>,
}

enum StartError {
    /// The port is still held (a restart racing the old socket): worth another try.
    AddrInUse,
    Other(String),
}

impl Idp {
    /// Starts the provider on `port` (0: a free one) and waits until discovery answers.
    async fn start(port: u16) -> Idp {
        let installed = idp_dir().join("node_modules/oidc-provider/package.json");
        assert!(
            installed.is_file(),
            "oidc-provider is not installed ({} is missing): run ./scripts/test.sh, or \
             `npm ci --prefix tests/idp`",
            installed.display()
        );
        // A restart on the same port may race the old socket's release: a few bounded tries.
        let mut attempts = 0;
        let idp = loop {
            attempts += 1;
            match Self::spawn(port) {
                Ok(idp) => break idp,
                Err(StartError::AddrInUse) if attempts < 20 => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(StartError::AddrInUse) => panic!("127.0.0.1:{port} stayed in use"),
                Err(StartError::Other(message)) => panic!("{message}"),
            }
        };
        idp.wait_for_discovery().await;
        idp
    }

    fn spawn(port: u16) -> Result<Idp, StartError> {
        let script = idp_dir().join("server.mjs");
        let mut child = Command::new("node")
            .arg(&script)
            .args(["--port", &port.to_string()])
            .args(["--resource", RESOURCE, "--resource", OTHER_RESOURCE])
            .args(["--client-id", CLIENT_ID, "--client-secret", CLIENT_SECRET])
            // The provider exits when its stdin closes: it never outlives this process.
            .arg("--exit-with-stdin")
            .current_dir(idp_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|err| {
                StartError::Other(format!(
                    "cannot run `node` ({err}): install Node.js 20 or later, then run \
                     ./scripts/test.sh, or `npm ci --prefix tests/idp`"
                ))
            })?;

        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(mut pipe) = child.stderr.take() {
            let stderr = Arc::clone(&stderr);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(buf.get(..n).unwrap_or_default());
                    stderr.lock().unwrap().push_str(&text);
                }
            });
        }
        let (ready_tx, ready_rx) = mpsc::channel::<String>();
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("zerotrust-idp ready ") {
                    let _ = ready_tx.send(line);
                }
            }
        });

        let mut idp = Idp {
            child,
            issuer: String::new(),
            port,
            kid: String::new(),
            stderr,
        };
        let line = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(StartError::Other(format!(
                    "oidc-provider did not start within {START_TIMEOUT:?}; stderr:\n{}",
                    idp.stderr()
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                // The process ended before it was ready; give its stderr a moment to arrive.
                let _ = idp.child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let stderr = idp.stderr();
                if stderr.contains("EADDRINUSE") {
                    return Err(StartError::AddrInUse);
                }
                return Err(StartError::Other(format!(
                    "oidc-provider exited before it was ready; stderr:\n{stderr}"
                )));
            }
        };
        for field in line.split_whitespace() {
            if let Some(issuer) = field.strip_prefix("issuer=") {
                idp.issuer = issuer.to_owned();
            } else if let Some(kid) = field.strip_prefix("kid=") {
                idp.kid = kid.to_owned();
            }
        }
        let addr: SocketAddr = idp
            .issuer
            .strip_prefix("http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
        assert!(addr.ip().is_loopback(), "{line}");
        idp.port = addr.port();
        assert!(!idp.kid.is_empty(), "{line}");
        Ok(idp)
    }

    async fn wait_for_discovery(&self) {
        let client = http_client();
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(resp) = client.get(&url).send().await
                && resp.status() == 200
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{url} did not answer 200 within {START_TIMEOUT:?}; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the provider and waits until the process is gone.
    fn stop(mut self) {
        self.kill();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.kill();
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .build()
        .unwrap()
}

/// What a client does: discovery, then `client_credentials` at the token endpoint with a
/// `resource` and HTTP Basic client authentication (RFC 6749 §2.3.1: id and secret
/// form-urlencoded first). Answers the access token.
async fn fetch_token(issuer: &str, resource: &str, scope: &str) -> String {
    let client = http_client();
    let discovery: Value = serde_json::from_str(
        &client
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(discovery["issuer"], issuer);
    assert!(
        discovery["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("client_credentials"))),
        "{discovery}"
    );
    let token_endpoint = discovery["token_endpoint"].as_str().unwrap();

    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("resource", resource)
        .append_pair("scope", scope)
        .finish();
    let user: String = form_urlencoded::byte_serialize(CLIENT_ID.as_bytes()).collect();
    let password: String = form_urlencoded::byte_serialize(CLIENT_SECRET.as_bytes()).collect();
    let resp = client
        .post(token_endpoint)
        .basic_auth(user, Some(password))
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let answer: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_eq!(status, 200, "token endpoint answered {answer}");
    assert_eq!(answer["token_type"], "Bearer", "{answer}");
    assert!(answer["expires_in"].as_u64().is_some_and(|s| s > 0));
    answer["access_token"].as_str().unwrap().to_owned()
}

/// The protected service: `/api/me` answers the identity `JwtVerifyLayer` put into `ZeroTrust`.
async fn me(zt: ZeroTrust) -> Json<Value> {
    let id = zt.identity();
    Json(json!({
        "sub": id.map(|i| i.subject()),
        "client_id": id.and_then(|i| i.client_id()),
        "iss": id.map(|i| i.issuer()),
        "aud": id.map(|i| i.audiences()),
        "scopes": id.map(|i| i.scopes()),
        "jti": id.and_then(|i| i.jti()),
    }))
}

/// A verifier that knows only the issuer URL and its own audience: keys come from discovery.
fn verifier_for(issuer: &str) -> JwtVerifier {
    JwtVerifier::builder()
        .issuer(
            Issuer::discover(issuer)
                .audience(RESOURCE)
                // The provider speaks plain HTTP on loopback; real issuers use HTTPS.
                .allow_insecure_http()
                .require_claim("jti"),
        )
        .build()
        .unwrap()
}

/// Serves the protected service on 127.0.0.1; answers its `/api/me` URL.
async fn serve(verifier: JwtVerifier) -> (String, tokio::task::JoinHandle<()>) {
    let app = Router::new()
        .route("/api/me", get(me))
        .layer(JwtVerifyLayer::new(verifier).realm("reports"));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let url = format!("http://{}/api/me", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, server)
}

struct Answer {
    status: u16,
    challenge: Option<String>,
    body: Value,
}

async fn call(url: &str, token: Option<&str>) -> Answer {
    let mut req = http_client().get(url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let challenge = resp
        .headers()
        .get(http::header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = serde_json::from_str(&resp.text().await.unwrap()).unwrap_or(Value::Null);
    Answer {
        status,
        challenge,
        body,
    }
}

fn assert_identity(answer: &Answer, issuer: &str) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    let body = &answer.body;
    // RFC 9068 §2.2: with no resource owner (client credentials), `sub` is the client itself.
    assert_eq!(body["sub"], CLIENT_ID, "{body}");
    assert_eq!(body["client_id"], CLIENT_ID, "{body}");
    assert_eq!(body["iss"], issuer, "{body}");
    assert_eq!(body["aud"], json!([RESOURCE]), "{body}");
    // The provider grants only the requested scopes the resource server has.
    assert_eq!(body["scopes"], json!(["reports:read"]), "{body}");
    assert!(
        body["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_provider_access_token_is_verified_through_discovery() {
    let idp = Idp::start(0).await;
    let (url, server) = serve(verifier_for(&idp.issuer)).await;

    let token = fetch_token(&idp.issuer, RESOURCE, "reports:read").await;
    let answer = call(&url, Some(&token)).await;
    assert_identity(&answer, &idp.issuer);

    // The same client, the same provider, another resource server: the audience is wrong.
    let other = fetch_token(&idp.issuer, OTHER_RESOURCE, "reports:read").await;
    let refused = call(&url, Some(&other)).await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert_eq!(refused.body["code"], reasons::AUDIENCE.code());
    assert!(
        refused
            .challenge
            .as_deref()
            .is_some_and(|c| c.starts_with("Bearer realm=\"reports\", error=\"invalid_token\"")),
        "{:?}",
        refused.challenge
    );

    // And no token at all: the bare challenge.
    let missing = call(&url, None).await;
    assert_eq!(missing.status, 401);
    assert_eq!(
        missing.challenge.as_deref(),
        Some("Bearer realm=\"reports\"")
    );

    server.abort();
    idp.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_provider_rotates_its_key_and_the_running_verifier_follows() {
    let idp = Idp::start(0).await;
    let issuer = idp.issuer.clone();
    let port = idp.port;
    let first_kid = idp.kid.clone();
    let (url, server) = serve(verifier_for(&issuer)).await;

    let first_token = fetch_token(&issuer, RESOURCE, "reports:read").await;
    assert_identity(&call(&url, Some(&first_token)).await, &issuer);

    // The provider goes away: keys already fetched keep working for tokens they signed.
    idp.stop();
    assert_identity(&call(&url, Some(&first_token)).await, &issuer);

    // Back on the same port (the same issuer URL) with a new signing key.
    let idp = Idp::start(port).await;
    assert_eq!(idp.issuer, issuer);
    assert_ne!(idp.kid, first_kid, "a restart must rotate the signing key");

    // A token signed with the new key: its `kid` is unknown to the running verifier, which
    // refetches the JWK Set once and accepts it. Nothing was restarted on the service side.
    let second_token = fetch_token(&issuer, RESOURCE, "reports:read").await;
    assert_ne!(second_token, first_token);
    assert_identity(&call(&url, Some(&second_token)).await, &issuer);

    // The old key is no longer published: the first token is refused now.
    let stale = call(&url, Some(&first_token)).await;
    assert_eq!(stale.status, 401, "{}", stale.body);
    assert_eq!(
        stale.body["code"],
        reasons::KEY_UNKNOWN.code(),
        "{}",
        stale.body
    );

    server.abort();
    idp.stop();
}

//! Service to service over mutual TLS: the caller's workload identity comes from its client
//! certificate, and the callee's route policy names which workloads may call it.
//!
//! ```text
//! cargo run --example mtls_service_to_service
//! ```
//!
//! At start it makes a private CA (rcgen) and, signed by it, a server certificate for 127.0.0.1
//! and two client certificates with SPIFFE-style URI SANs: `spiffe://demo/billing` and
//! `spiffe://demo/reports`. Then it starts, on 127.0.0.1:
//!
//! - **ledger** (service B): HTTPS with a required client certificate (rustls). The acceptor
//!   parses each connection's verified client certificate once and puts it into every request
//!   of the connection as a `PeerCertificate` extension; `StepUpLayer` admits `POST
//!   /ledger/charges` only from the workload `spiffe://demo/billing`.
//! - **billing** and **reports** (two instances of service A): plain HTTP services whose
//!   `/charge` route calls the ledger over mutual TLS with their own client certificate.
//!
//! It calls `/charge` on both: billing's call is allowed, reports' is refused by the ledger with
//! 403 `stepup.workload_not_allowed`.
// An example talks to its user on stdout.
#![allow(clippy::print_stdout)]

use std::error::Error;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tower::ServiceExt as _;
use zerotrust::{PeerCertificate, Requirements, StepUpLayer, StepUpPolicy};

type BoxError = Box<dyn Error + Send + Sync>;

/// The workload allowed to post charges to the ledger.
pub const BILLING: &str = "spiffe://demo/billing";
/// Another workload of the same CA, not allowed to.
pub const REPORTS: &str = "spiffe://demo/reports";

/// A private CA that signs the demo's certificates.
pub struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A certificate and its private key, in the forms rustls and reqwest take.
pub struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Certificate and key, PEM (for `reqwest::Identity`).
    pem: String,
}

impl Pki {
    /// A new CA with a fresh key.
    pub fn new() -> Result<Self, BoxError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate()?;
        let ca = params.self_signed(&key)?;
        Ok(Self {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        })
    }

    fn leaf(&self, san: SanType, usage: ExtendedKeyUsagePurpose) -> Result<Leaf, BoxError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names = vec![san];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            pem: format!("{}{}", cert.pem(), key.serialize_pem()),
        })
    }

    /// A server certificate for 127.0.0.1.
    pub fn server(&self) -> Result<Leaf, BoxError> {
        self.leaf(
            SanType::IpAddress([127, 0, 0, 1].into()),
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A client certificate naming the workload `uri`.
    pub fn workload(&self, uri: &str) -> Result<Leaf, BoxError> {
        self.leaf(
            SanType::URI(uri.try_into()?),
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Service B's routes: the handler sees the caller's workload identity.
async fn charge(Extension(peer): Extension<PeerCertificate>) -> Json<Value> {
    Json(json!({
        "charged": true,
        "caller": peer.uri_sans().next(),
    }))
}

/// Service B, the ledger: only the billing workload may post charges.
pub fn ledger_router() -> Result<Router, BoxError> {
    let policy = StepUpPolicy::builder()
        .route_for(
            ["POST"],
            "/ledger/charges",
            // No user token between services: the client certificate is the identity.
            Requirements::new().anonymous().workloads([BILLING]),
        )
        .build()?;
    Ok(Router::new()
        .route("/ledger/charges", post(charge))
        .layer(StepUpLayer::new(policy)))
}

/// Serves `app` over TLS on 127.0.0.1, requiring a client certificate of `pki`'s CA; each
/// connection's verified leaf certificate becomes the `PeerCertificate` of its requests.
pub async fn serve_mtls(pki: &Pki, app: Router) -> Result<(SocketAddr, JoinHandle<()>), BoxError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone())?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()?;
    let server = pki.server()?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(server.chain, server.key)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(Ok(tls)) =
                    tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                else {
                    return;
                };
                // Parsed once per connection, from the chain rustls verified.
                let peer = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| PeerCertificate::from_der(leaf).ok());
                let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
                    if let Some(peer) = &peer {
                        req.extensions_mut().insert(peer.clone());
                    }
                    app.clone().oneshot(req)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    Ok((addr, task))
}

/// Service A: `/charge` calls the ledger over mutual TLS as its own workload and relays the
/// answer.
#[derive(Clone)]
struct Caller {
    ledger: String,
    http: reqwest::Client,
}

async fn call_ledger(State(caller): State<Caller>) -> (StatusCode, Json<Value>) {
    let answer = caller
        .http
        .post(format!("{}/ledger/charges", caller.ledger))
        .send()
        .await;
    match answer {
        Ok(resp) => {
            let status =
                StatusCode::from_u16(resp.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
            let text = resp.text().await.unwrap_or_default();
            let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::Null);
            (
                status,
                Json(json!({ "ledger_status": status.as_u16(), "ledger": body })),
            )
        }
        Err(err) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({ "error": err.to_string() })),
        ),
    }
}

/// Starts one instance of service A on 127.0.0.1 with the client certificate of `workload`.
pub async fn start_caller(
    pki: &Pki,
    workload: &str,
    ledger: SocketAddr,
) -> Result<(String, JoinHandle<std::io::Result<()>>), BoxError> {
    let identity = pki.workload(workload)?;
    let http = reqwest::Client::builder()
        // Trust only the private CA, and present this workload's certificate.
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes())?])
        .identity(reqwest::Identity::from_pem(identity.pem.as_bytes())?)
        .timeout(Duration::from_secs(10))
        .build()?;
    let caller = Caller {
        ledger: format!("https://{ledger}"),
        http,
    };
    let app = Router::new()
        .route("/charge", get(call_ledger))
        .with_state(caller);
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let url = format!("http://{}", listener.local_addr()?);
    Ok((
        url,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    ))
}

/// The running example: the ledger and its two callers.
pub struct Services {
    /// `https://127.0.0.1:PORT` of the ledger (service B).
    pub ledger: SocketAddr,
    /// `http://127.0.0.1:PORT` of the billing instance of service A.
    pub billing_url: String,
    /// `http://127.0.0.1:PORT` of the reports instance of service A.
    pub reports_url: String,
    tasks: Vec<JoinHandle<()>>,
    callers: Vec<JoinHandle<std::io::Result<()>>>,
}

impl Drop for Services {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
        self.callers.iter().for_each(JoinHandle::abort);
    }
}

/// Makes the certificates and starts the three services.
pub async fn start() -> Result<Services, BoxError> {
    let pki = Pki::new()?;
    let (ledger, ledger_task) = serve_mtls(&pki, ledger_router()?).await?;
    let (billing_url, billing) = start_caller(&pki, BILLING, ledger).await?;
    let (reports_url, reports) = start_caller(&pki, REPORTS, ledger).await?;
    Ok(Services {
        ledger,
        billing_url,
        reports_url,
        tasks: vec![ledger_task],
        callers: vec![billing, reports],
    })
}

/// Asks both callers to charge; answers `(workload, status, body)` for each.
pub async fn walkthrough(services: &Services) -> Result<Vec<(&'static str, u16, Value)>, BoxError> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut results = Vec::new();
    for (workload, url) in [
        (BILLING, &services.billing_url),
        (REPORTS, &services.reports_url),
    ] {
        let resp = client.get(format!("{url}/charge")).send().await?;
        let status = resp.status().as_u16();
        results.push((workload, status, serde_json::from_str(&resp.text().await?)?));
    }
    Ok(results)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let services = start().await?;
    println!("ledger (mTLS): https://{}", services.ledger);
    println!("billing:       {}", services.billing_url);
    println!("reports:       {}\n", services.reports_url);
    for (workload, status, body) in walkthrough(&services).await? {
        println!("{workload} -> ledger: {status} {body}");
    }
    Ok(())
}

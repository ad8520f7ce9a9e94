//! A mutual-TLS listener: certificates generated here (rcgen), the client certificate becomes the
//! workload identity the route's policy checks and the assertion carries.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use tokio::net::TcpStream;

const BILLING: &str = "spiffe://example.test/workload/billing";
const FRONTEND: &str = "spiffe://example.test/workload/frontend";

struct Pki {
    ca: CertificateDer<'static>,
    ca_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

type Leaf = (
    Vec<CertificateDer<'static>>,
    PrivateKeyDer<'static>,
    String,
    String,
);

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        Self {
            ca: ca.der().clone(),
            ca_pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// `(chain, key, chain PEM, key PEM)`.
    fn leaf(&self, san: SanType, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = vec![san];
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert.pem(),
            key.serialize_pem(),
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// GET `path` over TLS, with an optional client certificate; `Err` when the handshake or the
/// exchange fails.
async fn fetch(
    pki: &Pki,
    addr: SocketAddr,
    client: Option<&Leaf>,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, Value), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some((chain, key, _, _)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    tokio::time::timeout(WAIT, async {
        let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let tls = connector
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        let mut req = hyper::Request::get(path).header("host", "127.0.0.1");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = sender
            .send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    })
    .await
    .map_err(|_| "timed out".to_owned())?
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_client_certificate_is_the_workload_identity_checked_and_forwarded() {
    let pki = Pki::new();
    let dev = zerotrust_testkit::DevIssuer::start().await.unwrap();
    let up = upstream("a").await;
    let dir = temp_dir("mtls");
    let (_, _, server_pem, server_key) = pki.leaf(
        SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let cert = write(&dir, "server.crt", &server_pem);
    let key = write(&dir, "server.key", &server_key);
    let ca = write(&dir, "ca.pem", &pki.ca_pem);
    let text = format!(
        r#"
[[listener]]
addr = "127.0.0.1:0"
[listener.tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"

[[issuer]]
issuer = "{issuer}"
audiences = ["{aud}"]
allow_insecure_http = true

[audit]
file = "{audit}"

[[route]]
prefix = "/svc"
upstream = "{up}"
[route.policy]
anonymous = true
workloads = ["{BILLING}"]

[[route]]
prefix = "/api"
upstream = "{up}"
[route.policy]
scopes = ["reports:read"]
"#,
        issuer = dev.issuer(),
        aud = zerotrust_testkit::DEFAULT_AUDIENCE,
        audit = dir.join("audit.jsonl").display(),
        up = up.url(),
    );
    let path = dir.join("ztgate.toml");
    std::fs::write(&path, text).unwrap();
    let gw = ztgate::Gateway::start(&path).await.unwrap();
    let addr = gw.local_addrs()[0];
    let billing = pki.leaf(
        SanType::URI(BILLING.try_into().unwrap()),
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let frontend = pki.leaf(
        SanType::URI(FRONTEND.try_into().unwrap()),
        ExtendedKeyUsagePurpose::ClientAuth,
    );

    // The billing workload, no token: admitted by its certificate; the upstream learns who.
    let (status, echo) = fetch(&pki, addr, Some(&billing), "/svc/charge", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{echo}");
    let assertion = echo["headers"]["x-zt-assertion"][0].as_str().unwrap();
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(assertion)
        .unwrap()
        .claims;
    assert_eq!(claims["zt"]["workload"]["uri"], BILLING);
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

    // Another workload of the same CA: 403.
    let (status, _) = fetch(&pki, addr, Some(&frontend), "/svc/charge", None)
        .await
        .unwrap();
    assert_eq!(status, 403);

    // A user route over the same mTLS listener still needs the token.
    let (status, _) = fetch(&pki, addr, Some(&frontend), "/api/x", None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    let token = dev.mint();
    let (status, echo) = fetch(&pki, addr, Some(&frontend), "/api/x", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(
        echo["headers"]["x-zt-assertion"][0].as_str().unwrap(),
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["zt"]["workload"]["uri"], FRONTEND);

    // No client certificate: the handshake (or the first exchange) fails, nothing reaches upstream.
    let before = up.state.hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        fetch(&pki, addr, None, "/api/x", Some(&token))
            .await
            .is_err()
    );
    assert_eq!(
        up.state.hits.load(std::sync::atomic::Ordering::SeqCst),
        before
    );
    gw.shutdown().await.unwrap();
}

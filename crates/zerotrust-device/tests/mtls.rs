//! Devices identified by the client certificate of a real mutual-TLS connection on 127.0.0.1:
//! certificates generated here (rcgen), TLS by rustls, the `PeerCertificate` extension set by the
//! acceptor once per connection.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt;
use zerotrust_core::device::FingerprintDigest;
use zerotrust_core::{DeviceRecord, MemoryDeviceRegistry, PeerCertificate, Posture};
use zerotrust_device::{CertificateIds, DeviceCheck, DeviceCheckLayer};
use zerotrust_jwt::{Issuer as JwtIssuer, JwtVerifier, JwtVerifyLayer};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, unix_now};

const DEVICE_PREFIX: &str = "spiffe://example.test/device/";

struct Pki {
    ca: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

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
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf signed by the CA: `(chain, key)`.
    fn leaf(
        &self,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
    }

    fn client(&self, uri: &str) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        self.leaf(
            vec![SanType::URI(uri.try_into().unwrap())],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// Serves `app` over TLS, asking for (but not requiring) a client certificate from `pki`'s CA;
/// each connection's verified leaf becomes the `PeerCertificate` of its requests.
async fn serve_mtls(pki: &Pki, app: Router) -> SocketAddr {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .unwrap();
    let (chain, key) = pki.leaf(
        vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
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
    addr
}

/// GET /whoami over TLS with an optional client certificate.
async fn fetch(
    pki: &Pki,
    addr: SocketAddr,
    client_cert: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    token: &str,
) -> (u16, Value) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = ServerName::IpAddress(addr.ip().into());
    let tls = connector.connect(server_name, tcp).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/whoami")
        .header("host", "127.0.0.1")
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

struct App {
    addr: SocketAddr,
    dev: DevIssuer,
    registry: Arc<MemoryDeviceRegistry>,
}

async fn app(pki: &Pki, ids: CertificateIds) -> App {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(
            JwtIssuer::discover(dev.issuer())
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .build()
        .unwrap();
    let registry = Arc::new(MemoryDeviceRegistry::new());
    let check = DeviceCheck::builder_shared(registry.clone())
        .client_certificates(ids)
        .build()
        .unwrap();
    let router = Router::new()
        .route("/whoami", get(common::whoami))
        .layer(DeviceCheckLayer::new(check))
        .layer(JwtVerifyLayer::new(verifier));
    let addr = serve_mtls(pki, router).await;
    App {
        addr,
        dev,
        registry,
    }
}

fn managed(id: &str, owner: &str) -> DeviceRecord {
    DeviceRecord {
        owners: vec![owner.into()],
        posture: Posture {
            platform: Some("linux".into()),
            os_version: Some("6.8".into()),
            disk_encrypted: Some(true),
            edr_running: Some(true),
            jailbroken: Some(false),
            reported_at: Some(unix_now()),
        },
        fingerprint: None::<FingerprintDigest>,
        ..DeviceRecord::new(id, unix_now())
    }
}

#[tokio::test]
async fn client_certificate_uri_san_identifies_a_registered_device_with_verified_trust() {
    let pki = Pki::new();
    let app = app(&pki, CertificateIds::UriSanPrefix(DEVICE_PREFIX.into())).await;
    let device = format!("{DEVICE_PREFIX}laptop-9");
    app.registry.insert_new(managed(&device, "alice"));
    let token = app.dev.mint();

    let (status, body) = fetch(&pki, app.addr, Some(pki.client(&device)), &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device"]["id"], device.as_str());
    assert_eq!(body["device"]["binding"], "certificate");
    assert_eq!(body["device"]["status"], "known");
    assert_eq!(body["signals"], serde_json::json!([]));
    assert_eq!(body["trust"], "verified");
}

#[tokio::test]
async fn certificate_of_a_device_owned_by_another_subject_is_403() {
    let pki = Pki::new();
    let app = app(&pki, CertificateIds::UriSanPrefix(DEVICE_PREFIX.into())).await;
    let device = format!("{DEVICE_PREFIX}laptop-9");
    app.registry.insert_new(managed(&device, "bob"));
    let (status, body) = fetch(&pki, app.addr, Some(pki.client(&device)), &app.dev.mint()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("device.owner_mismatch"))
    );
}

#[tokio::test]
async fn certificate_without_a_device_uri_is_403_unrecognized() {
    let pki = Pki::new();
    let app = app(&pki, CertificateIds::UriSanPrefix(DEVICE_PREFIX.into())).await;
    let workload = pki.client("spiffe://example.test/ns/prod/sa/frontend");
    let (status, body) = fetch(&pki, app.addr, Some(workload), &app.dev.mint()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("device.certificate_unrecognized"))
    );
}

#[tokio::test]
async fn no_client_certificate_is_403_device_required() {
    let pki = Pki::new();
    let app = app(&pki, CertificateIds::UriSanPrefix(DEVICE_PREFIX.into())).await;
    let (status, body) = fetch(&pki, app.addr, None, &app.dev.mint()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("device.required"))
    );
}

#[tokio::test]
async fn certificate_fingerprint_is_the_device_id_when_configured() {
    let pki = Pki::new();
    let app = app(&pki, CertificateIds::Sha256Fingerprint).await;
    let (chain, key) = pki.client(&format!("{DEVICE_PREFIX}any"));
    let fingerprint = PeerCertificate::from_der(&chain[0])
        .unwrap()
        .sha256_hex()
        .to_owned();
    assert_eq!(fingerprint.len(), 64);
    app.registry.insert_new(managed(&fingerprint, "alice"));
    let (status, body) = fetch(&pki, app.addr, Some((chain, key)), &app.dev.mint()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device"]["id"], fingerprint.as_str());
    assert_eq!(body["device"]["binding"], "certificate");
}

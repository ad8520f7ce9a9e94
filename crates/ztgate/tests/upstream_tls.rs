//! `https://` upstreams: real TLS servers on 127.0.0.1 with certificates generated here (rcgen),
//! verified against the route's CA; a certificate of another CA is a 502; mutual TLS to the
//! upstream with the gateway's client certificate; a server name override; HTTP/2 by ALPN.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use common::*;
use http::StatusCode;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::json;
use tokio::net::TcpListener;
use zerotrust_testkit::DevIssuer;

struct Ca {
    der: CertificateDer<'static>,
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_pem: String,
    key_pem: String,
}

impl Ca {
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
            der: ca.der().clone(),
            pem: ca.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    fn leaf(&self, sans: Vec<SanType>, usage: ExtendedKeyUsagePurpose) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.subject_alt_names = sans;
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    fn server_for_localhost(&self) -> Leaf {
        self.leaf(
            vec![SanType::IpAddress("127.0.0.1".parse().unwrap())],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A TLS upstream on 127.0.0.1: answers JSON with the HTTP version, path, query, headers and
/// the client certificate's URI SAN count (0 without one).
struct TlsUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl TlsUpstream {
    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

async fn tls_upstream(server: &Leaf, client_ca: Option<&Ca>, alpn: &[&[u8]]) -> TlsUpstream {
    let builder = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der.clone()).unwrap();
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider(),
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(server.chain.clone(), server.key.clone_key())
        .unwrap();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let hits = counter.clone();
            tokio::spawn(async move {
                // A failed handshake (the gateway refusing the certificate) just ends here.
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                let client_cert = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    let mut headers = serde_json::Map::new();
                    for (name, value) in req.headers() {
                        headers.insert(
                            name.as_str().to_owned(),
                            json!([value.to_str().unwrap_or("<binary>")]),
                        );
                    }
                    let body = json!({
                        "version": format!("{:?}", req.version()),
                        "path": req.uri().path(),
                        "query": req.uri().query(),
                        "headers": headers,
                        "client_certificates": client_cert,
                    });
                    async move {
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(
                            body.to_string(),
                        ))))
                    }
                });
                let io = TokioIo::new(tls);
                if h2 {
                    let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(io, service)
                        .await;
                } else {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(io, service)
                        .await;
                }
            });
        }
    });
    TlsUpstream { addr, hits }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

struct Gw {
    dev: DevIssuer,
    gw: ztgate::Gateway,
    dir: std::path::PathBuf,
}

impl Gw {
    fn base(&self) -> String {
        format!("http://{}", self.gw.local_addrs()[0])
    }
}

/// A gateway with `routes` appended to the common head.
async fn gateway(tag: &str, routes: impl FnOnce(&Path) -> String) -> Gw {
    let dev = DevIssuer::start().await.unwrap();
    let dir = temp_dir(tag);
    let text = base_config(&dev, &dir) + &routes(&dir);
    let path = dir.join("ztgate.toml");
    std::fs::write(&path, text).unwrap();
    let gw = tokio::time::timeout(WAIT, ztgate::Gateway::start(&path))
        .await
        .unwrap()
        .unwrap();
    Gw { dev, gw, dir }
}

fn route(prefix: &str, upstream: &str, tls: &str) -> String {
    format!(
        "[[route]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\n[route.policy]\nscopes = [\"reports:read\"]\n{tls}\n"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_signed_by_the_route_ca_gets_the_request_over_http2_with_its_origin_as_audience()
 {
    let ca = Ca::new();
    let up = tls_upstream(&ca.server_for_localhost(), None, &[b"h2", b"http/1.1"]).await;
    let url = up.url();
    let env = gateway("tls-ok", |dir| {
        let ca_file = write(dir, "ca.pem", &ca.pem);
        route("/api", &url, &format!("[route.tls]\nca = \"{ca_file}\""))
    })
    .await;
    let c = client();
    let a = get(
        &c,
        &format!("{}/api/reports?x=1", env.base()),
        Some(&env.dev.mint()),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let echo = a.json();
    // The upstream offered h2 and the gateway took it.
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["path"], "/api/reports");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["client_certificates"], 0);
    let assertion = echo["headers"]["x-zt-assertion"][0].as_str().unwrap();
    let claims = verify_assertion(&c, &env.base(), assertion, &url).await;
    assert_eq!(claims["aud"], url);
    assert!(url.starts_with("https://127.0.0.1:"));
    assert_eq!(claims["sub"], "alice");
    // A second request reuses the pooled connection and still succeeds.
    let again = get(
        &c,
        &format!("{}/api/again", env.base()),
        Some(&env.dev.mint()),
        &[],
    )
    .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(up.hits.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_speaking_only_http1_is_reached_over_http1() {
    let ca = Ca::new();
    let up = tls_upstream(&ca.server_for_localhost(), None, &[b"http/1.1"]).await;
    let url = up.url();
    let env = gateway("tls-h1", |dir| {
        let ca_file = write(dir, "ca.pem", &ca.pem);
        route("/api", &url, &format!("[route.tls]\nca = \"{ca_file}\""))
    })
    .await;
    let c = client();
    let a = get(
        &c,
        &format!("{}/api/x", env.base()),
        Some(&env.dev.mint()),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["version"], "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn preserve_host_routes_offer_only_http1_so_the_clients_host_is_kept() {
    let ca = Ca::new();
    let up = tls_upstream(&ca.server_for_localhost(), None, &[b"h2", b"http/1.1"]).await;
    let url = up.url();
    let env = gateway("tls-host", |dir| {
        let ca_file = write(dir, "ca.pem", &ca.pem);
        // `preserve_host` is a route key: it goes before the policy table.
        format!(
            "[[route]]\nprefix = \"/api\"\nupstream = \"{url}\"\npreserve_host = true\n[route.tls]\nca = \"{ca_file}\"\n[route.policy]\nscopes = [\"reports:read\"]\n"
        )
    })
    .await;
    let c = client();
    let a = get(
        &c,
        &format!("{}/api/x", env.base()),
        Some(&env.dev.mint()),
        &[("host", "gateway.example.test")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let echo = a.json();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echo["headers"]["host"][0], "gateway.example.test");
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_with_a_certificate_of_another_ca_is_502_with_a_problem_and_an_audit_record()
{
    let trusted = Ca::new();
    let other = Ca::new();
    let up = tls_upstream(&other.server_for_localhost(), None, &[b"http/1.1"]).await;
    let url = up.url();
    let env = gateway("tls-bad-ca", |dir| {
        let ca_file = write(dir, "ca.pem", &trusted.pem);
        route("/api", &url, &format!("[route.tls]\nca = \"{ca_file}\""))
    })
    .await;
    let c = client();
    let a = get(
        &c,
        &format!("{}/api/x", env.base()),
        Some(&env.dev.mint()),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(a.json()["code"], "upstream.unavailable");
    assert_eq!(up.hits.load(Ordering::SeqCst), 0);
    let records = audit_records(&env.gw, &env.dir).await;
    let record = records
        .iter()
        .find(|r| r["http"]["response"]["status_code"] == 502)
        .unwrap_or_else(|| panic!("no 502 record in {records:#?}"));
    assert_eq!(record["url"]["path"], "/api/x");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mutual_tls_upstream_accepts_the_gateways_client_certificate_and_refuses_without_it() {
    let server_ca = Ca::new();
    let client_ca = Ca::new();
    let up = tls_upstream(
        &server_ca.server_for_localhost(),
        Some(&client_ca),
        &[b"h2", b"http/1.1"],
    )
    .await;
    let gateway_cert = client_ca.leaf(
        vec![SanType::URI(
            "spiffe://example.test/ztgate".try_into().unwrap(),
        )],
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    let url = up.url();
    let env = gateway("tls-mtls", |dir| {
        let ca_file = write(dir, "ca.pem", &server_ca.pem);
        let cert = write(dir, "gw.crt", &gateway_cert.cert_pem);
        let key = write(dir, "gw.key", &gateway_cert.key_pem);
        route(
            "/api",
            &url,
            &format!(
                "[route.tls]\nca = \"{ca_file}\"\nclient_cert = \"{cert}\"\nclient_key = \"{key}\""
            ),
        ) + &route("/nocert", &url, &format!("[route.tls]\nca = \"{ca_file}\""))
    })
    .await;
    let c = client();
    let token = env.dev.mint();
    let a = get(&c, &format!("{}/api/x", env.base()), Some(&token), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["client_certificates"], 1);
    let refused = get(&c, &format!("{}/nocert/x", env.base()), Some(&token), &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert_eq!(up.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_name_override_verifies_the_certificate_for_that_name() {
    let ca = Ca::new();
    let server = ca.leaf(
        vec![SanType::DnsName("billing.internal".try_into().unwrap())],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let up = tls_upstream(&server, None, &[b"http/1.1"]).await;
    let url = up.url();
    let env = gateway("tls-sni", |dir| {
        let ca_file = write(dir, "ca.pem", &ca.pem);
        route(
            "/named",
            &url,
            &format!("[route.tls]\nca = \"{ca_file}\"\nserver_name = \"billing.internal\""),
        ) + &route("/by-ip", &url, &format!("[route.tls]\nca = \"{ca_file}\""))
    })
    .await;
    let c = client();
    let token = env.dev.mint();
    let a = get(&c, &format!("{}/named/x", env.base()), Some(&token), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // Without the override the certificate does not name 127.0.0.1: refused.
    let b = get(&c, &format!("{}/by-ip/x", env.base()), Some(&token), &[]).await;
    assert_eq!(b.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tls_settings_are_refused_at_start_naming_the_key() {
    let dev = DevIssuer::start().await.unwrap();
    let dir = temp_dir("tls-invalid");
    let start = |routes: String| {
        let text = base_config(&dev, &dir) + &routes;
        let path = dir.join("ztgate.toml");
        std::fs::write(&path, text).unwrap();
        async move {
            tokio::time::timeout(WAIT, ztgate::Gateway::start(&path))
                .await
                .unwrap()
                .unwrap_err()
                .to_string()
        }
    };
    let missing = dir.join("missing.pem").display().to_string();
    let e = start(route(
        "/api",
        "https://127.0.0.1:9",
        &format!("[route.tls]\nca = \"{missing}\""),
    ))
    .await;
    assert!(e.contains("route[0].tls.ca"), "{e}");
    assert!(e.contains("missing.pem"), "{e}");
    let not_pem = write(&dir, "not.pem", "hello");
    let e = start(route(
        "/api",
        "https://127.0.0.1:9",
        &format!("[route.tls]\nca = \"{not_pem}\""),
    ))
    .await;
    assert!(e.contains("route[0].tls.ca"), "{e}");
    assert!(e.contains("no certificate"), "{e}");
    let e = start(route(
        "/api",
        "http://127.0.0.1:9",
        &format!("[route.tls]\nca = \"{not_pem}\""),
    ))
    .await;
    assert!(
        e.contains("route[0].tls") && e.contains("not an https"),
        "{e}"
    );
    let e = start(route(
        "/api",
        "https://127.0.0.1:9",
        &format!("[route.tls]\nclient_cert = \"{not_pem}\""),
    ))
    .await;
    assert!(e.contains("client_key"), "{e}");
    let e = start(route(
        "/api",
        "https://127.0.0.1:9",
        "[route.tls]\nserver_name = \"not a name\"",
    ))
    .await;
    assert!(e.contains("route[0].tls.server_name"), "{e}");
    let e = start(route(
        "/api",
        "https://127.0.0.1:9",
        "[route.tls]\ninsecure_skip_verify = true",
    ))
    .await;
    assert!(e.contains("insecure_skip_verify"), "{e}");
}

/// Kills the child process when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn without_a_route_ca_the_system_roots_are_used_as_ssl_cert_file_names_them() {
    use std::io::{BufRead as _, BufReader};
    use std::process::{Command, Stdio};

    let ca = Ca::new();
    let up = tls_upstream(&ca.server_for_localhost(), None, &[b"http/1.1"]).await;
    let dev = DevIssuer::start().await.unwrap();
    let dir = temp_dir("tls-system-roots");
    let ca_file = write(&dir, "system-roots.pem", &ca.pem);
    let path = dir.join("ztgate.toml");
    std::fs::write(
        &path,
        base_config(&dev, &dir) + &route("/api", &up.url(), ""),
    )
    .unwrap();
    // The binary, so that the environment variable is the child's alone.
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_ztgate"))
            .arg("--config")
            .arg(&path)
            .env("SSL_CERT_FILE", &ca_file)
            .env_remove("SSL_CERT_DIR")
            .env("RUST_LOG", "ztgate=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let stderr = child.0.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(WAIT)
            .expect("ztgate did not report its address");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let c = client();
    let a = get(&c, &format!("http://{addr}/api/x"), Some(&dev.mint()), &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["path"], "/api/x");
    drop(child);
}

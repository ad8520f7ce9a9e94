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
use rcgen::{ExtendedKeyUsagePurpose, SanType};
use serde_json::json;
use tokio::net::TcpListener;
use zerotrust_testkit::DevIssuer;

/// A TLS upstream on 127.0.0.1: answers JSON with the HTTP version, path, query, headers and
/// the client certificate's URI SAN count (0 without one).
struct TlsUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
}

impl TlsUpstream {
    /// How many requests reached this upstream.
    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Origin for TlsUpstream {
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

/// A `[route.tls]` table trusting `ca` (written to `dir/ca.pem`).
fn tls_trusting(dir: &Path, ca: &Ca) -> String {
    let ca_file = write_file(dir, "ca.pem", &ca.pem);
    format!("[route.tls]\nca = \"{ca_file}\"")
}

/// A gateway routing `/api` to a TLS upstream that offers `alpn` with a certificate for 127.0.0.1
/// signed by `server_ca`; the route trusts `route_ca`.
async fn api_to_tls_upstream(
    tag: &str,
    server_ca: &Ca,
    route_ca: &Ca,
    alpn: &[&[u8]],
) -> Env<TlsUpstream> {
    let up = tls_upstream(&server_ca.server_for_localhost(), None, alpn).await;
    env_for(tag, up, |dir| {
        route("/api", "{upstream}", &tls_trusting(dir, route_ca))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_signed_by_the_route_ca_gets_the_request_over_http2_with_its_origin_as_audience()
 {
    let ca = Ca::new();
    let env = api_to_tls_upstream("tls-ok", &ca, &ca, &[b"h2", b"http/1.1"]).await;
    let c = client();
    let a = env.get_with_token(&c, "/api/reports?x=1", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let echo = a.json();
    // The upstream offered h2 and the gateway took it.
    assert_eq!(echo["version"], "HTTP/2.0");
    assert_eq!(echo["path"], "/api/reports");
    assert_eq!(echo["query"], "x=1");
    assert_eq!(echo["client_certificates"], 0);
    let claims = env.echoed_claims(&c, &echo).await;
    let url = env.up.url();
    assert_eq!(claims["aud"], url);
    assert!(url.starts_with("https://127.0.0.1:"));
    assert_eq!(claims["sub"], "alice");
    // A second request reuses the pooled connection and still succeeds.
    let again = env.get_with_token(&c, "/api/again", &[]).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(env.up.hits(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_speaking_only_http1_is_reached_over_http1() {
    let ca = Ca::new();
    let env = api_to_tls_upstream("tls-h1", &ca, &ca, &[b"http/1.1"]).await;
    let c = client();
    let a = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["version"], "HTTP/1.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn preserve_host_routes_offer_only_http1_so_the_clients_host_is_kept() {
    let ca = Ca::new();
    let up = tls_upstream(&ca.server_for_localhost(), None, &[b"h2", b"http/1.1"]).await;
    let env = env_for("tls-host", up, |dir| {
        let tls = tls_trusting(dir, &ca);
        // `preserve_host` is a route key: it goes before the policy table.
        format!(
            "[[route]]\nprefix = \"/api\"\nupstream = \"{{upstream}}\"\npreserve_host = true\n{tls}\n[route.policy]\nscopes = [\"reports:read\"]\n"
        )
    })
    .await;
    let c = client();
    let a = env
        .get_with_token(&c, "/api/x", &[("host", "gateway.example.test")])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let echo = a.json();
    assert_eq!(echo["version"], "HTTP/1.1");
    assert_eq!(echoed_header(&echo, "host"), Some("gateway.example.test"));
}

#[tokio::test(flavor = "multi_thread")]
async fn https_upstream_with_a_certificate_of_another_ca_is_502_with_a_problem_and_an_audit_record()
{
    let trusted = Ca::new();
    let other = Ca::new();
    let env = api_to_tls_upstream("tls-bad-ca", &other, &trusted, &[b"http/1.1"]).await;
    let c = client();
    let a = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(a.status, StatusCode::BAD_GATEWAY);
    assert_eq!(a.headers["content-type"], "application/problem+json");
    assert_eq!(a.json()["code"], "upstream.unavailable");
    assert_eq!(env.up.hits(), 0);
    let record = env
        .audit_record(|r| r["http"]["response"]["status_code"] == 502)
        .await;
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
    let gateway_cert = client_ca.client_for_uri("spiffe://example.test/ztgate");
    let env = env_for("tls-mtls", up, |dir| {
        let tls = tls_trusting(dir, &server_ca);
        let cert = write_file(dir, "gw.crt", &gateway_cert.cert_pem);
        let key = write_file(dir, "gw.key", &gateway_cert.key_pem);
        route(
            "/api",
            "{upstream}",
            &format!("{tls}\nclient_cert = \"{cert}\"\nclient_key = \"{key}\""),
        ) + &route("/nocert", "{upstream}", &tls)
    })
    .await;
    let c = client();
    let a = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["client_certificates"], 1);
    let refused = env.get_with_token(&c, "/nocert/x", &[]).await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert_eq!(env.up.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn server_name_override_verifies_the_certificate_for_that_name() {
    let ca = Ca::new();
    let server = ca.leaf(
        vec![SanType::DnsName("billing.internal".try_into().unwrap())],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let up = tls_upstream(&server, None, &[b"http/1.1"]).await;
    let env = env_for("tls-sni", up, |dir| {
        let tls = tls_trusting(dir, &ca);
        route(
            "/named",
            "{upstream}",
            &format!("{tls}\nserver_name = \"billing.internal\""),
        ) + &route("/by-ip", "{upstream}", &tls)
    })
    .await;
    let c = client();
    let a = env.get_with_token(&c, "/named/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    // Without the override the certificate does not name 127.0.0.1: refused.
    let b = env.get_with_token(&c, "/by-ip/x", &[]).await;
    assert_eq!(b.status, StatusCode::BAD_GATEWAY);
}

/// An `https://` upstream nobody is asked to reach: the gateway refuses to start first.
const NOWHERE: &str = "https://127.0.0.1:9";

/// The refusal to start with one route to `upstream` whose TLS settings are `tls`.
async fn tls_refusal(upstream: &str, tls: &str) -> String {
    start_refusal("tls-invalid", |_| route("/api", upstream, tls)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_tls_settings_are_refused_at_start_naming_the_key() {
    let files = temp_dir("tls-invalid-files");
    let missing = files.join("missing.pem").display().to_string();
    let e = tls_refusal(NOWHERE, &format!("[route.tls]\nca = \"{missing}\"")).await;
    assert!(e.contains("route[0].tls.ca"), "{e}");
    assert!(e.contains("missing.pem"), "{e}");
    let not_pem = write_file(&files, "not.pem", "hello");
    let e = tls_refusal(NOWHERE, &format!("[route.tls]\nca = \"{not_pem}\"")).await;
    assert!(e.contains("route[0].tls.ca"), "{e}");
    assert!(e.contains("no certificate"), "{e}");
    let e = tls_refusal(
        "http://127.0.0.1:9",
        &format!("[route.tls]\nca = \"{not_pem}\""),
    )
    .await;
    assert!(
        e.contains("route[0].tls") && e.contains("not an https"),
        "{e}"
    );
    let e = tls_refusal(
        NOWHERE,
        &format!("[route.tls]\nclient_cert = \"{not_pem}\""),
    )
    .await;
    assert!(e.contains("client_key"), "{e}");
    let e = tls_refusal(NOWHERE, "[route.tls]\nserver_name = \"not a name\"").await;
    assert!(e.contains("route[0].tls.server_name"), "{e}");
    let e = tls_refusal(NOWHERE, "[route.tls]\ninsecure_skip_verify = true").await;
    assert!(e.contains("insecure_skip_verify"), "{e}");
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn without_a_route_ca_the_system_roots_are_used_as_ssl_cert_file_names_them() {
    let ca = Ca::new();
    let up = tls_upstream(&ca.server_for_localhost(), None, &[b"http/1.1"]).await;
    let dev = DevIssuer::start().await.unwrap();
    let dir = temp_dir("tls-system-roots");
    let ca_file = write_file(&dir, "system-roots.pem", &ca.pem);
    let path = write_config(
        &dir,
        &(base_config(&dev, &dir) + &route("/api", &up.url(), "")),
    );
    // The binary, so that the environment variable is the child's alone.
    let ztgate = spawn_ztgate(&path, |command| {
        command
            .env("SSL_CERT_FILE", &ca_file)
            .env_remove("SSL_CERT_DIR");
    });
    let c = client();
    let a = get(
        &c,
        &format!("http://{}/api/x", ztgate.addr),
        Some(&dev.mint()),
        &[],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.json()["path"], "/api/x");
    drop(ztgate);
}

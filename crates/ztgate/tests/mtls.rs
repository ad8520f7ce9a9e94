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
use std::sync::Arc;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::net::TcpStream;

const BILLING: &str = "spiffe://example.test/workload/billing";
const FRONTEND: &str = "spiffe://example.test/workload/frontend";

/// GET `path` over TLS, with an optional client certificate; `Err` when the handshake or the
/// exchange fails.
async fn fetch(
    ca: &Ca,
    addr: SocketAddr,
    client: Option<&Leaf>,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, Value), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(leaf) => builder
            .with_client_auth_cert(leaf.chain.clone(), leaf.key.clone_key())
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

#[tokio::test(flavor = "multi_thread")]
async fn mutual_tls_client_certificate_is_the_workload_identity_checked_and_forwarded() {
    let ca = Ca::new();
    let dev = zerotrust_testkit::DevIssuer::start().await.unwrap();
    let up = upstream("a").await;
    let dir = temp_dir("mtls");
    let server = ca.server_for_localhost();
    let listener_tls = format!(
        "[listener.tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"",
        write_file(&dir, "server.crt", &server.cert_pem),
        write_file(&dir, "server.key", &server.key_pem),
        write_file(&dir, "ca.pem", &ca.pem),
    );
    let routes = format!(
        r#"
[[route]]
prefix = "/svc"
upstream = "{up}"
[route.policy]
anonymous = true
workloads = ["{BILLING}"]
"#,
        up = up.url(),
    ) + &API_ROUTE.replace("{upstream}", &up.url());
    let text = config_head(&dev, &dir, &listener_tls) + &routes;
    let gw = start_gateway(&write_config(&dir, &text)).await;
    let addr = gw.local_addrs()[0];
    let billing = ca.client_for_uri(BILLING);
    let frontend = ca.client_for_uri(FRONTEND);

    // The billing workload, no token: admitted by its certificate; the upstream learns who.
    let (status, echo) = fetch(&ca, addr, Some(&billing), "/svc/charge", None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{echo}");
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(echoed_assertion(&echo))
        .unwrap()
        .claims;
    assert_eq!(claims["zt"]["workload"]["uri"], BILLING);
    assert_eq!(echo["headers"]["x-forwarded-proto"][0], "https");

    // Another workload of the same CA: 403.
    let (status, _) = fetch(&ca, addr, Some(&frontend), "/svc/charge", None)
        .await
        .unwrap();
    assert_eq!(status, 403);

    // A user route over the same mTLS listener still needs the token.
    let (status, _) = fetch(&ca, addr, Some(&frontend), "/api/x", None)
        .await
        .unwrap();
    assert_eq!(status, 401);
    let token = dev.mint();
    let (status, echo) = fetch(&ca, addr, Some(&frontend), "/api/x", Some(&token))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let claims = jsonwebtoken::dangerous::insecure_decode::<Value>(echoed_assertion(&echo))
        .unwrap()
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["zt"]["workload"]["uri"], FRONTEND);

    // No client certificate: the handshake (or the first exchange) fails, nothing reaches upstream.
    let before = up.hits();
    assert!(
        fetch(&ca, addr, None, "/api/x", Some(&token))
            .await
            .is_err()
    );
    assert_eq!(up.hits(), before);
    gw.shutdown().await.unwrap();
}

//! The pooled upstream clients: one for every `http://` route, one per distinct TLS setting of
//! the `https://` routes.
//!
//! - TLS is rustls with the aws-lc-rs provider (no OpenSSL). The upstream's certificate is always
//!   verified: against the route's `tls.ca` when set, else against the system's root
//!   certificates (rustls-native-certs, which honours `SSL_CERT_FILE` / `SSL_CERT_DIR`).
//! - ALPN offers `h2` and `http/1.1`; the upstream picks. Routes with `preserve_host` offer
//!   `http/1.1` only: HTTP/2 carries the authority in `:authority`, which names the upstream the
//!   connection is to, and a different `Host` beside it is a malformed request.
//! - Clients are keyed by what configures them, including the bytes of the PEM files: a reload
//!   keeps a route's client (and its pooled connections) when nothing changed, and picks up
//!   rotated certificate files when they did.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::config::{ConfigError, UpstreamConfig, UpstreamTlsConfig};

/// A pooled client; plain HTTP or TLS, depending on how it was built.
pub(crate) type HttpClient = Client<HttpsConnector<HttpConnector>, Body>;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn http_connector(cfg: &UpstreamConfig, plain: bool) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_millis(cfg.connect_timeout_ms)));
    connector.set_nodelay(true);
    // The plain client refuses anything but http://; the TLS ones hand https:// to rustls.
    connector.enforce_http(plain);
    connector
}

fn pooled(cfg: &UpstreamConfig, connector: HttpsConnector<HttpConnector>) -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(cfg.pool_idle_timeout_seconds))
        .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
        .build(connector)
}

/// The client of every `http://` route. Its connector never speaks TLS: an `https://` URL is
/// refused by the plain TCP connector underneath.
pub(crate) fn plain(cfg: &UpstreamConfig) -> Result<HttpClient, rustls::Error> {
    // Never used for a handshake (see above); it only fills the connector's slot.
    let unused = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let connector = HttpsConnector::from((http_connector(cfg, true), unused));
    Ok(pooled(cfg, connector))
}

/// What one TLS client is built from: the route's settings, the bytes of the files they name,
/// and whether HTTP/2 is offered.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TlsKey {
    config: UpstreamTlsConfig,
    ca: Option<Vec<u8>>,
    client_cert: Option<Vec<u8>>,
    client_key: Option<Vec<u8>>,
    h2: bool,
}

impl TlsKey {
    /// Reads the files of route `index`'s `[route.tls]` (all defaults when absent).
    pub(crate) fn read(
        config: Option<&UpstreamTlsConfig>,
        h2: bool,
        file: &Path,
        index: usize,
    ) -> Result<Self, ConfigError> {
        let config = config.cloned().unwrap_or_default();
        let read = |name: &str, path: &Option<PathBuf>| -> Result<Option<Vec<u8>>, ConfigError> {
            path.as_ref()
                .map(|p| {
                    std::fs::read(p).map_err(|e| {
                        ConfigError::new(
                            file,
                            format!("route[{index}].tls.{name}"),
                            format!("{}: {e}", p.display()),
                        )
                    })
                })
                .transpose()
        };
        Ok(Self {
            ca: read("ca", &config.ca)?,
            client_cert: read("client_cert", &config.client_cert)?,
            client_key: read("client_key", &config.client_key)?,
            config,
            h2,
        })
    }

    /// Builds the client, with the timeouts and pool settings of `[upstream]`.
    pub(crate) fn build(
        &self,
        upstream: &UpstreamConfig,
        file: &Path,
        index: usize,
    ) -> Result<HttpClient, ConfigError> {
        let key = |k: &str| {
            if k.is_empty() {
                format!("route[{index}].tls")
            } else {
                format!("route[{index}].tls.{k}")
            }
        };
        let path_of = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        let err = |k: &str, m: String| ConfigError::new(file, key(k), m);

        let mut roots = rustls::RootCertStore::empty();
        match &self.ca {
            Some(pem) => {
                let shown = path_of(&self.config.ca);
                for cert in CertificateDer::pem_slice_iter(pem) {
                    let cert = cert.map_err(|e| err("ca", format!("{shown}: {e}")))?;
                    roots
                        .add(cert)
                        .map_err(|e| err("ca", format!("{shown}: {e}")))?;
                }
                if roots.is_empty() {
                    return Err(err("ca", format!("{shown}: no certificate")));
                }
            }
            None => {
                let native = rustls_native_certs::load_native_certs();
                let (_, unusable) = roots.add_parsable_certificates(native.certs);
                if roots.is_empty() {
                    let why = native
                        .errors
                        .first()
                        .map_or_else(|| "none found".to_owned(), ToString::to_string);
                    return Err(ConfigError::new(
                        file,
                        format!("route[{index}].upstream"),
                        format!(
                            "no system root certificates could be loaded ({why}); set route[{index}].tls.ca"
                        ),
                    ));
                }
                if unusable > 0 {
                    tracing::debug!(target: "ztgate", unusable, "system root certificates skipped");
                }
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| err("", e.to_string()))?
            .with_root_certificates(roots);
        let tls = match (&self.client_cert, &self.client_key) {
            (Some(cert), Some(key_pem)) => {
                let shown = path_of(&self.config.client_cert);
                let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<_, _>>()
                    .map_err(|e| err("client_cert", format!("{shown}: {e}")))?;
                if chain.is_empty() {
                    return Err(err("client_cert", format!("{shown}: no certificate")));
                }
                let private = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
                    err(
                        "client_key",
                        format!("{}: {e}", path_of(&self.config.client_key)),
                    )
                })?;
                builder
                    .with_client_auth_cert(chain, private)
                    .map_err(|e| err("client_key", e.to_string()))?
            }
            _ => builder.with_no_client_auth(),
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only();
        let builder = match &self.config.server_name {
            Some(name) => {
                let name = ServerName::try_from(name.clone())
                    .map_err(|e| err("server_name", format!("{name:?}: {e}")))?;
                builder.with_server_name_resolver(FixedServerNameResolver::new(name))
            }
            None => builder,
        };
        let http = http_connector(upstream, false);
        let connector = if self.h2 {
            builder.enable_http1().enable_http2().wrap_connector(http)
        } else {
            builder.enable_http1().wrap_connector(http)
        };
        Ok(pooled(upstream, connector))
    }
}

//! The client certificate of a mutual-TLS connection, as the TLS acceptor hands it to the layers.

use std::fmt;
use std::sync::Arc;

/// The leaf certificate the client presented on a mutual-TLS connection.
///
/// The TLS acceptor verifies the chain (for example rustls' `WebPkiClientVerifier` against the
/// organisation's client CA), builds this once per connection with
/// [`from_der`](PeerCertificate::from_der), and inserts it into the extensions of every request of
/// that connection. Layers only read it: the device layer takes the SHA-256 fingerprint or a URI
/// SAN as the device id, the step-up layer a SPIFFE-style URI SAN as the workload identity.
///
/// A `PeerCertificate` is never built from a request header: a certificate is believed only
/// because the TLS handshake proved the client holds its key.
///
/// Cloning is cheap (shared behind an `Arc`).
#[derive(Clone)]
pub struct PeerCertificate {
    inner: Arc<Inner>,
}

struct Inner {
    der: Box<[u8]>,
    sha256: [u8; 32],
    sha256_hex: Box<str>,
    uri_sans: Vec<Box<str>>,
    dns_sans: Vec<Box<str>>,
    subject_common_name: Option<Box<str>>,
    not_after: i64,
}

/// A certificate that cannot be parsed as X.509.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client certificate cannot be parsed: {0}")]
pub struct CertificateError(String);

impl PeerCertificate {
    /// Parses a DER-encoded X.509 certificate (already verified by the TLS handshake).
    ///
    /// Fails on anything that is not exactly one well-formed certificate, or whose subject
    /// alternative names cannot be read.
    pub fn from_der(der: &[u8]) -> Result<Self, CertificateError> {
        use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

        let (rest, cert) =
            X509Certificate::from_der(der).map_err(|e| CertificateError(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertificateError(
                "trailing bytes after the certificate".into(),
            ));
        }
        let mut uri_sans = Vec::new();
        let mut dns_sans = Vec::new();
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CertificateError(e.to_string()))?;
        if let Some(san) = san {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(uri) => uri_sans.push(Box::from(*uri)),
                    GeneralName::DNSName(dns) => dns_sans.push(Box::from(*dns)),
                    _ => {}
                }
            }
        }
        let subject_common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(Box::from);
        let not_after = cert.validity().not_after.timestamp();

        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest.as_ref());
        let sha256_hex = sha256
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .into_boxed_str();

        Ok(Self {
            inner: Arc::new(Inner {
                der: der.into(),
                sha256,
                sha256_hex,
                uri_sans,
                dns_sans,
                subject_common_name,
                not_after,
            }),
        })
    }

    /// The certificate as DER.
    pub fn der(&self) -> &[u8] {
        &self.inner.der
    }

    /// The SHA-256 digest of the DER encoding.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.inner.sha256
    }

    /// The SHA-256 digest as 64 lower-case hex digits, the usual certificate fingerprint form.
    pub fn sha256_hex(&self) -> &str {
        &self.inner.sha256_hex
    }

    /// The URI subject alternative names (such as `spiffe://example.org/ns/prod/sa/frontend`).
    pub fn uri_sans(&self) -> impl Iterator<Item = &str> {
        self.inner.uri_sans.iter().map(|s| &**s)
    }

    /// The DNS subject alternative names.
    pub fn dns_sans(&self) -> impl Iterator<Item = &str> {
        self.inner.dns_sans.iter().map(|s| &**s)
    }

    /// The first common name of the subject, if any.
    pub fn subject_common_name(&self) -> Option<&str> {
        self.inner.subject_common_name.as_deref()
    }

    /// The end of the validity period, in seconds since the Unix epoch.
    pub fn not_after(&self) -> i64 {
        self.inner.not_after
    }
}

impl fmt::Debug for PeerCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerCertificate")
            .field("sha256", &self.inner.sha256_hex)
            .field("uri_sans", &self.inner.uri_sans)
            .field("subject_common_name", &self.inner.subject_common_name)
            .finish()
    }
}

impl PartialEq for PeerCertificate {
    fn eq(&self, other: &Self) -> bool {
        self.inner.der == other.inner.der
    }
}

impl Eq for PeerCertificate {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_certificate() {
        assert!(PeerCertificate::from_der(b"not a certificate").is_err());
        assert!(PeerCertificate::from_der(&[]).is_err());
    }
}

//! The identity the gateway vouches for, as the upstream receives it.
//!
//! Every forwarded request carries a short-lived ES256 JWT (header `typ` `ztgate-identity+jwt`)
//! in the assertion header: `iss` the gateway, `aud` the upstream's origin, `sub` the verified
//! subject, `method`, `path` and `query` (absent without one) the request as the upstream
//! receives it, `exp` at most 60 s after `iat`, and under `zt` the decision, trust level, risk
//! and what the layers established. The upstream verifies it with the keys the gateway
//! publishes at [`JWKS_PATH`].
//!
//! Signing (ES256) dominates the gateway's own cost per request. `identity.reuse_seconds`
//! (opt-in, default 0) reuses a signed assertion for requests whose claims are identical apart
//! from `iat`, `nbf`, `exp` and `jti`, from a cache bounded to [`REUSE_CACHE_ENTRIES`]; a reused
//! assertion always has at least `ttl_seconds - reuse_seconds` seconds of validity left.
//!
//! # Warning
//!
//! With reuse on, identical requests within the window carry the same assertion, `jti`
//! included: an upstream that rejects a repeated `jti` as a replay will reject them, and the
//! `jti` no longer identifies one request.
//!
//! Identity headers arriving from clients are removed before forwarding, always: the assertion
//! header, and every header starting with `x-zt-`.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use zerotrust_core::{PeerCertificate, ZeroTrust};

/// Where the gateway publishes the public keys of its assertions.
pub const JWKS_PATH: &str = "/.well-known/ztgate/jwks.json";

/// The `typ` header of an assertion.
pub const ASSERTION_TYP: &str = "ztgate-identity+jwt";

/// The prefix of the plain identity headers; every client header with it is removed.
pub const PLAIN_PREFIX: &str = "x-zt-";

/// The most assertions kept for reuse (`identity.reuse_seconds`); the least recently used go
/// first.
pub const REUSE_CACHE_ENTRIES: u64 = 10_000;

/// A signing key that cannot be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The file cannot be read or is not PEM PKCS#8.
    #[error("{0}")]
    File(String),
    /// Not a P-256 key, or the system could not generate one.
    #[error("not a usable P-256 key")]
    Key,
}

/// Signs assertions; holds the key and the JWK Set built from it once.
pub struct Signer {
    key: EncodingKey,
    kid: String,
    jwks: bytes::Bytes,
    issuer: String,
    ttl: u64,
    header: HeaderName,
    plain: bool,
    rng: SystemRandom,
    reuse: Option<Reuse>,
}

/// Signed assertions kept for reuse, keyed by their claims without `iat`, `nbf`, `exp`, `jti`.
struct Reuse {
    window: Duration,
    cache: moka::sync::Cache<String, Signed>,
}

/// A signed assertion and its `iat`.
#[derive(Clone)]
struct Signed {
    value: HeaderValue,
    iat: u64,
}

fn now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("kid", &self.kid)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

/// Loads a PEM PKCS#8 key, or generates one.
pub(crate) fn signing_key(path: Option<&Path>) -> Result<Vec<u8>, KeyError> {
    match path {
        Some(path) => {
            use rustls::pki_types::PrivatePkcs8KeyDer;
            use rustls::pki_types::pem::PemObject as _;
            let der = PrivatePkcs8KeyDer::from_pem_file(path)
                .map_err(|e| KeyError::File(format!("{}: {e}", path.display())))?;
            Ok(der.secret_pkcs8_der().to_vec())
        }
        None => {
            let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                .map_err(|_| KeyError::Key)?;
            Ok(pair
                .to_pkcs8v1()
                .map_err(|_| KeyError::Key)?
                .as_ref()
                .to_vec())
        }
    }
}

impl Signer {
    /// A signer with the PKCS#8 P-256 key `pkcs8`.
    pub(crate) fn new(
        pkcs8: &[u8],
        issuer: String,
        ttl: u64,
        header: HeaderName,
        plain: bool,
        reuse_seconds: u64,
    ) -> Result<Self, KeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8)
            .map_err(|_| KeyError::Key)?;
        let point = pair.public_key().as_ref();
        // An uncompressed P-256 point: 0x04, x (32 bytes), y (32 bytes).
        let (x, y) = match (point.first(), point.get(1..33), point.get(33..65)) {
            (Some(4), Some(x), Some(y)) if point.len() == 65 => {
                (URL_SAFE_NO_PAD.encode(x), URL_SAFE_NO_PAD.encode(y))
            }
            _ => return Err(KeyError::Key),
        };
        // RFC 7638 thumbprint: the required members in lexicographic order, no spaces.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()));
        let jwks = json!({ "keys": [{
            "kty": "EC", "crv": "P-256", "x": x, "y": y,
            "kid": kid, "use": "sig", "alg": "ES256",
        }]});
        let ttl = ttl.clamp(1, 60);
        // Never as long as the lifetime: a reused assertion keeps `ttl - reuse` seconds.
        let reuse_seconds = reuse_seconds.min(ttl - 1);
        let reuse = (reuse_seconds > 0).then(|| Reuse {
            window: Duration::from_secs(reuse_seconds),
            cache: moka::sync::Cache::builder()
                .max_capacity(REUSE_CACHE_ENTRIES)
                .time_to_live(Duration::from_secs(reuse_seconds))
                .build(),
        });
        Ok(Self {
            key: EncodingKey::from_ec_der(pkcs8),
            kid,
            jwks: bytes::Bytes::from(jwks.to_string()),
            issuer,
            ttl,
            header,
            plain,
            rng: SystemRandom::new(),
            reuse,
        })
    }

    /// The JWK Set, serialized.
    pub fn jwks(&self) -> bytes::Bytes {
        self.jwks.clone()
    }

    /// The key id of the signing key.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The assertion header's name.
    pub fn header_name(&self) -> &HeaderName {
        &self.header
    }

    /// Removes every identity header a client may have sent: the assertion header and all
    /// `x-zt-*` headers.
    pub(crate) fn strip_client_identity(&self, headers: &mut HeaderMap) {
        headers.remove(&self.header);
        let spoofed: Vec<HeaderName> = headers
            .keys()
            .filter(|name| name.as_str().starts_with(PLAIN_PREFIX))
            .cloned()
            .collect();
        for name in spoofed {
            headers.remove(name);
        }
    }

    /// Adds the signed assertion (and, when configured, the plain headers) for a request to
    /// `audience` with `method`, `path` and `query` as the upstream receives them.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn attach(
        &self,
        headers: &mut HeaderMap,
        zt: Option<&ZeroTrust>,
        certificate: Option<&PeerCertificate>,
        audience: &str,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Result<(), jsonwebtoken::errors::Error> {
        let claims = self.claims(zt, certificate, audience, method, path, query);
        let value = match &self.reuse {
            None => self.sign(claims, now())?.value,
            Some(reuse) => {
                // The claims without the time and identifier members, serialized (keys in the
                // fixed order `claims` inserts them): equal keys mean equal assertions but for
                // those members.
                let key = claims.to_string();
                let now = now();
                let fresh = |s: &Signed| {
                    // Validity left = iat + ttl - now >= ttl - window  <=>  now - iat <= window.
                    now <= Duration::from_secs(s.iat) + reuse.window
                };
                match reuse.cache.get(&key).filter(fresh) {
                    Some(signed) => signed.value,
                    None => {
                        let signed = self.sign(claims, now)?;
                        reuse.cache.insert(key, signed.clone());
                        signed.value
                    }
                }
            }
        };
        headers.insert(self.header.clone(), value);
        if self.plain
            && let Some(zt) = zt
        {
            let mut put = |name: &'static str, value: &str| {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(HeaderName::from_static(name), v);
                }
            };
            if let Some(subject) = zt.subject() {
                put("x-zt-subject", subject);
            }
            put("x-zt-trust-level", zt.trust_level().as_str());
            put("x-zt-risk", &format!("{:.3}", zt.risk_score()));
            if let Some(d) = zt.decision() {
                put("x-zt-decision", d.outcome.as_str());
            }
        }
        Ok(())
    }

    /// Adds `iat`, `nbf`, `exp` and `jti` to `claims` and signs them.
    fn sign(
        &self,
        mut claims: Value,
        now: Duration,
    ) -> Result<Signed, jsonwebtoken::errors::Error> {
        let iat = now.as_secs();
        let mut jti = [0u8; 16];
        // The system RNG does not fail in practice; a zero jti is still a valid, if less useful,
        // identifier, and the assertion stays bound to method, path and a 60-second window.
        let _ = self.rng.fill(&mut jti);
        if let Some(obj) = claims.as_object_mut() {
            obj.insert("iat".into(), iat.into());
            obj.insert("nbf".into(), iat.into());
            obj.insert("exp".into(), (iat + self.ttl).into());
            obj.insert("jti".into(), URL_SAFE_NO_PAD.encode(jti).into());
        }
        let mut header = Header::new(Algorithm::ES256);
        header.typ = Some(ASSERTION_TYP.into());
        header.kid = Some(self.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &self.key)?;
        // A JWT is base64url and dots: always a valid header value.
        let value = HeaderValue::from_str(&token)
            .map_err(|_| jsonwebtoken::errors::ErrorKind::InvalidToken)?;
        Ok(Signed { value, iat })
    }

    /// The claims but `iat`, `nbf`, `exp` and `jti`.
    fn claims(
        &self,
        zt: Option<&ZeroTrust>,
        certificate: Option<&PeerCertificate>,
        audience: &str,
        method: &Method,
        path: &str,
        query: Option<&str>,
    ) -> Value {
        let mut claims = json!({
            "iss": self.issuer,
            "aud": audience,
            "method": method.as_str(),
            "path": path,
        });
        if let (Some(query), Some(obj)) = (query, claims.as_object_mut()) {
            obj.insert("query".into(), query.into());
        }
        let mut zt_claims = serde_json::Map::new();
        if let Some(zt) = zt {
            if let Some(identity) = zt.identity() {
                if let Some(obj) = claims.as_object_mut() {
                    obj.insert("sub".into(), identity.subject().into());
                }
                zt_claims.insert("idp".into(), identity.issuer().into());
                if let Some(acr) = identity.acr() {
                    zt_claims.insert("acr".into(), acr.into());
                }
                if !identity.amr().is_empty() {
                    zt_claims.insert("amr".into(), identity.amr().into());
                }
                if !identity.scopes().is_empty() {
                    zt_claims.insert("scope".into(), identity.scopes().join(" ").into());
                }
                if !identity.roles().is_empty() {
                    zt_claims.insert("roles".into(), identity.roles().into());
                }
                if let Some(client) = identity.client_id() {
                    zt_claims.insert("client_id".into(), client.into());
                }
            }
            if let Some(d) = zt.decision() {
                zt_claims.insert("decision".into(), d.outcome.as_str().into());
                zt_claims.insert("reason".into(), d.reason.code().into());
                zt_claims.insert("enforced".into(), d.enforced.into());
            }
            zt_claims.insert("trust_level".into(), zt.trust_level().as_str().into());
            zt_claims.insert("risk".into(), zt.risk_score().into());
            if let Some(device) = zt.device() {
                zt_claims.insert("device".into(), device.device_id.as_ref().into());
            }
            if let Some(ip) = zt.client_ip() {
                zt_claims.insert("client_ip".into(), ip.addr().to_string().into());
            }
            if let Some(route) = zt.route() {
                zt_claims.insert("route".into(), route.into());
            }
        }
        if let Some(cert) = certificate {
            let mut w = serde_json::Map::new();
            if let Some(uri) = cert.uri_sans().next() {
                w.insert("uri".into(), uri.into());
            }
            w.insert("sha256".into(), cert.sha256_hex().into());
            zt_claims.insert("workload".into(), Value::Object(w));
        }
        if let Some(obj) = claims.as_object_mut() {
            obj.insert("zt".into(), Value::Object(zt_claims));
        }
        claims
    }
}

//! Signed device-posture assertions: compact JWS issued by the organisation's device-management
//! service, verified with its keys.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use moka::sync::Cache;
use serde::Deserialize;
use zerotrust_core::Posture;
use zerotrust_jwt::{CompactJws, KeyLookup, KeySet};

/// The `typ` header value a posture assertion carries by default (RFC 8725 §3.11 explicit
/// typing, so no other JWT of the same signer can pass as one).
pub const DEFAULT_TYP: &str = "device-posture+jwt";

/// How posture assertions are recognised and verified.
///
/// An assertion is a compact JWS in the `X-Device-Posture` header, signed by one of `keys`,
/// with this payload:
///
/// ```json
/// {
///   "iss": "https://mdm.example.com", "aud": "https://api.example.com",
///   "iat": 1900000000, "exp": 1900003600,
///   "device_id": "d-42", "owner": "alice",
///   "posture": { "platform": "macos", "os_version": "14.4.1", "disk_encrypted": true,
///                "edr_running": true, "jailbroken": false }
/// }
/// ```
///
/// `iss`, `iat`, `exp` and `device_id` are required; `aud` is required when an audience is
/// configured; `owner` (the subject the device belongs to) and each posture fact are optional.
/// Defaults: header `typ` must be `device-posture+jwt`, an assertion is fresh for 1 hour after
/// `iat` (whatever its `exp`), 60 s of clock leeway, 8 KiB at most, and up to 10,000 verified
/// assertions are cached (checked for expiry again on every use).
///
/// ```
/// use std::time::Duration;
/// use zerotrust_device::PostureAssertions;
/// use zerotrust_jwt::KeySet;
///
/// let keys = KeySet::from_keys([]); // the MDM's keys, for example from its JWK Set
/// let assertions = PostureAssertions::new(keys, "https://mdm.example.com")
///     .audience("https://api.example.com")
///     .max_age(Duration::from_secs(900));
/// # let _ = assertions;
/// ```
#[derive(Debug, Clone)]
pub struct PostureAssertions {
    keys: Arc<KeySet>,
    issuer: String,
    audience: Option<String>,
    typ: Option<String>,
    max_age: u64,
    leeway: u64,
    header: HeaderName,
    max_len: usize,
    cache_capacity: u64,
}

impl PostureAssertions {
    /// Assertions from `issuer`, signed by one of `keys`.
    pub fn new(keys: KeySet, issuer: impl Into<String>) -> Self {
        Self {
            keys: Arc::new(keys),
            issuer: issuer.into(),
            audience: None,
            typ: Some(DEFAULT_TYP.to_owned()),
            max_age: 3600,
            leeway: 60,
            header: HeaderName::from_static("x-device-posture"),
            max_len: 8 * 1024,
            cache_capacity: 10_000,
        }
    }

    /// Requires `aud` to name this service.
    ///
    /// ```
    /// # let a = zerotrust_device::PostureAssertions::new(zerotrust_jwt::KeySet::from_keys([]), "https://mdm");
    /// let a = a.audience("https://api.example.com");
    /// # let _ = a;
    /// ```
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Requires this `typ` header value instead of `device-posture+jwt`.
    ///
    /// ```
    /// # let a = zerotrust_device::PostureAssertions::new(zerotrust_jwt::KeySet::from_keys([]), "https://mdm");
    /// let a = a.typ("vnd.example.posture+jwt");
    /// # let _ = a;
    /// ```
    pub fn typ(mut self, typ: impl Into<String>) -> Self {
        self.typ = Some(typ.into());
        self
    }

    /// Accepts assertions whatever their `typ` header.
    ///
    /// # Warning
    ///
    /// Without explicit typing, any other JWT the same keys sign (an ID token, if the device
    /// service is also an identity provider) with a `device_id` claim passes as an assertion.
    ///
    /// ```
    /// # let a = zerotrust_device::PostureAssertions::new(zerotrust_jwt::KeySet::from_keys([]), "https://mdm");
    /// let a = a.accept_any_typ();
    /// # let _ = a;
    /// ```
    pub fn accept_any_typ(mut self) -> Self {
        self.typ = None;
        self
    }

    /// How long after `iat` an assertion is fresh (default 1 hour).
    ///
    /// ```
    /// # let a = zerotrust_device::PostureAssertions::new(zerotrust_jwt::KeySet::from_keys([]), "https://mdm");
    /// let a = a.max_age(std::time::Duration::from_secs(300));
    /// # let _ = a;
    /// ```
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age.as_secs();
        self
    }

    /// Clock leeway for `exp`, `nbf` and `iat` (default 60 s).
    ///
    /// ```
    /// # let a = zerotrust_device::PostureAssertions::new(zerotrust_jwt::KeySet::from_keys([]), "https://mdm");
    /// let a = a.leeway(std::time::Duration::from_secs(10));
    /// # let _ = a;
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.as_secs();
        self
    }

    /// Reads assertions from another header.
    ///
    /// ```
    /// # let a = zerotrust_device::PostureAssertions::new(zerotrust_jwt::KeySet::from_keys([]), "https://mdm");
    /// let a = a.header(http::HeaderName::from_static("x-mdm-assertion"));
    /// # let _ = a;
    /// ```
    pub fn header(mut self, header: HeaderName) -> Self {
        self.header = header;
        self
    }

    /// How many verified assertions to keep (default 10,000; 0 turns the cache off).
    ///
    /// ```
    /// # let a = zerotrust_device::PostureAssertions::new(zerotrust_jwt::KeySet::from_keys([]), "https://mdm");
    /// let a = a.cache_verified(0);
    /// # let _ = a;
    /// ```
    pub fn cache_verified(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    pub(crate) fn into_verifier(self) -> AssertionVerifier {
        let cache = (self.cache_capacity > 0).then(|| {
            Cache::builder()
                .max_capacity(self.cache_capacity)
                .time_to_live(Duration::from_secs(
                    self.max_age.saturating_add(self.leeway),
                ))
                .build()
        });
        AssertionVerifier {
            config: self,
            cache,
        }
    }
}

/// What a verified assertion says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedAssertion {
    pub(crate) device_id: String,
    pub(crate) owner: Option<String>,
    pub(crate) posture: Posture,
    pub(crate) issued_at: i64,
    pub(crate) expires_at: i64,
}

/// Why an assertion was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AssertionError {
    /// Too long, malformed, wrong type, unknown key, bad signature, wrong issuer or audience,
    /// missing claims, not yet valid.
    Invalid,
    /// Past `exp`, or older than the freshness limit.
    Expired,
}

#[derive(Deserialize)]
struct Claims {
    iss: String,
    #[serde(default)]
    aud: Option<Audience>,
    iat: i64,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    device_id: String,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    posture: PostureClaims,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct PostureClaims {
    platform: Option<String>,
    os_version: Option<String>,
    disk_encrypted: Option<bool>,
    edr_running: Option<bool>,
    jailbroken: Option<bool>,
}

/// Verifies assertions, remembering the ones it verified.
#[derive(Debug)]
pub(crate) struct AssertionVerifier {
    config: PostureAssertions,
    cache: Option<Cache<Box<str>, Arc<VerifiedAssertion>>>,
}

impl AssertionVerifier {
    pub(crate) fn header_name(&self) -> &HeaderName {
        &self.config.header
    }

    /// Verifies `token` at `now` (seconds since the epoch).
    pub(crate) fn verify(
        &self,
        token: &str,
        now: i64,
    ) -> Result<Arc<VerifiedAssertion>, AssertionError> {
        if token.len() > self.config.max_len {
            return Err(AssertionError::Invalid);
        }
        if let Some(hit) = self.cache.as_ref().and_then(|c| c.get(token)) {
            self.check_time(&hit, now)?;
            return Ok(hit);
        }
        let verified = Arc::new(self.verify_uncached(token, now)?);
        if let Some(cache) = &self.cache {
            cache.insert(token.into(), Arc::clone(&verified));
        }
        Ok(verified)
    }

    fn verify_uncached(&self, token: &str, now: i64) -> Result<VerifiedAssertion, AssertionError> {
        let jws = CompactJws::parse(token).map_err(|_| AssertionError::Invalid)?;
        if let Some(typ) = &self.config.typ {
            // RFC 8725 §3.11: compare case-insensitively, with or without the `application/`.
            let given = jws.header().typ().unwrap_or_default();
            let given = match given.get(..12) {
                Some(prefix) if prefix.eq_ignore_ascii_case("application/") => {
                    given.get(12..).unwrap_or_default()
                }
                _ => given,
            };
            if !given.eq_ignore_ascii_case(typ) {
                return Err(AssertionError::Invalid);
            }
        }
        let key = match self.config.keys.find(jws.header().kid(), jws.algorithm()) {
            KeyLookup::Found(key) => key,
            _ => return Err(AssertionError::Invalid),
        };
        jws.verify(key).map_err(|_| AssertionError::Invalid)?;
        let claims: Claims =
            serde_json::from_slice(jws.payload()).map_err(|_| AssertionError::Invalid)?;
        if claims.iss != self.config.issuer || claims.device_id.is_empty() {
            return Err(AssertionError::Invalid);
        }
        if let Some(expected) = &self.config.audience {
            let ok = match &claims.aud {
                Some(Audience::One(a)) => a == expected,
                Some(Audience::Many(all)) => all.iter().any(|a| a == expected),
                None => false,
            };
            if !ok {
                return Err(AssertionError::Invalid);
            }
        }
        let leeway = i64::try_from(self.config.leeway).unwrap_or(i64::MAX);
        if claims.iat > now.saturating_add(leeway)
            || claims
                .nbf
                .is_some_and(|nbf| nbf > now.saturating_add(leeway))
            || claims.exp < claims.iat
        {
            return Err(AssertionError::Invalid);
        }
        let verified = VerifiedAssertion {
            device_id: claims.device_id,
            owner: claims.owner,
            posture: Posture {
                platform: claims.posture.platform.map(|p| p.to_ascii_lowercase()),
                os_version: claims.posture.os_version,
                disk_encrypted: claims.posture.disk_encrypted,
                edr_running: claims.posture.edr_running,
                jailbroken: claims.posture.jailbroken,
                reported_at: Some(claims.iat),
            },
            issued_at: claims.iat,
            expires_at: claims.exp,
        };
        self.check_time(&verified, now)?;
        Ok(verified)
    }

    fn check_time(&self, a: &VerifiedAssertion, now: i64) -> Result<(), AssertionError> {
        let leeway = i64::try_from(self.config.leeway).unwrap_or(i64::MAX);
        let max_age = i64::try_from(self.config.max_age).unwrap_or(i64::MAX);
        let expired = now > a.expires_at.saturating_add(leeway)
            || now.saturating_sub(a.issued_at) > max_age.saturating_add(leeway);
        if expired {
            Err(AssertionError::Expired)
        } else {
            Ok(())
        }
    }
}

//! The verifier: from a token string to a verified [`Identity`], or the reason it is refused.
//!
//! Per request, in order, cheapest first:
//! 1. size limit, then (if enabled) the verified-token cache: a hit skips to step 7;
//! 2. compact JWS parsed, header checked (`alg`, `crit`, no key references used);
//! 3. claims read with their types; `iss` picks the issuer; `typ` checked for that issuer;
//! 4. the key found by `kid` and algorithm in the issuer's snapshot (lock-free); an unknown `kid`
//!    may trigger one rate-limited, single-flight refetch;
//! 5. the signature verified with the key's own algorithm;
//! 6. `exp`, `nbf`, `iat`, `aud`, `sub`, required claims, custom checks;
//! 7. the revocation store asked about `jti` (every request, cached or not).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use moka::Expiry;
use moka::sync::Cache;
use zerotrust_core::{Identity, IdentityParts, MemoryRevocationStore, RevocationStore, StoreError};

use crate::claims::{self, Claims};
use crate::error::VerifyError;
use crate::fetch::{FetchError, Fetcher, HttpSettings};
use crate::issuer::{Issuer, KeySource, KeysUnavailable, RemoteKeys};
use crate::jws::{CompactJws, HeaderCache, JwsError};
use crate::key::{KeyLookup, KeySet};

/// The configuration could not be turned into a verifier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// No issuer was configured.
    #[error("no issuer configured")]
    NoIssuer,
    /// An issuer has no audience: every token of that issuer would be accepted for every service.
    #[error("issuer {0} has no audience")]
    NoAudience(String),
    /// Two issuers share an identifier.
    #[error("issuer {0} is configured twice")]
    DuplicateIssuer(String),
    /// A key URL is invalid or not `https`.
    #[error(transparent)]
    Url(#[from] FetchError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(String),
}

enum Keys {
    Static(Arc<KeySet>),
    Remote(Arc<RemoteKeys>),
}

struct IssuerState {
    config: Issuer,
    keys: Keys,
}

struct TokenExpiry;

impl Expiry<Box<str>, Arc<Identity>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _token: &Box<str>,
        identity: &Arc<Identity>,
        _now: std::time::Instant,
    ) -> Option<Duration> {
        let left = identity.expires_at().saturating_sub(unix_now());
        Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
    }
}

struct Inner {
    issuers: HashMap<String, IssuerState, ahash::RandomState>,
    roles_roots: Vec<String>,
    leeway: i64,
    max_token_len: usize,
    revocation: Arc<dyn RevocationStore>,
    cache: Option<Cache<Box<str>, Arc<Identity>, ahash::RandomState>>,
    headers: HeaderCache,
}

/// Verifies bearer tokens against the keys of one or more trusted issuers.
///
/// Cheap to clone (one `Arc`); build it once at start-up and share it.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use zerotrust_jwt::{Algorithm, Issuer, JwtVerifier, VerifyError, VerifyingKey};
///
/// let key = VerifyingKey::hmac_secret(&[7u8; 32], Algorithm::HS256).unwrap();
/// let verifier = JwtVerifier::builder()
///     .issuer(Issuer::with_keys("urn:example:issuer", [key]).audience("reports"))
///     .build()
///     .unwrap();
/// let err = verifier.verify("not.a.token").await.unwrap_err();
/// assert_eq!(err.reason().code(), "token.malformed");
/// assert_eq!(err.rejection().status(), 401);
/// // Not even RFC 6750 token syntax: a malformed request.
/// let err = verifier.verify("not a token").await.unwrap_err();
/// assert_eq!(err.reason().code(), "request.malformed_credentials");
/// assert_eq!(err.rejection().status(), 400);
/// # });
/// ```
#[derive(Clone)]
pub struct JwtVerifier {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuers", &self.inner.issuers.keys().collect::<Vec<_>>())
            .field("leeway", &self.inner.leeway)
            .field("cache", &self.inner.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtVerifier`].
pub struct JwtVerifierBuilder {
    issuers: Vec<Issuer>,
    leeway: Duration,
    max_token_len: usize,
    revocation: Option<Arc<dyn RevocationStore>>,
    cache_entries: Option<u64>,
    http: HttpSettings,
}

impl JwtVerifierBuilder {
    /// Trusts `issuer`. Several issuers may be added; a token's `iss` picks one.
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat` (default 30 s, at most 5 minutes).
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_jwt::JwtVerifier;
    ///
    /// let builder = JwtVerifier::builder().leeway(Duration::from_secs(5));
    /// # let _ = builder;
    /// ```
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway.min(Duration::from_secs(300));
        self
    }

    /// Tokens longer than this are refused before any decoding (default 8 KiB).
    pub fn max_token_len(mut self, bytes: usize) -> Self {
        self.max_token_len = bytes;
        self
    }

    /// Where revocations are kept (default: a [`MemoryRevocationStore`] of this process). Use a
    /// shared store (Redis) when several replicas must see the same revocations.
    pub fn revocation_store(mut self, store: Arc<dyn RevocationStore>) -> Self {
        self.revocation = Some(store);
        self
    }

    /// Caches verified tokens (up to `max_entries`), so a repeated token skips the signature
    /// check. Entries never outlive the token's `exp`, revocation is still checked on every
    /// request, and revoking through [`JwtVerifier::revoke`] drops the entry.
    ///
    /// ```
    /// use zerotrust_jwt::JwtVerifier;
    ///
    /// let builder = JwtVerifier::builder().cache_verified_tokens(10_000);
    /// # let _ = builder;
    /// ```
    pub fn cache_verified_tokens(mut self, max_entries: u64) -> Self {
        self.cache_entries = Some(max_entries);
        self
    }

    /// Timeouts and size limit for fetching discovery documents and key sets.
    pub fn http(mut self, settings: HttpSettings) -> Self {
        self.http = settings;
        self
    }

    /// Checks the configuration and builds the verifier. Nothing is fetched yet: remote keys
    /// are loaded on first need, or by [`JwtVerifier::prefetch`].
    pub fn build(self) -> Result<JwtVerifier, BuildError> {
        if self.issuers.is_empty() {
            return Err(BuildError::NoIssuer);
        }
        let fetcher = Fetcher::new(&self.http).map_err(|e| BuildError::Http(e.to_string()))?;
        let mut issuers: HashMap<String, IssuerState, ahash::RandomState> = HashMap::default();
        let mut roles_roots: Vec<String> = Vec::new();
        for issuer in self.issuers {
            if issuer.audiences.is_empty() {
                return Err(BuildError::NoAudience(issuer.id));
            }
            if issuers.contains_key(&issuer.id) {
                return Err(BuildError::DuplicateIssuer(issuer.id));
            }
            if let Some(root) = issuer.roles_path.first()
                && !roles_roots.contains(root)
            {
                roles_roots.push(root.clone());
            }
            let keys = match &issuer.source {
                KeySource::Static(set) => Keys::Static(set.clone()),
                _ => Keys::Remote(Arc::new(RemoteKeys::new(&issuer, fetcher.clone())?)),
            };
            issuers.insert(
                issuer.id.clone(),
                IssuerState {
                    config: issuer,
                    keys,
                },
            );
        }
        let cache = self.cache_entries.map(|n| {
            Cache::builder()
                .max_capacity(n)
                .expire_after(TokenExpiry)
                .support_invalidation_closures()
                .build_with_hasher(ahash::RandomState::new())
        });
        Ok(JwtVerifier {
            inner: Arc::new(Inner {
                issuers,
                roles_roots,
                leeway: i64::try_from(self.leeway.as_secs()).unwrap_or(300),
                max_token_len: self.max_token_len,
                revocation: self
                    .revocation
                    .unwrap_or_else(|| Arc::new(MemoryRevocationStore::new())),
                cache,
                headers: HeaderCache::new(),
            }),
        })
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn split_scopes(mut out: Vec<String>, text: &str) -> Vec<String> {
    out.extend(text.split_ascii_whitespace().map(str::to_owned));
    out
}

/// The identity's values that stay in the payload, by claim, as byte ranges of it.
#[derive(Default)]
struct InPlace([Option<(&'static str, Range<usize>)>; 7]);

impl InPlace {
    /// Keeps `value` of `claim` in place if it is a slice of `payload` (it had no escapes);
    /// otherwise hands it back.
    fn text<'p>(
        &mut self,
        payload: &str,
        claim: &'static str,
        value: Cow<'p, str>,
    ) -> Result<(), Cow<'p, str>> {
        let Cow::Borrowed(slice) = value else {
            return Err(value);
        };
        match (
            range_in(payload, slice),
            self.0.iter_mut().find(|s| s.is_none()),
        ) {
            (Some(range), Some(free)) => {
                *free = Some((claim, range));
                Ok(())
            }
            _ => Err(value),
        }
    }
}

/// Where `inner`, a slice of `outer`, lies in it.
fn range_in(outer: &str, inner: &str) -> Option<Range<usize>> {
    let start = inner.as_ptr().addr().checked_sub(outer.as_ptr().addr())?;
    let end = start.checked_add(inner.len())?;
    (end <= outer.len()).then_some(start..end)
}

/// What one synchronous attempt at verifying a token came to.
enum Attempt<'v> {
    /// Verified and checked; revocation not asked yet.
    Verified(Arc<Identity>),
    /// The issuer's keys are not loaded, or too stale to use.
    NeedKeys(&'v Arc<RemoteKeys>),
    /// No key of the issuer has the token's `kid`.
    UnknownKid(&'v Arc<RemoteKeys>),
}

impl JwtVerifier {
    /// Starts building a verifier.
    pub fn builder() -> JwtVerifierBuilder {
        JwtVerifierBuilder {
            issuers: Vec::new(),
            leeway: Duration::from_secs(30),
            max_token_len: 8 * 1024,
            revocation: None,
            cache_entries: None,
            http: HttpSettings::default(),
        }
    }

    /// The longest token accepted, in bytes.
    pub fn max_token_len(&self) -> usize {
        self.inner.max_token_len
    }

    /// Loads the keys of every remote issuer now, so the first requests do not wait for them.
    /// Returns the first issuer that could not be loaded.
    pub async fn prefetch(&self) -> Result<(), VerifyError> {
        for state in self.inner.issuers.values() {
            if let Keys::Remote(remote) = &state.keys
                && !remote.snapshot.load().usable(remote.now())
            {
                remote
                    .ensure_usable()
                    .await
                    .map_err(|KeysUnavailable::RetryIn(s)| VerifyError::KeysUnavailable {
                        retry_after: s,
                    })?;
            }
        }
        Ok(())
    }

    /// Whether every issuer has usable keys now (for a readiness probe).
    pub fn is_ready(&self) -> bool {
        self.inner.issuers.values().all(|s| match &s.keys {
            Keys::Static(set) => !set.is_empty(),
            Keys::Remote(remote) => remote.snapshot.load().usable(remote.now()),
        })
    }

    /// Revokes a token id until `until` (normally the token's `exp`), and drops cached
    /// verifications of it.
    pub async fn revoke(&self, jti: &str, until: SystemTime) -> Result<(), StoreError> {
        self.inner.revocation.revoke(jti, until).await?;
        if let Some(cache) = &self.inner.cache {
            let jti = jti.to_owned();
            // Only fails if the cache was built without invalidation closures, which it is not.
            let _ = cache.invalidate_entries_if(move |_, id| id.jti() == Some(jti.as_str()));
        }
        Ok(())
    }

    /// Verifies `token` and returns the identity it proves.
    pub async fn verify(&self, token: &str) -> Result<Arc<Identity>, VerifyError> {
        let inner = &*self.inner;
        if token.len() > inner.max_token_len {
            return Err(VerifyError::TooLarge);
        }
        let now = unix_now();
        if let Some(cache) = &inner.cache
            && let Some(identity) = cache.get(token)
            && identity.expires_at() > now
        {
            metrics::counter!("zerotrust_jwt_cache_hits_total").increment(1);
            self.check_revocation(&identity).await?;
            return Ok(identity);
        }
        if inner.cache.is_some() {
            metrics::counter!("zerotrust_jwt_cache_misses_total").increment(1);
        }

        // Everything up to the revocation check is synchronous; only waiting for keys leaves it,
        // and then the token is read again from the start. Nothing parsed lives across an
        // `.await`, which keeps this future small: the layer boxes it on every request.
        let mut first = true;
        let identity = loop {
            match self.attempt(token, now)? {
                Attempt::Verified(identity) => break identity,
                Attempt::NeedKeys(remote) if first => {
                    remote
                        .ensure_usable()
                        .await
                        .map_err(|KeysUnavailable::RetryIn(s)| VerifyError::KeysUnavailable {
                            retry_after: s,
                        })?;
                }
                Attempt::UnknownKid(remote) if first => {
                    if !remote.refetch_for_unknown_kid().await {
                        return Err(VerifyError::UnknownKey);
                    }
                }
                Attempt::NeedKeys(_) => {
                    return Err(VerifyError::KeysUnavailable { retry_after: 1 });
                }
                Attempt::UnknownKid(_) => return Err(VerifyError::UnknownKey),
            }
            first = false;
        };
        self.check_revocation(&identity).await?;
        if let Some(cache) = &inner.cache {
            cache.insert(token.into(), identity.clone());
        }
        Ok(identity)
    }

    /// One synchronous pass over `token`: parse, claims, issuer, key, signature, claim checks.
    fn attempt(&self, token: &str, now: i64) -> Result<Attempt<'_>, VerifyError> {
        let inner = &*self.inner;
        let mut jws = CompactJws::parse_with(token, Some(&inner.headers)).map_err(|e| match e {
            // Every compact JWS is an RFC 6750 b64token; checking that syntax only for tokens the
            // parser refused keeps a per-byte scan off the path of good tokens.
            JwsError::NotCompact | JwsError::Encoding(_) if !crate::source::is_b64token(token) => {
                VerifyError::MalformedCredentials
            }
            e => e.into(),
        })?;
        // The payload is checked for UTF-8 once, here: serde_json then need not check each string
        // again, claims borrow from it, and it becomes the identity's raw claims without a copy.
        // (The signature covers the encoded payload, which `jws` keeps.)
        let payload = String::from_utf8(jws.take_payload())
            .map_err(|e| VerifyError::Claims(e.to_string()))?;
        let mut claims = Claims::default();
        claims::parse(&payload, &inner.roles_roots, &mut claims)
            .map_err(|e| VerifyError::Claims(e.to_string()))?;
        let iss = claims
            .iss
            .as_deref()
            .ok_or_else(|| VerifyError::MissingClaim("iss".into()))?;
        let state = inner.issuers.get(iss).ok_or(VerifyError::UnknownIssuer)?;
        if !state.config.accepts_typ(jws.header().typ()) {
            return Err(VerifyError::TokenType);
        }

        match &state.keys {
            Keys::Static(set) => Self::check_signature(set, &jws)?,
            Keys::Remote(remote) => {
                let now_ms = remote.now();
                let snapshot = remote.snapshot.load();
                if !snapshot.usable(now_ms) {
                    return Ok(Attempt::NeedKeys(remote));
                }
                match Self::check_signature(&snapshot.keys, &jws) {
                    Ok(()) => remote.refresh_if_due(&snapshot, now_ms),
                    Err(VerifyError::UnknownKey) => return Ok(Attempt::UnknownKid(remote)),
                    Err(e) => return Err(e),
                }
            }
        }

        jws.remember_header(&inner.headers);
        let mut in_place = InPlace::default();
        let mut parts = self.validate(state, &mut claims, &payload, &mut in_place, now)?;
        drop(claims);
        parts.raw_claims = Some(payload);
        let identity = Identity::from_parts_in_raw_claims(parts, in_place.0.into_iter().flatten())
            .ok_or_else(|| VerifyError::Claims("claim outside the payload".into()))?;
        let identity = Arc::new(identity);
        for check in &state.config.checks {
            check(&identity).map_err(VerifyError::Check)?;
        }
        Ok(Attempt::Verified(identity))
    }

    fn check_signature(set: &KeySet, jws: &CompactJws<'_>) -> Result<(), VerifyError> {
        match set.find(jws.header().kid(), jws.algorithm()) {
            KeyLookup::Found(key) => Ok(jws.verify(key)?),
            KeyLookup::Unknown => Err(VerifyError::UnknownKey),
            KeyLookup::AlgorithmMismatch => Err(crate::jws::JwsError::AlgorithmMismatch.into()),
            KeyLookup::Ambiguous => Err(VerifyError::AmbiguousKey),
        }
    }

    async fn check_revocation(&self, identity: &Identity) -> Result<(), VerifyError> {
        let Some(jti) = identity.jti() else {
            return Ok(());
        };
        let store = &self.inner.revocation;
        // A store that can answer at once (the in-memory one) is asked without a boxed future.
        let answer = match store.is_revoked_now(jti) {
            Some(answer) => answer,
            None => store.is_revoked(jti).await,
        };
        match answer {
            Ok(false) => Ok(()),
            Ok(true) => Err(VerifyError::Revoked),
            Err(e) => {
                tracing::warn!(target: "zerotrust::jwt", error = %e, "revocation store unavailable; refusing");
                Err(VerifyError::Store(e))
            }
        }
    }

    /// Checks the claims and gathers the identity's values. Values that are slices of `payload`
    /// (strings without escapes) are not copied: their ranges go to `in_place`, and the identity
    /// reads them from its raw claims, which the payload becomes.
    fn validate(
        &self,
        state: &IssuerState,
        claims: &mut Claims<'_>,
        payload: &str,
        in_place: &mut InPlace,
        now: i64,
    ) -> Result<IdentityParts, VerifyError> {
        let leeway = self.inner.leeway;
        let config = &state.config;
        let exp = claims
            .exp
            .ok_or_else(|| VerifyError::MissingClaim("exp".into()))?;
        if now > exp.saturating_add(leeway) {
            return Err(VerifyError::Expired);
        }
        if claims
            .nbf
            .is_some_and(|nbf| nbf > now.saturating_add(leeway))
        {
            return Err(VerifyError::NotYetValid);
        }
        if claims
            .iat
            .is_some_and(|iat| iat > now.saturating_add(leeway))
        {
            return Err(VerifyError::IssuedInFuture);
        }
        let audiences = claims
            .aud
            .take()
            .ok_or_else(|| VerifyError::MissingClaim("aud".into()))?;
        if !audiences
            .iter()
            .any(|a| config.audiences.iter().any(|c| c == a))
        {
            return Err(VerifyError::Audience);
        }
        for name in &config.required_claims {
            if !claims.has(name) {
                return Err(VerifyError::MissingClaim(name.clone()));
            }
        }
        let subject = claims
            .sub
            .take()
            .ok_or_else(|| VerifyError::MissingClaim("sub".into()))?;
        let scopes = match (claims.scope.take(), &claims.scp) {
            // The common form, one `scope` string: split when the identity's scopes are asked for.
            (Some(scope), None) => in_place
                .text(payload, "scope", scope)
                .map_or_else(|scope| split_scopes(Vec::new(), &scope), |()| Vec::new()),
            (scope, scp) => {
                let mut scopes = Vec::new();
                if let Some(scope) = scope {
                    scopes = split_scopes(scopes, &scope);
                }
                for scp in scp.iter().flat_map(claims::Strings::iter) {
                    scopes = split_scopes(scopes, scp);
                }
                scopes
            }
        };
        let roles = match config.roles_path.split_first() {
            Some((root, rest)) => match claims.roles_root(root) {
                Some(raw) => {
                    claims::roles_at(raw, rest).map_err(|e| VerifyError::Claims(e.to_string()))?
                }
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let audiences = match audiences {
            claims::Strings::One(aud) => in_place
                .text(payload, "aud", aud)
                .map_or_else(|aud| vec![aud.into_owned()], |()| Vec::new()),
            many => many.into_owned(),
        };
        let mut text = |claim: &'static str, value: Option<Cow<'_, str>>| {
            value.map(|v| {
                in_place
                    .text(payload, claim, v)
                    .map_or_else(Cow::into_owned, |()| String::new())
            })
        };
        Ok(IdentityParts {
            subject: text("sub", Some(subject)).unwrap_or_default(),
            issuer: text("iss", claims.iss.take()).unwrap_or_default(),
            expires_at: exp,
            audiences,
            scopes,
            roles,
            acr: text("acr", claims.acr.take()),
            amr: claims
                .amr
                .take()
                .map(claims::Strings::into_owned)
                .unwrap_or_default(),
            auth_time: claims.auth_time,
            issued_at: claims.iat,
            jti: text("jti", claims.jti.take()),
            client_id: text("client_id", claims.client_id.take()),
            confirmation: claims.cnf.take(),
            raw_claims: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use aws_lc_rs::hmac;
    use base64_simd::URL_SAFE_NO_PAD;
    use futures_util::FutureExt as _;

    use super::*;
    use crate::{Algorithm, VerifyingKey};

    const SECRET: [u8; 32] = [7; 32];

    fn verifier() -> JwtVerifier {
        let key = VerifyingKey::hmac_secret(&SECRET, Algorithm::HS256).unwrap();
        JwtVerifier::builder()
            .issuer(Issuer::with_keys("urn:test", [key]).audience("api"))
            .build()
            .unwrap()
    }

    fn token(payload: &[u8]) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode_to_string(r#"{"alg":"HS256","typ":"at+jwt"}"#),
            URL_SAFE_NO_PAD.encode_to_string(payload)
        );
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, &SECRET),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode_to_string(tag.as_ref()))
    }

    /// Static keys and the in-memory revocation store: verification finishes on its first poll.
    fn verify(payload: &str) -> Result<Arc<Identity>, VerifyError> {
        verifier()
            .verify(&token(payload.as_bytes()))
            .now_or_never()
            .expect("static keys and an in-memory store answer at once")
    }

    fn claims(extra: &str) -> String {
        let exp = unix_now() + 300;
        format!(r#"{{"iss":"urn:test","exp":{exp},{extra}}}"#)
    }

    #[test]
    fn identity_values_are_the_claims_escaped_or_not() {
        let id = verify(&claims(
            r#""sub":"al\u0069ce","aud":"api","scope":"a  b","jti":"j\"1","client_id":"c","acr":"x","amr":["pwd"]"#,
        ))
        .unwrap();
        assert_eq!(id.subject(), "alice");
        assert_eq!(id.issuer(), "urn:test");
        assert_eq!(id.audiences(), ["api"]);
        assert_eq!(id.scopes(), ["a", "b"]);
        assert!(id.has_scope("b") && !id.has_scope("a  b"));
        assert_eq!(id.jti(), Some("j\"1"));
        assert_eq!(id.client_id(), Some("c"));
        assert_eq!(id.acr(), Some("x"));
        assert_eq!(id.amr(), ["pwd"]);
        assert_eq!(id.claim("sub").and_then(|v| v.as_str()), Some("alice"));

        let id = verify(&claims(
            r#""sub":"bob","aud":["other","a\u0070i"],"scope":"a","scp":["b c","d"],"acr":"\u0078""#,
        ))
        .unwrap();
        assert_eq!(id.subject(), "bob");
        assert_eq!(id.audiences(), ["other", "api"]);
        assert_eq!(id.scopes(), ["a", "b", "c", "d"]);
        assert_eq!(id.acr(), Some("x"));
        assert_eq!(id.jti(), None);

        let id = verify(&claims(r#""sub":"bob","aud":"a\u0070i","scp":"x y""#)).unwrap();
        assert_eq!(id.audiences(), ["api"]);
        assert_eq!(id.scopes(), ["x", "y"]);
    }

    #[test]
    fn a_payload_that_is_not_utf8_is_refused() {
        let exp = unix_now() + 300;
        let payload = format!(r#"{{"iss":"urn:test","exp":{exp},"sub":"a","aud":"api","x":"?"}}"#);
        let mut bytes = payload.into_bytes();
        if let Some(b) = bytes.iter_mut().rev().find(|b| **b == b'?') {
            *b = 0xff;
        }
        let result = verifier()
            .verify(&token(&bytes))
            .now_or_never()
            .expect("static keys and an in-memory store answer at once");
        assert!(matches!(result, Err(VerifyError::Claims(_))), "{result:?}");
    }

    #[test]
    fn ranges_are_found_only_inside_their_text() {
        let outer = "abcdef";
        assert_eq!(range_in(outer, &outer[2..4]), Some(2..4));
        assert_eq!(range_in(outer, &outer[6..]), Some(6..6));
        assert_eq!(range_in(outer, &String::from("cd")), None);
    }
}

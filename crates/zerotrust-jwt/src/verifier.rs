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

use std::collections::HashMap;
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

fn split_scopes(out: &mut Vec<String>, text: &str) {
    out.extend(text.split_ascii_whitespace().map(str::to_owned));
}

/// The key for a token, if one could be found without waiting.
enum Found {
    Verified,
    NeedKeys,
    UnknownKid,
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

        let jws = CompactJws::parse_with(token, Some(&inner.headers)).map_err(|e| match e {
            // Every compact JWS is an RFC 6750 b64token; checking that syntax only for tokens the
            // parser refused keeps a per-byte scan off the path of good tokens.
            JwsError::NotCompact | JwsError::Encoding(_) if !crate::source::is_b64token(token) => {
                VerifyError::MalformedCredentials
            }
            e => e.into(),
        })?;
        let claims = claims::parse(jws.payload(), &inner.roles_roots)
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
                let mut attempt = 0;
                loop {
                    let found = {
                        let now_ms = remote.now();
                        let snapshot = remote.snapshot.load();
                        if !snapshot.usable(now_ms) {
                            Found::NeedKeys
                        } else {
                            match Self::check_signature(&snapshot.keys, &jws) {
                                Ok(()) => {
                                    remote.refresh_if_due(&snapshot, now_ms);
                                    Found::Verified
                                }
                                Err(VerifyError::UnknownKey) => Found::UnknownKid,
                                Err(e) => return Err(e),
                            }
                        }
                    };
                    match (found, attempt) {
                        (Found::Verified, _) => break,
                        (Found::NeedKeys, 0) => {
                            remote.ensure_usable().await.map_err(
                                |KeysUnavailable::RetryIn(s)| VerifyError::KeysUnavailable {
                                    retry_after: s,
                                },
                            )?;
                        }
                        (Found::UnknownKid, 0) => {
                            if !remote.refetch_for_unknown_kid().await {
                                return Err(VerifyError::UnknownKey);
                            }
                        }
                        (Found::NeedKeys, _) => {
                            return Err(VerifyError::KeysUnavailable { retry_after: 1 });
                        }
                        (Found::UnknownKid, _) => return Err(VerifyError::UnknownKey),
                    }
                    attempt += 1;
                }
            }
        }

        jws.remember_header(&inner.headers);
        let mut parts = self.validate(state, claims, now)?;
        // The claims are read; the payload moves into the identity without a copy. serde_json
        // does not check UTF-8 inside strings it skips, so check it here.
        parts.raw_claims = Some(
            String::from_utf8(jws.into_payload())
                .map_err(|e| VerifyError::Claims(e.to_string()))?,
        );
        let identity = Arc::new(Identity::from_parts(parts));
        for check in &state.config.checks {
            check(&identity).map_err(VerifyError::Check)?;
        }
        self.check_revocation(&identity).await?;
        if let Some(cache) = &inner.cache {
            cache.insert(token.into(), identity.clone());
        }
        Ok(identity)
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
        match self.inner.revocation.is_revoked(jti).await {
            Ok(false) => Ok(()),
            Ok(true) => Err(VerifyError::Revoked),
            Err(e) => {
                tracing::warn!(target: "zerotrust::jwt", error = %e, "revocation store unavailable; refusing");
                Err(VerifyError::Store(e))
            }
        }
    }

    fn validate(
        &self,
        state: &IssuerState,
        mut claims: Claims<'_>,
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
        if !audiences.iter().any(|a| config.audiences.contains(a)) {
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
        let mut scopes = Vec::new();
        if let Some(scope) = &claims.scope {
            split_scopes(&mut scopes, scope);
        }
        for scp in claims.scp.iter().flatten() {
            split_scopes(&mut scopes, scp);
        }
        let roles = match config.roles_path.split_first() {
            Some((root, rest)) => match claims.roles_root(root) {
                Some(raw) => {
                    claims::roles_at(raw, rest).map_err(|e| VerifyError::Claims(e.to_string()))?
                }
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        Ok(IdentityParts {
            subject,
            issuer: claims.iss.take().unwrap_or_default(),
            expires_at: exp,
            audiences,
            scopes,
            roles,
            acr: claims.acr.take(),
            amr: claims.amr.take().unwrap_or_default(),
            auth_time: claims.auth_time,
            issued_at: claims.iat,
            jti: claims.jti.take(),
            client_id: claims.client_id.take(),
            confirmation: claims.cnf.take(),
            raw_claims: None,
        })
    }
}

//! One trusted issuer: which tokens it may sign, where its keys come from, and how they are kept
//! fresh.
//!
//! Remote keys live in an [`ArcSwap`] snapshot: a request reads it without taking any lock that can
//! wait. Fetches are single-flight (one shared future, joined by everyone who needs it, the mutex
//! around it held only to clone or replace the handle, never across an `.await`), and rate-limited:
//! an unknown `kid` triggers at most one refetch per cooldown, a failed fetch is not retried before a
//! back-off, and keys already held keep working for a bounded time while the issuer is unreachable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::FutureExt as _;
use futures_util::future::{BoxFuture, Shared};
use reqwest::Url;
use serde::Deserialize;
use zerotrust_core::{Identity, Reason};

use crate::algorithm::Algorithm;
use crate::fetch::{FetchError, Fetcher};
use crate::key::{KeyPolicy, KeySet, VerifyingKey};

/// A custom check run on every verified identity of an issuer; an `Err` refuses the token with
/// that reason (401 `invalid_token`).
pub type ClaimCheck = Arc<dyn Fn(&Identity) -> Result<(), Reason> + Send + Sync>;

#[derive(Clone)]
pub(crate) enum KeySource {
    Discovery(String),
    Jwks(String),
    Static(Arc<KeySet>),
}

/// How remote keys are kept fresh.
#[derive(Debug, Clone)]
pub(crate) struct RefreshPolicy {
    pub(crate) default_interval: Duration,
    pub(crate) min_interval: Duration,
    pub(crate) max_interval: Duration,
    pub(crate) unknown_kid_cooldown: Duration,
    pub(crate) max_stale: Duration,
    pub(crate) retry_backoff: Duration,
}

impl Default for RefreshPolicy {
    fn default() -> Self {
        Self {
            default_interval: Duration::from_secs(300),
            min_interval: Duration::from_secs(60),
            max_interval: Duration::from_secs(86_400),
            unknown_kid_cooldown: Duration::from_secs(30),
            max_stale: Duration::from_secs(3_600),
            retry_backoff: Duration::from_secs(10),
        }
    }
}

/// A trusted token issuer and what its tokens must satisfy.
///
/// Strict by default: tokens must be RFC 9068 access tokens (`typ` `at+jwt`), carry `iss`, `sub`,
/// `aud` and `exp`, name one of the configured audiences, and be signed by one of the issuer's keys
/// with that key's algorithm. Keys are fetched over `https` only.
///
/// ```
/// use std::time::Duration;
/// use zerotrust_jwt::Issuer;
///
/// let issuer = Issuer::discover("https://login.example.com/realms/acme")
///     .audience("https://api.example.com")
///     .roles_claim("realm_access.roles")
///     .require_claim("jti")
///     .unknown_kid_cooldown(Duration::from_secs(60));
/// assert_eq!(issuer.id(), "https://login.example.com/realms/acme");
/// ```
#[derive(Clone)]
pub struct Issuer {
    pub(crate) id: String,
    pub(crate) source: KeySource,
    pub(crate) audiences: Vec<String>,
    pub(crate) token_types: Vec<String>,
    pub(crate) allow_missing_typ: bool,
    pub(crate) rsa_algorithms: Vec<Algorithm>,
    pub(crate) roles_path: Vec<String>,
    pub(crate) required_claims: Vec<String>,
    pub(crate) checks: Vec<ClaimCheck>,
    pub(crate) allow_http: bool,
    pub(crate) refresh: RefreshPolicy,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("id", &self.id)
            .field("audiences", &self.audiences)
            .field("token_types", &self.token_types)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    fn new(id: impl Into<String>, source: KeySource) -> Self {
        Self {
            id: id.into(),
            source,
            audiences: Vec::new(),
            token_types: vec!["at+jwt".into()],
            allow_missing_typ: false,
            rsa_algorithms: vec![Algorithm::RS256],
            roles_path: vec!["roles".into()],
            required_claims: Vec::new(),
            checks: Vec::new(),
            allow_http: false,
            refresh: RefreshPolicy::default(),
        }
    }

    /// An issuer whose keys are found through OpenID Connect discovery: the document at
    /// `{issuer}/.well-known/openid-configuration` must name exactly this `issuer`, and its
    /// `jwks_uri` gives the keys.
    pub fn discover(issuer: impl Into<String>) -> Self {
        let id = issuer.into();
        Self::new(id.clone(), KeySource::Discovery(id))
    }

    /// An issuer (tokens' `iss`) whose keys are at a JWK Set URL.
    pub fn jwks(issuer: impl Into<String>, jwks_url: impl Into<String>) -> Self {
        Self::new(issuer, KeySource::Jwks(jwks_url.into()))
    }

    /// An issuer with keys configured here (PEM, DER, JWK or an HMAC secret); nothing is fetched.
    ///
    /// ```
    /// use zerotrust_jwt::{Algorithm, Issuer, VerifyingKey};
    ///
    /// let key = VerifyingKey::hmac_secret(&[7u8; 32], Algorithm::HS256).unwrap();
    /// let issuer = Issuer::with_keys("urn:example:internal", [key]).audience("reports");
    /// # let _ = issuer;
    /// ```
    pub fn with_keys(
        issuer: impl Into<String>,
        keys: impl IntoIterator<Item = VerifyingKey>,
    ) -> Self {
        Self::new(issuer, KeySource::Static(Arc::new(KeySet::from_keys(keys))))
    }

    /// The issuer identifier tokens must carry in `iss`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds an accepted audience: a token's `aud` must contain at least one.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Adds accepted audiences.
    pub fn audiences(mut self, audiences: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Accepts these `typ` header values besides `at+jwt` (compared case-insensitively, with or
    /// without the `application/` prefix).
    ///
    /// # Warning
    /// RFC 9068's `at+jwt` is what tells an access token from an ID token or any other JWT the
    /// issuer signs. Accepting `JWT` (which many identity providers send) lets any JWT of this
    /// issuer with a matching audience in: make sure the audience is unique to access tokens for
    /// this API.
    pub fn accept_token_types(
        mut self,
        types: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.token_types
            .extend(types.into_iter().map(|t| normalize_typ(&t.into())));
        self
    }

    /// Accepts tokens with no `typ` header at all.
    ///
    /// # Warning
    /// Without `typ` nothing distinguishes an access token from other JWTs of the same issuer; see
    /// [`accept_token_types`](Issuer::accept_token_types).
    pub fn accept_missing_token_type(mut self) -> Self {
        self.allow_missing_typ = true;
        self
    }

    /// The algorithms an RSA key that names no `alg` in the key set may verify (default RS256
    /// only). Keys that name their `alg` verify exactly that algorithm.
    pub fn rsa_algorithms(mut self, algs: impl IntoIterator<Item = Algorithm>) -> Self {
        self.rsa_algorithms = algs.into_iter().collect();
        self
    }

    /// Where the roles are: a dotted claim path such as `realm_access.roles` (default `roles`).
    /// The claim must be an array of strings; another type refuses the token.
    pub fn roles_claim(mut self, path: &str) -> Self {
        self.roles_path = path.split('.').map(str::to_owned).collect();
        self
    }

    /// Requires a claim to be present (for example `jti`, so every token can be revoked).
    pub fn require_claim(mut self, name: impl Into<String>) -> Self {
        self.required_claims.push(name.into());
        self
    }

    /// Adds a custom check on the verified identity.
    ///
    /// ```
    /// use zerotrust_core::Reason;
    /// use zerotrust_jwt::Issuer;
    ///
    /// const WRONG_TENANT: Reason = Reason::new("token.tenant", "The token is for another tenant.");
    /// let issuer = Issuer::discover("https://idp.example.com")
    ///     .audience("api")
    ///     .check(|id| match id.claim("tenant").and_then(|t| t.as_str()) {
    ///         Some("acme") => Ok(()),
    ///         _ => Err(WRONG_TENANT),
    ///     });
    /// # let _ = issuer;
    /// ```
    pub fn check(
        mut self,
        check: impl Fn(&Identity) -> Result<(), Reason> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push(Arc::new(check));
        self
    }

    /// Allows fetching discovery and keys over plain `http`.
    ///
    /// # Warning
    /// Over plain HTTP anyone on the path can substitute their own keys and mint tokens this
    /// service accepts. Only for tests and for an issuer on the same host.
    pub fn allow_insecure_http(mut self) -> Self {
        self.allow_http = true;
        self
    }

    /// How long after a refetch for an unknown `kid` another one may happen (default 30 s). A flood
    /// of tokens with random `kid`s causes at most one request to the issuer per cooldown.
    pub fn unknown_kid_cooldown(mut self, cooldown: Duration) -> Self {
        self.refresh.unknown_kid_cooldown = cooldown;
        self
    }

    /// How often keys are refreshed when the key set response has no `Cache-Control: max-age`
    /// (default 5 minutes).
    pub fn refresh_interval(mut self, interval: Duration) -> Self {
        self.refresh.default_interval = interval;
        self
    }

    /// The bounds a `Cache-Control: max-age` is clamped into (default 1 minute to 1 day).
    pub fn refresh_bounds(mut self, min: Duration, max: Duration) -> Self {
        self.refresh.min_interval = min.min(max);
        self.refresh.max_interval = max.max(min);
        self
    }

    /// How long past their refresh time keys keep working while the issuer cannot be reached
    /// (default 1 hour). After that, requests get 503 until a fetch succeeds.
    pub fn max_stale(mut self, max_stale: Duration) -> Self {
        self.refresh.max_stale = max_stale;
        self
    }

    /// How long after a failed fetch the next one may start (default 10 s).
    pub fn retry_backoff(mut self, backoff: Duration) -> Self {
        self.refresh.retry_backoff = backoff;
        self
    }

    pub(crate) fn accepts_typ(&self, typ: Option<&str>) -> bool {
        match typ {
            None => self.allow_missing_typ,
            // The configured types are normalized (lowercase, no `application/`); comparing
            // without case against the header's value, its prefix cut the same way, gives the
            // same answer as normalizing it, without allocating on every request.
            Some(t) => {
                let t = strip_application_prefix(t);
                self.token_types
                    .iter()
                    .any(|known| known.eq_ignore_ascii_case(t))
            }
        }
    }
}

/// `t` without a leading `application/` in any case.
fn strip_application_prefix(t: &str) -> &str {
    const PREFIX: &str = "application/";
    match (t.get(..PREFIX.len()), t.get(PREFIX.len()..)) {
        (Some(head), Some(rest)) if head.eq_ignore_ascii_case(PREFIX) => rest,
        _ => t,
    }
}

fn normalize_typ(t: &str) -> String {
    let lower = t.to_ascii_lowercase();
    match lower.strip_prefix("application/") {
        Some(rest) => rest.to_owned(),
        None => lower,
    }
}

// ----------------------------------------------------------------------------------------------
// Remote keys at run time.

const NEVER: u64 = u64::MAX;

/// One loaded key set and its timing, swapped in whole.
pub(crate) struct Snapshot {
    pub(crate) keys: KeySet,
    loaded: bool,
    /// When a background refresh is due (ms on the issuer's clock).
    refresh_at: u64,
    /// After this the keys are no longer used (ms).
    usable_until: u64,
}

impl Snapshot {
    fn empty() -> Self {
        Self {
            keys: KeySet::default(),
            loaded: false,
            refresh_at: 0,
            usable_until: 0,
        }
    }

    pub(crate) fn usable(&self, now: u64) -> bool {
        self.loaded && now < self.usable_until
    }
}

type SharedFetch = Shared<BoxFuture<'static, Result<(), FetchError>>>;

pub(crate) struct RemoteKeys {
    issuer: String,
    discovery_url: Option<Url>,
    jwks_url: ArcSwapOption<Url>,
    allow_http: bool,
    policy: KeyPolicy,
    refresh: RefreshPolicy,
    fetcher: Fetcher,
    pub(crate) snapshot: ArcSwap<Snapshot>,
    inflight: Mutex<Option<SharedFetch>>,
    clock: Instant,
    last_kid_refetch: AtomicU64,
    next_attempt: AtomicU64,
}

/// Why remote keys are not available right now.
pub(crate) enum KeysUnavailable {
    /// Try again in this many seconds.
    RetryIn(u64),
}

fn parse_url(text: &str, allow_http: bool) -> Result<Url, FetchError> {
    let url = Url::parse(text).map_err(|e| FetchError::Document {
        url: text.to_owned(),
        reason: format!("not a URL: {e}"),
    })?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_http => Ok(url),
        _ => Err(FetchError::InsecureUrl(text.to_owned())),
    }
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: String,
    jwks_uri: String,
}

impl RemoteKeys {
    pub(crate) fn new(issuer: &Issuer, fetcher: Fetcher) -> Result<Self, FetchError> {
        let (discovery_url, jwks_url) = match &issuer.source {
            KeySource::Discovery(id) => {
                let base = id.trim_end_matches('/');
                let url = parse_url(
                    &format!("{base}/.well-known/openid-configuration"),
                    issuer.allow_http,
                )?;
                (Some(url), None)
            }
            KeySource::Jwks(url) => (None, Some(Arc::new(parse_url(url, issuer.allow_http)?))),
            KeySource::Static(_) => (None, None),
        };
        Ok(Self {
            issuer: issuer.id.clone(),
            discovery_url,
            jwks_url: ArcSwapOption::new(jwks_url),
            allow_http: issuer.allow_http,
            policy: KeyPolicy::remote().rsa_algorithms(issuer.rsa_algorithms.iter().copied()),
            refresh: issuer.refresh.clone(),
            fetcher,
            snapshot: ArcSwap::from_pointee(Snapshot::empty()),
            inflight: Mutex::new(None),
            clock: Instant::now(),
            last_kid_refetch: AtomicU64::new(NEVER),
            next_attempt: AtomicU64::new(0),
        })
    }

    pub(crate) fn now(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(NEVER - 1)
    }

    fn ms(d: Duration) -> u64 {
        u64::try_from(d.as_millis()).unwrap_or(NEVER / 4)
    }

    /// Called on every request that found its key: starts a background refresh when one is due.
    pub(crate) fn refresh_if_due(self: &Arc<Self>, snapshot: &Snapshot, now: u64) {
        if now >= snapshot.refresh_at && self.claim_attempt(now) {
            let fetch = self.start_fetch();
            drop(fetch);
        }
    }

    /// Claims the right to start a fetch now, if no failed fetch's back-off is running. Exactly one
    /// caller wins between two back-off periods.
    fn claim_attempt(&self, now: u64) -> bool {
        let next = self.next_attempt.load(Ordering::Acquire);
        now >= next
            && self
                .next_attempt
                .compare_exchange(
                    next,
                    now.saturating_add(Self::ms(self.refresh.retry_backoff)),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn current_fetch(&self) -> Option<SharedFetch> {
        let slot = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().filter(|f| f.peek().is_none()).cloned()
    }

    /// Joins the fetch in flight or starts one; it runs on the runtime even if nobody awaits it.
    fn start_fetch(self: &Arc<Self>) -> SharedFetch {
        let mut slot = self.inflight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = slot.as_ref().filter(|f| f.peek().is_none()) {
            return f.clone();
        }
        let this = Arc::clone(self);
        let fetch = async move { this.fetch_and_install().await }
            .boxed()
            .shared();
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(fetch.clone());
        }
        *slot = Some(fetch.clone());
        fetch
    }

    /// Keys are needed and none are usable (never loaded, or stale past the bound): wait for a
    /// fetch, or say when to retry.
    pub(crate) async fn ensure_usable(self: &Arc<Self>) -> Result<(), KeysUnavailable> {
        let now = self.now();
        let fetch = match self.current_fetch() {
            Some(f) => f,
            None if self.claim_attempt(now) => self.start_fetch(),
            None => {
                let next = self.next_attempt.load(Ordering::Acquire);
                return Err(KeysUnavailable::RetryIn(
                    next.saturating_sub(now).div_ceil(1000).max(1),
                ));
            }
        };
        let _ = fetch.await;
        if self.snapshot.load().usable(self.now()) {
            Ok(())
        } else {
            Err(KeysUnavailable::RetryIn(
                self.refresh.retry_backoff.as_secs().max(1),
            ))
        }
    }

    /// A token names a `kid` the snapshot does not hold: join the fetch in flight, or start one if
    /// the cooldown allows. Returns whether a fetch completed (so looking again makes sense).
    pub(crate) async fn refetch_for_unknown_kid(self: &Arc<Self>) -> bool {
        if let Some(f) = self.current_fetch() {
            let _ = f.await;
            return true;
        }
        let now = self.now();
        let last = self.last_kid_refetch.load(Ordering::Acquire);
        let cooldown = Self::ms(self.refresh.unknown_kid_cooldown);
        if last != NEVER && now < last.saturating_add(cooldown) {
            return false;
        }
        if self
            .last_kid_refetch
            .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            // Another request won the race and started the fetch; join it.
            return match self.current_fetch() {
                Some(f) => {
                    let _ = f.await;
                    true
                }
                None => true,
            };
        }
        metrics::counter!("zerotrust_jwks_unknown_kid_refetches_total").increment(1);
        let _ = self.start_fetch().await;
        true
    }

    async fn discover(&self, discovery_url: &Url) -> Result<Arc<Url>, FetchError> {
        let fetched = self.fetcher.get(discovery_url).await?;
        let doc: DiscoveryDocument =
            serde_json::from_slice(&fetched.body).map_err(|e| FetchError::Document {
                url: discovery_url.to_string(),
                reason: e.to_string(),
            })?;
        if doc.issuer != self.issuer {
            return Err(FetchError::IssuerMismatch {
                expected: self.issuer.clone(),
                found: doc.issuer,
            });
        }
        let url = Arc::new(parse_url(&doc.jwks_uri, self.allow_http)?);
        self.jwks_url.store(Some(url.clone()));
        Ok(url)
    }

    async fn fetch_and_install(&self) -> Result<(), FetchError> {
        let result = self.fetch_keys().await;
        let now = self.now();
        match result {
            Ok((keys, max_age)) => {
                let interval = max_age
                    .unwrap_or(self.refresh.default_interval)
                    .clamp(self.refresh.min_interval, self.refresh.max_interval);
                let refresh_at = now.saturating_add(Self::ms(interval));
                tracing::debug!(
                    target: "zerotrust::jwt",
                    issuer = %self.issuer,
                    keys = keys.len(),
                    refresh_in_s = interval.as_secs(),
                    "issuer keys loaded"
                );
                metrics::counter!("zerotrust_jwks_fetches_total", "result" => "ok").increment(1);
                self.snapshot.store(Arc::new(Snapshot {
                    keys,
                    loaded: true,
                    refresh_at,
                    usable_until: refresh_at.saturating_add(Self::ms(self.refresh.max_stale)),
                }));
                self.next_attempt.store(0, Ordering::Release);
                Ok(())
            }
            Err(e) => {
                metrics::counter!("zerotrust_jwks_fetches_total", "result" => "error").increment(1);
                let held = self.snapshot.load().usable(now);
                tracing::warn!(
                    target: "zerotrust::jwt",
                    issuer = %self.issuer,
                    error = %e,
                    keeping_cached_keys = held,
                    "fetching issuer keys failed"
                );
                // A failed JWKS fetch may mean the jwks_uri moved: rediscover next time.
                if self.discovery_url.is_some() {
                    self.jwks_url.store(None);
                }
                self.next_attempt.store(
                    now.saturating_add(Self::ms(self.refresh.retry_backoff)),
                    Ordering::Release,
                );
                Err(e)
            }
        }
    }

    async fn fetch_keys(&self) -> Result<(KeySet, Option<Duration>), FetchError> {
        let jwks_url = match (self.jwks_url.load_full(), &self.discovery_url) {
            (Some(url), _) => url,
            (None, Some(discovery)) => self.discover(discovery).await?,
            (None, None) => {
                return Err(FetchError::Document {
                    url: String::new(),
                    reason: "no key source".into(),
                });
            }
        };
        let fetched = self.fetcher.get(&jwks_url).await?;
        let (keys, ignored) = KeySet::from_jwk_set(&fetched.body, &self.policy).map_err(|e| {
            FetchError::Document {
                url: jwks_url.to_string(),
                reason: e.to_string(),
            }
        })?;
        for key in &ignored {
            tracing::warn!(
                target: "zerotrust::jwt",
                issuer = %self.issuer,
                kid = key.kid.as_deref().unwrap_or("-"),
                index = key.index,
                reason = %key.error,
                "ignoring unfit key in the issuer's key set"
            );
        }
        if keys.is_empty() {
            return Err(FetchError::NoUsableKeys(jwks_url.to_string()));
        }
        Ok((keys, fetched.max_age))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typ_is_compared_without_case_and_without_the_application_prefix() {
        let issuer = Issuer::with_keys("urn:test", []).accept_token_types(["AT+JWT", "jwt"]);
        for typ in [
            "at+jwt",
            "AT+jwt",
            "application/at+jwt",
            "Application/AT+JWT",
            "JWT",
            "application/jwt",
        ] {
            assert!(issuer.accepts_typ(Some(typ)), "{typ}");
        }
        for typ in [
            "",
            "application/",
            "application/application/jwt",
            "at+jwt ",
            "applicatio/jwt",
            "jwé",
            "applicationé/jwt",
        ] {
            assert!(!issuer.accepts_typ(Some(typ)), "{typ}");
        }
        assert!(!issuer.accepts_typ(None));
        assert_eq!(strip_application_prefix("APPLICATION/x"), "x");
        assert_eq!(strip_application_prefix("applicatioé"), "applicatioé");
    }
}

//! The compiled policy: routes in a matcher, the RBAC map inverted per route, the risk model and
//! the behaviour settings, all prepared once.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Method;
use zerotrust_core::{
    BehaviorStore, BehaviorWindows, Enforcement, Reason, Rejection, RejectionKind, RiskModel,
};

use crate::requirements::{Predicate, Requirements};

/// A source of the current time in seconds since the Unix epoch (injectable for tests).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

fn system_clock() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A policy that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// A path pattern is not valid.
    #[error("route {pattern:?}: {reason}")]
    Pattern {
        /// The pattern as declared.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Two routes cover the same requests.
    #[error("route {pattern:?} conflicts with another route: {reason}")]
    Conflict {
        /// The pattern as declared.
        pattern: String,
        /// The matcher's explanation.
        reason: String,
    },
    /// A threshold outside `0..=1`, or a challenge threshold above the deny threshold.
    #[error("route {pattern:?}: {reason}")]
    Threshold {
        /// The pattern as declared.
        pattern: String,
        /// What is wrong.
        reason: String,
    },
    /// A route requires a permission no role in the RBAC map grants: it could never pass.
    #[error("route {pattern:?} requires permission {permission:?}, which no role grants")]
    UngrantedPermission {
        /// The pattern as declared.
        pattern: String,
        /// The permission.
        permission: String,
    },
    /// A realm that challenges cannot carry as given: empty, or with characters a quoted
    /// `realm` drops (anything but printable ASCII, or `"` or `\`).
    #[error("realm {realm:?} cannot be sent in a challenge: {reason}")]
    Realm {
        /// The realm as configured.
        realm: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// How behaviour becomes signals and lockouts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BehaviorPolicy {
    /// The counting windows.
    pub windows: BehaviorWindows,
    /// Failures in the window after which the subject is locked out (default 10).
    pub lockout_after: u32,
    /// How long a lockout lasts (default 15 minutes).
    pub lockout_for: Duration,
    /// Failures in the window from which `behavior.failures` is added (default 3); its weight
    /// grows with the count up to `failures_weight` at `lockout_after`.
    pub failures_from: u32,
    /// The highest weight of `behavior.failures` (default 0.6).
    pub failures_weight: f64,
    /// Requests in the request window above which `behavior.burst` is added (default 120).
    pub burst_above: u32,
    /// The weight of `behavior.burst` (default 0.3).
    pub burst_weight: f64,
    /// Distinct sensitive routes in their window above which `behavior.sensitive_routes` is
    /// added (default 5).
    pub sensitive_routes_above: u32,
    /// The weight of `behavior.sensitive_routes` (default 0.3).
    pub sensitive_routes_weight: f64,
    /// Whether requests go on (with the `store.degraded` signal) when the store cannot answer
    /// (default `false`: 503).
    pub fail_open: bool,
}

impl Default for BehaviorPolicy {
    fn default() -> Self {
        Self {
            windows: BehaviorWindows::default(),
            lockout_after: 10,
            lockout_for: Duration::from_secs(900),
            failures_from: 3,
            failures_weight: 0.6,
            burst_above: 120,
            burst_weight: 0.3,
            sensitive_routes_above: 5,
            sensitive_routes_weight: 0.3,
            fail_open: false,
        }
    }
}

/// A route's requirements, ready to check.
pub(crate) struct CompiledRoute {
    pub(crate) pattern: Arc<str>,
    pub(crate) deny_all: bool,
    pub(crate) anonymous: bool,
    pub(crate) min_trust: Option<zerotrust_core::TrustLevel>,
    pub(crate) max_risk: Option<f64>,
    pub(crate) challenge_risk: Option<f64>,
    /// Space-separated, as the challenge's `acr_values` carries them.
    pub(crate) step_up_acr: Option<String>,
    pub(crate) step_up_acr_list: Vec<String>,
    pub(crate) step_up_max_age: u64,
    pub(crate) max_auth_age: Option<u64>,
    pub(crate) acr: Vec<String>,
    pub(crate) acr_values: Option<String>,
    pub(crate) amr: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) scope_param: String,
    pub(crate) any_role: Vec<String>,
    /// Per required permission, the roles granting it.
    pub(crate) permission_roles: Vec<HashSet<String>>,
    pub(crate) workloads: HashSet<String>,
    pub(crate) predicates: Vec<(Arc<str>, Predicate)>,
    #[cfg(feature = "cedar")]
    pub(crate) cedar: Option<Arc<crate::cedar::CedarPolicies>>,
    pub(crate) sensitive: bool,
    pub(crate) enforcement: Enforcement,
}

/// The compiled policy of a [`StepUpLayer`](crate::StepUpLayer). Cloning is cheap.
#[derive(Clone)]
pub struct StepUpPolicy {
    pub(crate) inner: Arc<Compiled>,
}

pub(crate) struct Compiled {
    pub(crate) by_method: HashMap<Method, matchit::Router<usize>>,
    pub(crate) any_method: matchit::Router<usize>,
    pub(crate) routes: Vec<CompiledRoute>,
    pub(crate) default_route: usize,
    pub(crate) risk_model: Arc<RiskModel>,
    pub(crate) behavior: Option<(Arc<dyn BehaviorStore>, BehaviorPolicy)>,
    pub(crate) clock: Clock,
    /// The `realm` of every challenge this layer sends, checked at build.
    pub(crate) realm: Option<Arc<str>>,
}

impl fmt::Debug for StepUpPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepUpPolicy")
            .field("routes", &self.inner.routes.len())
            .field("behavior", &self.inner.behavior.is_some())
            .field("realm", &self.inner.realm)
            .finish_non_exhaustive()
    }
}

/// Builds a [`StepUpPolicy`]. Start from [`StepUpPolicy::builder`].
pub struct StepUpPolicyBuilder {
    routes: Vec<(Option<Vec<Method>>, String, Requirements)>,
    default: Requirements,
    rbac: HashMap<String, HashSet<String>>,
    risk_model: RiskModel,
    behavior: Option<(Arc<dyn BehaviorStore>, BehaviorPolicy)>,
    enforcement: Enforcement,
    clock: Clock,
    realm: Option<Arc<str>>,
}

impl fmt::Debug for StepUpPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StepUpPolicyBuilder")
            .field("routes", &self.routes.len())
            .finish_non_exhaustive()
    }
}

impl StepUpPolicy {
    /// A policy with no routes: every request is refused until routes are declared (or a default
    /// is set with [`StepUpPolicyBuilder::default_route`]).
    ///
    /// ```
    /// use zerotrust_stepup::{Requirements, StepUpPolicy};
    ///
    /// let policy = StepUpPolicy::builder()
    ///     .route("/api/reports", Requirements::new().scopes(["reports:read"]))
    ///     .route_for(["POST"], "/api/reports", Requirements::new().scopes(["reports:write"]))
    ///     .route("/api/admin/*", Requirements::new().any_role(["admin"]))
    ///     .route("/api/users/{id}", Requirements::new())
    ///     .build()
    ///     .unwrap();
    /// # let _ = policy;
    /// ```
    pub fn builder() -> StepUpPolicyBuilder {
        StepUpPolicyBuilder {
            routes: Vec::new(),
            default: Requirements::deny_all(),
            rbac: HashMap::new(),
            risk_model: RiskModel::default(),
            behavior: None,
            enforcement: Enforcement::Enforce,
            clock: Arc::new(system_clock),
            realm: None,
        }
    }

    /// The `realm` this policy's challenges carry, if one was set with
    /// [`StepUpPolicyBuilder::realm`].
    ///
    /// ```
    /// use zerotrust_stepup::StepUpPolicy;
    /// let policy = StepUpPolicy::builder().realm("api").build().unwrap();
    /// assert_eq!(policy.realm(), Some("api"));
    /// assert_eq!(StepUpPolicy::builder().build().unwrap().realm(), None);
    /// ```
    pub fn realm(&self) -> Option<&str> {
        self.inner.realm.as_deref()
    }

    /// The number of routes, the default included.
    pub fn len(&self) -> usize {
        self.inner.routes.len()
    }

    /// Whether only the default route exists.
    pub fn is_empty(&self) -> bool {
        self.inner.routes.len() <= 1
    }

    /// The route covering `method` and `path`: `(route index, its pattern)`.
    pub(crate) fn lookup(&self, method: &Method, path: &str) -> usize {
        let c = &*self.inner;
        if let Some(router) = c.by_method.get(method)
            && let Ok(m) = router.at(path)
        {
            return *m.value;
        }
        c.any_method.at(path).map_or(c.default_route, |m| *m.value)
    }

    /// The pattern of the route covering a request (`None` for the default), for tests and
    /// diagnostics.
    ///
    /// ```
    /// use zerotrust_stepup::{Requirements, StepUpPolicy};
    /// let p = StepUpPolicy::builder().route("/a/*", Requirements::new()).build().unwrap();
    /// assert_eq!(p.matched(&http::Method::GET, "/a/b/c"), Some("/a/*"));
    /// assert_eq!(p.matched(&http::Method::GET, "/b"), None);
    /// ```
    pub fn matched(&self, method: &Method, path: &str) -> Option<&str> {
        let i = self.lookup(method, path);
        (i != self.inner.default_route)
            .then(|| self.inner.routes.get(i).map(|r| &*r.pattern))
            .flatten()
    }
}

/// `pattern` as matchit paths: `/a/*` covers `/a`, `/a/` and everything below.
fn matchit_paths(pattern: &str) -> Result<Vec<String>, String> {
    if !pattern.starts_with('/') {
        return Err("must start with '/'".into());
    }
    if pattern.split('/').any(|seg| seg.starts_with(':')) {
        return Err("':name' parameters are not supported; write '{name}'".into());
    }
    match pattern.strip_suffix("/*") {
        Some(prefix) => {
            if prefix.contains('*') {
                return Err("'*' is allowed only as the last segment".into());
            }
            let mut paths = vec![format!("{prefix}/{{*zt_rest}}"), format!("{prefix}/")];
            if !prefix.is_empty() {
                paths.push(prefix.to_owned());
            }
            Ok(paths)
        }
        None if pattern.contains('*') => Err("'*' is allowed only as the last segment".into()),
        None => Ok(vec![pattern.to_owned()]),
    }
}

fn check_threshold(pattern: &str, name: &str, value: Option<f64>) -> Result<(), PolicyError> {
    match value {
        Some(v) if !(0.0..=1.0).contains(&v) => Err(PolicyError::Threshold {
            pattern: pattern.to_owned(),
            reason: format!("{name} must be within 0..=1, not {v}"),
        }),
        _ => Ok(()),
    }
}

/// Checks that `realm` reaches the client exactly as configured. The probe goes through
/// [`Rejection::challenge`], the quoting every layer's challenges use (`JwtVerifyLayer::realm`
/// included), so what passes here is what a client sees, with no second copy of the rules.
fn check_realm(realm: &str) -> Result<(), PolicyError> {
    const PROBE: Reason = Reason::new("stepup.realm_probe", "");
    let refuse = |reason| PolicyError::Realm {
        realm: realm.to_owned(),
        reason,
    };
    if realm.is_empty() {
        return Err(refuse("it is empty; leave the realm unset instead"));
    }
    let challenge = Rejection::new(RejectionKind::MissingCredentials, PROBE)
        .with_realm(realm)
        .challenge();
    let sent = challenge
        .as_deref()
        .and_then(|c| c.strip_prefix("Bearer realm=\""))
        .and_then(|c| c.strip_suffix('"'));
    if sent == Some(realm) {
        Ok(())
    } else {
        Err(refuse(
            "only printable ASCII without '\"' and '\\' can be sent in a quoted realm",
        ))
    }
}

fn join(values: &[String]) -> Option<String> {
    (!values.is_empty()).then(|| values.join(" "))
}

impl StepUpPolicyBuilder {
    /// Requirements for `pattern` (any method). Patterns: exact (`/api/reports`), parameters
    /// (`/api/users/{id}`), and a trailing wildcard (`/api/admin/*`, which also covers
    /// `/api/admin`).
    ///
    /// ```
    /// use zerotrust_stepup::{Requirements, StepUpPolicy};
    /// let b = StepUpPolicy::builder().route("/api/users/{id}", Requirements::new());
    /// # let _ = b;
    /// ```
    pub fn route(mut self, pattern: impl Into<String>, requirements: Requirements) -> Self {
        self.routes.push((None, pattern.into(), requirements));
        self
    }

    /// Requirements for `pattern` with these methods only. Method-specific routes are looked up
    /// before routes for any method.
    ///
    /// # Panics
    ///
    /// At configuration time, if a method name is not a valid HTTP method token.
    ///
    /// ```
    /// use zerotrust_stepup::{Requirements, StepUpPolicy};
    /// let b = StepUpPolicy::builder()
    ///     .route_for(["POST", "DELETE"], "/api/reports/{id}", Requirements::new().scopes(["reports:write"]));
    /// # let _ = b;
    /// ```
    #[allow(clippy::panic)]
    pub fn route_for<'m>(
        mut self,
        methods: impl IntoIterator<Item = &'m str>,
        pattern: impl Into<String>,
        requirements: Requirements,
    ) -> Self {
        let methods = methods
            .into_iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .unwrap_or_else(|_| panic!("{m:?} is not an HTTP method"))
            })
            .collect();
        self.routes
            .push((Some(methods), pattern.into(), requirements));
        self
    }

    /// Routes with methods already parsed (the TOML loader uses this).
    pub(crate) fn route_methods(
        mut self,
        methods: Option<Vec<Method>>,
        pattern: String,
        requirements: Requirements,
    ) -> Self {
        self.routes.push((methods, pattern, requirements));
        self
    }

    /// The requirements of requests no route covers. Default: refuse them all (403
    /// `stepup.no_route`).
    ///
    /// # Warning
    ///
    /// Anything weaker than [`Requirements::deny_all`] applies to every path you did not think
    /// of, including ones added to the service later.
    ///
    /// ```
    /// use zerotrust_stepup::{Requirements, StepUpPolicy};
    /// let b = StepUpPolicy::builder().default_route(Requirements::new().min_trust(zerotrust_core::TrustLevel::High));
    /// # let _ = b;
    /// ```
    pub fn default_route(mut self, requirements: Requirements) -> Self {
        self.default = requirements;
        self
    }

    /// Grants `permissions` to `role` in the RBAC map (adds to earlier grants).
    ///
    /// ```
    /// use zerotrust_stepup::StepUpPolicy;
    /// let b = StepUpPolicy::builder()
    ///     .role("analyst", ["reports:read"])
    ///     .role("admin", ["reports:read", "reports:write"]);
    /// # let _ = b;
    /// ```
    pub fn role(
        mut self,
        role: impl Into<String>,
        permissions: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        self.rbac
            .entry(role.into())
            .or_default()
            .extend(permissions.into_iter().map(Into::into));
        self
    }

    /// The risk model (trust thresholds, signal weight overrides) installed into every request's
    /// context before deciding.
    ///
    /// ```
    /// use zerotrust_core::{RiskModel, TrustThresholds};
    /// let b = zerotrust_stepup::StepUpPolicy::builder()
    ///     .risk_model(RiskModel::new(TrustThresholds::default()).with_weight("network.public", 0.0));
    /// # let _ = b;
    /// ```
    pub fn risk_model(mut self, model: RiskModel) -> Self {
        self.risk_model = model;
        self
    }

    /// Tracks each subject's behaviour in `store`: failures (401/403 answered by this layer or
    /// the service), request bursts and sensitive routes become signals, and too many failures a
    /// lockout (429).
    ///
    /// ```
    /// use zerotrust_core::MemoryBehaviorStore;
    /// use zerotrust_stepup::{BehaviorPolicy, StepUpPolicy};
    /// let b = StepUpPolicy::builder().behavior(MemoryBehaviorStore::new(), BehaviorPolicy::default());
    /// # let _ = b;
    /// ```
    pub fn behavior(mut self, store: impl BehaviorStore, policy: BehaviorPolicy) -> Self {
        self.behavior = Some((Arc::new(store), policy));
        self
    }

    /// How refusals are applied by default (per-route settings win).
    ///
    /// # Warning
    ///
    /// `ReportOnly`, `Off` and roll-outs let requests through that the policy would refuse.
    ///
    /// ```
    /// let b = zerotrust_stepup::StepUpPolicy::builder().enforcement(zerotrust_core::Enforcement::rollout(10));
    /// # let _ = b;
    /// ```
    pub fn enforcement(mut self, mode: Enforcement) -> Self {
        self.enforcement = mode;
        self
    }

    /// Names the protection space in this layer's challenges: `realm="..."` in every
    /// `WWW-Authenticate` it sends (the 401 for a missing identity, the 400 for an ambiguous
    /// path, the 403 `insufficient_scope` and the RFC 9470 `insufficient_user_authentication`
    /// challenges). Unset (the default), challenges carry no `realm` parameter at all.
    ///
    /// **Set it to the same value as `JwtVerifyLayer::realm`** when both guard a resource, so a
    /// client sees one protection space whichever layer challenges it (RFC 6750 §3; clients may
    /// key credentials by realm). The realm is not read from the `JwtVerifyLayer` in front: the
    /// layers share no configuration, only the request's `ZeroTrust`, and a realm is not a fact
    /// about the request. Both layers render it through the same core code
    /// ([`Rejection::with_realm`]), so one value gives byte-identical `realm` parameters.
    ///
    /// Where `JwtVerifyLayer` silently drops characters a quoted string cannot carry, this
    /// builder refuses such a realm, and an empty one, at [`build`](Self::build)
    /// ([`PolicyError::Realm`]): a realm that reaches the client changed, or as `realm=""`, is a
    /// configuration mistake.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use zerotrust_stepup::{Requirements, StepUpLayer, StepUpPolicy};
    ///
    /// let policy = StepUpPolicy::builder()
    ///     .realm("api") // the same realm as JwtVerifyLayer::new(verifier).realm("api")
    ///     .route("/api/admin/*", Requirements::new().acr(["urn:example:acr:hwk"]))
    ///     .build()
    ///     .unwrap();
    /// // A weak token on /api/admin/... is answered with
    /// // WWW-Authenticate: Bearer realm="api", error="insufficient_user_authentication", ...
    /// let app: Router = Router::new()
    ///     .route("/api/admin/users", get(|| async { "users" }))
    ///     .layer(StepUpLayer::new(policy));
    ///
    /// assert!(StepUpPolicy::builder().realm("").build().is_err());
    /// assert!(StepUpPolicy::builder().realm("r\u{e9}alm").build().is_err());
    /// ```
    pub fn realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Replaces the clock (seconds since the Unix epoch), for tests.
    ///
    /// ```
    /// let b = zerotrust_stepup::StepUpPolicy::builder().clock(|| 1_900_000_000);
    /// # let _ = b;
    /// ```
    pub fn clock(mut self, clock: impl Fn() -> i64 + Send + Sync + 'static) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    fn compile_route(
        &self,
        pattern: &str,
        r: Requirements,
        default_mode: Enforcement,
    ) -> Result<CompiledRoute, PolicyError> {
        check_threshold(pattern, "max_risk", r.max_risk)?;
        check_threshold(pattern, "challenge_above", r.challenge_risk)?;
        if let (Some(challenge), Some(deny)) = (r.challenge_risk, r.max_risk)
            && challenge > deny
        {
            return Err(PolicyError::Threshold {
                pattern: pattern.to_owned(),
                reason: format!(
                    "challenge threshold {challenge} is above the deny threshold {deny}"
                ),
            });
        }
        let mut permission_roles = Vec::with_capacity(r.permissions.len());
        for permission in &r.permissions {
            let roles: HashSet<String> = self
                .rbac
                .iter()
                .filter(|(_, perms)| perms.contains(permission))
                .map(|(role, _)| role.clone())
                .collect();
            if roles.is_empty() {
                return Err(PolicyError::UngrantedPermission {
                    pattern: pattern.to_owned(),
                    permission: permission.clone(),
                });
            }
            permission_roles.push(roles);
        }
        let step_up_acr_list = if r.step_up_acr.is_empty() {
            r.acr.clone()
        } else {
            r.step_up_acr.clone()
        };
        Ok(CompiledRoute {
            pattern: Arc::from(pattern),
            deny_all: r.deny_all,
            anonymous: r.anonymous,
            min_trust: r.min_trust,
            max_risk: r.max_risk,
            challenge_risk: r.challenge_risk,
            step_up_acr: join(&step_up_acr_list),
            step_up_acr_list,
            step_up_max_age: r.step_up_max_age.unwrap_or(300),
            max_auth_age: r.max_auth_age,
            acr_values: join(&r.acr),
            acr: r.acr,
            amr: r.amr,
            scope_param: r.scopes.join(" "),
            scopes: r.scopes,
            any_role: r.any_role,
            permission_roles,
            workloads: r.workloads.into_iter().collect(),
            predicates: r.predicates,
            #[cfg(feature = "cedar")]
            cedar: r.cedar,
            sensitive: r.sensitive,
            enforcement: r.enforcement.unwrap_or(default_mode),
        })
    }

    /// Compiles the policy: the realm checked, every pattern checked and put into the matcher,
    /// every threshold checked, every permission resolved to the roles that grant it.
    pub fn build(mut self) -> Result<StepUpPolicy, PolicyError> {
        if let Some(realm) = &self.realm {
            check_realm(realm)?;
        }
        let declared = std::mem::take(&mut self.routes);
        let mut routes = Vec::with_capacity(declared.len() + 1);
        let mut by_method: HashMap<Method, matchit::Router<usize>> = HashMap::new();
        let mut any_method = matchit::Router::new();
        for (methods, pattern, requirements) in declared {
            let paths = matchit_paths(&pattern).map_err(|reason| PolicyError::Pattern {
                pattern: pattern.clone(),
                reason,
            })?;
            let index = routes.len();
            routes.push(self.compile_route(&pattern, requirements, self.enforcement)?);
            let conflict = |e: matchit::InsertError| PolicyError::Conflict {
                pattern: pattern.clone(),
                reason: e.to_string(),
            };
            match &methods {
                None => {
                    for path in &paths {
                        any_method.insert(path.clone(), index).map_err(conflict)?;
                    }
                }
                Some(methods) => {
                    for method in methods {
                        let router = by_method.entry(method.clone()).or_default();
                        for path in &paths {
                            router.insert(path.clone(), index).map_err(conflict)?;
                        }
                    }
                }
            }
        }
        let default = std::mem::take(&mut self.default);
        let default_route = routes.len();
        routes.push(self.compile_route("(default)", default, self.enforcement)?);
        Ok(StepUpPolicy {
            inner: Arc::new(Compiled {
                by_method,
                any_method,
                routes,
                default_route,
                risk_model: Arc::new(self.risk_model),
                behavior: self.behavior,
                clock: self.clock,
                realm: self.realm,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> StepUpPolicy {
        StepUpPolicy::builder()
            .route("/api/admin/*", Requirements::new())
            .route("/api/users/{id}", Requirements::new())
            .route_for(["POST"], "/api/users/{id}", Requirements::new())
            .route("/health", Requirements::new().anonymous())
            .build()
            .unwrap()
    }

    #[test]
    fn wildcards_cover_the_prefix_and_everything_below() {
        let p = policy();
        for path in [
            "/api/admin",
            "/api/admin/",
            "/api/admin/x",
            "/api/admin/x/y",
        ] {
            assert_eq!(
                p.matched(&Method::GET, path),
                Some("/api/admin/*"),
                "{path}"
            );
        }
        assert_eq!(p.matched(&Method::GET, "/api/administrator"), None);
    }

    #[test]
    fn method_routes_win_over_any_method_routes() {
        let p = policy();
        let get = p.lookup(&Method::GET, "/api/users/7");
        let post = p.lookup(&Method::POST, "/api/users/7");
        assert_ne!(get, post);
        assert_eq!(
            p.matched(&Method::DELETE, "/api/users/7"),
            Some("/api/users/{id}")
        );
    }

    #[test]
    fn bad_patterns_and_thresholds_are_refused_at_build() {
        let bad = |pattern: &str| {
            StepUpPolicy::builder()
                .route(pattern, Requirements::new())
                .build()
                .is_err()
        };
        assert!(bad("api/x"));
        assert!(bad("/api/:id"));
        assert!(bad("/a/*/b"));
        assert!(
            StepUpPolicy::builder()
                .route("/a/{x}", Requirements::new())
                .route("/a/{y}", Requirements::new())
                .build()
                .is_err()
        );
        assert!(
            StepUpPolicy::builder()
                .route("/a", Requirements::new().max_risk(0.3).challenge_above(0.5))
                .build()
                .is_err()
        );
        assert!(
            StepUpPolicy::builder()
                .route("/a", Requirements::new().permissions(["nobody:has"]))
                .build()
                .is_err()
        );
    }

    #[test]
    fn realms_a_challenge_would_alter_are_refused_at_build() {
        let realm = |r: &str| {
            StepUpPolicy::builder()
                .realm(r)
                .build()
                .map(|p| p.realm().map(str::to_owned))
        };
        for ok in ["api", "Example API v2", "https://api.example.com", "a'b~"] {
            assert_eq!(realm(ok), Ok(Some(ok.to_owned())), "{ok:?}");
        }
        for bad in [
            "",
            "a\"b",
            "a\\b",
            "r\u{e9}alm",
            "tab\there",
            "new\nline",
            "\u{7f}",
        ] {
            assert!(
                matches!(realm(bad), Err(PolicyError::Realm { ref realm, .. }) if realm == bad),
                "{bad:?}"
            );
        }
        assert_eq!(
            StepUpPolicy::builder().build().map(|p| p.realm().is_none()),
            Ok(true)
        );
    }
}

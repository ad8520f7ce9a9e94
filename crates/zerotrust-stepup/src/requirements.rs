//! What a route requires: declared in code with [`Requirements`] builder calls, or in TOML.

use std::sync::Arc;
use std::time::Duration;

use zerotrust_core::{Enforcement, TrustLevel, ZeroTrust};

/// An attribute-based rule over the request's context: `true` lets the request on.
pub type Predicate = Arc<dyn Fn(&ZeroTrust) -> bool + Send + Sync>;

/// Everything a route may require. Start from [`Requirements::new`] (a verified identity and
/// nothing else) and add what the route needs; every check is an explicit call.
///
/// ```
/// use std::time::Duration;
/// use zerotrust_core::TrustLevel;
/// use zerotrust_stepup::Requirements;
///
/// let admin = Requirements::new()
///     .min_trust(TrustLevel::High)
///     .max_risk(0.7)
///     .challenge_above(0.4)
///     .max_auth_age(Duration::from_secs(3600))
///     .acr(["urn:example:acr:hwk", "urn:example:acr:mfa"])
///     .amr(["mfa"])
///     .scopes(["admin"])
///     .any_role(["admin", "owner"])
///     .permissions(["reports:write"])
///     .sensitive();
/// # let _ = admin;
/// ```
#[derive(Clone, Default)]
pub struct Requirements {
    pub(crate) anonymous: bool,
    pub(crate) min_trust: Option<TrustLevel>,
    pub(crate) max_risk: Option<f64>,
    pub(crate) challenge_risk: Option<f64>,
    pub(crate) step_up_acr: Vec<String>,
    pub(crate) step_up_max_age: Option<u64>,
    pub(crate) max_auth_age: Option<u64>,
    pub(crate) acr: Vec<String>,
    pub(crate) amr: Vec<String>,
    pub(crate) scopes: Vec<String>,
    pub(crate) any_role: Vec<String>,
    pub(crate) permissions: Vec<String>,
    pub(crate) workloads: Vec<String>,
    pub(crate) predicates: Vec<(Arc<str>, Predicate)>,
    pub(crate) sensitive: bool,
    pub(crate) enforcement: Option<Enforcement>,
    pub(crate) deny_all: bool,
    #[cfg(feature = "cedar")]
    pub(crate) cedar: Option<Arc<crate::cedar::CedarPolicies>>,
}

impl std::fmt::Debug for Requirements {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut f = f.debug_struct("Requirements");
        f.field("anonymous", &self.anonymous)
            .field("min_trust", &self.min_trust)
            .field("max_risk", &self.max_risk)
            .field("challenge_risk", &self.challenge_risk)
            .field("acr", &self.acr)
            .field("amr", &self.amr)
            .field("scopes", &self.scopes)
            .field("any_role", &self.any_role)
            .field("permissions", &self.permissions)
            .field("workloads", &self.workloads)
            .field(
                "predicates",
                &self.predicates.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .field("deny_all", &self.deny_all);
        #[cfg(feature = "cedar")]
        f.field("cedar", &self.cedar);
        f.finish_non_exhaustive()
    }
}

impl Requirements {
    /// A verified identity, nothing more.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses every request (403 `stepup.no_route`): the default for routes no policy covers.
    ///
    /// ```
    /// let closed = zerotrust_stepup::Requirements::deny_all();
    /// # let _ = closed;
    /// ```
    pub fn deny_all() -> Self {
        Self {
            deny_all: true,
            ..Self::default()
        }
    }

    /// Lets requests without a verified identity through (the other requirements still apply;
    /// any needing an identity then fail).
    ///
    /// # Warning
    ///
    /// The route becomes public to anyone who passes the other checks, such as a workload
    /// certificate for service-to-service routes.
    ///
    /// ```
    /// let health = zerotrust_stepup::Requirements::new().anonymous();
    /// # let _ = health;
    /// ```
    pub fn anonymous(mut self) -> Self {
        self.anonymous = true;
        self
    }

    /// Refuses (403) requests below this trust level.
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().min_trust(zerotrust_core::TrustLevel::Medium);
    /// # let _ = r;
    /// ```
    pub fn min_trust(mut self, level: TrustLevel) -> Self {
        self.min_trust = Some(level);
        self
    }

    /// Refuses (403) requests whose risk score is above `score`.
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().max_risk(0.8);
    /// # let _ = r;
    /// ```
    pub fn max_risk(mut self, score: f64) -> Self {
        self.max_risk = Some(score);
        self
    }

    /// Challenges (401, RFC 9470) requests whose risk score is above `score`, unless the token
    /// already shows a stepped-up authentication (see [`step_up`](Self::step_up)).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().challenge_above(0.4);
    /// # let _ = r;
    /// ```
    pub fn challenge_above(mut self, score: f64) -> Self {
        self.challenge_risk = Some(score);
        self
    }

    /// What a stepped-up authentication is for the risk challenge: one of `acr` values (if any
    /// given) and an authentication at most `max_age` old. Defaults: the route's accepted `acr`
    /// values, and 5 minutes.
    ///
    /// ```
    /// use std::time::Duration;
    /// let r = zerotrust_stepup::Requirements::new()
    ///     .challenge_above(0.4)
    ///     .step_up(["urn:example:acr:hwk"], Duration::from_secs(300));
    /// # let _ = r;
    /// ```
    pub fn step_up(
        mut self,
        acr: impl IntoIterator<Item = impl Into<String>>,
        max_age: Duration,
    ) -> Self {
        self.step_up_acr = acr.into_iter().map(Into::into).collect();
        self.step_up_max_age = Some(max_age.as_secs());
        self
    }

    /// Challenges (401 with `max_age`) when the user authenticated longer ago than `max_age`, or
    /// the token has no `auth_time`.
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().max_auth_age(std::time::Duration::from_secs(900));
    /// # let _ = r;
    /// ```
    pub fn max_auth_age(mut self, max_age: Duration) -> Self {
        self.max_auth_age = Some(max_age.as_secs());
        self
    }

    /// Accepts these `acr` values, in order of preference; any other (or none) is challenged
    /// (401 with `acr_values`).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().acr(["urn:example:acr:mfa"]);
    /// # let _ = r;
    /// ```
    pub fn acr(mut self, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.acr = values.into_iter().map(Into::into).collect();
        self
    }

    /// Requires every one of these `amr` values (such as `mfa`, `hwk`); a token without them is
    /// challenged (401).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().amr(["mfa"]);
    /// # let _ = r;
    /// ```
    pub fn amr(mut self, values: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.amr = values.into_iter().map(Into::into).collect();
        self
    }

    /// Requires every one of these scopes (403 `insufficient_scope` naming them).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().scopes(["reports:read"]);
    /// # let _ = r;
    /// ```
    pub fn scopes(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Requires at least one of these roles (403).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().any_role(["admin"]);
    /// # let _ = r;
    /// ```
    pub fn any_role(mut self, roles: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.any_role = roles.into_iter().map(Into::into).collect();
        self
    }

    /// Requires every one of these permissions, granted through the policy's RBAC map
    /// (role -> permissions) (403).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().permissions(["reports:write"]);
    /// # let _ = r;
    /// ```
    pub fn permissions(mut self, permissions: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.permissions = permissions.into_iter().map(Into::into).collect();
        self
    }

    /// Accepts only callers whose mutual-TLS client certificate names one of these workload
    /// identities: a URI SAN (`spiffe://example.org/ns/prod/sa/frontend`) or the subject's common
    /// name (403 otherwise).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new()
    ///     .anonymous()
    ///     .workloads(["spiffe://example.org/ns/prod/sa/frontend"]);
    /// # let _ = r;
    /// ```
    pub fn workloads(mut self, ids: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.workloads = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Adds an attribute-based rule: the request is refused (403 `stepup.policy_denied`) unless
    /// `predicate` answers `true`. `name` appears in logs, never in responses.
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().predicate("same-tenant", |zt| {
    ///     zt.identity().and_then(|id| id.claim("tenant")).is_some()
    /// });
    /// # let _ = r;
    /// ```
    pub fn predicate(
        mut self,
        name: impl Into<Arc<str>>,
        predicate: impl Fn(&ZeroTrust) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.predicates.push((name.into(), Arc::new(predicate)));
        self
    }

    /// Puts the request to Cedar policies after the route's predicates (and before the risk and
    /// trust checks): unless they permit it, the request is refused (403 `stepup.cedar_denied`).
    /// A policy that fails to evaluate refuses too; the error is logged, never sent. The policies
    /// are shared: routes given the same `Arc` see one [`reload`](crate::CedarPolicies::reload).
    ///
    /// ```
    /// use std::sync::Arc;
    /// use zerotrust_stepup::{CedarPolicies, Requirements};
    ///
    /// let cedar: Arc<CedarPolicies> = Arc::new(
    ///     r#"permit(principal, action, resource) when { principal.roles.contains("admin") };"#.parse()?,
    /// );
    /// let admin = Requirements::new().cedar(Arc::clone(&cedar));
    /// let reports = Requirements::new().scopes(["reports:read"]).cedar(cedar);
    /// # let _ = (admin, reports);
    /// # Ok::<(), zerotrust_stepup::CedarError>(())
    /// ```
    #[cfg(feature = "cedar")]
    pub fn cedar(mut self, policies: impl Into<Arc<crate::cedar::CedarPolicies>>) -> Self {
        self.cedar = Some(policies.into());
        self
    }

    /// Counts the route among the subject's sensitive routes (the `behavior.sensitive_routes`
    /// signal).
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().sensitive();
    /// # let _ = r;
    /// ```
    pub fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Applies this route's refusals under `mode` instead of the layer's.
    ///
    /// # Warning
    ///
    /// `ReportOnly`, `Off` and roll-outs let requests through that the route would refuse.
    ///
    /// ```
    /// let r = zerotrust_stepup::Requirements::new().enforcement(zerotrust_core::Enforcement::ReportOnly);
    /// # let _ = r;
    /// ```
    pub fn enforcement(mut self, mode: Enforcement) -> Self {
        self.enforcement = Some(mode);
        self
    }
}

//! The route policy in TOML.

use std::collections::HashMap;
use std::time::Duration;

use http::Method;
use serde::Deserialize;
use zerotrust_core::{Enforcement, TrustLevel};

use crate::policy::{StepUpPolicy, StepUpPolicyBuilder};
use crate::requirements::Requirements;

/// A policy file that cannot be read: the TOML error names the line, the key and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid step-up policy: {0}")]
pub struct ConfigError(String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    default: Option<RouteConfig>,
    #[serde(default)]
    rbac: HashMap<String, Vec<String>>,
    #[serde(default)]
    mode: Option<Mode>,
    /// The challenges' `realm` ([`StepUpPolicyBuilder::realm`]).
    #[serde(default)]
    realm: Option<String>,
    #[serde(default, rename = "route")]
    routes: Vec<RouteConfig>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Mode {
    Named(NamedMode),
    Rollout { rollout: u8 },
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum NamedMode {
    Enforce,
    ReportOnly,
    Off,
}

impl From<Mode> for Enforcement {
    fn from(mode: Mode) -> Self {
        match mode {
            Mode::Named(NamedMode::Enforce) => Enforcement::Enforce,
            Mode::Named(NamedMode::ReportOnly) => Enforcement::ReportOnly,
            Mode::Named(NamedMode::Off) => Enforcement::Off,
            Mode::Rollout { rollout } => Enforcement::rollout(rollout),
        }
    }
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Trust {
    Untrusted,
    Low,
    Medium,
    High,
    Verified,
}

impl From<Trust> for TrustLevel {
    fn from(t: Trust) -> Self {
        match t {
            Trust::Untrusted => TrustLevel::Untrusted,
            Trust::Low => TrustLevel::Low,
            Trust::Medium => TrustLevel::Medium,
            Trust::High => TrustLevel::High,
            Trust::Verified => TrustLevel::Verified,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RouteConfig {
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    methods: Option<Vec<String>>,
    #[serde(default)]
    deny: bool,
    #[serde(default)]
    anonymous: bool,
    #[serde(default)]
    min_trust: Option<Trust>,
    #[serde(default)]
    max_risk: Option<f64>,
    #[serde(default)]
    challenge_above: Option<f64>,
    #[serde(default)]
    step_up_acr: Vec<String>,
    /// Seconds.
    #[serde(default)]
    step_up_max_age: Option<u64>,
    /// Seconds.
    #[serde(default)]
    max_auth_age: Option<u64>,
    #[serde(default)]
    acr: Vec<String>,
    #[serde(default)]
    amr: Vec<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
    #[serde(default)]
    workloads: Vec<String>,
    #[serde(default)]
    sensitive: bool,
    #[serde(default)]
    mode: Option<Mode>,
}

impl RouteConfig {
    fn requirements(self) -> Requirements {
        let mut r = if self.deny {
            Requirements::deny_all()
        } else {
            Requirements::new()
        };
        if self.anonymous {
            r = r.anonymous();
        }
        if let Some(t) = self.min_trust {
            r = r.min_trust(t.into());
        }
        if let Some(v) = self.max_risk {
            r = r.max_risk(v);
        }
        if let Some(v) = self.challenge_above {
            r = r.challenge_above(v);
        }
        if !self.step_up_acr.is_empty() || self.step_up_max_age.is_some() {
            r = r.step_up(
                self.step_up_acr,
                Duration::from_secs(self.step_up_max_age.unwrap_or(300)),
            );
        }
        if let Some(v) = self.max_auth_age {
            r = r.max_auth_age(Duration::from_secs(v));
        }
        r = r
            .acr(self.acr)
            .amr(self.amr)
            .scopes(self.scopes)
            .any_role(self.roles)
            .permissions(self.permissions)
            .workloads(self.workloads);
        if self.sensitive {
            r = r.sensitive();
        }
        if let Some(mode) = self.mode {
            r = r.enforcement(mode.into());
        }
        r
    }
}

impl StepUpPolicy {
    /// Reads a policy from TOML. The builder it answers can take what TOML cannot say
    /// (predicates, a behaviour store, a risk model) before [`build`](StepUpPolicyBuilder::build).
    ///
    /// ```
    /// use zerotrust_stepup::StepUpPolicy;
    ///
    /// let policy = StepUpPolicy::from_toml(r#"
    ///     mode = "enforce"            # or "report_only", "off", { rollout = 25 }
    ///     realm = "api"               # challenges say realm="api"; the same as JwtVerifyLayer's
    ///
    ///     [rbac]
    ///     analyst = ["reports:read"]
    ///     admin = ["reports:read", "reports:write"]
    ///
    ///     [[route]]
    ///     path = "/api/reports"
    ///     methods = ["GET"]
    ///     scopes = ["reports:read"]
    ///     challenge_above = 0.4
    ///
    ///     [[route]]
    ///     path = "/api/admin/*"
    ///     min_trust = "high"
    ///     max_risk = 0.6
    ///     acr = ["urn:example:acr:hwk"]
    ///     max_auth_age = 900
    ///     permissions = ["reports:write"]
    ///     sensitive = true
    ///
    ///     [[route]]
    ///     path = "/healthz"
    ///     anonymous = true
    /// "#)?
    /// .build()?;
    /// assert_eq!(policy.matched(&http::Method::GET, "/api/admin/users"), Some("/api/admin/*"));
    /// assert_eq!(policy.realm(), Some("api"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_toml(text: &str) -> Result<StepUpPolicyBuilder, ConfigError> {
        let file: File = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        let mut builder = StepUpPolicy::builder();
        if let Some(mode) = file.mode {
            builder = builder.enforcement(mode.into());
        }
        if let Some(realm) = file.realm {
            // Checked with the rest of the policy, at `build`.
            builder = builder.realm(realm);
        }
        for (role, permissions) in file.rbac {
            builder = builder.role(role, permissions);
        }
        if let Some(default) = file.default {
            if default.path.is_some() || default.methods.is_some() {
                return Err(ConfigError(
                    "[default] applies to unmatched requests: it takes no path or methods".into(),
                ));
            }
            builder = builder.default_route(default.requirements());
        }
        for (i, mut route) in file.routes.into_iter().enumerate() {
            let Some(path) = route.path.take() else {
                return Err(ConfigError(format!("route #{} has no path", i + 1)));
            };
            let methods = match route.methods.take() {
                None => None,
                Some(names) => Some(
                    names
                        .iter()
                        .map(|m| {
                            Method::from_bytes(m.to_ascii_uppercase().as_bytes()).map_err(|_| {
                                ConfigError(format!("route {path:?}: {m:?} is not an HTTP method"))
                            })
                        })
                        .collect::<Result<Vec<_>, _>>()?,
                ),
            };
            builder = builder.route_methods(methods, path, route.requirements());
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_bad_values_are_refused_with_the_key_named() {
        let e = StepUpPolicy::from_toml("[[route]]\npath = \"/a\"\nmax_risc = 0.5\n").unwrap_err();
        assert!(e.to_string().contains("max_risc"), "{e}");
        let e = StepUpPolicy::from_toml("[[route]]\npath = \"/a\"\nmin_trust = \"total\"\n")
            .unwrap_err();
        assert!(e.to_string().contains("total"), "{e}");
        assert!(StepUpPolicy::from_toml("[[route]]\nscopes = [\"a\"]\n").is_err());
        assert!(
            StepUpPolicy::from_toml("[[route]]\npath = \"/a\"\nmethods = [\"G ET\"]\n").is_err()
        );
    }

    #[test]
    fn modes_parse_by_name_and_rollout() {
        let b = StepUpPolicy::from_toml(
            "mode = { rollout = 30 }\n[[route]]\npath = \"/a\"\nmode = \"report_only\"\n",
        )
        .unwrap()
        .build()
        .unwrap();
        assert_eq!(b.matched(&Method::GET, "/a"), Some("/a"));
    }

    #[test]
    fn realm_is_a_top_level_option_checked_at_build() {
        let policy = StepUpPolicy::from_toml("realm = \"api\"\n[[route]]\npath = \"/a\"\n")
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(policy.realm(), Some("api"));
        let none = StepUpPolicy::from_toml("[[route]]\npath = \"/a\"\n").unwrap();
        assert_eq!(none.build().unwrap().realm(), None);
        let empty = StepUpPolicy::from_toml("realm = \"\"\n").unwrap().build();
        assert!(
            matches!(empty, Err(crate::PolicyError::Realm { .. })),
            "{empty:?}"
        );
        assert!(StepUpPolicy::from_toml("realm = 7\n").is_err());
    }
}

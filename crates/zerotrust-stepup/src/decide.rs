//! One route's requirements against one request's context: allow, challenge or deny.

use http::Method;
use zerotrust_core::{PeerCertificate, Rejection, RejectionKind, ZeroTrust};

use crate::policy::CompiledRoute;
use crate::reasons;

fn deny(reason: zerotrust_core::Reason) -> Rejection {
    Rejection::new(RejectionKind::Forbidden, reason).with_layer("stepup")
}

fn challenge(
    reason: zerotrust_core::Reason,
    acr_values: Option<String>,
    max_age: Option<u64>,
) -> Rejection {
    Rejection::new(
        RejectionKind::InsufficientUserAuthentication {
            acr_values,
            max_age,
        },
        reason,
    )
    .with_layer("stepup")
}

/// Whether the authentication is at most `max_age` seconds old at `now` (no `auth_time`: no).
fn fresh(auth_time: Option<i64>, max_age: u64, now: i64) -> bool {
    let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
    auth_time.is_some_and(|t| now.saturating_sub(t) <= max_age)
}

/// The parts of the request a decision reads besides `ZeroTrust`.
pub(crate) struct RequestFacts<'a> {
    pub(crate) certificate: Option<&'a PeerCertificate>,
    // Read by the Cedar policies only.
    #[cfg_attr(not(feature = "cedar"), allow(dead_code))]
    pub(crate) method: &'a Method,
    #[cfg_attr(not(feature = "cedar"), allow(dead_code))]
    pub(crate) path: &'a str,
}

/// Checks `route` against the request. The order is the order of the answers' strength: refusals
/// that no stronger authentication could fix (workload, scope, role, predicate, Cedar, risk,
/// trust) come before challenges, so a client is never asked to step up for a request that would
/// still be denied.
pub(crate) fn decide(
    route: &CompiledRoute,
    zt: &ZeroTrust,
    request: &RequestFacts<'_>,
    now: i64,
) -> Result<(), Rejection> {
    let certificate = request.certificate;
    if route.deny_all {
        return Err(deny(reasons::NO_ROUTE));
    }

    if !route.workloads.is_empty() {
        let allowed = certificate.is_some_and(|cert| {
            cert.uri_sans().any(|uri| route.workloads.contains(uri))
                || cert
                    .subject_common_name()
                    .is_some_and(|cn| route.workloads.contains(cn))
        });
        if !allowed {
            return Err(deny(reasons::WORKLOAD_NOT_ALLOWED));
        }
    }

    let identity = zt.identity();
    let needs_identity = !route.anonymous
        || !route.scopes.is_empty()
        || !route.any_role.is_empty()
        || !route.permission_roles.is_empty()
        || !route.acr.is_empty()
        || !route.amr.is_empty()
        || route.max_auth_age.is_some();
    let identity = match identity {
        Some(identity) => Some(identity),
        None if needs_identity => {
            return Err(Rejection::new(
                RejectionKind::MissingCredentials,
                reasons::IDENTITY_REQUIRED,
            )
            .with_layer("stepup"));
        }
        None => None,
    };

    if let Some(id) = identity {
        if route.scopes.iter().any(|s| !id.has_scope(s)) {
            return Err(Rejection::new(
                RejectionKind::InsufficientScope {
                    scope: route.scope_param.clone(),
                },
                reasons::INSUFFICIENT_SCOPE,
            )
            .with_layer("stepup"));
        }
        if !route.any_role.is_empty() && !route.any_role.iter().any(|r| id.has_role(r)) {
            return Err(deny(reasons::ROLE_REQUIRED));
        }
        for granting in &route.permission_roles {
            if !id.roles().iter().any(|r| granting.contains(r.as_str())) {
                return Err(deny(reasons::PERMISSION_REQUIRED));
            }
        }
    }

    for (name, predicate) in &route.predicates {
        if !predicate(zt) {
            tracing::debug!(target: "zerotrust::stepup", predicate = &**name, route = &*route.pattern, "predicate refused the request");
            return Err(deny(reasons::POLICY_DENIED));
        }
    }

    #[cfg(feature = "cedar")]
    if let Some(cedar) = &route.cedar {
        let input = crate::cedar::CedarInput {
            zt,
            certificate,
            method: request.method,
            route: &route.pattern,
            path: request.path,
            now,
        };
        if !cedar.permits(&input) {
            return Err(deny(reasons::CEDAR_DENIED));
        }
    }

    // Score and level only: the sorted reasons of `risk_assessment` are for the audit record.
    let risk_score = zt.risk_score();
    if route.max_risk.is_some_and(|max| risk_score > max) {
        return Err(deny(reasons::RISK_TOO_HIGH));
    }
    if route.min_trust.is_some_and(|min| zt.trust_level() < min) {
        return Err(deny(reasons::TRUST_TOO_LOW));
    }

    if let Some(id) = identity {
        if !route.acr.is_empty()
            && !id
                .acr()
                .is_some_and(|acr| route.acr.iter().any(|a| a == acr))
        {
            // With the route's max_age too: the new login must meet both, and an authorization
            // server with an old strong session would otherwise earn a second challenge.
            return Err(challenge(
                reasons::ACR_TOO_WEAK,
                route.acr_values.clone(),
                route.max_auth_age,
            ));
        }
        if route
            .amr
            .iter()
            .any(|m| !id.amr().iter().any(|have| have == m))
        {
            return Err(challenge(
                reasons::AMR_MISSING,
                route.acr_values.clone(),
                route.max_auth_age,
            ));
        }
        if let Some(max_age) = route.max_auth_age
            && !fresh(id.auth_time(), max_age, now)
        {
            return Err(challenge(reasons::AUTH_TOO_OLD, None, Some(max_age)));
        }
    }

    if route
        .challenge_risk
        .is_some_and(|threshold| risk_score > threshold)
    {
        // A session that already stepped up (strong acr, fresh authentication) passes.
        let stepped_up = identity.is_some_and(|id| {
            let strong = route.step_up_acr_list.is_empty()
                || id
                    .acr()
                    .is_some_and(|acr| route.step_up_acr_list.iter().any(|a| a == acr));
            strong && fresh(id.auth_time(), route.step_up_max_age, now)
        });
        if !stepped_up {
            return Err(challenge(
                reasons::RISK_CHALLENGE,
                route.step_up_acr.clone(),
                Some(route.step_up_max_age),
            ));
        }
    }
    Ok(())
}

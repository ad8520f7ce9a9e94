//! The stable reason codes of the decision layer's answers.

use zerotrust_core::Reason;

/// No route covers the request and the default refuses (403).
pub const NO_ROUTE: Reason =
    Reason::new("stepup.no_route", "No access policy covers this request.");
/// The path has encoded separators, dot segments or doubled slashes that could be read as
/// another route (400).
pub const AMBIGUOUS_PATH: Reason =
    Reason::new("request.ambiguous_path", "The request path is ambiguous.");
/// The route needs a verified identity and none was established (401).
pub const IDENTITY_REQUIRED: Reason =
    Reason::new("stepup.identity_required", "Authentication is required.");
/// The client certificate does not name an allowed workload (403).
pub const WORKLOAD_NOT_ALLOWED: Reason = Reason::new(
    "stepup.workload_not_allowed",
    "This service does not accept requests from the calling workload.",
);
/// A required scope is missing (403 `insufficient_scope`).
pub const INSUFFICIENT_SCOPE: Reason = Reason::new(
    "stepup.insufficient_scope",
    "The access token does not grant the scope this resource needs.",
);
/// None of the accepted roles (403).
pub const ROLE_REQUIRED: Reason = Reason::new(
    "stepup.role_required",
    "The caller's role does not allow this request.",
);
/// A required permission no role of the caller grants (403).
pub const PERMISSION_REQUIRED: Reason = Reason::new(
    "stepup.permission_required",
    "The caller's roles do not grant the permission this request needs.",
);
/// An attribute-based rule refused (403).
pub const POLICY_DENIED: Reason = Reason::new(
    "stepup.policy_denied",
    "The access policy does not allow this request.",
);
/// The risk score is above the route's deny threshold (403).
pub const RISK_TOO_HIGH: Reason = Reason::new(
    "stepup.risk_too_high",
    "The request was refused because of its risk.",
);
/// The trust level is below the route's minimum (403).
pub const TRUST_TOO_LOW: Reason = Reason::new(
    "stepup.trust_too_low",
    "The request is not trusted enough for this resource.",
);
/// The token's `acr` is not one the route accepts (401 step-up).
pub const ACR_TOO_WEAK: Reason = Reason::new(
    "stepup.acr_too_weak",
    "A stronger authentication is required.",
);
/// A required `amr` value is missing (401 step-up).
pub const AMR_MISSING: Reason = Reason::new(
    "stepup.amr_missing",
    "A different authentication method is required.",
);
/// The authentication is older than the route allows (401 with `max_age`).
pub const AUTH_TOO_OLD: Reason = Reason::new(
    "stepup.auth_too_old",
    "A more recent authentication is required.",
);
/// The risk is above the route's challenge threshold (401 step-up).
pub const RISK_CHALLENGE: Reason = Reason::new(
    "stepup.risk_challenge",
    "Unusual activity: authenticate again to continue.",
);
/// Too many failed requests: locked out for a while (429).
pub const LOCKED_OUT: Reason = Reason::new(
    "stepup.locked_out",
    "Too many failed requests; try again later.",
);
/// A Cedar policy forbids the request (403).
pub const CEDAR_DENIED: Reason = Reason::new(
    "stepup.cedar_denied",
    "The access policy does not allow this request.",
);

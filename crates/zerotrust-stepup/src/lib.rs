#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

// The flow of one request through `StepUpLayer` (layer.rs, then decide.rs):
// 1. Refuse ambiguous paths (encoded separators, dot segments, `//`) with 400: the policy and the
//    service behind must read the same path.
// 2. Find the route in the compiled matcher (method-specific routes first, then any-method
//    routes, then the default, which denies unless configured); `Off` routes pass untouched.
// 3. Install the risk model in `ZeroTrust`. With behaviour tracking and a subject: ask the store
//    (the only await, so the only boxed future), answer 429 to a locked-out subject, add the
//    `behavior.*` signals.
// 4. Decide (decide.rs), strongest refusal first: workload identity, identity, scopes (403
//    `insufficient_scope`), roles and permissions, predicates, Cedar policies (feature `cedar`,
//    cedar.rs: principal, action, resource and context built from `ZeroTrust` and the request;
//    a forbid, no permit or an evaluation error is 403 `stepup.cedar_denied`), risk above the
//    deny threshold and trust below the minimum (403), then `acr`/`amr`/`auth_time` (401 RFC 9470
//    challenge), then risk above the challenge threshold (401, unless the session already
//    stepped up).
// 5. Apply the route's enforcement (enforce, report-only, roll-out), call the service, and count
//    a 401/403 (ours or the service's) as a failure; too many lock the subject out.
// Every refusal is rendered by `layer::render`, which adds the policy's realm (if set) to the
// challenge through core's `Rejection::with_realm`, as `JwtVerifyLayer` does.

#[cfg(feature = "cedar")]
mod cedar;
mod config;
mod decide;
mod layer;
mod policy;
pub mod reasons;
mod requirements;

#[cfg(feature = "cedar")]
pub use cedar::{CedarError, CedarLocation, CedarPolicies, CedarPoliciesBuilder, CedarReloader};
pub use config::ConfigError;
pub use layer::{ResponseFuture, StepUp, StepUpLayer};
pub use policy::{BehaviorPolicy, Clock, PolicyError, StepUpPolicy, StepUpPolicyBuilder};
pub use requirements::{Predicate, Requirements};

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// The flow of one request through `StepUpLayer` (layer.rs, then decide.rs):
// 1. Refuse ambiguous paths (encoded separators, dot segments, `//`) with 400: the policy and the
//    service behind must read the same path.
// 2. Find the route in the compiled matcher (method-specific routes first, then any-method
//    routes, then the default, which denies unless configured); `Off` routes pass untouched.
// 3. Install the risk model in `ZeroTrust`. With behaviour tracking and a subject: ask the store
//    (the only await, so the only boxed future), answer 429 to a locked-out subject, add the
//    `behavior.*` signals.
// 4. Decide (decide.rs), strongest refusal first: workload identity, identity, scopes (403
//    `insufficient_scope`), roles and permissions, predicates, risk above the deny threshold and
//    trust below the minimum (403), then `acr`/`amr`/`auth_time` (401 RFC 9470 challenge), then
//    risk above the challenge threshold (401, unless the session already stepped up).
// 5. Apply the route's enforcement (enforce, report-only, roll-out), call the service, and count
//    a 401/403 (ours or the service's) as a failure; too many lock the subject out.

mod config;
mod decide;
mod layer;
mod policy;
pub mod reasons;
mod requirements;

pub use config::ConfigError;
pub use layer::{ResponseFuture, StepUp, StepUpLayer};
pub use policy::{BehaviorPolicy, Clock, PolicyError, StepUpPolicy, StepUpPolicyBuilder};
pub use requirements::{Predicate, Requirements};

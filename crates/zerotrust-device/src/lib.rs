#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// The flow of one request through `DeviceCheckLayer` (layer.rs, then check.rs):
// 1. Gather the device evidence the layer accepts, strongest first: the mTLS client certificate
//    (`PeerCertificate` extension), a signed posture assertion (verified here, with its keys,
//    type, issuer, audience and freshness), then `X-Device-Id` + `X-Device-Fingerprint`.
//    Malformed headers: 400. Forged or expired assertion, unrecognised certificate, evidence
//    naming two devices: 403. No evidence: 403, or the `device.absent` signal if allowed.
// 2. Ask the registry for the device (async). Unknown: register it to the verified subject when
//    auto-registration is on (`device.new`), else `device.unknown`.
// 3. Check the binding: a header-identified device must present the registered fingerprint; a
//    device owned by other subjects is refused; an assertion naming another owner is refused.
// 4. Evaluate the posture (the assertion's, else the registry's) against the policy: blocking
//    rules refuse with `device.noncompliant.<rule>`, others add `device.noncompliant`.
// 5. Record the `DeviceAssessment` and the signals in `ZeroTrust` (also when refusing), then call
//    the inner service. A registry that cannot answer refuses with 503 unless fail-open.

mod assertion;
mod check;
mod layer;
mod policy;
pub mod reasons;

pub use assertion::{DEFAULT_TYP, PostureAssertions};
pub use check::{
    BuildError, CertificateIds, Clock, DeviceCheck, DeviceCheckBuilder, DeviceFindings,
};
pub use layer::{DeviceCheckLayer, DeviceCheckService, ResponseFuture};
pub use policy::{InvalidVersion, PosturePolicy, PosturePolicyBuilder, RuleAction, Violation};
/// Enforce, report only, roll out by percentage, or turn off (re-exported from `zerotrust-core`).
pub use zerotrust_core::Enforcement;

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// The flow of a request through this crate's types:
// 1. The first zerotrust layer calls `ZeroTrust::get_or_insert(req.extensions_mut())`.
// 2. Each layer adds its findings: `set_identity`, `add_signal`, later device and network.
// 3. A layer that refuses builds a `Rejection`, attaches the context (`with_context`) and
//    renders it: status, `WWW-Authenticate`, problem body, context in the response extensions.
// 4. Handlers read the context through the axum extractor in `extract`.
// 5. An outer audit layer reads refusals' contexts from the response, and allowed requests'
//    from the `tap` each layer notes as it passes the request inward.

pub mod behavior;
pub mod client_ip;
mod context;
pub mod device;
mod enforcement;
mod extract;
pub mod geo;
mod identity;
pub mod location;
pub mod peer_cert;
mod rejection;
pub mod revocation;
pub mod risk;
pub mod service;
mod signal;
pub mod tap;

pub use behavior::{Behavior, BehaviorStore, BehaviorWindows, MemoryBehaviorStore};
pub use client_ip::{
    ClientIp, ClientIpError, ClientIpOrigin, ClientIpResolver, ClientIpResolverBuilder,
    ForwardedSource, OnInvalidForwarded, PeerAddr,
};
pub use context::{Decision, Outcome, ZeroTrust};
pub use device::{
    Compliance, DeviceAssessment, DeviceBinding, DeviceRecord, DeviceRegistry, DeviceStatus,
    FingerprintDigest, MemoryDeviceRegistry, Posture, PostureRule, Registration,
};
pub use enforcement::Enforcement;
pub use extract::MissingZeroTrust;
pub use geo::{CountryCode, GeoLocation, GeoLocator, GeoPoint, NetworkAssessment, NetworkZone};
pub use identity::{Identity, IdentityParts};
pub use location::{LocationHistory, MemoryLocationHistory, Sighting};
pub use peer_cert::{CertificateError, PeerCertificate};
pub use rejection::{Reason, Rejection, RejectionKind};
pub use revocation::{MemoryRevocationStore, RevocationStore, StoreError, StoreFuture};
pub use risk::{InvalidThresholds, RiskAssessment, RiskModel, TrustLevel, TrustThresholds};
pub use signal::RiskSignal;

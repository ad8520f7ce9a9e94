#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub use zerotrust_core::{
    BehaviorStore, ClientIp, ClientIpResolver, Compliance, Decision, DeviceAssessment,
    DeviceRecord, DeviceRegistry, Enforcement, FingerprintDigest, ForwardedSource, Identity,
    LocationHistory, MemoryBehaviorStore, MemoryDeviceRegistry, MemoryLocationHistory,
    MemoryRevocationStore, NetworkAssessment, Outcome, PeerAddr, PeerCertificate, Posture, Reason,
    Rejection, RejectionKind, RevocationStore, RiskAssessment, RiskModel, RiskSignal, StoreError,
    TrustLevel, ZeroTrust,
};

/// Device checks: [`DeviceCheckLayer`](device::DeviceCheckLayer), posture policy and assertions.
pub mod device {
    pub use zerotrust_device::*;
}

/// Bearer-token verification: [`JwtVerifyLayer`](jwt::JwtVerifyLayer) and its verifier.
pub mod jwt {
    pub use zerotrust_jwt::*;
}

/// Network and location checks: [`GeoRiskLayer`](geo::GeoRiskLayer), locators, lists, travel.
pub mod geo {
    pub use zerotrust_geo::*;
}

/// The decision point: [`StepUpLayer`](stepup::StepUpLayer), route policy, RBAC, step-up.
pub mod stepup {
    pub use zerotrust_stepup::*;
}

/// The record of every decision: [`AuditLogLayer`](audit::AuditLogLayer), sinks, the hash chain.
pub mod audit {
    pub use zerotrust_audit::*;
}

/// Redis implementations of the state stores, shared by many replicas (feature `redis`).
#[cfg(feature = "redis")]
pub mod redis {
    pub use zerotrust_redis::*;
}

pub use zerotrust_audit::{Audit, AuditLogLayer, JsonFileSink, TracingSink};
pub use zerotrust_device::{DeviceCheck, DeviceCheckLayer};
pub use zerotrust_geo::{GeoRisk, GeoRiskLayer};
pub use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
pub use zerotrust_stepup::{Requirements, StepUpLayer, StepUpPolicy};

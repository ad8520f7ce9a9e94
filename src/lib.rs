#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub use zerotrust_core::{
    ClientIp, ClientIpResolver, Decision, DeviceAssessment, DeviceRegistry, Identity,
    LocationHistory, MemoryDeviceRegistry, MemoryLocationHistory, MemoryRevocationStore,
    NetworkAssessment, Outcome, PeerCertificate, Reason, Rejection, RejectionKind, RevocationStore,
    RiskAssessment, RiskModel, RiskSignal, StoreError, TrustLevel, ZeroTrust,
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

pub use zerotrust_device::{DeviceCheck, DeviceCheckLayer};
pub use zerotrust_geo::{GeoRisk, GeoRiskLayer};
pub use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};

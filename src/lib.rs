#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub use zerotrust_core::{
    Decision, Identity, MemoryRevocationStore, Outcome, Reason, Rejection, RejectionKind,
    RevocationStore, RiskSignal, StoreError, ZeroTrust,
};

/// Bearer-token verification: [`JwtVerifyLayer`](jwt::JwtVerifyLayer) and its verifier.
pub mod jwt {
    pub use zerotrust_jwt::*;
}

pub use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};

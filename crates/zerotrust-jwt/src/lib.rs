#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// How a request flows through this crate, top to bottom:
// - `layer`: JwtVerifyLayer / JwtVerify read the token (`source`), hand it to the verifier, put
//   the identity into `ZeroTrust` or answer with a `Rejection`.
// - `verifier`: size limit, cache, `jws` parse, `claims` read, issuer and key lookup (`issuer`,
//   `key`), signature, claim checks, revocation.
// - `issuer` keeps remote keys fresh through `fetch`.

mod algorithm;
mod claims;
mod error;
mod fetch;
mod issuer;
mod jws;
mod key;
mod layer;
mod source;
mod verifier;

pub use algorithm::Algorithm;
pub use error::{VerifyError, reasons};
pub use fetch::{FetchError, HttpSettings};
pub use issuer::{ClaimCheck, Issuer};
pub use jws::{CompactJws, JoseHeader, JwsError};
pub use key::{IgnoredKey, KeyError, KeyLookup, KeyPolicy, KeySet, VerifyingKey};
pub use layer::{JwtVerify, JwtVerifyLayer, ResponseFuture, TokenVerdict};
pub use source::TokenSource;
pub use verifier::{BuildError, JwtVerifier, JwtVerifierBuilder};
/// Enforce, report only, roll out by percentage, or turn off (re-exported from `zerotrust-core`).
pub use zerotrust_core::Enforcement;

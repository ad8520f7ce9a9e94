//! Development issuer and token minting for zerotrust's tests, benches, examples and demo.
//!
//! - [`SigningKey`]: RSA, EC, Ed25519 and HMAC keys generated on the spot, with their public JWK,
//!   DER and PEM forms.
//! - [`TokenBuilder`]: any header, any claims, signed with any key, including the malformed tokens
//!   attacks are made of.
//! - [`DevIssuer`]: an OpenID Provider's discovery document and JWK Set served on 127.0.0.1, with
//!   key rotation, failure injection and hit counters.
//! - [`store_suite`]: one test suite per state-store trait, run against every implementation.
//! - [`geo_suite`]: one test suite every `GeoLocator` passes (embedded data, MaxMind files).
//!
//! Not for production: the keys live in memory and the issuer has no authentication at all.

pub mod geo_suite;
mod issuer;
mod keys;
pub mod store_suite;
mod token;

pub use issuer::{DEFAULT_AUDIENCE, DevIssuer};
pub use keys::SigningKey;
pub use token::{TokenBuilder, b64url, compact, unix_now};

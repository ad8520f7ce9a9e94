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

/// Sends `req` through `app` and answers its response, polling the future once: for benches and
/// tests of layers whose stores answer at once (in memory), so no runtime is involved.
///
/// # Panics
///
/// If the future is not ready on its first poll (something awaited I/O).
#[allow(clippy::panic)]
pub fn respond_now(
    app: &axum::Router,
    req: axum::http::Request<axum::body::Body>,
) -> axum::http::Response<axum::body::Body> {
    use std::future::Future as _;
    use tower::ServiceExt as _;

    let mut fut = std::pin::pin!(app.clone().oneshot(req));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(Ok(response)) => response,
        std::task::Poll::Ready(Err(never)) => match never {},
        std::task::Poll::Pending => panic!("the request did not complete on its first poll"),
    }
}

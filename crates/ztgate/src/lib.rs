#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// How a request flows through the gateway, top to bottom:
// - `server`: the acceptor (TCP, TLS, mutual TLS) records the peer address and the client
//   certificate; built-in endpoints (`/healthz`, `/readyz`, `/metrics`, the JWKS) answer at once;
//   identity headers sent by the client are removed; the audit layer wraps the rest.
// - `server::Dispatch`: picks the route of the current compiled stack (longest prefix), resolves
//   the client IP (trusted proxies only) into `ZeroTrust`, and calls the route's stack.
// - `stack`: JwtVerify → DeviceCheck → GeoRisk → StepUp (the route's policy) → `proxy::Forward`.
// - `proxy`: hop-by-hop headers out, forwarding headers in, the signed identity assertion
//   (`identity`), the route's pooled upstream client (`client`: plain, or rustls for https://)
//   with timeouts, bodies streamed both ways under an idle timeout (`body`); 502/504 problems
//   (`problem`) when the upstream does not answer.
// - `config`: the TOML file, read strictly; errors name file, line, column and key.

mod body;
mod client;
pub mod config;
pub mod identity;
mod problem;
mod proxy;
mod server;
mod stack;

pub use config::{Config, ConfigError};
pub use identity::{ASSERTION_TYP, JWKS_PATH};
pub use server::{Gateway, StartError};

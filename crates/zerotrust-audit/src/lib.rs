#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// The flow of one request through this crate:
// 1. `AuditLog::call` (layer.rs) takes or makes the request id, puts an `AuditTap` into the
//    request extensions, reserves room in the writer's queue (waiting, or counting a drop, when
//    it is full), and calls inward.
// 2. The checking layers inside note each pass on the tap (zerotrust-core `tap::note_pass`); a
//    refusal carries the `ZeroTrust` context in the response extensions.
// 3. On the response (or on an error, or when the future is dropped) the layer moves what it
//    learned into an `AuditEvent` and sends it with the reserved permit: no formatting, no I/O.
// 4. The writer thread (writer.rs) takes batches, counts metrics, writes every sink (file.rs:
//    hash-chained JSON Lines with rotation; sink.rs: tracing, stdout), and syncs per policy.
// 5. `zerotrust-audit verify` (verify.rs) checks a chain and names the first broken record.

pub mod chain;
mod event;
mod file;
mod json;
mod layer;
mod request_id;
mod sink;
mod verify;
mod writer;

pub use chain::ChainKey;
pub use event::{AuditEvent, ECS_VERSION, SCHEMA_VERSION};
pub use file::{DEFAULT_MAX_FILE_SIZE, JsonFileSink, JsonFileSinkBuilder};
pub use layer::{AUDIT_UNAVAILABLE, AuditLog, AuditLogLayer, ResponseFuture};
pub use request_id::{MAX_REQUEST_ID_LEN, X_REQUEST_ID};
pub use sink::{AuditSink, StdoutSink, TracingSink};
pub use verify::{ChainError, Verified, VerifyOptions, verify_files};
pub use writer::{Audit, AuditBuilder, Durability, Overflow};

//! Where records go: the sink trait and the `tracing` and stdout sinks. The file sink is in
//! `file.rs`.

use std::io::{self, Write};

use crate::AuditEvent;
use crate::chain::{Chain, ChainKey, GENESIS};

/// A destination for audit records, driven by the writer thread (never by the request path).
///
/// `write` gets each batch in order; `sync` makes everything written so far durable (called per
/// the [`Durability`](crate::Durability) policy, on [`Audit::flush`](crate::Audit::flush) and at
/// shutdown). A sink that fails returns the error: the writer keeps the batch and retries it, so
/// records are delayed, never lost (and requests wait for queue space, then are refused with 503,
/// rather than going unrecorded). A sink must therefore not write part of a batch twice: write
/// into a buffer and commit it whole, as the built-in sinks do. A sink that panics stops the
/// pipeline, and requests are refused with 503 from then on (fail closed).
///
/// ```
/// use std::io;
/// use zerotrust_audit::{AuditEvent, AuditSink};
///
/// /// Counts decisions by outcome.
/// #[derive(Default)]
/// struct Counting(std::collections::HashMap<&'static str, u64>);
///
/// impl AuditSink for Counting {
///     fn write(&mut self, batch: &[AuditEvent]) -> io::Result<()> {
///         for event in batch {
///             *self.0.entry(event.decision().outcome.as_str()).or_default() += 1;
///         }
///         Ok(())
///     }
/// }
/// ```
pub trait AuditSink: Send + 'static {
    /// Writes a batch of records.
    fn write(&mut self, batch: &[AuditEvent]) -> io::Result<()>;

    /// Makes the records written so far durable. The default does nothing.
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Called once when the writer stops, after the last `sync`.
    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: AuditSink + ?Sized> AuditSink for Box<S> {
    fn write(&mut self, batch: &[AuditEvent]) -> io::Result<()> {
        (**self).write(batch)
    }
    fn sync(&mut self) -> io::Result<()> {
        (**self).sync()
    }
    fn close(&mut self) -> io::Result<()> {
        (**self).close()
    }
}

/// One `tracing` event per record, at `INFO` on target `zerotrust::audit` (`WARN` for refusals
/// and errors), with the record's main fields as event fields; for services that already ship
/// their logs.
///
/// ```
/// use zerotrust_audit::{Audit, TracingSink};
///
/// let audit = Audit::builder().sink(TracingSink).start().unwrap();
/// # drop(audit);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingSink;

impl AuditSink for TracingSink {
    fn write(&mut self, batch: &[AuditEvent]) -> io::Result<()> {
        for event in batch {
            let decision = event.decision();
            if let Some(count) = event.dropped_count() {
                tracing::warn!(target: "zerotrust::audit", dropped = count, "audit events dropped: the queue was full");
                continue;
            }
            let zt = event.context();
            let subject = zt.and_then(|zt| zt.subject()).unwrap_or("");
            let client_ip = zt
                .and_then(|zt| zt.client_ip())
                .map(|ip| ip.addr().to_string())
                .unwrap_or_default();
            let request_id = event.request_id().unwrap_or("");
            let status = event.status().unwrap_or(0);
            let outcome = decision.outcome.as_str();
            let reason = decision.reason.code();
            if event.passed() && decision.outcome == zerotrust_core::Outcome::Allow {
                tracing::info!(target: "zerotrust::audit", request_id, subject, client_ip, outcome, reason, layer = decision.layer, enforced = decision.enforced, status, "zero-trust decision");
            } else {
                tracing::warn!(target: "zerotrust::audit", request_id, subject, client_ip, outcome, reason, layer = decision.layer, enforced = decision.enforced, status, "zero-trust decision");
            }
        }
        Ok(())
    }
}

/// JSON Lines on standard output, hash-chained like the file sink (a chain starting afresh with
/// each process), for containers whose platform collects stdout.
///
/// ```
/// use zerotrust_audit::{Audit, StdoutSink};
///
/// let audit = Audit::builder().sink(StdoutSink::new()).start().unwrap();
/// # drop(audit);
/// ```
#[derive(Debug)]
pub struct StdoutSink {
    chain: Chain,
    buf: Vec<u8>,
}

impl Default for StdoutSink {
    fn default() -> Self {
        Self::new()
    }
}

impl StdoutSink {
    /// A stdout sink with a SHA-256 chain.
    pub fn new() -> Self {
        Self {
            chain: Chain::new(0, GENESIS, None),
            buf: Vec::new(),
        }
    }

    /// Links records with HMAC-SHA256 under `key` (see [`ChainKey`]).
    pub fn chain_key(mut self, key: ChainKey) -> Self {
        self.chain = Chain::new(0, GENESIS, Some(key));
        self
    }
}

impl AuditSink for StdoutSink {
    fn write(&mut self, batch: &[AuditEvent]) -> io::Result<()> {
        let mut chain = self.chain.clone();
        self.buf.clear();
        for event in batch {
            let start = self.buf.len();
            event.write_json(&mut self.buf)?;
            chain.seal_at(&mut self.buf, start)?;
        }
        let mut out = io::stdout().lock();
        out.write_all(&self.buf)?;
        out.flush()?;
        // Committed only once the whole batch is out, so a retried batch is not chained twice.
        self.chain = chain;
        Ok(())
    }
}

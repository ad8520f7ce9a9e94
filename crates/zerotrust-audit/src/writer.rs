//! The audit pipeline: a bounded queue from the request path to one writer thread that batches,
//! writes every sink, and syncs per the durability policy.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::{AuditEvent, AuditSink};

/// When the writer makes records durable (`fsync` for files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// After every batch, before the next is taken (the default): a record acknowledged by
    /// [`Audit::flush`] or followed by a later batch is on disk.
    #[default]
    EveryBatch,
    /// At most this long after a write.
    ///
    /// # Warning
    /// Records of the last interval can be lost in a power failure or kernel crash (not in a
    /// process crash: they are in the page cache).
    Interval(Duration),
    /// Never explicitly; the operating system writes back when it likes.
    ///
    /// # Warning
    /// Seconds of records can be lost in a power failure. Use for development, or when the sink
    /// is not a local file.
    Never,
}

/// What the request path does when the queue to the writer is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// The request waits for room before it is passed inward (the default). If no room appears
    /// within `max_wait` (a sink failing for that long) it is refused with 503 before reaching
    /// the service: nothing runs unrecorded.
    Backpressure {
        /// How long a request may wait for room in the queue (default 5 s).
        max_wait: Duration,
    },
    /// The request goes on and its record is dropped; every drop is counted
    /// (`zerotrust_audit_dropped_total`) and the count is written to the log as an
    /// `audit-events-dropped` record.
    ///
    /// # Warning
    /// Requests then run without a record of their own. Choose this only where availability
    /// matters more than a complete audit trail.
    DropAndCount,
}

impl Default for Overflow {
    fn default() -> Self {
        Overflow::Backpressure {
            max_wait: Duration::from_secs(5),
        }
    }
}

// Inline for the same reason as `EventKind`.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Event(AuditEvent),
    Flush(oneshot::Sender<io::Result<()>>),
    Shutdown(oneshot::Sender<io::Result<()>>),
}

pub(crate) struct Shared {
    pub(crate) overflow: Overflow,
    pub(crate) dropped: AtomicU64,
}

/// A handle on the audit pipeline: give it to [`AuditLogLayer`](crate::AuditLogLayer); keep one
/// to [`flush`](Audit::flush) in tests and to [`shutdown`](Audit::shutdown) at the end.
///
/// Cloning is cheap. The writer thread runs until [`shutdown`](Audit::shutdown) or until every
/// handle is dropped; either way it writes and syncs everything queued before it stops.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use zerotrust_audit::{Audit, JsonFileSink, TracingSink};
///
/// let dir = std::env::temp_dir().join(format!("zt-audit-handle-{}", std::process::id()));
/// let audit = Audit::builder()
///     .sink(JsonFileSink::open(dir.join("audit.jsonl"))?)
///     .sink(TracingSink)
///     .start()?;
/// // ... serve with AuditLogLayer::new(audit.clone()) ...
/// audit.flush().await?;    // everything so far is written and synced
/// audit.shutdown().await?; // drained, synced, closed; later requests get 503
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Audit {
    pub(crate) tx: mpsc::Sender<Msg>,
    pub(crate) shared: Arc<Shared>,
}

impl fmt::Debug for Audit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Audit")
            .field("overflow", &self.shared.overflow)
            .field("queued", &(self.tx.max_capacity() - self.tx.capacity()))
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// The reason an event is not accepted.
pub(crate) enum Reserve {
    Ready(mpsc::OwnedPermit<Msg>),
    Full,
    Dropped,
    Closed,
}

impl Audit {
    /// A builder with no sinks yet.
    pub fn builder() -> AuditBuilder {
        AuditBuilder {
            sinks: Vec::new(),
            capacity: 8192,
            max_batch: 1024,
            batch_interval: DEFAULT_BATCH_INTERVAL,
            durability: Durability::default(),
            overflow: Overflow::default(),
        }
    }

    /// Waits until every record queued before this call is written to every sink and synced.
    pub async fn flush(&self) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx.send(Msg::Flush(ack)).await.map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Stops the pipeline: writes and syncs every record queued, closes the sinks, and waits for
    /// it. Requests arriving afterwards are refused with 503 (nothing runs unrecorded). Call it
    /// after the server's graceful shutdown has finished its requests.
    pub async fn shutdown(&self) -> io::Result<()> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send(Msg::Shutdown(ack))
            .await
            .map_err(|_| stopped())?;
        done.await.map_err(|_| stopped())?
    }

    /// Events dropped so far under [`Overflow::DropAndCount`].
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Records waiting in the queue.
    pub fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }

    pub(crate) fn try_reserve(&self) -> Reserve {
        match self.tx.clone().try_reserve_owned() {
            Ok(permit) => Reserve::Ready(permit),
            Err(mpsc::error::TrySendError::Closed(_)) => Reserve::Closed,
            Err(mpsc::error::TrySendError::Full(_)) => match self.shared.overflow {
                Overflow::Backpressure { .. } => Reserve::Full,
                Overflow::DropAndCount => {
                    self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                    metrics::counter!("zerotrust_audit_dropped_total").increment(1);
                    Reserve::Dropped
                }
            },
        }
    }
}

fn stopped() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the audit writer has stopped")
}

/// Builds an [`Audit`] pipeline.
#[must_use]
pub struct AuditBuilder {
    sinks: Vec<Box<dyn AuditSink>>,
    capacity: usize,
    max_batch: usize,
    batch_interval: Duration,
    durability: Durability,
    overflow: Overflow,
}

impl fmt::Debug for AuditBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuditBuilder")
            .field("sinks", &self.sinks.len())
            .field("capacity", &self.capacity)
            .field("max_batch", &self.max_batch)
            .field("batch_interval", &self.batch_interval)
            .field("durability", &self.durability)
            .field("overflow", &self.overflow)
            .finish()
    }
}

impl AuditBuilder {
    /// Adds a sink; records go to every sink, in the order added.
    ///
    /// ```
    /// let b = zerotrust_audit::Audit::builder().sink(zerotrust_audit::TracingSink);
    /// # let _ = b;
    /// ```
    pub fn sink(mut self, sink: impl AuditSink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// Room in the queue between the request path and the writer (default 8192 records).
    ///
    /// ```
    /// let b = zerotrust_audit::Audit::builder().queue_capacity(65_536);
    /// # let _ = b;
    /// ```
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.capacity = records.max(1);
        self
    }

    /// The most records the writer takes per batch (default 1024).
    ///
    /// ```
    /// let b = zerotrust_audit::Audit::builder().max_batch(256);
    /// # let _ = b;
    /// ```
    pub fn max_batch(mut self, records: usize) -> Self {
        self.max_batch = records.max(1);
        self
    }

    /// How often the writer collects what is queued while records keep coming (default 10 ms,
    /// kept within 1 ms..=1 s). Requests never wait for it: it is how long a record may sit in
    /// the queue before it is written (and, with [`Durability::EveryBatch`], synced).
    ///
    /// Shorter means records reach the sink sooner, and less of the answered requests' trail is
    /// at risk in a power failure; but every batch costs the writer a wake-up, a write and a sync,
    /// and on a machine with few cores that CPU is taken from the service. Measured on 2 cores
    /// (BENCHMARKS.md): 2 ms batches cost the full stack a fifth of its throughput against 10 ms;
    /// 25 ms gained nothing more.
    ///
    /// ```
    /// let b = zerotrust_audit::Audit::builder().batch_interval(std::time::Duration::from_millis(2));
    /// # let _ = b;
    /// ```
    pub fn batch_interval(mut self, interval: Duration) -> Self {
        self.batch_interval = interval.clamp(Duration::from_millis(1), Duration::from_secs(1));
        self
    }

    /// When records are made durable (default: after every batch). See [`Durability`] for what
    /// the others risk.
    ///
    /// ```
    /// use std::time::Duration;
    /// use zerotrust_audit::{Audit, Durability};
    ///
    /// let b = Audit::builder().durability(Durability::Interval(Duration::from_millis(100)));
    /// # let _ = b;
    /// ```
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// How long a request may wait for room in a full queue before it is refused with 503
    /// (default 5 s; backpressure is the default policy).
    ///
    /// ```
    /// let b = zerotrust_audit::Audit::builder().max_wait(std::time::Duration::from_secs(1));
    /// # let _ = b;
    /// ```
    pub fn max_wait(mut self, max_wait: std::time::Duration) -> Self {
        self.overflow = Overflow::Backpressure { max_wait };
        self
    }

    /// Drops (and counts) records when the queue is full instead of making requests wait.
    ///
    /// # Warning
    /// Requests then run without a record of their own; see [`Overflow::DropAndCount`].
    ///
    /// ```
    /// let b = zerotrust_audit::Audit::builder().drop_when_full();
    /// # let _ = b;
    /// ```
    pub fn drop_when_full(mut self) -> Self {
        self.overflow = Overflow::DropAndCount;
        self
    }

    /// Starts the writer thread. Fails if no sink was added or the thread cannot start.
    pub fn start(self) -> io::Result<Audit> {
        if self.sinks.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "an audit pipeline needs at least one sink",
            ));
        }
        let (tx, rx) = mpsc::channel(self.capacity);
        let shared = Arc::new(Shared {
            overflow: self.overflow,
            dropped: AtomicU64::new(0),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let mut writer = Writer {
            sinks: self.sinks,
            durability: self.durability,
            max_batch: self.max_batch,
            tick: self.batch_interval,
            // Quiet after about 100 ms without records: then it waits to be woken instead.
            quiet_ticks: u32::try_from(QUIET.as_micros() / self.batch_interval.as_micros().max(1))
                .unwrap_or(u32::MAX)
                .max(1),
            shared: Arc::clone(&shared),
            reported_drops: 0,
            dirty: false,
        };
        std::thread::Builder::new()
            .name("zerotrust-audit".into())
            .spawn(move || runtime.block_on(writer.run(rx)))?;
        Ok(Audit { tx, shared })
    }
}

struct Writer {
    sinks: Vec<Box<dyn AuditSink>>,
    durability: Durability,
    max_batch: usize,
    /// How often records are collected while busy.
    tick: Duration,
    /// Empty ticks after which the writer waits to be woken instead.
    quiet_ticks: u32,
    shared: Arc<Shared>,
    reported_drops: u64,
    /// Written but not yet synced.
    dirty: bool,
}

/// The longest pause between retries of a failing sink.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How often the writer collects records while busy, unless configured.
const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(10);
/// Time without records after which the writer waits to be woken instead of ticking.
const QUIET: Duration = Duration::from_millis(100);
/// How long shutdown waits for requests in flight to send their records.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);
/// Retries of a failing sink at shutdown before giving up.
const SHUTDOWN_RETRIES: u32 = 20;

impl Writer {
    async fn run(&mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut msgs = Vec::with_capacity(self.max_batch);
        let mut events = Vec::with_capacity(self.max_batch);
        let mut written_at = Instant::now();
        let mut quiet_ticks = self.quiet_ticks;
        let mut more_waiting = false;
        loop {
            let (received, closed) = if quiet_ticks < self.quiet_ticks {
                // Busy: collect on a tick rather than being woken by every record, which would
                // cost each request a cross-thread wake-up (a syscall).
                if !more_waiting {
                    tokio::time::sleep(self.tick).await;
                }
                drain(&mut rx, &mut msgs, self.max_batch)
            } else {
                // Quiet: wait for the next record (one wake-up), or the sync deadline.
                let wait = rx.recv_many(&mut msgs, self.max_batch);
                let received = match self.durability {
                    Durability::Interval(every) if self.dirty => {
                        let left = every.saturating_sub(written_at.elapsed());
                        tokio::time::timeout(left, wait).await.ok()
                    }
                    _ => Some(wait.await),
                };
                match received {
                    Some(n) => (n, n == 0),
                    None => (0, false),
                }
            };
            more_waiting = received == self.max_batch;
            if received == 0 {
                if closed {
                    // Every handle dropped and the queue drained.
                    let _ = self.finish(&mut events).await;
                    return;
                }
                quiet_ticks = quiet_ticks.saturating_add(1);
                if let Durability::Interval(every) = self.durability
                    && self.dirty
                    && written_at.elapsed() >= every
                {
                    let _ = self.sync_all();
                }
                continue;
            }
            quiet_ticks = 0;
            metrics::gauge!("zerotrust_audit_queue_depth").set(rx.len() as f64);
            let mut stop = None;
            for msg in msgs.drain(..) {
                match msg {
                    Msg::Event(event) => events.push(event),
                    Msg::Flush(ack) => {
                        let result = self.write(&mut events, false).await;
                        let result = result.and_then(|()| self.sync_all());
                        let _ = ack.send(result);
                    }
                    Msg::Shutdown(ack) => {
                        rx.close();
                        stop = Some(ack);
                    }
                }
            }
            if let Some(ack) = stop {
                let result = self.stop(&mut rx, &mut events).await;
                let _ = ack.send(result);
                return;
            }
            if self.write(&mut events, false).await.is_ok() {
                written_at = Instant::now();
                if self.durability == Durability::EveryBatch {
                    let _ = self.sync_all();
                }
            }
        }
    }

    /// After `close`: takes every record still coming (requests in flight hold reserved room
    /// and may still send theirs), for at most [`SHUTDOWN_WAIT`], then finishes.
    async fn stop(
        &mut self,
        rx: &mut mpsc::Receiver<Msg>,
        events: &mut Vec<AuditEvent>,
    ) -> io::Result<()> {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_WAIT;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Msg::Event(event))) => events.push(event),
                Ok(Some(Msg::Flush(ack) | Msg::Shutdown(ack))) => {
                    let _ = ack.send(Ok(()));
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!(target: "zerotrust::audit", "audit shutdown: requests still in flight after {SHUTDOWN_WAIT:?}; their records are lost");
                    break;
                }
            }
        }
        self.finish(events).await
    }

    async fn finish(&mut self, events: &mut Vec<AuditEvent>) -> io::Result<()> {
        let written = self.write(events, true).await;
        let synced = self.sync_all();
        let mut closed = Ok(());
        for sink in &mut self.sinks {
            if let Err(error) = sink.close() {
                closed = Err(error);
            }
        }
        written.and(synced).and(closed)
    }

    /// Writes `events` to every sink (and a drop note first, if events were dropped), retrying a
    /// failing sink with backoff until it succeeds (or, at shutdown, a bounded number of times).
    async fn write(&mut self, events: &mut Vec<AuditEvent>, stopping: bool) -> io::Result<()> {
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        if dropped > self.reported_drops {
            events.insert(0, AuditEvent::dropped(dropped - self.reported_drops));
            self.reported_drops = dropped;
        }
        if events.is_empty() {
            return Ok(());
        }
        for event in events.iter() {
            count(event);
        }
        let mut result = Ok(());
        for sink in &mut self.sinks {
            let mut backoff = Duration::from_millis(10);
            let mut attempts = 0u32;
            loop {
                match sink.write(events) {
                    Ok(()) => break,
                    Err(error) => {
                        attempts += 1;
                        metrics::counter!("zerotrust_audit_write_errors_total").increment(1);
                        tracing::error!(target: "zerotrust::audit", %error, attempts, "audit sink failed; retrying (requests wait for queue space)");
                        if stopping && attempts >= SHUTDOWN_RETRIES {
                            result = Err(error);
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
            }
        }
        metrics::counter!("zerotrust_audit_records_total").increment(events.len() as u64);
        events.clear();
        self.dirty = true;
        result
    }

    fn sync_all(&mut self) -> io::Result<()> {
        let mut result = Ok(());
        for sink in &mut self.sinks {
            if let Err(error) = sink.sync() {
                metrics::counter!("zerotrust_audit_write_errors_total").increment(1);
                tracing::error!(target: "zerotrust::audit", %error, "audit sink could not sync");
                result = Err(error);
            }
        }
        if result.is_ok() {
            self.dirty = false;
        }
        result
    }
}

/// Takes what is queued without waiting: `(received, closed)`.
fn drain(rx: &mut mpsc::Receiver<Msg>, msgs: &mut Vec<Msg>, max: usize) -> (usize, bool) {
    let mut received = 0;
    while received < max {
        match rx.try_recv() {
            Ok(msg) => {
                msgs.push(msg);
                received += 1;
            }
            Err(mpsc::error::TryRecvError::Empty) => return (received, false),
            Err(mpsc::error::TryRecvError::Disconnected) => return (received, received == 0),
        }
    }
    (received, false)
}

/// Decision and latency metrics, counted on the writer thread (off the request path).
fn count(event: &AuditEvent) {
    if event.dropped_count().is_some() {
        return;
    }
    let d = event.decision();
    metrics::counter!(
        "zerotrust_decisions_total",
        "outcome" => d.outcome.as_str(),
        "layer" => d.layer,
        "reason" => d.reason.code(),
        "enforced" => if d.enforced { "true" } else { "false" }
    )
    .increment(1);
    for (layer, took) in event.layer_times() {
        metrics::histogram!("zerotrust_layer_duration_seconds", "layer" => *layer)
            .record(took.as_secs_f64());
    }
}

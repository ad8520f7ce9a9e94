//! The delivery guarantees of the audit pipeline, with sinks defined here that collect, block on
//! a gate, or fail: backpressure instead of loss, 503 before the service when a record cannot be
//! queued, counted drops under the opt-in drop policy, retries without duplicates, a draining
//! shutdown, `flush`, cancelled requests, request ids, and every durability policy.
//!
//! Timing is only ever asserted as "did not complete within X" or "completed within a generous
//! bound"; every wait is wrapped in a timeout, and a gated sink opens by itself after a while, so
//! no test can hang.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use axum::routing::get;
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::task::JoinSet;
use tower::ServiceExt;
use zerotrust_audit::{
    AUDIT_UNAVAILABLE, Audit, AuditBuilder, AuditEvent, AuditLogLayer, AuditSink, Durability,
    JsonFileSink, X_REQUEST_ID,
};

/// A generous bound for anything that should be quick.
const BOUND: Duration = Duration::from_secs(30);
/// How long something that must wait is watched not completing.
const STILL_WAITING: Duration = Duration::from_millis(200);
/// A gated sink opens by itself after this long, so a failed test cannot hang the writer.
const GATE_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Test sinks
// ---------------------------------------------------------------------------------------------

/// What a sink saw of one event, read through the public accessors (and its JSON).
#[derive(Debug, Clone)]
struct Seen {
    request_id: Option<String>,
    status: Option<u16>,
    passed: bool,
    outcome: &'static str,
    reason: &'static str,
    layer: &'static str,
    dropped: Option<u64>,
    json: Value,
}

impl Seen {
    fn of(event: &AuditEvent) -> Self {
        let decision = event.decision();
        let mut json = Vec::new();
        event.write_json(&mut json).unwrap();
        Self {
            request_id: event.request_id().map(str::to_owned),
            status: event.status(),
            passed: event.passed(),
            outcome: decision.outcome.as_str(),
            reason: decision.reason.code(),
            layer: decision.layer,
            dropped: event.dropped_count(),
            json: serde_json::from_slice(&json).unwrap(),
        }
    }
}

/// The shared state of a test sink: what it saw, how often it was called, a gate its `write`
/// waits on, and how many writes are still to fail.
#[derive(Clone, Default)]
struct Probe {
    seen: Arc<Mutex<Vec<Seen>>>,
    writes: Arc<AtomicUsize>,
    syncs: Arc<AtomicUsize>,
    closes: Arc<AtomicUsize>,
    fail_next: Arc<AtomicUsize>,
    /// `true` while closed.
    gate: Arc<(Mutex<bool>, Condvar)>,
}

impl Probe {
    fn closed() -> Self {
        let probe = Self::default();
        *probe.gate.0.lock().unwrap() = true;
        probe
    }

    fn failing_first(writes: usize) -> Self {
        let probe = Self::default();
        probe.fail_next.store(writes, Ordering::SeqCst);
        probe
    }

    fn sink(&self) -> ProbeSink {
        ProbeSink(self.clone())
    }

    fn release(&self) {
        *self.gate.0.lock().unwrap() = false;
        self.gate.1.notify_all();
    }

    fn snapshot(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// Request records (not pipeline notes).
    fn requests(&self) -> Vec<Seen> {
        self.snapshot()
            .into_iter()
            .filter(|s| s.dropped.is_none())
            .collect()
    }

    fn request_ids(&self) -> Vec<String> {
        self.requests()
            .into_iter()
            .map(|s| s.request_id.expect("a request record has an id"))
            .collect()
    }

    fn writes(&self) -> usize {
        self.writes.load(Ordering::SeqCst)
    }

    fn syncs(&self) -> usize {
        self.syncs.load(Ordering::SeqCst)
    }

    fn closes(&self) -> usize {
        self.closes.load(Ordering::SeqCst)
    }

    /// Blocks (the writer thread) while the gate is closed, for at most [`GATE_LIMIT`].
    fn pass_gate(&self) {
        let deadline = Instant::now() + GATE_LIMIT;
        let (lock, condvar) = &*self.gate;
        let mut closed = lock.lock().unwrap();
        while *closed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            closed = condvar.wait_timeout(closed, left).unwrap().0;
        }
    }
}

struct ProbeSink(Probe);

impl AuditSink for ProbeSink {
    fn write(&mut self, batch: &[AuditEvent]) -> io::Result<()> {
        self.0.writes.fetch_add(1, Ordering::SeqCst);
        self.0.pass_gate();
        let failing = self
            .0
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if failing {
            return Err(io::Error::other(
                "disk full (a test sink failing on purpose)",
            ));
        }
        self.0
            .seen
            .lock()
            .unwrap()
            .extend(batch.iter().map(Seen::of));
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.syncs.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn close(&mut self) -> io::Result<()> {
        self.0.closes.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The service and helpers
// ---------------------------------------------------------------------------------------------

/// A router behind the audit layer. `/` counts its calls and answers with the request id it
/// saw; `/slow` sleeps far longer than any test waits; `/panic` panics.
fn app(audit: &Audit, calls: &Arc<AtomicUsize>) -> Router {
    let calls = Arc::clone(calls);
    Router::new()
        .route(
            "/",
            get(move |headers: HeaderMap| {
                let calls = Arc::clone(&calls);
                async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    let ids: Vec<&str> = headers
                        .get_all(X_REQUEST_ID)
                        .iter()
                        .map(|v| v.to_str().unwrap())
                        .collect();
                    ids.join(",")
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                "too late"
            }),
        )
        .route(
            "/brief",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(300)).await;
                "done"
            }),
        )
        .route(
            "/panic",
            get(|| async {
                if true {
                    panic!("a handler panicking on purpose");
                }
                "unreachable"
            }),
        )
        .layer(AuditLogLayer::new(audit.clone()))
}

/// The member of `value` at the JSON pointer `pointer` (`Null` when absent).
fn at<'v>(value: &'v Value, pointer: &str) -> &'v Value {
    value.pointer(pointer).unwrap_or(&Value::Null)
}

async fn within<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(BOUND, future)
        .await
        .unwrap_or_else(|_| panic!("{what} did not complete within {BOUND:?}"))
}

/// Polls `condition` every few milliseconds until it holds, for at most [`BOUND`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    within(what, async {
        while !condition() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
}

/// A GET of `/` with this `x-request-id`.
fn with_id(id: &str) -> Request<Body> {
    request("/", Some(id))
}

fn request(uri: &str, id: Option<&str>) -> Request<Body> {
    let mut builder = Request::get(uri);
    if let Some(id) = id {
        builder = builder.header(X_REQUEST_ID, id);
    }
    builder.body(Body::empty()).unwrap()
}

async fn send(app: &Router, request: Request<Body>) -> Response<Body> {
    within("a request", app.clone().oneshot(request))
        .await
        .unwrap()
}

async fn body_text(response: Response<Body>) -> String {
    let bytes = within("a body", response.into_body().collect())
        .await
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn header<'r>(response: &'r Response<Body>, name: &str) -> Option<&'r str> {
    response.headers().get(name).map(|v| v.to_str().unwrap())
}

fn start(builder: AuditBuilder) -> Audit {
    builder.start().unwrap()
}

fn ids(prefix: &str, range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("{prefix}-{i}")).collect()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

/// Asserts that every id in `expected` was recorded exactly once and nothing else was.
fn assert_exactly_once(probe: &Probe, expected: &[String]) {
    let seen = probe.request_ids();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &seen {
        *counts.entry(id).or_default() += 1;
    }
    let doubled: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "recorded more than once: {doubled:?}");
    let missing: Vec<_> = expected
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(missing.is_empty(), "never recorded: {missing:?}");
    assert_eq!(seen.len(), expected.len(), "records: {seen:?}");
}

/// A 503 `audit.unavailable` problem, and its request id.
async fn assert_audit_unavailable(response: Response<Body>) -> Option<String> {
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(header(&response, "retry-after"), Some("1"));
    assert_eq!(
        header(&response, "content-type"),
        Some("application/problem+json")
    );
    let id = header(&response, "x-request-id").map(str::to_owned);
    let body: Value = serde_json::from_str(&body_text(response).await).unwrap();
    assert_eq!(at(&body, "/code"), AUDIT_UNAVAILABLE.code());
    assert_eq!(at(&body, "/code"), "audit.unavailable");
    assert_eq!(at(&body, "/status"), &503);
    id
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("zt-audit-pipeline-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// Backpressure
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_makes_requests_wait_until_the_sink_is_released_and_loses_nothing() {
    let probe = Probe::closed();
    let audit = start(
        Audit::builder()
            .sink(probe.sink())
            .queue_capacity(2)
            .max_wait(Duration::from_secs(120)),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);
    let expected = ids("bp", 0..6);

    // The first record reaches the sink, which blocks the writer; two more fill the queue.
    let response = send(&app, with_id("bp-0")).await;
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the writer reaching the sink", || probe.writes() >= 1).await;
    for id in expected.get(1..3).unwrap() {
        let response = send(&app, with_id(id)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(audit.queued(), 2);

    // Further requests wait for room, before reaching the handler.
    let mut waiting = Vec::new();
    for id in expected.get(3..).unwrap() {
        let app = app.clone();
        let request = with_id(id);
        waiting.push(tokio::spawn(async move { app.oneshot(request).await }));
    }
    for handle in &mut waiting {
        assert!(
            tokio::time::timeout(STILL_WAITING, handle).await.is_err(),
            "a request completed while the queue was full"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "waiting requests did not run"
    );
    assert_eq!(
        probe.request_ids(),
        Vec::<String>::new(),
        "the sink is blocked"
    );

    probe.release();
    for handle in waiting {
        let response = within("a waiting request", handle).await.unwrap().unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 6);
    within("flush", audit.flush()).await.unwrap();
    assert_exactly_once(&probe, &expected);
    assert_eq!(audit.dropped(), 0);
    within("shutdown", audit.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_cannot_be_queued_within_max_wait_is_503_and_never_reaches_the_handler() {
    let probe = Probe::closed();
    let audit = start(
        Audit::builder()
            .sink(probe.sink())
            .queue_capacity(1)
            .max_wait(Duration::from_millis(100)),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    let response = send(&app, with_id("ok-0")).await;
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the writer reaching the sink", || probe.writes() >= 1).await;
    let response = send(&app, with_id("ok-1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);

    // The queue stays full for longer than max_wait: refused, before the service.
    let response = send(&app, with_id("refused-2")).await;
    let id = assert_audit_unavailable(response).await;
    assert_eq!(
        id.as_deref(),
        Some("refused-2"),
        "the 503 carries the request id"
    );
    let response = send(&app, request("/", None)).await;
    let generated = assert_audit_unavailable(response).await.unwrap();
    assert_eq!(generated.len(), 32, "{generated}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "the handler never ran");

    probe.release();
    within("flush", audit.flush()).await.unwrap();
    assert_exactly_once(&probe, &ids("ok", 0..2));

    // Once there is room again, requests are served and recorded.
    let response = send(&app, with_id("ok-2")).await;
    assert_eq!(response.status(), StatusCode::OK);
    within("flush", audit.flush()).await.unwrap();
    assert_exactly_once(&probe, &ids("ok", 0..3));
    within("shutdown", audit.shutdown()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// The opt-in drop policy
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_when_full_lets_requests_through_and_writes_the_drop_count_into_the_log() {
    let probe = Probe::closed();
    let audit = start(
        Audit::builder()
            .sink(probe.sink())
            .queue_capacity(1)
            .drop_when_full(),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    let response = send(&app, with_id("kept-0")).await;
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the writer reaching the sink", || probe.writes() >= 1).await;
    let response = send(&app, with_id("kept-1")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(audit.dropped(), 0);

    // The queue is full and the sink blocked: these go through unrecorded, and are counted.
    for id in ids("dropped", 0..3) {
        let response = send(&app, with_id(&id)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header(&response, "x-request-id"), Some(id.as_str()));
        assert_eq!(body_text(response).await, id, "the handler ran");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    assert_eq!(audit.dropped(), 3);

    probe.release();
    within("flush", audit.flush()).await.unwrap();
    assert_exactly_once(&probe, &ids("kept", 0..2));
    let notes: Vec<Seen> = probe
        .snapshot()
        .into_iter()
        .filter(|s| s.dropped.is_some())
        .collect();
    assert_eq!(notes.len(), 1, "{notes:?}");
    let note = notes.first().unwrap();
    assert_eq!(note.dropped, Some(3));
    assert_eq!(note.request_id, None);
    assert_eq!(at(&note.json, "/event/action"), "audit-events-dropped");
    assert_eq!(at(&note.json, "/zerotrust/dropped"), &3);

    // Reported once: later batches carry no second note for the same drops.
    let response = send(&app, with_id("kept-2")).await;
    assert_eq!(response.status(), StatusCode::OK);
    within("flush", audit.flush()).await.unwrap();
    assert_exactly_once(&probe, &ids("kept", 0..3));
    let total: u64 = probe.snapshot().iter().filter_map(|s| s.dropped).sum();
    assert_eq!(total, 3);
    assert_eq!(audit.dropped(), 3);
    within("shutdown", audit.shutdown()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Failing sinks, shutdown, flush
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sink_failing_its_first_writes_gets_every_record_exactly_once() {
    let healthy = Probe::default();
    let failing = Probe::failing_first(3);
    let audit = start(
        Audit::builder()
            .sink(healthy.sink())
            .sink(failing.sink())
            .queue_capacity(8)
            .max_batch(4),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);
    let expected = ids("retry", 0..40);

    let mut requests = JoinSet::new();
    for id in &expected {
        let app = app.clone();
        let request = with_id(id);
        requests.spawn(async move { app.oneshot(request).await });
    }
    while let Some(done) = within("the requests", requests.join_next()).await {
        assert_eq!(done.unwrap().unwrap().status(), StatusCode::OK);
    }
    within("flush", audit.flush()).await.unwrap();

    assert_exactly_once(&failing, &expected);
    assert_exactly_once(&healthy, &expected);
    assert!(failing.writes() >= 4, "three failures, then success");
    assert_eq!(
        healthy.request_ids(),
        failing.request_ids(),
        "both sinks in the same order"
    );
    within("shutdown", audit.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_every_queued_record_and_later_requests_get_503() {
    let probe = Probe::closed();
    let audit = start(Audit::builder().sink(probe.sink()).queue_capacity(64));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);
    let expected = ids("drain", 0..20);

    // The first record blocks the writer in the sink; the others wait in the queue.
    let (first, rest) = expected.split_first().unwrap();
    let response = send(&app, with_id(first)).await;
    assert_eq!(response.status(), StatusCode::OK);
    eventually("the writer reaching the sink", || probe.writes() >= 1).await;
    for id in rest {
        let response = send(&app, with_id(id)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    assert_eq!(
        audit.queued(),
        rest.len(),
        "records are waiting in the queue"
    );

    let stopping = {
        let audit = audit.clone();
        tokio::spawn(async move { audit.shutdown().await })
    };
    probe.release();
    within("shutdown", stopping).await.unwrap().unwrap();
    assert_exactly_once(&probe, &expected);
    assert_eq!(probe.closes(), 1, "closed once");
    assert!(probe.syncs() >= 1, "synced before closing");

    // Nothing runs unrecorded after the pipeline stopped.
    let response = send(&app, with_id("late-0")).await;
    assert_eq!(
        assert_audit_unavailable(response).await.as_deref(),
        Some("late-0")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 20, "the handler never ran");
    assert!(within("flush", audit.flush()).await.is_err());
    assert!(within("shutdown", audit.shutdown()).await.is_err());
    assert_exactly_once(&probe, &expected);
    assert_eq!(probe.closes(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_waits_for_the_records_of_requests_still_in_flight() {
    let probe = Probe::default();
    let audit = start(Audit::builder().sink(probe.sink()));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    // The request has its room in the queue reserved and is in its handler when shutdown begins.
    let in_flight = tokio::spawn({
        let app = app.clone();
        async move { send(&app, request("/brief", Some("flight-1"))).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    within("shutdown", audit.shutdown()).await.unwrap();
    let response = within("the request", in_flight).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_exactly_once(&probe, &["flight-1".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_every_handle_drains_and_closes_the_sinks() {
    let probe = Probe::closed();
    let audit = start(Audit::builder().sink(probe.sink()));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);
    let expected = ids("orphan", 0..10);
    for id in &expected {
        let response = send(&app, with_id(id)).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    drop(app);
    drop(audit);
    probe.release();
    eventually("the writer closing the sink", || probe.closes() == 1).await;
    assert_exactly_once(&probe, &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flush_makes_every_earlier_record_visible_in_every_sink() {
    let dir = TempDir::new("flush");
    let path = dir.0.join("audit.jsonl");
    let probe = Probe::default();
    let audit = start(
        Audit::builder()
            .sink(JsonFileSink::open(&path).unwrap())
            .sink(probe.sink())
            .max_batch(7),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    for round in 0..3 {
        let expected = ids("flush", 0..25 * (round + 1));
        let mut requests = JoinSet::new();
        for id in expected.get(25 * round..).unwrap() {
            let app = app.clone();
            let request = with_id(id);
            requests.spawn(async move { app.oneshot(request).await });
        }
        while let Some(done) = within("the requests", requests.join_next()).await {
            assert_eq!(done.unwrap().unwrap().status(), StatusCode::OK);
        }
        let syncs = probe.syncs();
        within("flush", audit.flush()).await.unwrap();

        assert_exactly_once(&probe, &expected);
        assert!(probe.syncs() > syncs, "flush syncs");
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines.len(),
            1 + expected.len(),
            "a start record and every request"
        );
        let in_file: Vec<String> = lines
            .iter()
            .skip(1)
            .map(|l| at(l, "/http/request/id").as_str().unwrap().to_owned())
            .collect();
        assert_eq!(sorted(in_file), sorted(expected.clone()));
    }
    // A flush with nothing queued returns too.
    within("an empty flush", audit.flush()).await.unwrap();
    within("shutdown", audit.shutdown()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Requests without a response
// ---------------------------------------------------------------------------------------------

/// Asserts that `seen` is the record of a request that ended without a response.
fn assert_cancelled(seen: &Seen) {
    assert_eq!(seen.status, None, "no response");
    assert_eq!(seen.outcome, "error");
    assert_eq!(seen.reason, "request.cancelled");
    assert_eq!(seen.layer, "zerotrust");
    assert_eq!(at(&seen.json, "/zerotrust/interrupted"), "cancelled");
    assert_eq!(at(&seen.json, "/event/outcome"), "unknown");
    assert_eq!(at(&seen.json, "/zerotrust/decision/outcome"), "error");
    assert_eq!(
        at(&seen.json, "/zerotrust/decision/reason"),
        "request.cancelled"
    );
    assert_eq!(at(&seen.json, "/zerotrust/passed"), &false);
    assert!(
        !seen.passed,
        "AuditEvent::passed() must agree with the record's zerotrust.passed (false)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_response_future_is_dropped_is_recorded_as_cancelled() {
    let probe = Probe::default();
    let audit = start(Audit::builder().sink(probe.sink()));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    // The client gives up while the handler sleeps: the response future is dropped.
    {
        let gave_up = tokio::time::timeout(
            Duration::from_millis(100),
            app.clone().oneshot(request("/slow", Some("gone-1"))),
        )
        .await;
        assert!(gave_up.is_err(), "the slow handler cannot have answered");
    }
    within("flush", audit.flush()).await.unwrap();

    let seen = probe.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let record = seen.first().unwrap();
    assert_eq!(record.request_id.as_deref(), Some("gone-1"));
    assert_eq!(at(&record.json, "/url/path"), "/slow");
    assert_cancelled(record);
    within("shutdown", audit.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_panic_is_still_recorded_as_cancelled() {
    let probe = Probe::default();
    let audit = start(Audit::builder().sink(probe.sink()));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    let task = {
        let app = app.clone();
        tokio::spawn(async move { app.oneshot(request("/panic", Some("boom-1"))).await })
    };
    let joined = within("the panicking request", task).await;
    assert!(joined.unwrap_err().is_panic());
    within("flush", audit.flush()).await.unwrap();

    let seen = probe.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let record = seen.first().unwrap();
    assert_eq!(record.request_id.as_deref(), Some("boom-1"));
    assert_cancelled(record);
    within("shutdown", audit.shutdown()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Request ids
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sane_client_request_id_is_kept_echoed_and_recorded() {
    let probe = Probe::default();
    let audit = start(Audit::builder().sink(probe.sink()));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    let longest = "a".repeat(128);
    let sane = [
        "abc-123",
        "A.b_c:d/e+f=g@h",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        longest.as_str(),
    ];
    for id in sane {
        let response = send(&app, with_id(id)).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers().get_all(X_REQUEST_ID).iter().count(), 1);
        assert_eq!(header(&response, "x-request-id"), Some(id), "echoed");
        assert_eq!(body_text(response).await, id, "the handler saw it");
    }
    within("flush", audit.flush()).await.unwrap();
    let recorded = probe.requests();
    let recorded_ids: Vec<&str> = recorded
        .iter()
        .map(|s| s.request_id.as_deref().unwrap())
        .collect();
    assert_eq!(recorded_ids, sane);
    for seen in &recorded {
        assert_eq!(
            at(&seen.json, "/http/request/id"),
            seen.request_id.as_deref().unwrap()
        );
        assert_eq!(seen.status, Some(200));
        assert!(seen.passed);
        assert_eq!(seen.outcome, "allow");
    }
    within("shutdown", audit.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_client_request_id_is_replaced_by_a_generated_one_everywhere() {
    let probe = Probe::default();
    let audit = start(Audit::builder().sink(probe.sink()));
    let calls = Arc::new(AtomicUsize::new(0));
    let app = app(&audit, &calls);

    let too_long = "a".repeat(129);
    let mut bad: Vec<(String, Request<Body>)> = vec![
        ("no header".into(), request("/", None)),
        ("empty".into(), with_id("")),
        ("spaces".into(), with_id("has spaces in it")),
        ("a quote".into(), with_id("quo\"te")),
        ("129 characters".into(), with_id(&too_long)),
    ];
    let mut two = with_id("first-id");
    two.headers_mut()
        .append(X_REQUEST_ID, HeaderValue::from_static("second-id"));
    bad.push(("two headers".into(), two));
    let mut not_ascii = request("/", None);
    not_ascii.headers_mut().insert(
        X_REQUEST_ID,
        HeaderValue::from_bytes("caf\u{e9}".as_bytes()).unwrap(),
    );
    bad.push(("not ASCII".into(), not_ascii));

    let mut generated = Vec::new();
    for (what, request) in bad {
        let response = send(&app, request).await;
        assert_eq!(response.status(), StatusCode::OK, "{what}");
        assert_eq!(
            response.headers().get_all(X_REQUEST_ID).iter().count(),
            1,
            "{what}"
        );
        let echoed = header(&response, "x-request-id").unwrap().to_owned();
        assert_eq!(echoed.len(), 32, "{what}: {echoed}");
        assert!(
            echoed
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
            "{what}: {echoed}"
        );
        assert_eq!(
            body_text(response).await,
            echoed,
            "{what}: the handler saw only the replacement"
        );
        generated.push(echoed);
    }
    within("flush", audit.flush()).await.unwrap();
    let unique: HashSet<&String> = generated.iter().collect();
    assert_eq!(unique.len(), generated.len(), "fresh ids: {generated:?}");
    assert_eq!(
        probe.request_ids(),
        generated,
        "the records carry the same ids"
    );
    within("shutdown", audit.shutdown()).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Durability policies
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durability_policy_delivers_everything_after_flush() {
    for durability in [
        Durability::EveryBatch,
        Durability::Interval(Duration::from_millis(50)),
        Durability::Never,
    ] {
        let probe = Probe::default();
        let audit = start(
            Audit::builder()
                .sink(probe.sink())
                .durability(durability)
                .max_batch(3),
        );
        let calls = Arc::new(AtomicUsize::new(0));
        let app = app(&audit, &calls);
        let expected = ids("durable", 0..30);
        let mut requests = JoinSet::new();
        for id in &expected {
            let app = app.clone();
            let request = with_id(id);
            requests.spawn(async move { app.oneshot(request).await });
        }
        while let Some(done) = within("the requests", requests.join_next()).await {
            assert_eq!(done.unwrap().unwrap().status(), StatusCode::OK);
        }
        within("flush", audit.flush()).await.unwrap();
        assert_exactly_once(&probe, &expected);
        assert!(probe.syncs() >= 1, "{durability:?}: flush syncs");
        within("shutdown", audit.shutdown()).await.unwrap();
        assert_exactly_once(&probe, &expected);
        assert_eq!(probe.closes(), 1, "{durability:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interval_durability_syncs_on_its_own_and_never_durability_only_when_asked() {
    // Interval: written records are synced without a flush, within a generous bound.
    let probe = Probe::default();
    let audit = start(
        Audit::builder()
            .sink(probe.sink())
            .durability(Durability::Interval(Duration::from_millis(20))),
    );
    let calls = Arc::new(AtomicUsize::new(0));
    let router = app(&audit, &calls);
    for id in ids("interval", 0..5) {
        assert_eq!(send(&router, with_id(&id)).await.status(), StatusCode::OK);
    }
    eventually("the records reaching the sink", || {
        probe.request_ids().len() == 5
    })
    .await;
    eventually("an interval sync", || probe.syncs() >= 1).await;
    within("shutdown", audit.shutdown()).await.unwrap();
    assert_exactly_once(&probe, &ids("interval", 0..5));

    // Never: delivered, but not synced until a flush asks for it.
    let probe = Probe::default();
    let audit = start(
        Audit::builder()
            .sink(probe.sink())
            .durability(Durability::Never),
    );
    let router = app(&audit, &calls);
    for id in ids("never", 0..5) {
        assert_eq!(send(&router, with_id(&id)).await.status(), StatusCode::OK);
    }
    eventually("the records reaching the sink", || {
        probe.request_ids().len() == 5
    })
    .await;
    tokio::time::sleep(STILL_WAITING).await;
    assert_eq!(probe.syncs(), 0, "no sync without a flush");
    within("flush", audit.flush()).await.unwrap();
    assert!(probe.syncs() >= 1);
    within("shutdown", audit.shutdown()).await.unwrap();
    assert_exactly_once(&probe, &ids("never", 0..5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_records_keep_coming_they_are_written_in_batches_without_a_flush() {
    for interval in [Duration::from_millis(20), Duration::from_millis(60)] {
        let probe = Probe::default();
        let audit = start(Audit::builder().sink(probe.sink()).batch_interval(interval));
        let calls = Arc::new(AtomicUsize::new(0));
        let router = app(&audit, &calls);
        // A steady trickle keeps the writer on its tick; every record is written without a flush.
        let expected = ids("trickle", 0..40);
        for id in &expected {
            assert_eq!(send(&router, with_id(id)).await.status(), StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        eventually("every record written", || {
            probe.seen.lock().unwrap().len() == expected.len()
        })
        .await;
        assert_exactly_once(&probe, &expected);
        // Batched, not one write per record: 40 records a millisecond or two apart took at most
        // half as many writes.
        assert!(
            probe.writes() <= expected.len() / 2,
            "{interval:?}: {} writes for {} records",
            probe.writes(),
            expected.len()
        );
        within("shutdown", audit.shutdown()).await.unwrap();
    }
}

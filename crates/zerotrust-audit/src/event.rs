//! The audit record: what the request path hands over (cheaply), and its JSON form (built on the
//! writer thread, in Elastic Common Schema field names).

use std::cell::RefCell;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use axum::extract::MatchedPath;

use chrono::{DateTime, SecondsFormat, Utc};
use zerotrust_core::tap::{LayerPass, MAX_PASSES};
use zerotrust_core::{Decision, Outcome, Reason, ZeroTrust};

use crate::json::{self, Obj};
use crate::request_id::RequestId;

#[cfg(test)]
mod reference;

/// The version of the record schema, written as `zerotrust.schema_version`. It changes only when
/// a field is removed or changes meaning; new fields may appear within a version.
pub const SCHEMA_VERSION: u32 = 1;

/// The ECS version whose field names the records use.
pub const ECS_VERSION: &str = "8.11.0";

const ALLOW: Reason = Reason::new("zerotrust.allow", "Allowed.");
const CANCELLED: Reason = Reason::new(
    "request.cancelled",
    "The request ended before a response was produced.",
);
const SERVICE_ERROR: Reason = Reason::new(
    "service.error",
    "The protected service failed without a response.",
);

/// One audit record: a request's decision, or a note from the audit pipeline itself (events
/// dropped under the opt-in drop policy).
///
/// Custom [`AuditSink`](crate::AuditSink)s read it through the accessors, or write its JSON with
/// [`write_json`](AuditEvent::write_json).
#[derive(Debug)]
pub struct AuditEvent {
    pub(crate) time: SystemTime,
    pub(crate) kind: EventKind,
}

// Not boxed although a request record is several hundred bytes (about 1 KiB when measured,
// before the context became a shared handle): a box would be allocated on the request
// thread and freed on the writer thread, and that cross-thread free measured slower (criterion,
// audit layer outside GeoRisk + StepUp: +4.5 µs boxed, +1.6 to 2.0 µs inline) than moving 1 KiB.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum EventKind {
    Request(RequestEvent),
    Dropped { count: u64 },
}

/// What the layer collected about one request. Everything here is moved, not formatted: the
/// formatting happens on the writer thread.
#[derive(Debug)]
pub(crate) struct RequestEvent {
    pub(crate) request_id: RequestId,
    pub(crate) method: http::Method,
    /// Shares the request's bytes; only the path is ever written (never the query).
    pub(crate) uri: http::Uri,
    pub(crate) route: Option<MatchedPath>,
    /// The socket peer (a proxy, when there is one).
    pub(crate) source: Option<std::net::SocketAddr>,
    pub(crate) status: Option<u16>,
    /// Answered by a zerotrust layer (the response carried the context).
    pub(crate) refused: bool,
    pub(crate) interrupted: Option<Interruption>,
    pub(crate) context: Option<ZeroTrust>,
    /// Each layer's time, in the order they ran.
    pub(crate) layers: LayerTimes,
    /// Time in the zerotrust layers: until the innermost passed the request, or until the refusal.
    pub(crate) zerotrust_time: Duration,
    /// Time until the response (headers) was ready.
    pub(crate) total_time: Duration,
}

impl RequestEvent {
    fn passed(&self) -> bool {
        !self.refused && self.interrupted != Some(Interruption::Cancelled)
    }
}

/// Why a request has no regular response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Interruption {
    /// The response future was dropped (client gone, server shutting down, a panic).
    Cancelled,
    /// The inner service returned an error instead of a response.
    ServiceError,
}

/// Each layer's time, inline (no allocation per request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct LayerTimes {
    items: [(&'static str, Duration); MAX_PASSES + 1],
    len: usize,
}

impl LayerTimes {
    fn new() -> Self {
        Self {
            items: [("", Duration::ZERO); MAX_PASSES + 1],
            len: 0,
        }
    }

    fn push(&mut self, layer: &'static str, took: Duration) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = (layer, took);
            self.len += 1;
        }
    }

    pub(crate) fn as_slice(&self) -> &[(&'static str, Duration)] {
        self.items.get(..self.len).unwrap_or_default()
    }
}

/// Each layer's latency from the instants the layers passed the request inward: layer *k* took
/// from the previous pass (or the start) to its own; a refusing layer took from the last pass to
/// the end.
pub(crate) fn layer_times(
    started: std::time::Instant,
    ended: std::time::Instant,
    passes: &[LayerPass],
    refusing_layer: Option<&'static str>,
) -> (LayerTimes, Duration) {
    let mut out = LayerTimes::new();
    let mut from = started;
    for pass in passes {
        out.push(pass.layer, pass.at.saturating_duration_since(from));
        from = pass.at;
    }
    match refusing_layer {
        Some(layer) => {
            out.push(layer, ended.saturating_duration_since(from));
            (out, ended.saturating_duration_since(started))
        }
        None => (out, from.saturating_duration_since(started)),
    }
}

impl AuditEvent {
    pub(crate) fn dropped(count: u64) -> Self {
        Self {
            time: SystemTime::now(),
            kind: EventKind::Dropped { count },
        }
    }

    /// When the request arrived (or the note was made).
    pub fn time(&self) -> SystemTime {
        self.time
    }

    fn request(&self) -> Option<&RequestEvent> {
        match &self.kind {
            EventKind::Request(r) => Some(r),
            EventKind::Dropped { .. } => None,
        }
    }

    /// The request id (`x-request-id`), for request records.
    pub fn request_id(&self) -> Option<&str> {
        self.request().map(|r| r.request_id.as_str())
    }

    /// The request's zero-trust context, when a zerotrust layer saw it.
    pub fn context(&self) -> Option<&ZeroTrust> {
        self.request().and_then(|r| r.context.as_ref())
    }

    /// The response status, when there was a response.
    pub fn status(&self) -> Option<u16> {
        self.request().and_then(|r| r.status)
    }

    /// The number of events dropped, for a drop note (see
    /// [`Overflow::DropAndCount`](crate::Overflow::DropAndCount)).
    pub fn dropped_count(&self) -> Option<u64> {
        match self.kind {
            EventKind::Dropped { count } => Some(count),
            EventKind::Request(_) => None,
        }
    }

    /// Whether the request was let through to the service (allowed, or refused in report-only
    /// mode only). `false` for a request cancelled before its response: whether it got that far
    /// is not known.
    pub fn passed(&self) -> bool {
        self.request().is_some_and(RequestEvent::passed)
    }

    /// The decision: the one a layer recorded; else `allow` for a request that passed every
    /// layer, and `error` (`request.cancelled`) for one that ended before any decision.
    pub fn decision(&self) -> Decision {
        let Some(r) = self.request() else {
            return Decision {
                outcome: Outcome::Error,
                reason: Reason::new("audit.dropped", "Audit events were dropped."),
                layer: "audit",
                enforced: true,
            };
        };
        if let Some(d) = r.context.as_ref().and_then(ZeroTrust::decision) {
            return *d;
        }
        let (outcome, reason) = match r.interrupted {
            Some(Interruption::Cancelled) => (Outcome::Error, CANCELLED),
            Some(Interruption::ServiceError) if r.context.is_none() => {
                (Outcome::Error, SERVICE_ERROR)
            }
            _ => (Outcome::Allow, ALLOW),
        };
        Decision {
            outcome,
            reason,
            layer: "zerotrust",
            enforced: true,
        }
    }

    /// The record as one line of JSON (no newline), in ECS field names. The chain fields are
    /// added by the sinks that chain records.
    pub fn write_json(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        let mut o = Obj::open(out);
        write_timestamp(o.key("@timestamp"), self.time);
        match &self.kind {
            EventKind::Dropped { count } => {
                let message = o.key("message");
                message.push(b'"');
                message.extend_from_slice(itoa::Buffer::new().format(*count).as_bytes());
                message.extend_from_slice(b" audit events dropped: the queue was full\"");
                write_ecs_version(&mut o);
                let mut event = o.obj("event");
                event.str("kind", "state");
                event.strs("category", ["process"]);
                event.strs("type", ["info"]);
                event.str("action", "audit-events-dropped");
                event.str("outcome", "failure");
                event.str("reason", "audit.dropped");
                event.close();
                let mut zt = o.obj("zerotrust");
                zt.u64("schema_version", u64::from(SCHEMA_VERSION));
                zt.u64("dropped", *count);
                zt.close();
            }
            EventKind::Request(r) => self.write_request(&mut o, r),
        }
        o.close();
        Ok(())
    }

    /// The layers' latencies, for metrics.
    pub(crate) fn layer_times(&self) -> &[(&'static str, Duration)] {
        self.request().map_or(&[], |r| r.layers.as_slice())
    }
    fn write_request(&self, o: &mut Obj<'_>, r: &RequestEvent) {
        let decision = self.decision();
        let zt = r.context.as_ref();
        let (types, outcome): (&[&str], _) = match (r.refused, r.interrupted) {
            (_, Some(Interruption::Cancelled)) => (&["access", "info"], "unknown"),
            (true, _) if decision.outcome == Outcome::Error => (&["access", "error"], "failure"),
            (true, _) => (&["access", "denied"], "failure"),
            (false, _) => (&["access", "allowed"], "success"),
        };
        let route = zt
            .and_then(ZeroTrust::route)
            .or(r.route.as_ref().map(MatchedPath::as_str));

        // "allow GET /api/reports: stepup.allow (stepup)"
        let message = o.key("message");
        message.push(b'"');
        message.extend_from_slice(decision.outcome.as_str().as_bytes());
        if !decision.enforced {
            message.extend_from_slice(b" (report-only)");
        }
        message.push(b' ');
        json::string_content(message, r.method.as_str());
        message.push(b' ');
        json::string_content(message, route.unwrap_or(r.uri.path()));
        message.extend_from_slice(b": ");
        json::string_content(message, decision.reason.code());
        message.extend_from_slice(b" (");
        json::string_content(message, decision.layer);
        message.extend_from_slice(b")\"");

        write_ecs_version(o);
        let mut event = o.obj("event");
        event.str("kind", "event");
        event.strs("category", ["web"]);
        event.strs("type", types.iter().copied());
        event.str("action", "zerotrust-decision");
        event.str("outcome", outcome);
        event.str("reason", decision.reason.code());
        event.u64("duration", nanos(r.total_time));
        event.close();

        let mut http = o.obj("http");
        let mut request = http.obj("request");
        request.str("id", r.request_id.as_str());
        request.str("method", r.method.as_str());
        request.close();
        if let Some(status) = r.status {
            let mut response = http.obj("response");
            response.u64("status_code", u64::from(status));
            response.close();
        }
        http.close();

        let mut url = o.obj("url");
        url.str("path", r.uri.path());
        url.close();

        if let Some(source) = r.source {
            let mut s = o.obj("source");
            s.display_plain("ip", source.ip().to_canonical());
            s.u64("port", u64::from(source.port()));
            s.close();
        }
        let identity = zt.and_then(ZeroTrust::identity);
        if let Some(id) = identity {
            let mut user = o.obj("user");
            user.str("id", id.subject());
            user.close();
        }
        let network = zt.and_then(ZeroTrust::network);
        let client_ip: Option<IpAddr> = zt
            .and_then(ZeroTrust::client_ip)
            .map(|c| c.addr())
            .or(network.map(|n| n.client_ip));
        if let Some(ip) = client_ip {
            let mut client = o.obj("client");
            client.display_plain("ip", ip);
            if let Some(l) = network.map(|n| &n.location) {
                if l.country.is_some() || l.city.is_some() {
                    let mut geo = client.obj("geo");
                    geo.opt_str("country_iso_code", l.country.as_ref().map(|c| c.as_str()));
                    geo.opt_str("city_name", l.city.as_deref());
                    geo.close();
                }
                if let Some(number) = l.asn {
                    let mut autonomous_system = client.obj("as");
                    autonomous_system.u64("number", u64::from(number));
                    if let Some(name) = l.as_org.as_deref() {
                        let mut org = autonomous_system.obj("organization");
                        org.str("name", name);
                        org.close();
                    }
                    autonomous_system.close();
                }
            }
            client.close();
        }
        let device = zt.and_then(ZeroTrust::device);
        if let Some(d) = device {
            let mut dev = o.obj("device");
            dev.str("id", &d.device_id);
            dev.close();
        }

        let mut z = o.obj("zerotrust");
        z.u64("schema_version", u64::from(SCHEMA_VERSION));
        let mut d = z.obj("decision");
        d.str("outcome", decision.outcome.as_str());
        d.str("layer", decision.layer);
        d.str("reason", decision.reason.code());
        d.bool("enforced", decision.enforced);
        d.close();
        z.bool("passed", r.passed());
        z.opt_str(
            "interrupted",
            r.interrupted.map(|i| match i {
                Interruption::Cancelled => "cancelled",
                Interruption::ServiceError => "service_error",
            }),
        );
        z.opt_str("route", route);
        if let Some(id) = identity {
            let mut i = z.obj("identity");
            i.str("issuer", id.issuer());
            i.opt_str("jti", id.jti());
            i.opt_str("client_id", id.client_id());
            i.opt_str("acr", id.acr());
            if !id.amr().is_empty() {
                i.strs("amr", id.amr().iter().map(String::as_str));
            }
            i.close();
        }
        if let Some(d) = device {
            let mut dd = z.obj("device");
            dd.str("binding", d.binding.as_str());
            dd.str("status", d.status.as_str());
            dd.bool("owned_by_subject", d.owned_by_subject);
            if !d.violations.is_empty() {
                dd.strs("violations", d.violations.iter().map(|v| v.as_str()));
            }
            dd.close();
        }
        if let Some(n) = network {
            let mut net = z.obj("network");
            net.str("zone", n.zone.as_str());
            if let Some(t) = &n.travel {
                let mut travel = net.obj("travel");
                travel.f64("distance_km", t.distance_km);
                travel.i64("elapsed_secs", t.elapsed_secs);
                travel.f64("speed_kmh", t.speed_kmh);
                travel.bool("impossible", t.impossible);
                travel.close();
            }
            net.close();
        }
        // Only where a layer assessed risk: a record of a request refused at the token check
        // would otherwise show a score of 0 for checks that never ran.
        if let Some(zt) = zt.filter(|zt| zt.risk_assessed()) {
            let risk = zt.risk_assessment();
            let mut k = z.obj("risk");
            k.f64("score", risk.score);
            k.str("trust_level", risk.trust_level.as_str());
            let signals = k.key("signals");
            signals.push(b'[');
            for (i, s) in risk.reasons.iter().enumerate() {
                if i > 0 {
                    signals.push(b',');
                }
                let mut signal = Obj::open(signals);
                signal.str("name", s.name());
                signal.f64("weight", s.weight());
                signal.str("evidence", s.evidence());
                signal.close();
            }
            signals.push(b']');
            k.close();
        }
        z.u64("duration_ns", nanos(r.zerotrust_time));
        let layers = r.layers.as_slice();
        if !layers.is_empty() {
            let out = z.key("layers");
            out.push(b'[');
            for (i, (name, took)) in layers.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let mut layer = Obj::open(out);
                layer.str("name", name);
                layer.u64("duration_ns", nanos(*took));
                layer.close();
            }
            out.push(b']');
        }
        z.close();
    }
}

fn write_ecs_version(o: &mut Obj<'_>) {
    let mut ecs = o.obj("ecs");
    ecs.str("version", ECS_VERSION);
    ecs.close();
}

thread_local! {
    /// The last second formatted on this thread and its text up to the seconds
    /// (`2026-11-24T00:02:51`): the writer thread formats one date per second, not per record.
    static LAST_SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

/// `time` as RFC 3339 in UTC with microseconds, as a JSON string: `"2026-11-24T00:02:51.168302Z"`.
fn write_timestamp(out: &mut Vec<u8>, time: SystemTime) {
    let time = DateTime::<Utc>::from(time);
    let second = time.timestamp();
    out.push(b'"');
    LAST_SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            let mut full = time.to_rfc3339_opts(SecondsFormat::Secs, true);
            full.pop(); // the `Z`
            *text = full;
            *cached = second;
        }
        out.extend_from_slice(text.as_bytes());
    });
    let micros = time.timestamp_subsec_micros().min(999_999);
    out.push(b'.');
    let mut digits = [b'0'; 6];
    let mut rest = micros;
    for slot in digits.iter_mut().rev() {
        // `rest % 10` is a single digit.
        *slot = b'0' + u8::try_from(rest % 10).unwrap_or(0);
        rest /= 10;
    }
    out.extend_from_slice(&digits);
    out.extend_from_slice(b"Z\"");
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

//! The audit record: what the request path hands over (cheaply), and its JSON form (built on the
//! writer thread, in Elastic Common Schema field names).

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use axum::extract::MatchedPath;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use zerotrust_core::tap::{LayerPass, MAX_PASSES};
use zerotrust_core::{Decision, Outcome, Reason, ZeroTrust};

use crate::request_id::RequestId;

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

// Not boxed although a request record is about 1 KiB: a box would be allocated on the request
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
        serde_json::to_writer(&mut *out, &self.ecs()).map_err(std::io::Error::other)
    }

    /// The layers' latencies, for metrics.
    pub(crate) fn layer_times(&self) -> &[(&'static str, Duration)] {
        self.request().map_or(&[], |r| r.layers.as_slice())
    }

    fn ecs(&self) -> Ecs<'_> {
        let timestamp =
            DateTime::<Utc>::from(self.time).to_rfc3339_opts(SecondsFormat::Micros, true);
        match &self.kind {
            EventKind::Dropped { count } => Ecs {
                timestamp,
                message: format!("{count} audit events dropped: the queue was full"),
                ecs: EcsVersion {
                    version: ECS_VERSION,
                },
                event: EventFields {
                    kind: "state",
                    category: ["process"],
                    types: &["info"],
                    action: "audit-events-dropped",
                    outcome: "failure",
                    reason: Some("audit.dropped"),
                    duration: None,
                },
                http: None,
                url: None,
                source: None,
                user: None,
                client: None,
                device: None,
                zerotrust: Zt {
                    schema_version: SCHEMA_VERSION,
                    dropped: Some(*count),
                    ..Zt::default()
                },
            },
            EventKind::Request(r) => self.request_ecs(r, timestamp),
        }
    }

    fn request_ecs<'a>(&'a self, r: &'a RequestEvent, timestamp: String) -> Ecs<'a> {
        let decision = self.decision();
        let zt = r.context.as_ref();
        let risk = zt.map(ZeroTrust::risk_assessment);
        let (types, outcome): (&'static [&'static str], _) = match (r.refused, r.interrupted) {
            (_, Some(Interruption::Cancelled)) => (&["access", "info"], "unknown"),
            (true, _) if decision.outcome == Outcome::Error => (&["access", "error"], "failure"),
            (true, _) => (&["access", "denied"], "failure"),
            (false, _) => (&["access", "allowed"], "success"),
        };
        let route = zt
            .and_then(ZeroTrust::route)
            .or(r.route.as_ref().map(MatchedPath::as_str));
        let message = format!(
            "{}{} {} {}: {} ({})",
            decision.outcome.as_str(),
            if decision.enforced {
                ""
            } else {
                " (report-only)"
            },
            r.method,
            route.unwrap_or(r.uri.path()),
            decision.reason.code(),
            decision.layer,
        );
        let identity = zt.and_then(ZeroTrust::identity);
        let network = zt.and_then(ZeroTrust::network);
        let client_ip: Option<IpAddr> = zt
            .and_then(ZeroTrust::client_ip)
            .map(|c| c.addr())
            .or(network.map(|n| n.client_ip));
        Ecs {
            timestamp,
            message,
            ecs: EcsVersion {
                version: ECS_VERSION,
            },
            event: EventFields {
                kind: "event",
                category: ["web"],
                types,
                action: "zerotrust-decision",
                outcome,
                reason: Some(decision.reason.code()),
                duration: Some(nanos(r.total_time)),
            },
            http: Some(HttpFields {
                request: HttpRequest {
                    id: r.request_id.as_str(),
                    method: r.method.as_str(),
                },
                response: r.status.map(|status_code| HttpResponse { status_code }),
            }),
            url: Some(UrlFields { path: r.uri.path() }),
            source: r.source.map(|s| SourceFields {
                ip: s.ip().to_canonical(),
                port: s.port(),
            }),
            user: identity.map(|id| UserFields { id: id.subject() }),
            client: client_ip.map(|ip| ClientFields {
                ip,
                geo: network.and_then(|n| {
                    let l = &n.location;
                    (l.country.is_some() || l.city.is_some()).then(|| Geo {
                        country_iso_code: l.country.as_ref().map(|c| c.as_str()),
                        city_name: l.city.as_deref(),
                    })
                }),
                autonomous_system: network.and_then(|n| {
                    n.location.asn.map(|number| AutonomousSystem {
                        number,
                        organization: n.location.as_org.as_deref().map(|name| Org { name }),
                    })
                }),
            }),
            device: zt
                .and_then(ZeroTrust::device)
                .map(|d| DeviceFields { id: &d.device_id }),
            zerotrust: Zt {
                schema_version: SCHEMA_VERSION,
                decision: Some(DecisionFields {
                    outcome: decision.outcome.as_str(),
                    layer: decision.layer,
                    reason: decision.reason.code(),
                    enforced: decision.enforced,
                }),
                passed: Some(r.passed()),
                interrupted: r.interrupted.map(|i| match i {
                    Interruption::Cancelled => "cancelled",
                    Interruption::ServiceError => "service_error",
                }),
                route,
                identity: identity.map(|id| IdentityFields {
                    issuer: id.issuer(),
                    jti: id.jti(),
                    client_id: id.client_id(),
                    acr: id.acr(),
                    amr: id.amr(),
                }),
                device: zt.and_then(ZeroTrust::device).map(|d| DeviceDetail {
                    binding: d.binding.as_str(),
                    status: d.status.as_str(),
                    owned_by_subject: d.owned_by_subject,
                    violations: d.violations.iter().map(|v| v.as_str()).collect(),
                }),
                network: network.map(|n| NetworkFields {
                    zone: n.zone.as_str(),
                    travel: n.travel.as_ref().map(|t| TravelFields {
                        distance_km: t.distance_km,
                        elapsed_secs: t.elapsed_secs,
                        speed_kmh: t.speed_kmh,
                        impossible: t.impossible,
                    }),
                }),
                risk: risk.map(|risk| RiskFields {
                    score: risk.score,
                    trust_level: risk.trust_level.as_str(),
                    signals: risk
                        .reasons
                        .into_iter()
                        .map(|s| SignalFields {
                            name: s.name().to_owned(),
                            weight: s.weight(),
                            evidence: s.evidence().to_owned(),
                        })
                        .collect(),
                }),
                duration_ns: Some(nanos(r.zerotrust_time)),
                layers: r
                    .layers
                    .as_slice()
                    .iter()
                    .map(|(name, d)| LayerFields {
                        name,
                        duration_ns: nanos(*d),
                    })
                    .collect(),
                dropped: None,
            },
        }
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

// The serialized shape. Field order is the record's field order; `zerotrust` must stay last (the
// chain fields are appended inside it).

#[derive(Serialize)]
struct Ecs<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: String,
    message: String,
    ecs: EcsVersion,
    event: EventFields<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    http: Option<HttpFields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<UrlFields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<SourceFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<UserFields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client: Option<ClientFields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<DeviceFields<'a>>,
    zerotrust: Zt<'a>,
}

#[derive(Serialize)]
struct EcsVersion {
    version: &'static str,
}

#[derive(Serialize)]
struct EventFields<'a> {
    kind: &'static str,
    category: [&'static str; 1],
    #[serde(rename = "type")]
    types: &'static [&'static str],
    action: &'static str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'a str>,
    /// Nanoseconds, as ECS defines it.
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<u64>,
}

#[derive(Serialize)]
struct HttpFields<'a> {
    request: HttpRequest<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<HttpResponse>,
}

#[derive(Serialize)]
struct HttpRequest<'a> {
    id: &'a str,
    method: &'a str,
}

#[derive(Serialize)]
struct HttpResponse {
    status_code: u16,
}

#[derive(Serialize)]
struct UrlFields<'a> {
    path: &'a str,
}

#[derive(Serialize)]
struct SourceFields {
    ip: IpAddr,
    port: u16,
}

#[derive(Serialize)]
struct UserFields<'a> {
    id: &'a str,
}

#[derive(Serialize)]
struct ClientFields<'a> {
    ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    geo: Option<Geo<'a>>,
    #[serde(rename = "as", skip_serializing_if = "Option::is_none")]
    autonomous_system: Option<AutonomousSystem<'a>>,
}

#[derive(Serialize)]
struct Geo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    country_iso_code: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    city_name: Option<&'a str>,
}

#[derive(Serialize)]
struct AutonomousSystem<'a> {
    number: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    organization: Option<Org<'a>>,
}

#[derive(Serialize)]
struct Org<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct DeviceFields<'a> {
    id: &'a str,
}

#[derive(Serialize, Default)]
struct Zt<'a> {
    schema_version: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    decision: Option<DecisionFields>,
    /// Whether the request reached the service (allowed, or refused in report-only mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    passed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interrupted: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    route: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<IdentityFields<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device: Option<DeviceDetail>,
    #[serde(skip_serializing_if = "Option::is_none")]
    network: Option<NetworkFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<RiskFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration_ns: Option<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    layers: Vec<LayerFields>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dropped: Option<u64>,
}

#[derive(Serialize)]
struct DecisionFields {
    outcome: &'static str,
    layer: &'static str,
    reason: &'static str,
    enforced: bool,
}

#[derive(Serialize)]
struct IdentityFields<'a> {
    issuer: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    jti: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    amr: &'a [String],
}

#[derive(Serialize)]
struct DeviceDetail {
    binding: &'static str,
    status: &'static str,
    owned_by_subject: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    violations: Vec<&'static str>,
}

#[derive(Serialize)]
struct NetworkFields {
    zone: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    travel: Option<TravelFields>,
}

#[derive(Serialize)]
struct TravelFields {
    distance_km: f64,
    elapsed_secs: i64,
    speed_kmh: f64,
    impossible: bool,
}

#[derive(Serialize)]
struct RiskFields {
    score: f64,
    trust_level: &'static str,
    signals: Vec<SignalFields>,
}

#[derive(Serialize)]
struct SignalFields {
    name: String,
    weight: f64,
    evidence: String,
}

#[derive(Serialize)]
struct LayerFields {
    name: &'static str,
    duration_ns: u64,
}

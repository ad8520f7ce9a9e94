//! The record as the crate first wrote it, through `serde_json` and derived structs: kept for
//! the tests, which check that the hand-written encoder writes the same bytes.

use std::net::IpAddr;

use axum::extract::MatchedPath;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use zerotrust_core::{Outcome, ZeroTrust};

use super::{
    AuditEvent, ECS_VERSION, EventKind, Interruption, RequestEvent, SCHEMA_VERSION, nanos,
};

impl AuditEvent {
    /// The record as `serde_json` writes the reference structs.
    pub(crate) fn reference_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.ecs()).unwrap_or_default()
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
        let risk = zt
            .filter(|zt| zt.risk_assessed())
            .map(ZeroTrust::risk_assessment);
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use zerotrust_core::device::{
        DeviceAssessment, DeviceBinding, DeviceStatus, Posture, PostureRule,
    };
    use zerotrust_core::{
        Decision, GeoLocation, Identity, NetworkAssessment, NetworkZone, Outcome, Reason,
        RiskSignal, ZeroTrust,
    };

    use zerotrust_core::geo::Travel;

    use crate::event::{AuditEvent, EventKind, Interruption, LayerTimes, RequestEvent};
    use crate::request_id::RequestId;

    fn request(context: Option<ZeroTrust>, uri: &str) -> RequestEvent {
        let mut layers = LayerTimes::new();
        layers.push("jwt", Duration::from_nanos(3_877));
        layers.push("device", Duration::from_micros(5));
        RequestEvent {
            request_id: RequestId::Generated(*b"0b1bd19e06a5f7da0000000000028d42"),
            method: http::Method::GET,
            uri: uri.parse().unwrap(),
            route: None,
            source: Some("[::ffff:127.0.0.1]:51012".parse().unwrap()),
            status: Some(200),
            refused: false,
            interrupted: None,
            context,
            layers,
            zerotrust_time: Duration::from_nanos(13_405),
            total_time: Duration::from_nanos(15_669),
        }
    }

    fn full_context(odd: &str) -> ZeroTrust {
        let mut zt = ZeroTrust::new();
        zt.set_identity(Arc::new(
            Identity::new(format!("alice {odd}"), "https://idp.example", 2_000_000_000)
                .with_jti(Some("jti-1".into()))
                .with_client_id(Some(odd.into()))
                .with_acr(Some("urn:mfa".into()))
                .with_amr(vec!["pwd".into(), "otp\"".into()]),
        ));
        zt.set_device(DeviceAssessment {
            device_id: Arc::from(format!("d-{odd}")),
            binding: DeviceBinding::Header,
            status: DeviceStatus::Known,
            owned_by_subject: true,
            posture: Posture::default(),
            violations: vec![PostureRule::DiskEncryption, PostureRule::PostureAge],
        });
        zt.set_network(NetworkAssessment {
            client_ip: "2001:db8::7".parse().unwrap(),
            location: GeoLocation {
                country: zerotrust_core::CountryCode::new("JP"),
                asn: Some(64_500),
                as_org: Some(Arc::from(format!("Org {odd}"))),
                city: Some(Arc::from("Tōkyō")),
                ..GeoLocation::default()
            },
            zone: NetworkZone::Public,
            travel: Some(Travel {
                distance_km: 9_558.123_456_7,
                elapsed_secs: -3,
                speed_kmh: f64::INFINITY,
                impossible: true,
            }),
        });
        zt.add_signal(RiskSignal::new(
            "travel.impossible",
            0.727_839_999_999_999_9,
            odd.to_owned(),
        ));
        zt.add_signal(RiskSignal::new("device.weak_binding", 0.1, "headers only"));
        zt.set_route(Arc::from(format!("/api/{odd}")));
        zt.set_decision(Decision {
            outcome: Outcome::Deny,
            reason: Reason::new("stepup.risk_too_high", "Too risky."),
            layer: "stepup",
            enforced: false,
        });
        zt
    }

    fn assert_same(event: &AuditEvent) {
        let mut ours = Vec::new();
        event.write_json(&mut ours).unwrap();
        let reference = event.reference_json();
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(reference).unwrap()
        );
    }

    #[test]
    fn the_encoder_writes_what_serde_json_wrote() {
        let odd = "q\"uote \\ back\nline \u{1} é 🦀";
        let times = [
            SystemTime::UNIX_EPOCH,
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_795_000_000_123_456),
            SystemTime::UNIX_EPOCH + Duration::from_nanos(1_795_000_000_999_999_999),
            SystemTime::UNIX_EPOCH - Duration::from_secs(86_400 * 365 + 1),
        ];
        for time in times {
            // A request with every field, odd characters in every string that can hold them.
            let mut r = request(Some(full_context(odd)), "/api/a%20b?secret=1");
            r.refused = true;
            assert_same(&AuditEvent {
                time,
                kind: EventKind::Request(r),
            });
            // Allowed, an empty context, no source, no status.
            let mut r = request(Some(ZeroTrust::new()), "/");
            r.source = None;
            r.status = None;
            assert_same(&AuditEvent {
                time,
                kind: EventKind::Request(r),
            });
            // Cancelled and service errors, without a context.
            for interrupted in [Interruption::Cancelled, Interruption::ServiceError] {
                let mut r = request(None, "/x");
                r.interrupted = Some(interrupted);
                r.layers = LayerTimes::new();
                assert_same(&AuditEvent {
                    time,
                    kind: EventKind::Request(r),
                });
            }
            assert_same(&AuditEvent {
                time,
                kind: EventKind::Dropped { count: 12_345 },
            });
        }
    }
}

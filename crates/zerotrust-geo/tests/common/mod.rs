//! Shared helpers: MaxMind databases built on the spot, an axum app on 127.0.0.1 that shows the
//! handler's `ZeroTrust`, and a client.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    unreachable_pub
)]

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::routing::get;
use axum::{Json, Router};
use maxminddb_writer::Database;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use zerotrust_core::{ClientIpResolver, ForwardedSource, Identity, ZeroTrust};
use zerotrust_geo::GeoRiskLayer;

// ---------------------------------------------------------------------------------------------
// MaxMind databases, written with `maxminddb-writer` in the MaxMind DB format.

#[derive(Serialize)]
struct Names<'a> {
    en: &'a str,
}

#[derive(Serialize)]
struct Country<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct City<'a> {
    names: Names<'a>,
}

#[derive(Serialize)]
struct Location {
    latitude: f64,
    longitude: f64,
    accuracy_radius: u16,
}

#[derive(Serialize)]
struct CityRecord<'a> {
    country: Country<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    city: Option<City<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    location: Option<Location>,
}

#[derive(Serialize)]
struct AsnRecord<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

/// One network of the test City database.
pub struct Place {
    pub net: &'static str,
    pub country: &'static str,
    /// City name, coordinates and accuracy radius (km); `None` for a country-only entry.
    pub city: Option<(&'static str, f64, f64, u16)>,
}

/// The test City database's networks: real-looking places, plus entries for a private and a
/// documentation range that a locator must ignore.
pub const PLACES: &[Place] = &[
    Place {
        net: "81.2.69.0/24",
        country: "GB",
        city: Some(("London", 51.5142, -0.0931, 10)),
    },
    Place {
        net: "2.125.160.216/29",
        country: "GB",
        city: None,
    },
    Place {
        net: "89.160.20.0/24",
        country: "SE",
        city: Some(("Linköping", 58.4167, 15.6167, 76)),
    },
    Place {
        net: "216.160.83.0/24",
        country: "US",
        city: Some(("Milton", 47.2513, -122.3149, 22)),
    },
    Place {
        net: "74.209.24.0/24",
        country: "US",
        city: Some(("Chatham", 42.3496, -73.5940, 20)),
    },
    Place {
        net: "175.16.199.0/24",
        country: "CN",
        city: Some(("Changchun", 43.88, 125.3228, 100)),
    },
    Place {
        net: "2001:218::/32",
        country: "JP",
        city: Some(("Tokyo", 35.6897, 139.6922, 50)),
    },
    // Never to be used: local and documentation addresses have no location.
    Place {
        net: "10.0.0.0/8",
        country: "US",
        city: Some(("Nowhere", 40.0, -100.0, 5)),
    },
    Place {
        net: "203.0.113.0/24",
        country: "AU",
        city: Some(("Nowhere", -33.0, 151.0, 5)),
    },
];

/// The test ASN database's networks.
pub const ASNS: &[(&str, u32, &str)] = &[
    ("81.2.69.0/24", 20712, "Andrews & Arnold Ltd"),
    (
        "216.160.83.0/24",
        64496,
        "Example Hosting (documentation ASN)",
    ),
    ("2001:218::/32", 2914, "NTT America, Inc."),
    ("10.0.0.0/8", 64511, "Private (never used)"),
];

/// A network as a path in an IPv6 tree (IPv4 networks under `::/96`, where readers look for
/// them).
fn path(net: &str) -> IpAddrWithMask {
    let net: ipnet::IpNet = net.parse().unwrap();
    match net {
        ipnet::IpNet::V4(v4) => IpAddrWithMask::new(
            IpAddr::V6(v4.network().to_ipv6_compatible()),
            v4.prefix_len() + 96,
        ),
        ipnet::IpNet::V6(v6) => IpAddrWithMask::new(IpAddr::V6(v6.network()), v6.prefix_len()),
    }
}

fn database(database_type: &str) -> Database {
    let mut db = Database::default();
    db.metadata.ip_version = IpVersion::V6;
    db.metadata.database_type = database_type.to_owned();
    db.metadata.binary_format_major_version = 2;
    db.metadata.binary_format_minor_version = 0;
    db.metadata.languages = vec!["en".to_owned()];
    db.metadata.build_epoch = 1_700_000_000;
    db
}

/// A GeoLite2-City-like database of [`PLACES`].
pub fn city_db() -> Vec<u8> {
    city_db_of(PLACES)
}

/// A GeoLite2-City-like database of `places`.
pub fn city_db_of(places: &[Place]) -> Vec<u8> {
    let mut db = database("GeoLite2-City");
    for place in places {
        let record = CityRecord {
            country: Country {
                iso_code: place.country,
            },
            city: place.city.map(|(name, ..)| City {
                names: Names { en: name },
            }),
            location: place
                .city
                .map(|(_, latitude, longitude, accuracy_radius)| Location {
                    latitude,
                    longitude,
                    accuracy_radius,
                }),
        };
        let data = db.insert_value(record).unwrap();
        db.insert_node(path(place.net), data);
    }
    db.write_to(Vec::new()).unwrap()
}

/// A GeoLite2-ASN-like database of [`ASNS`].
pub fn asn_db() -> Vec<u8> {
    let mut db = database("GeoLite2-ASN");
    for (net, number, org) in ASNS {
        let data = db
            .insert_value(AsnRecord {
                autonomous_system_number: *number,
                autonomous_system_organization: org,
            })
            .unwrap();
        db.insert_node(path(net), data);
    }
    db.write_to(Vec::new()).unwrap()
}

// ---------------------------------------------------------------------------------------------
// The app: one route that shows what the layer put into `ZeroTrust`.

async fn probe(zt: ZeroTrust) -> Json<Value> {
    let network = zt.network().map(|n| {
        json!({
            "client_ip": n.client_ip.to_string(),
            "zone": n.zone.as_str(),
            "country": n.location.country.map(|c| c.to_string()),
            "asn": n.location.asn,
            "as_org": n.location.as_org.as_deref(),
            "city": n.location.city.as_deref(),
            "point": n.location.point.map(|p| [p.lat, p.lon]),
            "accuracy_km": n.location.accuracy_km,
            "travel": n.travel.map(|t| json!({
                "distance_km": t.distance_km,
                "elapsed_secs": t.elapsed_secs,
                "speed_kmh": if t.speed_kmh.is_finite() { json!(t.speed_kmh) } else { json!("inf") },
                "impossible": t.impossible,
            })),
        })
    });
    let signals: Vec<Value> = zt
        .signals()
        .iter()
        .map(|s| json!({"name": s.name(), "weight": s.weight(), "evidence": s.evidence()}))
        .collect();
    Json(json!({
        "network": network,
        "signals": signals,
        "decision": zt.decision().map(|d| json!({
            "code": d.reason.code(),
            "layer": d.layer,
            "enforced": d.enforced,
            "outcome": d.outcome.as_str(),
        })),
    }))
}

/// Stands in for an authentication layer: `x-test-subject: alice` makes `alice` the verified
/// subject.
async fn subject_from_header(mut req: Request) -> Request {
    let subject = req
        .headers()
        .get("x-test-subject")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if let Some(subject) = subject {
        ZeroTrust::get_or_insert(req.extensions_mut()).set_identity(Arc::new(Identity::new(
            subject,
            "https://idp.test",
            4_000_000_000,
        )));
    }
    req
}

/// The app: `/probe` behind the geo layer, behind the test authentication.
pub fn app(layer: GeoRiskLayer) -> Router {
    Router::new()
        .route("/probe", get(probe))
        .layer(layer)
        .layer(axum::middleware::map_request(subject_from_header))
}

/// Believes `X-Forwarded-For` from the loopback peer: the tests' client plays a proxy that
/// forwards clients from anywhere.
pub fn via_loopback_proxy() -> ClientIpResolver {
    ClientIpResolver::builder()
        .trusted_proxies(["127.0.0.0/8".parse().unwrap()])
        .source(ForwardedSource::XForwardedFor)
        .build()
}

/// Serves `router` on 127.0.0.1 with the socket peer recorded (`ConnectInfo`).
pub async fn serve(router: Router) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

/// A reply: status, headers and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The signal named `name`, if the handler saw it.
    pub fn signal(&self, name: &str) -> Option<&Value> {
        self.body["signals"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == name)
    }

    /// The names of the signals the handler saw.
    pub fn signal_names(&self) -> Vec<String> {
        self.body["signals"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Asserts a 403 problem response with `code`.
    pub fn assert_forbidden(&self, code: &str) {
        self.assert_problem(403, code);
    }

    /// Asserts a problem response with `status` and `code`.
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{self:?}");
        assert_eq!(
            self.headers["content-type"], "application/problem+json",
            "{self:?}"
        );
        assert_eq!(self.body["code"], code, "{self:?}");
        assert_eq!(self.body["status"], status);
        assert_eq!(self.body["type"], format!("urn:zerotrust:problem:{code}"));
        assert!(self.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
}

/// A client for one server.
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
        }
    }

    /// GET /probe as the client `from` (sent as `X-Forwarded-For`, believed only by resolvers
    /// that trust the loopback proxy), as `subject` if given.
    pub async fn get(&self, from: Option<&str>, subject: Option<&str>) -> Reply {
        let mut req = self.http.get(format!("{}/probe", self.base));
        if let Some(from) = from {
            req = req.header("x-forwarded-for", from);
        }
        if let Some(subject) = subject {
            req = req.header("x-test-subject", subject);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply {
            status,
            headers,
            body,
        }
    }
}

/// A fresh directory under the system's temporary directory.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "zerotrust-geo-{name}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

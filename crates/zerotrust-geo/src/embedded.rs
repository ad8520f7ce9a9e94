//! The default geo source: country data compiled into the binary, no file to deploy.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use tor_geoip::GeoipDb;
use zerotrust_core::geo::{CountryCode, GeoLocation, GeoLocator};

use crate::centroids::{self, centroid};
use crate::special::{AddressScope, address_scope};

/// Countries from the Tor Project's GeoIP tables (derived from the IPFire Location database)
/// compiled into the binary: every IPv4 and IPv6 address a country, with the country's centre and
/// extent as the point and accuracy.
///
/// - **Built once per process.** The first [`EmbeddedGeo::new`] parses the tables (about a quarter
///   of a second in a release build, a few seconds in a debug build, and some 30 MB of memory);
///   every later call shares the same tables. Build it at startup, not on a request.
/// - **Country-level.** The point of every address is its country's centre, and `accuracy_km` is
///   the country's extent, so travel is judged only between countries. For city coordinates and
///   autonomous systems, add MaxMind databases ([`MaxMindGeo`](crate::MaxMindGeo)).
/// - **No autonomous systems.** The tables carry no ASN column, so `asn` is always `None` here.
/// - The data is a snapshot of the release of the `tor-geoip` crate in use; the data is licensed
///   CC BY-SA 4.0 by the IPFire Project.
///
/// Local and special-purpose addresses are never placed (see [`address_scope`]).
///
/// ```
/// use zerotrust_core::geo::GeoLocator;
/// use zerotrust_geo::EmbeddedGeo;
///
/// let geo = EmbeddedGeo::new();
/// let google_dns = geo.locate("8.8.8.8".parse().unwrap());
/// assert_eq!(google_dns.country.unwrap().as_str(), "US");
/// assert!(google_dns.point.is_some() && google_dns.accuracy_km.unwrap() > 1000.0);
/// assert_eq!(geo.locate("192.168.1.20".parse().unwrap()), Default::default());
/// ```
#[derive(Clone)]
pub struct EmbeddedGeo {
    db: Arc<GeoipDb>,
}

impl fmt::Debug for EmbeddedGeo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedGeo").finish_non_exhaustive()
    }
}

impl Default for EmbeddedGeo {
    fn default() -> Self {
        Self::new()
    }
}

impl EmbeddedGeo {
    /// The embedded tables, parsed on the first call in the process and shared after that.
    ///
    /// The first call blocks while it parses; call it at startup (building a
    /// [`GeoRisk`](crate::GeoRisk) without another locator does).
    pub fn new() -> Self {
        let started = Instant::now();
        let db = GeoipDb::new_embedded();
        let elapsed = started.elapsed();
        if elapsed.as_millis() >= 10 {
            tracing::info!(
                target: "zerotrust::geo",
                elapsed_ms = elapsed.as_millis() as u64,
                "embedded geo tables parsed"
            );
        }
        Self { db }
    }

    /// The country of `ip` alone, without coordinates.
    pub fn country(&self, ip: IpAddr) -> Option<CountryCode> {
        let ip = ip.to_canonical();
        if address_scope(ip) != AddressScope::Global {
            return None;
        }
        self.db
            .lookup_country_code(ip)
            .and_then(|cc| centroids::country(cc.get()))
    }
}

impl GeoLocator for EmbeddedGeo {
    fn locate(&self, ip: IpAddr) -> GeoLocation {
        let ip = ip.to_canonical();
        if address_scope(ip) != AddressScope::Global {
            return GeoLocation::default();
        }
        let country = self
            .db
            .lookup_country_code(ip)
            .and_then(|cc| centroids::country(cc.get()));
        let place = country.and_then(centroid);
        GeoLocation {
            country,
            asn: self.db.lookup_asn(ip),
            point: place.map(|c| c.point()),
            accuracy_km: place.map(|c| c.radius_km()),
            ..GeoLocation::default()
        }
    }
}

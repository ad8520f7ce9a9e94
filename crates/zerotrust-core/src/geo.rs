//! Where an address is: the [`GeoLocator`] trait that geo sources implement, and what they answer.
//!
//! Lookups are synchronous: every source this suite ships (embedded tables, MaxMind files) answers
//! from memory, and a lookup must cost well under a microsecond on the request path.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// An ISO 3166-1 alpha-2 country code, always upper case (`DE`, `US`).
///
/// ```
/// use zerotrust_core::geo::CountryCode;
///
/// let de = CountryCode::new("de").unwrap();
/// assert_eq!(de.as_str(), "DE");
/// assert!(CountryCode::new("DEU").is_none());
/// assert!(CountryCode::new("1A").is_none());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CountryCode([u8; 2]);

impl CountryCode {
    /// The code for two ASCII letters (either case); `None` for anything else.
    pub fn new(code: &str) -> Option<Self> {
        match code.as_bytes() {
            [a, b] if a.is_ascii_alphabetic() && b.is_ascii_alphabetic() => {
                Some(Self([a.to_ascii_uppercase(), b.to_ascii_uppercase()]))
            }
            _ => None,
        }
    }

    /// The two upper-case letters.
    pub fn as_str(&self) -> &str {
        // Both bytes are ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }
}

impl fmt::Debug for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A point on the Earth, in degrees (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GeoPoint {
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lon: f64,
}

/// The mean Earth radius (IUGG), in kilometres.
const EARTH_RADIUS_KM: f64 = 6371.0088;

impl GeoPoint {
    /// A point, or `None` if either coordinate is out of range or not a number.
    pub fn new(lat: f64, lon: f64) -> Option<Self> {
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon))
            .then_some(Self { lat, lon })
    }

    /// The great-circle distance to `other` in kilometres (haversine formula).
    ///
    /// ```
    /// use zerotrust_core::geo::GeoPoint;
    ///
    /// let paris = GeoPoint::new(48.8566, 2.3522).unwrap();
    /// let new_york = GeoPoint::new(40.7128, -74.0060).unwrap();
    /// let d = paris.distance_km(&new_york);
    /// assert!((d - 5837.0).abs() < 10.0, "{d}");
    /// ```
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (lat1, lat2) = (self.lat.to_radians(), other.lat.to_radians());
        let dlat = lat2 - lat1;
        let dlon = (other.lon - self.lon).to_radians();
        let a = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// What a [`GeoLocator`] knows about an address. Every field is optional: sources differ, and an
/// address may be missing from all of them.
///
/// Build one with struct-update syntax so fields added later keep your code compiling:
///
/// ```
/// use zerotrust_core::geo::{CountryCode, GeoLocation};
///
/// let loc = GeoLocation { country: CountryCode::new("SE"), asn: Some(3301), ..Default::default() };
/// assert_eq!(loc.country.unwrap().as_str(), "SE");
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GeoLocation {
    /// The country the address is registered or located in.
    pub country: Option<CountryCode>,
    /// The autonomous system announcing the address.
    pub asn: Option<u32>,
    /// The autonomous system's organisation, when the source has it.
    pub as_org: Option<Arc<str>>,
    /// The city, when the source has it (MaxMind City databases).
    pub city: Option<Arc<str>>,
    /// Coordinates: a city's from a City database, otherwise the country's centroid.
    pub point: Option<GeoPoint>,
    /// How far, in kilometres, the client may be from `point` (a city's accuracy radius, or a
    /// country's extent when `point` is its centroid).
    pub accuracy_km: Option<f64>,
}

/// A source of [`GeoLocation`]s: the embedded tables of `zerotrust-geo` by default, MaxMind
/// databases when configured.
///
/// Implementations answer from memory and must not block; a lookup for an address the source does
/// not know answers `GeoLocation::default()`. Every implementation in this suite passes the same
/// test suite (`zerotrust_testkit::geo_locator_tests!`).
pub trait GeoLocator: Send + Sync + 'static {
    /// What the source knows about `ip`.
    fn locate(&self, ip: IpAddr) -> GeoLocation;
}

impl<L: GeoLocator + ?Sized> GeoLocator for Arc<L> {
    fn locate(&self, ip: IpAddr) -> GeoLocation {
        (**self).locate(ip)
    }
}

/// What the network layer established about where a request came from.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkAssessment {
    /// The client address (see [`ClientIp`](crate::ClientIp)).
    pub client_ip: IpAddr,
    /// What the geo source knows about it.
    pub location: GeoLocation,
    /// Which kind of network the address belongs to.
    pub zone: NetworkZone,
    /// The movement since the subject's previous sighting, when both had coordinates.
    pub travel: Option<Travel>,
}

/// The kind of network a client address belongs to, by the operator's lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NetworkZone {
    /// One of the operator's trusted networks (offices, VPN concentrators, the cluster).
    Trusted,
    /// A private or local address (RFC 1918, RFC 4193, loopback, link-local) not listed as trusted.
    Private,
    /// Any other public address.
    Public,
    /// A listed anonymiser: a Tor exit node, a VPN or proxy range.
    Anonymizer,
}

impl NetworkZone {
    /// The zone's stable lower-case name, as written in audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkZone::Trusted => "trusted",
            NetworkZone::Private => "private",
            NetworkZone::Public => "public",
            NetworkZone::Anonymizer => "anonymizer",
        }
    }
}

/// The movement between a subject's previous sighting and this request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    /// Distance between the two points, less both accuracy radii (never negative), in km.
    pub distance_km: f64,
    /// Seconds between the two sightings.
    pub elapsed_secs: i64,
    /// The speed the movement needs, in km/h (infinite when no time passed but distance did).
    pub speed_kmh: f64,
    /// Whether the speed is above the configured limit.
    pub impossible: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_coordinates_are_refused() {
        assert!(GeoPoint::new(91.0, 0.0).is_none());
        assert!(GeoPoint::new(0.0, -180.5).is_none());
        assert!(GeoPoint::new(f64::NAN, 0.0).is_none());
    }

    #[test]
    fn antipodes_are_half_the_circumference_apart() {
        let a = GeoPoint { lat: 0.0, lon: 0.0 };
        let b = GeoPoint {
            lat: 0.0,
            lon: 180.0,
        };
        let half = std::f64::consts::PI * EARTH_RADIUS_KM;
        assert!((a.distance_km(&b) - half).abs() < 1e-6);
        assert_eq!(a.distance_km(&a), 0.0);
    }
}

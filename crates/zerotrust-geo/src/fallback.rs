//! Composing geo sources: ask a precise one first, fill its gaps from a broader one.

use std::net::IpAddr;

use zerotrust_core::geo::{GeoLocation, GeoLocator};

/// A [`GeoLocator`] that asks `primary` and fills what it does not know from `fallback`.
///
/// - The country and the autonomous system (with its organisation) are taken from `fallback`
///   only when `primary` has none.
/// - Coordinates (with their accuracy and city) are taken from `fallback` only when `primary` has
///   none and both agree on the country (or `primary` has no country), so a point is never paired
///   with another country's name.
/// - `fallback` is not asked at all when `primary` answered country, ASN and coordinates.
///
/// Build one with [`GeoLocatorExt::or`]:
///
/// ```
/// use zerotrust_core::geo::{CountryCode, GeoLocation, GeoLocator};
/// use zerotrust_geo::{EmbeddedGeo, GeoLocatorExt};
///
/// // A source that knows only autonomous systems (here, one fixed answer).
/// struct AsnOnly;
/// impl GeoLocator for AsnOnly {
///     fn locate(&self, _ip: std::net::IpAddr) -> GeoLocation {
///         GeoLocation { asn: Some(15169), ..Default::default() }
///     }
/// }
///
/// let geo = AsnOnly.or(EmbeddedGeo::new());
/// let loc = geo.locate("8.8.8.8".parse().unwrap());
/// assert_eq!(loc.asn, Some(15169));
/// assert_eq!(loc.country, CountryCode::new("US"));
/// assert!(loc.point.is_some());
/// ```
#[derive(Debug, Clone)]
pub struct Fallback<P, F> {
    primary: P,
    fallback: F,
}

impl<P, F> Fallback<P, F> {
    /// `primary`, with its gaps filled from `fallback`.
    pub fn new(primary: P, fallback: F) -> Self {
        Self { primary, fallback }
    }
}

impl<P: GeoLocator, F: GeoLocator> GeoLocator for Fallback<P, F> {
    fn locate(&self, ip: IpAddr) -> GeoLocation {
        let mut loc = self.primary.locate(ip);
        if loc.country.is_some() && loc.asn.is_some() && loc.point.is_some() {
            return loc;
        }
        let other = self.fallback.locate(ip);
        let agree = match (loc.country, other.country) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        if loc.point.is_none() && agree && other.point.is_some() {
            loc.point = other.point;
            loc.accuracy_km = other.accuracy_km;
            if loc.city.is_none() {
                loc.city = other.city;
            }
        }
        if loc.country.is_none() {
            loc.country = other.country;
        }
        if loc.asn.is_none() {
            loc.asn = other.asn;
            loc.as_org = other.as_org;
        }
        loc
    }
}

/// Combinators for every [`GeoLocator`].
pub trait GeoLocatorExt: GeoLocator + Sized {
    /// This source, with its gaps filled from `fallback` (see [`Fallback`]).
    ///
    /// ```
    /// use zerotrust_geo::{EmbeddedGeo, GeoLocatorExt, MaxMindGeo};
    ///
    /// # fn main() -> Result<(), zerotrust_geo::MaxMindError> {
    /// # let city_db = std::path::Path::new("missing.mmdb");
    /// # if city_db.exists() {
    /// let geo = MaxMindGeo::builder().city_file(city_db).build()?.or(EmbeddedGeo::new());
    /// # let _ = geo;
    /// # }
    /// # Ok(()) }
    /// ```
    fn or<F: GeoLocator>(self, fallback: F) -> Fallback<Self, F> {
        Fallback::new(self, fallback)
    }
}

impl<L: GeoLocator> GeoLocatorExt for L {}

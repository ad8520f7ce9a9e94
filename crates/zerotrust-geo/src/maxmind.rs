//! MaxMind GeoIP2 / GeoLite2 databases (and compatible ones, such as DB-IP's): city coordinates
//! and autonomous systems.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use maxminddb::Reader;
use serde::Deserialize;
use zerotrust_core::geo::{GeoLocation, GeoLocator, GeoPoint};

use crate::centroids::{self, centroid};
use crate::special::{AddressScope, address_scope};

/// A MaxMind database could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaxMindError {
    /// The file could not be read.
    #[error("cannot read the {slot} database {path}: {source}")]
    Read {
        /// `city` or `asn`.
        slot: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The bytes are not a valid MaxMind DB.
    #[error("the {slot} database is not a valid MaxMind DB: {source}")]
    Invalid {
        /// `city` or `asn`.
        slot: &'static str,
        /// Why.
        #[source]
        source: maxminddb::MaxMindDbError,
    },
    /// The database holds another kind of data than its slot needs (an ASN database given as the
    /// city database, or the other way round).
    #[error("the {slot} database is of type {database_type:?}, which has no {slot} data")]
    WrongKind {
        /// `city` or `asn`.
        slot: &'static str,
        /// The `database_type` from the database's metadata.
        database_type: String,
    },
    /// Neither a city nor an ASN database was given.
    #[error("no MaxMind database was configured")]
    NoDatabase,
}

#[derive(Clone)]
enum Source {
    File(PathBuf),
    Bytes(Arc<[u8]>),
}

/// Which kind of database fills a slot.
#[derive(Clone, Copy)]
enum Slot {
    City,
    Asn,
}

impl Slot {
    fn name(self) -> &'static str {
        match self {
            Slot::City => "city",
            Slot::Asn => "asn",
        }
    }

    /// Whether a database of `database_type` has this slot's data. City, Country and Enterprise
    /// databases have countries (the latter two also coordinates); ASN and ISP databases have
    /// autonomous systems.
    fn accepts(self, database_type: &str) -> bool {
        let t = database_type.to_ascii_lowercase();
        match self {
            Slot::City => ["city", "country", "enterprise"]
                .iter()
                .any(|k| t.contains(k)),
            Slot::Asn => ["asn", "isp"].iter().any(|k| t.contains(k)),
        }
    }

    fn open(self, source: &Source) -> Result<Reader<Arc<[u8]>>, MaxMindError> {
        let bytes: Arc<[u8]> = match source {
            Source::File(path) => std::fs::read(path)
                .map_err(|source| MaxMindError::Read {
                    slot: self.name(),
                    path: path.clone(),
                    source,
                })?
                .into(),
            Source::Bytes(bytes) => Arc::clone(bytes),
        };
        let reader = Reader::from_source(bytes).map_err(|source| MaxMindError::Invalid {
            slot: self.name(),
            source,
        })?;
        let database_type = &reader.metadata().database_type;
        if !self.accepts(database_type) {
            return Err(MaxMindError::WrongKind {
                slot: self.name(),
                database_type: database_type.clone(),
            });
        }
        Ok(reader)
    }
}

struct Databases {
    city: Option<Reader<Arc<[u8]>>>,
    asn: Option<Reader<Arc<[u8]>>>,
}

/// What a loaded database is, for monitoring its age.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseInfo {
    /// `city` or `asn`.
    pub slot: &'static str,
    /// The `database_type` from its metadata, such as `GeoLite2-City`.
    pub database_type: String,
    /// When it was built, in seconds since the Unix epoch.
    pub build_epoch: u64,
}

/// Geo data from MaxMind DB files: a City (or Country, or Enterprise) database for country, city
/// and coordinates with their accuracy radius, and an ASN (or ISP) database for the autonomous
/// system and its organisation. Either may be left out.
///
/// - Coordinates come with the database's `accuracy_radius`; an address the City database places
///   only by country gets the country's centre and extent, as [`EmbeddedGeo`](crate::EmbeddedGeo)
///   does.
/// - Files are read into memory (GeoLite2-City is some 60 MB). They are not memory-mapped: that
///   needs `unsafe`, and a file replaced in place under a mapping is undefined behaviour.
/// - [`reload`](MaxMindGeo::reload) re-reads the files (after `geoipupdate`, for example); a file
///   that fails to load keeps the databases in use.
/// - Chain it with [`EmbeddedGeo`](crate::EmbeddedGeo) to fill in what the files lack:
///   `MaxMindGeo::builder()...build()?.or(EmbeddedGeo::new())` (see
///   [`GeoLocatorExt`](crate::GeoLocatorExt)).
///
/// Local and special-purpose addresses are never placed (see
/// [`address_scope`](crate::address_scope)).
///
/// ```no_run
/// use zerotrust_geo::{EmbeddedGeo, GeoLocatorExt, MaxMindGeo};
///
/// # fn main() -> Result<(), zerotrust_geo::MaxMindError> {
/// let geo = MaxMindGeo::builder()
///     .city_file("GeoIP/GeoLite2-City.mmdb")
///     .asn_file("GeoIP/GeoLite2-ASN.mmdb")
///     .build()?
///     .or(EmbeddedGeo::new());
/// # let _ = geo;
/// # Ok(()) }
/// ```
pub struct MaxMindGeo {
    city: Option<Source>,
    asn: Option<Source>,
    databases: ArcSwap<Databases>,
}

impl fmt::Debug for MaxMindGeo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxMindGeo")
            .field("databases", &self.databases())
            .finish()
    }
}

/// Builds a [`MaxMindGeo`].
#[derive(Clone, Default)]
pub struct MaxMindGeoBuilder {
    city: Option<Source>,
    asn: Option<Source>,
}

impl fmt::Debug for MaxMindGeoBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MaxMindGeoBuilder")
            .field("city", &self.city.is_some())
            .field("asn", &self.asn.is_some())
            .finish()
    }
}

impl MaxMindGeoBuilder {
    /// The City, Country or Enterprise database, read from `path` (and re-read by
    /// [`MaxMindGeo::reload`]).
    ///
    /// ```no_run
    /// let geo = zerotrust_geo::MaxMindGeo::builder()
    ///     .city_file("GeoLite2-City.mmdb")
    ///     .build();
    /// # let _ = geo;
    /// ```
    pub fn city_file(mut self, path: impl AsRef<Path>) -> Self {
        self.city = Some(Source::File(path.as_ref().to_path_buf()));
        self
    }

    /// The City, Country or Enterprise database, from bytes already in memory.
    ///
    /// ```no_run
    /// let bytes = std::fs::read("GeoLite2-City.mmdb").unwrap();
    /// let geo = zerotrust_geo::MaxMindGeo::builder().city_bytes(bytes).build();
    /// # let _ = geo;
    /// ```
    pub fn city_bytes(mut self, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.city = Some(Source::Bytes(bytes.into()));
        self
    }

    /// The ASN or ISP database, read from `path` (and re-read by [`MaxMindGeo::reload`]).
    ///
    /// ```no_run
    /// let geo = zerotrust_geo::MaxMindGeo::builder()
    ///     .asn_file("GeoLite2-ASN.mmdb")
    ///     .build();
    /// # let _ = geo;
    /// ```
    pub fn asn_file(mut self, path: impl AsRef<Path>) -> Self {
        self.asn = Some(Source::File(path.as_ref().to_path_buf()));
        self
    }

    /// The ASN or ISP database, from bytes already in memory.
    ///
    /// ```no_run
    /// let bytes = std::fs::read("GeoLite2-ASN.mmdb").unwrap();
    /// let geo = zerotrust_geo::MaxMindGeo::builder().asn_bytes(bytes).build();
    /// # let _ = geo;
    /// ```
    pub fn asn_bytes(mut self, bytes: impl Into<Arc<[u8]>>) -> Self {
        self.asn = Some(Source::Bytes(bytes.into()));
        self
    }

    /// Opens the databases; fails if none was given, or one cannot be read, is not a MaxMind DB,
    /// or is of the wrong kind for its slot.
    ///
    /// ```
    /// use zerotrust_geo::{MaxMindError, MaxMindGeo};
    ///
    /// let err = MaxMindGeo::builder().city_bytes(b"not a database".to_vec()).build().unwrap_err();
    /// assert!(matches!(err, MaxMindError::Invalid { slot: "city", .. }));
    /// ```
    pub fn build(self) -> Result<MaxMindGeo, MaxMindError> {
        if self.city.is_none() && self.asn.is_none() {
            return Err(MaxMindError::NoDatabase);
        }
        let databases = open_all(self.city.as_ref(), self.asn.as_ref())?;
        Ok(MaxMindGeo {
            city: self.city,
            asn: self.asn,
            databases: ArcSwap::from_pointee(databases),
        })
    }
}

fn open_all(city: Option<&Source>, asn: Option<&Source>) -> Result<Databases, MaxMindError> {
    Ok(Databases {
        city: city.map(|s| Slot::City.open(s)).transpose()?,
        asn: asn.map(|s| Slot::Asn.open(s)).transpose()?,
    })
}

impl MaxMindGeo {
    /// A builder.
    pub fn builder() -> MaxMindGeoBuilder {
        MaxMindGeoBuilder::default()
    }

    /// Re-reads the databases given as files, and swaps them in at once for new lookups. On any
    /// error the databases in use stay, and the error is returned (and logged).
    ///
    /// Reading a file blocks; from async code, call it in `tokio::task::spawn_blocking`.
    pub fn reload(&self) -> Result<(), MaxMindError> {
        match open_all(self.city.as_ref(), self.asn.as_ref()) {
            Ok(databases) => {
                self.databases.store(Arc::new(databases));
                tracing::info!(target: "zerotrust::geo", databases = ?self.databases(), "MaxMind databases reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(target: "zerotrust::geo", %error, "MaxMind reload failed; keeping the databases in use");
                Err(error)
            }
        }
    }

    /// The databases in use.
    pub fn databases(&self) -> Vec<DatabaseInfo> {
        let dbs = self.databases.load();
        let info = |slot: &'static str, r: &Reader<Arc<[u8]>>| DatabaseInfo {
            slot,
            database_type: r.metadata().database_type.clone(),
            build_epoch: r.metadata().build_epoch,
        };
        dbs.city
            .iter()
            .map(|r| info("city", r))
            .chain(dbs.asn.iter().map(|r| info("asn", r)))
            .collect()
    }
}

// Only the fields used are decoded; the rest of each record is skipped.
#[derive(Deserialize)]
struct CityRecord<'a> {
    #[serde(borrow, default)]
    country: Option<CountryRecord<'a>>,
    #[serde(borrow, default)]
    registered_country: Option<CountryRecord<'a>>,
    #[serde(borrow, default)]
    city: Option<NamedRecord<'a>>,
    #[serde(default)]
    location: Option<LocationRecord>,
}

#[derive(Deserialize)]
struct CountryRecord<'a> {
    #[serde(borrow, default)]
    iso_code: Option<&'a str>,
}

#[derive(Deserialize)]
struct NamedRecord<'a> {
    #[serde(borrow, default)]
    names: Option<Names<'a>>,
}

#[derive(Deserialize)]
struct Names<'a> {
    #[serde(borrow, default)]
    en: Option<&'a str>,
}

#[derive(Deserialize)]
struct LocationRecord {
    #[serde(default)]
    latitude: Option<f64>,
    #[serde(default)]
    longitude: Option<f64>,
    #[serde(default)]
    accuracy_radius: Option<u16>,
}

#[derive(Deserialize)]
struct AsnRecord<'a> {
    #[serde(default)]
    autonomous_system_number: Option<u32>,
    #[serde(borrow, default)]
    autonomous_system_organization: Option<&'a str>,
}

fn lookup<'de, T: Deserialize<'de>>(reader: &'de Reader<Arc<[u8]>>, ip: IpAddr) -> Option<T> {
    // An IPv6 address in an IPv4-only database, or a damaged record, is "not known": a lookup on
    // the request path never fails the request.
    match reader.lookup(ip).and_then(|found| found.decode::<T>()) {
        Ok(record) => record,
        Err(error) => {
            tracing::debug!(target: "zerotrust::geo", %error, "MaxMind lookup failed");
            None
        }
    }
}

impl GeoLocator for MaxMindGeo {
    fn locate(&self, ip: IpAddr) -> GeoLocation {
        let ip = ip.to_canonical();
        if address_scope(ip) != AddressScope::Global {
            return GeoLocation::default();
        }
        let dbs = self.databases.load();
        let mut loc = GeoLocation::default();
        if let Some(record) = dbs
            .city
            .as_ref()
            .and_then(|r| lookup::<CityRecord<'_>>(r, ip))
        {
            loc.country = record
                .country
                .and_then(|c| c.iso_code)
                .or_else(|| record.registered_country.and_then(|c| c.iso_code))
                .and_then(centroids::country);
            loc.city = record
                .city
                .and_then(|c| c.names)
                .and_then(|n| n.en)
                .map(Arc::from);
            if let Some(location) = record.location {
                let point = location
                    .latitude
                    .zip(location.longitude)
                    .and_then(|(lat, lon)| GeoPoint::new(lat, lon));
                if let Some(point) = point {
                    let radius = location.accuracy_radius.map(f64::from).or_else(|| {
                        // Coordinates without a radius: no better than the country's extent.
                        loc.country.and_then(centroid).map(|c| c.radius_km())
                    });
                    if let Some(radius) = radius.filter(|r| *r > 0.0) {
                        loc.point = Some(point);
                        loc.accuracy_km = Some(radius);
                    }
                }
            }
        }
        if loc.point.is_none()
            && let Some(place) = loc.country.and_then(centroid)
        {
            loc.point = Some(place.point());
            loc.accuracy_km = Some(place.radius_km());
        }
        if let Some(record) = dbs
            .asn
            .as_ref()
            .and_then(|r| lookup::<AsnRecord<'_>>(r, ip))
        {
            loc.asn = record.autonomous_system_number;
            if loc.asn.is_some() {
                loc.as_org = record.autonomous_system_organization.map(Arc::from);
            }
        }
        loc
    }
}

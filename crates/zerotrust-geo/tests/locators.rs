//! Every geo source passes the same suite (`zerotrust_testkit::geo_locator_tests!`), plus what is
//! particular to each: the embedded tables' known countries, a MaxMind database's cities and
//! autonomous systems, and the fallback chain.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::net::IpAddr;

use zerotrust_core::geo::{CountryCode, GeoLocation, GeoLocator};
use zerotrust_geo::{EmbeddedGeo, GeoLocatorExt, MaxMindError, MaxMindGeo};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Well-known resolvers and registries whose country is stable in the embedded data.
const EMBEDDED_FIXTURES: &[(&str, Option<&str>)] = &[
    ("8.8.8.8", Some("US")),              // Google Public DNS
    ("2001:4860:4860::8888", Some("US")), // Google Public DNS, IPv6
    ("1.1.1.1", Some("AU")),              // APNIC research prefix (Cloudflare)
    ("9.9.9.9", Some("CH")),              // Quad9
    ("193.99.144.80", Some("DE")),        // heise online
    ("194.25.2.129", Some("DE")),         // Deutsche Telekom DNS
    ("202.12.27.33", Some("JP")),         // M-root, WIDE
    ("2001:200::1", Some("JP")),          // WIDE
    ("200.160.0.8", Some("BR")),          // NIC.br
    ("203.0.113.77", None),               // documentation: the tables say AU, the suite says no
];

mod embedded {
    use super::*;

    zerotrust_testkit::geo_locator_tests!(EmbeddedGeo::new(), fixtures = EMBEDDED_FIXTURES);
}

fn maxmind() -> MaxMindGeo {
    MaxMindGeo::builder()
        .city_bytes(common::city_db())
        .asn_bytes(common::asn_db())
        .build()
        .unwrap()
}

const MAXMIND_FIXTURES: &[(&str, Option<&str>)] = &[
    ("81.2.69.160", Some("GB")),
    ("2.125.160.217", Some("GB")),
    ("89.160.20.112", Some("SE")),
    ("216.160.83.56", Some("US")),
    ("175.16.199.1", Some("CN")),
    ("2001:218::1", Some("JP")),
    ("8.8.8.8", None), // not in the test database
    ("2606:4700::1", None),
];

mod maxmind_db {
    use super::*;

    zerotrust_testkit::geo_locator_tests!(maxmind(), fixtures = MAXMIND_FIXTURES);
}

const CHAIN_FIXTURES: &[(&str, Option<&str>)] = &[
    ("81.2.69.160", Some("GB")),
    ("2001:218::1", Some("JP")),
    ("8.8.8.8", Some("US")),       // from the embedded fallback
    ("193.99.144.80", Some("DE")), // from the embedded fallback
    ("198.51.100.7", None),
];

mod maxmind_then_embedded {
    use super::*;

    zerotrust_testkit::geo_locator_tests!(
        maxmind().or(EmbeddedGeo::new()),
        fixtures = CHAIN_FIXTURES
    );
}

#[test]
fn embedded_addresses_get_their_country_centre_and_extent() {
    let geo = EmbeddedGeo::new();
    let us = geo.locate(ip("8.8.8.8"));
    let centre = zerotrust_geo::centroid(CountryCode::new("US").unwrap()).unwrap();
    assert_eq!(us.point, Some(centre.point()));
    assert_eq!(us.accuracy_km, Some(centre.radius_km()));
    assert_eq!(us.city, None);
    assert_eq!(us.asn, None, "the embedded tables have no ASN column");
}

#[test]
fn embedded_tables_are_parsed_once_and_shared() {
    let first = EmbeddedGeo::new();
    let started = std::time::Instant::now();
    for _ in 0..100 {
        let again = EmbeddedGeo::new();
        assert_eq!(again.country(ip("9.9.9.9")), first.country(ip("9.9.9.9")));
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
}

#[test]
fn a_city_database_gives_city_coordinates_and_accuracy_radius() {
    let geo = maxmind();
    let london = geo.locate(ip("81.2.69.160"));
    assert_eq!(london.country, CountryCode::new("GB"));
    assert_eq!(london.city.as_deref(), Some("London"));
    let p = london.point.unwrap();
    assert_eq!((p.lat, p.lon), (51.5142, -0.0931));
    assert_eq!(london.accuracy_km, Some(10.0));
    assert_eq!(london.asn, Some(20712));
    assert_eq!(london.as_org.as_deref(), Some("Andrews & Arnold Ltd"));

    let tokyo = geo.locate(ip("2001:218::1"));
    assert_eq!(tokyo.city.as_deref(), Some("Tokyo"));
    assert_eq!(tokyo.accuracy_km, Some(50.0));
    assert_eq!(tokyo.asn, Some(2914));
}

#[test]
fn a_country_only_entry_falls_back_to_the_country_centre() {
    let loc = maxmind().locate(ip("2.125.160.217"));
    let gb = zerotrust_geo::centroid(CountryCode::new("GB").unwrap()).unwrap();
    assert_eq!(loc.city, None);
    assert_eq!(loc.point, Some(gb.point()));
    assert_eq!(loc.accuracy_km, Some(gb.radius_km()));
}

#[test]
fn the_fallback_fills_only_what_the_primary_lacks() {
    let geo = maxmind().or(EmbeddedGeo::new());
    // The City database knows London: its point, not the embedded centroid, is kept.
    let london = geo.locate(ip("81.2.69.160"));
    assert_eq!(london.city.as_deref(), Some("London"));
    assert_eq!(london.accuracy_km, Some(10.0));
    // Unknown to the files: everything from the embedded tables.
    let google = geo.locate(ip("8.8.8.8"));
    assert_eq!(google.country, CountryCode::new("US"));
    assert_eq!(google, EmbeddedGeo::new().locate(ip("8.8.8.8")));
}

#[test]
fn an_asn_only_database_gives_asn_and_nothing_else() {
    let geo = MaxMindGeo::builder()
        .asn_bytes(common::asn_db())
        .build()
        .unwrap();
    let loc = geo.locate(ip("216.160.83.56"));
    assert_eq!(
        loc,
        GeoLocation {
            asn: Some(64496),
            as_org: Some("Example Hosting (documentation ASN)".into()),
            ..GeoLocation::default()
        }
    );
}

#[test]
fn a_database_in_the_wrong_slot_is_refused() {
    let err = MaxMindGeo::builder()
        .city_bytes(common::asn_db())
        .build()
        .unwrap_err();
    assert!(
        matches!(&err, MaxMindError::WrongKind { slot: "city", database_type } if database_type == "GeoLite2-ASN"),
        "{err}"
    );
    let err = MaxMindGeo::builder()
        .asn_bytes(common::city_db())
        .build()
        .unwrap_err();
    assert!(matches!(err, MaxMindError::WrongKind { slot: "asn", .. }));
}

#[test]
fn garbage_and_missing_databases_are_errors_not_panics() {
    let err = MaxMindGeo::builder()
        .city_bytes(b"not a database".to_vec())
        .build()
        .unwrap_err();
    assert!(
        matches!(err, MaxMindError::Invalid { slot: "city", .. }),
        "{err}"
    );
    let err = MaxMindGeo::builder()
        .city_file("no/such/GeoLite2-City.mmdb")
        .build()
        .unwrap_err();
    assert!(matches!(err, MaxMindError::Read { .. }), "{err}");
    assert!(matches!(
        MaxMindGeo::builder().build().unwrap_err(),
        MaxMindError::NoDatabase
    ));
}

#[test]
fn reloading_database_files_swaps_in_the_new_data_and_keeps_the_old_on_error() {
    let dir = common::temp_dir("mmdb-reload");
    let file = dir.join("GeoLite2-City.mmdb");
    std::fs::write(&file, common::city_db()).unwrap();
    let geo = MaxMindGeo::builder().city_file(&file).build().unwrap();
    assert_eq!(
        geo.locate(ip("81.2.69.160")).city.as_deref(),
        Some("London")
    );
    assert_eq!(geo.databases()[0].database_type, "GeoLite2-City");

    // The update moves the network to Sweden.
    let moved = [common::Place {
        net: "81.2.69.0/24",
        country: "SE",
        city: Some(("Stockholm", 59.33, 18.06, 20)),
    }];
    std::fs::write(&file, common::city_db_of(&moved)).unwrap();
    geo.reload().unwrap();
    assert_eq!(
        geo.locate(ip("81.2.69.160")).city.as_deref(),
        Some("Stockholm")
    );

    // A broken update is refused and Stockholm stays.
    std::fs::write(&file, b"truncated").unwrap();
    assert!(geo.reload().is_err());
    assert_eq!(
        geo.locate(ip("81.2.69.160")).city.as_deref(),
        Some("Stockholm")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_test_database_really_places_private_and_documentation_ranges() {
    // Proves the suite's local/special cases are meaningful for MaxMind: the file has data for
    // them, and only the locator's own rule keeps it out.
    let reader = maxminddb::Reader::from_source(common::city_db()).unwrap();
    for a in ["10.1.2.3", "203.0.113.9"] {
        assert!(reader.lookup(ip(a)).unwrap().has_data(), "{a}");
        assert_eq!(maxmind().locate(ip(a)), GeoLocation::default(), "{a}");
    }
}

//! One test suite for every [`GeoLocator`](zerotrust_core::GeoLocator) (the embedded tables and
//! MaxMind databases in `zerotrust-geo`, and any other source), the way tower-sessions'
//! `route_tests!` runs one suite per store.
//!
//! The macro expands to one `#[test]` per behaviour, each calling a plain function of this module
//! with a locator made by the expression it is given, and the caller's fixtures: addresses and
//! the country the source must give them (`None`: the source must not know the address).
//!
//! ```text
//! zerotrust_testkit::geo_locator_tests!(
//!     zerotrust_geo::EmbeddedGeo::new(),
//!     fixtures = &[("8.8.8.8", Some("US")), ("2001:200::1", Some("JP"))],
//! );
//! ```

// A test suite: failing loudly is its job.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::IpAddr;

use zerotrust_core::geo::{GeoLocation, GeoLocator};

/// An address and the country (ISO 3166-1 alpha-2) a source must give it, or `None` if the source
/// must not know it.
pub type Fixture = (&'static str, Option<&'static str>);

/// Local addresses: private (RFC 1918), shared CGNAT space, loopback, link-local, unique local,
/// and IPv4-mapped forms of them.
pub const LOCAL_ADDRESSES: &[&str] = &[
    "10.0.0.1",
    "10.255.255.254",
    "172.16.0.1",
    "172.31.200.7",
    "192.168.1.20",
    "100.64.0.1",
    "127.0.0.1",
    "169.254.169.254",
    "::1",
    "fe80::1",
    "fd00:1234::1",
    "::ffff:10.1.2.3",
    "::ffff:127.0.0.1",
];

/// Addresses no client has: documentation (RFC 5737, RFC 3849, RFC 9637), unspecified,
/// benchmarking, multicast, broadcast, reserved.
pub const SPECIAL_ADDRESSES: &[&str] = &[
    "192.0.2.1",
    "198.51.100.7",
    "203.0.113.9",
    "2001:db8::1",
    "3fff::1",
    "0.0.0.0",
    "::",
    "198.18.0.1",
    "224.0.0.251",
    "ff02::1",
    "255.255.255.255",
    "240.0.0.1",
];

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|_| panic!("fixture {text:?} is not an address"))
}

/// The IPv4-mapped IPv6 form of an IPv4 address.
fn mapped(addr: IpAddr) -> Option<IpAddr> {
    match addr {
        IpAddr::V4(v4) => Some(IpAddr::V6(v4.to_ipv6_mapped())),
        IpAddr::V6(_) => None,
    }
}

/// Local addresses get nothing: no country, ASN, city or coordinates.
pub fn local_addresses_have_no_location<L: GeoLocator>(geo: &L, _fixtures: &[Fixture]) {
    for a in LOCAL_ADDRESSES {
        assert_eq!(geo.locate(ip(a)), GeoLocation::default(), "{a}");
    }
}

/// Special-purpose addresses are unknown, whatever a database holds for them.
pub fn special_addresses_are_unknown<L: GeoLocator>(geo: &L, _fixtures: &[Fixture]) {
    for a in SPECIAL_ADDRESSES {
        assert_eq!(geo.locate(ip(a)), GeoLocation::default(), "{a}");
    }
}

/// An IPv4-mapped IPv6 address is located exactly as the IPv4 address.
pub fn ipv4_mapped_ipv6_locates_as_ipv4<L: GeoLocator>(geo: &L, fixtures: &[Fixture]) {
    let addresses = fixtures
        .iter()
        .map(|(a, _)| *a)
        .chain(LOCAL_ADDRESSES.iter().copied());
    for a in addresses {
        let v4 = ip(a);
        if let Some(v6) = mapped(v4) {
            assert_eq!(geo.locate(v6), geo.locate(v4), "{a} and {v6}");
        }
    }
}

/// Every fixture address gets the expected country (or none).
pub fn known_addresses_give_expected_countries<L: GeoLocator>(geo: &L, fixtures: &[Fixture]) {
    assert!(!fixtures.is_empty(), "the suite needs fixture addresses");
    for (a, expected) in fixtures {
        let got = geo.locate(ip(a)).country.map(|c| c.as_str().to_owned());
        assert_eq!(got.as_deref(), *expected, "country of {a}");
    }
}

/// Unknown fixture addresses give the default location, nothing made up.
pub fn unknown_addresses_give_the_default<L: GeoLocator>(geo: &L, fixtures: &[Fixture]) {
    for (a, expected) in fixtures {
        if expected.is_none() {
            assert_eq!(geo.locate(ip(a)), GeoLocation::default(), "{a}");
        }
    }
}

/// Coordinates always come with a positive, finite accuracy radius and valid ranges; an address
/// with a country has a point (at least the country's centre) when the country is a real one.
pub fn coordinates_come_with_an_accuracy<L: GeoLocator>(geo: &L, fixtures: &[Fixture]) {
    for (a, _) in fixtures {
        let loc = geo.locate(ip(a));
        match (loc.point, loc.accuracy_km) {
            (Some(p), Some(acc)) => {
                assert!((-90.0..=90.0).contains(&p.lat), "{a}: {p:?}");
                assert!((-180.0..=180.0).contains(&p.lon), "{a}: {p:?}");
                assert!(acc.is_finite() && acc > 0.0, "{a}: accuracy {acc}");
            }
            (None, None) => assert!(loc.country.is_none(), "{a}: a country without a point"),
            other => panic!("{a}: point and accuracy must come together, got {other:?}"),
        }
        if loc.as_org.is_some() {
            assert!(
                loc.asn.is_some(),
                "{a}: an AS organisation without its number"
            );
        }
    }
}

/// Lookups from several threads at once answer what one thread gets.
pub fn concurrent_lookups_agree<L: GeoLocator>(geo: &L, fixtures: &[Fixture]) {
    let expected: Vec<GeoLocation> = fixtures.iter().map(|(a, _)| geo.locate(ip(a))).collect();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..50 {
                    for ((a, _), want) in fixtures.iter().zip(&expected) {
                        assert_eq!(&geo.locate(ip(a)), want, "{a}");
                    }
                }
            });
        }
    });
}

/// The [`GeoLocator`](zerotrust_core::GeoLocator) suite: `geo_locator_tests!(make, fixtures = list)`.
///
/// `make` is evaluated once per test; `fixtures` is a `&[(&str, Option<&str>)]` of addresses and
/// the countries the source must give them. Invoke it inside a module per source when a file tests
/// several.
#[macro_export]
macro_rules! geo_locator_tests {
    ($make:expr, fixtures = $fixtures:expr $(,)?) => {
        $crate::__geo_suite!($make, $fixtures;
            local_addresses_have_no_location,
            special_addresses_are_unknown,
            ipv4_mapped_ipv6_locates_as_ipv4,
            known_addresses_give_expected_countries,
            unknown_addresses_give_the_default,
            coordinates_come_with_an_accuracy,
            concurrent_lookups_agree,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __geo_suite {
    ($make:expr, $fixtures:expr; $($case:ident),+ $(,)?) => {
        $(
            #[test]
            fn $case() {
                let geo = $make;
                $crate::geo_suite::$case(&geo, $fixtures);
            }
        )+
    };
}

//! Impossible travel: could the subject have moved from the last place they were seen to this one
//! in the time between?

use zerotrust_core::Sighting;
use zerotrust_core::geo::Travel;

/// The movement from `previous` to `current`.
///
/// The distance is the great-circle distance less both accuracy radii, never negative: two
/// sightings whose circles overlap may be the same place. The speed is that distance over the
/// time between them (in either order, as requests finish out of order); with no time between
/// them any distance is infinitely fast.
///
/// Two sightings in the same country are never impossible unless `within_country` is set:
/// country-level sources place everyone at the country's centre, and a city-level source near a
/// border or in a vast country should not raise a strong signal on its own.
pub(crate) fn judge(
    previous: &Sighting,
    current: &Sighting,
    max_speed_kmh: f64,
    within_country: bool,
) -> Travel {
    let raw = previous.point.distance_km(&current.point);
    let slack = previous.accuracy_km.max(0.0) + current.accuracy_km.max(0.0);
    let distance_km = (raw - slack).max(0.0);
    let elapsed_secs = i64::try_from(current.at.abs_diff(previous.at)).unwrap_or(i64::MAX);
    let speed_kmh = if distance_km == 0.0 {
        0.0
    } else if elapsed_secs == 0 {
        f64::INFINITY
    } else {
        distance_km * 3600.0 / elapsed_secs as f64
    };
    let same_country = matches!((previous.country, current.country), (Some(a), Some(b)) if a == b);
    let impossible = speed_kmh > max_speed_kmh && (within_country || !same_country);
    Travel {
        distance_km,
        elapsed_secs,
        speed_kmh,
        impossible,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerotrust_core::geo::{CountryCode, GeoPoint};

    fn seen(at: i64, lat: f64, lon: f64, acc: f64, cc: &str) -> Sighting {
        Sighting {
            at,
            point: GeoPoint::new(lat, lon).unwrap(),
            accuracy_km: acc,
            country: CountryCode::new(cc),
            ip: "192.0.2.1".parse().unwrap(),
        }
    }

    #[test]
    fn berlin_to_new_york_in_ten_minutes_is_impossible() {
        let t = judge(
            &seen(0, 52.52, 13.40, 20.0, "DE"),
            &seen(600, 40.71, -74.0, 20.0, "US"),
            900.0,
            false,
        );
        assert!(t.impossible);
        assert!(
            (t.distance_km - (6385.0 - 40.0)).abs() < 15.0,
            "{}",
            t.distance_km
        );
        assert!(t.speed_kmh > 30_000.0);
        assert_eq!(t.elapsed_secs, 600);
    }

    #[test]
    fn berlin_to_new_york_in_nine_hours_is_possible() {
        let t = judge(
            &seen(0, 52.52, 13.40, 20.0, "DE"),
            &seen(9 * 3600, 40.71, -74.0, 20.0, "US"),
            900.0,
            false,
        );
        assert!(!t.impossible, "{t:?}");
    }

    #[test]
    fn overlapping_accuracy_circles_mean_no_distance() {
        let t = judge(
            &seen(0, 51.0, 9.0, 600.0, "DE"),
            &seen(1, 48.86, 2.35, 800.0, "FR"),
            900.0,
            false,
        );
        assert_eq!(t.distance_km, 0.0);
        assert_eq!(t.speed_kmh, 0.0);
        assert!(!t.impossible);
    }

    #[test]
    fn same_country_is_never_impossible_unless_asked() {
        let (sf, ny) = (
            seen(0, 37.77, -122.42, 10.0, "US"),
            seen(60, 40.71, -74.0, 10.0, "US"),
        );
        assert!(!judge(&sf, &ny, 900.0, false).impossible);
        assert!(judge(&sf, &ny, 900.0, true).impossible);
    }

    #[test]
    fn no_time_between_distant_sightings_is_infinitely_fast() {
        let t = judge(
            &seen(5, 52.52, 13.40, 20.0, "DE"),
            &seen(5, 35.68, 139.69, 20.0, "JP"),
            900.0,
            false,
        );
        assert!(t.speed_kmh.is_infinite() && t.impossible);
    }

    #[test]
    fn out_of_order_sightings_use_the_time_between_them() {
        let t = judge(
            &seen(3600, 52.52, 13.40, 20.0, "DE"),
            &seen(0, 48.86, 2.35, 20.0, "FR"),
            900.0,
            false,
        );
        assert_eq!(t.elapsed_secs, 3600);
        assert!(!t.impossible);
    }
}

#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

// The flow of a request through this crate, top to bottom:
//
// 1. `layer`: `GeoRiskService::call` takes the client address an earlier layer recorded in
//    `ZeroTrust`, or resolves it with the configured `ClientIpResolver` (core) and records it.
// 2. `special`: local and special-purpose addresses are told apart before anything is asked.
// 3. `lists`: the blocked, trusted and anonymiser lists (prefix tries in an atomically swapped
//    snapshot) say which zone the address is in.
// 4. `embedded`, `maxmind`, `fallback`, `centroids`: the configured `GeoLocator` gives country,
//    ASN, city and coordinates (a country's centre and extent when nothing finer is known).
// 5. `risk`: `Config::assess` applies the rules in order (blocked network, trusted network,
//    anonymiser, blocked country, country allowlist, blocked ASN) and builds the signals; a block
//    is answered at once with 403.
// 6. `hours`: outside the working hours, `time.outside_hours` is added (the clock is injectable).
// 7. `travel`: for a verified subject on a public address, the sighting is swapped into the
//    `LocationHistory` (the only await, so the only boxed future) and the movement since the
//    previous one is judged; impossible travel adds `travel.impossible`.
// 8. `layer`: the `NetworkAssessment` is recorded and the inner service called.

mod centroids;
mod embedded;
mod fallback;
mod hours;
mod layer;
mod lists;
mod maxmind;
mod risk;
mod special;
mod travel;

pub use centroids::{Centroid, centroid};
pub use embedded::EmbeddedGeo;
pub use fallback::{Fallback, GeoLocatorExt};
pub use hours::{Clock, ManualClock, SystemClock, WorkingHours};
pub use layer::{GeoRiskLayer, GeoRiskService, ResponseFuture, TravelFindings};
pub use lists::{ListError, ListKind, ListStats, NetworkLists};
pub use maxmind::{DatabaseInfo, MaxMindError, MaxMindGeo, MaxMindGeoBuilder};
pub use risk::{GeoRisk, GeoRiskBuilder, GeoRiskError, GeoSignal, reasons};
pub use special::{AddressScope, address_scope};
/// Enforce, report only, roll out by percentage, or turn off (re-exported from `zerotrust-core`).
pub use zerotrust_core::Enforcement;

/// Days and times for [`WorkingHours`] (re-exported from `chrono`).
pub use chrono::{NaiveTime, Weekday};
/// Time zones for [`WorkingHours`] (re-exported from `chrono-tz`).
pub use chrono_tz::Tz;

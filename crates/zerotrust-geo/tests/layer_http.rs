//! The layer over real HTTP on 127.0.0.1: zones and signals, every refusal with its code, list
//! reloads, impossible travel across requests, working hours, and failing stores.
//!
//! The tests' client plays a proxy on the loopback address: layers configured with
//! `via_loopback_proxy()` believe its `X-Forwarded-For`, so one client can come from anywhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{Client, Reply, app, serve, via_loopback_proxy};
use zerotrust_core::geo::GeoPoint;
use zerotrust_core::{LocationHistory, Sighting, StoreError, StoreFuture};
use zerotrust_geo::{
    EmbeddedGeo, GeoLocatorExt, GeoRisk, GeoRiskBuilder, GeoRiskLayer, GeoSignal, ManualClock,
    MaxMindGeo, Tz, Weekday, WorkingHours,
};

const US: &str = "8.8.8.8";
const DE: &str = "193.99.144.80";
const JP: &str = "202.12.27.33";
const BR: &str = "200.160.0.8";
const JP6: &str = "2001:200::1";
/// Wednesday 2030-03-13 10:00 UTC (11:00 in Berlin).
const WEDNESDAY_10_UTC: i64 = 1_899_626_400;

/// Builder defaults for these tests: the loopback proxy is believed.
fn risk() -> GeoRiskBuilder {
    GeoRisk::builder().client_ip_resolver(via_loopback_proxy())
}

async fn start(risk: GeoRisk) -> Client {
    Client::new(serve(app(GeoRiskLayer::new(risk))).await)
}

fn maxmind_then_embedded() -> impl zerotrust_core::GeoLocator {
    MaxMindGeo::builder()
        .city_bytes(common::city_db())
        .asn_bytes(common::asn_db())
        .build()
        .unwrap()
        .or(EmbeddedGeo::new())
}

fn assert_signal(reply: &Reply, name: &str, weight: f64) -> String {
    let signal = reply
        .signal(name)
        .unwrap_or_else(|| panic!("no {name} in {:?}", reply.signal_names()));
    assert_eq!(signal["weight"], weight, "{signal}");
    signal["evidence"].as_str().unwrap().to_owned()
}

// --- Zones and network signals ---------------------------------------------------------------

#[tokio::test]
async fn public_address_is_located_recorded_and_marked_public() {
    let client = start(risk().build().unwrap()).await;
    let reply = client.get(Some(US), None).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let network = &reply.body["network"];
    assert_eq!(network["client_ip"], US);
    assert_eq!(network["zone"], "public");
    assert_eq!(network["country"], "US");
    assert!(network["accuracy_km"].as_f64().unwrap() > 2000.0);
    assert_eq!(network["travel"], serde_json::Value::Null);
    let evidence = assert_signal(&reply, "network.public", 0.02);
    assert!(evidence.contains(US), "{evidence}");
    assert_eq!(reply.signal_names(), ["network.public"]);
}

#[tokio::test]
async fn ipv6_client_is_located() {
    let client = start(risk().build().unwrap()).await;
    let reply = client.get(Some(JP6), None).await;
    assert_eq!(reply.body["network"]["country"], "JP");
    assert_eq!(reply.body["network"]["client_ip"], JP6);
}

#[tokio::test]
async fn trusted_network_is_trusted_zone_without_network_signals() {
    let client = start(
        risk()
            .trusted_networks(["10.0.0.0/8".parse().unwrap()])
            .build()
            .unwrap(),
    )
    .await;
    let reply = client.get(Some("10.20.30.40"), Some("alice")).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["network"]["zone"], "trusted");
    assert!(
        reply.signal_names().is_empty(),
        "{:?}",
        reply.signal_names()
    );
}

#[tokio::test]
async fn loopback_peer_is_private_and_its_forwarded_header_is_ignored_without_a_trusted_proxy() {
    // The default resolver believes only the socket peer: the header is the client's own claim.
    let client = start(GeoRisk::builder().build().unwrap()).await;
    let reply = client.get(Some(US), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["network"]["client_ip"], "127.0.0.1");
    assert_eq!(reply.body["network"]["zone"], "private");
    assert_eq!(reply.body["network"]["country"], serde_json::Value::Null);
    assert_signal(&reply, "network.private", 0.1);
    assert!(reply.signal("network.country_unknown").is_none());
}

#[tokio::test]
async fn listed_anonymizer_gets_its_zone_and_a_signal_naming_the_list() {
    let client = start(
        risk()
            .anonymizer_networks("tor", ["185.220.101.0/24".parse().unwrap()])
            .build()
            .unwrap(),
    )
    .await;
    let reply = client.get(Some("185.220.101.1"), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["network"]["zone"], "anonymizer");
    let evidence = assert_signal(&reply, "network.anonymizer", 0.6);
    assert!(evidence.contains("tor"), "{evidence}");
    assert!(reply.signal("network.public").is_none());
}

#[tokio::test]
async fn unplaceable_address_gets_country_unknown() {
    let client = start(risk().build().unwrap()).await;
    let reply = client.get(Some("198.51.100.7"), None).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body["network"]["zone"], "public");
    assert_signal(&reply, "network.country_unknown", 0.2);
}

#[tokio::test]
async fn signal_weights_are_configurable() {
    let client = start(
        risk()
            .signal_weight(GeoSignal::Public, 0.33)
            .build()
            .unwrap(),
    )
    .await;
    assert_signal(&client.get(Some(US), None).await, "network.public", 0.33);
}

// --- Refusals: 403 with a stable code ----------------------------------------------------------

#[tokio::test]
async fn blocked_network_is_403_blocked_address() {
    let client = start(
        risk()
            .blocked_networks(["193.99.144.0/24".parse().unwrap()])
            .build()
            .unwrap(),
    )
    .await;
    client
        .get(Some(DE), None)
        .await
        .assert_forbidden("network.blocked_address");
    assert_eq!(client.get(Some(US), None).await.status, 200);
}

#[tokio::test]
async fn blocked_network_inside_a_trusted_one_is_still_blocked() {
    let client = start(
        risk()
            .trusted_networks(["10.0.0.0/8".parse().unwrap()])
            .blocked_networks(["10.66.0.0/16".parse().unwrap()])
            .build()
            .unwrap(),
    )
    .await;
    client
        .get(Some("10.66.1.1"), None)
        .await
        .assert_forbidden("network.blocked_address");
    assert_eq!(client.get(Some("10.1.1.1"), None).await.status, 200);
}

#[tokio::test]
async fn blocked_country_is_403_blocked_country() {
    let client = start(risk().block_countries(["jp"]).build().unwrap()).await;
    client
        .get(Some(JP), None)
        .await
        .assert_forbidden("network.blocked_country");
    client
        .get(Some(JP6), None)
        .await
        .assert_forbidden("network.blocked_country");
    assert_eq!(client.get(Some(DE), None).await.status, 200);
}

#[tokio::test]
async fn country_outside_the_allowlist_is_403_country_not_allowed() {
    let client = start(risk().allow_countries(["DE", "AT"]).build().unwrap()).await;
    client
        .get(Some(US), None)
        .await
        .assert_forbidden("network.country_not_allowed");
    assert_eq!(client.get(Some(DE), None).await.status, 200);
}

#[tokio::test]
async fn unknown_country_fails_the_allowlist_unless_admitted() {
    let strict = start(risk().allow_countries(["DE"]).build().unwrap()).await;
    strict
        .get(Some("198.51.100.7"), None)
        .await
        .assert_forbidden("network.country_not_allowed");
    // Local addresses have no country either: an untrusted one is refused, so a proxy whose
    // address hides every client fails loudly instead of passing everyone.
    strict
        .get(Some("192.168.1.10"), None)
        .await
        .assert_forbidden("network.country_not_allowed");

    let relaxed = start(
        risk()
            .allow_countries(["DE"])
            .admit_unknown_countries()
            .build()
            .unwrap(),
    )
    .await;
    let reply = relaxed.get(Some("198.51.100.7"), None).await;
    assert_eq!(reply.status, 200);
    assert_signal(&reply, "network.country_unknown", 0.2);
}

#[tokio::test]
async fn blocked_asn_is_403_blocked_asn() {
    let client = start(
        risk()
            .locator(maxmind_then_embedded())
            .block_asns([64496])
            .build()
            .unwrap(),
    )
    .await;
    client
        .get(Some("216.160.83.56"), None)
        .await
        .assert_forbidden("network.blocked_asn");
    let london = client.get(Some("81.2.69.160"), None).await;
    assert_eq!(london.status, 200);
    assert_eq!(london.body["network"]["asn"], 20712);
    assert_eq!(london.body["network"]["city"], "London");
    // An address without ASN data cannot be checked: it passes with a signal.
    let unknown = client.get(Some(US), None).await;
    assert_eq!(unknown.status, 200);
    assert_signal(&unknown, "network.asn_unknown", 0.1);
}

#[tokio::test]
async fn anonymizer_is_403_when_anonymizers_are_blocked() {
    let client = start(
        risk()
            .anonymizer_networks("vpn", ["2a0b:f4c0::/32".parse().unwrap()])
            .block_anonymizers()
            .build()
            .unwrap(),
    )
    .await;
    client
        .get(Some("2a0b:f4c0::1"), None)
        .await
        .assert_forbidden("network.anonymizer_blocked");
}

#[tokio::test]
async fn report_only_records_the_refusal_but_lets_the_request_through() {
    let client = start(
        risk()
            .block_countries(["US"])
            .report_only()
            .build()
            .unwrap(),
    )
    .await;
    let reply = client.get(Some(US), None).await;
    assert_eq!(reply.status, 200);
    let decision = &reply.body["decision"];
    assert_eq!(decision["code"], "network.blocked_country");
    assert_eq!(decision["layer"], "geo");
    assert_eq!(decision["enforced"], false);
    assert_eq!(decision["outcome"], "deny");
}

// --- Lists reloaded without restart --------------------------------------------------------------

#[tokio::test]
async fn reloading_lists_changes_the_outcome_without_rebuilding_the_layer() {
    let dir = common::temp_dir("reload");
    let blocked = dir.join("blocked.txt");
    std::fs::write(&blocked, "# nothing blocked yet\n").unwrap();
    let risk = risk().blocked_networks_file(&blocked).build().unwrap();
    let client = start(risk.clone()).await;
    assert_eq!(client.get(Some(BR), None).await.status, 200);

    std::fs::write(&blocked, "# NIC.br\n200.160.0.0/20\n").unwrap();
    assert_eq!(risk.lists().reload().unwrap().blocked, 1);
    client
        .get(Some(BR), None)
        .await
        .assert_forbidden("network.blocked_address");

    // A broken file is refused and the lists in use stay.
    std::fs::write(&blocked, "200.160.0.0/20\n200.160.0.0/33\n").unwrap();
    let err = risk.lists().reload().unwrap_err();
    assert!(err.to_string().contains("line 2"), "{err}");
    client
        .get(Some(BR), None)
        .await
        .assert_forbidden("network.blocked_address");

    std::fs::write(&blocked, "").unwrap();
    risk.lists().reload().unwrap();
    assert_eq!(client.get(Some(BR), None).await.status, 200);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn background_reloader_applies_a_changed_anonymizer_file() {
    let dir = common::temp_dir("watch");
    let tor = dir.join("tor-exits.txt");
    std::fs::write(&tor, "").unwrap();
    let risk = risk().anonymizer_list("tor", &tor).build().unwrap();
    let reloader = risk.lists().spawn_reloader(Duration::from_millis(25));
    let client = start(risk.clone()).await;
    assert_eq!(
        client.get(Some(DE), None).await.body["network"]["zone"],
        "public"
    );

    std::fs::write(&tor, format!("{DE}\n")).unwrap();
    let mut zone = String::new();
    for _ in 0..200 {
        zone = client.get(Some(DE), None).await.body["network"]["zone"]
            .as_str()
            .unwrap()
            .to_owned();
        if zone == "anonymizer" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(zone, "anonymizer");
    reloader.abort();
    std::fs::remove_dir_all(&dir).unwrap();
}

// --- Impossible travel ---------------------------------------------------------------------------

#[tokio::test]
async fn travel_between_far_apart_countries_minutes_apart_is_impossible() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(risk().clock(clock.clone()).build().unwrap()).await;

    let first = client.get(Some(DE), Some("alice")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.body["network"]["travel"], serde_json::Value::Null);
    assert!(first.signal("travel.impossible").is_none());

    clock.advance(Duration::from_secs(5 * 60));
    let second = client.get(Some(JP), Some("alice")).await;
    assert_eq!(second.status, 200, "a signal, not a refusal, by default");
    let travel = &second.body["network"]["travel"];
    assert_eq!(travel["impossible"], true);
    assert_eq!(travel["elapsed_secs"], 300);
    // Berlin-ish to Tokyo-ish, less both countries' extents: thousands of km.
    assert!(travel["distance_km"].as_f64().unwrap() > 5000.0, "{travel}");
    assert!(travel["speed_kmh"].as_f64().unwrap() > 50_000.0, "{travel}");
    let evidence = assert_signal(&second, "travel.impossible", 0.8);
    assert!(
        evidence.contains("km/h") && evidence.contains("DE") && evidence.contains("JP"),
        "{evidence}"
    );

    // Another subject from Japan has no history: nothing to compare.
    let bob = client.get(Some(JP), Some("bob")).await;
    assert!(bob.signal("travel.impossible").is_none());
}

#[tokio::test]
async fn the_same_trip_over_a_day_is_possible() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(risk().clock(clock.clone()).build().unwrap()).await;
    client.get(Some(DE), Some("alice")).await;
    clock.advance(Duration::from_secs(20 * 3600));
    let reply = client.get(Some(JP), Some("alice")).await;
    assert_eq!(reply.body["network"]["travel"]["impossible"], false);
    assert!(reply.signal("travel.impossible").is_none());
}

#[tokio::test]
async fn city_coordinates_and_accuracy_radii_judge_travel_between_countries() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(
        risk()
            .locator(maxmind_then_embedded())
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
    .await;
    client.get(Some("81.2.69.160"), Some("carol")).await; // London, 10 km
    clock.advance(Duration::from_secs(30 * 60));
    let reply = client.get(Some("89.160.20.112"), Some("carol")).await; // Linköping, 76 km
    let travel = &reply.body["network"]["travel"];
    // The cities' distance less both accuracy radii (10 + 76 km), in half an hour.
    let london = GeoPoint::new(51.5142, -0.0931).unwrap();
    let linkoping = GeoPoint::new(58.4167, 15.6167).unwrap();
    let expected = london.distance_km(&linkoping) - 86.0;
    let distance = travel["distance_km"].as_f64().unwrap();
    assert!(
        (distance - expected).abs() < 0.01,
        "{travel}, expected {expected}"
    );
    assert_eq!(
        travel["speed_kmh"].as_f64().unwrap().round(),
        (expected * 2.0).round()
    );
    assert_eq!(travel["impossible"], true);
    assert_signal(&reply, "travel.impossible", 0.8);
}

#[tokio::test]
async fn the_same_country_is_never_impossible_unless_asked() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let default = start(
        risk()
            .locator(maxmind_then_embedded())
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
    .await;
    // Milton, WA to Chatham, NY: 3,800 km in one minute, but within one country.
    default.get(Some("216.160.83.56"), Some("dave")).await;
    clock.advance(Duration::from_secs(60));
    let reply = default.get(Some("74.209.24.9"), Some("dave")).await;
    assert_eq!(reply.body["network"]["travel"]["impossible"], false);
    assert!(reply.signal("travel.impossible").is_none());

    // Country-level data in one country: the same centre, no distance at all.
    default.get(Some(US), Some("erin")).await;
    clock.advance(Duration::from_secs(1));
    let reply = default
        .get(Some("2001:4860:4860::8888"), Some("erin"))
        .await;
    assert_eq!(reply.body["network"]["travel"]["distance_km"], 0.0);

    let strict = start(
        risk()
            .locator(maxmind_then_embedded())
            .clock(clock.clone())
            .travel_within_country()
            .build()
            .unwrap(),
    )
    .await;
    strict.get(Some("216.160.83.56"), Some("dave")).await;
    clock.advance(Duration::from_secs(60));
    let reply = strict.get(Some("74.209.24.9"), Some("dave")).await;
    assert_eq!(reply.body["network"]["travel"]["impossible"], true);
}

#[tokio::test]
async fn trusted_local_and_anonymizer_addresses_neither_record_nor_compare() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(
        risk()
            .trusted_networks(["10.0.0.0/8".parse().unwrap()])
            .anonymizer_networks("tor", ["185.220.101.0/24".parse().unwrap()])
            .clock(clock.clone())
            .build()
            .unwrap(),
    )
    .await;
    client.get(Some(DE), Some("frank")).await;
    clock.advance(Duration::from_secs(60));
    for from in ["10.1.2.3", "192.168.0.7", "185.220.101.1"] {
        let reply = client.get(Some(from), Some("frank")).await;
        assert_eq!(
            reply.body["network"]["travel"],
            serde_json::Value::Null,
            "{from}"
        );
        assert!(reply.signal("travel.impossible").is_none(), "{from}");
    }
    // The last recorded sighting is still Germany: a minute later from Germany is no travel.
    let reply = client.get(Some("194.25.2.129"), Some("frank")).await;
    assert_eq!(reply.body["network"]["travel"]["impossible"], false);
}

#[tokio::test]
async fn requests_without_a_subject_are_not_tracked() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(risk().clock(clock.clone()).build().unwrap()).await;
    client.get(Some(DE), None).await;
    clock.advance(Duration::from_secs(60));
    let reply = client.get(Some(JP), None).await;
    assert_eq!(reply.body["network"]["travel"], serde_json::Value::Null);
}

#[tokio::test]
async fn impossible_travel_is_403_when_configured_to_deny() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(
        risk()
            .clock(clock.clone())
            .deny_impossible_travel()
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(client.get(Some(DE), Some("gina")).await.status, 200);
    clock.advance(Duration::from_secs(60));
    client
        .get(Some(BR), Some("gina"))
        .await
        .assert_forbidden("travel.impossible");
}

#[tokio::test]
async fn travel_check_can_be_turned_off() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(
        risk()
            .clock(clock.clone())
            .without_travel_check()
            .build()
            .unwrap(),
    )
    .await;
    client.get(Some(DE), Some("hal")).await;
    clock.advance(Duration::from_secs(60));
    let reply = client.get(Some(JP), Some("hal")).await;
    assert_eq!(reply.body["network"]["travel"], serde_json::Value::Null);
}

/// A location history that is down, counting the calls it refused.
#[derive(Default)]
struct DownHistory {
    calls: AtomicUsize,
}

impl LocationHistory for DownHistory {
    fn last<'a>(&'a self, _subject: &'a str) -> StoreFuture<'a, Option<Sighting>> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }

    fn swap<'a>(&'a self, _subject: &'a str, _s: Sighting) -> StoreFuture<'a, Option<Sighting>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async {
            tokio::task::yield_now().await;
            Err(StoreError::Unavailable("connection refused".into()))
        })
    }
}

#[tokio::test]
async fn an_unreachable_location_history_fails_closed_with_503() {
    let history = Arc::new(DownHistory::default());
    let client = start(
        risk()
            .shared_location_history(history.clone())
            .build()
            .unwrap(),
    )
    .await;
    let reply = client.get(Some(DE), Some("ivan")).await;
    reply.assert_problem(503, "store.unavailable");
    assert_eq!(reply.headers["retry-after"], "1");
    assert_eq!(history.calls.load(Ordering::Relaxed), 1);
    // Without a subject the store is not needed, and not asked.
    assert_eq!(client.get(Some(DE), None).await.status, 200);
    assert_eq!(history.calls.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn an_unreachable_location_history_passes_with_store_degraded_when_fail_open() {
    let client = start(
        risk()
            .shared_location_history(Arc::new(DownHistory::default()))
            .travel_fail_open()
            .build()
            .unwrap(),
    )
    .await;
    let reply = client.get(Some(DE), Some("ivan")).await;
    assert_eq!(reply.status, 200);
    assert_signal(&reply, "store.degraded", 0.3);
    assert_eq!(reply.body["network"]["zone"], "public");
}

// --- Working hours ----------------------------------------------------------------------------

#[tokio::test]
async fn requests_outside_working_hours_carry_the_local_time() {
    // Saturday 2030-03-16 02:10 UTC is 03:10 in Berlin.
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC + 3 * 86_400 - 10 * 3600 + 2 * 3600 + 600);
    let client = start(
        risk()
            .clock(clock.clone())
            .working_hours(WorkingHours::new(Tz::Europe__Berlin))
            .signal_weight(GeoSignal::OutsideHours, 0.25)
            .build()
            .unwrap(),
    )
    .await;
    let reply = client.get(Some(DE), None).await;
    let evidence = assert_signal(&reply, "time.outside_hours", 0.25);
    assert_eq!(evidence, "Sat 03:10 Europe/Berlin");

    // Back to Wednesday 11:00 in Berlin: within hours, no signal.
    clock.set_unix(WEDNESDAY_10_UTC);
    let reply = client.get(Some(DE), None).await;
    assert!(reply.signal("time.outside_hours").is_none());
}

#[tokio::test]
async fn working_days_are_configurable() {
    let clock = ManualClock::at_unix(WEDNESDAY_10_UTC);
    let client = start(
        risk()
            .clock(clock)
            .working_hours(WorkingHours::new(Tz::UTC).days([Weekday::Sat, Weekday::Sun]))
            .build()
            .unwrap(),
    )
    .await;
    let reply = client.get(Some(US), None).await;
    assert_eq!(
        assert_signal(&reply, "time.outside_hours", 0.2),
        "Wed 10:00 UTC"
    );
}

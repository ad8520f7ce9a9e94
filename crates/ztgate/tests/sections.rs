//! What the geo and device layers support, configured from the file: network list files,
//! anonymiser lists, MaxMind databases, working hours, signed posture assertions. Files are
//! generated here; an invalid one is refused at start naming its key.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::*;
use http::StatusCode;
use maxminddb_writer::Database;
use maxminddb_writer::metadata::IpVersion;
use maxminddb_writer::paths::IpAddrWithMask;
use serde::Serialize;
use serde_json::json;
use zerotrust_testkit::{SigningKey, TokenBuilder, unix_now};

/// The client address comes from `X-Forwarded-For`, set by the test (the peer is loopback).
const VIA_LOOPBACK: &str = "[client_ip]\ntrusted_proxies = [\"127.0.0.1/32\"]\n";

/// GET `/api/x` with a token, from the client address `ip` (see [`VIA_LOOPBACK`]).
async fn status_from(env: &Env, c: &HttpClient, ip: &str) -> Answer {
    env.get_with_token(c, "/api/x", &[("x-forwarded-for", ip)])
        .await
}

/// Starts with `sections(dir)` (`dir` is the test directory, for the files they name) before
/// the `/api` route.
async fn env_with(tag: &str, sections: impl FnOnce(&Path) -> String) -> Env {
    env_for(tag, upstream("a").await, |dir| sections(dir) + API_ROUTE).await
}

/// The refusal of `sections(dir)` before an `/api` route (to an upstream that is never reached).
async fn start_error(tag: &str, sections: impl FnOnce(&Path) -> String) -> String {
    start_refusal(tag, |dir| {
        sections(dir) + &API_ROUTE.replace("{upstream}", "http://127.0.0.1:9")
    })
    .await
}

// ------------------------------------------------------------------------------ network lists

#[tokio::test(flavor = "multi_thread")]
async fn network_list_files_block_and_anonymizer_lists_refuse_when_asked() {
    let env = env_with("lists", |dir| {
        let blocked = write_file(dir, "blocked.txt", "# blocked\n192.0.2.0/24\n");
        let tor = write_file(dir, "tor.txt", "198.51.100.7\n");
        format!(
            "{VIA_LOOPBACK}[geo]\nblocked_networks_files = [\"{blocked}\"]\nblock_anonymizers = true\n[geo.anonymizer_lists]\ntor = \"{tor}\"\n"
        )
    })
    .await;
    let c = client();
    let blocked = status_from(&env, &c, "192.0.2.10").await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert_eq!(blocked.json()["code"], "network.blocked_address");
    let tor = status_from(&env, &c, "198.51.100.7").await;
    assert_eq!(tor.status, StatusCode::FORBIDDEN);
    assert_eq!(tor.json()["code"], "network.anonymizer_blocked");
    let fine = status_from(&env, &c, "8.8.8.8").await;
    assert_eq!(fine.status, StatusCode::OK, "{:?}", fine.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invalid_or_missing_list_file_is_refused_naming_its_key() {
    let e = start_error("lists-bad", |dir| {
        let bad = write_file(dir, "trusted.txt", "10.0.0.0/8\nnot-a-network\n");
        format!("[geo]\ntrusted_networks_files = [\"{bad}\"]\n")
    })
    .await;
    assert!(e.contains("geo.trusted_networks_files[0]"), "{e}");
    assert!(e.contains("line 2"), "{e}");
    let e = start_error("lists-missing", |dir| {
        let missing = dir.join("nope.txt").display().to_string();
        format!("[geo.anonymizer_lists]\nvpn = \"{missing}\"\n")
    })
    .await;
    assert!(e.contains("geo.anonymizer_lists.vpn"), "{e}");
    assert!(e.contains("nope.txt"), "{e}");
}

// ------------------------------------------------------------------------------ MaxMind

#[derive(Serialize)]
struct Country<'a> {
    iso_code: &'a str,
}

#[derive(Serialize)]
struct CityRecord<'a> {
    country: Country<'a>,
}

#[derive(Serialize)]
struct AsnRecord<'a> {
    autonomous_system_number: u32,
    autonomous_system_organization: &'a str,
}

/// An IPv4 network as a path in the IPv6 tree (under `::/96`, where readers look for it).
fn path(net: &str) -> IpAddrWithMask {
    let net: ipnet::Ipv4Net = net.parse().unwrap();
    IpAddrWithMask::new(
        IpAddr::V6(net.network().to_ipv6_compatible()),
        net.prefix_len() + 96,
    )
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

/// A GeoLite2-Country-like database that places 8.8.8.0/24 in Sweden (the embedded data says
/// the United States: a refusal proves the file is used).
fn country_db() -> Vec<u8> {
    let mut db = database("GeoLite2-Country");
    let data = db
        .insert_value(CityRecord {
            country: Country { iso_code: "SE" },
        })
        .unwrap();
    db.insert_node(path("8.8.8.0/24"), data);
    db.write_to(Vec::new()).unwrap()
}

/// A GeoLite2-ASN-like database: 9.9.9.0/24 in AS 64496.
fn asn_db() -> Vec<u8> {
    let mut db = database("GeoLite2-ASN");
    let data = db
        .insert_value(AsnRecord {
            autonomous_system_number: 64496,
            autonomous_system_organization: "Example (documentation ASN)",
        })
        .unwrap();
    db.insert_node(path("9.9.9.0/24"), data);
    db.write_to(Vec::new()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn maxmind_databases_place_addresses_for_country_and_asn_rules() {
    let env = env_with("maxmind", |dir| {
        let country = write_file(dir, "country.mmdb", country_db());
        let asn = write_file(dir, "asn.mmdb", asn_db());
        format!(
            "{VIA_LOOPBACK}[geo]\nblock_countries = [\"SE\"]\nblock_asns = [64496]\n[geo.maxmind]\ncountry = \"{country}\"\nasn = \"{asn}\"\n"
        )
    })
    .await;
    let c = client();
    let sweden = status_from(&env, &c, "8.8.8.8").await;
    assert_eq!(sweden.status, StatusCode::FORBIDDEN);
    assert_eq!(sweden.json()["code"], "network.blocked_country");
    let asn = status_from(&env, &c, "9.9.9.9").await;
    assert_eq!(asn.status, StatusCode::FORBIDDEN);
    assert_eq!(asn.json()["code"], "network.blocked_asn");
    let fine = status_from(&env, &c, "1.1.1.1").await;
    assert_eq!(fine.status, StatusCode::OK, "{:?}", fine.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_maxmind_database_of_the_wrong_kind_or_not_a_database_is_refused_naming_its_key() {
    let e = start_error("maxmind-kind", |dir| {
        let asn = write_file(dir, "asn.mmdb", asn_db());
        format!("[geo.maxmind]\ncity = \"{asn}\"\n")
    })
    .await;
    assert!(e.contains("geo.maxmind.city"), "{e}");
    assert!(e.contains("GeoLite2-ASN"), "{e}");
    let e = start_error("maxmind-junk", |dir| {
        let junk = write_file(dir, "junk.mmdb", "not a database");
        format!("[geo.maxmind]\nasn = \"{junk}\"\n")
    })
    .await;
    assert!(e.contains("geo.maxmind.asn"), "{e}");
    assert!(e.contains("junk.mmdb"), "{e}");
}

// ------------------------------------------------------------------------------ working hours

#[tokio::test(flavor = "multi_thread")]
async fn requests_outside_working_hours_carry_the_outside_hours_signal() {
    // A one-hour window starting two hours from now (UTC): now is always outside it.
    let hour = (unix_now().rem_euclid(86_400) / 3600 + 2) % 24;
    let env = env_with("hours", |_| {
        format!(
            "[geo]\n[geo.working_hours]\ntime_zone = \"UTC\"\ndays = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"]\nstart = \"{hour:02}:00\"\nend = \"{:02}:00\"\n",
            (hour + 1) % 24
        )
    })
    .await;
    let c = client();
    let a = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let record = env.audit_record(|r| r["url"]["path"] == "/api/x").await;
    assert!(
        record.to_string().contains("time.outside_hours"),
        "{record:#}"
    );
}

#[test]
fn invalid_working_hours_are_refused_naming_the_key() {
    let parse = |hours: &str| {
        parse_config(&format!("{MINIMAL_CONFIG}[geo.working_hours]\n{hours}\n"))
            .err()
            .map(|e| e.key)
    };
    assert_eq!(
        parse(
            "time_zone = \"Europe/Berlin\"\ndays = [\"Mon\", \"friday\"]\nstart = \"22:00\"\nend = \"06:00\""
        ),
        None
    );
    assert_eq!(
        parse("time_zone = \"Mars/Olympus\"").as_deref(),
        Some("geo.working_hours.time_zone")
    );
    assert_eq!(
        parse("time_zone = \"UTC\"\ndays = [\"someday\"]").as_deref(),
        Some("geo.working_hours.days")
    );
    assert_eq!(
        parse("time_zone = \"UTC\"\nstart = \"25:00\"").as_deref(),
        Some("geo.working_hours.start")
    );
    assert_eq!(
        parse("time_zone = \"UTC\"\nend = \"noon\"").as_deref(),
        Some("geo.working_hours.end")
    );
}

// ------------------------------------------------------------------------------ posture assertions

const MDM: &str = "https://mdm.example.test";

fn posture(mdm: &SigningKey, device: &str, owner: &str) -> String {
    let now = unix_now();
    TokenBuilder::new()
        .header("typ", "device-posture+jwt")
        .claim("iss", MDM)
        .claim("aud", "ztgate")
        .claim("iat", now)
        .claim("exp", now + 600)
        .claim("device_id", device)
        .claim("owner", owner)
        .claim(
            "posture",
            json!({ "platform": "macos", "os_version": "14.4.1", "disk_encrypted": true }),
        )
        .sign(mdm)
}

#[tokio::test(flavor = "multi_thread")]
async fn signed_posture_assertions_identify_the_device_and_forged_ones_are_refused() {
    let mdm = SigningKey::es256("mdm-1");
    let jwks = json!({ "keys": [mdm.public_jwk()] }).to_string();
    let env = env_with("posture", |dir| {
        let jwks = write_file(dir, "mdm-jwks.json", &jwks);
        format!(
            "[device]\nauto_register = true\n[device.posture]\nissuer = \"{MDM}\"\njwks = \"{jwks}\"\naudience = \"ztgate\"\n"
        )
    })
    .await;
    let c = client();
    let assertion = posture(&mdm, "laptop-7", "alice");
    let a = env
        .get_with_token(&c, "/api/x", &[("x-device-posture", &assertion)])
        .await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    let claims = env.echoed_claims(&c, &a.json()).await;
    assert_eq!(claims["zt"]["device"], "laptop-7");
    // Signed by another key: refused; none at all: refused.
    let forged = posture(&SigningKey::es256("mdm-1"), "laptop-7", "alice");
    let f = env
        .get_with_token(&c, "/api/x", &[("x-device-posture", &forged)])
        .await;
    assert_eq!(f.status, StatusCode::FORBIDDEN);
    let none = env.get_with_token(&c, "/api/x", &[]).await;
    assert_eq!(none.status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread")]
async fn posture_keys_that_cannot_be_used_are_refused_at_start_naming_the_key() {
    let e = start_error("posture-bad", |dir| {
        let jwks = write_file(dir, "jwks.json", "{\"not\": \"a key set\"}");
        format!("[device]\n[device.posture]\nissuer = \"{MDM}\"\njwks = \"{jwks}\"\n")
    })
    .await;
    assert!(e.contains("device.posture.jwks"), "{e}");
    let e = start_error("posture-empty", |dir| {
        let jwks = write_file(dir, "jwks.json", "{\"keys\": []}");
        format!("[device]\n[device.posture]\nissuer = \"{MDM}\"\njwks = \"{jwks}\"\n")
    })
    .await;
    assert!(
        e.contains("device.posture.jwks") && e.contains("no usable"),
        "{e}"
    );
    let e = start_error("posture-header", |dir| {
        let jwks = write_file(dir, "jwks.json", "{\"keys\": []}");
        format!(
            "[device]\n[device.posture]\nissuer = \"{MDM}\"\njwks = \"{jwks}\"\nheader = \"bad header\"\n"
        )
    })
    .await;
    assert!(e.contains("device.posture.header"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reload_re_reads_list_files_even_when_the_section_did_not_change() {
    let files = temp_dir("lists-reload-files");
    let blocked = write_file(&files, "blocked.txt", "192.0.2.0/24\n");
    let env = env(
        "lists-reload",
        &format!("{VIA_LOOPBACK}[geo]\nblocked_networks_files = [\"{blocked}\"]\n{API_ROUTE}"),
    )
    .await;
    let c = client();
    assert_eq!(
        status_from(&env, &c, "198.51.100.9").await.status,
        StatusCode::OK
    );
    write_file(&files, "blocked.txt", "192.0.2.0/24\n198.51.100.0/24\n");
    env.reload().await.unwrap();
    assert_eq!(
        status_from(&env, &c, "198.51.100.9").await.status,
        StatusCode::FORBIDDEN
    );
    // A list that became invalid: the reload is refused and the running lists stay.
    write_file(&files, "blocked.txt", "garbage\n");
    let e = env.reload().await.unwrap_err();
    assert_eq!(e.key, "geo.blocked_networks_files[0]", "{e}");
    assert_eq!(
        status_from(&env, &c, "198.51.100.9").await.status,
        StatusCode::FORBIDDEN
    );
}

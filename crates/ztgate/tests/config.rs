//! An invalid configuration is refused with the file, the line, the key and what is wrong; the
//! example configuration is valid; the binary checks and refuses files the same way.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::path::Path;

use common::{start_refused, temp_dir};
use ztgate::{Config, ConfigError};

const VALID: &str = r#"
[[listener]]
addr = "127.0.0.1:0"

[[issuer]]
issuer = "https://idp.example.test"
audiences = ["api"]

[[route]]
prefix = "/api"
upstream = "http://127.0.0.1:9"
[route.policy]
scopes = ["a"]
"#;

fn refuse(text: &str) -> ConfigError {
    Config::parse(text, Path::new("/etc/ztgate/gw.toml")).unwrap_err()
}

#[test]
fn a_valid_file_parses() {
    let c = Config::parse(VALID, Path::new("x.toml")).unwrap();
    assert_eq!(c.routes.len(), 1);
    assert_eq!(c.identity.ttl_seconds, 30);
}

#[test]
fn an_unknown_key_is_refused_with_file_line_column_and_key() {
    let e = refuse(&VALID.replace("prefix = \"/api\"", "prefix = \"/api\"\nupstreem = \"x\""));
    let text = e.to_string();
    assert_eq!(e.file, Path::new("/etc/ztgate/gw.toml"));
    assert!(text.starts_with("/etc/ztgate/gw.toml:"), "{text}");
    assert!(text.contains("upstreem"), "{text}");
    assert!(e.key.starts_with("route[0]"), "{text}");
    assert_eq!(e.position.map(|p| p.0), Some(11), "{text}");
}

#[test]
fn a_value_of_the_wrong_type_names_its_key_and_line() {
    let e = refuse(&VALID.replace("addr = \"127.0.0.1:0\"", "addr = 8080"));
    assert_eq!(e.key, "listener[0].addr", "{e}");
    assert_eq!(e.position.map(|p| p.0), Some(3), "{e}");
    let e = refuse(&format!("{VALID}\n[identity]\nttl_seconds = \"long\"\n"));
    assert_eq!(e.key, "identity.ttl_seconds", "{e}");
}

#[test]
fn an_unknown_policy_key_is_refused_with_the_route_named() {
    let e = refuse(&VALID.replace("scopes = [\"a\"]", "scopes = [\"a\"]\nmax_risc = 0.5"));
    assert_eq!(e.key, "route[0].policy", "{e}");
    assert!(e.message.contains("max_risc"), "{e}");
    assert_eq!(e.position, Some((14, 1)), "{e}");
    assert!(!e.message.contains("line 2"), "{e}");
}

#[test]
fn semantic_errors_name_the_key() {
    let e = refuse(&VALID.replace("http://127.0.0.1:9", "ftp://127.0.0.1:9"));
    assert_eq!(e.key, "route[0].upstream", "{e}");
    assert!(e.message.contains("http://"), "{e}");
    let e = refuse(&format!("{VALID}\n[identity]\nttl_seconds = 61\n"));
    assert_eq!(e.key, "identity.ttl_seconds", "{e}");
    let e = refuse(&format!(
        "{VALID}\n[identity]\nheader = \"authorization\"\n"
    ));
    assert_eq!(e.key, "identity.header", "{e}");
    let e = refuse(&VALID.replace("prefix = \"/api\"", "prefix = \"api\""));
    assert_eq!(e.key, "route[0].prefix", "{e}");
    let e = refuse(&VALID.replace("audiences = [\"api\"]", "audiences = []"));
    assert_eq!(e.key, "issuer[0].audiences", "{e}");
    let e = refuse(&VALID.replace("scopes = [\"a\"]", "path = \"/x\""));
    assert_eq!(e.key, "route[0].policy.path", "{e}");
    let e = refuse("[[listener]]\naddr = \"127.0.0.1:0\"\n");
    assert!(e.key == "route" || e.key == "issuer", "{e}");
}

#[test]
fn a_syntax_error_gives_line_and_column() {
    let e = refuse("[[listener]\naddr = 1\n");
    assert_eq!(e.position.map(|p| p.0), Some(1), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gateway_refuses_an_unknown_policy_key_at_start_naming_route_and_key() {
    let dir = temp_dir("policy-key");
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        VALID.replace("scopes = [\"a\"]", "scopes = [\"a\"]\nmax_risc = 0.5"),
    )
    .unwrap();
    let e = start_refused(&path).await;
    assert!(e.contains("gw.toml:"), "{e}");
    assert!(e.contains("route[0].policy"), "{e}");
    assert!(e.contains("max_risc"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_realm_no_challenge_can_carry_is_refused_at_start_naming_jwt_realm() {
    for (tag, realm) in [("realm-empty", ""), ("realm-quote", "a\\\"b")] {
        let dir = temp_dir(tag);
        let path = dir.join("gw.toml");
        std::fs::write(&path, format!("[jwt]\nrealm = \"{realm}\"\n{VALID}")).unwrap();
        let e = start_refused(&path).await;
        assert!(e.contains("gw.toml"), "{e}");
        assert!(e.contains("jwt.realm"), "{realm:?}: {e}");
        assert!(!e.contains("route[0].policy"), "{realm:?}: {e}");
    }
}

#[test]
fn the_example_configuration_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ztgate.example.toml");
    Config::load(&path).unwrap();
}

#[test]
fn the_binary_checks_a_file_and_refuses_an_invalid_one_naming_file_and_key() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("ztgate.example.toml");
    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_ztgate"))
        .args(["--check", "--config"])
        .arg(&example)
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let dir = temp_dir("binary");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, VALID.replace("audiences", "audience")).unwrap();
    // Without --check: start is refused the same way, before anything listens.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ztgate"))
        .arg("--config")
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml:"), "{stderr}");
    assert!(stderr.contains("audience"), "{stderr}");
}

//! External conformance corpora run through this crate's JWS verification: Wycheproof's JWS, JWK
//! and ECDSA P-256 (P1363) vectors, and the RFC 7520 / RFC 7797 cookbook examples.
//!
//! The corpora are read from `../shared/conformance/` beside the project (or from
//! `ZEROTRUST_CONFORMANCE_DIR`). A missing corpus fails the test: it is never skipped.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)] // test code asserts by panicking

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;
use zerotrust_jwt::{Algorithm, CompactJws, JwsError, KeyError, KeyPolicy, KeySet, VerifyingKey};

fn corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ZEROTRUST_CONFORMANCE_DIR") {
        return PathBuf::from(dir);
    }
    // crates/zerotrust-jwt -> project root -> ../shared/conformance
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance")
}

fn load(relative: &str) -> Value {
    let path = corpus_dir().join(relative);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "conformance corpus {} is required (set ZEROTRUST_CONFORMANCE_DIR): {e}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"))
}

/// Verifies a compact JWS with the keys `keys` offers for its algorithm and kid.
fn verify_with(keys: &[VerifyingKey], token: &str) -> Result<(), String> {
    let jws = CompactJws::parse(token).map_err(|e| format!("parse: {e}"))?;
    let key = keys
        .iter()
        .find(|k| k.algorithm() == jws.algorithm())
        .ok_or_else(|| "no key for the token's algorithm".to_owned())?;
    jws.verify(key).map_err(|e| e.to_string())
}

/// Label overrides, with the reason each is kept (see shared/conformance/README.md).
fn jws_overrides() -> BTreeMap<u64, (&'static str, &'static str)> {
    BTreeMap::from([
        (
            367,
            (
                "valid",
                "byte-identical to valid tcId 357; mislabelled upstream (issue 236)",
            ),
        ),
        (
            370,
            (
                "valid",
                "byte-identical to valid tcId 357; mislabelled upstream (issue 236)",
            ),
        ),
        (
            372,
            (
                "invalid",
                "contains '?', which is not base64url; labelled valid upstream",
            ),
        ),
        (
            373,
            (
                "invalid",
                "contains '?', which is not base64url; labelled valid upstream",
            ),
        ),
        (
            346,
            (
                "invalid",
                "PS384 header but the key's alg is PS256: the algorithm comes from the key",
            ),
        ),
        (
            350,
            (
                "invalid",
                "PS384 header but the key's alg is PS256: the algorithm comes from the key",
            ),
        ),
        (
            347,
            (
                "invalid",
                "key alg is the typo \"ES521\" and P-521 is not supported",
            ),
        ),
        (
            351,
            (
                "invalid",
                "key alg is the typo \"ES521\" and P-521 is not supported",
            ),
        ),
    ])
}

#[test]
fn wycheproof_json_web_signature_vectors_all_agree() {
    let corpus = load("wycheproof/json_web_signature_test.json");
    let overrides = jws_overrides();
    let (mut total, mut valid, mut disagreements) = (0, 0, Vec::new());
    for group in arr(&corpus, "testGroups") {
        // The group's public key; HMAC groups only have the (symmetric) private key.
        let jwk = group.get("public").unwrap_or(&group["private"]);
        let keys = VerifyingKey::from_jwk(jwk, &KeyPolicy::local());
        for test in arr(group, "tests") {
            total += 1;
            let id = test["tcId"].as_u64().unwrap_or_default();
            let expected = overrides
                .get(&id)
                .map_or_else(|| test["result"].as_str().unwrap_or_default(), |o| o.0);
            let token = test["jws"].as_str().unwrap_or_default();
            let outcome = match &keys {
                Ok(keys) => verify_with(keys, token),
                Err(e) => Err(format!("key refused: {e}")),
            };
            let got = if outcome.is_ok() { "valid" } else { "invalid" };
            if got == "valid" {
                valid += 1;
            }
            if got != expected {
                disagreements.push(format!(
                    "tcId {id} ({}): expected {expected}, got {got} {outcome:?}",
                    test["comment"]
                ));
            }
        }
    }
    assert_eq!(total, 401, "the corpus should hold 401 vectors");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    // 46 valid, plus the two mislabelled duplicates, minus the four valid-labelled overrides
    // and the two '?' vectors.
    assert_eq!(valid, 46 + 2 - 4 - 2);
}

#[test]
fn wycheproof_json_web_key_sets_are_refused_or_filtered() {
    let corpus = load("wycheproof/json_web_key_test.json");
    let mut disagreements = Vec::new();
    let mut total = 0;
    for group in arr(&corpus, "testGroups") {
        let keyset = group["private"].to_string();
        let loaded = KeySet::from_jwk_set(keyset.as_bytes(), &KeyPolicy::local());
        for test in arr(group, "tests") {
            total += 1;
            let id = test["tcId"].as_u64().unwrap_or_default();
            let expected = test["result"].as_str().unwrap_or_default();
            let token = test["jws"].as_str().unwrap_or_default();
            let outcome: Result<(), String> = match &loaded {
                Err(e) => Err(format!("set refused: {e}")),
                Ok((set, _)) => CompactJws::parse(token)
                    .map_err(|e| e.to_string())
                    .and_then(|jws| match set.find(jws.header().kid(), jws.algorithm()) {
                        zerotrust_jwt::KeyLookup::Found(key) => {
                            jws.verify(key).map_err(|e| e.to_string())
                        }
                        other => Err(format!("{other:?}")),
                    }),
            };
            let got = if outcome.is_ok() { "valid" } else { "invalid" };
            if got != expected {
                disagreements.push(format!(
                    "tcId {id} ({}): expected {expected}, got {got} {outcome:?}",
                    test["comment"]
                ));
            }
        }
    }
    assert_eq!(total, 26);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

#[test]
fn wycheproof_jwk_sets_say_why_keys_were_left_out() {
    let corpus = load("wycheproof/json_web_key_test.json");
    let reason_of = |comment: &str| -> Vec<KeyError> {
        let group = arr(&corpus, "testGroups")
            .iter()
            .find(|g| g["comment"] == comment)
            .unwrap_or_else(|| panic!("group {comment}"));
        let keyset = group["private"].to_string();
        let (_, ignored) = KeySet::from_jwk_set(keyset.as_bytes(), &KeyPolicy::local())
            .unwrap_or_else(|e| panic!("{comment}: {e}"));
        ignored.into_iter().map(|k| k.error).collect()
    };
    assert_eq!(
        reason_of("jws_mixedSymmetryKeyset"),
        vec![KeyError::MixedKeySet]
    );
    // The second key of that set also has non-canonical base64 (non-zero trailing bits).
    assert_eq!(
        reason_of("jws_duplicate_kid"),
        vec![KeyError::DuplicateKid, KeyError::BadEncoding("k")]
    );
    assert_eq!(reason_of("jws_rsa_roca_key"), vec![KeyError::RocaWeak]);
    assert!(matches!(
        reason_of("keysize_too_small").as_slice(),
        [KeyError::RsaTooSmall {
            bits: 1024,
            min: 2048
        }]
    ));
    assert_eq!(reason_of("exponentOne"), vec![KeyError::RsaBadExponent]);
    assert!(matches!(
        reason_of("wrong_kty").as_slice(),
        [KeyError::MissingMember("n")]
    ));
    assert!(matches!(
        reason_of("invalid_point").as_slice(),
        [KeyError::InvalidKey]
    ));
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(0xff))
        .collect()
}

#[test]
fn wycheproof_ecdsa_p256_p1363_vectors_all_agree() {
    let corpus = load("wycheproof/ecdsa_secp256r1_sha256_p1363_test.json");
    let (mut total, mut disagreements) = (0, Vec::new());
    for group in arr(&corpus, "testGroups") {
        let der = hex(group["publicKeyDer"].as_str().unwrap_or_default());
        let from_der = VerifyingKey::from_der(&der, Algorithm::ES256);
        // Not every group has a JWK form; those run through DER only.
        let from_jwk = group
            .get("publicKeyJwk")
            .map(|jwk| VerifyingKey::from_jwk(jwk, &KeyPolicy::remote()));
        for test in arr(group, "tests") {
            total += 1;
            let msg = hex(test["msg"].as_str().unwrap_or_default());
            let sig = hex(test["sig"].as_str().unwrap_or_default());
            let expected = test["result"] == "valid";
            let by_der = from_der.as_ref().is_ok_and(|k| k.verify(&msg, &sig));
            let by_jwk = match &from_jwk {
                None => by_der,
                Some(keys) => keys
                    .as_ref()
                    .is_ok_and(|ks| ks.iter().all(|k| k.verify(&msg, &sig))),
            };
            if by_der != expected || by_jwk != expected {
                disagreements.push(format!(
                    "tcId {} ({}): expected {expected}, DER {by_der}, JWK {by_jwk}",
                    test["tcId"], test["comment"]
                ));
            }
        }
    }
    assert_eq!(total, 262);
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

fn cookbook_key(file: &Value, policy: &KeyPolicy) -> Result<Vec<VerifyingKey>, KeyError> {
    VerifyingKey::from_jwk(&file["input"]["key"], policy)
}

#[test]
fn rfc7520_signature_examples_verify_with_the_configured_algorithm() {
    for (file, alg) in [
        ("rfc7520/4_1.rsa_v15_signature.json", Algorithm::RS256),
        ("rfc7520/4_2.rsa-pss_signature.json", Algorithm::PS384),
        (
            "rfc7520/4_4.hmac-sha2_integrity_protection.json",
            Algorithm::HS256,
        ),
    ] {
        let doc = load(file);
        // The cookbook's RSA key names no alg: the operator's configuration supplies it.
        let keys = cookbook_key(&doc, &KeyPolicy::local().rsa_algorithms([alg]))
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let token = doc["output"]["compact"].as_str().unwrap_or_default();
        verify_with(&keys, token).unwrap_or_else(|e| panic!("{file}: {e}"));
        // The same token does not verify when the operator allows another algorithm.
        let other = if alg == Algorithm::RS256 {
            Algorithm::PS256
        } else {
            Algorithm::RS256
        };
        if !alg.is_symmetric() {
            let keys = cookbook_key(&doc, &KeyPolicy::local().rsa_algorithms([other]))
                .unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(verify_with(&keys, token).is_err(), "{file} with {other}");
        }
        // JSON serializations are not compact JWS and are refused.
        let json = doc["output"]["json"].to_string();
        assert_eq!(CompactJws::parse(&json).err(), Some(JwsError::NotCompact));
    }
}

#[test]
fn rfc7520_p521_keys_are_refused_as_unsupported() {
    let doc = load("rfc7520/4_3.ecdsa_signature.json");
    assert_eq!(
        cookbook_key(&doc, &KeyPolicy::local()).err(),
        Some(KeyError::UnsupportedCurve("P-521".into()))
    );
    let key = load("rfc7520/3_1.ec_public_key.json");
    assert_eq!(
        VerifyingKey::from_jwk(&key, &KeyPolicy::remote()).err(),
        Some(KeyError::UnsupportedCurve("P-521".into()))
    );
    let rsa = load("rfc7520/3_3.rsa_public_key.json");
    assert!(VerifyingKey::from_jwk(&rsa, &KeyPolicy::remote()).is_ok());
}

#[test]
fn rfc7797_unencoded_payloads_are_refused() {
    let doc = load("rfc7520/hmac-sha2_b64_false.json");
    let token = doc["output"]["compact"].as_str().unwrap_or_default();
    assert_eq!(
        CompactJws::parse(token).err(),
        Some(JwsError::UnsupportedExtension)
    );
    // Even with the right key, nothing about the token is accepted.
    let keys = cookbook_key(&doc, &KeyPolicy::local()).unwrap_or_default();
    assert!(verify_with(&keys, token).is_err());
    // The JSON-only example has no compact form at all.
    let doc = load("rfc7520/4.2.hmac-sha2_b64_false.json");
    assert!(doc["output"].get("compact").is_none());
    let json = doc["output"]["json"].to_string();
    assert!(CompactJws::parse(&json).is_err());
}

//! JwtVerifyLayer over real HTTP on 127.0.0.1: a development issuer serves discovery and keys,
//! tokens are minted with real RSA, EC and Ed25519 keys, requests go through an axum app.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)] // test code asserts by panicking

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use serde_json::json;
use zerotrust_core::{Reason, RevocationStore, StoreError, StoreFuture};
use zerotrust_jwt::{Algorithm, Issuer, JwtVerifier, JwtVerifyLayer, TokenSource, VerifyingKey};
use zerotrust_testkit::{
    DEFAULT_AUDIENCE, DevIssuer, SigningKey, TokenBuilder, b64url, compact, unix_now,
};

async fn setup() -> (DevIssuer, String) {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev).roles_claim("realm_access.roles"))
        .build()
        .unwrap();
    let base = protected(verifier).await;
    (dev, base)
}

#[tokio::test]
async fn valid_rs256_token_via_discovery_is_200_and_identity_reaches_handler() {
    let (dev, base) = setup().await;
    let token = dev.sign(
        &dev.token()
            .claim("realm_access", json!({"roles": ["auditor", "viewer"]}))
            .claim("acr", "urn:example:loa:2")
            .claim("amr", json!(["pwd", "otp"]))
            .claim("cnf", json!({"x5t#S256": "abc"}))
            .claim("tenant", "acme"),
    );
    let reply = get_with_token(&base, &token).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let b = &reply.body;
    assert_eq!(b["sub"], "alice");
    assert_eq!(b["iss"], dev.issuer());
    assert_eq!(b["aud"], json!([DEFAULT_AUDIENCE]));
    assert_eq!(b["scopes"], json!(["openid", "reports:read"]));
    assert_eq!(b["roles"], json!(["auditor", "viewer"]));
    assert_eq!(b["acr"], "urn:example:loa:2");
    assert_eq!(b["amr"], json!(["pwd", "otp"]));
    assert_eq!(b["client_id"], "demo-client");
    assert_eq!(b["cnf"], json!({"x5t#S256": "abc"}));
    assert_eq!(b["tenant"], "acme");
    assert!(b["jti"].is_string() && b["auth_time"].is_i64());
    assert_eq!(dev.discovery_hits(), 1);
    assert_eq!(dev.jwks_hits(), 1);
}

#[tokio::test]
async fn es256_eddsa_and_ps256_tokens_verify_with_their_keys() {
    for key in [
        SigningKey::es256("ec-1"),
        SigningKey::es384("ec-2"),
        SigningKey::ed25519("ed-1"),
        SigningKey::rsa("ps-1").with_alg("PS256"),
    ] {
        let alg = key.alg().to_owned();
        let dev = DevIssuer::start_with(key).await.unwrap();
        // Key set URL configured directly, no discovery.
        let verifier = JwtVerifier::builder()
            .issuer(
                Issuer::jwks(dev.issuer(), dev.jwks_url())
                    .audience(DEFAULT_AUDIENCE)
                    .allow_insecure_http(),
            )
            .build()
            .unwrap();
        let base = protected(verifier).await;
        let reply = get_with_token(&base, &dev.mint()).await;
        assert_eq!(reply.status, 200, "{alg}: {reply:?}");
        assert_eq!(dev.discovery_hits(), 0);
    }
}

#[tokio::test]
async fn missing_token_is_401_with_bare_bearer_challenge() {
    let (_dev, base) = setup().await;
    let reply = send(client().get(format!("{base}/api/me"))).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.as_deref(), Some("Bearer realm=\"api\""));
    assert_eq!(reply.code(), "token.missing");
    // Another scheme carries no bearer token: the same bare challenge.
    let reply = send(
        client()
            .get(format!("{base}/api/me"))
            .basic_auth("u", Some("p")),
    )
    .await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.challenge.as_deref(), Some("Bearer realm=\"api\""));
}

#[tokio::test]
async fn two_authorization_headers_are_400() {
    let (dev, base) = setup().await;
    let token = dev.mint();
    let reply = send(
        client()
            .get(format!("{base}/api/me"))
            .header("authorization", format!("Bearer {token}"))
            .header("authorization", format!("Bearer {token}")),
    )
    .await;
    reply.assert_invalid_request("request.multiple_credentials");
}

#[tokio::test]
async fn token_in_query_string_is_400_even_with_a_header() {
    let (dev, base) = setup().await;
    let token = dev.mint();
    let reply = send(
        client()
            .get(format!("{base}/api/me?access_token={token}"))
            .bearer_auth(&token),
    )
    .await;
    reply.assert_invalid_request("request.token_in_query");
}

#[tokio::test]
async fn oversized_token_is_refused_before_decoding() {
    let (dev, base) = setup().await;
    let token = dev.sign(&dev.token().claim("pad", "x".repeat(9000)));
    assert!(token.len() > 8192);
    get_with_token(&base, &token)
        .await
        .assert_invalid_token("token.too_large");
}

#[tokio::test]
async fn alg_none_in_every_casing_is_401() {
    let (dev, base) = setup().await;
    for alg in ["none", "None", "NONE", "nOnE"] {
        let token = dev.token().unsigned(alg);
        get_with_token(&base, &token)
            .await
            .assert_invalid_token("token.algorithm_unsupported");
        // With a signature part stuck on, still refused.
        let with_sig = format!("{token}c2lnbmF0dXJl");
        get_with_token(&base, &with_sig)
            .await
            .assert_invalid_token("token.algorithm_unsupported");
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_401_in_every_form() {
    let (dev, base) = setup().await;
    let key = dev.active_key();
    let forms: [(&str, Vec<u8>); 3] = [
        ("pem", key.public_pem().into_bytes()),
        ("der", key.public_der()),
        ("jwk", key.public_jwk().to_string().into_bytes()),
    ];
    for (form, secret) in forms {
        let attacker = SigningKey::hmac(key.kid(), &secret, "HS256");
        let token = dev.token().sign(&attacker);
        let reply = get_with_token(&base, &token).await;
        assert_eq!(reply.status, 401, "{form}");
        reply.assert_invalid_token("token.algorithm_mismatch");
    }

    // Same attack on an issuer configured with the PEM directly.
    let static_key = VerifyingKey::from_pem(&key.public_pem(), Algorithm::RS256)
        .unwrap()
        .with_kid(key.kid());
    let verifier = JwtVerifier::builder()
        .issuer(Issuer::with_keys(dev.issuer(), [static_key]).audience(DEFAULT_AUDIENCE))
        .build()
        .unwrap();
    let base = protected(verifier).await;
    assert_eq!(get_with_token(&base, &dev.mint()).await.status, 200);
    let attacker = SigningKey::hmac(key.kid(), key.public_pem().as_bytes(), "HS256");
    get_with_token(&base, &dev.token().sign(&attacker))
        .await
        .assert_invalid_token("token.algorithm_mismatch");
}

#[tokio::test]
async fn kid_path_traversal_and_injection_are_unknown_keys() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev).unknown_kid_cooldown(Duration::from_secs(60)))
        .build()
        .unwrap();
    let base = protected(verifier).await;
    assert_eq!(get_with_token(&base, &dev.mint()).await.status, 200);
    let key = dev.active_key();
    for kid in [
        "../../../../../../dev/null",
        "/etc/passwd",
        "' OR '1'='1",
        "key\u{0}",
        "http://127.0.0.1:1/jwks",
        &"k".repeat(2000),
    ] {
        let token = dev.token().header("kid", kid).sign(&key);
        get_with_token(&base, &token)
            .await
            .assert_invalid_token("token.key_unknown");
    }
    // One refetch for the first unknown kid, then the cooldown holds.
    assert!(dev.jwks_hits() <= 2, "hits {}", dev.jwks_hits());
}

#[tokio::test]
async fn jku_x5u_and_jwk_headers_are_never_fetched_or_used() {
    let (dev, base) = setup().await;
    // A listener that counts every connection an attacker-controlled URL would receive.
    let trap = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let trap_url = format!("http://{}/keys", trap.local_addr().unwrap());
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    tokio::spawn(async move {
        while let Ok((_sock, _)) = trap.accept().await {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let attacker = SigningKey::rsa(dev.active_key().kid());
    let attacker_jwk = attacker.public_jwk();
    for header in ["jku", "x5u"] {
        let token = dev.token().header(header, trap_url.clone()).sign(&attacker);
        get_with_token(&base, &token)
            .await
            .assert_invalid_token("token.signature_invalid");
    }
    let token = dev
        .token()
        .header("jwk", attacker_jwk.clone())
        .sign(&attacker);
    get_with_token(&base, &token)
        .await
        .assert_invalid_token("token.signature_invalid");
    let token = dev
        .token()
        .header(
            "x5c",
            json!(["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]),
        )
        .sign(&attacker);
    get_with_token(&base, &token)
        .await
        .assert_invalid_token("token.signature_invalid");
    // A genuine token that happens to carry jku (as some issuers send) verifies with the
    // configured keys; the URL is still never fetched.
    let genuine = dev.sign(&dev.token().header("jku", trap_url.clone()));
    assert_eq!(get_with_token(&base, &genuine).await.status, 200);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 0);
}

#[tokio::test]
async fn crit_header_is_401() {
    let (dev, base) = setup().await;
    let token = dev.sign(&dev.token().header("crit", json!(["exp"])).header("exp", 1));
    get_with_token(&base, &token)
        .await
        .assert_invalid_token("token.header_extension");
}

#[tokio::test]
async fn wrong_or_missing_typ_is_401() {
    let (dev, base) = setup().await;
    for typ in [Some("JWT"), Some("jwt"), Some("secevent+jwt"), None] {
        let builder = match typ {
            Some(t) => dev.token().header("typ", t),
            None => dev.token().without_header("typ"),
        };
        get_with_token(&base, &dev.sign(&builder))
            .await
            .assert_invalid_token("token.type");
    }
    for typ in ["at+jwt", "AT+JWT", "application/at+jwt"] {
        let reply = get_with_token(&base, &dev.sign(&dev.token().header("typ", typ))).await;
        assert_eq!(reply.status, 200, "{typ}");
    }
}

#[tokio::test]
async fn id_token_used_as_access_token_is_401() {
    let dev = DevIssuer::start().await.unwrap();
    let id_token = dev
        .token()
        .header("typ", "JWT")
        .claim("aud", "demo-client")
        .claim("nonce", "n-0S6_WzA2Mj")
        .without_claim("scope");
    // Strict default: the typ gives it away.
    let strict = protected(
        JwtVerifier::builder()
            .issuer(issuer_for(&dev))
            .build()
            .unwrap(),
    )
    .await;
    get_with_token(&strict, &dev.sign(&id_token))
        .await
        .assert_invalid_token("token.type");
    // Even where the operator accepts typ JWT, the audience (the client, not this API) refuses it.
    let relaxed = protected(
        JwtVerifier::builder()
            .issuer(issuer_for(&dev).accept_token_types(["JWT"]))
            .build()
            .unwrap(),
    )
    .await;
    get_with_token(&relaxed, &dev.sign(&id_token))
        .await
        .assert_invalid_token("token.audience");
}

#[tokio::test]
async fn wrongly_typed_claims_are_refused_never_ignored() {
    let (dev, base) = setup().await;
    for (claim, value) in [
        ("exp", json!((unix_now() + 300).to_string())),
        ("exp", json!(null)),
        ("iss", json!([dev.issuer()])),
        ("aud", json!(42)),
        ("aud", json!([DEFAULT_AUDIENCE, 7])),
        ("nbf", json!(true)),
        ("iat", json!("now")),
        ("sub", json!({"id": "alice"})),
        ("amr", json!("pwd")),
    ] {
        let token = dev.sign(&dev.token().claim(claim, value.clone()));
        let reply = get_with_token(&base, &token).await;
        assert_eq!(reply.status, 401, "{claim}={value}");
        reply.assert_invalid_token("token.claims_invalid");
    }
}

#[tokio::test]
async fn duplicate_claims_are_refused() {
    let (dev, base) = setup().await;
    let key = dev.active_key();
    let header = format!(r#"{{"alg":"RS256","kid":"{}","typ":"at+jwt"}}"#, key.kid());
    let now = unix_now();
    let payload = format!(
        r#"{{"iss":"{}","sub":"alice","aud":"{DEFAULT_AUDIENCE}","exp":{},"exp":{}}}"#,
        dev.issuer(),
        now - 3600,
        now + 3600
    );
    let token = compact(&header, &payload, |m| key.sign(m));
    get_with_token(&base, &token)
        .await
        .assert_invalid_token("token.claims_invalid");
}

#[tokio::test]
async fn time_claims_are_checked_with_leeway() {
    let (dev, base) = setup().await;
    let now = unix_now();
    let cases = [
        ("exp", now - 120, Some("token.expired")),
        ("exp", now - 10, None),
        ("nbf", now + 120, Some("token.not_yet_valid")),
        ("nbf", now + 10, None),
        ("iat", now + 120, Some("token.issued_in_future")),
        ("iat", now + 10, None),
    ];
    for (claim, value, refusal) in cases {
        let token = dev.sign(&dev.token().claim(claim, value));
        let reply = get_with_token(&base, &token).await;
        match refusal {
            Some(code) => reply.assert_invalid_token(code),
            None => assert_eq!(reply.status, 200, "{claim}={value}: {reply:?}"),
        }
    }
    // Fractional NumericDates are allowed.
    let token = dev.sign(&dev.token().claim("exp", now as f64 + 300.5));
    assert_eq!(get_with_token(&base, &token).await.status, 200);
}

#[tokio::test]
async fn required_claims_audience_and_issuer_are_enforced() {
    let (dev, base) = setup().await;
    for (builder, code) in [
        (dev.token().without_claim("exp"), "token.claim_missing"),
        (dev.token().without_claim("aud"), "token.claim_missing"),
        (dev.token().without_claim("sub"), "token.claim_missing"),
        (dev.token().without_claim("iss"), "token.claim_missing"),
        (
            dev.token().claim("aud", "https://other.example"),
            "token.audience",
        ),
        (dev.token().claim("aud", json!([])), "token.audience"),
        (
            dev.token().claim("iss", "https://evil.example"),
            "token.issuer_unknown",
        ),
    ] {
        get_with_token(&base, &dev.sign(&builder))
            .await
            .assert_invalid_token(code);
    }
    let ok = dev
        .token()
        .claim("aud", json!(["https://other.example", DEFAULT_AUDIENCE]));
    assert_eq!(get_with_token(&base, &dev.sign(&ok)).await.status, 200);
}

#[tokio::test]
async fn signature_copied_from_another_token_is_401() {
    let (dev, base) = setup().await;
    let genuine = dev.mint();
    let forged_body = dev.token().claim("sub", "mallory");
    let forged = dev.sign(&forged_body);
    let sig = genuine.rsplit('.').next().unwrap_or_default();
    let head_and_body = forged.rsplit_once('.').map(|(a, _)| a).unwrap_or_default();
    get_with_token(&base, &format!("{head_and_body}.{sig}"))
        .await
        .assert_invalid_token("token.signature_invalid");
}

#[tokio::test]
async fn es256_with_r_or_s_zero_is_401() {
    let dev = DevIssuer::start_with(SigningKey::es256("ec-1"))
        .await
        .unwrap();
    let base = protected(
        JwtVerifier::builder()
            .issuer(issuer_for(&dev))
            .build()
            .unwrap(),
    )
    .await;
    let genuine = dev.mint();
    let (input, sig) = genuine.rsplit_once('.').unwrap();
    let sig = base64_decode(sig);
    let (r, s) = sig.split_at(32);
    for forged in [
        [vec![0u8; 32], s.to_vec()].concat(),
        [r.to_vec(), vec![0u8; 32]].concat(),
        vec![0u8; 64],
        [sig.clone(), vec![0]].concat(),
    ] {
        get_with_token(&base, &format!("{input}.{}", b64url(forged)))
            .await
            .assert_invalid_token("token.signature_invalid");
    }
    assert_eq!(get_with_token(&base, &genuine).await.status, 200);
}

/// A well-formed token claiming to be from `iss`, signed by a key nobody publishes.
fn dev_token_for_issuer(iss: &str) -> String {
    let key = SigningKey::es256("k-1");
    let now = unix_now();
    TokenBuilder::new()
        .header("typ", "at+jwt")
        .claim("iss", iss)
        .claim("sub", "alice")
        .claim("aud", DEFAULT_AUDIENCE)
        .claim("exp", now + 300)
        .sign(&key)
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[tokio::test]
async fn key_rotation_new_kid_is_accepted_after_one_refetch() {
    let dev = DevIssuer::start().await.unwrap();
    let base = protected(
        JwtVerifier::builder()
            .issuer(issuer_for(&dev))
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(get_with_token(&base, &dev.mint()).await.status, 200);
    assert_eq!(dev.jwks_hits(), 1);
    let old = dev.mint();
    dev.rotate_to(SigningKey::es256("rotated-2"));
    let reply = get_with_token(&base, &dev.mint()).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(dev.jwks_hits(), 2, "exactly one refetch for the new kid");
    // The old key is gone from the new set: tokens it signed are refused, without another fetch
    // (the unknown-kid cooldown is running).
    get_with_token(&base, &old)
        .await
        .assert_invalid_token("token.key_unknown");
    assert_eq!(dev.jwks_hits(), 2);
}

#[tokio::test]
async fn issuer_down_cached_keys_keep_working() {
    let dev = DevIssuer::start().await.unwrap();
    let base = protected(
        JwtVerifier::builder()
            .issuer(
                issuer_for(&dev)
                    .refresh_bounds(Duration::from_millis(50), Duration::from_millis(50)),
            )
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(get_with_token(&base, &dev.mint()).await.status, 200);
    let token = dev.mint();
    dev.set_failing(true);
    tokio::time::sleep(Duration::from_millis(120)).await;
    // A refresh is due and fails; the keys held keep working.
    for _ in 0..3 {
        assert_eq!(get_with_token(&base, &token).await.status, 200);
    }
    dev.stop().await;
    assert_eq!(get_with_token(&base, &token).await.status, 200);
}

#[tokio::test]
async fn nothing_cached_and_issuer_down_is_503_with_retry_after() {
    let dev = DevIssuer::start().await.unwrap();
    let token = dev.mint();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev))
        .build()
        .unwrap();
    dev.set_failing(true);
    let base = protected(verifier).await;
    for _ in 0..5 {
        let reply = get_with_token(&base, &token).await;
        assert_eq!(reply.status, 503, "{reply:?}");
        assert!(
            reply
                .retry_after
                .as_deref()
                .is_some_and(|s| s.parse::<u64>().is_ok_and(|n| n >= 1))
        );
        assert_eq!(reply.code(), "issuer.keys_unavailable");
        assert!(reply.challenge.is_none());
    }
    // The back-off held: one failed attempt, not one per request.
    assert_eq!(dev.discovery_hits(), 1);
    // Unreachable issuer (connection refused): also 503, never a pass.
    let unreachable = JwtVerifier::builder()
        .issuer(
            Issuer::discover("http://127.0.0.1:9")
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .build()
        .unwrap();
    let base = protected(unreachable).await;
    let token = dev_token_for_issuer("http://127.0.0.1:9");
    let reply = get_with_token(&base, &token).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(reply.code(), "issuer.keys_unavailable");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_kid_flood_makes_at_most_one_fetch_per_cooldown() {
    let dev = DevIssuer::start().await.unwrap();
    let base = protected(
        JwtVerifier::builder()
            .issuer(issuer_for(&dev).unknown_kid_cooldown(Duration::from_secs(30)))
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(get_with_token(&base, &dev.mint()).await.status, 200);
    let before = dev.jwks_hits() + dev.discovery_hits();
    let key = dev.active_key();
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..300 {
        let token = dev.token().header("kid", format!("random-{i}")).sign(&key);
        let req = client.get(format!("{base}/api/me")).bearer_auth(token);
        tasks.push(tokio::spawn(async move { send(req).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 401);
    }
    let fetches = dev.jwks_hits() + dev.discovery_hits() - before;
    assert!(fetches <= 1, "{fetches} fetches for 300 random kids");
}

#[tokio::test]
async fn max_age_drives_background_refresh() {
    let dev = DevIssuer::start().await.unwrap();
    dev.set_cache_control(Some("public, max-age=0"));
    let base = protected(
        JwtVerifier::builder()
            .issuer(
                issuer_for(&dev)
                    .refresh_bounds(Duration::from_millis(100), Duration::from_secs(3600)),
            )
            .build()
            .unwrap(),
    )
    .await;
    let token = dev.mint();
    assert_eq!(get_with_token(&base, &token).await.status, 200);
    assert_eq!(dev.jwks_hits(), 1);
    // Within the (clamped) max-age: no refetch.
    assert_eq!(get_with_token(&base, &token).await.status, 200);
    assert_eq!(dev.jwks_hits(), 1);
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(get_with_token(&base, &token).await.status, 200);
    // The refresh runs in the background; wait for it, bounded.
    for _ in 0..50 {
        if dev.jwks_hits() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(dev.jwks_hits(), 2);
}

#[tokio::test]
async fn discovery_naming_another_issuer_is_refused() {
    let dev = DevIssuer::start().await.unwrap();
    // Configured with a trailing slash: the document's issuer differs, so its keys are not used.
    let verifier = JwtVerifier::builder()
        .issuer(
            Issuer::discover(format!("{}/", dev.issuer()))
                .audience(DEFAULT_AUDIENCE)
                .allow_insecure_http(),
        )
        .build()
        .unwrap();
    let base = protected(verifier).await;
    let token = dev.sign(&dev.token().claim("iss", format!("{}/", dev.issuer())));
    let reply = get_with_token(&base, &token).await;
    assert_eq!(reply.status, 503, "{reply:?}");
    assert_eq!(dev.jwks_hits(), 0);
}

#[tokio::test]
async fn unfit_keys_in_the_key_set_are_ignored_and_fit_ones_used() {
    let dev = DevIssuer::start().await.unwrap();
    let secret = [9u8; 32];
    let oct = SigningKey::hmac("oct-1", &secret, "HS256");
    let enc = SigningKey::rsa("enc-1");
    let mut enc_jwk = enc.public_jwk();
    enc_jwk["use"] = json!("enc");
    let small = SigningKey::rsa_sized("small-1", aws_lc_rs::rsa::KeySize::Rsa2048);
    let mut small_jwk = small.public_jwk();
    // Truncate the modulus to 1024 bits.
    let n = base64_decode(small_jwk["n"].as_str().unwrap());
    small_jwk["n"] = json!(b64url(&n[..128]));
    dev.publish_extra_jwks(vec![oct.public_jwk(), enc_jwk, small_jwk]);
    let base = protected(
        JwtVerifier::builder()
            .issuer(issuer_for(&dev))
            .build()
            .unwrap(),
    )
    .await;
    assert_eq!(get_with_token(&base, &dev.mint()).await.status, 200);
    for (key, code) in [
        (&oct, "token.key_unknown"),
        (&enc, "token.key_unknown"),
        (&small, "token.key_unknown"),
    ] {
        get_with_token(&base, &dev.token().sign(key))
            .await
            .assert_invalid_token(code);
    }
}

#[tokio::test]
async fn several_issuers_are_chosen_by_iss() {
    let a = DevIssuer::start().await.unwrap();
    let b = DevIssuer::start_with(SigningKey::ed25519("b-1"))
        .await
        .unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&a))
        .issuer(issuer_for(&b))
        .build()
        .unwrap();
    let base = protected(verifier).await;
    assert_eq!(
        get_with_token(&base, &a.mint()).await.body["iss"],
        a.issuer()
    );
    assert_eq!(
        get_with_token(&base, &b.mint()).await.body["iss"],
        b.issuer()
    );
    // B's key with A's iss: A's keys do not have it.
    let cross = b.sign(&b.token().claim("iss", a.issuer()));
    get_with_token(&base, &cross)
        .await
        .assert_invalid_token("token.key_unknown");
}

#[tokio::test]
async fn cookie_token_source() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev))
        .build()
        .unwrap();
    let addr = serve(app(JwtVerifyLayer::new(verifier)
        .token_source(TokenSource::cookie("at"))
        .realm("api")))
    .await;
    let url = format!("http://{addr}/api/me");
    let reply = send(
        client()
            .get(&url)
            .header("cookie", format!("theme=dark; at={}", dev.mint())),
    )
    .await;
    assert_eq!(reply.status, 200, "{reply:?}");
    let reply = send(client().get(&url).bearer_auth(dev.mint())).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.code(), "token.missing");
}

#[tokio::test]
async fn plain_http_key_urls_are_refused_unless_allowed() {
    let err = JwtVerifier::builder()
        .issuer(Issuer::discover("http://127.0.0.1:1").audience("api"))
        .build()
        .err();
    assert!(err.is_some_and(|e| e.to_string().contains("plain http")));
    let err = JwtVerifier::builder()
        .issuer(Issuer::discover("https://idp.example"))
        .build()
        .err();
    assert!(err.is_some_and(|e| e.to_string().contains("no audience")));
}

#[tokio::test]
async fn revoked_token_is_401_even_from_the_verified_token_cache() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev))
        .cache_verified_tokens(1000)
        .build()
        .unwrap();
    let base = protected(verifier.clone()).await;
    let token = dev.mint();
    assert_eq!(get_with_token(&base, &token).await.status, 200);
    assert_eq!(get_with_token(&base, &token).await.status, 200);
    let identity = verifier.verify(&token).await.unwrap();
    verifier
        .revoke(
            identity.jti().unwrap(),
            SystemTime::now() + Duration::from_secs(300),
        )
        .await
        .unwrap();
    get_with_token(&base, &token)
        .await
        .assert_invalid_token("token.revoked");
    // Other tokens of the same subject are unaffected.
    assert_eq!(get_with_token(&base, &dev.mint()).await.status, 200);
}

struct BrokenStore;

impl RevocationStore for BrokenStore {
    fn is_revoked<'a>(&'a self, _jti: &'a str) -> StoreFuture<'a, bool> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }
    fn revoke<'a>(&'a self, _jti: &'a str, _until: SystemTime) -> StoreFuture<'a, ()> {
        Box::pin(async { Err(StoreError::Unavailable("connection refused".into())) })
    }
}

#[tokio::test]
async fn revocation_store_down_is_503_never_a_pass() {
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev))
        .revocation_store(Arc::new(BrokenStore))
        .build()
        .unwrap();
    let base = protected(verifier).await;
    let reply = get_with_token(&base, &dev.mint()).await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.code(), "store.unavailable");
    assert!(reply.retry_after.is_some());
}

#[tokio::test]
async fn custom_checks_and_required_claims_refuse_with_their_reason() {
    const TENANT: Reason = Reason::new("token.tenant", "The token is for another tenant.");
    let dev = DevIssuer::start().await.unwrap();
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev).require_claim("tenant").check(|id| {
            match id.claim("tenant").and_then(|t| t.as_str()) {
                Some("acme") => Ok(()),
                _ => Err(TENANT),
            }
        }))
        .build()
        .unwrap();
    let base = protected(verifier).await;
    get_with_token(&base, &dev.mint())
        .await
        .assert_invalid_token("token.claim_missing");
    get_with_token(&base, &dev.sign(&dev.token().claim("tenant", "globex")))
        .await
        .assert_invalid_token("token.tenant");
    let ok = get_with_token(&base, &dev.sign(&dev.token().claim("tenant", "acme"))).await;
    assert_eq!(ok.status, 200);
}

#[tokio::test]
async fn malformed_tokens_are_401_and_never_echoed() {
    let (dev, base) = setup().await;
    let good = dev.mint();
    let parts: Vec<&str> = good.split('.').collect();
    let jwe = "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d";
    for (token, code) in [
        ("abc", "token.malformed"),
        ("a.b", "token.malformed"),
        (jwe, "token.encrypted"),
        (&format!("{}.{}", parts[0], parts[1]), "token.malformed"),
        (
            &format!("{}..{}", parts[0], parts[2]),
            "token.claims_invalid",
        ),
        (&format!("{}={}", good, ""), "token.malformed"),
    ] {
        let reply = get_with_token(&base, token).await;
        reply.assert_invalid_token(code);
        let text = format!("{:?} {}", reply.challenge, reply.body);
        assert!(!text.contains(token), "the token must never be echoed");
    }
    // A payload that is not JSON at all.
    let key = dev.active_key();
    let token = TokenBuilder::new().header("typ", "at+jwt").sign(&key);
    let not_json = format!(
        "{}.{}.{}",
        token.split('.').next().unwrap(),
        b64url("not json"),
        b64url(
            key.sign(
                format!(
                    "{}.{}",
                    token.split('.').next().unwrap(),
                    b64url("not json")
                )
                .as_bytes()
            )
        )
    );
    get_with_token(&base, &not_json)
        .await
        .assert_invalid_token("token.claims_invalid");
}

#[tokio::test]
async fn refusals_carry_the_context_in_response_extensions_for_outer_layers() {
    use axum::body::Body;
    use tower::ServiceExt as _;
    use zerotrust_core::{Outcome, RiskSignal, ZeroTrust};

    let (dev, _) = setup().await;
    let verifier = JwtVerifier::builder()
        .issuer(issuer_for(&dev))
        .build()
        .unwrap();
    let app = app(JwtVerifyLayer::new(verifier));
    // An outer layer already recorded a signal: the refusal keeps it.
    let mut req = axum::http::Request::get("/api/me")
        .header("authorization", "Bearer a.b.c")
        .body(Body::empty())
        .unwrap();
    ZeroTrust::get_or_insert(req.extensions_mut()).add_signal(RiskSignal::new(
        "network.new",
        0.2,
        "first request",
    ));
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    let zt = resp
        .extensions()
        .get::<ZeroTrust>()
        .expect("context in the response");
    let decision = zt.decision().expect("decision recorded");
    assert_eq!(decision.outcome, Outcome::Deny);
    assert_eq!(decision.layer, "jwt");
    assert_eq!(decision.reason.code(), "token.malformed");
    assert_eq!(zt.signals().len(), 1);

    // Allowed: the identity is in the request context the handler saw.
    let req = axum::http::Request::get("/api/me")
        .header("authorization", format!("Bearer {}", dev.mint()))
        .body(Body::empty())
        .unwrap();
    let resp = app.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

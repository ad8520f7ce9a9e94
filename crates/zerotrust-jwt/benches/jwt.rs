//! Per-request cost of JwtVerifyLayer, beside the bare signature check and a peer crate.
//!
//! `cargo bench -p zerotrust-jwt --bench jwt`
//!
//! Everything runs in one process, in one run, so ratios compare like with like. Requests go
//! through a real axum `Router` (with and without the layer) by `oneshot`; the futures complete on
//! their first poll (keys already fetched, in-memory revocation store), so no runtime scheduling
//! is measured. Keys come from a development issuer over discovery, as in production.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // bench setup asserts by panicking

use std::hint::black_box;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use http::Request;
use jsonwebtoken::{DecodingKey, Validation};
use tower::ServiceExt as _;
use zerotrust_jwt::{CompactJws, Issuer, JwtVerifier, JwtVerifyLayer, KeyPolicy, VerifyingKey};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, SigningKey};

fn router() -> Router {
    Router::new().route("/api", get(|| async { "ok" }))
}

fn call(app: &Router, token: &str) -> u16 {
    let req = Request::get("/api")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    let resp = app
        .clone()
        .oneshot(req)
        .now_or_never()
        .expect("completes on first poll")
        .unwrap();
    resp.status().as_u16()
}

fn peer_key(key: &SigningKey) -> (DecodingKey, jsonwebtoken::Algorithm) {
    let jwk = key.public_jwk();
    let s = |k: &str| jwk[k].as_str().unwrap().to_owned();
    match key.alg() {
        "RS256" => (
            DecodingKey::from_rsa_components(&s("n"), &s("e")).unwrap(),
            jsonwebtoken::Algorithm::RS256,
        ),
        "ES256" => (
            DecodingKey::from_ec_components(&s("x"), &s("y")).unwrap(),
            jsonwebtoken::Algorithm::ES256,
        ),
        _ => (
            DecodingKey::from_ed_components(&s("x")).unwrap(),
            jsonwebtoken::Algorithm::EdDSA,
        ),
    }
}

fn bench_jwt(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();

    let bare = router();
    let mut group = c.benchmark_group("axum");
    group.bench_function("bare_router", |b| {
        b.iter(|| black_box(call(&bare, "a.b.c")))
    });
    group.finish();

    for key in [
        SigningKey::rsa("rsa-1"),
        SigningKey::es256("ec-1"),
        SigningKey::ed25519("ed-1"),
    ] {
        let alg = key.alg().to_owned();
        let jwk = key.public_jwk();
        let dev = rt.block_on(DevIssuer::start_with(key)).unwrap();
        let token = dev.mint();
        let issuer = Issuer::discover(dev.issuer())
            .audience(DEFAULT_AUDIENCE)
            .allow_insecure_http();
        let uncached = JwtVerifier::builder()
            .issuer(issuer.clone())
            .build()
            .unwrap();
        let cached = JwtVerifier::builder()
            .issuer(issuer)
            .cache_verified_tokens(10_000)
            .build()
            .unwrap();
        rt.block_on(uncached.prefetch()).unwrap();
        rt.block_on(cached.prefetch()).unwrap();
        let app_uncached = router().layer(JwtVerifyLayer::new(uncached));
        let app_cached = router().layer(JwtVerifyLayer::new(cached));
        assert_eq!(call(&app_uncached, &token), 200);
        assert_eq!(call(&app_cached, &token), 200);

        let keys = VerifyingKey::from_jwk(&jwk, &KeyPolicy::remote()).unwrap();
        let vk = &keys[0];
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig = {
            use base64::Engine as _;
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(sig)
                .unwrap()
        };
        assert!(vk.verify(input.as_bytes(), &sig));
        let (peer, peer_alg) = peer_key(dev.active_key().as_ref());
        let mut validation = Validation::new(peer_alg);
        validation.set_audience(&[DEFAULT_AUDIENCE]);
        validation.set_issuer(&[dev.issuer()]);
        jsonwebtoken::decode::<serde_json::Value>(&token, &peer, &validation).unwrap();

        let bare = router();
        let mut group = c.benchmark_group(format!("jwt/{alg}"));
        // The same request, token and all, through the same router without the layer.
        group.bench_function("bare_axum", |b| b.iter(|| black_box(call(&bare, &token))));
        group.bench_function("signature_only", |b| {
            b.iter(|| black_box(vk.verify(black_box(input.as_bytes()), black_box(&sig))))
        });
        group.bench_function("parse_and_signature", |b| {
            b.iter(|| {
                let jws = CompactJws::parse(black_box(&token)).unwrap();
                black_box(jws.verify(vk).is_ok())
            })
        });
        let verifier = JwtVerifier::builder()
            .issuer(
                Issuer::discover(dev.issuer())
                    .audience(DEFAULT_AUDIENCE)
                    .allow_insecure_http(),
            )
            .build()
            .unwrap();
        rt.block_on(verifier.prefetch()).unwrap();
        group.bench_function("verifier_only_uncached", |b| {
            b.iter(|| {
                black_box(
                    verifier
                        .verify(black_box(&token))
                        .now_or_never()
                        .expect("completes on first poll")
                        .is_ok(),
                )
            })
        });
        group.bench_function("layer_uncached", |b| {
            b.iter(|| black_box(call(&app_uncached, &token)))
        });
        group.bench_function("layer_cached", |b| {
            b.iter(|| black_box(call(&app_cached, &token)))
        });
        group.bench_function("peer_jsonwebtoken_decode", |b| {
            b.iter(|| {
                black_box(
                    jsonwebtoken::decode::<serde_json::Value>(
                        black_box(&token),
                        &peer,
                        &validation,
                    )
                    .is_ok(),
                )
            })
        });
        group.finish();
        drop(dev);
    }
}

criterion_group!(benches, bench_jwt);
criterion_main!(benches);

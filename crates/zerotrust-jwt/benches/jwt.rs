//! Per-request cost of JwtVerifyLayer, beside the bare signature check and a peer crate.
//!
//! `cargo bench -p zerotrust-jwt --bench jwt`
//!
//! Everything runs in one process, in one run, so ratios compare like with like. Requests go
//! through a real axum `Router` (with and without the layer) by `oneshot`; the futures complete on
//! their first poll (keys already fetched, in-memory revocation store), so no runtime scheduling
//! is measured. Keys come from a development issuer over discovery, as in production. For the
//! overhead ratio on a machine whose speed drifts, see the `jwt_overhead` bench.
#![allow(
    missing_docs,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)] // bench setup asserts by panicking

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use futures_util::FutureExt as _;
use jsonwebtoken::{DecodingKey, Validation};
use support::{Fixture, call};
use zerotrust_jwt::CompactJws;
use zerotrust_testkit::{DEFAULT_AUDIENCE, SigningKey};

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
    let rt = support::runtime();

    let bare = support::router();
    let mut group = c.benchmark_group("axum");
    group.bench_function("bare_router", |b| {
        b.iter(|| black_box(call(&bare, "a.b.c")))
    });
    group.finish();

    for key in support::keys() {
        let f = Fixture::new(&rt, key);
        let (peer, peer_alg) = peer_key(f.dev.active_key().as_ref());
        let mut validation = Validation::new(peer_alg);
        validation.set_audience(&[DEFAULT_AUDIENCE]);
        validation.set_issuer(&[f.dev.issuer()]);
        jsonwebtoken::decode::<serde_json::Value>(&f.token, &peer, &validation).unwrap();

        let token = f.token.as_str();
        let mut group = c.benchmark_group(format!("jwt/{}", f.alg));
        // The same request, token and all, through the same router without the layer.
        group.bench_function("bare_axum", |b| b.iter(|| black_box(call(&f.bare, token))));
        group.bench_function("signature_only", |b| {
            b.iter(|| black_box(f.verify_signature()))
        });
        group.bench_function("parse_and_signature", |b| {
            b.iter(|| {
                let jws = CompactJws::parse(black_box(token)).unwrap();
                black_box(jws.verify(&f.key).is_ok())
            })
        });
        group.bench_function("verifier_only_uncached", |b| {
            b.iter(|| {
                black_box(
                    f.verifier
                        .verify(black_box(token))
                        .now_or_never()
                        .expect("completes on first poll")
                        .is_ok(),
                )
            })
        });
        group.bench_function("layer_uncached", |b| {
            b.iter(|| black_box(call(&f.layer, token)))
        });
        group.bench_function("layer_cached", |b| {
            b.iter(|| black_box(call(&f.layer_cached, token)))
        });
        group.bench_function("peer_jsonwebtoken_decode", |b| {
            b.iter(|| {
                black_box(
                    jsonwebtoken::decode::<serde_json::Value>(black_box(token), &peer, &validation)
                        .is_ok(),
                )
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench_jwt);
criterion_main!(benches);

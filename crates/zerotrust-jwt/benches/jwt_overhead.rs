//! What JwtVerifyLayer adds beyond the signature check, measured so that a drifting clock
//! cannot fake it.
//!
//! `cargo bench -p zerotrust-jwt --bench jwt_overhead`
//!
//! Criterion measures one function after another; on a shared machine whose speed drifts by
//! tens of percent within a minute, the difference of two such medians is mostly drift. Here
//! the four variants run interleaved, in short blocks, round after round: the bare router, the
//! bare signature check, the layer without cache and with it. Each round gives one overhead
//! ratio, `(layer - bare router - signature) / signature`, from blocks measured milliseconds
//! apart; the figure reported is the median over all rounds.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::print_stdout,
    clippy::cast_precision_loss
)] // bench setup asserts by panicking and reports on stdout

use std::hint::black_box;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use futures_util::FutureExt as _;
use http::Request;
use tower::ServiceExt as _;
use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer, KeyPolicy, VerifyingKey};
use zerotrust_testkit::{DEFAULT_AUDIENCE, DevIssuer, SigningKey};

const ROUNDS: usize = 300;

fn router() -> Router {
    Router::new().route("/api", get(|| async { "ok" }))
}

fn call(app: &Router, token: &str) -> u16 {
    let req = Request::get("/api")
        .header("authorization", format!("Bearer {token}"))
        .body(Body::empty())
        .unwrap();
    app.clone()
        .oneshot(req)
        .now_or_never()
        .expect("completes on first poll")
        .unwrap()
        .status()
        .as_u16()
}

/// Mean nanoseconds per call of `f` over `iters` calls.
fn block(iters: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..iters {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(iters)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "alg", "bare µs", "sig µs", "layer µs", "cached µs", "overhead", "cached-bare"
    );
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
        let bare = router();
        let layer = router().layer(JwtVerifyLayer::new(uncached));
        let layer_cached = router().layer(JwtVerifyLayer::new(cached));
        assert_eq!(call(&layer, &token), 200);
        assert_eq!(call(&layer_cached, &token), 200);

        let vk = VerifyingKey::from_jwk(&jwk, &KeyPolicy::remote())
            .unwrap()
            .remove(0);
        let (input, sig) = token.rsplit_once('.').unwrap();
        let sig =
            base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, sig).unwrap();
        assert!(vk.verify(input.as_bytes(), &sig));

        // About a millisecond per block of signature checks.
        let warm = block(50, || {
            black_box(vk.verify(black_box(input.as_bytes()), black_box(&sig)));
        });
        let iters = ((1_000_000.0 / warm) as u32).clamp(10, 10_000);
        let (mut bares, mut sigs, mut layers, mut hits, mut ratios, mut hit_costs) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..ROUNDS {
            let b = block(iters, || {
                black_box(call(&bare, &token));
            });
            let s = block(iters, || {
                black_box(vk.verify(black_box(input.as_bytes()), black_box(&sig)));
            });
            let l = block(iters, || {
                black_box(call(&layer, &token));
            });
            let c = block(iters * 10, || {
                black_box(call(&layer_cached, &token));
            });
            ratios.push((l - b - s) / s);
            hit_costs.push(c - b);
            bares.push(b);
            sigs.push(s);
            layers.push(l);
            hits.push(c);
        }
        println!(
            "{:<6} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.1}% {:>10.2}",
            alg,
            median(bares) / 1000.0,
            median(sigs) / 1000.0,
            median(layers) / 1000.0,
            median(hits) / 1000.0,
            median(ratios) * 100.0,
            median(hit_costs) / 1000.0,
        );
    }
    println!(
        "overhead: median over {ROUNDS} rounds of (layer - bare - sig) / sig; \
         cached-bare: median µs the cache-hit path adds to the bare router"
    );
}

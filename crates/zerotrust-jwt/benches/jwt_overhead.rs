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
//!
//! Then, in rounds of their own so the figure above is measured as it always was, a reading aid:
//! the bare router and the bare signature check in one loop, request then signature. What that
//! takes beyond the two measured apart (`mixed`, µs) is no work of the layer at all: a signature
//! check runs slower when other code has had the caches in between, as it has inside the layer.
#![allow(
    missing_docs,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    unreachable_pub,
    dead_code, // the shared fixture has fields only the criterion bench reads
    clippy::print_stdout,
    clippy::cast_precision_loss
)] // bench setup asserts by panicking and reports on stdout

mod support;

use std::hint::black_box;
use std::time::Instant;

use support::{Fixture, call};

/// Rounds under `cargo bench`; `cargo test` (no `--bench` argument) runs a quick smoke test.
const ROUNDS: usize = 300;
const SMOKE_ROUNDS: usize = 2;

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
    let rounds = if std::env::args().any(|a| a == "--bench") {
        ROUNDS
    } else {
        SMOKE_ROUNDS
    };
    let rt = support::runtime();
    println!(
        "{:<6} {:>10} {:>10} {:>10} {:>10} {:>10} {:>11} {:>10}",
        "alg", "bare µs", "sig µs", "layer µs", "cached µs", "overhead", "cached-bare", "mixed µs"
    );
    for key in support::keys() {
        let f = Fixture::new(&rt, key);
        let token = f.token.as_str();
        // About a millisecond per block of signature checks.
        let warm = block(50, || {
            black_box(f.verify_signature());
        });
        let iters = ((1_000_000.0 / warm) as u32).clamp(10, 10_000);
        let (mut bares, mut sigs, mut layers, mut hits, mut ratios, mut hit_costs) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut mixed = vec![];
        for _ in 0..rounds {
            let b = block(iters, || {
                black_box(call(&f.bare, token));
            });
            let s = block(iters, || {
                black_box(f.verify_signature());
            });
            let l = block(iters, || {
                black_box(call(&f.layer, token));
            });
            let c = block(iters * 10, || {
                black_box(call(&f.layer_cached, token));
            });
            ratios.push((l - b - s) / s);
            hit_costs.push(c - b);
            bares.push(b);
            sigs.push(s);
            layers.push(l);
            hits.push(c);
        }
        // Separate rounds, so the figures above are measured exactly as before.
        for _ in 0..rounds {
            let b = block(iters, || {
                black_box(call(&f.bare, token));
            });
            let s = block(iters, || {
                black_box(f.verify_signature());
            });
            let m = block(iters, || {
                black_box(call(&f.bare, token));
                black_box(f.verify_signature());
            });
            mixed.push(m - b - s);
        }
        println!(
            "{:<6} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.1}% {:>11.2} {:>10.2}",
            f.alg,
            median(bares) / 1000.0,
            median(sigs) / 1000.0,
            median(layers) / 1000.0,
            median(hits) / 1000.0,
            median(ratios) * 100.0,
            median(hit_costs) / 1000.0,
            median(mixed) / 1000.0,
        );
    }
    println!(
        "overhead: median over {rounds} rounds of (layer - bare - sig) / sig; \
         cached-bare: median µs the cache-hit path adds to the bare router; \
         mixed: median µs bare router and signature in one loop take beyond the two apart"
    );
}

//! Redis goes away mid-run: checks fail closed (503 with `Retry-After`, `store.unavailable`), or
//! go on with `store.degraded` where the operator chose fail-open; nothing passes wrongly,
//! nothing hangs; when Redis is back the same apps serve again without a restart.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::RedisServer;
use common::app::{Replica, Reply, Stack, replica};
use zerotrust_core::{RevocationStore, StoreError};
use zerotrust_redis::RedisStores;
use zerotrust_testkit::DevIssuer;

const DE: &str = "193.99.144.80";

/// Every request must be answered within this, Redis or not (the store timeout is 50 ms).
const BOUND: Duration = Duration::from_secs(2);

/// Sends `n` requests, four at a time, each timed; answers the replies.
async fn burst(app: &Replica, token: &str, n: usize) -> Vec<Reply> {
    let mut replies = Vec::with_capacity(n);
    for _ in 0..n.div_ceil(4) {
        let round = (0..4).map(|_| async {
            let started = Instant::now();
            let reply = tokio::time::timeout(BOUND, app.get("/api/open", token, DE))
                .await
                .expect("a request hung past the bound");
            assert!(started.elapsed() < BOUND);
            reply
        });
        replies.extend(futures_util::future::join_all(round).await);
    }
    replies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_is_503_for_every_request_and_the_app_recovers_when_redis_returns() {
    let mut redis = RedisServer::start();
    let dev = DevIssuer::start().await.unwrap();
    let app = replica(&dev, &redis.url(), Stack::default()).await;
    let token = dev.mint();
    for reply in burst(&app, &token, 8).await {
        assert_eq!(reply.status, 200, "{reply:?}");
    }

    redis.kill();
    let replies = burst(&app, &token, 40).await;
    for reply in &replies {
        assert_eq!(
            reply.status, 503,
            "passed or refused wrongly during the outage: {reply:?}"
        );
        assert_eq!(reply.code(), "store.unavailable");
        assert_eq!(reply.retry_after.as_deref(), Some("1"));
    }
    // Each refusal is in the audit record as an error with its reason.
    let records = app.audit.take().await;
    let outage: Vec<_> = records.iter().filter(|r| r.0 == Some(503)).collect();
    assert_eq!(outage.len(), replies.len(), "{records:?}");
    for (_, outcome, reason, _) in outage {
        assert_eq!((*outcome, *reason), ("error", "store.unavailable"));
    }

    redis.restart();
    // The same app, not restarted: it serves again once its connection is back (bounded wait).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = app.get("/api/open", &token, DE).await;
    while last.status != 200 && Instant::now() < deadline {
        assert_eq!(last.status, 503, "{last:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = app.get("/api/open", &token, DE).await;
    }
    assert_eq!(
        last.status, 200,
        "not back 15 s after Redis returned: {last:?}"
    );
    for reply in burst(&app, &token, 8).await {
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    // And revocation works again through Redis.
    let jti = app
        .verifier
        .verify(&token)
        .await
        .unwrap()
        .jti()
        .unwrap()
        .to_owned();
    app.verifier
        .revoke(&jti, std::time::SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(
        app.get("/api/open", &token, DE).await.code(),
        "token.revoked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_fail_open_checks_an_outage_passes_with_store_degraded_and_never_silently() {
    let mut redis = RedisServer::start();
    let dev = DevIssuer::start().await.unwrap();
    let stack = Stack {
        redis_revocations: false,
        fail_open: true,
        ..Stack::default()
    };
    let app = replica(&dev, &redis.url(), stack).await;
    let token = dev.mint();
    let before = app.get("/api/open", &token, DE).await;
    assert_eq!(before.status, 200);
    assert!(!before.has_signal("store.degraded"), "{before:?}");

    redis.kill();
    let _ = app.audit.take().await;
    for reply in burst(&app, &token, 12).await {
        assert_eq!(reply.status, 200, "{reply:?}");
        assert!(
            reply.has_signal("store.degraded"),
            "passed without the signal: {reply:?}"
        );
    }
    // The audit records say so too: allowed, degraded.
    let records = app.audit.take().await;
    assert_eq!(records.len(), 12, "{records:?}");
    for (status, outcome, _, signals) in &records {
        assert_eq!((*status, *outcome), (Some(200), "allow"));
        assert!(signals.iter().any(|s| s == "store.degraded"), "{signals:?}");
    }
    redis.restart();
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = app.get("/api/open", &token, DE).await;
    while last.has_signal("store.degraded") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        last = app.get("/api/open", &token, DE).await;
    }
    assert_eq!(last.status, 200);
    assert!(!last.has_signal("store.degraded"), "{last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_answers_unavailable_within_the_timeout_and_recovers() {
    let redis = RedisServer::start();
    let stores = RedisStores::connect(redis.url()).await.unwrap();
    let revocations = stores.revocations();
    assert!(!revocations.is_revoked("before").await.unwrap());
    signal(&redis, "-STOP");
    let started = Instant::now();
    let answer = revocations.is_revoked("frozen").await;
    let took = started.elapsed();
    signal(&redis, "-CONT");
    assert!(
        matches!(answer, Err(StoreError::Unavailable(_))),
        "{answer:?}"
    );
    assert!(
        took < Duration::from_secs(1),
        "took {took:?} with a 50 ms timeout"
    );
    // Back without anything done to the stores.
    let deadline = Instant::now() + Duration::from_secs(10);
    while revocations.is_revoked("after").await.is_err() {
        assert!(Instant::now() < deadline, "never answered again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_events_feed_drops_no_cached_not_revoked_answer_is_used() {
    let mut redis = RedisServer::start();
    let stores = RedisStores::connect(redis.url()).await.unwrap();
    wait_until(|| stores.is_feed_connected()).await;
    let revocations = stores.revocations();
    assert!(!revocations.is_revoked("jti-1").await.unwrap());
    // Answered locally now, as the feed is connected.
    assert_eq!(
        revocations.is_revoked_now("jti-1").map(Result::ok),
        Some(Some(false))
    );
    assert!(stores.cache_stats().revocation_hits >= 1);
    redis.kill();
    wait_until(|| !stores.is_feed_connected()).await;
    // Nothing local any more: the check must ask Redis, which is down.
    assert!(revocations.is_revoked_now("jti-1").is_none());
    assert!(revocations.is_revoked("jti-1").await.is_err());
}

/// Polls `cond` every 10 ms for up to 5 s.
async fn wait_until(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not met within 5 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a signal to our own redis-server.
fn signal(redis: &RedisServer, sig: &str) {
    let status = Command::new("kill")
        .arg(sig)
        .arg(redis.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

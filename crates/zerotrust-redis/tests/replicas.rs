//! Two app instances (full axum stacks on 127.0.0.1) sharing one real `redis-server`: what one
//! learns, the other knows.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant, SystemTime};

use common::RedisServer;
use common::app::{Stack, replica};
use zerotrust_testkit::DevIssuer;

const DE: &str = "193.99.144.80";
const JP: &str = "202.12.27.33";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_one_replica_is_refused_on_the_other_within_a_second() {
    let redis = RedisServer::start();
    let dev = DevIssuer::start().await.unwrap();
    let a = replica(&dev, &redis.url(), Stack::default()).await;
    let b = replica(&dev, &redis.url(), Stack::default()).await;
    let token = dev.mint();
    // Both replicas accept the token, and B now holds "not revoked" in its local cache.
    for _ in 0..3 {
        assert_eq!(a.get("/api/open", &token, DE).await.status, 200);
        assert_eq!(b.get("/api/open", &token, DE).await.status, 200);
    }
    let jti = a
        .verifier
        .verify(&token)
        .await
        .unwrap()
        .jti()
        .unwrap()
        .to_owned();
    let revoked_at = Instant::now();
    a.verifier
        .revoke(&jti, SystemTime::now() + Duration::from_secs(300))
        .await
        .unwrap();
    let refused = a.get("/api/open", &token, DE).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.code(), "token.revoked");
    // B refuses it within a second (bounded poll; the push normally takes milliseconds).
    let mut last = b.get("/api/open", &token, DE).await;
    while last.status == 200 && revoked_at.elapsed() < Duration::from_secs(2) {
        tokio::time::sleep(Duration::from_millis(10)).await;
        last = b.get("/api/open", &token, DE).await;
    }
    let took = revoked_at.elapsed();
    assert_eq!(last.status, 401, "{last:?}");
    assert_eq!(last.code(), "token.revoked");
    assert!(
        took < Duration::from_secs(1),
        "refused on B only after {took:?}"
    );
    // Other tokens still pass on both.
    let other = dev.mint();
    assert_eq!(b.get("/api/open", &other, DE).await.status, 200);
    assert_eq!(a.get("/api/open", &other, DE).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_travel_is_detected_across_replicas() {
    let redis = RedisServer::start();
    let dev = DevIssuer::start().await.unwrap();
    let a = replica(&dev, &redis.url(), Stack::default()).await;
    let b = replica(&dev, &redis.url(), Stack::default()).await;
    let token = dev.mint();
    // Seen in Germany by A ...
    let first = a.get("/api/open", &token, DE).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(!first.has_signal("travel.impossible"), "{first:?}");
    // ... and a moment later in Japan by B, which never saw the German request itself.
    let second = b.get("/api/open", &token, JP).await;
    assert_eq!(second.status, 200, "{second:?}");
    assert!(second.has_signal("travel.impossible"), "{second:?}");
    // Another subject from Japan has no history on either replica.
    let bob = dev.sign(&dev.token().claim("sub", "bob"));
    assert!(
        !a.get("/api/open", &bob, JP)
            .await
            .has_signal("travel.impossible")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_counters_add_up_across_replicas_and_lock_out_on_both() {
    let redis = RedisServer::start();
    let dev = DevIssuer::start().await.unwrap();
    let stack = Stack {
        lockout_after: 4,
        ..Stack::default()
    };
    let a = replica(&dev, &redis.url(), stack).await;
    let b = replica(&dev, &redis.url(), stack).await;
    let mallory = dev.sign(&dev.token().claim("sub", "mallory"));
    // Four refusals, two on each replica: neither alone reached the limit.
    for replica in [&a, &b, &a, &b] {
        let reply = replica.get("/api/admin", &mallory, DE).await;
        assert_eq!(reply.status, 403, "{reply:?}");
    }
    for replica in [&a, &b] {
        let locked = replica.get("/api/open", &mallory, DE).await;
        assert_eq!(locked.status, 429, "{locked:?}");
        assert_eq!(locked.code(), "stepup.locked_out");
        assert!(locked.retry_after.is_some());
    }
    // Another subject is not affected.
    let alice = dev.mint();
    assert_eq!(b.get("/api/open", &alice, DE).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocations_are_pushed_to_other_replicas_through_a_cluster_too() {
    use zerotrust_core::RevocationStore;
    use zerotrust_redis::RedisStores;
    let redis = RedisServer::start_cluster();
    let connect = || async {
        RedisStores::cluster([redis.url()])
            .prefix("replicas:")
            .connect()
            .await
            .unwrap()
    };
    let (a, b) = (connect().await, connect().await);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !b.is_feed_connected() {
        assert!(Instant::now() < deadline, "events feed never connected");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (on_a, on_b) = (a.revocations(), b.revocations());
    assert!(!on_b.is_revoked("jti-c").await.unwrap());
    on_a.revoke("jti-c", SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    // B learns it from the push: answered locally, without asking Redis.
    let revoked_at = Instant::now();
    while on_b.is_revoked_now("jti-c").and_then(Result::ok) != Some(true) {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "not pushed to B within 1 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(on_b.is_revoked("jti-c").await.unwrap());
}

//! Configuration: strict refusals at build time, TLS, and connection failures that are errors,
//! never panics or hangs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::{Duration, Instant};

use common::RedisServer;
use zerotrust_redis::{RedisSetupError, RedisStores};

#[tokio::test]
async fn a_prefix_with_hash_tag_braces_is_refused() {
    let err = RedisStores::builder("redis://127.0.0.1:1")
        .prefix("a{b}:")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RedisSetupError::Config(_)), "{err}");
}

#[tokio::test]
async fn tls_without_certificate_checks_is_refused_unless_asked_for() {
    let err = RedisStores::builder("rediss://127.0.0.1:1/#insecure")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RedisSetupError::Config(_)), "{err}");
}

#[tokio::test]
async fn an_unreachable_server_at_start_is_an_error_within_the_connect_timeout() {
    let redis = RedisServer::start();
    let url = redis.url();
    drop(redis);
    let started = Instant::now();
    let err = RedisStores::builder(url)
        .connection(Duration::from_millis(300), Duration::from_millis(100))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RedisSetupError::Unreachable(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_rediss_url_speaks_tls_and_a_plain_server_is_an_error_not_a_panic() {
    let redis = RedisServer::start();
    let url = redis.url().replacen("redis://", "rediss://", 1);
    let err = RedisStores::builder(url)
        .connection(Duration::from_millis(500), Duration::from_millis(100))
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, RedisSetupError::Unreachable(_)), "{err}");
    // The error names no URL (it may carry a password).
    assert!(!err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn keys_carry_the_prefix_and_a_time_to_live() {
    use zerotrust_core::{BehaviorStore, BehaviorWindows, RevocationStore};
    let redis = RedisServer::start();
    let stores = RedisStores::builder(redis.url())
        .prefix("tenant-a:")
        .connect()
        .await
        .unwrap();
    let until = std::time::SystemTime::now() + Duration::from_secs(60);
    stores.revocations().revoke("j", until).await.unwrap();
    stores
        .behavior()
        .observe(
            "alice",
            1_900_000_200,
            Some("/a"),
            &BehaviorWindows::default(),
        )
        .await
        .unwrap();
    stores
        .behavior()
        .lock_out("alice", 1_900_000_900)
        .await
        .unwrap();
    let raw = redis::Client::open(redis.url()).unwrap();
    let mut conn = raw.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(keys.len() >= 3, "{keys:?}");
    for key in keys {
        assert!(key.starts_with("tenant-a:"), "{key}");
        let ttl: i64 = redis::cmd("TTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0, "{key} has no time to live");
    }
}

//! The replicas_redis example, started as its `main` starts it: two replicas on one real
//! `redis-server` (started and killed by the example's own helper); a token revoked on A is
//! refused on B within a second.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../examples/replicas_redis.rs"]
#[allow(dead_code, unreachable_pub)]
mod replicas;

use std::time::Duration;

use zerotrust_testkit::DevIssuer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_revoked_on_replica_a_is_refused_on_replica_b_within_a_second() {
    let redis = replicas::RedisServer::start().unwrap();
    let issuer = DevIssuer::start().await.unwrap();
    let a = replicas::replica("A", &issuer, &redis.url).await.unwrap();
    let b = replicas::replica("B", &issuer, &redis.url).await.unwrap();
    let outcome = replicas::walkthrough(&issuer, &a, &b).await.unwrap();
    let seen: Vec<(&str, u16, &str)> = outcome
        .steps
        .iter()
        .map(|s| (s.replica, s.status, s.code.as_str()))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("A", 200, "-"),
            ("B", 200, "-"),
            ("A", 401, "token.revoked"),
            ("B", 401, "token.revoked"),
        ]
    );
    assert!(
        outcome.refused_on_b_after < Duration::from_secs(1),
        "{:?}",
        outcome.refused_on_b_after
    );
}

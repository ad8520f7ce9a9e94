//! The connection (one server through the connection manager, or a cluster), the per-operation
//! timeout, and the mapping of Redis errors to [`StoreError`].

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind, Pipeline, RedisError, RedisFuture, RedisResult, Value};
use zerotrust_core::StoreError;

/// A connection to one server (reconnecting by itself) or to a cluster (following its topology).
/// Cheap to clone: clones share the connection.
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// Runs one operation with a fresh handle on the connection, giving up after `timeout`.
///
/// Giving up drops the operation's future; the connection stays usable (a late reply is
/// discarded), and the connection manager reconnects in the background after an I/O error.
pub(crate) async fn run<T, F, Fut>(
    conn: &Conn,
    timeout: Duration,
    op: &'static str,
    f: F,
) -> Result<T, StoreError>
where
    F: FnOnce(Conn) -> Fut,
    Fut: Future<Output = RedisResult<T>>,
{
    let outcome = tokio::time::timeout(timeout, f(conn.clone())).await;
    let error = match outcome {
        Ok(Ok(value)) => return Ok(value),
        Ok(Err(e)) => map_error(op, &e),
        Err(_) => StoreError::Unavailable(format!("redis {op}: no answer within {timeout:?}")),
    };
    metrics::counter!("zerotrust_redis_errors_total", "op" => op).increment(1);
    tracing::debug!(target: "zerotrust::redis", op, error = %error, "redis operation failed");
    Err(error)
}

/// Unreadable replies are protocol errors; everything else (I/O, refused, server errors such as
/// `LOADING`, `CLUSTERDOWN`, `OOM`) means the store cannot answer now.
fn map_error(op: &'static str, e: &RedisError) -> StoreError {
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            StoreError::Protocol(format!("redis {op}: {}", e.kind_str()))
        }
        _ => StoreError::Unavailable(format!("redis {op}: {}", e.kind_str())),
    }
}

/// A short, credential-free description of an error kind.
trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for RedisError {
    fn kind_str(&self) -> String {
        // The error's own text may carry a server's message, never the URL or a password.
        let text = self.to_string();
        text.chars().take(200).collect()
    }
}

/// A reply that is not what a script returns.
pub(crate) fn protocol(op: &'static str, what: &str) -> StoreError {
    StoreError::Protocol(format!("redis {op}: {what}"))
}

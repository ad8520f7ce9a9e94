//! A real `redis-server` per test, on 127.0.0.1 and a free port, killed on drop; and stores that
//! keep their server alive for the store suites.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    unreachable_pub
)]

pub mod app;

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use zerotrust_core::{
    Behavior, BehaviorStore, BehaviorWindows, Compliance, DeviceRecord, DeviceRegistry,
    LocationHistory, Posture, Registration, RevocationStore, Sighting, StoreError, StoreFuture,
};
use zerotrust_redis::RedisStores;

/// One `redis-server` process, killed (and waited for) on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    cluster: bool,
}

impl RedisServer {
    /// Starts a server on a free loopback port (another one if a concurrent test took it first).
    /// Fails (never skips) without `redis-server`.
    pub fn start() -> Self {
        Self::start_as(false)
    }

    /// Starts a one-node Redis Cluster (cluster mode, every slot on this node), so the cluster
    /// client, hash tags and scripts run as they would on a real cluster.
    pub fn start_cluster() -> Self {
        let server = Self::start_as(true);
        let port = server.port;
        assert_eq!(
            command(port, "CLUSTER ADDSLOTSRANGE 0 16383\r\n"),
            "+OK\r\n"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !command(port, "CLUSTER INFO\r\n").contains("cluster_state:ok") {
            assert!(Instant::now() < deadline, "cluster not ok after 10 s");
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    fn start_as(cluster: bool) -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::start_on(free_port(), cluster) {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    fn start_on(port: u16, cluster: bool) -> Option<Self> {
        let dir = std::env::temp_dir().join(format!(
            "zerotrust-redis-{}-{port}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
            cluster,
        };
        server.spawn().then_some(server)
    }

    /// Starts the process and waits until it answers; `false` if it exited (port taken).
    fn spawn(&mut self) -> bool {
        let mut cmd = Command::new("redis-server");
        if self.cluster {
            cmd.args(["--cluster-enabled", "yes"])
                .arg("--cluster-config-file")
                .arg(self.dir.join("nodes.conf"));
        }
        let child = cmd
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--protected-mode", "yes"])
            .arg("--dir")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}); install it (Debian: apt-get install -y \
                     redis-server) or run scripts/test.sh, which does"
                )
            });
        self.child = Some(child);
        self.wait_ready()
    }

    /// Waits (bounded, 10 s) until the server answers PING; `false` if it exited meanwhile.
    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            if ping(self.port) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} not ready after 10 s", self.port);
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("server not running")
    }

    /// Kills the server (SIGKILL) and waits for it: an outage.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing was saved).
    pub fn restart(&mut self) {
        self.kill();
        // The port was just freed by our own process; binding it again may take a moment.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpListener::bind((Ipv4Addr::LOCALHOST, self.port)).is_err() {
            assert!(Instant::now() < deadline, "port {} stays busy", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            self.spawn(),
            "redis-server did not start again on port {}",
            self.port
        );
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.local_addr().unwrap().port()
}

/// A raw RESP PING, so readiness does not depend on the code under test.
fn ping(port: u16) -> bool {
    command(port, "PING\r\n") == "+PONG\r\n"
}

/// Sends one inline command and answers what one read brings back ("" on any failure).
fn command(port: u16, line: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(
        &(Ipv4Addr::LOCALHOST, port).into(),
        Duration::from_millis(200),
    ) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
    if s.write_all(line.as_bytes()).is_err() {
        return String::new();
    }
    let mut buf = [0u8; 4096];
    match s.read(&mut buf) {
        Ok(n) => String::from_utf8_lossy(buf.get(..n).unwrap_or_default()).into_owned(),
        Err(_) => String::new(),
    }
}

/// Stores with the server they talk to: the suites get a fresh server per case, and the server
/// goes with the store.
pub struct Served<S> {
    pub store: S,
    pub stores: RedisStores,
    _server: RedisServer,
}

/// Starts a server and connects the stores to it.
pub async fn served() -> (RedisStores, RedisServer) {
    let server = RedisServer::start();
    let stores = RedisStores::builder(server.url())
        .prefix("suite:")
        .operation_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    (stores, server)
}

/// A store made by `pick` from fresh stores on a fresh one-node cluster.
pub async fn served_cluster_store<S>(pick: impl FnOnce(&RedisStores) -> S) -> Served<S> {
    let server = RedisServer::start_cluster();
    let stores = RedisStores::cluster([server.url()])
        .prefix("suite:")
        .operation_timeout(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    Served {
        store: pick(&stores),
        stores,
        _server: server,
    }
}

/// A store made by `pick` from fresh stores on a fresh server.
pub async fn served_store<S>(pick: impl FnOnce(&RedisStores) -> S) -> Served<S> {
    let (stores, server) = served().await;
    Served {
        store: pick(&stores),
        stores,
        _server: server,
    }
}

impl<S: RevocationStore> RevocationStore for Served<S> {
    fn is_revoked<'a>(&'a self, jti: &'a str) -> StoreFuture<'a, bool> {
        self.store.is_revoked(jti)
    }
    fn is_revoked_now(&self, jti: &str) -> Option<Result<bool, StoreError>> {
        self.store.is_revoked_now(jti)
    }
    fn revoke<'a>(&'a self, jti: &'a str, until: SystemTime) -> StoreFuture<'a, ()> {
        self.store.revoke(jti, until)
    }
}

impl<S: DeviceRegistry> DeviceRegistry for Served<S> {
    fn get<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<std::sync::Arc<DeviceRecord>>> {
        self.store.get(id)
    }
    fn register(&self, record: DeviceRecord) -> StoreFuture<'_, Registration> {
        self.store.register(record)
    }
    fn update_posture<'a>(
        &'a self,
        id: &'a str,
        posture: Posture,
        compliance: Compliance,
    ) -> StoreFuture<'a, bool> {
        self.store.update_posture(id, posture, compliance)
    }
    fn bind_owner<'a>(&'a self, id: &'a str, subject: &'a str) -> StoreFuture<'a, bool> {
        self.store.bind_owner(id, subject)
    }
    fn touch<'a>(&'a self, id: &'a str, at: i64) -> StoreFuture<'a, bool> {
        self.store.touch(id, at)
    }
    fn remove<'a>(&'a self, id: &'a str) -> StoreFuture<'a, bool> {
        self.store.remove(id)
    }
}

impl<S: LocationHistory> LocationHistory for Served<S> {
    fn last<'a>(&'a self, subject: &'a str) -> StoreFuture<'a, Option<Sighting>> {
        self.store.last(subject)
    }
    fn swap<'a>(
        &'a self,
        subject: &'a str,
        sighting: Sighting,
    ) -> StoreFuture<'a, Option<Sighting>> {
        self.store.swap(subject, sighting)
    }
}

impl<S: BehaviorStore> BehaviorStore for Served<S> {
    fn observe<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        route: Option<&'a str>,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, Behavior> {
        self.store.observe(subject, now, route, windows)
    }
    fn record_failure<'a>(
        &'a self,
        subject: &'a str,
        now: i64,
        windows: &'a BehaviorWindows,
    ) -> StoreFuture<'a, u32> {
        self.store.record_failure(subject, now, windows)
    }
    fn lock_out<'a>(&'a self, subject: &'a str, until: i64) -> StoreFuture<'a, ()> {
        self.store.lock_out(subject, until)
    }
}

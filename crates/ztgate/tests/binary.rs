//! `ztgate --config FILE` as an operator runs it: serves, reloads on SIGHUP, drains and exits 0
//! on SIGTERM.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use http::StatusCode;

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_reloads_on_sighup_and_exits_cleanly_on_sigterm() {
    let dev = zerotrust_testkit::DevIssuer::start().await.unwrap();
    let a = upstream("a").await;
    let b = upstream("b").await;
    let dir = temp_dir("binary-run");
    let route = |up: &str| {
        format!(
            "[[route]]\nprefix = \"/api\"\nupstream = \"{up}\"\n[route.policy]\nscopes = [\"reports:read\"]\n"
        )
    };
    let path = dir.join("ztgate.toml");
    std::fs::write(&path, base_config(&dev, &dir) + &route(&a.url())).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ztgate"))
        .arg("--config")
        .arg(&path)
        .env("RUST_LOG", "ztgate=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let addr: SocketAddr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("ztgate did not report its address");
        if let Some(rest) = line.split("addr=").nth(1) {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    let c = client();
    let url = format!("http://{addr}/api/who");
    let token = dev.mint();
    let first = get(&c, &url, Some(&token), &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json()["upstream"], "a");

    std::fs::write(&path, base_config(&dev, &dir) + &route(&b.url())).unwrap();
    signal(pid, "HUP");
    let mut switched = false;
    for _ in 0..100 {
        if get(&c, &url, Some(&token), &[]).await.json()["upstream"] == "b" {
            switched = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(switched, "SIGHUP did not reload the routes");

    signal(pid, "TERM");
    let mut exited = None;
    for _ in 0..300 {
        if let Some(status) = child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exited else {
        let _ = child.kill();
        panic!("ztgate did not exit within 30 s of SIGTERM");
    };
    assert!(status.success(), "{status}");
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    assert!(audit.lines().count() >= 2, "{audit}");
}

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

use std::process::Command;
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
    let config = |up: &Upstream| base_config(&dev, &dir) + &route("/api", &up.url(), "");
    let path = write_config(&dir, &config(&a));
    let mut ztgate = spawn_ztgate(&path, |_| {});
    let pid = ztgate.child.id();
    let c = client();
    let url = format!("http://{}/api/who", ztgate.addr);
    let token = dev.mint();
    let first = get(&c, &url, Some(&token), &[]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.json()["upstream"], "a");

    write_config(&dir, &config(&b));
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
        if let Some(status) = ztgate.child.try_wait().unwrap() {
            exited = Some(status);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let Some(status) = exited else {
        // Dropping `ztgate` kills it.
        panic!("ztgate did not exit within 30 s of SIGTERM");
    };
    assert!(status.success(), "{status}");
    let audit = audit_log(&dir);
    assert!(audit.lines().count() >= 2, "{audit}");
}

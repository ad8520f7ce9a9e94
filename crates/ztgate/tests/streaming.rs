//! Bodies stream through the gateway both ways: 64 MiB arrive intact, and the first bytes arrive
//! before the last are produced (nothing is buffered whole).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use aws_lc_rs::digest;
use axum::body::Body;
use common::*;
use futures_util::StreamExt as _;
use http::StatusCode;
use http_body_util::BodyExt as _;

const ROUTE: &str = r#"
[[route]]
prefix = "/api"
upstream = "{upstream}"
[route.policy]
scopes = ["reports:read"]
"#;

/// 64 MiB in 64 KiB chunks.
const CHUNKS: u64 = 1024;

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_upload_streams_to_the_upstream_intact() {
    let env = env("upload", ROUTE).await;
    let c = client();
    let stream = futures_util::stream::iter((0..CHUNKS).map(|i| Ok::<_, std::io::Error>(chunk(i))));
    let req = http::Request::post(format!("{}/api/upload", env.base()))
        .header("authorization", format!("Bearer {}", env.dev.mint()))
        .body(Body::from_stream(stream))
        .unwrap();
    let a = send(&c, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let got = a.json();
    assert_eq!(got["len"], CHUNKS * CHUNK as u64);
    assert_eq!(got["sha256"], expected_sha256(CHUNKS));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_download_streams_to_the_client_intact() {
    let env = env("download", ROUTE).await;
    let c = client();
    let req = http::Request::get(format!("{}/api/download/{CHUNKS}", env.base()))
        .header("authorization", format!("Bearer {}", env.dev.mint()))
        .body(Body::empty())
        .unwrap();
    let (len, sha) = tokio::time::timeout(WAIT, async {
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let mut body = resp.into_body();
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                len += data.len() as u64;
                ctx.update(&data);
            }
        }
        (len, hex(ctx.finish().as_ref()))
    })
    .await
    .unwrap();
    assert_eq!(len, CHUNKS * CHUNK as u64);
    assert_eq!(sha, expected_sha256(CHUNKS));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_first_response_bytes_arrive_before_the_upstream_finishes() {
    let env = env("trickle", ROUTE).await;
    let c = client();
    let req = http::Request::get(format!("{}/api/trickle", env.base()))
        .header("authorization", format!("Bearer {}", env.dev.mint()))
        .body(Body::empty())
        .unwrap();
    let resp = tokio::time::timeout(WAIT, c.request(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body();
    // The upstream holds back the second chunk until released: the first must already be here.
    let mut got = 0usize;
    while got < CHUNK {
        let frame = tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("the first chunk was held back by the gateway")
            .unwrap()
            .unwrap();
        got += frame.into_data().map_or(0, |d| d.len());
    }
    env.up.state.release.notify_one();
    while let Some(frame) = tokio::time::timeout(WAIT, body.frame()).await.unwrap() {
        got += frame.unwrap().into_data().map_or(0, |d| d.len());
    }
    assert_eq!(got, 2 * CHUNK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_upstream_reads_the_first_request_bytes_before_the_client_sends_the_rest() {
    let env = env("first-chunk", ROUTE).await;
    let c = client();
    let state = env.up.state.clone();
    // The body sends one chunk, then waits until the upstream has seen it.
    let waiter = state.clone();
    let stream = futures_util::stream::once(async { Ok::<_, std::io::Error>(chunk(0)) }).chain(
        futures_util::stream::once(async move {
            tokio::time::timeout(WAIT, waiter.started.notified())
                .await
                .expect("the gateway held the first chunk back");
            Ok(chunk(1))
        }),
    );
    let req = http::Request::post(format!("{}/api/first-chunk", env.base()))
        .header("authorization", format!("Bearer {}", env.dev.mint()))
        .body(Body::from_stream(stream))
        .unwrap();
    let a = send(&c, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["len"], 2 * CHUNK);
}

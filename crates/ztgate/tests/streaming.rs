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
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

/// 64 MiB in 64 KiB chunks.
const CHUNKS: u64 = 1024;

/// GET `/api/trickle` (one chunk, then the rest once the upstream is released): the body, after
/// a 200 status.
async fn trickle_body(env: &Env, c: &HttpClient) -> Incoming {
    let req = env
        .request_with_token(Method::GET, "/api/trickle")
        .body(Body::empty())
        .unwrap();
    let resp = send_for_head(c, req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.into_body()
}

/// POST `body` with a token to `/api/upload`, where the upstream answers its length and SHA-256.
fn upload(env: &Env, body: Body) -> http::Request<Body> {
    env.request_with_token(Method::POST, "/api/upload")
        .body(body)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_upload_streams_to_the_upstream_intact() {
    let env = env("upload", API_ROUTE).await;
    let c = client();
    let stream = futures_util::stream::iter((0..CHUNKS).map(|i| Ok::<_, std::io::Error>(chunk(i))));
    let req = upload(&env, Body::from_stream(stream));
    let a = send(&c, req).await;
    assert_eq!(a.status, StatusCode::OK);
    let got = a.json();
    assert_eq!(got["len"], CHUNKS * CHUNK as u64);
    assert_eq!(got["sha256"], expected_sha256(CHUNKS));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_64_mib_download_streams_to_the_client_intact() {
    let env = env("download", API_ROUTE).await;
    let c = client();
    let req = env
        .request_with_token(Method::GET, &format!("/api/download/{CHUNKS}"))
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
    let env = env("trickle", API_ROUTE).await;
    let c = client();
    let mut body = trickle_body(&env, &c).await;
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
    let env = env("first-chunk", API_ROUTE).await;
    let c = client();
    // The body sends one chunk, then waits until the upstream has seen it.
    let upstream = env.up.state.clone();
    let body = two_chunks(async move {
        tokio::time::timeout(WAIT, upstream.started.notified())
            .await
            .expect("the gateway held the first chunk back");
    });
    let req = env
        .request_with_token(Method::POST, "/api/first-chunk")
        .body(body)
        .unwrap();
    let a = send(&c, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["len"], 2 * CHUNK);
}

/// The idle timeout of both bodies, short for the tests.
fn stall_config() -> String {
    format!("[upstream]\nbody_idle_timeout_ms = 300\n{API_ROUTE}")
}

async fn body_timeouts_counted(env: &Env, c: &HttpClient) -> bool {
    let m = get(c, &env.url("/metrics"), None, &[]).await;
    String::from_utf8_lossy(&m.body).lines().any(|l| {
        l.starts_with("ztgate_upstream_errors_total")
            && l.contains("kind=\"body_timeout\"")
            && l.contains("route=\"/api\"")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_stalls_mid_body_gets_the_response_aborted_after_the_idle_timeout() {
    let env = env("stall-response", &stall_config()).await;
    let c = client();
    let mut body = trickle_body(&env, &c).await;
    // The first chunk arrives; then the upstream stalls (never released) and the gateway aborts.
    let mut got = 0usize;
    let started = std::time::Instant::now();
    let ended_with_error = loop {
        match tokio::time::timeout(WAIT, body.frame())
            .await
            .expect("the stalled response was not aborted")
        {
            Some(Ok(frame)) => got += frame.into_data().map_or(0, |d| d.len()),
            Some(Err(_)) => break true,
            None => break false,
        }
    };
    assert!(ended_with_error, "the response ended as if complete");
    assert_eq!(got, CHUNK);
    assert!(started.elapsed() < WAIT);
    assert!(body_timeouts_counted(&env, &c).await);
    env.up.state.release.notify_one();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_stalls_mid_upload_gets_a_408_problem_and_the_upload_is_cut_off() {
    let env = env("stall-request", &stall_config()).await;
    let c = client();
    // One chunk, then nothing for longer than the test may run.
    let body = two_chunks(tokio::time::sleep(WAIT));
    let req = upload(&env, body);
    let resp = tokio::time::timeout(WAIT, c.request(req))
        .await
        .expect("the stalled upload was not cut off")
        .unwrap();
    assert_eq!(resp.status(), StatusCode::REQUEST_TIMEOUT);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let problem: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(problem["code"], "request.body_timeout");
    assert!(body_timeouts_counted(&env, &c).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_but_steady_body_is_not_cut_off() {
    let env = env("steady", &stall_config()).await;
    let c = client();
    // Each chunk within the idle timeout; the whole body takes longer than it.
    let stream = futures_util::stream::iter(0..6u64).then(|i| async move {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        Ok::<_, std::io::Error>(chunk(i))
    });
    let req = upload(&env, Body::from_stream(stream));
    let a = send(&c, req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.json()["sha256"], expected_sha256(6));
}

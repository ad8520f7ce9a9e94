//! The idle (stall) timeout of a streamed body.
//!
//! [`IdleTimeout`] wraps a body in either direction (the request's, read from the client and
//! written to the upstream; the response's, read from the upstream and written to the client).
//! The clock runs only while the side reading it waits for the next frame: a body whose sender
//! delivers nothing for the timeout ends with [`BodyIdleTimeout`], the stream is aborted (the
//! client sees its connection closed before the end of the response; the upstream sees the
//! request body cut off) and `ztgate_upstream_errors_total{route, kind="body_timeout"}` counts
//! it. A slow reader on the other side (backpressure) does not run the clock.

use std::future::Future as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

/// The error a stalled body ends with.
#[derive(Debug, thiserror::Error)]
#[error("no {direction} body bytes for {timeout:?}")]
pub(crate) struct BodyIdleTimeout {
    direction: &'static str,
    timeout: Duration,
}

/// Which way a body flows, for the log.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Direction {
    /// Client → upstream.
    Request,
    /// Upstream → client.
    Response,
}

impl Direction {
    fn as_str(self) -> &'static str {
        match self {
            Direction::Request => "request",
            Direction::Response => "response",
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pin_project_lite::pin_project! {
    /// A body that ends with [`BodyIdleTimeout`] when its sender stalls.
    pub(crate) struct IdleTimeout<B> {
        #[pin]
        inner: B,
        timeout: Duration,
        // Armed lazily at the first wait, so a body that never waits costs no timer.
        sleep: Option<Pin<Box<Sleep>>>,
        waiting: bool,
        done: bool,
        route: Arc<str>,
        direction: Direction,
    }
}

impl<B> IdleTimeout<B> {
    /// Wraps `inner`; `route` labels the metric.
    pub(crate) fn new(inner: B, timeout: Duration, route: Arc<str>, direction: Direction) -> Self {
        Self {
            inner,
            timeout,
            sleep: None,
            waiting: false,
            done: false,
            route,
            direction,
        }
    }
}

impl<B> Body for IdleTimeout<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                *this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(Into::into)))
            }
            Poll::Pending => {
                let deadline = Instant::now() + *this.timeout;
                let sleep = match this.sleep {
                    Some(sleep) => {
                        if !*this.waiting {
                            sleep.as_mut().reset(deadline);
                        }
                        sleep
                    }
                    None => this
                        .sleep
                        .insert(Box::pin(tokio::time::sleep_until(deadline))),
                };
                *this.waiting = true;
                ready!(sleep.as_mut().poll(cx));
                *this.done = true;
                metrics::counter!(
                    "ztgate_upstream_errors_total",
                    "route" => this.route.to_string(),
                    "kind" => "body_timeout"
                )
                .increment(1);
                tracing::warn!(
                    target: "ztgate",
                    route = %this.route,
                    direction = this.direction.as_str(),
                    "body stalled: stream aborted"
                );
                Poll::Ready(Some(Err(Box::new(BodyIdleTimeout {
                    direction: this.direction.as_str(),
                    timeout: *this.timeout,
                }))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `error` (or one of its sources) is a [`BodyIdleTimeout`].
pub(crate) fn is_idle_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    // Bounded: error chains are short; stop after a generous depth anyway.
    for _ in 0..16 {
        match current {
            Some(e) if e.is::<BodyIdleTimeout>() => return true,
            Some(e) => current = e.source(),
            None => return false,
        }
    }
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    /// Yields its frames, then stays pending forever.
    struct ThenStall(Vec<Bytes>);

    impl Body for ThenStall {
        type Data = Bytes;
        type Error = std::io::Error;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
            match self.0.pop() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Poll::Pending,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_ends_with_the_idle_timeout_error() {
        let body = IdleTimeout::new(
            ThenStall(vec![Bytes::from_static(b"first")]),
            Duration::from_millis(500),
            Arc::from("/t"),
            Direction::Response,
        );
        let mut body = std::pin::pin!(body);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap(), "first");
        let started = Instant::now();
        let error = body.frame().await.unwrap().unwrap_err();
        assert!(is_idle_timeout(error.as_ref()));
        assert_eq!(started.elapsed(), Duration::from_millis(500));
        assert!(body.frame().await.is_none());
        assert!(body.is_end_stream());
    }
}

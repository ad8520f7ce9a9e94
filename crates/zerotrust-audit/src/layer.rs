//! `AuditLogLayer`: the outermost layer, one record per request.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::{Instant, SystemTime};

use axum::extract::MatchedPath;
use axum_core::body::Body;
use axum_core::response::IntoResponse;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::sync::mpsc::OwnedPermit;
use tower_layer::Layer;
use tower_service::Service;
use zerotrust_core::tap::AuditTap;
use zerotrust_core::{PeerAddr, Reason, Rejection, RejectionKind, ZeroTrust};

use crate::event::{EventKind, Interruption, RequestEvent, layer_times};
use crate::request_id::{RequestId, X_REQUEST_ID, take_or_make};
use crate::writer::{Msg, Overflow, Reserve};
use crate::{Audit, AuditEvent};

/// The reason of the 503 answered when a record cannot be queued (the pipeline is stopped, or
/// the queue stayed full for the whole `max_wait`).
pub const AUDIT_UNAVAILABLE: Reason = Reason::new(
    "audit.unavailable",
    "The request cannot be recorded right now; try again shortly.",
);

/// Records every request that passes through it, allowed or refused, as one [`AuditEvent`].
///
/// Put it outermost, so it sees refusals of every zerotrust layer (their responses carry the
/// request's [`ZeroTrust`] context) and, through an [`AuditTap`] in the request extensions, the
/// context of requests those layers let through. It also:
/// - takes the request id from a sane `x-request-id` (else makes one, and sets it on the request
///   for the service) and returns it on the response;
/// - reserves room for the record *before* the request goes inward, so under backpressure a
///   request waits (and after `max_wait`, is refused with 503 `audit.unavailable`) instead of
///   running unrecorded;
/// - records requests that end without a response (client gone, handler panic) as `cancelled`.
///
/// ```
/// use axum::{Router, routing::get};
/// use zerotrust_audit::{Audit, AuditLogLayer, TracingSink};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let audit = Audit::builder().sink(TracingSink).start()?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(AuditLogLayer::new(audit.clone()));
/// # let _ = app;
/// audit.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct AuditLogLayer {
    audit: Audit,
}

impl AuditLogLayer {
    /// A layer recording into `audit`.
    pub fn new(audit: Audit) -> Self {
        Self { audit }
    }
}

impl<S> Layer<S> for AuditLogLayer {
    type Service = AuditLog<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditLog {
            inner,
            audit: self.audit.clone(),
        }
    }
}

/// The service built by [`AuditLogLayer`].
#[derive(Debug, Clone)]
pub struct AuditLog<S> {
    inner: S,
    audit: Audit,
}

/// What the layer keeps about a request until its response.
struct Record {
    permit: Option<OwnedPermit<Msg>>,
    time: SystemTime,
    started: Instant,
    request_id: RequestId,
    method: http::Method,
    uri: http::Uri,
    route: Option<MatchedPath>,
    source: Option<std::net::SocketAddr>,
    tap: AuditTap,
}

impl Record {
    /// Sends the record (if room was reserved for it).
    fn finish<R>(self, response: Option<&Response<R>>, interrupted: Option<Interruption>) {
        let Some(permit) = self.permit else {
            return;
        };
        let ended = Instant::now();
        let mut seen = self.tap.take();
        let refusal = response.and_then(|r| r.extensions().get::<ZeroTrust>().cloned());
        let refused = refusal.is_some();
        let context = refusal.or(seen.context.take());
        let refusing_layer = if refused {
            context.as_ref().and_then(|c| c.decision()).map(|d| d.layer)
        } else {
            None
        };
        let (layers, zerotrust_time) =
            layer_times(self.started, ended, seen.passes(), refusing_layer);
        let event = AuditEvent {
            time: self.time,
            kind: EventKind::Request(RequestEvent {
                request_id: self.request_id,
                method: self.method,
                uri: self.uri,
                route: self.route,
                source: self.source,
                status: response.map(|r| r.status().as_u16()),
                refused,
                interrupted,
                context,
                layers,
                zerotrust_time,
                total_time: ended.saturating_duration_since(self.started),
            }),
        };
        permit.send(Msg::Event(event));
    }
}

type Reserving = Pin<Box<dyn Future<Output = Option<OwnedPermit<Msg>>> + Send>>;

pin_project! {
    /// The response future of [`AuditLog`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        record: Option<Record>,
    }

    impl<S, B> PinnedDrop for ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before the response: the client left, the server is stopping, or the
            // handler panicked. Still one record.
            if let Some(record) = this.project().record.take() {
                record.finish::<()>(None, Some(Interruption::Cancelled));
            }
        }
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Waiting {
            reserve: Reserving,
            inner: Option<S>,
            req: Option<Request<B>>,
        },
        Running {
            #[pin]
            fut: S::Future,
        },
        Answered {
            response: Option<S::Response>,
        },
    }
}

fn unavailable<R: From<Body>>(request_id: Option<&RequestId>) -> Response<R> {
    metrics::counter!("zerotrust_audit_unavailable_total").increment(1);
    tracing::error!(target: "zerotrust::audit", request_id = request_id.map_or("", RequestId::as_str), "request refused: its audit record cannot be queued");
    let mut response = Rejection::new(
        RejectionKind::Unavailable { retry_after: 1 },
        AUDIT_UNAVAILABLE,
    )
    .with_layer("audit")
    .into_response();
    if let Some(value) = request_id.and_then(RequestId::header_value) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    response.map(R::from)
}

impl<S, B, ResBody> Service<Request<B>> for AuditLog<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
    ResBody: From<Body>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let started = Instant::now();
        let time = SystemTime::now();
        let request_id = take_or_make(req.headers_mut());
        let tap = AuditTap::new();
        req.extensions_mut().insert(tap.clone());
        let route = req.extensions().get::<MatchedPath>().cloned();
        let mut record = Record {
            permit: None,
            time,
            started,
            uri: req.uri().clone(),
            method: req.method().clone(),
            request_id,
            route,
            source: PeerAddr::of(req.extensions()),
            tap,
        };
        match self.audit.try_reserve() {
            Reserve::Ready(permit) => {
                record.permit = Some(permit);
                ResponseFuture {
                    state: State::Running {
                        fut: self.inner.call(req),
                    },
                    record: Some(record),
                }
            }
            // Counted as dropped; the request goes on without a record (the kept `Record` has no
            // permit, so it sends nothing, and only gives the response its request id).
            Reserve::Dropped => ResponseFuture {
                state: State::Running {
                    fut: self.inner.call(req),
                },
                record: Some(record),
            },
            Reserve::Closed => ResponseFuture {
                state: State::Answered {
                    response: Some(unavailable(Some(&record.request_id))),
                },
                record: None,
            },
            Reserve::Full => {
                let max_wait = match self.audit.shared.overflow {
                    Overflow::Backpressure { max_wait } => max_wait,
                    Overflow::DropAndCount => std::time::Duration::ZERO,
                };
                let tx = self.audit.tx.clone();
                // Boxed: only under backpressure, never on the fast path.
                let reserve: Reserving = Box::pin(async move {
                    tokio::time::timeout(max_wait, tx.reserve_owned())
                        .await
                        .ok()?
                        .ok()
                });
                // Take the service that was driven to readiness; leave a fresh clone in its place.
                let clone = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, clone);
                ResponseFuture {
                    state: State::Waiting {
                        reserve,
                        inner: Some(inner),
                        req: Some(req),
                    },
                    record: Some(record),
                }
            }
        }
    }
}

impl<S, B, ResBody> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    ResBody: From<Body>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting {
                    reserve,
                    inner,
                    req,
                } => {
                    let permit = ready!(reserve.as_mut().poll(cx));
                    match (permit, inner.take(), req.take()) {
                        (Some(permit), Some(mut service), Some(request)) => {
                            if let Some(record) = this.record.as_mut() {
                                record.permit = Some(permit);
                            }
                            let fut = service.call(request);
                            this.state.set(State::Running { fut });
                        }
                        _ => {
                            let record = this.record.take();
                            return Poll::Ready(Ok(unavailable(
                                record.as_ref().map(|r| &r.request_id),
                            )));
                        }
                    }
                }
                StateProj::Running { fut } => {
                    let result = ready!(fut.poll(cx));
                    let record = this.record.take();
                    return Poll::Ready(match result {
                        Ok(mut response) => {
                            if let Some(record) = record {
                                if !response.headers().contains_key(X_REQUEST_ID)
                                    && let Some(value) = record.request_id.header_value()
                                {
                                    response.headers_mut().insert(X_REQUEST_ID, value);
                                }
                                record.finish(Some(&response), None);
                            }
                            Ok(response)
                        }
                        Err(error) => {
                            if let Some(record) = record {
                                record.finish::<()>(None, Some(Interruption::ServiceError));
                            }
                            Err(error)
                        }
                    });
                }
                StateProj::Answered { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Ready(Ok(unavailable(None))),
                    };
                }
            }
        }
    }
}

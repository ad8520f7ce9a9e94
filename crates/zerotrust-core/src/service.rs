//! The response future the checking layers share: run an async check, write what it found into
//! the request's [`ZeroTrust`], then call the inner service or answer the refusal.
//!
//! A layer's `call` gathers what it needs from the request (headers, extensions) into owned
//! values, starts its check, and returns [`CheckFuture::checking`]; refusals known at once use
//! [`CheckFuture::rejected`], and requests with nothing to check [`CheckFuture::proceed`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_service::Service;

use crate::ZeroTrust;
use crate::rejection::{Reason, Rejection, RejectionKind};
use crate::tap::note_pass;

/// What a check found, applied to the request's context once the check completes.
pub trait ContextUpdate: Send + 'static {
    /// The layer that made the check, such as `geo`: named in audit records and latency metrics.
    const LAYER: &'static str;

    /// Records the findings in `zt`; an `Err` refuses the request (after the findings that
    /// explain the refusal were recorded, so the audit record shows them).
    fn apply(self, zt: &mut ZeroTrust) -> Result<(), Rejection>;
}

/// A check in progress: boxed, because it awaits a store.
pub type PendingCheck<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// Renders `rejection` with the request's context, counts it and logs it at debug level.
pub fn render_rejection<B>(rejection: Rejection, req: &Request<B>) -> Response<Body> {
    let rejection = match req.extensions().get::<ZeroTrust>() {
        Some(zt) => rejection.with_context(zt.clone()),
        None => rejection,
    };
    let decision = rejection.decision();
    metrics::counter!(
        "zerotrust_rejections_total",
        "layer" => decision.layer,
        "reason" => decision.reason.code()
    )
    .increment(1);
    tracing::debug!(
        target: "zerotrust::decision",
        layer = decision.layer,
        code = decision.reason.code(),
        status = rejection.status().as_u16(),
        "request refused"
    );
    rejection.into_response()
}

pin_project! {
    /// The response future of the device and geo layers (and any layer built on
    /// [`ContextUpdate`]).
    pub struct CheckFuture<S, B, T>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B, T>
    where
        S: Service<Request<B>>,
    {
        Checking {
            check: PendingCheck<T>,
            inner: Option<S>,
            req: Option<Request<B>>,
        },
        Inner {
            #[pin]
            fut: S::Future,
        },
        Answered {
            response: Option<S::Response>,
        },
    }
}

const POLLED_AFTER_COMPLETION: Reason = Reason::new(
    "internal.future_reused",
    "The request could not be processed.",
);

impl<S, B, T, ResBody> CheckFuture<S, B, T>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    T: ContextUpdate,
    ResBody: From<Body>,
{
    /// Awaits `check`, applies its findings to `req`'s context, then calls `inner` (which must be
    /// the service that was driven to readiness).
    pub fn checking(check: PendingCheck<T>, inner: S, req: Request<B>) -> Self {
        Self {
            state: State::Checking {
                check,
                inner: Some(inner),
                req: Some(req),
            },
        }
    }

    /// Answers `rejection` at once, with `req`'s context.
    pub fn rejected(rejection: Rejection, req: &Request<B>) -> Self {
        Self {
            state: State::Answered {
                response: Some(render_rejection(rejection, req).map(ResBody::from)),
            },
        }
    }

    /// Calls `inner` at once.
    pub fn proceed(inner: &mut S, req: Request<B>) -> Self {
        note_pass(T::LAYER, &req);
        Self {
            state: State::Inner {
                fut: inner.call(req),
            },
        }
    }
}

impl<S, B, T, ResBody> Future for CheckFuture<S, B, T>
where
    S: Service<Request<B>, Response = Response<ResBody>>,
    T: ContextUpdate,
    ResBody: From<Body>,
{
    type Output = Result<Response<ResBody>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Checking { check, inner, req } => {
                    let found = ready!(check.as_mut().poll(cx));
                    let (Some(mut service), Some(mut request)) = (inner.take(), req.take()) else {
                        // Polled again after completion: a caller bug, answered without panicking.
                        let rejection =
                            Rejection::new(RejectionKind::Internal, POLLED_AFTER_COMPLETION);
                        return Poll::Ready(Ok(rejection.into_response().map(ResBody::from)));
                    };
                    // Applied and passed (or refused) in this one step: see `get_or_insert_to_pass`.
                    let applied =
                        found.apply(ZeroTrust::get_or_insert_to_pass(request.extensions_mut()));
                    match applied {
                        Ok(()) => {
                            note_pass(T::LAYER, &request);
                            let fut = service.call(request);
                            this.state.set(State::Inner { fut });
                        }
                        Err(rejection) => {
                            let response = render_rejection(rejection, &request);
                            return Poll::Ready(Ok(response.map(ResBody::from)));
                        }
                    }
                }
                StateProj::Inner { fut } => return fut.poll(cx),
                StateProj::Answered { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Ready(Ok(Rejection::new(
                            RejectionKind::Internal,
                            POLLED_AFTER_COMPLETION,
                        )
                        .into_response()
                        .map(ResBody::from))),
                    };
                }
            }
        }
    }
}

//! `StepUpLayer` builds the service `StepUp`, whose future is `ResponseFuture`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use http::{Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use zerotrust_core::revocation::STORE_DEGRADED;
use zerotrust_core::service::render_rejection;
use zerotrust_core::tap::note_pass;
use zerotrust_core::{
    Behavior, Decision, Outcome, PeerCertificate, Rejection, RejectionKind, RiskSignal, ZeroTrust,
};

use crate::decide::{RequestFacts, decide};
use crate::policy::{BehaviorPolicy, Compiled, CompiledRoute, StepUpPolicy};
use crate::reasons;

/// The decision point: applies the route policy to what the earlier layers put into
/// [`ZeroTrust`], and allows, challenges (RFC 9470) or denies.
///
/// Place it innermost, after `JwtVerifyLayer`, `DeviceCheckLayer` and `GeoRiskLayer`, so that
/// every signal is in the context when it decides. An allowed request carries an `Allow`
/// [`Decision`] from layer `stepup`; a refusal carries the context in the response extensions.
/// Its challenges carry the policy's [`realm`](crate::StepUpPolicyBuilder::realm), if one is set:
/// give it the same value as `JwtVerifyLayer::realm`.
///
/// ```
/// use axum::{routing::get, Router};
/// use zerotrust_stepup::{Requirements, StepUpLayer, StepUpPolicy};
///
/// let policy = StepUpPolicy::builder()
///     .route("/api/reports", Requirements::new().scopes(["reports:read"]).challenge_above(0.4))
///     .build()
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/api/reports", get(|| async { "reports" }))
///     .layer(StepUpLayer::new(policy));
/// ```
#[derive(Clone, Debug)]
pub struct StepUpLayer {
    policy: StepUpPolicy,
}

impl StepUpLayer {
    /// A layer deciding with `policy`.
    pub fn new(policy: StepUpPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for StepUpLayer {
    type Service = StepUp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StepUp {
            inner,
            policy: self.policy.clone(),
        }
    }
}

/// The service built by [`StepUpLayer`].
#[derive(Clone, Debug)]
pub struct StepUp<S> {
    inner: S,
    policy: StepUpPolicy,
}

type BoxedResponse<R, E> = Pin<Box<dyn Future<Output = Result<R, E>> + Send + 'static>>;

pin_project! {
    /// The response future of [`StepUp`].
    pub struct ResponseFuture<F, R, E> {
        #[pin]
        kind: Kind<F, R, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, R, E> {
        Inner { #[pin] fut: F },
        Answered { response: Option<R> },
        // Boxed because the behaviour store is awaited before deciding and written after the
        // answer; only requests of a subject with behaviour tracking on take this path.
        Tracked { fut: BoxedResponse<R, E> },
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F, Response<ResBody>, E>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
    ResBody: From<Body>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx),
            KindProj::Tracked { fut } => fut.as_mut().poll(cx),
            KindProj::Answered { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Ready(Ok(Rejection::new(
                    RejectionKind::Internal,
                    reasons::NO_ROUTE,
                )
                .into_response_body())),
            },
        }
    }
}

trait IntoResponseBody {
    fn into_response_body<B: From<Body>>(self) -> Response<B>;
}

impl IntoResponseBody for Rejection {
    fn into_response_body<B: From<Body>>(self) -> Response<B> {
        axum_core::response::IntoResponse::into_response(self).map(B::from)
    }
}

/// Whether `path` could be read as another path by a server or proxy behind this one: encoded
/// slashes, backslashes or dots, dot segments, or doubled slashes.
fn ambiguous(path: &str) -> bool {
    let bytes = path.as_bytes();
    if bytes.contains(&b'\\') || path.contains("//") {
        return true;
    }
    if bytes.windows(3).any(|w| {
        w.first() == Some(&b'%')
            && matches!(
                (w.get(1), w.get(2).map(u8::to_ascii_lowercase)),
                (Some(b'2'), Some(b'f' | b'e')) | (Some(b'5'), Some(b'c'))
            )
    }) {
        return true;
    }
    path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Renders a refusal of this layer. Every refusal goes through here, so every challenge it sends
/// carries the policy's realm (none when unset); the realm is added with
/// [`Rejection::with_realm`], the same code path `JwtVerifyLayer` uses, so both layers quote it
/// identically. Refusals without a challenge (a plain 403, 429, 503) ignore it.
fn render<B>(compiled: &Compiled, rejection: Rejection, req: &Request<B>) -> Response<Body> {
    let rejection = match &compiled.realm {
        Some(realm) => rejection.with_realm(Arc::clone(realm)),
        None => rejection,
    };
    render_rejection(rejection, req)
}

fn allow_decision() -> Decision {
    Decision {
        outcome: Outcome::Allow,
        reason: zerotrust_core::Reason::new("stepup.allow", "Allowed."),
        layer: "stepup",
        enforced: true,
    }
}

/// The behaviour signals for `seen`.
fn behavior_signals(seen: &Behavior, policy: &BehaviorPolicy) -> Vec<RiskSignal> {
    let mut out = Vec::new();
    if seen.failures >= policy.failures_from && policy.failures_from > 0 {
        let ratio = f64::from(seen.failures) / f64::from(policy.lockout_after.max(1));
        out.push(RiskSignal::new(
            "behavior.failures",
            (policy.failures_weight * ratio).min(policy.failures_weight),
            format!("{} failed requests in the last window", seen.failures),
        ));
    }
    if seen.requests > policy.burst_above {
        out.push(RiskSignal::new(
            "behavior.burst",
            policy.burst_weight,
            format!("{} requests in the last window", seen.requests),
        ));
    }
    if seen.sensitive_routes > policy.sensitive_routes_above {
        out.push(RiskSignal::new(
            "behavior.sensitive_routes",
            policy.sensitive_routes_weight,
            format!("{} distinct sensitive routes", seen.sensitive_routes),
        ));
    }
    out
}

/// Decides for `req` on `route` and records the outcome; `Err` is the refusal to answer.
fn decide_request<B>(
    route: &CompiledRoute,
    req: &mut Request<B>,
    now: i64,
) -> Result<(), Rejection> {
    ZeroTrust::get_or_insert(req.extensions_mut());
    // Decide on shared borrows of the request (context, certificate, method, path), then record.
    let verdict = match req.extensions().get::<ZeroTrust>() {
        Some(zt) => {
            let facts = RequestFacts {
                certificate: req.extensions().get::<PeerCertificate>(),
                method: req.method(),
                path: req.uri().path(),
            };
            decide(route, zt, &facts, now)
        }
        // Inserted just above; refuse rather than decide without the context.
        None => {
            Err(Rejection::new(RejectionKind::Internal, reasons::NO_ROUTE).with_layer("stepup"))
        }
    };
    let zt = ZeroTrust::get_or_insert(req.extensions_mut());
    match verdict {
        Ok(()) => {
            if zt.decision().is_none() {
                zt.set_decision(allow_decision());
            }
            Ok(())
        }
        Err(rejection) => route.enforcement.apply(zt, rejection),
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for StepUp<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Body> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let compiled = &self.policy.inner;
        let answer = |response: Response<Body>| ResponseFuture {
            kind: Kind::Answered {
                response: Some(response.map(ResBody::from)),
            },
        };
        if ambiguous(req.uri().path()) {
            let rejection = Rejection::new(RejectionKind::InvalidRequest, reasons::AMBIGUOUS_PATH)
                .with_layer("stepup");
            return answer(render(compiled, rejection, &req));
        }
        let index = self.policy.lookup(req.method(), req.uri().path());
        let Some(route) = compiled.routes.get(index) else {
            let rejection =
                Rejection::new(RejectionKind::Forbidden, reasons::NO_ROUTE).with_layer("stepup");
            return answer(render(compiled, rejection, &req));
        };
        if !route.enforcement.is_on() {
            return ResponseFuture {
                kind: Kind::Inner {
                    fut: {
                        note_pass("stepup", &req);
                        self.inner.call(req)
                    },
                },
            };
        }
        let now = (compiled.clock)();
        let subject = req
            .extensions()
            .get::<ZeroTrust>()
            .and_then(ZeroTrust::subject)
            .map(str::to_owned);
        let tracked = compiled.behavior.as_ref().zip(subject);

        let Some(((store, behavior), subject)) = tracked else {
            // Changed, decided and passed (or refused) in one synchronous step.
            let zt = ZeroTrust::get_or_insert_to_pass(req.extensions_mut());
            zt.set_risk_model(Arc::clone(&compiled.risk_model));
            zt.set_route(Arc::clone(&route.pattern));
            return match decide_request(route, &mut req, now) {
                Ok(()) => ResponseFuture {
                    kind: Kind::Inner {
                        fut: {
                            note_pass("stepup", &req);
                            self.inner.call(req)
                        },
                    },
                },
                Err(rejection) => answer(render(compiled, rejection, &req)),
            };
        };

        let store = Arc::clone(store);
        let behavior = *behavior;
        let policy = self.policy.clone();
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let fut = async move {
            let compiled = &policy.inner;
            let Some(route) = compiled.routes.get(index) else {
                let rejection = Rejection::new(RejectionKind::Internal, reasons::NO_ROUTE);
                return Ok(render(compiled, rejection, &req).map(ResBody::from));
            };
            let windows = behavior.windows;
            let sensitive = route.sensitive.then(|| route.pattern.to_string());
            let seen = store
                .observe(&subject, now, sensitive.as_deref(), &windows)
                .await;
            // The context is changed only after the store answered: from here to the pass (or
            // the refusal) nothing is awaited.
            let zt = ZeroTrust::get_or_insert_to_pass(req.extensions_mut());
            zt.set_risk_model(Arc::clone(&compiled.risk_model));
            zt.set_route(Arc::clone(&route.pattern));
            match seen {
                Ok(seen) => {
                    if let Some(until) = seen.locked_until {
                        let rejection = Rejection::new(
                            RejectionKind::TooManyRequests {
                                retry_after: u64::try_from(until.saturating_sub(now).max(1))
                                    .unwrap_or(1),
                            },
                            reasons::LOCKED_OUT,
                        )
                        .with_layer("stepup");
                        if let Err(rejection) = route.enforcement.apply(zt, rejection) {
                            return Ok(render(compiled, rejection, &req).map(ResBody::from));
                        }
                    }
                    for signal in behavior_signals(&seen, &behavior) {
                        zt.add_signal(signal);
                    }
                }
                Err(error) if behavior.fail_open => {
                    tracing::warn!(target: "zerotrust::stepup", %error, "behaviour store unavailable; continuing degraded");
                    zt.add_signal(RiskSignal::new(
                        STORE_DEGRADED,
                        0.3,
                        "behaviour store unavailable",
                    ));
                }
                Err(error) => {
                    tracing::warn!(target: "zerotrust::stepup", %error, "behaviour store unavailable; answering 503");
                    return Ok(render(compiled, error.rejection("stepup"), &req).map(ResBody::from));
                }
            }

            let response = match decide_request(route, &mut req, now) {
                Ok(()) => {
                    note_pass("stepup", &req);
                    inner.call(req).await?
                }
                Err(rejection) => render(compiled, rejection, &req).map(ResBody::from),
            };
            if matches!(
                response.status(),
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
            ) {
                match store.record_failure(&subject, now, &windows).await {
                    Ok(failures) if failures >= behavior.lockout_after => {
                        let until = now.saturating_add(
                            i64::try_from(behavior.lockout_for.as_secs()).unwrap_or(i64::MAX),
                        );
                        if let Err(error) = store.lock_out(&subject, until).await {
                            tracing::warn!(target: "zerotrust::stepup", %error, "could not record a lockout");
                        }
                    }
                    Ok(_) => {}
                    Err(error) => {
                        tracing::warn!(target: "zerotrust::stepup", %error, "could not record a failed request");
                    }
                }
            }
            Ok(response)
        };
        ResponseFuture {
            kind: Kind::Tracked { fut: Box::pin(fut) },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambiguous_paths_are_recognised() {
        for path in [
            "/a/../b",
            "/a/./b",
            "/a//b",
            "/a%2fb",
            "/a%2Fb",
            "/a%5cb",
            "/a/%2e%2e/b",
            "/a\\b",
            "/..",
        ] {
            assert!(ambiguous(path), "{path}");
        }
        for path in ["/", "/a/b", "/a/b.c", "/a/..b", "/a/%20", "/a/%2"] {
            assert!(!ambiguous(path), "{path}");
        }
    }
}

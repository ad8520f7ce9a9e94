//! `JwtVerifyLayer` builds the service `JwtVerify`, whose future is `ResponseFuture`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum_core::body::Body;
use axum_core::response::IntoResponse;
use futures_util::future::BoxFuture;
use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use zerotrust_core::{Identity, Rejection, ZeroTrust};

use crate::error::VerifyError;
use crate::source::{self, TokenSource};
use crate::verifier::JwtVerifier;

/// Verifies the bearer token of every request and puts the identity into [`ZeroTrust`].
///
/// - No token: 401 with a bare `Bearer` challenge.
/// - A malformed request (two `Authorization` headers, a token in the query, a token that is
///   not a `b64token`): 400 `invalid_request`.
/// - A bad token (malformed, bad signature, expired, wrong audience, revoked, ...): 401
///   `invalid_token` with a fixed description and a stable code in the problem body.
/// - Keys or revocation store unavailable: 503 with `Retry-After`, never a pass.
///
/// Every refusal carries the request's `ZeroTrust` context, with the decision, in the response
/// extensions.
///
/// ```
/// use axum::{routing::get, Router};
/// use zerotrust_core::ZeroTrust;
/// use zerotrust_jwt::{Issuer, JwtVerifier, JwtVerifyLayer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let verifier = JwtVerifier::builder()
///     .issuer(Issuer::discover("https://login.example.com").audience("https://api.example.com"))
///     .cache_verified_tokens(10_000)
///     .build()?;
///
/// let app: Router = Router::new()
///     .route("/me", get(|zt: ZeroTrust| async move { zt.subject().unwrap_or_default().to_owned() }))
///     .layer(JwtVerifyLayer::new(verifier).realm("api"));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct JwtVerifyLayer {
    verifier: JwtVerifier,
    source: Arc<TokenSource>,
    realm: Option<Arc<str>>,
}

impl JwtVerifyLayer {
    /// A layer verifying `Authorization: Bearer` tokens with `verifier`.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self {
            verifier,
            source: Arc::new(TokenSource::default()),
            realm: None,
        }
    }

    /// Reads the token from another place.
    ///
    /// ```
    /// # let verifier = zerotrust_jwt::JwtVerifier::builder()
    /// #     .issuer(zerotrust_jwt::Issuer::discover("https://idp").audience("api")).build().unwrap();
    /// use zerotrust_jwt::{JwtVerifyLayer, TokenSource};
    ///
    /// let layer = JwtVerifyLayer::new(verifier).token_source(TokenSource::cookie("access_token"));
    /// # let _ = layer;
    /// ```
    pub fn token_source(mut self, source: TokenSource) -> Self {
        self.source = Arc::new(source);
        self
    }

    /// Names the protection space in challenges (`WWW-Authenticate: Bearer realm="..."`).
    ///
    /// ```
    /// # let verifier = zerotrust_jwt::JwtVerifier::builder()
    /// #     .issuer(zerotrust_jwt::Issuer::discover("https://idp").audience("api")).build().unwrap();
    /// let layer = zerotrust_jwt::JwtVerifyLayer::new(verifier).realm("reports");
    /// # let _ = layer;
    /// ```
    pub fn realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }
}

impl<S> Layer<S> for JwtVerifyLayer {
    type Service = JwtVerify<S>;

    fn layer(&self, inner: S) -> Self::Service {
        JwtVerify {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service built by [`JwtVerifyLayer`].
#[derive(Clone, Debug)]
pub struct JwtVerify<S> {
    inner: S,
    layer: JwtVerifyLayer,
}

fn render<B>(rejection: Rejection, realm: Option<&Arc<str>>, req: &Request<B>) -> Response<Body> {
    let mut rejection = rejection;
    if let Some(realm) = realm {
        rejection = rejection.with_realm(realm.clone());
    }
    if let Some(zt) = req.extensions().get::<ZeroTrust>() {
        rejection = rejection.with_context(zt.clone());
    }
    let reason = rejection.reason();
    metrics::counter!("zerotrust_jwt_rejections_total", "reason" => reason.code()).increment(1);
    tracing::debug!(
        target: "zerotrust::jwt",
        code = reason.code(),
        status = rejection.status().as_u16(),
        "request refused"
    );
    rejection.into_response()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for JwtVerify<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone,
    ResBody: From<Body>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S, ReqBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        // Request-level checks answer at once, without allocating a future.
        let token = match source::extract(&self.layer.source, req.uri(), req.headers()) {
            Ok(token) => token,
            Err((kind, reason)) => {
                let rejection = Rejection::new(kind, reason).with_layer("jwt");
                let response = render(rejection, self.layer.realm.as_ref(), &req);
                return ResponseFuture {
                    state: State::Rejected {
                        response: Some(response.map(ResBody::from)),
                    },
                };
            }
        };
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.layer.verifier.clone();
        // Boxed because the check is async: keys may have to be fetched and the revocation store
        // is asked on every request. One allocation per request.
        let check: BoxFuture<'static, Result<Arc<Identity>, VerifyError>> =
            Box::pin(async move { verifier.verify(&token).await });
        ResponseFuture {
            state: State::Checking {
                check,
                inner: Some(inner),
                req: Some(req),
                realm: self.layer.realm.clone(),
            },
        }
    }
}

pin_project! {
    /// The response future of [`JwtVerify`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Checking {
            check: BoxFuture<'static, Result<Arc<Identity>, VerifyError>>,
            inner: Option<S>,
            req: Option<Request<B>>,
            realm: Option<Arc<str>>,
        },
        Inner {
            #[pin]
            fut: S::Future,
        },
        Rejected {
            response: Option<S::Response>,
        },
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
                StateProj::Checking {
                    check,
                    inner,
                    req,
                    realm,
                } => {
                    let verdict = ready!(check.as_mut().poll(cx));
                    let (Some(mut service), Some(mut request)) = (inner.take(), req.take()) else {
                        // Polled again after completion: a caller bug, answered without panicking.
                        return Poll::Ready(Ok(Rejection::new(
                            zerotrust_core::RejectionKind::Internal,
                            crate::error::reasons::KEYS_UNAVAILABLE,
                        )
                        .into_response()
                        .map(ResBody::from)));
                    };
                    match verdict {
                        Ok(identity) => {
                            ZeroTrust::get_or_insert(request.extensions_mut())
                                .set_identity(identity);
                            let fut = service.call(request);
                            this.state.set(State::Inner { fut });
                        }
                        Err(error) => {
                            if matches!(
                                error,
                                VerifyError::KeysUnavailable { .. } | VerifyError::Store(_)
                            ) {
                                tracing::warn!(target: "zerotrust::jwt", %error, "cannot verify tokens; answering 503");
                            }
                            let response = render(error.rejection(), realm.as_ref(), &request);
                            return Poll::Ready(Ok(response.map(ResBody::from)));
                        }
                    }
                }
                StateProj::Inner { fut } => return fut.poll(cx),
                StateProj::Rejected { response } => {
                    return match response.take() {
                        Some(response) => Poll::Ready(Ok(response)),
                        None => Poll::Ready(Ok(Rejection::new(
                            zerotrust_core::RejectionKind::Internal,
                            crate::error::reasons::KEYS_UNAVAILABLE,
                        )
                        .into_response()
                        .map(ResBody::from))),
                    };
                }
            }
        }
    }
}

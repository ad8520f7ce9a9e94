//! `JwtVerifyLayer` builds the service `JwtVerify`, whose future is `ResponseFuture` (core's
//! `CheckFuture`, shared with the other checking layers).

use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use zerotrust_core::service::{CheckFuture, ContextUpdate, PendingCheck};
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

fn with_realm(rejection: Rejection, realm: Option<&Arc<str>>) -> Rejection {
    match realm {
        Some(realm) => rejection.with_realm(realm.clone()),
        None => rejection,
    }
}

/// The verdict on a request's token, applied to its context when verification completes.
pub struct TokenVerdict {
    verdict: Result<Arc<Identity>, VerifyError>,
    realm: Option<Arc<str>>,
}

impl std::fmt::Debug for TokenVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerdict")
            .field("verified", &self.verdict.is_ok())
            .finish_non_exhaustive()
    }
}

impl ContextUpdate for TokenVerdict {
    fn apply(self, zt: &mut ZeroTrust) -> Result<(), Rejection> {
        match self.verdict {
            Ok(identity) => {
                zt.set_identity(identity);
                Ok(())
            }
            Err(error) => {
                if matches!(
                    error,
                    VerifyError::KeysUnavailable { .. } | VerifyError::Store(_)
                ) {
                    tracing::warn!(target: "zerotrust::jwt", %error, "cannot verify tokens; answering 503");
                }
                Err(with_realm(error.rejection(), self.realm.as_ref()))
            }
        }
    }
}

/// The response future of [`JwtVerify`].
pub type ResponseFuture<S, B> = CheckFuture<S, B, TokenVerdict>;

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
                let rejection = with_realm(rejection, self.layer.realm.as_ref());
                return CheckFuture::rejected(rejection, &req);
            }
        };
        // Take the service that was driven to readiness; leave a fresh clone in its place.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        let verifier = self.layer.verifier.clone();
        let realm = self.layer.realm.clone();
        // Boxed because the check is async: keys may have to be fetched and the revocation store
        // is asked on every request. One allocation per request.
        let check: PendingCheck<TokenVerdict> = Box::pin(async move {
            TokenVerdict {
                verdict: verifier.verify(&token).await,
                realm,
            }
        });
        CheckFuture::checking(check, inner, req)
    }
}

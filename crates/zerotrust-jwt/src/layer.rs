//! `JwtVerifyLayer` builds the service `JwtVerify`, whose future is `ResponseFuture` (core's
//! `CheckFuture`, shared with the other checking layers).

use std::sync::Arc;
use std::task::{Context, Poll};

use axum_core::body::Body;
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;
use zerotrust_core::service::{CheckFuture, ContextUpdate, PendingCheck};
use zerotrust_core::{Enforcement, Identity, Rejection, ZeroTrust};

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
/// That is the default, [`Enforcement::Enforce`]. With [`enforcement`](Self::enforcement) the layer
/// can instead report its refusals without answering them (`ReportOnly`), do so for part of the
/// subjects (`Rollout`), or not run at all (`Off`), for rolling authentication out gradually.
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
    mode: Enforcement,
}

impl JwtVerifyLayer {
    /// A layer verifying `Authorization: Bearer` tokens with `verifier`.
    pub fn new(verifier: JwtVerifier) -> Self {
        Self {
            verifier,
            source: Arc::new(TokenSource::default()),
            realm: None,
            mode: Enforcement::Enforce,
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

    /// How refusals are applied (default [`Enforcement::Enforce`]: every refusal is answered).
    ///
    /// - [`Enforcement::ReportOnly`]: every request is verified as usual. A valid token still puts
    ///   its identity into [`ZeroTrust`]. Any refusal (no token, a malformed request, a bad token,
    ///   and also keys or the revocation store unavailable) is recorded as a
    ///   [`Decision`](zerotrust_core::Decision) with `enforced: false`, logged and counted
    ///   (`zerotrust_report_only_total`), and the request passes **without an identity**: never
    ///   with the unverified one from the token.
    /// - [`Enforcement::Rollout`]`(n)`: as `ReportOnly` for the subjects outside the `n`%, as
    ///   `Enforce` for the others. The bucket is taken from the subject *already verified* in the
    ///   request's context (by an earlier layer); a refused token has no verified subject (its
    ///   `sub` claim is attacker-controlled until the token is verified), so a refusal of a request
    ///   that reaches this layer anonymous is **always enforced**, whatever `n`: the core's
    ///   fail-closed rule for requests without a subject. In practice a roll-out of this layer
    ///   therefore behaves like `Enforce`; to watch authentication before enforcing it, use
    ///   `ReportOnly`, and roll out the layers after it (device, network, step-up) by percentage.
    /// - [`Enforcement::Off`]: the layer calls the service untouched: no verification, no
    ///   context, no decision.
    ///
    /// Keys or revocation store unavailable (503) are reported, not answered, in report-only mode,
    /// on purpose: report-only promises not to break traffic while a roll-out is watched, and an
    /// issuer outage must not turn a watching layer into an outage. Nothing is granted by it: the
    /// request passes with no identity, exactly like a request without a token, and the decision
    /// records outcome `error` (with a warning in the log) so the audit shows it.
    ///
    /// # Warning
    ///
    /// With `ReportOnly`, `Rollout` and `Off`, requests without a valid token (no token, forged,
    /// expired, revoked) reach the service. They carry no identity, so a handler or a later layer
    /// that requires one (`zt.identity()`, a step-up policy) still refuses them; a handler that
    /// does not look is open to everyone.
    ///
    /// ```
    /// # let verifier = zerotrust_jwt::JwtVerifier::builder()
    /// #     .issuer(zerotrust_jwt::Issuer::discover("https://idp").audience("api")).build().unwrap();
    /// use zerotrust_core::Enforcement;
    /// use zerotrust_jwt::JwtVerifyLayer;
    ///
    /// // Watch what authentication would refuse, without refusing anything yet.
    /// let layer = JwtVerifyLayer::new(verifier).enforcement(Enforcement::ReportOnly);
    /// # let _ = layer;
    /// ```
    pub fn enforcement(mut self, mode: Enforcement) -> Self {
        self.mode = mode;
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
    mode: Enforcement,
}

impl std::fmt::Debug for TokenVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerdict")
            .field("verified", &self.verdict.is_ok())
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl ContextUpdate for TokenVerdict {
    const LAYER: &'static str = "jwt";

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
                    tracing::warn!(target: "zerotrust::jwt", %error, mode = %self.mode, "cannot verify tokens");
                }
                // Not enforced: recorded, and the request goes on with no identity.
                self.mode
                    .apply(zt, with_realm(error.rejection(), self.realm.as_ref()))
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

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let mode = self.layer.mode;
        if !mode.is_on() {
            return CheckFuture::proceed(&mut self.inner, req);
        }
        // Request-level checks answer at once, without allocating a future.
        let token = match source::extract(&self.layer.source, req.uri(), req.headers()) {
            Ok(token) => token,
            Err((kind, reason)) => {
                let rejection = Rejection::new(kind, reason).with_layer("jwt");
                let rejection = with_realm(rejection, self.layer.realm.as_ref());
                let zt = ZeroTrust::get_or_insert_to_pass(req.extensions_mut());
                return match mode.apply(zt, rejection) {
                    Err(rejection) => CheckFuture::rejected(rejection, &req),
                    Ok(()) => CheckFuture::proceed(&mut self.inner, req),
                };
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
                mode,
            }
        });
        CheckFuture::checking(check, inner, req)
    }
}

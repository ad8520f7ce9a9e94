//! Handlers read the context with `async fn h(zt: ZeroTrust)` or `Option<ZeroTrust>`.

use axum_core::extract::{FromRequestParts, OptionalFromRequestParts};
use axum_core::response::{IntoResponse, Response};
use http::request::Parts;

use crate::{Reason, Rejection, RejectionKind, ZeroTrust};

const NO_LAYER: Reason = Reason::new(
    "server.zerotrust_layer_missing",
    "The server could not evaluate this request.",
);

/// The extractor's rejection when a handler asks for [`ZeroTrust`] but no zerotrust layer ran.
///
/// That is a wiring mistake on the server, never the client's fault, and it must not let the request
/// through as if it had been checked: the answer is a 500 problem, and an error is logged naming
/// the missing layer.
#[derive(Debug, Clone, Copy, Default)]
pub struct MissingZeroTrust;

impl IntoResponse for MissingZeroTrust {
    fn into_response(self) -> Response {
        Rejection::new(RejectionKind::Internal, NO_LAYER)
            .with_layer("extractor")
            .into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ZeroTrust {
    type Rejection = MissingZeroTrust;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        match parts.extensions.get::<ZeroTrust>() {
            Some(zt) => Ok(zt.clone()),
            None => {
                tracing::error!(
                    target: "zerotrust",
                    path = %parts.uri.path(),
                    "a handler extracts ZeroTrust but no zerotrust layer ran on this route; \
                     add JwtVerifyLayer (or another zerotrust layer) in front of it"
                );
                Err(MissingZeroTrust)
            }
        }
    }
}

impl<S: Send + Sync> OptionalFromRequestParts<S> for ZeroTrust {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        Ok(parts.extensions.get::<ZeroTrust>().cloned())
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, body::Body, routing::get};
    use http::{Request, StatusCode};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn needs(zt: ZeroTrust) -> String {
        zt.subject().unwrap_or("none").to_owned()
    }
    async fn maybe(zt: Option<ZeroTrust>) -> &'static str {
        if zt.is_some() { "some" } else { "none" }
    }

    #[tokio::test]
    async fn handler_without_layer_is_500_problem() {
        let app = Router::new().route("/", get(needs));
        let resp = app
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()["content-type"], "application/problem+json");
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        let body = String::from_utf8(body.unwrap_or_default().to_vec()).unwrap_or_default();
        assert!(body.contains("server.zerotrust_layer_missing"), "{body}");
    }

    #[tokio::test]
    async fn optional_extractor_gives_none_without_layer() {
        let app = Router::new().route("/", get(maybe));
        let resp = app
            .oneshot(Request::new(Body::empty()))
            .await
            .unwrap_or_else(|e| match e {});
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.map(|b| b.to_bytes());
        assert_eq!(body.unwrap_or_default(), "none");
    }
}

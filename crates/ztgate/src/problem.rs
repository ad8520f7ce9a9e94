//! The gateway's own answers (RFC 9457 problem details), for what no zerotrust layer decides:
//! an unreachable upstream, no route. Refusals by the layers are rendered by
//! `zerotrust_core::Rejection`.

use axum::body::Body;
use http::{HeaderValue, Response, StatusCode, header};

fn problem(status: StatusCode, code: &'static str, detail: &'static str) -> Response<Body> {
    let body = serde_json::json!({
        "type": format!("urn:ztgate:problem:{code}"),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "code": code,
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// 502: the upstream refused or dropped the connection.
pub(crate) fn bad_gateway() -> Response<Body> {
    problem(
        StatusCode::BAD_GATEWAY,
        "upstream.unavailable",
        "The upstream service cannot be reached.",
    )
}

/// 504: no response headers from the upstream in time.
pub(crate) fn gateway_timeout() -> Response<Body> {
    problem(
        StatusCode::GATEWAY_TIMEOUT,
        "upstream.timeout",
        "The upstream service did not answer in time.",
    )
}

/// 408: the client's request body stalled before the upstream answered.
pub(crate) fn request_body_timeout() -> Response<Body> {
    let mut response = problem(
        StatusCode::REQUEST_TIMEOUT,
        "request.body_timeout",
        "The request body stalled.",
    );
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 404: no route for the path.
pub(crate) fn no_route() -> Response<Body> {
    problem(
        StatusCode::NOT_FOUND,
        "gateway.no_route",
        "No route serves this path.",
    )
}

/// 400: a path that cannot be forwarded.
pub(crate) fn bad_request_path() -> Response<Body> {
    problem(
        StatusCode::BAD_REQUEST,
        "gateway.bad_path",
        "The request path cannot be forwarded.",
    )
}

/// 500: the gateway failed (never the client's input).
pub(crate) fn internal() -> Response<Body> {
    problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "gateway.internal",
        "The gateway failed to process the request.",
    )
}

/// 503: not ready (`/readyz`).
pub(crate) fn not_ready() -> Response<Body> {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "gateway.not_ready",
        "The gateway has not loaded its issuers' keys yet.",
    )
}

//! The one place where every refusal is rendered: status, challenge header, problem body.

use std::fmt::{self, Write as _};
use std::sync::Arc;

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::{Decision, Outcome, ZeroTrust};

/// Why a request was refused: a stable machine-readable code and a fixed human-readable
/// description.
///
/// Both are `'static` on purpose: a rejection can only say what its layer's author wrote, never
/// what the client sent, so neither attacker input nor internals can leak into a response.
///
/// ```
/// use zerotrust_core::Reason;
///
/// const EXPIRED: Reason = Reason::new("token.expired", "The access token has expired.");
/// assert_eq!(EXPIRED.code(), "token.expired");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reason {
    code: &'static str,
    description: &'static str,
}

impl Reason {
    /// A reason with a stable `code` (dotted, lower case) and a fixed `description`.
    pub const fn new(code: &'static str, description: &'static str) -> Self {
        Self { code, description }
    }
    /// The stable code, such as `token.expired`.
    pub const fn code(&self) -> &'static str {
        self.code
    }
    /// The fixed description shown to the client.
    pub const fn description(&self) -> &'static str {
        self.description
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

/// The kind of refusal, which fixes the status code and the challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RejectionKind {
    /// No credentials at all: 401 with a bare `Bearer` challenge (RFC 6750 §3.1 says to add no
    /// error code).
    MissingCredentials,
    /// A malformed request (two `Authorization` headers, a token in the query string): 400,
    /// `error="invalid_request"`.
    InvalidRequest,
    /// A token that is malformed, expired, revoked or otherwise not valid: 401,
    /// `error="invalid_token"`.
    InvalidToken,
    /// A valid token without the scope the resource needs: 403, `error="insufficient_scope"`
    /// with `scope="..."`.
    InsufficientScope {
        /// The scopes needed, space-separated.
        scope: String,
    },
    /// The authentication is too weak or too old (RFC 9470): 401,
    /// `error="insufficient_user_authentication"` with `acr_values` and/or `max_age`.
    InsufficientUserAuthentication {
        /// Acceptable `acr` values, space-separated, in order of preference.
        acr_values: Option<String>,
        /// The maximum acceptable age of the authentication, in seconds.
        max_age: Option<u64>,
    },
    /// Authenticated but not allowed: 403 without a challenge.
    Forbidden,
    /// Too many failures or requests: 429 with `Retry-After`.
    TooManyRequests {
        /// Seconds until the client may retry.
        retry_after: u64,
    },
    /// A dependency needed for the check is unavailable (no usable issuer key, a store down):
    /// 503 with `Retry-After`. The request is refused, never passed.
    Unavailable {
        /// Seconds until the client may retry.
        retry_after: u64,
    },
    /// An internal fault: 500.
    Internal,
}

impl RejectionKind {
    /// The HTTP status this kind is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            RejectionKind::MissingCredentials
            | RejectionKind::InvalidToken
            | RejectionKind::InsufficientUserAuthentication { .. } => StatusCode::UNAUTHORIZED,
            RejectionKind::InvalidRequest => StatusCode::BAD_REQUEST,
            RejectionKind::InsufficientScope { .. } | RejectionKind::Forbidden => {
                StatusCode::FORBIDDEN
            }
            RejectionKind::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            RejectionKind::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RejectionKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The outcome recorded for this kind of refusal.
    pub fn outcome(&self) -> Outcome {
        match self {
            RejectionKind::MissingCredentials
            | RejectionKind::InsufficientUserAuthentication { .. } => Outcome::Challenge,
            RejectionKind::InvalidRequest
            | RejectionKind::InvalidToken
            | RejectionKind::InsufficientScope { .. }
            | RejectionKind::Forbidden
            | RejectionKind::TooManyRequests { .. } => Outcome::Deny,
            RejectionKind::Unavailable { .. } | RejectionKind::Internal => Outcome::Error,
        }
    }

    fn title(&self) -> &'static str {
        match self {
            RejectionKind::MissingCredentials => "Authentication required",
            RejectionKind::InvalidRequest => "Invalid request",
            RejectionKind::InvalidToken => "Invalid token",
            RejectionKind::InsufficientScope { .. } => "Insufficient scope",
            RejectionKind::InsufficientUserAuthentication { .. } => {
                "Stronger authentication required"
            }
            RejectionKind::Forbidden => "Forbidden",
            RejectionKind::TooManyRequests { .. } => "Too many requests",
            RejectionKind::Unavailable { .. } => "Service unavailable",
            RejectionKind::Internal => "Internal error",
        }
    }

    fn bearer_error(&self) -> Option<&'static str> {
        match self {
            RejectionKind::InvalidRequest => Some("invalid_request"),
            RejectionKind::InvalidToken => Some("invalid_token"),
            RejectionKind::InsufficientScope { .. } => Some("insufficient_scope"),
            RejectionKind::InsufficientUserAuthentication { .. } => {
                Some("insufficient_user_authentication")
            }
            _ => None,
        }
    }

    fn has_challenge(&self) -> bool {
        matches!(self, RejectionKind::MissingCredentials) || self.bearer_error().is_some()
    }
}

/// A refusal, rendered in one place for every layer.
///
/// Its response carries:
/// - the status of its [`RejectionKind`];
/// - for 400/401/403-with-scope, a `WWW-Authenticate: Bearer ...` challenge per RFC 6750 and
///   RFC 9470 (`error`, `error_description`, `scope`, `acr_values`, `max_age`, optional `realm`);
/// - `Retry-After` for 429 and 503;
/// - an RFC 9457 `application/problem+json` body with `type`, `title`, `status`, `detail` and the
///   stable `code`;
/// - the request's [`ZeroTrust`] context, with the [`Decision`] recorded, in the response
///   extensions, so an outer audit layer can record who was refused and why.
///
/// ```
/// use axum_core::response::IntoResponse;
/// use zerotrust_core::{Reason, Rejection, RejectionKind, ZeroTrust};
///
/// const EXPIRED: Reason = Reason::new("token.expired", "The access token has expired.");
/// let response = Rejection::new(RejectionKind::InvalidToken, EXPIRED)
///     .with_layer("jwt")
///     .with_realm("api")
///     .into_response();
/// assert_eq!(response.status(), 401);
/// assert_eq!(
///     response.headers()["www-authenticate"],
///     r#"Bearer realm="api", error="invalid_token", error_description="The access token has expired.""#
/// );
/// assert_eq!(response.headers()["content-type"], "application/problem+json");
/// let zt = response.extensions().get::<ZeroTrust>().unwrap();
/// assert_eq!(zt.decision().unwrap().reason.code(), "token.expired");
/// ```
#[derive(Debug, Clone)]
pub struct Rejection {
    kind: RejectionKind,
    reason: Reason,
    layer: &'static str,
    realm: Option<Arc<str>>,
    // Boxed: the context is large and a rejection travels through `Result`s by value.
    context: Option<Box<ZeroTrust>>,
}

impl Rejection {
    /// A rejection of `kind` for `reason`.
    pub fn new(kind: RejectionKind, reason: Reason) -> Self {
        Self {
            kind,
            reason,
            layer: "zerotrust",
            realm: None,
            context: None,
        }
    }

    /// Names the layer that refused (recorded in the decision), such as `jwt`.
    pub fn with_layer(mut self, layer: &'static str) -> Self {
        self.layer = layer;
        self
    }

    /// Adds `realm="..."` to the challenge. Characters not allowed in a quoted string are dropped.
    pub fn with_realm(mut self, realm: impl Into<Arc<str>>) -> Self {
        self.realm = Some(realm.into());
        self
    }

    /// Attaches the request's context, to be copied into the response extensions.
    pub fn with_context(mut self, context: ZeroTrust) -> Self {
        self.context = Some(Box::new(context));
        self
    }

    /// The kind of refusal.
    pub fn kind(&self) -> &RejectionKind {
        &self.kind
    }

    /// The reason.
    pub fn reason(&self) -> Reason {
        self.reason
    }

    /// The HTTP status of the response.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The decision this rejection records.
    pub fn decision(&self) -> Decision {
        Decision {
            outcome: self.kind.outcome(),
            reason: self.reason,
            layer: self.layer,
            enforced: true,
        }
    }

    /// The `WWW-Authenticate` value, if this kind carries a challenge.
    pub fn challenge(&self) -> Option<String> {
        if !self.kind.has_challenge() {
            return None;
        }
        let mut params: Vec<(&str, String)> = Vec::with_capacity(5);
        if let Some(realm) = &self.realm {
            params.push(("realm", realm.to_string()));
        }
        if let Some(error) = self.kind.bearer_error() {
            params.push(("error", error.to_owned()));
            params.push(("error_description", self.reason.description.to_owned()));
        }
        match &self.kind {
            RejectionKind::InsufficientScope { scope } => params.push(("scope", scope.clone())),
            RejectionKind::InsufficientUserAuthentication {
                acr_values,
                max_age,
            } => {
                if let Some(acr) = acr_values {
                    params.push(("acr_values", acr.clone()));
                }
                if let Some(age) = max_age {
                    params.push(("max_age", age.to_string()));
                }
            }
            _ => {}
        }
        let mut out = String::from("Bearer");
        for (i, (name, value)) in params.iter().enumerate() {
            out.push_str(if i == 0 { " " } else { ", " });
            out.push_str(name);
            out.push_str("=\"");
            push_quoted_text(&mut out, value);
            out.push('"');
        }
        Some(out)
    }

    fn problem_body(&self) -> serde_json::Value {
        let status = self.status();
        let mut body = serde_json::json!({
            "type": format!("urn:zerotrust:problem:{}", self.reason.code),
            "title": self.kind.title(),
            "status": status.as_u16(),
            "detail": self.reason.description,
            "code": self.reason.code,
        });
        if let Some(obj) = body.as_object_mut() {
            match &self.kind {
                RejectionKind::InsufficientScope { scope } => {
                    obj.insert("scope".into(), scope.as_str().into());
                }
                RejectionKind::InsufficientUserAuthentication {
                    acr_values,
                    max_age,
                } => {
                    if let Some(acr) = acr_values {
                        obj.insert("acr_values".into(), acr.as_str().into());
                    }
                    if let Some(age) = max_age {
                        obj.insert("max_age".into(), (*age).into());
                    }
                }
                RejectionKind::TooManyRequests { retry_after }
                | RejectionKind::Unavailable { retry_after } => {
                    obj.insert("retry_after".into(), (*retry_after).into());
                }
                _ => {}
            }
        }
        body
    }
}

/// Appends `value` to a quoted-string, keeping only the characters RFC 6750 §3 allows in
/// `error_description` and `scope` (printable ASCII without `"` and `\`).
fn push_quoted_text(out: &mut String, value: &str) {
    for c in value.chars() {
        if (' '..='~').contains(&c) && c != '"' && c != '\\' {
            out.push(c);
        }
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status();
        let decision = self.decision();
        let body = self.problem_body();
        let mut response = (status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let Some(challenge) = self.challenge() {
            // Every character was filtered to visible ASCII above, so this cannot fail; if it
            // ever did, a bare challenge is still correct.
            let value = HeaderValue::from_str(&challenge)
                .unwrap_or_else(|_| HeaderValue::from_static("Bearer"));
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if let RejectionKind::TooManyRequests { retry_after }
        | RejectionKind::Unavailable { retry_after } = self.kind
        {
            let mut v = String::new();
            let _ = write!(v, "{retry_after}");
            if let Ok(value) = HeaderValue::from_str(&v) {
                headers.insert(header::RETRY_AFTER, value);
            }
        }
        let mut context = self.context.map(|c| *c).unwrap_or_default();
        context.set_decision(decision);
        response.extensions_mut().insert(context);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Reason = Reason::new("x.y", "A \"quoted\" \\ description\u{7f}.");

    #[test]
    fn missing_credentials_has_bare_challenge_without_error() {
        let r = Rejection::new(RejectionKind::MissingCredentials, R);
        assert_eq!(r.challenge().as_deref(), Some("Bearer"));
        let r = r.with_realm("api");
        assert_eq!(r.challenge().as_deref(), Some("Bearer realm=\"api\""));
    }

    #[test]
    fn quoted_values_drop_forbidden_characters() {
        let r = Rejection::new(RejectionKind::InvalidToken, R);
        assert_eq!(
            r.challenge().as_deref(),
            Some("Bearer error=\"invalid_token\", error_description=\"A quoted  description.\"")
        );
    }

    #[test]
    fn step_up_challenge_follows_rfc_9470() {
        let r = Rejection::new(
            RejectionKind::InsufficientUserAuthentication {
                acr_values: Some("urn:mace:incommon:iap:silver".into()),
                max_age: Some(300),
            },
            Reason::new("stepup.acr", "A stronger authentication level is required."),
        );
        assert_eq!(
            r.challenge().as_deref(),
            Some(
                "Bearer error=\"insufficient_user_authentication\", \
                 error_description=\"A stronger authentication level is required.\", \
                 acr_values=\"urn:mace:incommon:iap:silver\", max_age=\"300\""
            )
        );
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn unavailable_has_retry_after_and_no_challenge() {
        let resp = Rejection::new(RejectionKind::Unavailable { retry_after: 7 }, R).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
        assert!(resp.headers().get(header::WWW_AUTHENTICATE).is_none());
        let zt = resp
            .extensions()
            .get::<ZeroTrust>()
            .map(|z| z.decision().copied());
        assert_eq!(zt.flatten().map(|d| d.outcome), Some(Outcome::Error));
    }

    #[test]
    fn insufficient_scope_names_the_scope() {
        let r = Rejection::new(
            RejectionKind::InsufficientScope {
                scope: "reports:write".into(),
            },
            R,
        );
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        assert!(
            r.challenge()
                .is_some_and(|c| c.contains("error=\"insufficient_scope\"")
                    && c.ends_with("scope=\"reports:write\""))
        );
    }
}

//! Where the bearer token is read from, and the request-level checks around it.

use http::header::{AUTHORIZATION, COOKIE};
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use zerotrust_core::{Reason, RejectionKind};

use crate::error::reasons;

/// Where [`JwtVerifyLayer`](crate::JwtVerifyLayer) looks for the token.
///
/// Whatever the source, a request is refused with 400 `invalid_request` when it carries the
/// token more than once (two `Authorization` headers, two cookies of the name) or carries an
/// `access_token` in the URL query (RFC 6750 §2.3 is the one method this crate never accepts: URLs
/// end up in logs).
///
/// ```
/// use zerotrust_jwt::TokenSource;
///
/// let from_cookie = TokenSource::cookie("__Host-access_token");
/// let from_header = TokenSource::header(http::HeaderName::from_static("x-access-token"));
/// # let _ = (from_cookie, from_header);
/// ```
#[derive(Debug, Clone, Default)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>` (scheme case-insensitive). The default.
    #[default]
    AuthorizationBearer,
    /// The whole value of a named header.
    Header(HeaderName),
    /// The value of a named cookie.
    Cookie(String),
}

impl TokenSource {
    /// The token is the value of header `name`.
    pub fn header(name: HeaderName) -> Self {
        TokenSource::Header(name)
    }

    /// The token is the value of cookie `name`.
    pub fn cookie(name: impl Into<String>) -> Self {
        TokenSource::Cookie(name.into())
    }
}

/// A request-level refusal: kind and reason.
pub(crate) type Refusal = (RejectionKind, Reason);

fn invalid_request(reason: Reason) -> Refusal {
    (RejectionKind::InvalidRequest, reason)
}

/// RFC 6750 `b64token`: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// Not checked on extraction: every compact JWS is a b64token, so the verifier checks this only
/// for tokens its parser refused, to answer 400 rather than 401.
pub(crate) fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// A header value as text. `HeaderValue` already excludes control bytes but tab; `from_utf8`
/// has a fast ASCII path where `HeaderValue::to_str` tests byte by byte. Whatever else is not a
/// token character is refused by the verifier's parser.
fn header_text(value: &HeaderValue) -> Result<&str, Refusal> {
    std::str::from_utf8(value.as_bytes())
        .map_err(|_| invalid_request(reasons::MALFORMED_CREDENTIALS))
}

fn query_has_token(uri: &Uri) -> bool {
    let Some(query) = uri.query() else {
        return false;
    };
    // Fast path: the parameter name, plain or percent-encoded, cannot be there.
    if !query.contains("access") && !query.contains('%') {
        return false;
    }
    form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == "access_token")
}

/// Reads the token from `headers` as `source` says.
pub(crate) fn extract(
    source: &TokenSource,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<String, Refusal> {
    if query_has_token(uri) {
        return Err(invalid_request(reasons::TOKEN_IN_QUERY));
    }
    let token = match source {
        TokenSource::AuthorizationBearer => {
            let mut values = headers.get_all(AUTHORIZATION).iter();
            let value = match (values.next(), values.next()) {
                (None, _) => return Err((RejectionKind::MissingCredentials, reasons::MISSING)),
                (Some(_), Some(_)) => return Err(invalid_request(reasons::MULTIPLE_CREDENTIALS)),
                (Some(v), None) => v,
            };
            let text = header_text(value)?;
            let (scheme, rest) = text.split_once(' ').unwrap_or((text, ""));
            if !scheme.eq_ignore_ascii_case("bearer") {
                // Other schemes (Basic, DPoP, ...) carry no bearer token: challenge for one.
                return Err((RejectionKind::MissingCredentials, reasons::MISSING));
            }
            rest.trim_matches(' ')
        }
        TokenSource::Header(name) => {
            let mut values = headers.get_all(name).iter();
            let value = match (values.next(), values.next()) {
                (None, _) => return Err((RejectionKind::MissingCredentials, reasons::MISSING)),
                (Some(_), Some(_)) => return Err(invalid_request(reasons::MULTIPLE_CREDENTIALS)),
                (Some(v), None) => v,
            };
            header_text(value)?.trim_matches(' ')
        }
        TokenSource::Cookie(name) => {
            let mut found: Option<&str> = None;
            for header in headers.get_all(COOKIE) {
                let Ok(text) = header.to_str() else {
                    continue;
                };
                for pair in text.split(';') {
                    let Some((k, v)) = pair.trim().split_once('=') else {
                        continue;
                    };
                    if k == name {
                        if found.is_some() {
                            return Err(invalid_request(reasons::MULTIPLE_CREDENTIALS));
                        }
                        found = Some(v.trim_matches('"'));
                    }
                }
            }
            found.ok_or((RejectionKind::MissingCredentials, reasons::MISSING))?
        }
    };
    if token.is_empty() {
        return Err(invalid_request(reasons::MALFORMED_CREDENTIALS));
    }
    Ok(token.to_owned())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[allow(clippy::needless_pass_by_value)] // called on fresh results
    fn code(r: Result<String, Refusal>) -> &'static str {
        match r {
            Ok(_) => "ok",
            Err((_, reason)) => reason.code(),
        }
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let uri = Uri::from_static("/");
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi",
        ] {
            let h = headers(&[("authorization", v)]);
            assert_eq!(
                extract(&TokenSource::AuthorizationBearer, &uri, &h)
                    .ok()
                    .as_deref(),
                Some("abc.def.ghi")
            );
        }
    }

    #[test]
    fn request_level_refusals() {
        let src = TokenSource::AuthorizationBearer;
        let root = Uri::from_static("/");
        assert_eq!(code(extract(&src, &root, &headers(&[]))), "token.missing");
        assert_eq!(
            code(extract(
                &src,
                &root,
                &headers(&[("authorization", "Basic dTpw")])
            )),
            "token.missing"
        );
        assert_eq!(
            code(extract(
                &src,
                &root,
                &headers(&[
                    ("authorization", "Bearer a.b.c"),
                    ("authorization", "Bearer a.b.c")
                ])
            )),
            "request.multiple_credentials"
        );
        assert_eq!(
            code(extract(
                &src,
                &root,
                &headers(&[("authorization", "Bearer ")])
            )),
            "request.malformed_credentials"
        );
        // Token syntax is the verifier's to check (only when its parser refuses the token).
        assert_eq!(
            code(extract(
                &src,
                &root,
                &headers(&[("authorization", "Bearer a b")])
            )),
            "ok"
        );
        assert!(!is_b64token("a b"));
        assert!(!is_b64token("=="));
        assert!(is_b64token("aZ09-._~+/=="));
        for q in ["/x?access_token=a.b.c", "/x?a=1&access%5Ftoken=z"] {
            assert_eq!(
                code(extract(
                    &src,
                    &Uri::from_static(q),
                    &headers(&[("authorization", "Bearer a.b.c")])
                )),
                "request.token_in_query"
            );
        }
        assert_eq!(
            code(extract(
                &src,
                &Uri::from_static("/x?accessible=1"),
                &headers(&[("authorization", "Bearer a.b.c")])
            )),
            "ok"
        );
    }

    #[test]
    fn cookie_source_refuses_duplicates() {
        let src = TokenSource::cookie("at");
        let root = Uri::from_static("/");
        assert_eq!(
            extract(&src, &root, &headers(&[("cookie", "x=1; at=a.b.c")]))
                .ok()
                .as_deref(),
            Some("a.b.c")
        );
        assert_eq!(
            code(extract(
                &src,
                &root,
                &headers(&[("cookie", "at=a.b.c"), ("cookie", "at=d.e.f")])
            )),
            "request.multiple_credentials"
        );
    }
}

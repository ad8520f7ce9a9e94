//! Forwarding one request to its upstream, and its response back, both bodies streamed.
//!
//! - The URL: the upstream's base path, then the request path (without the route prefix when
//!   `strip_prefix`), then the query.
//! - Hop-by-hop headers (RFC 9110 §7.6.1) are removed in both directions: `Connection` and every
//!   header it names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`.
//!   Protocol upgrades (WebSocket) are therefore not proxied.
//! - `Host`: the upstream's authority, unless the route sets `preserve_host`; the client's `Host`
//!   travels in `X-Forwarded-Host` and `Forwarded: host=`.
//! - `X-Forwarded-For` and `Forwarded`: when the socket peer is a trusted proxy, its entries are
//!   kept and the peer is appended; otherwise whatever the client sent is dropped and the list
//!   starts at the peer. `X-Forwarded-Proto` and `X-Forwarded-Host` are always set by the gateway.
//! - `Authorization` is removed unless the route sets `forward_authorization`.
//! - The identity assertion is attached last ([`crate::identity`]).
//! - No answer from the upstream: 502 (connection refused or reset, or a TLS handshake that
//!   fails, such as a certificate not issued by the trusted CAs) or 504 (no response headers
//!   within the timeout), with an RFC 9457 problem body; a request body that stalls before the
//!   upstream answered: 408.
//! - Both bodies stream through [`IdleTimeout`]: a sender that stalls for
//!   `upstream.body_idle_timeout_ms` ends the stream with an error.

use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use ipnet::IpNet;
use zerotrust_core::{PeerCertificate, ZeroTrust};

use crate::body::{Direction, IdleTimeout, is_idle_timeout};
use crate::client::HttpClient;
use crate::identity::Signer;
use crate::problem;

/// Facts about the connection a request came in on, set by the acceptor.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inbound {
    pub(crate) peer: SocketAddr,
    pub(crate) tls: bool,
}

/// A parsed upstream URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    scheme: Scheme,
    authority: Authority,
    /// The base path, without a trailing `/` (empty for `/`).
    base: String,
    /// `scheme://authority`, the assertion's audience.
    origin: String,
}

impl Upstream {
    /// Parses `http://host:port[/base]` or `https://host:port[/base]`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let uri: Uri = text
            .parse()
            .map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        let scheme = uri
            .scheme()
            .cloned()
            .ok_or_else(|| format!("{text:?} has no scheme"))?;
        if scheme != Scheme::HTTP && scheme != Scheme::HTTPS {
            return Err(format!(
                "{text:?}: only http:// and https:// upstreams are supported (scheme {scheme})"
            ));
        }
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| format!("{text:?} has no host"))?;
        if authority.as_str().contains('@') {
            return Err(format!("{text:?}: user information is not allowed"));
        }
        if uri.query().is_some() {
            return Err(format!("{text:?}: a query is not allowed"));
        }
        let base = uri.path().trim_end_matches('/').to_owned();
        let origin = format!("{scheme}://{authority}");
        Ok(Self {
            scheme,
            authority,
            base,
            origin,
        })
    }

    /// `scheme://authority`.
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// Whether the upstream is reached over TLS.
    pub(crate) fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

/// A route's forwarding target and options.
pub(crate) struct Target {
    pub(crate) prefix: String,
    /// `prefix`, shared with the bodies' idle timers for their metric label.
    pub(crate) route: Arc<str>,
    /// The pooled client: the plain one, or this route's TLS client.
    pub(crate) client: HttpClient,
    pub(crate) upstream: Upstream,
    pub(crate) strip_prefix: bool,
    pub(crate) preserve_host: bool,
    pub(crate) forward_authorization: bool,
}

/// What [`Forward`] shares between requests.
pub(crate) struct Shared {
    pub(crate) signer: Arc<Signer>,
    pub(crate) trusted_proxies: Vec<IpNet>,
    pub(crate) response_timeout: Duration,
    pub(crate) body_idle_timeout: Duration,
}

/// The innermost service of a route: sends the request upstream.
#[derive(Clone)]
pub(crate) struct Forward {
    pub(crate) target: Arc<Target>,
    pub(crate) shared: Arc<Shared>,
}

impl tower::Service<Request<Body>> for Forward {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let target = self.target.clone();
        let shared = self.shared.clone();
        // Boxed: the upstream exchange is async I/O of unknown type. One allocation per request.
        Box::pin(async move { Ok(forward(&target, &shared, req).await) })
    }
}

async fn forward(target: &Target, shared: &Shared, req: Request<Body>) -> Response<Body> {
    let route = target.prefix.clone();
    let (mut parts, body) = req.into_parts();
    let Some(path_and_query) = upstream_path(target, &parts.uri) else {
        return problem::bad_request_path();
    };
    let path = path_and_query.path().to_owned();
    let query = path_and_query.query().map(str::to_owned);
    let uri = match Uri::builder()
        .scheme(target.upstream.scheme.clone())
        .authority(target.upstream.authority.clone())
        .path_and_query(path_and_query)
        .build()
    {
        Ok(uri) => uri,
        Err(_) => return problem::bad_request_path(),
    };
    let inbound = parts.extensions.get::<Inbound>().copied();
    let client_host = parts.headers.get(header::HOST).cloned().or_else(|| {
        parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });

    let headers = &mut parts.headers;
    remove_hop_by_hop(headers);
    if !target.forward_authorization {
        headers.remove(header::AUTHORIZATION);
    }
    if let Some(inbound) = inbound {
        let trusted = shared
            .trusted_proxies
            .iter()
            .any(|n| n.contains(&inbound.peer.ip().to_canonical()));
        set_forwarding(headers, inbound, trusted, client_host.as_ref());
    }
    if !target.preserve_host {
        if let Ok(v) = HeaderValue::from_str(target.upstream.authority.as_str()) {
            headers.insert(header::HOST, v);
        }
    } else if let Some(host) = client_host {
        headers.insert(header::HOST, host);
    }
    let zt = parts.extensions.get::<ZeroTrust>();
    let cert = parts.extensions.get::<PeerCertificate>();
    if shared
        .signer
        .attach(
            headers,
            zt,
            cert,
            target.upstream.origin(),
            &parts.method,
            &path,
            query.as_deref(),
        )
        .is_err()
    {
        tracing::error!(target: "ztgate", route = %route, "cannot sign the identity assertion");
        return problem::internal();
    }

    let idle = shared.body_idle_timeout;
    let body = Body::new(IdleTimeout::new(
        body,
        idle,
        target.route.clone(),
        Direction::Request,
    ));
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.uri_mut() = uri;
    *out.headers_mut() = parts.headers;
    // HTTP/1.1 on the wire, unless a TLS upstream picked HTTP/2 by ALPN (the client then speaks
    // HTTP/2 on that connection, whatever this says).
    *out.version_mut() = http::Version::HTTP_11;

    let started = std::time::Instant::now();
    let sent = tokio::time::timeout(shared.response_timeout, target.client.request(out)).await;
    let result = match sent {
        Err(_) => Err(("timeout", problem::gateway_timeout())),
        // Counted by the idle timer itself.
        Ok(Err(error)) if is_idle_timeout(&error) => {
            return problem::request_body_timeout();
        }
        Ok(Err(error)) => {
            tracing::warn!(
                target: "ztgate",
                route = %route,
                error = %ErrorChain(&error),
                "upstream request failed"
            );
            Err(("unavailable", problem::bad_gateway()))
        }
        Ok(Ok(response)) => Ok(response),
    };
    match result {
        Err((kind, response)) => {
            metrics::counter!("ztgate_upstream_errors_total", "route" => route, "kind" => kind)
                .increment(1);
            response
        }
        Ok(response) => {
            metrics::histogram!("ztgate_upstream_header_seconds", "route" => route)
                .record(started.elapsed().as_secs_f64());
            let (mut parts, body) = response.into_parts();
            remove_hop_by_hop(&mut parts.headers);
            let body = IdleTimeout::new(body, idle, target.route.clone(), Direction::Response);
            Response::from_parts(parts, Body::new(body))
        }
    }
}

/// An error with its sources, `a: b: c` (hyper's errors say little without their causes, such
/// as the certificate problem of a failed TLS handshake).
struct ErrorChain<'a>(&'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        for _ in 0..8 {
            let Some(e) = source else { break };
            write!(f, ": {e}")?;
            source = e.source();
        }
        Ok(())
    }
}

/// The path and query sent upstream.
fn upstream_path(target: &Target, uri: &Uri) -> Option<PathAndQuery> {
    let path = uri.path();
    let rest = if target.strip_prefix {
        let rest = path.get(target.prefix.trim_end_matches('/').len()..)?;
        if rest.is_empty() { "/" } else { rest }
    } else {
        path
    };
    let mut out = String::with_capacity(target.upstream.base.len() + rest.len() + 16);
    out.push_str(&target.upstream.base);
    out.push_str(rest);
    if let Some(q) = uri.query() {
        out.push('?');
        out.push_str(q);
    }
    PathAndQuery::try_from(out).ok()
}

/// Removes the hop-by-hop headers of RFC 9110 §7.6.1.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        headers.remove(name);
    }
    let proxy: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy {
        headers.remove(name);
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

fn set_forwarding(
    headers: &mut HeaderMap,
    inbound: Inbound,
    trusted: bool,
    host: Option<&HeaderValue>,
) {
    let peer = inbound.peer.ip().to_canonical();
    let proto = if inbound.tls { "https" } else { "http" };
    let joined = |headers: &HeaderMap, name: &HeaderName| -> Option<String> {
        let values: Vec<&str> = headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        (!values.is_empty()).then(|| values.join(", "))
    };
    let (xff_before, fwd_before) = if trusted {
        (
            joined(headers, &X_FORWARDED_FOR),
            joined(headers, &header::FORWARDED),
        )
    } else {
        (None, None)
    };
    let xff = match xff_before {
        Some(before) => format!("{before}, {peer}"),
        None => peer.to_string(),
    };
    let mut element = format!("for={}", forwarded_node(peer));
    element.push_str(";proto=");
    element.push_str(proto);
    if let Some(host) = host.and_then(|h| h.to_str().ok())
        && host
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
    {
        element.push_str(";host=\"");
        element.push_str(host);
        element.push('"');
    }
    let fwd = match fwd_before {
        Some(before) => format!("{before}, {element}"),
        None => element,
    };
    headers.remove(&X_FORWARDED_FOR);
    headers.remove(header::FORWARDED);
    headers.remove(&X_FORWARDED_PROTO);
    headers.remove(&X_FORWARDED_HOST);
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if let Ok(v) = HeaderValue::from_str(&fwd) {
        headers.insert(header::FORWARDED, v);
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Some(host) = host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
}

/// An RFC 7239 node: IPv6 addresses bracketed and quoted.
fn forwarded_node(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("\"[{v6}]\""),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn target(prefix: &str, upstream: &str, strip: bool) -> Target {
        Target {
            prefix: prefix.into(),
            route: Arc::from(prefix),
            client: crate::client::plain(&crate::config::UpstreamConfig::default()).unwrap(),
            upstream: Upstream::parse(upstream).unwrap(),
            strip_prefix: strip,
            preserve_host: false,
            forward_authorization: false,
        }
    }

    #[test]
    fn paths_join_base_and_strip_prefix() {
        let uri: Uri = "/api/x?q=1".parse().unwrap();
        let t = target("/api", "http://u:1/base/", false);
        assert_eq!(upstream_path(&t, &uri).unwrap(), "/base/api/x?q=1");
        let t = target("/api", "http://u:1", true);
        assert_eq!(upstream_path(&t, &uri).unwrap(), "/x?q=1");
        let uri: Uri = "/api".parse().unwrap();
        assert_eq!(upstream_path(&t, &uri).unwrap(), "/");
    }

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "close, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("proxy-authorization", "Basic x".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("trailer", "x".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        remove_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn forwarding_headers_are_replaced_from_untrusted_peers_and_appended_from_trusted() {
        let inbound = Inbound {
            peer: "10.0.0.5:1234".parse().unwrap(),
            tls: true,
        };
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6".parse().unwrap());
        h.insert("forwarded", "for=6.6.6.6".parse().unwrap());
        set_forwarding(&mut h, inbound, false, None);
        assert_eq!(h["x-forwarded-for"], "10.0.0.5");
        assert_eq!(h["forwarded"], "for=10.0.0.5;proto=https");
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", "1.1.1.1".parse().unwrap());
        h.append("x-forwarded-for", "2.2.2.2".parse().unwrap());
        let host = HeaderValue::from_static("gw.example");
        set_forwarding(&mut h, inbound, true, Some(&host));
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 2.2.2.2, 10.0.0.5");
        assert_eq!(
            h["forwarded"],
            "for=10.0.0.5;proto=https;host=\"gw.example\""
        );
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "gw.example");
    }

    #[test]
    fn http_and_https_upstreams_without_userinfo_are_accepted() {
        assert!(Upstream::parse("http://127.0.0.1:8080").is_ok());
        let tls = Upstream::parse("https://billing.internal:8443/v1").unwrap();
        assert!(tls.is_https());
        assert_eq!(tls.origin(), "https://billing.internal:8443");
        assert!(Upstream::parse("ftp://x").is_err());
        assert!(Upstream::parse("http://u:p@x").is_err());
        assert!(Upstream::parse("/relative").is_err());
    }
}

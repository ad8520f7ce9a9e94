//! The client's IP address, which nobody can spoof: the socket peer, and forwarding headers only
//! when that peer is a trusted proxy.

use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, Request};
use ipnet::IpNet;

use crate::rejection::{Reason, Rejection, RejectionKind};

/// Reasons for refusing a request whose forwarding headers cannot be believed.
pub mod reasons {
    use crate::rejection::Reason;

    /// A forwarding header came from a trusted proxy but an entry in it is not an address
    /// (garbage, `unknown`, an obfuscated identifier, several values where one is expected).
    pub const FORWARDED_INVALID: Reason = Reason::new(
        "network.forwarded_invalid",
        "The request's forwarding header cannot be read.",
    );
    /// A forwarding header lists more hops than allowed.
    pub const FORWARDED_TOO_LONG: Reason = Reason::new(
        "network.forwarded_too_long",
        "The request's forwarding header lists too many hops.",
    );
    /// No socket peer address is known: the server was not set up to record it.
    pub const PEER_UNKNOWN: Reason = Reason::new(
        "network.peer_unknown",
        "The client's address cannot be determined.",
    );
}

/// The socket peer, as an extension an acceptor sets on each request (for servers that do not
/// use axum's `ConnectInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr(pub SocketAddr);

impl PeerAddr {
    /// The socket peer of a request: its `PeerAddr` extension, else axum's
    /// `ConnectInfo<SocketAddr>`.
    pub fn of(extensions: &http::Extensions) -> Option<SocketAddr> {
        extensions.get::<PeerAddr>().map(|p| p.0).or_else(|| {
            extensions
                .get::<axum::extract::ConnectInfo<SocketAddr>>()
                .map(|c| c.0)
        })
    }
}

/// Where a proxy puts the address it received the request from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ForwardedSource {
    /// No header is believed: the client is the socket peer. The default.
    #[default]
    None,
    /// `X-Forwarded-For: client, proxy1, proxy2`.
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client;proto=https, for=proxy1`.
    Forwarded,
    /// A header holding exactly one address, such as `X-Real-IP`, set by the one trusted proxy.
    SingleValue(HeaderName),
}

/// What to do when a trusted proxy's header holds an entry that is not an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnInvalidForwarded {
    /// Refuse the request with 400. The default.
    #[default]
    Reject,
    /// Take the last trusted hop as the client: the walk stops there, no entry is skipped.
    UseLastTrustedHop,
}

/// How the client address was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientIpOrigin {
    /// The socket peer itself.
    Peer,
    /// An entry of a forwarding header, believed because every hop after it is trusted.
    Forwarded,
    /// The last trusted hop, because the header held an unreadable entry before it.
    LastTrustedHop,
}

/// The client's address, as a [`ClientIpResolver`] determined it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp {
    addr: IpAddr,
    origin: ClientIpOrigin,
}

impl ClientIp {
    /// The address (IPv4-mapped IPv6 addresses are given as IPv4).
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// How the address was found.
    pub fn origin(&self) -> ClientIpOrigin {
        self.origin
    }
}

/// Why no client address could be determined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClientIpError {
    /// An entry of a trusted proxy's header is not an address.
    #[error("a forwarding header entry is not an address")]
    Invalid,
    /// The header lists more entries than the configured bound.
    #[error("a forwarding header lists too many hops")]
    TooLong,
    /// The request carries no socket peer address.
    #[error("no peer address on the request")]
    NoPeer,
}

impl ClientIpError {
    /// The stable reason.
    pub fn reason(self) -> Reason {
        match self {
            ClientIpError::Invalid => reasons::FORWARDED_INVALID,
            ClientIpError::TooLong => reasons::FORWARDED_TOO_LONG,
            ClientIpError::NoPeer => reasons::PEER_UNKNOWN,
        }
    }

    /// The answer: 400 for a header that cannot be believed, 500 when the server never recorded
    /// the peer (a deployment fault, not the client's).
    pub fn rejection(self) -> Rejection {
        let kind = match self {
            ClientIpError::Invalid | ClientIpError::TooLong => RejectionKind::InvalidRequest,
            ClientIpError::NoPeer => RejectionKind::Internal,
        };
        Rejection::new(kind, self.reason()).with_layer("client_ip")
    }
}

/// Determines the client's address, shared by every layer that needs it.
///
/// By default only the socket peer counts. Forwarding headers are believed only when the peer is
/// in the trusted-proxy list, and only from the one configured source; the list is walked from
/// the right and the first address that is not a trusted proxy is the client. Every header line
/// of the source is part of one list. An entry that is not an address stops the walk and fails
/// closed, never skipped.
///
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use http::HeaderMap;
/// use zerotrust_core::{ClientIpResolver, ForwardedSource};
///
/// let resolver = ClientIpResolver::builder()
///     .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
///     .source(ForwardedSource::XForwardedFor)
///     .build();
/// let mut headers = HeaderMap::new();
/// headers.insert("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.7".parse().unwrap());
///
/// // From the trusted load balancer: 10.0.0.7 is trusted, 203.0.113.9 is not: the client.
/// let lb = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
/// assert_eq!(resolver.resolve(lb, &headers).unwrap().addr().to_string(), "203.0.113.9");
///
/// // Straight from the internet: the header is ignored.
/// let direct = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
/// assert_eq!(resolver.resolve(direct, &headers).unwrap().addr(), direct);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ClientIpResolver {
    trusted: Vec<IpNet>,
    source: ForwardedSource,
    on_invalid: OnInvalidForwarded,
    max_entries: usize,
}

/// Builds a [`ClientIpResolver`].
#[derive(Debug, Clone)]
pub struct ClientIpResolverBuilder {
    resolver: ClientIpResolver,
}

impl ClientIpResolverBuilder {
    /// The proxies whose forwarding headers are believed. Nothing is trusted by default.
    pub fn trusted_proxies(mut self, nets: impl IntoIterator<Item = IpNet>) -> Self {
        self.resolver
            .trusted
            .extend(nets.into_iter().map(|n| n.trunc()));
        self
    }

    /// The one header the trusted proxies set.
    pub fn source(mut self, source: ForwardedSource) -> Self {
        self.resolver.source = source;
        self
    }

    /// What to do with an unreadable entry (default: refuse with 400).
    ///
    /// **Relaxation:** [`OnInvalidForwarded::UseLastTrustedHop`] lets the request through with the
    /// last trusted proxy as its address, so per-client rules (rate limits, geo) see the proxy.
    pub fn on_invalid(mut self, on_invalid: OnInvalidForwarded) -> Self {
        self.resolver.on_invalid = on_invalid;
        self
    }

    /// The most entries a forwarding header list may hold (default 20); longer lists are refused.
    pub fn max_entries(mut self, max: usize) -> Self {
        self.resolver.max_entries = max.max(1);
        self
    }

    /// The resolver.
    pub fn build(self) -> ClientIpResolver {
        self.resolver
    }
}

/// One entry of a forwarding list, read.
enum Hop {
    Addr(IpAddr),
    Unreadable,
}

impl ClientIpResolver {
    /// The default bound on forwarding list entries.
    pub const DEFAULT_MAX_ENTRIES: usize = 20;

    /// The socket peer and nothing else.
    pub fn peer_only() -> Self {
        Self::builder().build()
    }

    /// A builder, starting from [`peer_only`](Self::peer_only).
    pub fn builder() -> ClientIpResolverBuilder {
        ClientIpResolverBuilder {
            resolver: ClientIpResolver {
                max_entries: Self::DEFAULT_MAX_ENTRIES,
                ..ClientIpResolver::default()
            },
        }
    }

    fn is_trusted(&self, addr: IpAddr) -> bool {
        self.trusted.iter().any(|net| net.contains(&addr))
    }

    /// The client address of `req`: its peer from a [`PeerAddr`] extension or axum's
    /// `ConnectInfo<SocketAddr>`, and its headers.
    pub fn resolve_request<B>(&self, req: &Request<B>) -> Result<ClientIp, ClientIpError> {
        let peer = PeerAddr::of(req.extensions()).ok_or(ClientIpError::NoPeer)?;
        self.resolve(peer.ip(), req.headers())
    }

    /// The client address, given the socket peer and the request headers.
    pub fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> Result<ClientIp, ClientIpError> {
        let peer = peer.to_canonical();
        let from_peer = ClientIp {
            addr: peer,
            origin: ClientIpOrigin::Peer,
        };
        if !self.is_trusted(peer) {
            return Ok(from_peer);
        }
        let hops = match &self.source {
            ForwardedSource::None => return Ok(from_peer),
            ForwardedSource::XForwardedFor => self.list(
                headers,
                &HeaderName::from_static("x-forwarded-for"),
                read_addr,
            )?,
            ForwardedSource::Forwarded => {
                self.list(headers, &http::header::FORWARDED, read_forwarded)?
            }
            ForwardedSource::SingleValue(name) => {
                let mut values = headers.get_all(name).iter();
                match (values.next(), values.next()) {
                    (None, _) => Vec::new(),
                    (Some(v), None) => {
                        let text = v.to_str().unwrap_or("");
                        if text.contains(',') {
                            vec![Hop::Unreadable]
                        } else {
                            vec![read_addr(text)]
                        }
                    }
                    (Some(_), Some(_)) => vec![Hop::Unreadable],
                }
            }
        };
        // Walk from the right: every hop that is a trusted proxy vouches for the one before it.
        let mut last_trusted = peer;
        for hop in hops.iter().rev() {
            match hop {
                Hop::Addr(addr) if self.is_trusted(*addr) => last_trusted = *addr,
                Hop::Addr(addr) => {
                    return Ok(ClientIp {
                        addr: *addr,
                        origin: ClientIpOrigin::Forwarded,
                    });
                }
                Hop::Unreadable => {
                    return match self.on_invalid {
                        OnInvalidForwarded::Reject => Err(ClientIpError::Invalid),
                        OnInvalidForwarded::UseLastTrustedHop => Ok(ClientIp {
                            addr: last_trusted,
                            origin: ClientIpOrigin::LastTrustedHop,
                        }),
                    };
                }
            }
        }
        // Every hop is trusted (or there is none): the leftmost is the client, inside the trusted
        // network.
        Ok(ClientIp {
            addr: last_trusted,
            origin: if hops.is_empty() {
                ClientIpOrigin::Peer
            } else {
                ClientIpOrigin::Forwarded
            },
        })
    }

    /// Every line of header `name`, as one list of hops, bounded.
    fn list(
        &self,
        headers: &HeaderMap,
        name: &HeaderName,
        read: fn(&str) -> Hop,
    ) -> Result<Vec<Hop>, ClientIpError> {
        let mut hops = Vec::new();
        for value in headers.get_all(name) {
            let Ok(text) = value.to_str() else {
                hops.push(Hop::Unreadable);
                continue;
            };
            for entry in text.split(',') {
                if hops.len() == self.max_entries {
                    return Err(ClientIpError::TooLong);
                }
                hops.push(read(entry));
            }
        }
        Ok(hops)
    }
}

/// An address with an optional port: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]`,
/// `[2001:db8::1]:443`. Anything else (empty, `unknown`, `_hidden`, a name) is unreadable.
fn read_addr(text: &str) -> Hop {
    let text = text.trim_matches(|c| c == ' ' || c == '\t');
    let parsed = if let Some(rest) = text.strip_prefix('[') {
        rest.split_once(']').and_then(|(ip, tail)| {
            let port_ok = tail.is_empty()
                || tail
                    .strip_prefix(':')
                    .is_some_and(|p| p.parse::<u16>().is_ok());
            port_ok.then(|| ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6))?
        })
    } else if let Ok(ip) = text.parse::<IpAddr>() {
        Some(ip)
    } else {
        text.parse::<SocketAddr>()
            .ok()
            .filter(SocketAddr::is_ipv4)
            .map(|s| s.ip())
    };
    match parsed {
        Some(ip) => Hop::Addr(ip.to_canonical()),
        None => Hop::Unreadable,
    }
}

/// One RFC 7239 forwarded-element: its `for` parameter (case-insensitive name; token or quoted
/// string). An element without `for`, or with it twice, is unreadable.
fn read_forwarded(element: &str) -> Hop {
    let mut found = None;
    for pair in element.split(';') {
        let Some((name, value)) = pair.trim().split_once('=') else {
            return Hop::Unreadable;
        };
        if !name.trim().eq_ignore_ascii_case("for") {
            continue;
        }
        if found.is_some() {
            return Hop::Unreadable;
        }
        let value = value.trim();
        let value = match value.strip_prefix('"') {
            Some(quoted) => match quoted.strip_suffix('"') {
                Some(inner) if !inner.contains(['"', '\\']) => inner,
                _ => return Hop::Unreadable,
            },
            None => value,
        };
        found = Some(value);
    }
    found.map_or(Hop::Unreadable, read_addr)
}

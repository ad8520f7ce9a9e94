//! ClientIpResolver: a table of spoofing attempts and proxy chains, and real sockets on
//! 127.0.0.1 where the peer matters.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::routing::get;
use http::{HeaderMap, HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use zerotrust_core::{
    ClientIpError, ClientIpOrigin, ClientIpResolver, ForwardedSource, OnInvalidForwarded,
};

const LB: &str = "10.0.0.2"; // a trusted load balancer
const INTERNET: &str = "198.51.100.7"; // an untrusted peer

fn resolver(source: ForwardedSource) -> ClientIpResolver {
    ClientIpResolver::builder()
        .trusted_proxies([
            "10.0.0.0/8".parse().unwrap(),
            "2001:db8:ffff::/48".parse().unwrap(),
            "127.0.0.1/32".parse().unwrap(),
        ])
        .source(source)
        .build()
}

fn headers(name: &str, lines: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
    for line in lines {
        h.append(name.clone(), HeaderValue::from_str(line).unwrap());
    }
    h
}

/// `Ok(address)` or `Err(())` for a refusal.
type Expect = Result<&'static str, ClientIpError>;

struct Case {
    name: &'static str,
    source: ForwardedSource,
    peer: &'static str,
    header: &'static str,
    lines: &'static [&'static str],
    expect: Expect,
}

fn case(
    source: ForwardedSource,
    header: &'static str,
) -> impl Fn(&'static str, &'static str, &'static [&'static str], Expect) -> Case {
    move |name, peer, lines, expect| Case {
        name,
        source: source.clone(),
        peer,
        header,
        lines,
        expect,
    }
}

fn cases() -> Vec<Case> {
    use ClientIpError::{Invalid, TooLong};
    let xff = case(ForwardedSource::XForwardedFor, "x-forwarded-for");
    let fwd = case(ForwardedSource::Forwarded, "forwarded");
    let real_ip = case(
        ForwardedSource::SingleValue(HeaderName::from_static("x-real-ip")),
        "x-real-ip",
    );
    vec![
        // X-Forwarded-For
        xff(
            "spoofed XFF from an untrusted peer is ignored",
            INTERNET,
            &["1.2.3.4"],
            Ok(INTERNET),
        ),
        xff(
            "no header behind a trusted proxy: the proxy",
            LB,
            &[],
            Ok(LB),
        ),
        xff(
            "one hop behind a trusted proxy",
            LB,
            &["203.0.113.5"],
            Ok("203.0.113.5"),
        ),
        xff(
            "client spoofs a left entry; the rightmost untrusted wins",
            LB,
            &["6.6.6.6, 203.0.113.5"],
            Ok("203.0.113.5"),
        ),
        xff(
            "trusted chain: skip every trusted hop from the right",
            LB,
            &["203.0.113.5, 10.1.1.1, 10.2.2.2"],
            Ok("203.0.113.5"),
        ),
        xff(
            "all-trusted chain: the leftmost",
            LB,
            &["10.9.9.9, 10.1.1.1"],
            Ok("10.9.9.9"),
        ),
        xff(
            "several header lines are one list",
            LB,
            &["6.6.6.6", "203.0.113.5, 10.1.1.1"],
            Ok("203.0.113.5"),
        ),
        xff(
            "the right line of several counts last",
            LB,
            &["203.0.113.5", "10.1.1.1"],
            Ok("203.0.113.5"),
        ),
        xff(
            "IPv4-mapped IPv6 is canonicalised",
            LB,
            &["::ffff:203.0.113.5"],
            Ok("203.0.113.5"),
        ),
        xff(
            "mapped trusted hop is trusted",
            LB,
            &["203.0.113.5, ::ffff:10.1.1.1"],
            Ok("203.0.113.5"),
        ),
        xff("IPv6 client", LB, &["2001:db8:1::7"], Ok("2001:db8:1::7")),
        xff(
            "bracketed IPv6 with port",
            LB,
            &["[2001:db8:1::7]:4711"],
            Ok("2001:db8:1::7"),
        ),
        xff(
            "bracketed IPv6 without port",
            LB,
            &["[2001:db8:1::7]"],
            Ok("2001:db8:1::7"),
        ),
        xff(
            "IPv4 with port",
            LB,
            &["203.0.113.5:51000"],
            Ok("203.0.113.5"),
        ),
        xff(
            "spaces and tabs around entries",
            LB,
            &[" 203.0.113.5 ,\t10.1.1.1 "],
            Ok("203.0.113.5"),
        ),
        xff(
            "garbage entry fails closed",
            LB,
            &["203.0.113.5, garbage"],
            Err(Invalid),
        ),
        xff("unknown fails closed", LB, &["unknown"], Err(Invalid)),
        xff(
            "empty entry fails closed",
            LB,
            &["203.0.113.5,,10.1.1.1"],
            Err(Invalid),
        ),
        xff(
            "hostname fails closed",
            LB,
            &["client.example.com"],
            Err(Invalid),
        ),
        xff(
            "bad port fails closed",
            LB,
            &["203.0.113.5:99999"],
            Err(Invalid),
        ),
        xff(
            "unclosed bracket fails closed",
            LB,
            &["[2001:db8::1"],
            Err(Invalid),
        ),
        xff(
            "garbage left of the client is never reached",
            LB,
            &["garbage, 203.0.113.5"],
            Ok("203.0.113.5"),
        ),
        xff(
            "garbage behind trusted hops fails closed",
            LB,
            &["garbage, 10.1.1.1"],
            Err(Invalid),
        ),
        xff(
            "oversized list is refused",
            LB,
            &[
                "1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6,1.1.1.7,1.1.1.8,1.1.1.9,1.1.1.10,\
               1.1.1.11,1.1.1.12,1.1.1.13,1.1.1.14,1.1.1.15,1.1.1.16,1.1.1.17,1.1.1.18,1.1.1.19,\
               1.1.1.20,1.1.1.21",
            ],
            Err(TooLong),
        ),
        xff(
            "oversized across lines is refused",
            LB,
            &[
                "1.1.1.1,1.1.1.2,1.1.1.3,1.1.1.4,1.1.1.5,1.1.1.6,1.1.1.7,1.1.1.8,1.1.1.9,1.1.1.10",
                "1.1.1.11,1.1.1.12,1.1.1.13,1.1.1.14,1.1.1.15,1.1.1.16,1.1.1.17,1.1.1.18,1.1.1.19",
                "1.1.1.20,1.1.1.21",
            ],
            Err(TooLong),
        ),
        xff(
            "a trusted IPv6 peer",
            "2001:db8:ffff::1",
            &["203.0.113.5"],
            Ok("203.0.113.5"),
        ),
        xff(
            "a mapped trusted peer",
            "::ffff:10.0.0.2",
            &["203.0.113.5"],
            Ok("203.0.113.5"),
        ),
        xff(
            "an untrusted IPv6 peer's header is ignored",
            "2001:db8:1::9",
            &["1.2.3.4"],
            Ok("2001:db8:1::9"),
        ),
        // RFC 7239 Forwarded
        fwd(
            "Forwarded for=",
            LB,
            &["for=203.0.113.5;proto=https"],
            Ok("203.0.113.5"),
        ),
        fwd(
            "Forwarded quoted IPv6 with port",
            LB,
            &[r#"for="[2001:db8:1::7]:4711""#],
            Ok("2001:db8:1::7"),
        ),
        fwd(
            "Forwarded chain, case-insensitive name",
            LB,
            &["for=6.6.6.6, FOR=203.0.113.5;by=10.0.0.2, for=10.1.1.1"],
            Ok("203.0.113.5"),
        ),
        fwd(
            "Forwarded obfuscated identifier fails closed",
            LB,
            &["for=_hidden"],
            Err(Invalid),
        ),
        fwd(
            "Forwarded unknown fails closed",
            LB,
            &["for=unknown"],
            Err(Invalid),
        ),
        fwd(
            "Forwarded element without for fails closed",
            LB,
            &["proto=https"],
            Err(Invalid),
        ),
        fwd(
            "Forwarded for twice fails closed",
            LB,
            &["for=1.1.1.1;for=2.2.2.2"],
            Err(Invalid),
        ),
        fwd(
            "Forwarded from an untrusted peer is ignored",
            INTERNET,
            &["for=1.2.3.4"],
            Ok(INTERNET),
        ),
        fwd(
            "Forwarded unterminated quote fails closed",
            LB,
            &[r#"for="203.0.113.5"#],
            Err(Invalid),
        ),
        // Single-value header
        real_ip(
            "X-Real-IP behind the proxy",
            LB,
            &["203.0.113.5"],
            Ok("203.0.113.5"),
        ),
        real_ip(
            "X-Real-IP from an untrusted peer is ignored",
            INTERNET,
            &["1.2.3.4"],
            Ok(INTERNET),
        ),
        real_ip(
            "X-Real-IP twice fails closed",
            LB,
            &["1.1.1.1", "2.2.2.2"],
            Err(Invalid),
        ),
        real_ip(
            "X-Real-IP with a list fails closed",
            LB,
            &["1.1.1.1, 2.2.2.2"],
            Err(Invalid),
        ),
        real_ip(
            "X-Real-IP garbage fails closed",
            LB,
            &["nope"],
            Err(Invalid),
        ),
        // Headers of another source are never read.
        Case {
            name: "XFF is not read when Forwarded is the source",
            source: ForwardedSource::Forwarded,
            peer: LB,
            header: "x-forwarded-for",
            lines: &["203.0.113.5"],
            expect: Ok(LB),
        },
        Case {
            name: "peer only: every header ignored",
            source: ForwardedSource::None,
            peer: LB,
            header: "x-forwarded-for",
            lines: &["203.0.113.5"],
            expect: Ok(LB),
        },
    ]
}

#[test]
fn table_of_forwarding_cases() {
    let cases = cases();
    assert!(cases.len() >= 30);
    let mut failures = Vec::new();
    for case in &cases {
        let peer: IpAddr = case.peer.parse().unwrap();
        let got = resolver(case.source.clone())
            .resolve(peer, &headers(case.header, case.lines))
            .map(|ip| ip.addr());
        let want = case.expect.map(|s| s.parse::<IpAddr>().unwrap());
        if got != want {
            failures.push(format!("{}: got {got:?}, want {want:?}", case.name));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn unreadable_entry_can_fall_back_to_the_last_trusted_hop() {
    let resolver = ClientIpResolver::builder()
        .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
        .source(ForwardedSource::XForwardedFor)
        .on_invalid(OnInvalidForwarded::UseLastTrustedHop)
        .build();
    let ip = resolver
        .resolve(
            LB.parse().unwrap(),
            &headers("x-forwarded-for", &["1.2.3.4, unknown, 10.1.1.1"]),
        )
        .unwrap();
    assert_eq!(ip.addr().to_string(), "10.1.1.1");
    assert_eq!(ip.origin(), ClientIpOrigin::LastTrustedHop);
}

#[test]
fn refusals_are_400_with_a_reason_and_a_missing_peer_is_500() {
    let r = ClientIpError::Invalid.rejection();
    assert_eq!(r.status(), 400);
    assert_eq!(r.reason().code(), "network.forwarded_invalid");
    assert_eq!(ClientIpError::TooLong.rejection().status(), 400);
    assert_eq!(ClientIpError::NoPeer.rejection().status(), 500);
}

/// Serves the resolved client address (or the refusal code) on 127.0.0.1.
async fn serve(resolver: ClientIpResolver) -> SocketAddr {
    let app = Router::new().route(
        "/ip",
        get(move |req: Request| {
            let resolver = resolver.clone();
            async move {
                match resolver.resolve_request(&req) {
                    Ok(ip) => format!("{} {:?}", ip.addr(), ip.origin()),
                    Err(e) => e.reason().code().to_owned(),
                }
            }
        }),
    );
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
    addr
}

/// A raw HTTP/1.1 request, so repeated header lines go on the wire exactly as written.
async fn raw_get(addr: SocketAddr, extra: &str) -> String {
    let mut stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    let req = format!("GET /ip HTTP/1.1\r\nHost: test\r\n{extra}Connection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    out.rsplit("\r\n\r\n").next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn real_socket_peer_decides_whether_headers_count() {
    // Loopback is not trusted: a spoofed header from it is ignored.
    let untrusted = serve(
        ClientIpResolver::builder()
            .trusted_proxies(["10.0.0.0/8".parse().unwrap()])
            .source(ForwardedSource::XForwardedFor)
            .build(),
    )
    .await;
    assert_eq!(
        raw_get(untrusted, "X-Forwarded-For: 1.2.3.4\r\n").await,
        "127.0.0.1 Peer"
    );

    // Loopback is the trusted proxy: the header is believed, several lines as one list.
    let trusted = serve(resolver(ForwardedSource::XForwardedFor)).await;
    assert_eq!(
        raw_get(
            trusted,
            "X-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 203.0.113.5, 10.1.1.1\r\n"
        )
        .await,
        "203.0.113.5 Forwarded"
    );
    assert_eq!(
        raw_get(trusted, "X-Forwarded-For: unknown\r\n").await,
        "network.forwarded_invalid"
    );

    // Peer only (the default): nothing but the socket counts.
    let default = serve(ClientIpResolver::peer_only()).await;
    assert_eq!(
        raw_get(
            default,
            "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\n"
        )
        .await,
        "127.0.0.1 Peer"
    );
}

#[tokio::test]
async fn no_connect_info_is_an_error_not_a_guess() {
    let req = Request::new(axum::body::Body::empty());
    assert_eq!(
        ClientIpResolver::peer_only().resolve_request(&req),
        Err(ClientIpError::NoPeer)
    );
}

//! Which addresses a geo source may place at all: special-purpose ranges (RFC 6890 and its
//! successors) never get a country or coordinates, whatever a database says about them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// What kind of address a client address is, before any list or database is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AddressScope {
    /// A globally routable address: geo sources may place it.
    Global,
    /// A local network: private (RFC 1918), shared carrier-grade NAT (RFC 6598), loopback,
    /// link-local, unique local (RFC 4193) or deprecated site-local. The request came from a
    /// network near the server.
    Local,
    /// An address no real client has: unspecified, documentation (RFC 5737, RFC 3849, RFC 9637),
    /// benchmarking, multicast, broadcast, reserved or protocol-specific ranges. It is unknown to
    /// every geo source.
    Special,
}

/// The scope of `ip` (IPv4-mapped IPv6 addresses are judged as the IPv4 address they carry).
///
/// ```
/// use zerotrust_geo::{AddressScope, address_scope};
///
/// assert_eq!(address_scope("8.8.8.8".parse().unwrap()), AddressScope::Global);
/// assert_eq!(address_scope("10.1.2.3".parse().unwrap()), AddressScope::Local);
/// assert_eq!(address_scope("::ffff:192.168.0.1".parse().unwrap()), AddressScope::Local);
/// assert_eq!(address_scope("203.0.113.9".parse().unwrap()), AddressScope::Special);
/// ```
pub fn address_scope(ip: IpAddr) -> AddressScope {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4_scope(v4),
        IpAddr::V6(v6) => v6_scope(v6),
    }
}

use AddressScope::{Global, Local, Special};

/// (network, prefix length, scope), most specific first where ranges nest.
const V4: &[(u32, u32, AddressScope)] = &[
    (0x0000_0000, 8, Special),  // 0.0.0.0/8 "this network"
    (0x0A00_0000, 8, Local),    // 10.0.0.0/8
    (0x6440_0000, 10, Local),   // 100.64.0.0/10 shared address space (CGNAT)
    (0x7F00_0000, 8, Local),    // 127.0.0.0/8 loopback
    (0xA9FE_0000, 16, Local),   // 169.254.0.0/16 link-local
    (0xAC10_0000, 12, Local),   // 172.16.0.0/12
    (0xC000_0000, 24, Special), // 192.0.0.0/24 IETF protocol assignments
    (0xC000_0200, 24, Special), // 192.0.2.0/24 TEST-NET-1
    (0xC058_6300, 24, Special), // 192.88.99.0/24 6to4 relay anycast (deprecated)
    (0xC0A8_0000, 16, Local),   // 192.168.0.0/16
    (0xC612_0000, 15, Special), // 198.18.0.0/15 benchmarking
    (0xC633_6400, 24, Special), // 198.51.100.0/24 TEST-NET-2
    (0xCB00_7100, 24, Special), // 203.0.113.0/24 TEST-NET-3
    (0xE000_0000, 4, Special),  // 224.0.0.0/4 multicast
    (0xF000_0000, 4, Special),  // 240.0.0.0/4 reserved, and the broadcast address
];

fn v4_scope(ip: Ipv4Addr) -> AddressScope {
    let bits = u32::from(ip);
    V4.iter()
        .find(|(net, len, _)| bits & (u32::MAX << (32 - len)) == *net)
        .map_or(Global, |(_, _, scope)| *scope)
}

/// (network, prefix length, scope).
const V6: &[(u128, u32, AddressScope)] = &[
    (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96, Special), // NAT64 well-known prefix
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48, Special), // NAT64 local use
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64, Special), // discard-only
    (0x2001_0002_0000_0000_0000_0000_0000_0000, 48, Special), // benchmarking
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32, Special), // documentation
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20, Special), // documentation (RFC 9637)
    (0x5f00_0000_0000_0000_0000_0000_0000_0000, 16, Special), // SRv6 SIDs
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7, Local),    // unique local
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10, Local),   // link-local
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10, Local),   // site-local (deprecated)
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8, Special),  // multicast
];

fn v6_scope(ip: Ipv6Addr) -> AddressScope {
    if ip.is_loopback() {
        return Local;
    }
    if ip.is_unspecified() {
        return Special;
    }
    let bits = u128::from(ip);
    V6.iter()
        .find(|(net, len, _)| bits & (u128::MAX << (128 - len)) == *net)
        .map_or(Global, |(_, _, scope)| *scope)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> AddressScope {
        address_scope(s.parse().unwrap())
    }

    #[test]
    fn local_networks_are_local() {
        for a in [
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.10.10",
            "100.64.0.1",
            "100.127.255.254",
            "::1",
            "fe80::1",
            "fd12:3456::1",
            "fc00::1",
            "::ffff:10.9.8.7",
        ] {
            assert_eq!(scope(a), Local, "{a}");
        }
    }

    #[test]
    fn special_ranges_are_special() {
        for a in [
            "0.0.0.0",
            "192.0.2.1",
            "198.51.100.7",
            "203.0.113.200",
            "198.19.1.1",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "2001:db8::1",
            "3fff:1::1",
            "ff02::1",
            "64:ff9b::808:808",
        ] {
            assert_eq!(scope(a), Special, "{a}");
        }
    }

    #[test]
    fn edges_of_ranges_stay_global() {
        for a in [
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "192.169.0.0",
            "2001:4860:4860::8888",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(scope(a), Global, "{a}");
        }
    }
}

//! The SSRF guard: addresses a swarm's request may not connect to unless an
//! allowed endpoint names the address literally.
//!
//! Pure. The standard library's address predicates decide where they are
//! stable; the few ranges it has no stable predicate for yet are matched on
//! their octets, each named. Refused IPv4: unspecified and "this network"
//! (0.0.0.0/8), loopback, private (RFC 1918), shared/CGNAT
//! (100.64.0.0/10), link-local (with the 169.254.169.254 metadata service
//! named), IETF protocol assignments (192.0.0.0/24), documentation,
//! benchmarking (198.18.0.0/15), multicast, and reserved and broadcast
//! (240.0.0.0/4). Refused IPv6: unspecified, loopback, unique-local
//! (fc00::/7, incl. fd00:ec2::254), link-local, site-local (fec0::/10),
//! multicast, and the IANA special-purpose blocks that are not globally
//! reachable: discard-only (100::/64) and the dummy prefix
//! (100:0:0:1::/64), IETF protocol assignments (2001::/23, benchmarking
//! 2001:2::/48 in it; refused whole, as 192.0.0.0/24 is, the few anycast
//! services assigned inside it included), documentation (2001:db8::/32,
//! 3fff::/20) and SRv6 segment identifiers (5f00::/16). An IPv4-mapped
//! address (::ffff:0:0/96) and a 6to4 one (2002::/16) are judged by the
//! IPv4 address they embed; IPv4-compatible (::/96), IPv4-translated
//! (::ffff:0:0:0/96) and NAT64 (64:ff9b::/96) ones are refused whatever
//! they embed (naming the embedded address's class when it has one), as
//! are local-use NAT64 (64:ff9b:1::/48) and Teredo (2001::/32), whose
//! destinations the local network decides.
//!
//! The `egress` fuzz target (`fuzz/src/egress/`) checks this list against
//! a table of the same ranges written independently, and against the
//! `ip_network` crate's `is_global`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The cloud metadata service's address.
const METADATA: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// Why `ip` may not be connected to, or `None` when it is a public address.
pub(crate) fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    // In order: the first range that holds `ip` names it.
    let ranges = [
        (ip == METADATA, "a cloud metadata address"),
        // 0.0.0.0/8, the unspecified address included.
        (a == 0, "an unspecified (\"this network\") address"),
        (ip.is_loopback(), "a loopback address"),
        (ip.is_private(), "a private address"),
        // `Ipv4Addr::is_shared` is not stable yet.
        (
            a == 100 && (64..=127).contains(&b),
            "a shared (CGNAT) address",
        ),
        (ip.is_link_local(), "a link-local address"),
        ((a, b, c) == (192, 0, 0), "an IETF protocol address"),
        (ip.is_documentation(), "a documentation address"),
        // `Ipv4Addr::is_benchmarking` is not stable yet.
        (a == 198 && (18..=19).contains(&b), "a benchmarking address"),
        (ip.is_multicast(), "a multicast address"),
        // `Ipv4Addr::is_reserved` is not stable yet; 255.255.255.255 is in it.
        (a >= 240, "a reserved or broadcast address"),
    ];
    ranges.into_iter().find(|(hit, _)| *hit).map(|(_, why)| why)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    let s = ip.segments();
    // IPv4-compatible (::a.b.c.d), IPv4-translated (::ffff:0:a.b.c.d), NAT64
    // (64:ff9b::/96): embedded in the last 32 bits, and refused even when
    // that address is public.
    if s[..6] == [0; 6] || s[..6] == [0, 0, 0, 0, 0xffff, 0] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]
    {
        let [.., a, b, c, d] = ip.octets();
        return Some(
            forbidden_v4(Ipv4Addr::new(a, b, c, d)).unwrap_or("an IPv6 address embedding IPv4"),
        );
    }
    // Local-use NAT64 (64:ff9b:1::/48): where it leads is the local network's
    // choice.
    if s[..3] == [0x64, 0xff9b, 1] {
        return Some("a local-use NAT64 address");
    }
    if ip.is_unique_local() {
        return Some("a unique-local address");
    }
    if ip.is_unicast_link_local() {
        return Some("a link-local address");
    }
    if ip.is_multicast() {
        return Some("a multicast address");
    }
    match s[0] {
        // Deprecated, with no predicate of its own: fec0::/10.
        0xfec0..=0xfeff => Some("a site-local address"),
        // 6to4: 2002:a.b.c.d::/48
        0x2002 => {
            let [_, _, a, b, c, d, ..] = ip.octets();
            forbidden_v4(Ipv4Addr::new(a, b, c, d))
        }
        // Teredo: 2001:0::/32.
        0x2001 if s[1] == 0 => Some("a Teredo address"),
        0x2001 if s[1] == 0xdb8 => Some("a documentation address"),
        // The rest of 2001::/23.
        0x2001 if s[1] < 0x200 => Some("an IETF protocol address"),
        // 3fff::/20.
        0x3fff if s[1] < 0x1000 => Some("a documentation address"),
        0x5f00 => Some("an SRv6 segment identifier"),
        // 100::/64.
        0x0100 if s[1..4] == [0, 0, 0] => Some("a discard-only address"),
        // 100:0:0:1::/64.
        0x0100 if s[1..4] == [0, 0, 1] => Some("a dummy-prefix address"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no(ip: &str) -> bool {
        forbidden(ip.parse().unwrap()).is_some()
    }

    #[test]
    fn internal_ipv4_ranges_are_forbidden() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.100.100.200",
            "169.254.169.254",
            "169.254.1.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "198.18.0.1",
            "192.0.0.170",
        ] {
            assert!(no(ip), "{ip}");
        }
        assert_eq!(
            forbidden("169.254.169.254".parse().unwrap()),
            Some("a cloud metadata address")
        );
    }

    #[test]
    fn public_ipv4_is_allowed() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "1.1.1.1",
        ] {
            assert!(!no(ip), "{ip}");
        }
    }

    #[test]
    fn internal_ipv6_and_embedded_ipv4_are_forbidden() {
        for ip in [
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::808:808",
            "64:ff9b:1::7f00:1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:8.8.8.8",
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
        ] {
            assert!(no(ip), "{ip}");
        }
    }

    #[test]
    fn ipv6_blocks_that_are_not_globally_reachable_are_forbidden() {
        for ip in [
            "2001:db8::",
            "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff::1",
            "3fff:fff:ffff::1",
            "2001:2::1",
            "2001:1::1",
            "2001:1ff:ffff::1",
            "5f00::1",
            "100::1",
            "100:0:0:1::1",
        ] {
            assert!(no(ip), "{ip}");
        }
    }

    #[test]
    fn public_ipv6_is_allowed() {
        for ip in [
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "2002:808:808::",
            // Just outside the blocks above.
            "2001:200::1",
            "2001:db9::1",
            "3fff:1000::1",
            "5f01::1",
            "100:0:0:2::1",
        ] {
            assert!(!no(ip), "{ip}");
        }
    }
}

//! The SSRF guard: addresses a swarm's request may not connect to unless an
//! allowed endpoint names the address literally.
//!
//! Pure. Refused: unspecified, loopback, private (RFC 1918), shared/CGNAT
//! (100.64.0.0/10), link-local (incl. the 169.254.169.254 metadata service),
//! IETF-reserved, benchmarking, multicast, broadcast and reserved IPv4;
//! IPv6 loopback, unspecified, unique-local (fc00::/7, incl. fd00:ec2::254),
//! link-local, site-local and multicast; and every IPv6 form that embeds an
//! IPv4 address (IPv4-mapped, IPv4-compatible, NAT64 64:ff9b::/96, 6to4
//! 2002::/16, Teredo 2001::/32) is judged by the embedded address.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why `ip` may not be connected to, or `None` when it is a public address.
pub(crate) fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (169, 254, 169) if ip == Ipv4Addr::new(169, 254, 169, 254) => "a cloud metadata address",
        (0, _, _) => "an unspecified (\"this network\") address",
        (127, _, _) => "a loopback address",
        (10, _, _) => "a private address",
        (172, 16..=31, _) => "a private address",
        (192, 168, _) => "a private address",
        (100, 64..=127, _) => "a shared (CGNAT) address",
        (169, 254, _) => "a link-local address",
        (192, 0, 0) => "an IETF protocol address",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "a documentation address",
        (198, 18..=19, _) => "a benchmarking address",
        (224..=239, _, _) => "a multicast address",
        (240..=255, _, _) => "a reserved or broadcast address",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    if ip.is_unspecified() {
        return Some("an unspecified address");
    }
    if ip.is_loopback() {
        return Some("a loopback address");
    }
    // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96): embedded in the last 32 bits.
    let last32 = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(forbidden_v4(last32).unwrap_or("an IPv6 address embedding IPv4"));
    }
    match s[0] {
        0xfc00..=0xfdff => Some("a unique-local address"),
        0xfe80..=0xfebf => Some("a link-local address"),
        0xfec0..=0xfeff => Some("a site-local address"),
        0xff00..=0xffff => Some("a multicast address"),
        // 6to4: 2002:a.b.c.d::/48
        0x2002 => {
            let v4 = Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8);
            forbidden_v4(v4)
        }
        // Teredo: 2001:0::/32, client address inverted in the last 32 bits.
        0x2001 if s[1] == 0 => Some("a Teredo address"),
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
            "2002:7f00:1::",
            "2001:0:4136:e378::1",
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
        ] {
            assert!(!no(ip), "{ip}");
        }
    }
}

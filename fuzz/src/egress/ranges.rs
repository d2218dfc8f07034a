//! The reference for the SSRF guard: the address ranges the guard's
//! documentation promises to refuse, written down as `ip_network` values
//! from the IANA special-purpose registries, and the embedding rules for
//! IPv6 addresses that carry an IPv4 one. Also the addresses the
//! generators aim at: every range's edges and the embedded forms.
//!
//! Data flow: `refused` looks an address up in the tables (an IPv6
//! address that embeds an IPv4 one by a judged-by-embedded rule is looked
//! up as that IPv4 address); `ip` generates the addresses the target
//! checks against the host's `forbidden`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ip_network::{Ipv4Network, Ipv6Network};
use proptest::prelude::*;

/// IPv4 ranges refused whatever follows, with the name of each.
const V4_REFUSED: &[(&str, &str)] = &[
    (
        "0.0.0.0/8",
        "this network (RFC 791), the unspecified address",
    ),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space, CGNAT (RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    (
        "169.254.0.0/16",
        "link-local (RFC 3927), the metadata service",
    ),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation, TEST-NET-1 (RFC 5737)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation, TEST-NET-2 (RFC 5737)"),
    ("203.0.113.0/24", "documentation, TEST-NET-3 (RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    (
        "240.0.0.0/4",
        "reserved (RFC 1112) and the limited broadcast",
    ),
];

/// IPv6 ranges refused whatever follows (an embedded IPv4 address
/// included), with the name of each.
const V6_REFUSED: &[(&str, &str)] = &[
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("::/96", "IPv4-compatible (RFC 4291, deprecated)"),
    ("::ffff:0:0:0/96", "IPv4-translated (RFC 2765)"),
    ("64:ff9b::/96", "NAT64 well-known prefix (RFC 6052)"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("100:0:0:1::/64", "dummy prefix (RFC 9780)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001::/32", "Teredo (RFC 4380)"),
    ("2001:2::/48", "benchmarking (RFC 5180)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("3fff::/20", "documentation (RFC 9637)"),
    ("5f00::/16", "SRv6 segment identifiers (RFC 9602)"),
    ("fc00::/7", "unique-local (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "site-local (RFC 3879, deprecated)"),
    ("ff00::/8", "multicast (RFC 4291)"),
];

/// IPv4-mapped addresses: judged by the IPv4 address in the last 32 bits.
const V6_MAPPED: &str = "::ffff:0:0/96";
/// 6to4: judged by the IPv4 address in bits 16 to 47.
const V6_6TO4: &str = "2002::/16";

/// Ranges the reference does not refuse but the generators aim at anyway:
/// where `ip_network` or the IANA registries say something of their own,
/// and the neighbours of the refused ranges.
const EXTRA_EDGES: &[&str] = &[
    "192.0.0.9/32",
    "192.0.0.10/32",
    "192.0.0.170/31",
    "192.88.99.0/24",
    "169.254.169.254/32",
    "255.255.255.255/32",
    "2001:1::1/128",
    "2001:3::/32",
    "2001:20::/28",
    "2620:4f:8000::/48",
    "ff0e::/16",
    "ff05::/16",
];

/// The addresses the host's own guard tests name, tried as they are.
const SEED_ADDRESSES: &[&str] = &[
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
    "93.184.216.34",
    "8.8.8.8",
    "172.32.0.1",
    "100.128.0.1",
    "1.1.1.1",
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
    "2606:4700:4700::1111",
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "2002:808:808::",
];

/// One parsed table entry.
pub(crate) enum Net {
    V4(Ipv4Network),
    V6(Ipv6Network),
}

fn v4(cidr: &str) -> Ipv4Network {
    cidr.parse().expect("a valid IPv4 network in the table")
}

fn v6(cidr: &str) -> Ipv6Network {
    cidr.parse().expect("a valid IPv6 network in the table")
}

struct Tables {
    v4: Vec<(Ipv4Network, &'static str)>,
    v6: Vec<(Ipv6Network, &'static str)>,
    mapped: Ipv6Network,
    six_to_four: Ipv6Network,
    /// Every range whose edges the generators aim at.
    edges: Vec<Net>,
}

static TABLES: LazyLock<Tables> = LazyLock::new(|| {
    let v4s: Vec<_> = V4_REFUSED.iter().map(|&(c, n)| (v4(c), n)).collect();
    let v6s: Vec<_> = V6_REFUSED.iter().map(|&(c, n)| (v6(c), n)).collect();
    let mut edges: Vec<Net> = v4s.iter().map(|(n, _)| Net::V4(*n)).collect();
    edges.extend(v6s.iter().map(|(n, _)| Net::V6(*n)));
    edges.push(Net::V6(v6(V6_MAPPED)));
    edges.push(Net::V6(v6(V6_6TO4)));
    for cidr in EXTRA_EDGES {
        edges.push(match cidr.contains(':') {
            true => Net::V6(v6(cidr)),
            false => Net::V4(v4(cidr)),
        });
    }
    Tables {
        v4: v4s,
        v6: v6s,
        mapped: v6(V6_MAPPED),
        six_to_four: v6(V6_6TO4),
        edges,
    }
});

/// The IPv4 address an IPv6 one is judged by, if a judged-by-embedded
/// rule covers it (IPv4-mapped, 6to4).
pub(crate) fn judged_as_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let t = &*TABLES;
    let o = ip.octets();
    if t.mapped.contains(ip) {
        Some(Ipv4Addr::new(o[12], o[13], o[14], o[15]))
    } else if t.six_to_four.contains(ip) {
        Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
    } else {
        None
    }
}

/// The reference's verdict: the refused range that holds `ip`, or `None`
/// for an address the guard must let through.
pub(crate) fn refused(ip: IpAddr) -> Option<&'static str> {
    let t = &*TABLES;
    match ip {
        IpAddr::V4(ip) => {
            t.v4.iter()
                .find(|(net, _)| net.contains(ip))
                .map(|(_, why)| *why)
        }
        IpAddr::V6(ip) => match judged_as_v4(ip) {
            Some(inner) => refused(IpAddr::V4(inner)),
            None => {
                t.v6.iter()
                    .find(|(net, _)| net.contains(ip))
                    .map(|(_, why)| *why)
            }
        },
    }
}

/// `ip_network`'s opinion: whether `ip` is globally reachable.
pub(crate) fn ip_network_global(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(ip) => Ipv4Network::from(ip).is_global(),
        IpAddr::V6(ip) => Ipv6Network::from(ip).is_global(),
    }
}

/// An address at or next to an edge of a range: `which` picks the range,
/// `at` the first or last address, `step` how far from it (-1, 0, +1),
/// `inside` an offset for an address well inside instead.
fn edge(which: usize, at_last: bool, step: i8, inside: Option<u128>) -> IpAddr {
    let t = &*TABLES;
    let moved = |base: u128, max: u128| -> u128 {
        match step {
            -1 => base.wrapping_sub(1) & max,
            1 => base.wrapping_add(1) & max,
            _ => base,
        }
    };
    match &t.edges[which % t.edges.len()] {
        Net::V4(net) => {
            let first = u128::from(u32::from(net.network_address()));
            let last = u128::from(u32::from(net.broadcast_address()));
            let base = match inside {
                Some(off) => first + off % (last - first + 1),
                None if at_last => last,
                None => first,
            };
            let value = moved(base, u128::from(u32::MAX));
            IpAddr::V4(Ipv4Addr::from(value as u32))
        }
        Net::V6(net) => {
            let first = u128::from(net.network_address());
            let last = u128::from(net.last_address());
            let base = match inside {
                Some(off) => first.wrapping_add(off % (last - first).saturating_add(1).max(1)),
                None if at_last => last,
                None => first,
            };
            IpAddr::V6(Ipv6Addr::from(moved(base, u128::MAX)))
        }
    }
}

/// An IPv4 address worth embedding: random, or at an edge of a range.
fn interesting_v4() -> impl Strategy<Value = Ipv4Addr> {
    prop_oneof![
        any::<u32>().prop_map(Ipv4Addr::from),
        (
            any::<usize>(),
            any::<bool>(),
            -1i8..=1,
            any::<Option<u128>>()
        )
            .prop_filter_map("an IPv4 edge", |(w, l, s, i)| match edge(w, l, s, i) {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            }),
        proptest::sample::select(vec![
            Ipv4Addr::new(127, 0, 0, 1),
            Ipv4Addr::new(169, 254, 169, 254),
            Ipv4Addr::new(10, 0, 0, 1),
            Ipv4Addr::new(0, 0, 0, 0),
            Ipv4Addr::new(8, 8, 8, 8),
            Ipv4Addr::new(255, 255, 255, 255),
            Ipv4Addr::new(192, 0, 0, 9),
        ]),
    ]
}

/// How an IPv6 address can carry an IPv4 one.
#[derive(Debug, Clone, Copy)]
enum Embedding {
    Mapped,
    Compatible,
    Translated,
    SixToFour,
    Nat64,
    LocalNat64,
    /// The client's address, obfuscated (inverted), in the last 32 bits;
    /// the server's in bits 32 to 63.
    Teredo,
}

fn embed(how: Embedding, ip: Ipv4Addr, noise: u128) -> Ipv6Addr {
    let v = u128::from(u32::from(ip));
    let bits = match how {
        Embedding::Mapped => 0xffff_u128 << 32 | v,
        Embedding::Compatible => v,
        Embedding::Translated => 0xffff_u128 << 48 | v,
        Embedding::SixToFour => 0x2002_u128 << 112 | v << 80 | (noise & ((1 << 80) - 1)),
        Embedding::Nat64 => 0x0064_ff9b_u128 << 96 | v,
        Embedding::LocalNat64 => {
            0x0064_ff9b_0001_u128 << 80 | (noise & (((1 << 48) - 1) << 32)) | v
        }
        Embedding::Teredo => {
            0x2001_0000_u128 << 96 | v << 64 | (noise & (0xffff_ffff << 32)) | (!v & 0xffff_ffff)
        }
    };
    Ipv6Addr::from(bits)
}

fn embedding() -> impl Strategy<Value = Embedding> {
    proptest::sample::select(vec![
        Embedding::Mapped,
        Embedding::Compatible,
        Embedding::Translated,
        Embedding::SixToFour,
        Embedding::Nat64,
        Embedding::LocalNat64,
        Embedding::Teredo,
    ])
}

/// An address to check: uniformly random IPv4 or IPv6, at or next to an
/// edge of every range, or an IPv4 address (random or special) embedded
/// in each IPv6 form.
pub(crate) fn ip() -> impl Strategy<Value = IpAddr> {
    let seed = proptest::sample::select(SEED_ADDRESSES)
        .prop_map(|text| text.parse().expect("a valid address in the seeds"));
    prop_oneof![
        1 => seed,
        2 => any::<u32>().prop_map(|v| IpAddr::V4(Ipv4Addr::from(v))),
        2 => any::<u128>().prop_map(|v| IpAddr::V6(Ipv6Addr::from(v))),
        4 => (any::<usize>(), any::<bool>(), -1i8..=1, any::<Option<u128>>())
            .prop_map(|(w, l, s, i)| edge(w, l, s, i)),
        3 => (embedding(), interesting_v4(), any::<u128>())
            .prop_map(|(how, v4, noise)| IpAddr::V6(embed(how, v4, noise))),
    ]
}

/// The addresses of special interest, for the URL generators.
pub(crate) fn special_v4() -> impl Strategy<Value = Ipv4Addr> {
    interesting_v4()
}

/// An IPv6 address of special interest, for the URL generators.
pub(crate) fn special_v6() -> impl Strategy<Value = Ipv6Addr> {
    ip().prop_map(|ip| match ip {
        IpAddr::V6(v6) => v6,
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refused_ranges_and_the_embedding_rules_do_not_overlap() {
        let t = &*TABLES;
        for (net, why) in &t.v6 {
            for rule in [t.mapped, t.six_to_four] {
                assert!(
                    !rule.contains(net.network_address()) && !net.contains(rule.network_address()),
                    "{net} ({why}) overlaps {rule}"
                );
            }
        }
    }

    #[test]
    fn the_reference_knows_the_usual_suspects() {
        for refused_ip in [
            "127.0.0.1",
            "169.254.169.254",
            "::ffff:10.0.0.1",
            "2002:a00:1::",
            "64:ff9b::808:808",
            "2001:0:4136:e378::1",
            "::8.8.8.8",
        ] {
            assert!(
                refused(refused_ip.parse().unwrap()).is_some(),
                "{refused_ip}"
            );
        }
        for public in [
            "8.8.8.8",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "2606:4700::1111",
        ] {
            assert!(refused(public.parse().unwrap()).is_none(), "{public}");
        }
    }

    #[test]
    fn embedding_puts_the_address_where_the_rule_reads_it() {
        let ip = Ipv4Addr::new(127, 0, 0, 1);
        assert_eq!(judged_as_v4(embed(Embedding::Mapped, ip, 7)), Some(ip));
        assert_eq!(judged_as_v4(embed(Embedding::SixToFour, ip, 7)), Some(ip));
        assert_eq!(
            embed(Embedding::Teredo, ip, 0),
            "2001:0:7f00:1:0:0:80ff:fffe".parse::<Ipv6Addr>().unwrap()
        );
    }
}

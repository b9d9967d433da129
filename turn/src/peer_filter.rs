//! Which peer addresses a client may relay to.
//!
//! Owns the default deny list (loopback, unspecified, private, CGNAT,
//! link-local, ULA, multicast, broadcast) and the configured allow/deny CIDRs.
//! Every address is first reduced to its canonical form: IPv4-mapped
//! (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`), IPv4-translated and
//! NAT64 (`64:ff9b::/96`) spellings become the IPv4 address they reach, because
//! coturn's CVE-2020-26262 was exactly a deny list that only looked at the
//! literal spelling.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address prefix such as `10.0.0.0/8` or `fe80::/10`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

/// A CIDR string that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CIDR {0:?}")]
pub struct CidrParseError(pub String);

impl Cidr {
    /// Builds a prefix; `None` if the prefix length exceeds the family's width.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Cidr> {
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { addr, prefix })
    }

    /// Whether `ip` (taken literally, same family only) lies inside the prefix.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix_match(u32::from(net).into(), u32::from(ip).into(), self.prefix, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_match(u128::from(net), u128::from(ip), self.prefix, 128)
            }
            _ => false,
        }
    }
}

fn prefix_match(net: u128, ip: u128, prefix: u8, width: u32) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = width - u32::from(prefix);
    (net >> shift) == (ip >> shift)
}

impl FromStr for Cidr {
    type Err = CidrParseError;

    /// Parses `addr/prefix`; a bare address means a single host.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrParseError(s.to_string());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (
                a.trim().parse::<IpAddr>().map_err(|_| err())?,
                Some(p.trim().parse::<u8>().map_err(|_| err())?),
            ),
            None => (s.trim().parse::<IpAddr>().map_err(|_| err())?, None),
        };
        let prefix = prefix.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        Cidr::new(addr, prefix).ok_or_else(err)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Reduces IPv6 spellings of IPv4 addresses to the IPv4 address they reach.
///
/// `::` and `::1` stay IPv6 (they are the IPv6 unspecified and loopback
/// addresses, not IPv4-compatible ones).
pub fn canonical(ip: IpAddr) -> IpAddr {
    let v6 = match ip {
        IpAddr::V4(_) => return ip,
        IpAddr::V6(v6) => v6,
    };
    if v6.is_unspecified() || v6.is_loopback() {
        return ip;
    }
    let bits = u128::from(v6);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    let high96 = bits >> 32;
    match high96 {
        // ::a.b.c.d (IPv4-compatible, deprecated but still routed by some stacks)
        0 => IpAddr::V4(low32),
        // ::ffff:a.b.c.d (IPv4-mapped)
        0xffff => IpAddr::V4(low32),
        // ::ffff:0:a.b.c.d (IPv4-translated, RFC 2765)
        0xffff_0000 => IpAddr::V4(low32),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix)
        0x0064_ff9b_0000_0000_0000_0000 => IpAddr::V4(low32),
        _ => ip,
    }
}

/// The embedded IPv4 address of a 6to4 address (`2002:AABB:CCDD::/48`).
fn six_to_four(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    (s[0] == 0x2002).then(|| Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])))
}

fn v4_default_denied(ip: Ipv4Addr, allow_loopback: bool) -> bool {
    let o = ip.octets();
    if ip.is_loopback() {
        return !allow_loopback;
    }
    o[0] == 0 // 0.0.0.0/8 "this network": 0.0.0.0 reaches the local host
        || ip.is_private() // RFC 1918
        || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10 CGNAT
        || ip.is_link_local() // 169.254.0.0/16
        || ip.is_multicast() // 224.0.0.0/4
        || o[0] >= 240 // 240.0.0.0/4 reserved, includes 255.255.255.255 broadcast
}

fn v6_default_denied(ip: Ipv6Addr, allow_loopback: bool) -> bool {
    let first = ip.segments()[0];
    if ip.is_loopback() {
        return !allow_loopback;
    }
    ip.is_unspecified()
        || (first & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (first & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (first & 0xffc0) == 0xfec0 // fec0::/10 deprecated site-local
        || (first & 0xff00) == 0xff00 // ff00::/8 multicast
        || six_to_four(ip).is_some_and(|v4| v4_default_denied(v4, false))
}

/// Decides whether a peer address may be relayed to.
#[derive(Debug, Clone, Default)]
pub struct PeerFilter {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    allow_loopback: bool,
}

impl PeerFilter {
    /// A filter with extra allowed and denied prefixes on top of the defaults.
    pub fn new(allow: Vec<Cidr>, deny: Vec<Cidr>, allow_loopback: bool) -> Self {
        PeerFilter {
            allow,
            deny,
            allow_loopback,
        }
    }

    /// True if relaying to `ip` is permitted.
    ///
    /// Order: the configured allow list wins (matched on the canonical form
    /// only, so allowing `::/0` cannot re-open `::ffff:127.0.0.1`); then the
    /// configured deny list (matched on both spellings); then the built-in
    /// deny list on the canonical form.
    pub fn is_allowed(&self, ip: IpAddr) -> bool {
        let canon = canonical(ip);
        if self.allow.iter().any(|c| c.contains(canon)) {
            return true;
        }
        if self
            .deny
            .iter()
            .any(|c| c.contains(canon) || c.contains(ip))
        {
            return false;
        }
        match canon {
            IpAddr::V4(v4) => !v4_default_denied(v4, self.allow_loopback),
            IpAddr::V6(v6) => !v6_default_denied(v6, self.allow_loopback),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address")
    }

    #[test]
    fn default_denies_every_spelling_of_internal_addresses() {
        let f = PeerFilter::default();
        for denied in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "172.16.5.4",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::ffff:10.0.0.1",
            "::10.0.0.1",
            "::ffff:0.0.0.0",
            "::ffff:169.254.169.254",
            "::ffff:0:127.0.0.1",
            "64:ff9b::127.0.0.1",
            "64:ff9b::10.1.1.1",
            "2002:7f00:1::1",
            "2002:c0a8:101::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ] {
            assert!(!f.is_allowed(ip(denied)), "{denied} must be denied");
        }
    }

    #[test]
    fn default_allows_public_addresses() {
        let f = PeerFilter::default();
        for ok in [
            "8.8.8.8",
            "1.1.1.1",
            "100.128.0.1",
            "172.32.0.1",
            "2001:db8::1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::8.8.8.8",
        ] {
            assert!(f.is_allowed(ip(ok)), "{ok} must be allowed");
        }
    }

    #[test]
    fn allow_loopback_opens_only_loopback() {
        let f = PeerFilter::new(vec![], vec![], true);
        assert!(f.is_allowed(ip("127.0.0.1")));
        assert!(f.is_allowed(ip("::1")));
        assert!(f.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(!f.is_allowed(ip("0.0.0.0")));
        assert!(!f.is_allowed(ip("::")));
        assert!(!f.is_allowed(ip("10.0.0.1")));
        assert!(!f.is_allowed(ip("2002:7f00:1::1")));
    }

    #[test]
    fn allow_list_overrides_defaults_on_canonical_form_only() {
        let f = PeerFilter::new(vec!["10.1.0.0/16".parse().expect("cidr")], vec![], false);
        assert!(f.is_allowed(ip("10.1.2.3")));
        assert!(f.is_allowed(ip("::ffff:10.1.2.3")));
        assert!(!f.is_allowed(ip("10.2.0.1")));
        let wide = PeerFilter::new(vec!["::/0".parse().expect("cidr")], vec![], false);
        assert!(!wide.is_allowed(ip("::ffff:127.0.0.1")));
        assert!(!wide.is_allowed(ip("::127.0.0.1")));
    }

    #[test]
    fn deny_list_matches_both_spellings() {
        let f = PeerFilter::new(vec![], vec!["8.8.8.0/24".parse().expect("cidr")], false);
        assert!(!f.is_allowed(ip("8.8.8.8")));
        assert!(!f.is_allowed(ip("::ffff:8.8.8.8")));
        assert!(f.is_allowed(ip("8.8.4.4")));
        let f6 = PeerFilter::new(vec![], vec!["2001:db8::/32".parse().expect("cidr")], false);
        assert!(!f6.is_allowed(ip("2001:db8::5")));
    }

    #[test]
    fn cidr_parsing() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().map(|c| c.to_string()),
            Ok("10.0.0.0/8".into())
        );
        assert_eq!("1.2.3.4".parse::<Cidr>().map(|c| c.prefix), Ok(32));
        assert_eq!("::1".parse::<Cidr>().map(|c| c.prefix), Ok(128));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nonsense".parse::<Cidr>().is_err());
        assert!("::/129".parse::<Cidr>().is_err());
        let all: Cidr = "0.0.0.0/0".parse().expect("cidr");
        assert!(all.contains(ip("9.9.9.9")));
        assert!(!all.contains(ip("::1")));
    }
}

//! Who is on the other end of a connection: the TCP peer, or, when that peer is a reverse
//! proxy the operator named (`--trusted-proxy`), the address it reports in
//! `X-Forwarded-For`. Per-IP limits and log lines use this address.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// Addresses read from `X-Forwarded-For`, right to left, before giving up: more hops than
/// any real proxy chain, few enough that a header stuffed with entries costs nothing.
const MAX_FORWARDED_HOPS: usize = 32;

/// An IP network: an address and a prefix length (`10.0.0.0/8`, `2001:db8::/32`, or one
/// address, `192.0.2.7`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a `--trusted-proxy` value is not an address or network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IpNetError {
    #[error("{0:?} is not an IP address or network (like 10.0.0.0/8 or 2001:db8::1)")]
    Malformed(String),
    #[error("prefix length /{prefix} is longer than an {family} address")]
    PrefixTooLong { prefix: u8, family: &'static str },
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let malformed = || IpNetError::Malformed(s.chars().take(64).collect());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s.trim(), None),
        };
        // An IPv4 address written as IPv6 (::ffff:10.0.0.1) matches IPv4 peers.
        let addr = IpAddr::from_str(addr)
            .map_err(|_| malformed())?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().map_err(|_| malformed())?,
        };
        if prefix > max {
            return Err(IpNetError::PrefixTooLong {
                prefix,
                family: if addr.is_ipv4() { "IPv4" } else { "IPv6" },
            });
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The client's address: `peer` itself unless it is one of the `trusted` proxies. Behind
/// them, `X-Forwarded-For` is read from the right (each proxy appends the address it got the
/// request from), skipping trusted proxies: the first address that is not one is the client.
/// Everything to its left was written by the client and is ignored, since anyone can send
/// the header. An entry that does not parse ends the walk at the last trusted hop.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    // Several headers are one list, in order (RFC 9110, 5.3).
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let mut client = peer;
    for entry in values
        .iter()
        .rev()
        .flat_map(|v| v.rsplit(','))
        .take(MAX_FORWARDED_HOPS)
    {
        let Some(ip) = parse_forwarded(entry.trim()) else {
            tracing::debug!(%peer, entry = %entry.chars().take(64).collect::<String>(), "unparseable X-Forwarded-For entry");
            return client;
        };
        if !is_trusted(ip) {
            return ip;
        }
        client = ip;
    }
    client
}

/// An `X-Forwarded-For` entry: an address, perhaps with a port (`192.0.2.1:1234`,
/// `[2001:db8::1]:443`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    IpAddr::from_str(entry)
        .or_else(|_| SocketAddr::from_str(entry).map(|s| s.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    fn forwarded(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append("x-forwarded-for", HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn networks_parse_and_match() {
        let net: IpNet = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains(ip("10.1.200.3")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.0.9")), "IPv4-mapped peers");
        let one: IpNet = "192.0.2.7".parse().unwrap();
        assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
        let v6: IpNet = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:5::1")) && !v6.contains(ip("2001:db9::1")));
        assert!(!v6.contains(ip("10.1.0.1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.9")));
        assert_eq!(one.to_string(), "192.0.2.7/32");
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "host",
            "10.0.0.0/x",
            "1/1/1",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn forwarded_for_is_read_only_behind_a_trusted_proxy() {
        let headers = forwarded(&["203.0.113.5"]);
        assert_eq!(
            client_ip(ip("198.51.100.1"), &headers, &nets(&["10.0.0.0/8"])),
            ip("198.51.100.1"),
            "a client cannot name itself"
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &nets(&["10.0.0.0/8"])),
            ip("203.0.113.5")
        );
        assert_eq!(
            client_ip(ip("10.0.0.2"), &HeaderMap::new(), &nets(&["10.0.0.0/8"])),
            ip("10.0.0.2"),
            "no header: the proxy itself"
        );
    }

    #[test]
    fn the_right_most_untrusted_address_is_the_client() {
        let trusted = nets(&["10.0.0.0/8", "2001:db8::/32"]);
        // The client wrote 1.1.1.1 itself; the outer proxy appended the client's real
        // address, the inner one the outer proxy's.
        let headers = forwarded(&["1.1.1.1, 203.0.113.5, 10.0.0.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("203.0.113.5")
        );
        // The same list split over two headers, with ports and IPv6.
        let headers = forwarded(&["1.1.1.1", "[2001:db9::5]:443, [2001:db8::7]:80"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("2001:db9::5")
        );
        // Every hop trusted: the left-most.
        let headers = forwarded(&["10.9.9.9, 10.0.0.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("10.9.9.9")
        );
        // Garbage ends the walk at the last trusted hop, never at what the client wrote.
        let headers = forwarded(&["1.1.1.1, nonsense, 10.0.0.7"]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("10.0.0.7")
        );
        // A header stuffed with trusted-looking hops is not walked to its end.
        let stuffed = vec!["10.0.0.1"; 10_000].join(",");
        let headers = forwarded(&[&format!("1.1.1.1,{stuffed}")]);
        assert_eq!(
            client_ip(ip("10.0.0.2"), &headers, &trusted),
            ip("10.0.0.1")
        );
    }
}

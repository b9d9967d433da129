//! Which IPv4 address relays use when nothing says so.
//!
//! A relayed address must be one peers can send to. With the listener on a
//! specific address, that address is it (the core falls back to it). With a
//! wildcard listener and no `relay_ip`/`external_ip`, we do what coturn does
//! and relay on the host's own interface addresses: the one the default route
//! leaves from when it is among them (the address other hosts know us by),
//! else the first non-loopback one, and on a host whose only interface is
//! loopback, loopback. A server behind 1:1 NAT still needs `external_ip`.

use std::net::{IpAddr, Ipv4Addr};

/// Picks the relay address among the interface addresses `ifaces`, given the
/// source address the default route would use (if there is a default route).
pub(crate) fn choose_relay_ipv4(ifaces: &[Ipv4Addr], default_route: Option<IpAddr>) -> Ipv4Addr {
    let usable = |ip: &&Ipv4Addr| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified();
    if let Some(IpAddr::V4(route)) = default_route {
        if ifaces.iter().filter(usable).any(|ip| *ip == route) {
            return route;
        }
    }
    ifaces
        .iter()
        .find(usable)
        .copied()
        .unwrap_or(Ipv4Addr::LOCALHOST)
}

/// The IPv4 addresses of this host's interfaces (empty if they cannot be read).
pub(crate) fn interface_ipv4s() -> Vec<Ipv4Addr> {
    match if_addrs::get_if_addrs() {
        Ok(list) => list
            .into_iter()
            .filter_map(|i| match i.ip() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list network interfaces");
            Vec::new()
        }
    }
}

/// The address the default route would use; `connect` on a UDP socket only
/// consults the routing table and sends nothing. `None` without a route.
pub(crate) fn default_route_ipv4() -> Option<IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn relay_address_follows_coturn() {
        let lo = v4("127.0.0.1");
        let eth = v4("192.168.1.5");
        let docker = v4("172.17.0.1");
        let link_local = v4("169.254.3.4");
        let route = |ip: Ipv4Addr| Some(IpAddr::V4(ip));
        for (ifaces, default, want, why) in [
            (vec![lo], None, lo, "only loopback: loopback"),
            (vec![], None, lo, "nothing readable: loopback"),
            (
                vec![lo, eth],
                None,
                eth,
                "no default route: first non-loopback",
            ),
            (
                vec![lo, docker, eth],
                route(eth),
                eth,
                "the default route's address",
            ),
            (vec![lo, docker, eth], None, docker, "first non-loopback"),
            (vec![lo, link_local, eth], None, eth, "link-local skipped"),
            (
                vec![lo, eth],
                route(v4("10.9.9.9")),
                eth,
                "a route source that is no interface address is ignored",
            ),
        ] {
            assert_eq!(choose_relay_ipv4(&ifaces, default), want, "{why}");
        }
    }

    #[test]
    fn this_host_has_an_answer() {
        // whatever the host, a usable address comes out (loopback at worst)
        let ip = choose_relay_ipv4(&interface_ipv4s(), default_route_ipv4());
        assert!(!ip.is_unspecified());
    }
}

//! The `iceServers` URLs a browser needs to reach this TURN server, for the
//! signaling layer's join response (RFC 7065 `turn:`/`turns:` URIs).

use std::net::IpAddr;

/// `turn:` URLs for UDP and TCP on `port`, plus a `turns:` URL when TLS is
/// served on `tls_port`. `host` is a DNS name or an IP address (IPv6 gets
/// brackets). A `turns:` URL should name a host the certificate covers.
pub fn ice_urls(host: &str, port: u16, tls_port: Option<u16>) -> Vec<String> {
    let host = match host.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
        _ => host.to_string(),
    };
    let mut urls = vec![
        format!("turn:{host}:{port}?transport=udp"),
        format!("turn:{host}:{port}?transport=tcp"),
    ];
    if let Some(tls) = tls_port {
        urls.push(format!("turns:{host}:{tls}?transport=tcp"));
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_for_names_and_addresses() {
        assert_eq!(
            ice_urls("turn.example.org", 3478, Some(5349)),
            vec![
                "turn:turn.example.org:3478?transport=udp",
                "turn:turn.example.org:3478?transport=tcp",
                "turns:turn.example.org:5349?transport=tcp",
            ]
        );
        assert_eq!(
            ice_urls("2001:db8::1", 3478, None),
            vec![
                "turn:[2001:db8::1]:3478?transport=udp",
                "turn:[2001:db8::1]:3478?transport=tcp",
            ]
        );
        assert_eq!(ice_urls("192.0.2.1", 1, None).len(), 2);
    }
}

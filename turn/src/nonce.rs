//! Stateless nonces (RFC 8489 §9.2).
//!
//! A nonce carries its own expiry and an HMAC over (expiry, client IP) keyed by
//! a per-process random secret, so validating one needs no table: nothing is
//! stored for a client before it authenticates, and a nonce cannot be replayed
//! from another address or after it expires. The nonce starts with the RFC 8489
//! cookie `obMatJos2` and security-feature bits announcing password-algorithm
//! negotiation, so RFC 8489 clients know they may use SHA-256.

use std::net::IpAddr;

/// The RFC 8489 nonce cookie followed by base64 of the feature bits with
/// "Password algorithms" (bit 0) set: 0x800000 -> "gAAA".
pub const NONCE_PREFIX: &str = "obMatJos2gAAA";

const MAC_HEX_LEN: usize = 32;
const EXPIRY_HEX_LEN: usize = 16;

/// Outcome of checking a nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Ours, unexpired, for this client.
    Valid,
    /// Ours but expired: answer 438.
    Stale,
    /// Not ours, or for another client: answer 401.
    Invalid,
}

/// Issues and checks nonces.
#[derive(Clone)]
pub struct NonceMint {
    key: [u8; 32],
    lifetime_secs: u64,
}

impl std::fmt::Debug for NonceMint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NonceMint")
            .field("lifetime_secs", &self.lifetime_secs)
            .finish_non_exhaustive()
    }
}

impl NonceMint {
    /// A mint with a fresh random key.
    pub fn new(lifetime_secs: u64) -> Self {
        NonceMint {
            key: rand::random(),
            lifetime_secs,
        }
    }

    fn mac(&self, expiry: u64, ip: IpAddr) -> [u8; 32] {
        let mut msg = [0u8; 8 + 16];
        msg[..8].copy_from_slice(&expiry.to_be_bytes());
        match ip {
            IpAddr::V4(v4) => msg[8..12].copy_from_slice(&v4.octets()),
            IpAddr::V6(v6) => msg[8..24].copy_from_slice(&v6.octets()),
        }
        hmac_sha256::HMAC::mac(msg, self.key)
    }

    /// A nonce for `ip`, valid until `now_unix + lifetime`.
    pub fn issue(&self, ip: IpAddr, now_unix: u64) -> String {
        let expiry = now_unix.saturating_add(self.lifetime_secs);
        let mac = self.mac(expiry, ip);
        let mut s = String::with_capacity(NONCE_PREFIX.len() + EXPIRY_HEX_LEN + MAC_HEX_LEN);
        s.push_str(NONCE_PREFIX);
        s.push_str(&format!("{expiry:016x}"));
        for b in mac.iter().take(MAC_HEX_LEN / 2) {
            s.push_str(&format!("{b:02x}"));
        }
        s
    }

    /// Checks a nonce presented by `ip`.
    pub fn check(&self, nonce: &str, ip: IpAddr, now_unix: u64) -> NonceCheck {
        let Some(rest) = nonce.strip_prefix(NONCE_PREFIX) else {
            return NonceCheck::Invalid;
        };
        if rest.len() != EXPIRY_HEX_LEN + MAC_HEX_LEN || !rest.is_ascii() {
            return NonceCheck::Invalid;
        }
        let (exp_hex, mac_hex) = rest.split_at(EXPIRY_HEX_LEN);
        let Ok(expiry) = u64::from_str_radix(exp_hex, 16) else {
            return NonceCheck::Invalid;
        };
        let expected = self.mac(expiry, ip);
        let mut diff = 0u8;
        for (i, want) in expected.iter().take(MAC_HEX_LEN / 2).enumerate() {
            let got = mac_hex
                .get(i * 2..i * 2 + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match got {
                Some(g) => diff |= g ^ want,
                None => return NonceCheck::Invalid,
            }
        }
        if diff != 0 {
            NonceCheck::Invalid
        } else if expiry < now_unix {
            NonceCheck::Stale
        } else {
            NonceCheck::Valid
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_round_trip_expiry_and_binding() {
        let mint = NonceMint::new(600);
        let ip: IpAddr = "192.0.2.1".parse().expect("ip");
        let other: IpAddr = "192.0.2.2".parse().expect("ip");
        let n = mint.issue(ip, 1_000);
        assert!(n.starts_with("obMatJos2"));
        assert!(n.len() < 128, "RFC 8489 limits NONCE to 128 characters");
        assert_eq!(mint.check(&n, ip, 1_000), NonceCheck::Valid);
        assert_eq!(mint.check(&n, ip, 1_600), NonceCheck::Valid);
        assert_eq!(mint.check(&n, ip, 1_601), NonceCheck::Stale);
        assert_eq!(mint.check(&n, other, 1_000), NonceCheck::Invalid);
        // another server's (or a restarted server's) nonce is not ours
        assert_eq!(
            NonceMint::new(600).check(&n, ip, 1_000),
            NonceCheck::Invalid
        );
    }

    #[test]
    fn forged_and_garbage_nonces_are_invalid() {
        let mint = NonceMint::new(600);
        let ip: IpAddr = "::1".parse().expect("ip");
        let n = mint.issue(ip, 5);
        // extend the expiry without the key
        let forged = format!(
            "{NONCE_PREFIX}{:016x}{}",
            u64::MAX,
            &n[NONCE_PREFIX.len() + 16..]
        );
        assert_eq!(mint.check(&forged, ip, 5), NonceCheck::Invalid);
        for g in [
            "",
            "obMatJos2",
            "obMatJos2gAAA",
            "x",
            &n[..n.len() - 1],
            "obMatJos2gAAAééééééééééééééééééééééééééééééééééééééééééééééééé",
        ] {
            assert_eq!(mint.check(g, ip, 5), NonceCheck::Invalid, "{g:?}");
        }
    }
}

//! Long-term credentials: static users, TURN REST API (coturn
//! `use-auth-secret`) ephemeral users, key derivation and MESSAGE-INTEGRITY
//! checks.
//!
//! Ephemeral usernames are `<unix-expiry>:<id>` and their password is
//! base64(HMAC-SHA1(secret, username)), so the server can check them without
//! any shared state with whoever issued them (the SFU's signaling).

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use stun_rs::attributes::stun::{MessageIntegrity, MessageIntegritySha256};
use stun_rs::{Algorithm, AlgorithmId, HMACKey, StunMessage};

/// Credentials for the TURN REST API: a username valid until `now + ttl` and
/// its password, exactly as coturn's `use-auth-secret` expects them.
///
/// `id` is free text identifying the user (a participant id); a `:` in it is
/// kept, because the server only reads the part before the first `:`.
pub fn ephemeral_credentials(
    secret: &[u8],
    id: &str,
    ttl: Duration,
    now: SystemTime,
) -> (String, String) {
    let expiry = now
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .saturating_add(ttl)
        .as_secs();
    let username = format!("{expiry}:{id}");
    let password = rest_password(secret, &username);
    (username, password)
}

/// base64(HMAC-SHA1(secret, username)): the REST API password of `username`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(hmac_sha1::hmac_sha1(secret, username.as_bytes()))
}

/// Why a username has no usable password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialError {
    /// Neither a static user nor a well-formed REST username.
    UnknownUser,
    /// A REST username whose expiry has passed.
    Expired,
}

/// The set of users the server accepts.
#[derive(Clone, Default)]
pub struct Credentials {
    users: HashMap<String, String>,
    secret: Option<Vec<u8>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // never log passwords or the secret
        f.debug_struct("Credentials")
            .field("users", &self.users.len())
            .field("rest_api", &self.secret.is_some())
            .finish()
    }
}

impl Credentials {
    /// Static users plus an optional REST API secret.
    pub fn new(users: &[(String, String)], secret: Option<&str>) -> Self {
        Credentials {
            users: users.iter().cloned().collect(),
            secret: secret.map(|s| s.as_bytes().to_vec()),
        }
    }

    /// The password for `username` at time `now_unix`.
    pub fn password(&self, username: &str, now_unix: u64) -> Result<String, CredentialError> {
        if let Some(p) = self.users.get(username) {
            return Ok(p.clone());
        }
        let secret = self.secret.as_ref().ok_or(CredentialError::UnknownUser)?;
        // coturn reads the timestamp before the first separator; ids may contain ':'
        let stamp = username.split(':').next().unwrap_or_default();
        let expiry: u64 = stamp.parse().map_err(|_| CredentialError::UnknownUser)?;
        if expiry < now_unix {
            return Err(CredentialError::Expired);
        }
        Ok(rest_password(secret, username))
    }
}

/// Which integrity attribute a request used; responses mirror it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityKind {
    /// MESSAGE-INTEGRITY (HMAC-SHA1).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256.
    Sha256,
}

/// The long-term key for (username, realm, password) with the chosen password
/// algorithm; `None` if the strings are rejected by the OpaqueString profile.
pub fn long_term_key(
    username: &str,
    realm: &str,
    password: &str,
    algorithm: AlgorithmId,
) -> Option<HMACKey> {
    HMACKey::new_long_term(username, realm, password, Algorithm::from(algorithm)).ok()
}

/// Checks the request's integrity with `key`: MESSAGE-INTEGRITY-SHA256 when
/// present (RFC 8489 §9.2.4), else MESSAGE-INTEGRITY. `None` if neither is
/// present or the HMAC does not match.
pub fn verify_integrity(raw: &[u8], msg: &StunMessage, key: &HMACKey) -> Option<IntegrityKind> {
    if let Some(attr) = msg.get::<MessageIntegritySha256>() {
        let mi = attr.as_message_integrity_sha256().ok()?;
        let input = stun_rs::get_input_text::<MessageIntegritySha256>(raw)?;
        return mi.validate(&input, key).then_some(IntegrityKind::Sha256);
    }
    let mi = msg.get::<MessageIntegrity>()?.as_message_integrity().ok()?;
    let input = stun_rs::get_input_text::<MessageIntegrity>(raw)?;
    mi.validate(&input, key).then_some(IntegrityKind::Sha1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_credentials_match_coturn_formula() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let (user, pass) = ephemeral_credentials(b"s3cret", "alice", Duration::from_secs(300), now);
        assert_eq!(user, "1700000300:alice");
        // independently computed: printf '1700000300:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64
        assert_eq!(pass, "dVYbk8cykh3a9bC+gQyQQuc4Lbg=");
        let creds = Credentials::new(&[], Some("s3cret"));
        assert_eq!(creds.password(&user, 1_700_000_000), Ok(pass.clone()));
        assert_eq!(creds.password(&user, 1_700_000_300), Ok(pass));
        assert_eq!(
            creds.password(&user, 1_700_000_301),
            Err(CredentialError::Expired)
        );
        assert_eq!(
            creds.password("alice", 0),
            Err(CredentialError::UnknownUser)
        );
        assert_eq!(
            creds.password("abc:alice", 0),
            Err(CredentialError::UnknownUser)
        );
    }

    #[test]
    fn static_users_and_no_secret() {
        let creds = Credentials::new(&[("bob".into(), "pw".into())], None);
        assert_eq!(creds.password("bob", 0), Ok("pw".into()));
        assert_eq!(
            creds.password("9999999999:bob", 0),
            Err(CredentialError::UnknownUser)
        );
        assert!(!format!("{creds:?}").contains("pw"));
    }

    #[test]
    fn long_term_key_is_md5_of_user_realm_password() {
        let key = long_term_key("user", "realm", "pass", AlgorithmId::MD5).expect("key");
        assert_eq!(key.as_bytes(), md5::compute("user:realm:pass").0);
        let key = long_term_key("user", "realm", "pass", AlgorithmId::SHA256).expect("key");
        assert_eq!(key.as_bytes().len(), 32);
    }
}

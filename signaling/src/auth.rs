//! Access tokens: JWTs signed with HS256 by the server's API secret, like LiveKit's. They carry
//! who the participant is, which room it may join, and what it may do there. The JSON shape
//! is documented in `docs/protocol.md` ("Access tokens").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// What a token allows. Missing grants are `false`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Send media into the room.
    #[serde(default)]
    pub publish: bool,
    /// Receive the others' media.
    #[serde(default)]
    pub subscribe: bool,
    /// Use the room API on the token's room (on every room when the token names none).
    #[serde(default)]
    pub admin: bool,
}

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The API key that signed it.
    pub iss: String,
    /// The participant's identity.
    pub sub: String,
    /// Display name shown to the others; wins over the `name` of the `join` message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The room it grants; `None` only makes sense for admin tokens (every room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default)]
    pub grants: Grants,
    /// Expiry, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch.
    pub nbf: u64,
}

impl Claims {
    /// Whether these claims let their bearer administer `room`.
    pub fn administers(&self, room: &str) -> bool {
        self.grants.admin && self.room.as_deref().is_none_or(|r| r == room)
    }
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token was not issued by this server's API key")]
    WrongIssuer,
    #[error("the access token's signature does not match")]
    BadSignature,
    #[error("the access token is malformed: {0}")]
    Malformed(String),
    #[error("could not sign the token: {0}")]
    Signing(String),
}

/// What to put in a new token.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    pub identity: String,
    pub name: Option<String>,
    pub room: Option<String>,
    pub grants: Grants,
    pub ttl: Duration,
}

/// The API key and secret: mints and verifies tokens.
#[derive(Clone)]
pub struct Auth {
    api_key: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("api_key", &self.api_key)
            .finish_non_exhaustive()
    }
}

/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECS: u64 = 30;

impl Auth {
    pub fn new(api_key: &str, api_secret: &str) -> Self {
        Self {
            api_key: api_key.to_owned(),
            encoding: EncodingKey::from_secret(api_secret.as_bytes()),
            decoding: DecodingKey::from_secret(api_secret.as_bytes()),
        }
    }

    pub fn api_key(&self) -> &str {
        &self.api_key
    }

    /// A signed token valid from now for `request.ttl`.
    pub fn mint(&self, request: &TokenRequest) -> Result<String, AuthError> {
        self.mint_at(request, SystemTime::now())
    }

    pub fn mint_at(&self, request: &TokenRequest, now: SystemTime) -> Result<String, AuthError> {
        let now = unix_secs(now);
        let claims = Claims {
            iss: self.api_key.clone(),
            sub: request.identity.clone(),
            name: request.name.clone(),
            room: request.room.clone(),
            grants: request.grants,
            exp: now.saturating_add(request.ttl.as_secs()),
            nbf: now,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| AuthError::Signing(e.to_string()))
    }

    /// The claims of a token signed with our secret, issued by our key, and valid now.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use jsonwebtoken::errors::ErrorKind;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[&self.api_key]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        jsonwebtoken::decode::<Claims>(token.trim(), &self.decoding, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                _ => AuthError::Malformed(e.to_string()),
            })
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(room: &str) -> TokenRequest {
        TokenRequest {
            identity: "alice".into(),
            name: Some("Alice".into()),
            room: Some(room.into()),
            grants: Grants {
                publish: true,
                subscribe: true,
                admin: false,
            },
            ttl: Duration::from_secs(3600),
        }
    }

    #[test]
    fn minted_tokens_verify_and_carry_their_claims() {
        let auth = Auth::new("key1", "a secret");
        let token = auth.mint(&request("standup")).unwrap();
        let claims = auth.verify(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.name.as_deref(), Some("Alice"));
        assert_eq!(claims.room.as_deref(), Some("standup"));
        assert!(claims.grants.publish && claims.grants.subscribe && !claims.grants.admin);
        assert_eq!(claims.iss, "key1");
        assert!(!claims.administers("standup"));
    }

    #[test]
    fn bad_tokens_are_refused_with_the_reason() {
        let auth = Auth::new("key1", "a secret");
        let token = auth.mint(&request("r")).unwrap();
        assert!(matches!(
            Auth::new("key1", "another secret").verify(&token),
            Err(AuthError::BadSignature)
        ));
        assert!(matches!(
            Auth::new("key2", "a secret").verify(&token),
            Err(AuthError::WrongIssuer)
        ));
        let old = SystemTime::now() - Duration::from_secs(7200);
        let expired = auth.mint_at(&request("r"), old).unwrap();
        assert!(matches!(auth.verify(&expired), Err(AuthError::Expired)));
        let future = SystemTime::now() + Duration::from_secs(600);
        let early = auth.mint_at(&request("r"), future).unwrap();
        assert!(matches!(auth.verify(&early), Err(AuthError::NotYetValid)));
        assert!(matches!(auth.verify("x.y.z"), Err(AuthError::Malformed(_))));
        assert!(matches!(auth.verify(""), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn admin_tokens_without_a_room_administer_every_room() {
        let auth = Auth::new("k", "s");
        let mut r = request("a");
        r.grants.admin = true;
        let claims = auth.verify(&auth.mint(&r).unwrap()).unwrap();
        assert!(claims.administers("a") && !claims.administers("b"));
        r.room = None;
        let claims = auth.verify(&auth.mint(&r).unwrap()).unwrap();
        assert!(claims.administers("a") && claims.administers("b"));
    }
}

//! Who is connecting, when `AUTH_MODE=oidc`: a JWT from an OpenID Connect issuer, verified in the `$connect`
//! authorizer ([`crate::handlers::authorize`]) and made into an [`Identity`].
//!
//! * [`transport`]: where the token rides on the handshake (a subprotocol, or `?token=`).
//! * [`keys`]: the issuer's signing keys, cached; [`fetch`]: fetching them (discovery, JWKS).
//! * `claims`: issuer, audience, `exp`/`nbf` (a minute of leeway), `sub`, the display name.
//! * [`grants`]: the rooms claim.
//!
//! Only RS256 and ES256 with the issuer's keys are accepted, and HS256 only with the configured shared secret
//! (never keyed with a public key); `alg: none` and every other algorithm are refused before any key is looked
//! at. Tokens never reach a log: errors say what was wrong, not what was sent.

mod claims;
pub mod fetch;
pub mod grants;
pub mod keys;
pub mod transport;

use std::sync::Arc;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use self::claims::{Claims, Expected};
use self::fetch::HttpKeySource;
use self::grants::RoomGrants;
use self::keys::{FetchError, KeyCache, KeySource};
use crate::config::Oidc;
use crate::wire::{DisplayName, Uid};

/// Who a valid token says is connecting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The stable user id: the token's `sub`.
    pub uid: Uid,
    /// The name shown: `name`, else `preferred_username`, else `cognito:username`, else `sub`.
    pub name: DisplayName,
    /// When the token expires (`exp`, epoch seconds): the connection ends then.
    pub expires_at: i64,
    /// The rooms the user may join.
    pub rooms: RoomGrants,
}

/// Why a token was refused (or could not be checked). Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The handshake carries no token.
    #[error("no token")]
    Missing,
    /// Not a JWT, or claims that cannot make an identity.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// Signed with an algorithm this verifier does not accept (`none`, `HS256` without a shared secret, …).
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(String),
    /// The issuer has no key by the token's `kid`.
    #[error("no signing key matches the token")]
    UnknownKey,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is still ahead (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// The token is for another audience.
    #[error("wrong audience")]
    WrongAudience,
    /// The issuer's keys cannot be fetched: not the client's fault.
    #[error("the signing keys are unavailable")]
    Keys(#[source] FetchError),
}

/// Verifies tokens of one issuer for one audience.
pub struct Verifier {
    issuer: String,
    audience: String,
    rooms_claim: String,
    leeway: i64,
    keys: KeyCache,
    hs256: Option<DecodingKey>,
}

/// The parts of a JWT header read before anything is verified.
#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

impl Verifier {
    /// A verifier for `oidc`'s issuer, fetching its keys over HTTP; HS256 with `hs256_secret` when given (read
    /// from [`crate::config::AUTH_HS256_SECRET_ARN`] or [`crate::config::AUTH_HS256_SECRET`] by the caller).
    pub fn new(oidc: &Oidc, hs256_secret: Option<&str>) -> Self {
        let source = HttpKeySource::new(&oidc.issuer, oidc.jwks_url.as_deref());
        let url = source.describe();
        Self::with_source(oidc, hs256_secret, Arc::new(source), &url)
    }

    /// The same with the keys from `source` (`url` names it in errors).
    pub fn with_source(
        oidc: &Oidc,
        hs256_secret: Option<&str>,
        source: Arc<dyn KeySource>,
        url: &str,
    ) -> Self {
        Self {
            issuer: oidc.issuer.clone(),
            audience: oidc.audience.clone(),
            rooms_claim: oidc.rooms_claim.clone(),
            leeway: oidc.leeway_secs,
            keys: KeyCache::new(source, url, oidc.jwks_refetch),
            hs256: hs256_secret.map(|s| DecodingKey::from_secret(s.as_bytes())),
        }
    }

    /// The identity `token` proves at `now` (epoch seconds).
    ///
    /// # Errors
    /// [`AuthError`]: why the token is refused, or [`AuthError::Keys`] when the keys cannot be fetched.
    pub async fn verify(&self, token: &str, now: i64) -> Result<Identity, AuthError> {
        let header = token
            .split('.')
            .next()
            .filter(|_| token.split('.').count() == 3)
            .and_then(|h| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(h)
                    .ok()
            })
            .and_then(|json| serde_json::from_slice::<Header>(&json).ok())
            .ok_or(AuthError::Malformed("not a JWT"))?;
        let (alg, key) = match header.alg.as_str() {
            "RS256" | "ES256" => {
                let alg = if header.alg == "RS256" {
                    Algorithm::RS256
                } else {
                    Algorithm::ES256
                };
                (alg, self.keys.key(header.kid.as_deref(), alg).await?.key)
            }
            "HS256" => match &self.hs256 {
                Some(secret) => (Algorithm::HS256, secret.clone()),
                None => return Err(AuthError::Algorithm(header.alg)),
            },
            _ => return Err(AuthError::Algorithm(header.alg)),
        };
        // The signature, and nothing else: the claims are checked below against `now`, with our leeway.
        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        let claims = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(|err| {
            match err.kind() {
                jsonwebtoken::errors::ErrorKind::InvalidSignature => AuthError::BadSignature,
                jsonwebtoken::errors::ErrorKind::InvalidAlgorithm => {
                    AuthError::Algorithm(format!("{alg:?}"))
                }
                _ => AuthError::Malformed("undecodable"),
            }
        })?;
        claims.claims.check(
            &Expected {
                issuer: &self.issuer,
                audience: &self.audience,
                rooms_claim: &self.rooms_claim,
                leeway: self.leeway,
            },
            now,
        )
    }
}

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

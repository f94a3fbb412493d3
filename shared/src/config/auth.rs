//! Who may connect: `AUTH_MODE` and the OpenID Connect settings it needs ([`AuthConfig`]). Plain data, checked as
//! it is read; `crate::auth` turns it into a verifier.

use std::time::Duration;

use super::values::{ConfigError, ranged};

/// `open` (the default: anyone may connect and say any `?name=`) or `oidc` (a valid token is required; names come
/// from it).
pub const AUTH_MODE: &str = "AUTH_MODE";
/// The token issuer, matched exactly against `iss` (`https://…`; `http://` only on a loopback address).
pub const AUTH_ISSUER: &str = "AUTH_ISSUER";
/// The audience: `aud` must hold it (a Cognito access token, which has no `aud`: its `client_id`).
pub const AUTH_AUDIENCE: &str = "AUTH_AUDIENCE";
/// Where the signing keys are (default: the issuer's `/.well-known/openid-configuration` → `jwks_uri`).
pub const AUTH_JWKS_URL: &str = "AUTH_JWKS_URL";
/// The claim listing the rooms a user may join, names or prefixes ending in `*` (default `rooms`; without the
/// claim, any room).
pub const AUTH_ROOMS_CLAIM: &str = "AUTH_ROOMS_CLAIM";
/// ARN of a Secrets Manager secret holding an HS256 key, for a backend that mints its own tokens (optional).
pub const AUTH_HS256_SECRET_ARN: &str = "AUTH_HS256_SECRET_ARN";
/// The HS256 key itself, for local development (ignored when [`AUTH_HS256_SECRET_ARN`] is set).
pub const AUTH_HS256_SECRET: &str = "AUTH_HS256_SECRET";
/// Seconds between two fetches of the signing keys caused by an unknown `kid` (default 60).
pub const AUTH_JWKS_REFETCH_SECS: &str = "AUTH_JWKS_REFETCH_SECS";
/// How far `exp` and `nbf` may be off, in seconds: clocks drift (default and most: 60).
pub const AUTH_LEEWAY_SECS: &str = "AUTH_LEEWAY_SECS";
/// The OAuth client the pages sign in with (default: [`AUTH_AUDIENCE`], as with Cognito, whose ID tokens are
/// for the app client).
pub const AUTH_CLIENT_ID: &str = "AUTH_CLIENT_ID";
/// [`AUTH_ROOMS_CLAIM`]'s default.
pub const DEFAULT_AUTH_ROOMS_CLAIM: &str = "rooms";
/// [`AUTH_JWKS_REFETCH_SECS`]'s default: a rotated key is picked up at once, an attacker's made-up `kid`s cost
/// one fetch a minute.
pub const DEFAULT_AUTH_JWKS_REFETCH: Duration = Duration::from_secs(60);
/// [`AUTH_LEEWAY_SECS`]'s default, and the most it may be.
pub const DEFAULT_AUTH_LEEWAY_SECS: i64 = 60;

/// Who may connect.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum AuthConfig {
    /// Anyone; `?name=` is whatever the client says.
    #[default]
    Open,
    /// A valid token from one OpenID Connect issuer.
    Oidc(Oidc),
}

/// [`AuthConfig::Oidc`]'s settings.
#[derive(Clone, PartialEq, Eq)]
pub struct Oidc {
    /// [`AUTH_ISSUER`].
    pub issuer: String,
    /// [`AUTH_AUDIENCE`].
    pub audience: String,
    /// [`AUTH_JWKS_URL`] (none: from the issuer's discovery document).
    pub jwks_url: Option<String>,
    /// [`AUTH_ROOMS_CLAIM`].
    pub rooms_claim: String,
    /// [`AUTH_HS256_SECRET_ARN`].
    pub hs256_secret_arn: Option<String>,
    /// [`AUTH_HS256_SECRET`]; never printed.
    pub hs256_secret: Option<String>,
    /// [`AUTH_JWKS_REFETCH_SECS`].
    pub jwks_refetch: Duration,
    /// [`AUTH_LEEWAY_SECS`]: 0 to 60.
    pub leeway_secs: i64,
    /// [`AUTH_CLIENT_ID`].
    pub client_id: String,
}

impl AuthConfig {
    /// Reads the auth variables through `lookup`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for an unknown mode, an issuer or key URL that is not `https://` (or `http://` on
    /// loopback), or `oidc` without an issuer or an audience.
    pub(super) fn from_lookup(
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let set = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        match set(AUTH_MODE)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("open") => return Ok(Self::Open),
            Some("oidc") => {}
            Some(other) => {
                return Err(ConfigError::invalid(
                    AUTH_MODE,
                    other,
                    "expected open or oidc",
                ));
            }
        }
        let required = |name: &'static str| set(name).ok_or(ConfigError::Missing(name));
        let issuer = required(AUTH_ISSUER)?;
        check_url(AUTH_ISSUER, &issuer)?;
        let jwks_url = set(AUTH_JWKS_URL);
        if let Some(url) = &jwks_url {
            check_url(AUTH_JWKS_URL, url)?;
        }
        // 0 refetches on every unknown kid: the test stacks, where every test brings a key of its own.
        let refetch_secs = ranged(
            lookup,
            AUTH_JWKS_REFETCH_SECS,
            DEFAULT_AUTH_JWKS_REFETCH.as_secs(),
            0..=3600,
        )?;
        let leeway_secs = ranged(
            lookup,
            AUTH_LEEWAY_SECS,
            DEFAULT_AUTH_LEEWAY_SECS as u64,
            0..=60,
        )?;
        let audience = required(AUTH_AUDIENCE)?;
        Ok(Self::Oidc(Oidc {
            issuer,
            client_id: set(AUTH_CLIENT_ID).unwrap_or_else(|| audience.clone()),
            audience,
            leeway_secs: i64::try_from(leeway_secs).unwrap_or(DEFAULT_AUTH_LEEWAY_SECS),
            jwks_url,
            rooms_claim: set(AUTH_ROOMS_CLAIM)
                .unwrap_or_else(|| DEFAULT_AUTH_ROOMS_CLAIM.to_owned()),
            hs256_secret_arn: set(AUTH_HS256_SECRET_ARN),
            hs256_secret: set(AUTH_HS256_SECRET),
            jwks_refetch: Duration::from_secs(refetch_secs),
        }))
    }

    /// The OpenID Connect settings, when tokens are required.
    pub fn oidc(&self) -> Option<&Oidc> {
        match self {
            Self::Open => None,
            Self::Oidc(oidc) => Some(oidc),
        }
    }
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Open => f.write_str("Open"),
            Self::Oidc(oidc) => f.debug_tuple("Oidc").field(oidc).finish(),
        }
    }
}

impl std::fmt::Debug for Oidc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            issuer,
            audience,
            jwks_url,
            rooms_claim,
            hs256_secret_arn,
            hs256_secret,
            jwks_refetch,
            leeway_secs,
            client_id,
        } = self;
        f.debug_struct("Oidc")
            .field("issuer", issuer)
            .field("audience", audience)
            .field("jwks_url", jwks_url)
            .field("rooms_claim", rooms_claim)
            .field("hs256_secret_arn", hs256_secret_arn)
            .field("hs256_secret", &hs256_secret.as_ref().map(|_| "<redacted>"))
            .field("jwks_refetch", jwks_refetch)
            .field("leeway_secs", leeway_secs)
            .field("client_id", client_id)
            .finish()
    }
}

/// `https://…`, or `http://` on a loopback host (local development: the emulator's provider, a test's).
pub fn check_url(name: &'static str, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("https://") && url.len() > "https://".len() {
        return Ok(());
    }
    if let Some(rest) = url.strip_prefix("http://") {
        if is_loopback_authority(rest.split('/').next().unwrap_or_default()) {
            return Ok(());
        }
        return Err(ConfigError::invalid(
            name,
            url,
            "http:// is allowed only on a loopback address",
        ));
    }
    Err(ConfigError::invalid(name, url, "must be an https:// URL"))
}

/// `host[:port]` names this machine: `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback_authority(authority: &str) -> bool {
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> Result<AuthConfig, ConfigError> {
        AuthConfig::from_lookup(&|name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn open_is_the_default_and_oidc_needs_an_issuer_and_an_audience() {
        assert_eq!(read(&[]).ok(), Some(AuthConfig::Open));
        assert_eq!(read(&[(AUTH_MODE, " Open ")]).ok(), Some(AuthConfig::Open));
        assert!(read(&[(AUTH_MODE, "jwt")]).is_err());
        assert!(read(&[(AUTH_MODE, "oidc"), (AUTH_AUDIENCE, "app")]).is_err());
        assert!(read(&[(AUTH_MODE, "oidc"), (AUTH_ISSUER, "https://id.example")]).is_err());

        let oidc = read(&[
            (AUTH_MODE, "oidc"),
            (AUTH_ISSUER, "https://id.example"),
            (AUTH_AUDIENCE, "app"),
        ])
        .expect("valid");
        let oidc = oidc.oidc().expect("oidc");
        assert_eq!(oidc.rooms_claim, "rooms");
        assert_eq!(oidc.jwks_refetch, Duration::from_secs(60));
        assert_eq!(oidc.jwks_url, None);
        assert_eq!((oidc.leeway_secs, oidc.client_id.as_str()), (60, "app"));
    }

    #[test]
    fn an_http_issuer_or_key_url_is_refused_unless_it_is_on_loopback() {
        let with = |issuer: &str, jwks: &str| {
            read(&[
                (AUTH_MODE, "oidc"),
                (AUTH_ISSUER, issuer),
                (AUTH_AUDIENCE, "app"),
                (AUTH_JWKS_URL, jwks),
            ])
        };
        assert!(with("http://127.0.0.1:3000/oidc", "").is_ok());
        assert!(with("http://localhost:3000", "http://[::1]:9/keys").is_ok());
        assert!(with("http://id.example", "").is_err());
        assert!(with("http://127.0.0.1.example.com", "").is_err());
        assert!(with("https://id.example", "http://keys.example/jwks").is_err());
        assert!(with("ftp://id.example", "").is_err());
    }

    #[test]
    fn the_shared_secret_is_never_printed() {
        let config = read(&[
            (AUTH_MODE, "oidc"),
            (AUTH_ISSUER, "https://id.example"),
            (AUTH_AUDIENCE, "app"),
            (AUTH_HS256_SECRET, "s3cret-value"),
            (AUTH_JWKS_REFETCH_SECS, "0"),
        ])
        .expect("valid");

        assert!(!format!("{config:?}").contains("s3cret-value"));
        assert_eq!(config.oidc().expect("oidc").jwks_refetch, Duration::ZERO);
    }
}

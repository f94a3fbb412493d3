//! Configuration, read once from the environment at cold start. Every error names the variable at fault.

use std::str::FromStr;
use std::time::Duration;

use crate::fanout::FanoutSettings;
use crate::rooms::MAX_CONNECTION_LIFETIME;
use crate::rooms::redis::DEFAULT_PREFIX;

/// Redis URL (`redis://`, `rediss://` for TLS, `unix://`).
pub const REDIS_URL: &str = "REDIS_URL";
/// Prefix of every Redis key (default `wschat:`).
pub const REDIS_KEY_PREFIX: &str = "REDIS_KEY_PREFIX";
/// Seconds a membership lasts without `$disconnect` (default 7200, API Gateway's cap).
pub const MEMBERSHIP_TTL_SECS: &str = "MEMBERSHIP_TTL_SECS";
/// Comma-separated list of allowed `Origin`s for browsers, or `*` (default `*`).
pub const ALLOWED_ORIGINS: &str = "ALLOWED_ORIGINS";
/// The stage URL the Management API is reached at (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`).
pub const WS_MANAGEMENT_ENDPOINT: &str = "WS_MANAGEMENT_ENDPOINT";
/// Posts in flight at once during fan-out (default 64).
pub const FANOUT_MAX_IN_FLIGHT: &str = "FANOUT_MAX_IN_FLIGHT";
/// Attempts per member when throttled (default 4).
pub const FANOUT_MAX_ATTEMPTS: &str = "FANOUT_MAX_ATTEMPTS";

/// A configuration problem, naming the variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is not set.
    #[error("environment variable {0} is required but not set")]
    Missing(&'static str),
    /// A variable is set to something that does not parse.
    #[error("environment variable {name}={value:?} is invalid: {reason}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// Why it does not parse.
        reason: String,
    },
}

/// Which browser origins may open a connection (the equivalent of Channels' `AllowedHostsOriginValidator`).
///
/// Only browsers send `Origin`, and only browsers can be tricked into connecting from another site's page, so
/// a connection without `Origin` (a CLI client, a test) is allowed; a browser from an unlisted origin is refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OriginPolicy {
    /// Any origin (`*`).
    #[default]
    Any,
    /// Only these origins, compared case-insensitively (`https://chat.example.com`).
    Only(Vec<String>),
}

impl OriginPolicy {
    /// Parses `*` or a comma-separated list of origins.
    pub fn parse(raw: &str) -> Self {
        let list: Vec<String> = raw
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|o| !o.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|o| o == "*") {
            Self::Any
        } else {
            Self::Only(list)
        }
    }

    /// Whether a request with this `Origin` header (or none) may connect.
    pub fn allows(&self, origin: Option<&str>) -> bool {
        match (self, origin) {
            (Self::Any, _) | (Self::Only(_), None) => true,
            (Self::Only(list), Some(origin)) => {
                let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
                list.contains(&origin)
            }
        }
    }
}

/// Everything the functions read from the environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// [`REDIS_URL`]; `None` when unset (the functions then fail at start, the emulator uses memory).
    pub redis_url: Option<String>,
    /// [`REDIS_KEY_PREFIX`].
    pub key_prefix: String,
    /// [`MEMBERSHIP_TTL_SECS`].
    pub membership_lifetime: Duration,
    /// [`ALLOWED_ORIGINS`].
    pub allowed_origins: OriginPolicy,
    /// [`WS_MANAGEMENT_ENDPOINT`].
    pub management_endpoint: Option<String>,
    /// [`FANOUT_MAX_IN_FLIGHT`] and [`FANOUT_MAX_ATTEMPTS`].
    pub fanout: FanoutSettings,
}

impl Config {
    /// Reads the configuration from the process environment.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a variable that does not parse.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (the environment, or a map in tests).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a variable that does not parse.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let defaults = FanoutSettings::default();
        let ttl_secs: u64 = parse_or(
            &lookup,
            MEMBERSHIP_TTL_SECS,
            MAX_CONNECTION_LIFETIME.as_secs(),
        )?;
        if ttl_secs == 0 {
            return Err(invalid(MEMBERSHIP_TTL_SECS, "0", "must be at least 1"));
        }
        let max_in_flight: usize = parse_or(&lookup, FANOUT_MAX_IN_FLIGHT, defaults.max_in_flight)?;
        let max_attempts: u32 = parse_or(&lookup, FANOUT_MAX_ATTEMPTS, defaults.max_attempts)?;
        if max_in_flight == 0 {
            return Err(invalid(FANOUT_MAX_IN_FLIGHT, "0", "must be at least 1"));
        }
        if max_attempts == 0 {
            return Err(invalid(FANOUT_MAX_ATTEMPTS, "0", "must be at least 1"));
        }
        let key_prefix = lookup(REDIS_KEY_PREFIX).unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if key_prefix.contains(['{', '}']) {
            return Err(invalid(
                REDIS_KEY_PREFIX,
                &key_prefix,
                "must not contain { or } (they are hash tags)",
            ));
        }
        Ok(Self {
            redis_url: lookup(REDIS_URL).filter(|v| !v.is_empty()),
            key_prefix,
            membership_lifetime: Duration::from_secs(ttl_secs),
            allowed_origins: lookup(ALLOWED_ORIGINS)
                .map(|v| OriginPolicy::parse(&v))
                .unwrap_or_default(),
            management_endpoint: lookup(WS_MANAGEMENT_ENDPOINT).filter(|v| !v.is_empty()),
            fanout: FanoutSettings {
                max_in_flight,
                max_attempts,
                ..defaults
            },
        })
    }

    /// [`REDIS_URL`], required by the Lambda functions.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when it is unset.
    pub fn require_redis_url(&self) -> Result<&str, ConfigError> {
        self.redis_url
            .as_deref()
            .ok_or(ConfigError::Missing(REDIS_URL))
    }

    /// [`WS_MANAGEMENT_ENDPOINT`], required by the function that posts.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when it is unset.
    pub fn require_management_endpoint(&self) -> Result<&str, ConfigError> {
        self.management_endpoint
            .as_deref()
            .ok_or(ConfigError::Missing(WS_MANAGEMENT_ENDPOINT))
    }
}

fn invalid(name: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        value: value.to_owned(),
        reason: reason.to_owned(),
    }
}

fn parse_or<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match lookup(name) {
        None => Ok(default),
        Some(value) => value
            .trim()
            .parse()
            .map_err(|e: T::Err| invalid(name, &value, &e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let cfg = config(&[]).expect("defaults are valid");
        assert_eq!(cfg.membership_lifetime, Duration::from_secs(7200));
        assert_eq!(cfg.key_prefix, "wschat:");
        assert_eq!(cfg.allowed_origins, OriginPolicy::Any);
        assert!(matches!(
            cfg.require_redis_url(),
            Err(ConfigError::Missing("REDIS_URL"))
        ));
    }

    #[test]
    fn an_invalid_number_names_its_variable() {
        let err = config(&[(FANOUT_MAX_IN_FLIGHT, "lots")]).expect_err("not a number");
        assert!(err.to_string().contains("FANOUT_MAX_IN_FLIGHT"), "{err}");
        let err = config(&[(MEMBERSHIP_TTL_SECS, "0")]).expect_err("zero");
        assert!(err.to_string().contains("MEMBERSHIP_TTL_SECS"), "{err}");
        let err = config(&[(REDIS_KEY_PREFIX, "{x}")]).expect_err("braces");
        assert!(err.to_string().contains("REDIS_KEY_PREFIX"), "{err}");
    }

    #[test]
    fn origin_policy_allows_listed_origins_and_non_browsers() {
        let policy = OriginPolicy::parse("https://chat.example.com, http://127.0.0.1:3000/");
        assert!(policy.allows(Some("https://chat.example.com")));
        assert!(policy.allows(Some("HTTP://127.0.0.1:3000")));
        assert!(policy.allows(None));
        assert!(!policy.allows(Some("https://evil.example.com")));
        assert_eq!(OriginPolicy::parse("*"), OriginPolicy::Any);
    }
}

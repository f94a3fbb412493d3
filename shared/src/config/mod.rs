//! Configuration: the variables the functions and the emulator read, their defaults, and their parsing. Read
//! once at cold start; every error names the variable at fault.
//!
//! This module is plain data: it imports nothing from the rest of the crate and does no I/O beyond reading the
//! environment. Turning a [`Config`] into clients (reading the Redis URL's secret, the CA file, connecting to
//! Redis) is [`crate::startup`]'s job.
//! The variables' names and defaults are in [`vars`], re-exported here.

mod auth;
mod values;
mod vars;

pub use self::auth::*;
pub use self::values::{ConfigError, KeyPrefix};
use self::values::{parse_or, positive, ranged};
pub use self::vars::*;

use std::path::PathBuf;
use std::time::Duration;

/// Everything the functions read from the environment.
#[derive(Clone)]
pub struct Config {
    /// [`REDIS_URL`]; `None` when unset (the functions then read [`REDIS_URL_SECRET_ARN`] or fail at start, the
    /// emulator uses memory).
    pub redis_url: Option<String>,
    /// [`REDIS_URL_SECRET_ARN`].
    pub redis_url_secret_arn: Option<String>,
    /// [`REDIS_CLUSTER`].
    pub redis_cluster: bool,
    /// [`REDIS_AUTH_SECRET_ARN`].
    pub redis_auth_secret_arn: Option<String>,
    /// [`REDIS_ALLOW_PLAINTEXT`].
    pub redis_allow_plaintext: bool,
    /// [`REDIS_CA_CERT_PATH`].
    pub redis_ca_cert_path: Option<PathBuf>,
    /// [`AWS_CA_BUNDLE`].
    pub ca_bundle: Option<PathBuf>,
    /// [`REDIS_KEY_PREFIX`].
    pub key_prefix: KeyPrefix,
    /// [`MEMBERSHIP_TTL_SECS`].
    pub membership_lifetime: Duration,
    /// [`ALLOWED_ORIGINS`], as written (`$connect` parses it into its origin rule).
    pub allowed_origins: String,
    /// [`WS_MANAGEMENT_ENDPOINT`].
    pub management_endpoint: Option<String>,
    /// [`FANOUT_MAX_IN_FLIGHT`]: at least 1.
    pub fanout_max_in_flight: usize,
    /// [`FANOUT_MAX_ATTEMPTS`]: at least 1.
    pub fanout_max_attempts: u32,
    /// [`FANOUT_FUNCTION`].
    pub fanout_function: Option<String>,
    /// [`FANOUT_SHARD_SIZE`].
    pub fanout_shard_size: usize,
    /// [`HISTORY_MAX_MESSAGES`]: 1 to [`MAX_HISTORY_MAX_MESSAGES`].
    pub history_max_messages: usize,
    /// [`HISTORY_TTL_SECS`]: at least a second.
    pub history_ttl: Duration,
    /// [`MAX_ROOM_MEMBERS`]: 1 to [`MAX_MAX_ROOM_MEMBERS`].
    pub max_room_members: usize,
    /// [`RATE_LIMIT_PER_SEC`]: at least 1.
    pub rate_limit_per_sec: u32,
    /// [`RATE_LIMIT_BURST`]: at least 1.
    pub rate_limit_burst: u32,
    /// [`FRAME_RATE_PER_SEC`]: at least 1.
    pub frame_rate_per_sec: u32,
    /// [`FRAME_BURST`]: at least 1.
    pub frame_burst: u32,
    /// [`MAX_MESSAGE_BYTES`]: 1 to [`MAX_MAX_MESSAGE_BYTES`].
    pub max_message_bytes: usize,
    /// [`HISTORY_PAGE_BYTES`]: 1024 to [`MAX_HISTORY_PAGE_BYTES`].
    pub history_page_bytes: usize,
    /// [`HISTORY_MAX_BYTES`]: 16384 to [`MAX_HISTORY_MAX_BYTES`].
    pub history_max_bytes: usize,
    /// [`CONNECT_RATE_PER_IP`]: at least 1.
    pub connect_rate_per_ip: u32,
    /// [`MAX_CONNECTIONS_PER_IP`]: at least 1.
    pub max_connections_per_ip: usize,
    /// [`PRUNE_GRACE_SECS`].
    pub prune_grace: Duration,
    /// [`AUTH_MODE`] and the settings it needs.
    pub auth: AuthConfig,
    /// [`METRICS_NAMESPACE`].
    pub metrics_namespace: String,
}

impl Default for Config {
    /// The configuration of an empty environment.
    fn default() -> Self {
        Self {
            redis_url: None,
            redis_url_secret_arn: None,
            redis_cluster: false,
            redis_auth_secret_arn: None,
            redis_allow_plaintext: false,
            redis_ca_cert_path: None,
            ca_bundle: None,
            key_prefix: KeyPrefix::default(),
            membership_lifetime: MAX_CONNECTION_LIFETIME,
            allowed_origins: "*".to_owned(),
            management_endpoint: None,
            fanout_max_in_flight: DEFAULT_FANOUT_MAX_IN_FLIGHT,
            fanout_max_attempts: DEFAULT_FANOUT_MAX_ATTEMPTS,
            fanout_function: None,
            fanout_shard_size: DEFAULT_FANOUT_SHARD_SIZE,
            history_max_messages: DEFAULT_HISTORY_MAX_MESSAGES,
            history_ttl: DEFAULT_HISTORY_TTL,
            max_room_members: DEFAULT_MAX_ROOM_MEMBERS,
            rate_limit_per_sec: DEFAULT_RATE_LIMIT_PER_SEC,
            rate_limit_burst: DEFAULT_RATE_LIMIT_BURST,
            frame_rate_per_sec: DEFAULT_FRAME_RATE_PER_SEC,
            frame_burst: DEFAULT_FRAME_BURST,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            history_page_bytes: DEFAULT_HISTORY_PAGE_BYTES,
            history_max_bytes: DEFAULT_HISTORY_MAX_BYTES,
            connect_rate_per_ip: DEFAULT_CONNECT_RATE_PER_IP,
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            prune_grace: DEFAULT_PRUNE_GRACE,
            auth: AuthConfig::Open,
            metrics_namespace: DEFAULT_METRICS_NAMESPACE.to_owned(),
        }
    }
}

/// A yes/no variable: `true`, `1`, `yes` or `false`, `0`, `no`, empty (unset: no).
fn flag(lookup: &impl Fn(&str) -> Option<String>, name: &'static str) -> Result<bool, ConfigError> {
    let Some(raw) = lookup(name) else {
        return Ok(false);
    };
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" | "" => Ok(false),
        _ => Err(ConfigError::invalid(
            name,
            &raw,
            "expected true/false, 1/0 or yes/no",
        )),
    }
}

/// A CloudWatch namespace: 1–255 of `A-Za-z0-9._/#:-`, not under `AWS/` (AWS's own).
fn metrics_namespace(raw: &str) -> Result<String, ConfigError> {
    let valid = (1..=255).contains(&raw.len())
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._/#:-".contains(&b))
        && !raw.starts_with("AWS/");
    if !valid {
        return Err(ConfigError::invalid(
            METRICS_NAMESPACE,
            raw,
            "a CloudWatch namespace: 1-255 of A-Z a-z 0-9 . _ / # : -, not starting with AWS/",
        ));
    }
    Ok(raw.to_owned())
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
        let defaults = Self::default();
        let ttl_secs: u64 = parse_or(
            &lookup,
            MEMBERSHIP_TTL_SECS,
            defaults.membership_lifetime.as_secs(),
        )?;
        // Shorter than API Gateway's cap would trim members whose connections are still open: they would go deaf
        // without a word. The lifetime counts from connectedAt, not from the last heartbeat, so it cannot be less.
        if ttl_secs < MAX_CONNECTION_LIFETIME.as_secs() {
            return Err(ConfigError::invalid(
                MEMBERSHIP_TTL_SECS,
                &ttl_secs.to_string(),
                &format!(
                    "must be at least {} (API Gateway's 2-hour connection cap): a shorter lifetime would drop \
                     members that are still connected",
                    MAX_CONNECTION_LIFETIME.as_secs()
                ),
            ));
        }
        let fanout_max_in_flight =
            positive(&lookup, FANOUT_MAX_IN_FLIGHT, defaults.fanout_max_in_flight)?;
        let fanout_max_attempts =
            positive(&lookup, FANOUT_MAX_ATTEMPTS, defaults.fanout_max_attempts)?;
        let fanout_shard_size = ranged(
            &lookup,
            FANOUT_SHARD_SIZE,
            defaults.fanout_shard_size,
            1..=MAX_FANOUT_SHARD_SIZE as u64,
        )?;
        let history_max_messages = ranged(
            &lookup,
            HISTORY_MAX_MESSAGES,
            defaults.history_max_messages,
            1..=MAX_HISTORY_MAX_MESSAGES as u64,
        )?;
        let history_ttl_secs = positive(&lookup, HISTORY_TTL_SECS, defaults.history_ttl.as_secs())?;
        let max_room_members = ranged(
            &lookup,
            MAX_ROOM_MEMBERS,
            defaults.max_room_members,
            1..=MAX_MAX_ROOM_MEMBERS as u64,
        )?;
        let rate_limit_per_sec =
            positive(&lookup, RATE_LIMIT_PER_SEC, defaults.rate_limit_per_sec)?;
        let rate_limit_burst = positive(&lookup, RATE_LIMIT_BURST, defaults.rate_limit_burst)?;
        let frame_rate_per_sec =
            positive(&lookup, FRAME_RATE_PER_SEC, defaults.frame_rate_per_sec)?;
        let frame_burst = positive(&lookup, FRAME_BURST, defaults.frame_burst)?;
        let max_message_bytes = ranged(
            &lookup,
            MAX_MESSAGE_BYTES,
            defaults.max_message_bytes,
            1..=MAX_MAX_MESSAGE_BYTES as u64,
        )?;
        let history_page_bytes = ranged(
            &lookup,
            HISTORY_PAGE_BYTES,
            defaults.history_page_bytes,
            1024..=MAX_HISTORY_PAGE_BYTES as u64,
        )?;
        let history_max_bytes = ranged(
            &lookup,
            HISTORY_MAX_BYTES,
            defaults.history_max_bytes,
            16 * 1024..=MAX_HISTORY_MAX_BYTES as u64,
        )?;
        let connect_rate_per_ip =
            positive(&lookup, CONNECT_RATE_PER_IP, defaults.connect_rate_per_ip)?;
        let max_connections_per_ip = positive(
            &lookup,
            MAX_CONNECTIONS_PER_IP,
            defaults.max_connections_per_ip,
        )?;
        let prune_grace_secs: f64 = parse_or(
            &lookup,
            PRUNE_GRACE_SECS,
            defaults.prune_grace.as_secs_f64(),
        )?;
        let prune_grace = Duration::try_from_secs_f64(prune_grace_secs).map_err(|_| {
            ConfigError::invalid(
                PRUNE_GRACE_SECS,
                &prune_grace_secs.to_string(),
                "must be a non-negative number of seconds",
            )
        })?;
        let key_prefix = match lookup(REDIS_KEY_PREFIX) {
            Some(raw) => KeyPrefix::parse(&raw)?,
            None => defaults.key_prefix,
        };
        let redis_cluster = flag(&lookup, REDIS_CLUSTER)?;
        let redis_allow_plaintext = flag(&lookup, REDIS_ALLOW_PLAINTEXT)?;
        let metrics_namespace = match lookup(METRICS_NAMESPACE) {
            Some(raw) => metrics_namespace(&raw)?,
            None => defaults.metrics_namespace,
        };
        Ok(Self {
            redis_url: lookup(REDIS_URL).filter(|v| !v.is_empty()),
            redis_url_secret_arn: lookup(REDIS_URL_SECRET_ARN)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            redis_cluster,
            redis_auth_secret_arn: lookup(REDIS_AUTH_SECRET_ARN)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            redis_allow_plaintext,
            redis_ca_cert_path: lookup(REDIS_CA_CERT_PATH)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            ca_bundle: lookup(AWS_CA_BUNDLE)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            key_prefix,
            membership_lifetime: Duration::from_secs(ttl_secs),
            allowed_origins: lookup(ALLOWED_ORIGINS).unwrap_or(defaults.allowed_origins),
            management_endpoint: lookup(WS_MANAGEMENT_ENDPOINT).filter(|v| !v.is_empty()),
            fanout_max_in_flight,
            fanout_max_attempts,
            fanout_function: lookup(FANOUT_FUNCTION).filter(|v| !v.trim().is_empty()),
            fanout_shard_size,
            history_max_messages,
            history_ttl: Duration::from_secs(history_ttl_secs),
            max_room_members,
            rate_limit_per_sec,
            rate_limit_burst,
            frame_rate_per_sec,
            frame_burst,
            max_message_bytes,
            history_page_bytes,
            history_max_bytes,
            connect_rate_per_ip,
            max_connections_per_ip,
            prune_grace,
            auth: AuthConfig::from_lookup(&lookup)?,
            metrics_namespace,
        })
    }

    /// Whether a Redis is configured at all ([`REDIS_URL`] or [`REDIS_URL_SECRET_ARN`]).
    pub fn has_redis(&self) -> bool {
        self.redis_url.is_some() || self.redis_url_secret_arn.is_some()
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

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Destructured so a new field cannot be forgotten here; the URL may hold a password and is never printed.
        let Self {
            redis_url,
            redis_url_secret_arn,
            redis_cluster,
            redis_auth_secret_arn,
            redis_allow_plaintext,
            redis_ca_cert_path,
            ca_bundle,
            key_prefix,
            membership_lifetime,
            allowed_origins,
            management_endpoint,
            fanout_max_in_flight,
            fanout_max_attempts,
            fanout_function,
            fanout_shard_size,
            history_max_messages,
            history_ttl,
            max_room_members,
            rate_limit_per_sec,
            rate_limit_burst,
            frame_rate_per_sec,
            frame_burst,
            max_message_bytes,
            history_page_bytes,
            history_max_bytes,
            connect_rate_per_ip,
            max_connections_per_ip,
            prune_grace,
            auth,
            metrics_namespace,
        } = self;
        f.debug_struct("Config")
            .field("redis_url", &redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_url_secret_arn", redis_url_secret_arn)
            .field("redis_cluster", redis_cluster)
            .field("redis_auth_secret_arn", redis_auth_secret_arn)
            .field("redis_allow_plaintext", redis_allow_plaintext)
            .field("redis_ca_cert_path", redis_ca_cert_path)
            .field("ca_bundle", ca_bundle)
            .field("key_prefix", key_prefix)
            .field("membership_lifetime", membership_lifetime)
            .field("allowed_origins", allowed_origins)
            .field("management_endpoint", management_endpoint)
            .field("fanout_max_in_flight", fanout_max_in_flight)
            .field("fanout_max_attempts", fanout_max_attempts)
            .field("fanout_function", fanout_function)
            .field("fanout_shard_size", fanout_shard_size)
            .field("history_max_messages", history_max_messages)
            .field("history_ttl", history_ttl)
            .field("max_room_members", max_room_members)
            .field("rate_limit_per_sec", rate_limit_per_sec)
            .field("rate_limit_burst", rate_limit_burst)
            .field("frame_rate_per_sec", frame_rate_per_sec)
            .field("frame_burst", frame_burst)
            .field("max_message_bytes", max_message_bytes)
            .field("history_page_bytes", history_page_bytes)
            .field("history_max_bytes", history_max_bytes)
            .field("connect_rate_per_ip", connect_rate_per_ip)
            .field("max_connections_per_ip", max_connections_per_ip)
            .field("prune_grace", prune_grace)
            .field("metrics_namespace", metrics_namespace)
            .field("auth", auth)
            .finish()
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
        assert_eq!(cfg.key_prefix.as_str(), "wschat:");
        assert_eq!(cfg.allowed_origins, "*");
        assert_eq!(cfg.fanout_max_in_flight, 64);
        assert_eq!(cfg.fanout_max_attempts, 4);
        assert_eq!(cfg.history_max_messages, 100);
        assert_eq!(cfg.history_ttl, Duration::from_secs(86_400));
        assert_eq!(cfg.redis_url, None);
        assert!(!cfg.has_redis());
        assert!(matches!(
            cfg.require_management_endpoint(),
            Err(ConfigError::Missing("WS_MANAGEMENT_ENDPOINT"))
        ));
    }

    #[test]
    fn an_invalid_number_names_its_variable() {
        let err = config(&[(FANOUT_MAX_IN_FLIGHT, "lots")]).expect_err("not a number");
        assert!(err.to_string().contains("FANOUT_MAX_IN_FLIGHT"), "{err}");
        let err = config(&[(MEMBERSHIP_TTL_SECS, "0")]).expect_err("zero");
        assert!(err.to_string().contains("MEMBERSHIP_TTL_SECS"), "{err}");
        for bad in [
            (MAX_ROOM_MEMBERS, "0"),
            (MAX_ROOM_MEMBERS, "10001"),
            (FANOUT_SHARD_SIZE, "0"),
            (FANOUT_SHARD_SIZE, "4001"),
            (RATE_LIMIT_PER_SEC, "0"),
            (RATE_LIMIT_BURST, "0"),
            (PRUNE_GRACE_SECS, "-1"),
            (PRUNE_GRACE_SECS, "soon"),
        ] {
            let err = config(&[bad]).expect_err(bad.1);
            assert!(err.to_string().contains(bad.0), "{err}");
        }
        let err = config(&[(REDIS_KEY_PREFIX, "{x}")]).expect_err("braces");
        assert!(err.to_string().contains("REDIS_KEY_PREFIX"), "{err}");
        let err = config(&[(FANOUT_MAX_ATTEMPTS, "0")]).expect_err("zero");
        assert!(err.to_string().contains("FANOUT_MAX_ATTEMPTS"), "{err}");
        for bad in ["0", "10001", "many"] {
            let err = config(&[(HISTORY_MAX_MESSAGES, bad)]).expect_err(bad);
            assert!(err.to_string().contains("HISTORY_MAX_MESSAGES"), "{err}");
        }
        let err = config(&[(HISTORY_TTL_SECS, "0")]).expect_err("zero");
        assert!(err.to_string().contains("HISTORY_TTL_SECS"), "{err}");
    }

    #[test]
    fn the_abuse_limits_have_documented_defaults_and_bounds() {
        let cfg = config(&[]).expect("defaults");
        assert_eq!(
            (cfg.frame_rate_per_sec, cfg.frame_burst),
            (DEFAULT_FRAME_RATE_PER_SEC, DEFAULT_FRAME_BURST)
        );
        assert_eq!(cfg.max_message_bytes, 8192);
        assert_eq!(cfg.history_page_bytes, 32_000);
        assert_eq!(cfg.history_max_bytes, 524_288);
        assert_eq!(
            (cfg.connect_rate_per_ip, cfg.max_connections_per_ip),
            (120, 200)
        );

        for (name, bad, rule) in [
            (MAX_MESSAGE_BYTES, "16385", "between 1 and 16384"),
            (MAX_MESSAGE_BYTES, "0", "between 1 and 16384"),
            (HISTORY_PAGE_BYTES, "65537", "between 1024 and 65536"),
            (HISTORY_MAX_BYTES, "1000", "between 16384 and"),
            (FRAME_RATE_PER_SEC, "0", "at least 1"),
            (FRAME_BURST, "0", "at least 1"),
            (CONNECT_RATE_PER_IP, "0", "at least 1"),
            (MAX_CONNECTIONS_PER_IP, "-3", "invalid"),
        ] {
            let err = config(&[(name, bad)]).expect_err(bad).to_string();
            assert!(err.contains(name) && err.contains(rule), "{err}");
        }
        assert_eq!(
            config(&[(MAX_MESSAGE_BYTES, "16384")])
                .expect("the most")
                .max_message_bytes,
            16_384
        );
    }

    #[test]
    fn a_membership_lifetime_below_the_two_hour_connection_cap_is_refused() {
        let err = config(&[(MEMBERSHIP_TTL_SECS, "3600")]).expect_err("shorter than the cap");

        assert!(
            err.to_string()
                .contains("API Gateway's 2-hour connection cap"),
            "{err}"
        );
        assert_eq!(
            config(&[(MEMBERSHIP_TTL_SECS, "7200")])
                .expect("the cap itself")
                .membership_lifetime,
            MAX_CONNECTION_LIFETIME
        );
        assert!(config(&[(MEMBERSHIP_TTL_SECS, "10800")]).is_ok());
    }

    #[test]
    fn a_key_prefix_with_a_brace_is_rejected_never_stripped() {
        for prefix in ["{", "a}", "x{y}:"] {
            assert!(
                matches!(
                    KeyPrefix::parse(prefix),
                    Err(ConfigError::Invalid {
                        name: "REDIS_KEY_PREFIX",
                        ..
                    })
                ),
                "{prefix:?}"
            );
        }
        assert_eq!(
            KeyPrefix::parse("wschat:test:").expect("valid").as_str(),
            "wschat:test:"
        );
    }

    #[test]
    fn redis_cluster_is_on_for_true_1_and_yes_and_off_by_default() {
        assert!(!config(&[]).expect("valid").redis_cluster);
        for on in ["true", "1", "yes", "TRUE", " Yes "] {
            assert!(
                config(&[(REDIS_CLUSTER, on)]).expect("valid").redis_cluster,
                "{on:?}"
            );
        }
        for off in ["false", "0", "no", ""] {
            assert!(
                !config(&[(REDIS_CLUSTER, off)])
                    .expect("valid")
                    .redis_cluster,
                "{off:?}"
            );
        }
    }

    #[test]
    fn an_unrecognised_redis_cluster_value_names_its_variable() {
        let err = config(&[(REDIS_CLUSTER, "cluster")]).expect_err("not a boolean");

        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    name: "REDIS_CLUSTER",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("REDIS_CLUSTER"), "{err}");
    }

    #[test]
    fn redis_url_secret_arn_is_read_and_blank_means_unset() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wschat/redis-AbCdEf";

        let cfg = config(&[(REDIS_URL_SECRET_ARN, arn)]).expect("valid");
        let blank = config(&[(REDIS_URL_SECRET_ARN, "  ")]).expect("valid");

        assert_eq!(cfg.redis_url_secret_arn.as_deref(), Some(arn));
        assert!(cfg.has_redis());
        assert_eq!(blank.redis_url_secret_arn, None);
    }

    #[test]
    fn debug_output_never_shows_the_redis_url() {
        let cfg =
            config(&[(REDIS_URL, "rediss://default:hunter2@cache.example:6379")]).expect("valid");

        let shown = format!("{cfg:?}");

        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

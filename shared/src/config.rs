//! Configuration, read once from the environment at cold start. Every error names the variable at fault.
//!
//! The Redis URL may hold a password, so it can also come from AWS Secrets Manager ([`REDIS_URL_SECRET_ARN`],
//! fetched once by [`Config::redis_url`]); it is never logged and [`Config`]'s `Debug` leaves it out.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use aws_sdk_secretsmanager::config::BehaviorVersion;
use aws_sdk_secretsmanager::config::timeout::TimeoutConfig;
use aws_sdk_secretsmanager::error::SdkError;
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError;
use tracing::{info, warn};

use crate::fanout::FanoutSettings;
use crate::rooms::redis::DEFAULT_PREFIX;
use crate::rooms::{MAX_CONNECTION_LIFETIME, StoreError};

/// Redis URL (`redis://`, `rediss://` for TLS, `unix://`). When set, [`REDIS_URL_SECRET_ARN`] is ignored.
pub const REDIS_URL: &str = "REDIS_URL";
/// ARN of an AWS Secrets Manager secret whose SecretString is the whole Redis URL (for a URL with a password). Read
/// once at cold start, with the function's role, when [`REDIS_URL`] is unset.
pub const REDIS_URL_SECRET_ARN: &str = "REDIS_URL_SECRET_ARN";
/// `true` (also `1`, `yes`) to talk to Redis with the Redis Cluster client: required by ElastiCache Serverless and
/// any cluster-mode endpoint (default `false`: one node, or a cluster-mode-disabled primary endpoint).
pub const REDIS_CLUSTER: &str = "REDIS_CLUSTER";
/// Path of a PEM file holding the CA certificate(s) that `rediss://` trusts instead of the system's roots, for a
/// Redis whose certificate comes from a private CA (default: the system roots, which ElastiCache's and hosted
/// Redis services' certificates chain to). Verification is never turned off.
pub const REDIS_CA_CERT_PATH: &str = "REDIS_CA_CERT_PATH";
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
    /// Neither of two variables that can each provide a setting is set.
    #[error("environment variable {0} or {1} is required but neither is set")]
    MissingEither(&'static str, &'static str),
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
    /// A file named by a variable cannot be read.
    #[error("environment variable {name}={path:?} names a file that cannot be read")]
    Unreadable {
        /// The variable.
        name: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
    /// The secret named by a variable cannot be read or does not hold what it should.
    #[error("environment variable {name}={arn:?} names a secret that cannot be used")]
    Secret {
        /// The variable.
        name: &'static str,
        /// The secret's ARN (an identifier, not the secret).
        arn: String,
        /// What went wrong.
        #[source]
        source: SecretError,
    },
}

/// Why a secret's value cannot be used. Never carries the value itself.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// GetSecretValue failed (no permission, no such secret, no route to Secrets Manager, timeout, ...).
    #[error("GetSecretValue failed")]
    Fetch(#[source] Box<SdkError<GetSecretValueError>>),
    /// The secret holds binary data, not a SecretString.
    #[error("the secret has no SecretString")]
    NoString,
    /// The SecretString is not a URL (for example the JSON of a key/value secret).
    #[error("the SecretString is not a URL: store the bare redis:// or rediss:// URL")]
    NotAUrl,
}

/// A failure to build a function's dependencies at cold start: the configuration, or the store it names.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The environment is incomplete or wrong (or the Redis URL's secret cannot be read).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Redis could not be reached.
    #[error("could not connect to Redis")]
    Store(#[from] StoreError),
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
#[derive(Clone)]
pub struct Config {
    /// [`REDIS_URL`]; `None` when unset (the functions then read [`REDIS_URL_SECRET_ARN`] or fail at start, the
    /// emulator uses memory).
    pub redis_url: Option<String>,
    /// [`REDIS_URL_SECRET_ARN`].
    pub redis_url_secret_arn: Option<String>,
    /// [`REDIS_CLUSTER`].
    pub redis_cluster: bool,
    /// [`REDIS_CA_CERT_PATH`].
    pub redis_ca_cert_path: Option<PathBuf>,
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
        let redis_cluster = match lookup(REDIS_CLUSTER) {
            None => false,
            Some(raw) => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" | "" => false,
                _ => {
                    return Err(invalid(
                        REDIS_CLUSTER,
                        &raw,
                        "expected true/false, 1/0 or yes/no",
                    ));
                }
            },
        };
        Ok(Self {
            redis_url: lookup(REDIS_URL).filter(|v| !v.is_empty()),
            redis_url_secret_arn: lookup(REDIS_URL_SECRET_ARN)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            redis_cluster,
            redis_ca_cert_path: lookup(REDIS_CA_CERT_PATH)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
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

    /// [`REDIS_URL`] as set; does not look at [`REDIS_URL_SECRET_ARN`] (see [`Config::redis_url`]).
    ///
    /// # Errors
    /// [`ConfigError::Missing`] when it is unset.
    pub fn require_redis_url(&self) -> Result<&str, ConfigError> {
        self.redis_url
            .as_deref()
            .ok_or(ConfigError::Missing(REDIS_URL))
    }

    /// The Redis URL the Lambda functions use: [`REDIS_URL`], else the SecretString of [`REDIS_URL_SECRET_ARN`],
    /// fetched now with the environment's credentials and region. Call it once per cold start.
    ///
    /// # Errors
    /// [`ConfigError::MissingEither`] when neither is set; [`ConfigError::Secret`] when the secret cannot be read
    /// or is not a URL.
    pub async fn redis_url(&self) -> Result<String, ConfigError> {
        if let Some(url) = &self.redis_url {
            if self.redis_url_secret_arn.is_some() {
                warn!("{REDIS_URL} is set, so {REDIS_URL_SECRET_ARN} is ignored");
            }
            return Ok(url.clone());
        }
        let Some(arn) = &self.redis_url_secret_arn else {
            return Err(ConfigError::MissingEither(REDIS_URL, REDIS_URL_SECRET_ARN));
        };
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let client = aws_sdk_secretsmanager::Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(&sdk)
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_timeout(SECRET_TIMEOUT)
                        .build(),
                )
                .build(),
        );
        redis_url_from_secret(&client, arn).await
    }

    /// The PEM bytes of [`REDIS_CA_CERT_PATH`], if it is set.
    ///
    /// # Errors
    /// [`ConfigError::Unreadable`] when the file cannot be read; [`ConfigError::Invalid`] when it holds no PEM
    /// certificate.
    pub fn redis_ca_certs(&self) -> Result<Option<Vec<u8>>, ConfigError> {
        let Some(path) = &self.redis_ca_cert_path else {
            return Ok(None);
        };
        let pem = std::fs::read(path).map_err(|source| ConfigError::Unreadable {
            name: REDIS_CA_CERT_PATH,
            path: path.clone(),
            source,
        })?;
        if !pem
            .windows(CERTIFICATE_PEM.len())
            .any(|w| w == CERTIFICATE_PEM)
        {
            return Err(invalid(
                REDIS_CA_CERT_PATH,
                &path.display().to_string(),
                "the file holds no PEM certificate",
            ));
        }
        Ok(Some(pem))
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
            redis_ca_cert_path,
            key_prefix,
            membership_lifetime,
            allowed_origins,
            management_endpoint,
            fanout,
        } = self;
        f.debug_struct("Config")
            .field("redis_url", &redis_url.as_ref().map(|_| "<redacted>"))
            .field("redis_url_secret_arn", redis_url_secret_arn)
            .field("redis_cluster", redis_cluster)
            .field("redis_ca_cert_path", redis_ca_cert_path)
            .field("key_prefix", key_prefix)
            .field("membership_lifetime", membership_lifetime)
            .field("allowed_origins", allowed_origins)
            .field("management_endpoint", management_endpoint)
            .field("fanout", fanout)
            .finish()
    }
}

/// How long reading the secret may take at cold start. A function in a VPC without a route to Secrets Manager (no
/// NAT, no interface endpoint) would otherwise hang until its own timeout.
const SECRET_TIMEOUT: Duration = Duration::from_secs(5);

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// GetSecretValue on `arn`, checked to be a URL; the value is never logged.
async fn redis_url_from_secret(
    client: &aws_sdk_secretsmanager::Client,
    arn: &str,
) -> Result<String, ConfigError> {
    let secret_err = |source| ConfigError::Secret {
        name: REDIS_URL_SECRET_ARN,
        arn: arn.to_owned(),
        source,
    };
    info!(arn, "reading the Redis URL from Secrets Manager");
    let output = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| secret_err(SecretError::Fetch(Box::new(e))))?;
    let url = output
        .secret_string()
        .ok_or_else(|| secret_err(SecretError::NoString))?
        .trim();
    if !url.contains("://") {
        return Err(secret_err(SecretError::NotAUrl));
    }
    Ok(url.to_owned())
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
    use std::path::Path;

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
        assert_eq!(blank.redis_url_secret_arn, None);
    }

    #[tokio::test]
    async fn redis_url_prefers_redis_url_over_the_secret() {
        let cfg = config(&[
            (REDIS_URL, "rediss://cache.example:6379"),
            (
                REDIS_URL_SECRET_ARN,
                "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            ),
        ])
        .expect("valid");

        let url = cfg.redis_url().await.expect("no secret needed");

        assert_eq!(url, "rediss://cache.example:6379");
    }

    #[tokio::test]
    async fn redis_url_without_url_or_secret_names_both_variables() {
        let err = config(&[])
            .expect("valid")
            .redis_url()
            .await
            .expect_err("nothing configured");

        assert!(
            matches!(
                err,
                ConfigError::MissingEither("REDIS_URL", "REDIS_URL_SECRET_ARN")
            ),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn the_secret_string_becomes_the_redis_url() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:wschat/redis-AbCdEf";
        let body = format!(
            r#"{{"ARN":"{arn}","Name":"wschat/redis","SecretString":"rediss://default:p%40ss@cache.example:6379\n","VersionId":"v1"}}"#
        );
        let (client, request) = fake_secrets_manager(200, body).await;

        let url = redis_url_from_secret(&client, arn)
            .await
            .expect("secret read");

        assert_eq!(url, "rediss://default:p%40ss@cache.example:6379");
        let request = request.await.expect("one request");
        assert!(
            request.contains("secretsmanager.GetSecretValue"),
            "{request}"
        );
        assert!(request.contains(arn), "{request}");
    }

    #[tokio::test]
    async fn a_secret_that_cannot_be_read_names_the_variable_and_keeps_the_cause() {
        let body = r#"{"__type":"ResourceNotFoundException","message":"Secrets Manager can't find the specified secret."}"#;
        let (client, _) = fake_secrets_manager(400, body.to_owned()).await;

        let err = redis_url_from_secret(&client, "arn:aws:secretsmanager:eu-west-1:1:secret:gone")
            .await
            .expect_err("no such secret");

        assert!(
            matches!(
                &err,
                ConfigError::Secret {
                    name: "REDIS_URL_SECRET_ARN",
                    source: SecretError::Fetch(_),
                    ..
                }
            ),
            "{err:?}"
        );
        let chain = crate::handlers::error_chain(&err);
        assert!(chain.contains("REDIS_URL_SECRET_ARN"), "{chain}");
        assert!(chain.contains("ResourceNotFoundException"), "{chain}");
    }

    #[tokio::test]
    async fn a_secret_that_is_not_a_url_is_refused_without_showing_it() {
        let body = r#"{"Name":"wschat/redis","SecretString":"{\"password\":\"hunter2\"}"}"#;
        let (client, _) = fake_secrets_manager(200, body.to_owned()).await;

        let err = redis_url_from_secret(&client, "arn:aws:secretsmanager:eu-west-1:1:secret:json")
            .await
            .expect_err("JSON, not a URL");

        assert!(
            matches!(
                err,
                ConfigError::Secret {
                    source: SecretError::NotAUrl,
                    ..
                }
            ),
            "{err:?}"
        );
        let shown = format!("{} {err:?}", crate::handlers::error_chain(&err));
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[test]
    fn debug_output_never_shows_the_redis_url() {
        let cfg =
            config(&[(REDIS_URL, "rediss://default:hunter2@cache.example:6379")]).expect("valid");

        let shown = format!("{cfg:?}");

        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn redis_ca_cert_path_must_name_a_readable_pem_file() {
        let dir = std::env::temp_dir().join(format!("wschat-config-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let not_pem = dir.join("not.pem");
        std::fs::write(&not_pem, "hello").expect("write");
        let pem = dir.join("ca.pem");
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let with_path = |path: &Path| {
            let path = path.to_str().expect("utf-8 path").to_owned();
            config(&[(REDIS_CA_CERT_PATH, &path)]).expect("valid")
        };

        let missing = with_path(&dir.join("missing.pem")).redis_ca_certs();
        let invalid = with_path(&not_pem).redis_ca_certs();
        let read = with_path(&pem).redis_ca_certs();
        let unset = config(&[]).expect("valid").redis_ca_certs();
        std::fs::remove_dir_all(&dir).expect("clean up");

        assert!(
            matches!(
                missing,
                Err(ConfigError::Unreadable {
                    name: "REDIS_CA_CERT_PATH",
                    ..
                })
            ),
            "{missing:?}"
        );
        assert!(
            matches!(
                invalid,
                Err(ConfigError::Invalid {
                    name: "REDIS_CA_CERT_PATH",
                    ..
                })
            ),
            "{invalid:?}"
        );
        assert!(read.expect("readable").is_some());
        assert!(unset.expect("nothing to read").is_none());
    }

    /// A Secrets Manager stand-in on a free port that answers one request with `status` and `body`, and a client
    /// pointed at it; the task yields the request it received (headers and body).
    async fn fake_secrets_manager(
        status: u16,
        body: String,
    ) -> (
        aws_sdk_secretsmanager::Client,
        tokio::task::JoinHandle<String>,
    ) {
        use aws_sdk_secretsmanager::config::retry::RetryConfig;
        use aws_sdk_secretsmanager::config::{Credentials, Region};
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("address"));
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("a request");
            let mut request = Vec::new();
            let mut chunk = [0_u8; 4096];
            // Read the headers, then as many body bytes as Content-Length says.
            loop {
                let n = socket.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the client closed before sending a request");
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text[..end]
                        .lines()
                        .find_map(|l| {
                            let (name, value) = l.split_once(':')?;
                            name.eq_ignore_ascii_case("content-length")
                                .then(|| value.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let response = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            );
            socket.write_all(response.as_bytes()).await.expect("write");
            String::from_utf8_lossy(&request).to_string()
        });
        let config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("eu-west-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "test"))
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .build();
        (aws_sdk_secretsmanager::Client::from_conf(config), server)
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

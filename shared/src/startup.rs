//! Cold start: turning a [`Config`] into the clients and the `Deps` each route's handler needs. This is the only
//! module that does I/O before the first event (the Redis URL's secret, the CA file, the Redis connection, the
//! AWS credentials chain), so the handler modules stay pure and `config` stays plain data.
//!
//! The functions build their [`Parts`] from the environment; the emulator builds them from the same [`Config`], a
//! store it chose (memory, Redis, or one the tests hold) and its own gateway. Each function's `Deps` are then
//! wired from the parts by [`crate::functions`].

use std::path::Path;
use std::sync::Arc;

use redis::{ConnectionAddr, IntoConnectionInfo, TlsCertificates};
use tracing::{info, warn};

use crate::auth::Verifier;
use crate::config::{
    AUTH_HS256_SECRET_ARN, AWS_CA_BUNDLE, Config, ConfigError, REDIS_AUTH_SECRET_ARN,
    REDIS_CA_CERT_PATH, REDIS_URL, REDIS_URL_SECRET_ARN,
};
use crate::fanout::shards::Sharding;
use crate::fanout::{Announcer, FanoutSettings};
use crate::gateway::{DirectGateway, Gateway};
use crate::invoke::{Invoker, LambdaInvoker};
use crate::rooms::{Limits, Policy, RedisRoomStore, Retention, RoomStore, StoreError};
use crate::secrets::{self, RedisUser, SecretError};

/// A failure to build a function's dependencies at cold start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// The environment is incomplete or wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The secret named by [`REDIS_URL_SECRET_ARN`] (or [`AUTH_HS256_SECRET_ARN`]) cannot be read or used.
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
    /// Redis could not be reached.
    #[error("could not connect to Redis")]
    Store(#[from] StoreError),
}

/// The Redis URL the Lambda functions use: [`REDIS_URL`], else the SecretString of [`REDIS_URL_SECRET_ARN`],
/// fetched now with the environment's credentials and region. Call it once per cold start.
///
/// # Errors
/// [`ConfigError::MissingEither`] when neither is set; [`StartupError::Secret`] when the secret cannot be read
/// or is not a URL.
pub async fn redis_url(cfg: &Config) -> Result<String, StartupError> {
    let url = bare_redis_url(cfg).await?;
    let Some(arn) = &cfg.redis_auth_secret_arn else {
        return Ok(url);
    };
    let user = secrets::read_redis_user(arn)
        .await
        .map_err(|source| StartupError::Secret {
            name: REDIS_AUTH_SECRET_ARN,
            arn: arn.clone(),
            source,
        })?;
    Ok(with_user(&url, &user)?)
}

/// `url` with `user` as its user and password (percent-encoded: a generated password may hold any
/// character a URL gives a meaning to).
///
/// # Errors
/// [`ConfigError::Invalid`] when `url` names a user or password of its own: which should win is not for the code
/// to guess.
pub fn with_user(url: &str, user: &RedisUser) -> Result<String, ConfigError> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(ConfigError::invalid(
            REDIS_AUTH_SECRET_ARN,
            "(the Redis URL)",
            "the Redis URL has no scheme",
        ));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    if authority.contains('@') {
        return Err(ConfigError::invalid(
            REDIS_AUTH_SECRET_ARN,
            "(the Redis URL)",
            "the Redis URL already names a user: give the user in the URL or in the secret, not both",
        ));
    }
    let encode = |part: &str| {
        percent_encoding::utf8_percent_encode(part, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    Ok(format!(
        "{scheme}://{}:{}@{rest}",
        encode(&user.username),
        encode(&user.password)
    ))
}

/// The URL from [`REDIS_URL`], else from the secret [`REDIS_URL_SECRET_ARN`] names.
async fn bare_redis_url(cfg: &Config) -> Result<String, StartupError> {
    if let Some(url) = &cfg.redis_url {
        if cfg.redis_url_secret_arn.is_some() {
            warn!("{REDIS_URL} is set, so {REDIS_URL_SECRET_ARN} is ignored");
        }
        return Ok(url.clone());
    }
    let Some(arn) = &cfg.redis_url_secret_arn else {
        return Err(ConfigError::MissingEither(REDIS_URL, REDIS_URL_SECRET_ARN).into());
    };
    secrets::read_url(arn)
        .await
        .map_err(|source| StartupError::Secret {
            name: REDIS_URL_SECRET_ARN,
            arn: arn.clone(),
            source,
        })
}

/// The token verifier `AUTH_MODE` asks for (none: `open`), its HS256 key read now from
/// [`AUTH_HS256_SECRET_ARN`] when that is set. Call it once per cold start.
///
/// # Errors
/// [`StartupError::Secret`] when the secret cannot be read.
pub async fn verifier(cfg: &Config) -> Result<Option<Arc<Verifier>>, StartupError> {
    let Some(oidc) = cfg.auth.oidc() else {
        return Ok(None);
    };
    let secret = match &oidc.hs256_secret_arn {
        Some(arn) => {
            Some(
                secrets::read_string(arn)
                    .await
                    .map_err(|source| StartupError::Secret {
                        name: AUTH_HS256_SECRET_ARN,
                        arn: arn.clone(),
                        source,
                    })?,
            )
        }
        None => oidc.hs256_secret.clone(),
    };
    Ok(Some(Arc::new(Verifier::new(oidc, secret.as_deref()))))
}

/// The same without Secrets Manager, for a process that runs every function at once (the emulator): the HS256
/// key only from `AUTH_HS256_SECRET`.
pub fn local_verifier(cfg: &Config) -> Option<Arc<Verifier>> {
    let oidc = cfg.auth.oidc()?;
    if oidc.hs256_secret_arn.is_some() {
        warn!(
            "{AUTH_HS256_SECRET_ARN} is read only by the Lambda functions: locally, set AUTH_HS256_SECRET"
        );
    }
    Some(Arc::new(Verifier::new(oidc, oidc.hs256_secret.as_deref())))
}

const CERTIFICATE_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";

/// The bytes of the file at `path`, which the variable `name` names.
fn read_named(name: &'static str, path: &std::path::Path) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|source| ConfigError::Unreadable {
        name,
        path: path.to_owned(),
        source,
    })
}

/// The PEM bytes of [`REDIS_CA_CERT_PATH`], if it is set.
///
/// # Errors
/// [`ConfigError::Unreadable`] when the file cannot be read; [`ConfigError::Invalid`] when it holds no PEM
/// certificate.
pub fn redis_ca_certs(cfg: &Config) -> Result<Option<Vec<u8>>, ConfigError> {
    let Some(path) = &cfg.redis_ca_cert_path else {
        return Ok(None);
    };
    let pem = read_named(REDIS_CA_CERT_PATH, path)?;
    if !pem
        .windows(CERTIFICATE_PEM.len())
        .any(|w| w == CERTIFICATE_PEM)
    {
        return Err(ConfigError::invalid(
            REDIS_CA_CERT_PATH,
            &path.display().to_string(),
            "the file holds no PEM certificate",
        ));
    }
    Ok(Some(pem))
}

/// Trusts the CAs of [`crate::config::AWS_CA_BUNDLE`], if it is set, in every HTTPS client made from now on
/// ([`crate::tls::trust_also`]): called at cold start, before any client is made.
///
/// # Errors
/// [`ConfigError::Unreadable`] when the file cannot be read; [`ConfigError::Invalid`] when it holds no PEM
/// certificate or one that does not parse.
pub fn trust_ca_bundle(cfg: &Config) -> Result<(), ConfigError> {
    let Some(path) = &cfg.ca_bundle else {
        return Ok(());
    };
    let pem = read_named(AWS_CA_BUNDLE, path)?;
    let certs = crate::tls::certificates(&pem)
        .map_err(|why| ConfigError::invalid(AWS_CA_BUNDLE, &path.display().to_string(), &why))?;
    crate::tls::trust_also(certs);
    Ok(())
}

/// A URL read from [`REDIS_URL_SECRET_ARN`] is a deployed one: without TLS, the password in it would cross the
/// network in the clear, so it is refused unless [`crate::config::REDIS_ALLOW_PLAINTEXT`] says the network is private.
/// ([`REDIS_URL`] is how local runs are configured, and is taken as it is.)
fn refuse_plaintext_secret(cfg: &Config, tls: bool) -> Result<(), ConfigError> {
    match &cfg.redis_url_secret_arn {
        Some(arn) if cfg.redis_url.is_none() && !tls && !cfg.redis_allow_plaintext => {
            Err(ConfigError::invalid(
                REDIS_URL_SECRET_ARN,
                arn,
                "the secret holds a Redis URL without TLS (redis://): store a rediss:// URL, or set \
                 REDIS_ALLOW_PLAINTEXT=true if Redis is on a private network",
            ))
        }
        _ => Ok(()),
    }
}

/// Connects the store the Lambda functions use, as the configuration says: the URL from `REDIS_URL` or the
/// secret named by `REDIS_URL_SECRET_ARN`, the cluster client when `REDIS_CLUSTER` is on, the CAs of
/// `REDIS_CA_CERT_PATH` for `rediss://`. Logs the host it connects to, never the URL (it may hold a password).
///
/// # Errors
/// [`StartupError::Config`] when no URL is configured, the CA file cannot be read, or a CA file is given for a
/// URL without TLS; [`StartupError::Secret`] when the secret cannot be used; [`StartupError::Store`] when the URL
/// is invalid or Redis cannot be reached.
pub async fn connect_store(cfg: &Config) -> Result<Arc<dyn RoomStore>, StartupError> {
    let url = redis_url(cfg).await?;
    let roots = redis_ca_certs(cfg)?;
    let (host, port, tls) = match url.as_str().into_connection_info() {
        Ok(info) => match info.addr() {
            ConnectionAddr::Tcp(host, port) => (host.clone(), *port, false),
            ConnectionAddr::TcpTls { host, port, .. } => (host.clone(), *port, true),
            ConnectionAddr::Unix(path) => (path.display().to_string(), 0, false),
            _ => (String::new(), 0, false),
        },
        Err(source) => {
            return Err(StoreError::Redis {
                op: "connect",
                source,
            }
            .into());
        }
    };
    refuse_plaintext_secret(cfg, tls)?;
    if roots.is_some() && !tls {
        let path = cfg.redis_ca_cert_path.as_deref().unwrap_or(Path::new(""));
        return Err(ConfigError::invalid(
            REDIS_CA_CERT_PATH,
            &path.display().to_string(),
            "only applies to rediss:// (TLS) URLs",
        )
        .into());
    }
    let tls_roots = roots.map(|pem| TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    });
    info!(
        host,
        port,
        tls,
        cluster = cfg.redis_cluster,
        custom_ca = tls_roots.is_some(),
        "connecting to Redis"
    );
    let (prefix, lifetime) = (&cfg.key_prefix, cfg.membership_lifetime);
    Ok(if cfg.redis_cluster {
        Arc::new(
            RedisRoomStore::cluster(&url, tls_roots, prefix, lifetime)
                .await?
                .with_policy(policy(cfg)),
        )
    } else {
        Arc::new(
            RedisRoomStore::single_node(&url, tls_roots, prefix, lifetime)
                .await?
                .with_policy(policy(cfg)),
        )
    })
}

/// What the stores keep and enforce: the history's retention and page, the room cap, and the rate limits of chat,
/// of other frames and of handshakes per address.
pub fn policy(cfg: &Config) -> Policy {
    Policy {
        retention: Retention {
            max_messages: cfg.history_max_messages,
            max_bytes: cfg.history_max_bytes,
            ttl: cfg.history_ttl,
            page_bytes: cfg.history_page_bytes,
        },
        limits: Limits {
            max_members: cfg.max_room_members,
            messages_per_sec: cfg.rate_limit_per_sec,
            burst: cfg.rate_limit_burst,
            frames_per_sec: cfg.frame_rate_per_sec,
            frame_burst: cfg.frame_burst,
            handshakes_per_min: cfg.connect_rate_per_ip,
            connections_per_address: cfg.max_connections_per_ip,
        },
    }
}

/// [`FanoutSettings`] with `FANOUT_MAX_IN_FLIGHT`, `FANOUT_MAX_ATTEMPTS` and `PRUNE_GRACE_SECS` applied.
pub fn fanout_settings(cfg: &Config) -> FanoutSettings {
    FanoutSettings {
        max_in_flight: cfg.fanout_max_in_flight,
        max_attempts: cfg.fanout_max_attempts,
        prune_grace: cfg.prune_grace,
        ..FanoutSettings::default()
    }
}

/// What every function's dependencies are built from ([`crate::functions::Function::wire`]), made once: by
/// [`Parts::from_config`] at a Lambda's cold start, by the emulator for all the functions it runs.
#[derive(Clone)]
pub struct Parts {
    /// The configuration the functions read.
    pub config: Config,
    /// Room membership and history.
    pub rooms: Arc<dyn RoomStore>,
    /// The Management API client (none: `WS_MANAGEMENT_ENDPOINT` is unset).
    pub gateway: Option<Arc<dyn Gateway>>,
    /// What queues the shards of a big room's fan-out (none: `FANOUT_FUNCTION` is unset).
    pub invoker: Option<Arc<dyn Invoker>>,
}

impl Parts {
    /// Builds the clients `config` names: the room store, the Management API client of `WS_MANAGEMENT_ENDPOINT`,
    /// and the invoker of `FANOUT_FUNCTION`. `needs_gateway`: a missing endpoint is an error (checked before connecting to
    /// Redis); otherwise a warning, and joins and leaves are not announced.
    ///
    /// # Errors
    /// [`StartupError`] when a variable is missing, the Redis URL's secret cannot be read, or Redis is unreachable.
    pub async fn from_config(config: Config, needs_gateway: bool) -> Result<Self, StartupError> {
        if needs_gateway {
            config.require_management_endpoint()?;
        }
        let gateway: Option<Arc<dyn Gateway>> = match config.management_endpoint.as_deref() {
            Some(endpoint) => Some(Arc::new(DirectGateway::from_env(endpoint))),
            None => {
                warn!(
                    "WS_MANAGEMENT_ENDPOINT is not set: joins and leaves are not announced to presence"
                );
                None
            }
        };
        // The Management API's connection is opened while Redis is connected to: both are Init's, not the first
        // message's.
        let warm = async {
            if let Some(gateway) = &gateway {
                gateway.warm().await;
            }
        };
        let (rooms, ()) = tokio::join!(connect_store(&config), warm);
        let rooms = rooms?;
        let invoker: Option<Arc<dyn Invoker>> = config
            .fanout_function
            .is_some()
            .then(|| Arc::new(LambdaInvoker::from_env()) as Arc<dyn Invoker>);
        Ok(Self {
            config,
            rooms,
            gateway,
            invoker,
        })
    }

    /// How a big room's fan-out is shared out: by `FANOUT_FUNCTION`'s invocations, `FANOUT_SHARD_SIZE` members
    /// each (none without both a function and an invoker: one invocation posts to everyone).
    pub fn sharding(&self) -> Option<Sharding> {
        Some(Sharding {
            invoker: self.invoker.clone()?,
            function: self.config.fanout_function.clone()?,
            shard_size: self.config.fanout_shard_size,
        })
    }

    /// The Management API client, for a function that cannot work without one.
    ///
    /// # Errors
    /// [`ConfigError::Missing`] naming `WS_MANAGEMENT_ENDPOINT` when there is none.
    pub fn required_gateway(&self) -> Result<Arc<dyn Gateway>, ConfigError> {
        self.gateway
            .clone()
            .ok_or(ConfigError::Missing(crate::config::WS_MANAGEMENT_ENDPOINT))
    }

    /// Presence announcements through the Management API client, with the configured fan-out tuning (none
    /// without a client).
    pub fn announcer(&self) -> Option<Announcer> {
        Some(Announcer {
            gateway: self.gateway.clone()?,
            settings: fanout_settings(&self.config),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{FANOUT_MAX_ATTEMPTS, FANOUT_MAX_IN_FLIGHT};

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
        .expect("valid configuration")
    }

    #[tokio::test]
    async fn redis_url_prefers_redis_url_over_the_secret() {
        let cfg = config(&[
            (REDIS_URL, "rediss://cache.example:6379"),
            (
                REDIS_URL_SECRET_ARN,
                "arn:aws:secretsmanager:eu-west-1:1:secret:x",
            ),
        ]);

        let url = redis_url(&cfg).await.expect("no secret needed");

        assert_eq!(url, "rediss://cache.example:6379");
    }

    #[tokio::test]
    async fn redis_url_without_url_or_secret_names_both_variables() {
        let err = redis_url(&config(&[]))
            .await
            .expect_err("nothing configured");

        assert!(
            matches!(
                err,
                StartupError::Config(ConfigError::MissingEither(
                    "REDIS_URL",
                    "REDIS_URL_SECRET_ARN"
                ))
            ),
            "{err:?}"
        );
    }

    #[test]
    fn the_secret_s_user_goes_into_the_url_encoded_and_never_beside_one_of_the_url_s_own() {
        let user = RedisUser {
            username: "wschat".into(),
            password: "p@ss:w/rd%".into(),
        };

        let url = with_user("rediss://cache.example:6379", &user).expect("merged");
        let twice = with_user("rediss://me:pw@cache.example:6379/0", &user);

        assert_eq!(url, "rediss://wschat:p%40ss%3Aw%2Frd%25@cache.example:6379");
        let info = redis::IntoConnectionInfo::into_connection_info(url.as_str()).expect("parses");
        assert_eq!(info.redis_settings().username(), Some("wschat"));
        assert_eq!(info.redis_settings().password(), Some("p@ss:w/rd%"));
        assert!(twice.is_err());
    }

    #[test]
    fn a_url_without_tls_from_a_secret_is_refused_unless_allowed_and_redis_url_is_taken_as_it_is() {
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:x";
        let from_secret = config(&[(REDIS_URL_SECRET_ARN, arn)]);
        let allowed = config(&[
            (REDIS_URL_SECRET_ARN, arn),
            (crate::config::REDIS_ALLOW_PLAINTEXT, "true"),
        ]);
        let local = config(&[(REDIS_URL, "redis://127.0.0.1:6379")]);

        let err = refuse_plaintext_secret(&from_secret, false).expect_err("refused");

        assert!(err.to_string().contains("REDIS_ALLOW_PLAINTEXT"), "{err}");
        assert!(refuse_plaintext_secret(&from_secret, true).is_ok());
        assert!(refuse_plaintext_secret(&allowed, false).is_ok());
        assert!(refuse_plaintext_secret(&local, false).is_ok());
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
            config(&[(REDIS_CA_CERT_PATH, &path)])
        };

        let missing = redis_ca_certs(&with_path(&dir.join("missing.pem")));
        let invalid = redis_ca_certs(&with_path(&not_pem));
        let read = redis_ca_certs(&with_path(&pem));
        let unset = redis_ca_certs(&config(&[]));
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

    #[test]
    fn aws_ca_bundle_must_name_a_readable_file_of_certificates_that_parse() {
        let dir = std::env::temp_dir().join(format!("wschat-bundle-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let broken = dir.join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let with_path = |path: &Path| {
            let path = path.to_str().expect("utf-8 path").to_owned();
            config(&[(AWS_CA_BUNDLE, &path)])
        };

        let missing = trust_ca_bundle(&with_path(&dir.join("missing.pem")));
        let invalid = trust_ca_bundle(&with_path(&broken));
        let unset = trust_ca_bundle(&config(&[]));
        std::fs::remove_dir_all(&dir).expect("clean up");

        assert!(
            matches!(
                missing,
                Err(ConfigError::Unreadable {
                    name: "AWS_CA_BUNDLE",
                    ..
                })
            ),
            "{missing:?}"
        );
        let Err(ConfigError::Invalid { name, reason, .. }) = invalid else {
            panic!("{invalid:?}")
        };
        assert_eq!(name, "AWS_CA_BUNDLE");
        assert!(reason.contains("does not parse"), "{reason}");
        assert!(unset.is_ok(), "nothing to trust");
    }

    #[test]
    fn fanout_settings_take_the_configured_limits() {
        let cfg = config(&[(FANOUT_MAX_IN_FLIGHT, "8"), (FANOUT_MAX_ATTEMPTS, "2")]);

        let settings = fanout_settings(&cfg);

        assert_eq!(settings.max_in_flight, 8);
        assert_eq!(settings.max_attempts, 2);
        assert_eq!(
            settings.base_backoff,
            FanoutSettings::default().base_backoff
        );
    }
}

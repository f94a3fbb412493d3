//! One variable at a time: the errors that name it, its parsing with a default and a range, and the key prefix.

use std::path::PathBuf;
use std::str::FromStr;

use super::{DEFAULT_KEY_PREFIX, REDIS_KEY_PREFIX};

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
}

impl ConfigError {
    /// [`ConfigError::Invalid`] for `name` set to `value`.
    pub fn invalid(name: &'static str, value: &str, reason: &str) -> Self {
        Self::Invalid {
            name,
            value: value.to_owned(),
            reason: reason.to_owned(),
        }
    }
}

/// The prefix of every Redis key ([`REDIS_KEY_PREFIX`]), checked once here: it never contains `{` or `}`, because
/// the store's keys use them as Redis Cluster hash tags and a brace in the prefix would move every key into the
/// prefix's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// Checks `prefix`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming [`REDIS_KEY_PREFIX`] when it contains `{` or `}`.
    pub fn parse(prefix: &str) -> Result<Self, ConfigError> {
        if prefix.contains(['{', '}']) {
            return Err(ConfigError::invalid(
                REDIS_KEY_PREFIX,
                prefix,
                "must not contain { or } (they are hash tags)",
            ));
        }
        Ok(Self(prefix.to_owned()))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for KeyPrefix {
    fn default() -> Self {
        Self(DEFAULT_KEY_PREFIX.to_owned())
    }
}

impl std::fmt::Display for KeyPrefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `name` parsed, or `default` when unset.
pub(super) fn parse_or<T>(
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
            .map_err(|e: T::Err| ConfigError::invalid(name, &value, &e.to_string())),
    }
}

/// `name` parsed, or `default` when unset; refused outside `range`, saying what it must be.
pub(super) fn ranged<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
    range: std::ops::RangeInclusive<u64>,
) -> Result<T, ConfigError>
where
    T: FromStr + Copy + TryInto<u64>,
    T::Err: std::fmt::Display,
{
    let value: T = parse_or(lookup, name, default)?;
    let wide = value.try_into().unwrap_or(u64::MAX);
    if range.contains(&wide) {
        return Ok(value);
    }
    let (min, max) = (range.start(), range.end());
    let rule = if *max == u64::MAX {
        format!("must be at least {min}")
    } else {
        format!("must be between {min} and {max}")
    };
    Err(ConfigError::invalid(name, &wide.to_string(), &rule))
}

/// `name` parsed, or `default` when unset; refused below 1.
pub(super) fn positive<T>(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
    default: T,
) -> Result<T, ConfigError>
where
    T: FromStr + Copy + TryInto<u64>,
    T::Err: std::fmt::Display,
{
    ranged(lookup, name, default, 1..=u64::MAX)
}

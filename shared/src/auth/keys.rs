//! The issuer's signing keys: a JWKS read into the keys this verifier accepts (RSA for RS256, P-256 for ES256),
//! cached for the life of the process (a Lambda sandbox: across invocations), fetched again when a token names a
//! key the cache does not have, at most once per [`crate::config::AUTH_JWKS_REFETCH_SECS`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tokio::time::Instant;

use super::AuthError;

/// Where the key set comes from: the issuer over HTTP ([`super::fetch::HttpKeySource`]), or a test's fake.
#[async_trait]
pub trait KeySource: Send + Sync {
    /// The JWKS document's bytes.
    ///
    /// # Errors
    /// [`FetchError`] when it cannot be had.
    async fn fetch(&self) -> Result<Vec<u8>, FetchError>;
}

/// Why the key set could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The request failed or timed out.
    #[error("{url}: request failed")]
    Request {
        /// What was fetched.
        url: String,
        /// Why.
        #[source]
        source: crate::signed::BoxError,
    },
    /// The server answered, but not 200 with a JSON document of the expected shape.
    #[error("{url}: {reason}")]
    Answer {
        /// What was fetched.
        url: String,
        /// What was wrong.
        reason: String,
    },
}

/// One key a token may be verified with.
#[derive(Clone)]
pub struct PublicKey {
    /// Its `kid` (none: the JWKS did not name it).
    pub kid: Option<String>,
    /// RS256 or ES256: the one algorithm this key verifies.
    pub alg: Algorithm,
    /// The key.
    pub key: DecodingKey,
}

/// The usable keys of a JWKS document: signing keys of type RSA (RS256) or EC on P-256 (ES256), whose `alg`, if
/// named, agrees. Anything else in it is skipped.
///
/// # Errors
/// [`FetchError::Answer`] when the document is not a JWKS.
pub fn parse_jwks(url: &str, bytes: &[u8]) -> Result<Vec<PublicKey>, FetchError> {
    let not_jwks = || FetchError::Answer {
        url: url.to_owned(),
        reason: "not a JWKS document".to_owned(),
    };
    let doc: Value = serde_json::from_slice(bytes).map_err(|_| not_jwks())?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or_else(not_jwks)?;
    Ok(keys.iter().filter_map(public_key).collect())
}

fn public_key(jwk: &Value) -> Option<PublicKey> {
    let text = |field: &str| jwk.get(field).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let (alg, key) = match (text("kty")?, text("alg")) {
        ("RSA", None | Some("RS256")) => (
            Algorithm::RS256,
            DecodingKey::from_rsa_components(text("n")?, text("e")?).ok()?,
        ),
        ("EC", None | Some("ES256")) if text("crv") == Some("P-256") => (
            Algorithm::ES256,
            DecodingKey::from_ec_components(text("x")?, text("y")?).ok()?,
        ),
        _ => return None,
    };
    Some(PublicKey {
        kid: text("kid").map(str::to_owned),
        alg,
        key,
    })
}

/// The keys, fetched when first needed and again when a token names one it does not have.
pub struct KeyCache {
    source: Arc<dyn KeySource>,
    url: String,
    refetch_after: Duration,
    state: tokio::sync::Mutex<State>,
}

#[derive(Default)]
struct State {
    keys: Option<Vec<PublicKey>>,
    fetched_at: Option<Instant>,
}

impl KeyCache {
    /// A cache over `source` (`url` names it in errors), fetching again for an unknown key at most once per
    /// `refetch_after`.
    pub fn new(source: Arc<dyn KeySource>, url: &str, refetch_after: Duration) -> Self {
        Self {
            source,
            url: url.to_owned(),
            refetch_after,
            state: tokio::sync::Mutex::new(State::default()),
        }
    }

    /// The key for a token signed with `alg` naming `kid` (none: the only key for `alg`).
    ///
    /// # Errors
    /// [`AuthError::UnknownKey`] when the issuer has no such key (after the one refetch allowed);
    /// [`AuthError::Keys`] when the keys cannot be fetched at all.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<PublicKey, AuthError> {
        let mut state = self.state.lock().await;
        let stale = state
            .fetched_at
            .is_none_or(|at| at.elapsed() >= self.refetch_after);
        let found = state.keys.as_deref().and_then(|keys| find(keys, kid, alg));
        match found {
            Some(key) => Ok(key),
            None if state.keys.is_none() || stale => {
                let bytes = self.source.fetch().await.map_err(AuthError::Keys)?;
                let keys = parse_jwks(&self.url, &bytes).map_err(AuthError::Keys)?;
                let found = find(&keys, kid, alg);
                state.keys = Some(keys);
                state.fetched_at = Some(Instant::now());
                found.ok_or(AuthError::UnknownKey)
            }
            None => Err(AuthError::UnknownKey),
        }
    }
}

/// The key named `kid` for `alg`; without a `kid`, the only key for `alg`.
fn find(keys: &[PublicKey], kid: Option<&str>, alg: Algorithm) -> Option<PublicKey> {
    let mut candidates = keys
        .iter()
        .filter(|k| k.alg == alg && (kid.is_none() || k.kid.as_deref() == kid));
    let first = candidates.next()?;
    (kid.is_some() || candidates.next().is_none()).then(|| first.clone())
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    /// A key set that changes when told to, counting its fetches.
    struct Served {
        jwks: std::sync::Mutex<Value>,
        fetches: AtomicUsize,
    }

    #[async_trait]
    impl KeySource for Served {
        async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
            self.fetches.fetch_add(1, Ordering::SeqCst);
            Ok(self.jwks.lock().expect("jwks").to_string().into_bytes())
        }
    }

    /// An EC P-256 key's JWK: the coordinates of a real point (the P-256 generator).
    fn ec_jwk(kid: &str) -> Value {
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": "axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY",
            "y": "T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"
        })
    }

    fn served(keys: Vec<Value>) -> Arc<Served> {
        Arc::new(Served {
            jwks: std::sync::Mutex::new(json!({ "keys": keys })),
            fetches: AtomicUsize::new(0),
        })
    }

    #[test]
    fn only_signing_keys_of_the_accepted_kinds_are_kept() {
        let doc = json!({ "keys": [
            ec_jwk("ec1"),
            { "kty": "RSA", "kid": "r1", "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw", "e": "AQAB" },
            { "kty": "RSA", "kid": "r2", "alg": "RS512", "n": "AQAB", "e": "AQAB" },
            { "kty": "EC", "crv": "P-384", "kid": "ec384", "x": "AA", "y": "AA" },
            { "kty": "oct", "kid": "h", "k": "c2VjcmV0" },
            { "kty": "EC", "crv": "P-256", "kid": "enc", "use": "enc", "x": "AA", "y": "AA" }
        ]});

        let keys = parse_jwks("test", doc.to_string().as_bytes()).expect("a JWKS");

        let kept: Vec<(Option<&str>, Algorithm)> =
            keys.iter().map(|k| (k.kid.as_deref(), k.alg)).collect();
        assert_eq!(
            kept,
            [
                (Some("ec1"), Algorithm::ES256),
                (Some("r1"), Algorithm::RS256)
            ]
        );
        assert!(parse_jwks("test", b"{}").is_err());
        assert!(parse_jwks("test", b"not json").is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_kid_fetches_again_at_most_once_per_interval() {
        let source = served(vec![ec_jwk("k1")]);
        let cache = KeyCache::new(source.clone(), "test", Duration::from_secs(60));

        assert!(cache.key(Some("k1"), Algorithm::ES256).await.is_ok());
        assert!(cache.key(Some("k1"), Algorithm::ES256).await.is_ok());
        assert_eq!(source.fetches.load(Ordering::SeqCst), 1, "cached");

        *source.jwks.lock().expect("jwks") = json!({ "keys": [ec_jwk("k1"), ec_jwk("k2")] });
        let too_soon = cache.key(Some("k2"), Algorithm::ES256).await;
        assert!(matches!(too_soon, Err(AuthError::UnknownKey)));
        assert_eq!(
            source.fetches.load(Ordering::SeqCst),
            1,
            "not within the minute"
        );

        tokio::time::advance(Duration::from_secs(61)).await;
        assert!(cache.key(Some("k2"), Algorithm::ES256).await.is_ok());
        assert!(matches!(
            cache.key(Some("k3"), Algorithm::ES256).await,
            Err(AuthError::UnknownKey)
        ));
        assert_eq!(
            source.fetches.load(Ordering::SeqCst),
            2,
            "one refetch for k2, none for k3"
        );
    }

    #[tokio::test]
    async fn without_a_kid_only_a_single_key_of_the_algorithm_will_do() {
        let one = KeyCache::new(served(vec![ec_jwk("k1")]), "test", Duration::ZERO);
        let two = KeyCache::new(
            served(vec![ec_jwk("k1"), ec_jwk("k2")]),
            "test",
            Duration::ZERO,
        );

        assert!(one.key(None, Algorithm::ES256).await.is_ok());
        assert!(matches!(
            two.key(None, Algorithm::ES256).await,
            Err(AuthError::UnknownKey)
        ));
        assert!(matches!(
            one.key(Some("k1"), Algorithm::RS256).await,
            Err(AuthError::UnknownKey)
        ));
    }
}

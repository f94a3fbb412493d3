//! The verifier against tokens signed here: by an ES256 key made per test, the RSA key of the fixtures
//! (`shared/tests/fixtures/rsa-test-key.pk8.b64`, made for these tests only) and a shared secret.

use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{EncodingKey, Header as JwtHeader};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};

use super::*;
use crate::config::{DEFAULT_AUTH_JWKS_REFETCH, DEFAULT_AUTH_ROOMS_CLAIM};

const NOW: i64 = 1_800_000_000;
const ISSUER: &str = "https://id.example";

/// A signing key and its public JWK.
struct Signer {
    encoding: EncodingKey,
    alg: Algorithm,
    jwk: Value,
}

fn ec_signer(kid: &str) -> Signer {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("key");
    let pair = EcdsaKeyPair::from_pkcs8(
        &ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &SystemRandom::new(),
    )
    .expect("key pair");
    let point = pair.public_key().as_ref();
    Signer {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        alg: Algorithm::ES256,
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..65])
        }),
    }
}

fn rsa_signer(kid: &str) -> Signer {
    let text = include_str!("../../tests/fixtures/rsa-test-key.pk8.b64");
    let der = STANDARD.decode(text.trim()).expect("base64");
    let pair = RsaKeyPair::from_pkcs8(&der).expect("RSA key");
    let public: RsaPublicKeyComponents<Vec<u8>> = pair.public().into();
    Signer {
        encoding: EncodingKey::from_rsa_der(&der_of_rsa_private(&der)),
        alg: Algorithm::RS256,
        jwk: json!({
            "kty": "RSA", "kid": kid, "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e)
        }),
    }
}

/// jsonwebtoken's RSA signing key takes PKCS#1 DER: the PKCS#8 wrapper's inner octet string. The fixture is a
/// plain PKCS#8 `PrivateKeyInfo`, so the PKCS#1 key is its last element.
fn der_of_rsa_private(pkcs8: &[u8]) -> Vec<u8> {
    // SEQUENCE { INTEGER 0, SEQUENCE { OID, NULL }, OCTET STRING { RSAPrivateKey } }: find the OCTET STRING
    // that runs to the end.
    (0..pkcs8.len())
        .find_map(|i| {
            if pkcs8[i] != 0x04 {
                return None;
            }
            let (len, head) = match pkcs8.get(i + 1)? {
                0x82 => (
                    usize::from(pkcs8[i + 2]) << 8 | usize::from(pkcs8[i + 3]),
                    4,
                ),
                0x81 => (usize::from(pkcs8[i + 2]), 3),
                n if *n < 0x80 => (usize::from(*n), 2),
                _ => return None,
            };
            (i + head + len == pkcs8.len()).then(|| pkcs8[i + head..].to_vec())
        })
        .expect("a PKCS#8 RSA key")
}

impl Signer {
    fn sign(&self, claims: &Value) -> String {
        let mut header = JwtHeader::new(self.alg);
        header.kid = self.jwk["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signed")
    }
}

/// The issuer's key set, changeable, with its fetches counted.
struct Jwks {
    keys: std::sync::Mutex<Vec<Value>>,
    fetches: AtomicUsize,
}

#[async_trait]
impl KeySource for Jwks {
    async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        Ok(json!({ "keys": *self.keys.lock().expect("keys") })
            .to_string()
            .into_bytes())
    }
}

fn oidc() -> Oidc {
    Oidc {
        issuer: ISSUER.to_owned(),
        audience: "app".to_owned(),
        jwks_url: None,
        rooms_claim: DEFAULT_AUTH_ROOMS_CLAIM.to_owned(),
        hs256_secret_arn: None,
        hs256_secret: None,
        jwks_refetch: DEFAULT_AUTH_JWKS_REFETCH,
    }
}

fn verifier(keys: &[&Signer], secret: Option<&str>) -> (Verifier, Arc<Jwks>) {
    let jwks = Arc::new(Jwks {
        keys: std::sync::Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
        fetches: AtomicUsize::new(0),
    });
    (
        Verifier::with_source(&oidc(), secret, jwks.clone(), "test"),
        jwks,
    )
}

fn claims() -> Value {
    json!({ "iss": ISSUER, "aud": "app", "sub": "u-1", "exp": NOW + 600, "name": "Ann" })
}

/// A token with this header and payload, and a signature of garbage.
fn forged(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        URL_SAFE_NO_PAD.encode(b"not a signature")
    )
}

#[tokio::test]
async fn es256_and_rs256_tokens_of_the_issuer_verify() {
    let (ec, rsa) = (ec_signer("ec"), rsa_signer("rsa"));
    let (verifier, jwks) = verifier(&[&ec, &rsa], None);

    let by_ec = verifier
        .verify(&ec.sign(&claims()), NOW)
        .await
        .expect("ES256");
    let by_rsa = verifier
        .verify(&rsa.sign(&claims()), NOW)
        .await
        .expect("RS256");

    assert_eq!((by_ec.uid.as_str(), by_ec.name.as_str()), ("u-1", "Ann"));
    assert_eq!(by_rsa, by_ec);
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        1,
        "keys fetched once, then cached"
    );
}

#[tokio::test]
async fn a_token_signed_by_another_key_or_altered_is_a_bad_signature() {
    let (issuers, impostor) = (ec_signer("ec"), ec_signer("ec"));
    let (verifier, _) = verifier(&[&issuers], None);
    let good = issuers.sign(&claims());
    let mut parts: Vec<&str> = good.split('.').collect();
    let elevated = URL_SAFE_NO_PAD.encode(
        json!({ "iss": ISSUER, "aud": "app", "sub": "admin", "exp": NOW + 600 }).to_string(),
    );
    parts[1] = &elevated;

    assert!(matches!(
        verifier.verify(&impostor.sign(&claims()), NOW).await,
        Err(AuthError::BadSignature)
    ));
    assert!(matches!(
        verifier.verify(&parts.join("."), NOW).await,
        Err(AuthError::BadSignature)
    ));
}

#[tokio::test]
async fn none_unknown_algorithms_and_hmac_keyed_with_the_public_key_are_refused() {
    let rsa = rsa_signer("rsa");
    let (verifier, jwks) = verifier(&[&rsa], None);
    let none = forged(&json!({ "alg": "none", "kid": "rsa" }), &claims());
    let none = format!("{}.", none.rsplit_once('.').expect("parts").0);
    let rs512 = forged(&json!({ "alg": "RS512", "kid": "rsa" }), &claims());
    // The classic confusion: HS256 "signed" with the RSA public key's bytes as the secret.
    let public_key_as_secret = serde_json::to_vec(&rsa.jwk).expect("jwk");
    let confused = jsonwebtoken::encode(
        &JwtHeader::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&public_key_as_secret),
    )
    .expect("signed");

    assert!(
        matches!(verifier.verify(&none, NOW).await, Err(AuthError::Algorithm(a)) if a == "none")
    );
    assert!(matches!(
        verifier.verify(&rs512, NOW).await,
        Err(AuthError::Algorithm(_))
    ));
    assert!(
        matches!(verifier.verify(&confused, NOW).await, Err(AuthError::Algorithm(a)) if a == "HS256")
    );
    assert!(matches!(
        verifier.verify("not.a-jwt", NOW).await,
        Err(AuthError::Malformed(_))
    ));
    assert_eq!(
        jwks.fetches.load(Ordering::SeqCst),
        0,
        "refused before any key was looked up"
    );
}

#[tokio::test]
async fn hs256_works_with_the_configured_secret_only() {
    let (verifier, _) = verifier(&[], Some("a shared secret of the backend"));
    let sign = |secret: &str| {
        jsonwebtoken::encode(
            &JwtHeader::new(Algorithm::HS256),
            &claims(),
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("signed")
    };

    assert!(
        verifier
            .verify(&sign("a shared secret of the backend"), NOW)
            .await
            .is_ok()
    );
    assert!(matches!(
        verifier.verify(&sign("a guess"), NOW).await,
        Err(AuthError::BadSignature)
    ));
}

#[tokio::test]
async fn a_key_claiming_another_algorithm_is_not_used() {
    let (ec, rsa) = (ec_signer("k"), rsa_signer("k"));
    let (verifier, _) = verifier(&[&ec], None);
    // An RS256 token naming the EC key's kid: no RS256 key by that kid exists.
    let wrong_family = rsa.sign(&claims());

    assert!(matches!(
        verifier.verify(&wrong_family, NOW).await,
        Err(AuthError::UnknownKey)
    ));
}

#[tokio::test]
async fn a_rotated_key_is_fetched_once_its_kid_is_seen() {
    let (old, new) = (ec_signer("2026-01"), ec_signer("2026-02"));
    let (verifier, jwks) = verifier(&[&old], None);
    assert!(verifier.verify(&old.sign(&claims()), NOW).await.is_ok());

    jwks.keys.lock().expect("keys").push(new.jwk.clone());
    tokio::time::pause();
    tokio::time::advance(DEFAULT_AUTH_JWKS_REFETCH).await;

    assert!(verifier.verify(&new.sign(&claims()), NOW).await.is_ok());
    assert_eq!(jwks.fetches.load(Ordering::SeqCst), 2, "one refetch");
}

#[tokio::test]
async fn the_keys_being_unreachable_is_not_the_clients_fault() {
    struct Down;
    #[async_trait]
    impl KeySource for Down {
        async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
            Err(FetchError::Answer {
                url: "test".into(),
                reason: "answered 503".into(),
            })
        }
    }
    let verifier = Verifier::with_source(&oidc(), None, Arc::new(Down), "test");

    let err = verifier
        .verify(&ec_signer("k").sign(&claims()), NOW)
        .await
        .expect_err("no keys");

    assert!(matches!(err, AuthError::Keys(_)), "{err}");
}

//! Signing keys and an issuer's key set for the tests of the verifier and the authorizer: an ES256 key made per
//! call, the RSA key of the fixtures (`shared/tests/fixtures/rsa-test-key.pk8.b64`, made for these tests only).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header as JwtHeader};
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RsaKeyPair, RsaPublicKeyComponents,
};
use serde_json::{Value, json};

use super::Verifier;
use super::keys::{FetchError, KeySource};
use crate::config::{DEFAULT_AUTH_JWKS_REFETCH, DEFAULT_AUTH_ROOMS_CLAIM, Oidc};

/// The tests' clock (epoch seconds).
pub const NOW: i64 = 1_800_000_000;
/// The tests' issuer.
pub const ISSUER: &str = "https://id.example";

/// A signing key and its public JWK.
pub struct Signer {
    encoding: EncodingKey,
    alg: Algorithm,
    /// Its public key as a JWK.
    pub jwk: Value,
}

pub fn ec_signer(kid: &str) -> Signer {
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

pub fn rsa_signer(kid: &str) -> Signer {
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
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = JwtHeader::new(self.alg);
        header.kid = self.jwk["kid"].as_str().map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signed")
    }
}

/// The issuer's key set, changeable, with its fetches counted.
pub struct Jwks {
    /// The keys served.
    pub keys: std::sync::Mutex<Vec<Value>>,
    /// How many times they were fetched.
    pub fetches: AtomicUsize,
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

/// The settings of the tests' issuer.
pub fn oidc() -> Oidc {
    Oidc {
        issuer: ISSUER.to_owned(),
        audience: "app".to_owned(),
        jwks_url: None,
        rooms_claim: DEFAULT_AUTH_ROOMS_CLAIM.to_owned(),
        hs256_secret_arn: None,
        hs256_secret: None,
        jwks_refetch: DEFAULT_AUTH_JWKS_REFETCH,
        leeway_secs: 60,
        client_id: "app".to_owned(),
    }
}

/// A verifier of the tests' issuer serving `keys`, with HS256 when `secret` is given.
pub fn verifier(keys: &[&Signer], secret: Option<&str>) -> (Verifier, Arc<Jwks>) {
    let jwks = Arc::new(Jwks {
        keys: std::sync::Mutex::new(keys.iter().map(|k| k.jwk.clone()).collect()),
        fetches: AtomicUsize::new(0),
    });
    (
        Verifier::with_source(&oidc(), secret, jwks.clone(), "test"),
        jwks,
    )
}

/// Valid claims of Ann (`u-1`) for audience `app`, expiring in 10 minutes.
pub fn claims() -> Value {
    json!({ "iss": ISSUER, "aud": "app", "sub": "u-1", "exp": NOW + 600, "name": "Ann" })
}

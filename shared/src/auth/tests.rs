//! The verifier against tokens signed here (`super::testing`): ES256, RS256 and a shared secret.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header as JwtHeader};
use serde_json::{Value, json};

use super::testing::{ISSUER, NOW, claims, ec_signer, oidc, rsa_signer, verifier};
use super::*;
use crate::config::DEFAULT_AUTH_JWKS_REFETCH;

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

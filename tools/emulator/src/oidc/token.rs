//! `POST /oidc/token`: a code and its PKCE verifier, or a refresh token, for tokens.

use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::json;

use super::{CODE_LIFETIME, Provider, Running, lock, public_json, random_token};

/// The token request's form.
#[derive(Debug, Deserialize)]
pub(super) struct TokenParams {
    grant_type: Option<String>,
    code: Option<String>,
    refresh_token: Option<String>,
    redirect_uri: Option<String>,
    client_id: Option<String>,
    code_verifier: Option<String>,
}

pub(super) async fn token(
    Running(provider): Running,
    axum::Form(params): axum::Form<TokenParams>,
) -> Response {
    let invalid = |error: &str| {
        let mut response = public_json(json!({ "error": error }));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        response
    };
    match params.grant_type.as_deref() {
        Some("authorization_code") => {}
        Some("refresh_token") => return refreshed(&provider, &params),
        _ => return invalid("unsupported_grant_type"),
    }
    let Some(pending) = params
        .code
        .as_deref()
        .and_then(|code| lock(&provider.codes).remove(code))
    else {
        return invalid("invalid_grant");
    };
    // RFC 7636: a verifier of 43 to 128 characters.
    let verifier = params
        .code_verifier
        .as_deref()
        .filter(|v| (43..=128).contains(&v.len()))
        .unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ));
    if pending.made.elapsed() >= CODE_LIFETIME
        || params.client_id.as_deref() != Some(pending.client_id.as_str())
        || params.redirect_uri.as_deref() != Some(pending.redirect_uri.as_str())
        || verifier.is_empty()
        || challenge != pending.challenge
    {
        return invalid("invalid_grant");
    }
    let jwt = provider.token(
        &pending.session,
        &pending.client_id,
        pending.nonce.as_deref(),
    );
    let refresh = random_token(24);
    lock(&provider.refreshes).insert(refresh.clone(), (pending.session_id, pending.client_id));
    public_json(json!({
        "token_type": "Bearer",
        "id_token": jwt,
        "access_token": jwt,
        "refresh_token": refresh,
        "expires_in": provider.token_ttl.as_secs(),
    }))
}

/// `grant_type=refresh_token`: new tokens for the sign-in the refresh token belongs to, while it lasts.
fn refreshed(provider: &Provider, params: &TokenParams) -> Response {
    let grant = params
        .refresh_token
        .as_deref()
        .and_then(|token| lock(&provider.refreshes).get(token).cloned());
    let session = grant.as_ref().and_then(|(session_id, client_id)| {
        let same_client = params.client_id.as_deref() == Some(client_id.as_str());
        same_client
            .then(|| lock(&provider.sessions).get(session_id).cloned())
            .flatten()
    });
    let (Some((_, client_id)), Some(session)) = (grant, session) else {
        let mut response = public_json(json!({ "error": "invalid_grant" }));
        *response.status_mut() = StatusCode::BAD_REQUEST;
        return response;
    };
    let jwt = provider.token(&session, &client_id, None);
    public_json(json!({
        "token_type": "Bearer",
        "id_token": jwt,
        "access_token": jwt,
        "expires_in": provider.token_ttl.as_secs(),
    }))
}

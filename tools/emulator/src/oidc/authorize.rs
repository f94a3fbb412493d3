//! `/oidc/authorize`: the sign-in page, the sign-in, and silent sign-in on the browser's session.

use std::time::Instant;

use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{
    CODE_LIFETIME, Pending, Provider, Running, SESSION_COOKIE, Session, encode, is_loopback_url,
    lock, pages, random_token, session_of,
};

/// The authorize request's parameters.
#[derive(Debug, Deserialize)]
pub(super) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    nonce: Option<String>,
    prompt: Option<String>,
    /// The sign-in form's fields.
    name: Option<String>,
    rooms: Option<String>,
}

impl AuthorizeParams {
    /// The sign-in page for this request.
    fn page(&self) -> axum::response::Html<String> {
        let carried = [
            ("response_type", self.response_type.as_deref()),
            ("client_id", self.client_id.as_deref()),
            ("redirect_uri", self.redirect_uri.as_deref()),
            ("state", self.state.as_deref()),
            ("code_challenge", self.code_challenge.as_deref()),
            (
                "code_challenge_method",
                self.code_challenge_method.as_deref(),
            ),
            ("nonce", self.nonce.as_deref()),
        ];
        pages::sign_in(&carried, self.name.as_deref())
    }

    /// The request's problem, if any: only the code flow with S256 PKCE, back to a loopback address.
    fn problem(&self) -> Option<&'static str> {
        if self.response_type.as_deref() != Some("code") {
            return Some("response_type must be code");
        }
        if self.client_id.as_deref().is_none_or(str::is_empty) {
            return Some("client_id is required");
        }
        if !self.redirect_uri.as_deref().is_some_and(is_loopback_url) {
            return Some("redirect_uri must be an http(s) URL on this machine");
        }
        if self.code_challenge_method.as_deref() != Some("S256")
            || self.code_challenge.as_deref().is_none_or(str::is_empty)
        {
            return Some("PKCE with S256 is required");
        }
        None
    }

    /// Back to the client with `code`, or with `error`.
    fn back(&self, outcome: Result<&str, &str>) -> Response {
        let (key, value) = match outcome {
            Ok(code) => ("code", code),
            Err(error) => ("error", error),
        };
        let mut url = format!(
            "{}{}{key}={}",
            self.redirect_uri.as_deref().unwrap_or_default(),
            if self
                .redirect_uri
                .as_deref()
                .unwrap_or_default()
                .contains('?')
            {
                '&'
            } else {
                '?'
            },
            encode(value)
        );
        if let Some(state) = &self.state {
            url.push_str(&format!("&state={}", encode(state)));
        }
        Redirect::to(&url).into_response()
    }
}

pub(super) async fn page(
    Running(provider): Running,
    headers: HeaderMap,
    Query(params): Query<AuthorizeParams>,
) -> Response {
    if let Some(problem) = params.problem() {
        return (StatusCode::BAD_REQUEST, problem).into_response();
    }
    if params.prompt.as_deref() == Some("none") {
        let session = session_of(&headers)
            .and_then(|id| Some((id.clone(), lock(&provider.sessions).get(&id).cloned()?)));
        return match session {
            Some((id, session)) => {
                let code = provider.grant(&params, id, session);
                params.back(Ok(&code))
            }
            None => params.back(Err("login_required")),
        };
    }
    params.page().into_response()
}

pub(super) async fn sign_in(
    Running(provider): Running,
    axum::Form(params): axum::Form<AuthorizeParams>,
) -> Response {
    if let Some(problem) = params.problem() {
        return (StatusCode::BAD_REQUEST, problem).into_response();
    }
    let name = params.name.as_deref().map(str::trim).unwrap_or_default();
    if name.is_empty() {
        return params.page().into_response();
    }
    let rooms = params
        .rooms
        .as_deref()
        .map(|r| {
            r.split([',', ' '])
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .filter(|r| !r.is_empty());
    let session = Session {
        name: name.to_owned(),
        rooms,
    };
    let id = random_token(16);
    lock(&provider.sessions).insert(id.clone(), session.clone());
    let code = provider.grant(&params, id.clone(), session);
    let mut response = params.back(Ok(&code));
    if let Ok(cookie) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={id}; Path=/oidc; HttpOnly; SameSite=Lax"
    )) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

impl Provider {
    /// A one-time code for `session`, bound to the request's client, redirect URI and PKCE challenge.
    fn grant(&self, params: &AuthorizeParams, session_id: String, session: Session) -> String {
        let code = random_token(16);
        let mut codes = lock(&self.codes);
        codes.retain(|_, pending| pending.made.elapsed() < CODE_LIFETIME);
        codes.insert(
            code.clone(),
            Pending {
                session_id,
                session,
                client_id: params.client_id.clone().unwrap_or_default(),
                redirect_uri: params.redirect_uri.clone().unwrap_or_default(),
                challenge: params.code_challenge.clone().unwrap_or_default(),
                nonce: params.nonce.clone(),
                made: Instant::now(),
            },
        );
        code
    }
}

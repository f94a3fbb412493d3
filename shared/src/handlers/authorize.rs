//! The `$connect` REQUEST authorizer. API Gateway attaches what it returns as `requestContext.authorizer` to every
//! later event of the connection, so `$default` knows the sender's room (and name, and user) without asking Redis,
//! and the hot path stays one round trip even on Redis Cluster, where the connection's key and the room's key live
//! in different slots.
//!
//! * `AUTH_MODE=open`: every handshake is let through to `$connect` (which validates it and answers 400/403 with a
//!   reason), with the room and the display name (`?name=`) as context when they are valid.
//! * `AUTH_MODE=oidc`: the handshake's token ([`crate::auth::transport`]) must verify ([`Verifier`]); without one,
//!   or with a bad one, the answer is `Unauthorized` (API Gateway: 401, and `$connect` never runs). A room the
//!   token's rooms claim does not grant is denied (403), with nothing else said. Allowed, the context carries the
//!   room, the name and the user id from the token (`?name=` is ignored) and when the token expires.

use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::{info, warn};

use super::HandlerError;
use super::events::{
    AUTHORIZER_EXPIRES_KEY, AUTHORIZER_NAME_KEY, AUTHORIZER_ROOM_KEY, AUTHORIZER_UID_KEY,
    Authorization,
};
use crate::auth::{AuthError, Verifier};
use crate::metrics::{self, Metric};

/// What the authorizer needs.
#[derive(Clone, Default)]
pub struct Deps {
    /// The token verifier (none: `AUTH_MODE=open`).
    pub verifier: Option<Arc<Verifier>>,
}

/// The authorizer's answer, in the shape API Gateway expects from a REQUEST authorizer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    /// Who is connecting: the user id (`AUTH_MODE=oidc`), else the connection id.
    pub principal_id: String,
    /// An IAM policy allowing (or denying) `execute-api:Invoke` on the `$connect` route.
    pub policy_document: Value,
    /// Attached by API Gateway to every later event as `requestContext.authorizer`.
    pub context: Map<String, Value>,
}

/// Answers one authorizer request at `now_secs` (epoch seconds).
///
/// # Errors
/// [`HandlerError::Unauthorized`] for a missing or bad token (API Gateway answers the handshake 401);
/// [`HandlerError::AuthKeys`] when the issuer's keys cannot be fetched (500).
pub async fn handle(
    authorization: Authorization,
    deps: &Deps,
    now_secs: i64,
) -> Result<AuthorizerResponse, HandlerError> {
    let Authorization {
        principal_id,
        resource,
        handshake,
        token,
    } = authorization;
    metrics::count(Metric::Handshakes);
    let mut context = Map::new();
    if let Ok(room) = &handshake.room {
        context.insert(
            AUTHORIZER_ROOM_KEY.to_owned(),
            Value::String(room.as_str().to_owned()),
        );
    }
    let Some(verifier) = &deps.verifier else {
        if let Ok(Some(name)) = handshake.name {
            context.insert(
                AUTHORIZER_NAME_KEY.to_owned(),
                Value::String(name.as_str().to_owned()),
            );
        }
        return Ok(answer(principal_id, "Allow", &resource, context));
    };
    let verified = match &token {
        None => Err(AuthError::Missing),
        Some(token) => verifier.verify(token.as_str(), now_secs).await,
    };
    let identity = match verified {
        Ok(identity) => identity,
        Err(err @ AuthError::Keys(_)) => return Err(HandlerError::AuthKeys(err)),
        Err(err) => {
            warn!(connection = %principal_id, reason = %err, "handshake refused: unauthorized");
            metrics::count(Metric::HandshakesRefused);
            metrics::count(Metric::HandshakesUnauthorized);
            return Err(HandlerError::Unauthorized);
        }
    };
    if let Ok(room) = &handshake.room
        && !identity.rooms.allows(room)
    {
        warn!(connection = %principal_id, uid = %identity.uid, room = %room, "handshake refused: room not granted");
        metrics::count(Metric::HandshakesRefused);
        metrics::count(Metric::HandshakesForbidden);
        return Ok(answer(
            identity.uid.to_string(),
            "Deny",
            &resource,
            Map::new(),
        ));
    }
    info!(connection = %principal_id, uid = %identity.uid, "handshake authorized");
    context.insert(
        AUTHORIZER_NAME_KEY.to_owned(),
        Value::String(identity.name.as_str().to_owned()),
    );
    context.insert(
        AUTHORIZER_UID_KEY.to_owned(),
        Value::String(identity.uid.to_string()),
    );
    context.insert(
        AUTHORIZER_EXPIRES_KEY.to_owned(),
        Value::from(identity.expires_at),
    );
    Ok(answer(
        identity.uid.to_string(),
        "Allow",
        &resource,
        context,
    ))
}

/// A policy with one statement of `effect` on `resource`.
fn answer(
    principal_id: String,
    effect: &str,
    resource: &str,
    context: Map<String, Value>,
) -> AuthorizerResponse {
    AuthorizerResponse {
        principal_id,
        policy_document: serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Action": "execute-api:Invoke", "Effect": effect, "Resource": resource }]
        }),
        context,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::testing::{NOW, claims, ec_signer, verifier};
    use crate::handlers::events::AuthorizerRequest;

    fn request(query: Value, headers: Value) -> Authorization {
        let event: AuthorizerRequest = serde_json::from_value(json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:eu-west-1:123456789012:abc/prod/$connect",
            "queryStringParameters": query,
            "headers": headers,
            "requestContext": { "connectionId": "c1", "routeKey": "$connect", "eventType": "CONNECT" }
        }))
        .expect("authorizer request deserializes");
        Authorization::from(&event)
    }

    async fn open(query: Value) -> AuthorizerResponse {
        handle(request(query, json!({})), &Deps::default(), NOW)
            .await
            .expect("open mode lets everyone through")
    }

    #[tokio::test]
    async fn a_valid_room_is_carried_in_the_context() {
        let resp = open(json!({ "room": "lobby" })).await;

        assert_eq!(resp.context.get("room"), Some(&json!("lobby")));
        assert_eq!(resp.policy_document["Statement"][0]["Effect"], "Allow");
        assert_eq!(resp.principal_id, "c1");
    }

    #[tokio::test]
    async fn a_valid_name_is_carried_normalized_and_a_bad_one_is_left_for_connect_to_reject() {
        let named = open(json!({ "room": "lobby", "name": " Rene\u{301}e " })).await;
        let bad = open(json!({ "room": "lobby", "name": "a\u{202E}b" })).await;

        assert_eq!(named.context.get("name"), Some(&json!("Ren\u{e9}e")));
        assert_eq!(bad.context.get("name"), None);
        assert_eq!(bad.context.get("room"), Some(&json!("lobby")));
    }

    #[tokio::test]
    async fn an_invalid_room_is_left_for_connect_to_reject() {
        let resp = open(json!({ "room": "a b" })).await;

        assert!(resp.context.is_empty());
        assert_eq!(resp.policy_document["Statement"][0]["Effect"], "Allow");
    }

    #[tokio::test]
    async fn a_verified_token_names_the_user_whatever_name_the_query_says() {
        let key = ec_signer("k1");
        let (verifier, _) = verifier(&[&key], None);
        let deps = Deps {
            verifier: Some(Arc::new(verifier)),
        };
        let token = key.sign(&claims());

        let by_subprotocol = handle(
            request(
                json!({ "room": "lobby", "name": "Mallory" }),
                json!({ "Sec-WebSocket-Protocol": format!("wschat, {token}") }),
            ),
            &deps,
            NOW,
        )
        .await
        .expect("allowed");
        let by_query = handle(
            request(json!({ "room": "lobby", "token": token }), json!({})),
            &deps,
            NOW,
        )
        .await
        .expect("allowed");

        assert_eq!(
            by_subprotocol.policy_document["Statement"][0]["Effect"],
            "Allow"
        );
        assert_eq!(by_subprotocol.principal_id, "u-1");
        assert_eq!(by_subprotocol.context.get("name"), Some(&json!("Ann")));
        assert_eq!(by_subprotocol.context.get("uid"), Some(&json!("u-1")));
        assert_eq!(by_subprotocol.context.get("exp"), Some(&json!(NOW + 600)));
        assert_eq!(by_subprotocol.context.get("room"), Some(&json!("lobby")));
        assert_eq!(by_query, by_subprotocol);
    }

    #[tokio::test]
    async fn no_token_or_a_bad_one_is_unauthorized_and_an_ungranted_room_is_denied_with_nothing_said()
     {
        let key = ec_signer("k1");
        let (verifier, _) = verifier(&[&key], None);
        let deps = Deps {
            verifier: Some(Arc::new(verifier)),
        };
        let mut expired = claims();
        expired["exp"] = json!(NOW - 120);
        let mut team_only = claims();
        team_only["rooms"] = json!(["team_*"]);
        let attempt = |query: Value| handle(request(query, json!({})), &deps, NOW);

        let none = attempt(json!({ "room": "lobby" })).await;
        let stale = attempt(json!({ "room": "lobby", "token": key.sign(&expired) })).await;
        let forged =
            attempt(json!({ "room": "lobby", "token": ec_signer("k1").sign(&claims()) })).await;
        let elsewhere = attempt(json!({ "room": "lobby", "token": key.sign(&team_only) }))
            .await
            .expect("an answer");
        let granted = attempt(json!({ "room": "team_red", "token": key.sign(&team_only) }))
            .await
            .expect("an answer");

        for refused in [none, stale, forged] {
            let err = refused.expect_err("refused");
            assert!(matches!(err, HandlerError::Unauthorized));
            assert_eq!(
                crate::handlers::error_chain(&err),
                "Unauthorized",
                "what API Gateway reads as 401"
            );
        }
        assert_eq!(elsewhere.policy_document["Statement"][0]["Effect"], "Deny");
        assert!(
            elsewhere.context.is_empty(),
            "nothing about the room: {elsewhere:?}"
        );
        assert_eq!(granted.policy_document["Statement"][0]["Effect"], "Allow");
    }
}

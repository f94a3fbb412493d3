//! The `$connect` REQUEST authorizer: it lets every handshake through to `$connect` (which validates it and
//! answers 400/403 with a reason) and, when the room name (and the display name, `?name=`) is valid, returns it
//! as context. API Gateway then
//! attaches that context as `requestContext.authorizer` to every later event of the connection, so `$default`
//! knows the sender's room without asking Redis, and the hot path stays one round trip even on Redis Cluster,
//! where the connection's key and the room's key live in different slots.

use serde::Serialize;
use serde_json::{Map, Value};

use super::events::{AUTHORIZER_NAME_KEY, AUTHORIZER_ROOM_KEY, Authorization};

/// The authorizer's answer, in the shape API Gateway expects from a REQUEST authorizer.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuthorizerResponse {
    /// Who is connecting; the connection id, as there are no users.
    pub principal_id: String,
    /// An IAM policy allowing `execute-api:Invoke` on the `$connect` route.
    pub policy_document: Value,
    /// Attached by API Gateway to every later event as `requestContext.authorizer`.
    pub context: Map<String, Value>,
}

/// Answers one authorizer request: always Allow (`$connect` validates the handshake and answers 400/403 with a
/// reason), with the room and the name as context when they are valid.
pub fn handle(authorization: Authorization) -> AuthorizerResponse {
    let Authorization {
        principal_id,
        resource,
        handshake,
    } = authorization;
    let mut context = Map::new();
    if let Ok(room) = handshake.room {
        context.insert(
            AUTHORIZER_ROOM_KEY.to_owned(),
            Value::String(room.as_str().to_owned()),
        );
    }
    if let Ok(Some(name)) = handshake.name {
        context.insert(
            AUTHORIZER_NAME_KEY.to_owned(),
            Value::String(name.as_str().to_owned()),
        );
    }
    AuthorizerResponse {
        principal_id,
        policy_document: serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": resource }]
        }),
        context,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::handlers::events::AuthorizerRequest;

    fn request(query: Value) -> Authorization {
        let event: AuthorizerRequest = serde_json::from_value(json!({
            "type": "REQUEST",
            "methodArn": "arn:aws:execute-api:eu-west-1:123456789012:abc/prod/$connect",
            "queryStringParameters": query,
            "requestContext": { "connectionId": "c1", "routeKey": "$connect", "eventType": "CONNECT" }
        }))
        .expect("authorizer request deserializes");
        Authorization::from(&event)
    }

    #[test]
    fn a_valid_room_is_carried_in_the_context() {
        let resp = handle(request(json!({ "room": "lobby" })));

        assert_eq!(resp.context.get("room"), Some(&json!("lobby")));
        assert_eq!(resp.policy_document["Statement"][0]["Effect"], "Allow");
        assert_eq!(resp.principal_id, "c1");
    }

    #[test]
    fn a_valid_name_is_carried_normalized_and_a_bad_one_is_left_for_connect_to_reject() {
        let named = handle(request(
            json!({ "room": "lobby", "name": " Rene\u{301}e " }),
        ));
        let bad = handle(request(json!({ "room": "lobby", "name": "a\u{202E}b" })));

        assert_eq!(named.context.get("name"), Some(&json!("Ren\u{e9}e")));
        assert_eq!(bad.context.get("name"), None);
        assert_eq!(bad.context.get("room"), Some(&json!("lobby")));
    }

    #[test]
    fn an_invalid_room_is_left_for_connect_to_reject() {
        let resp = handle(request(json!({ "room": "a b" })));

        assert!(resp.context.is_empty());
        assert_eq!(resp.policy_document["Statement"][0]["Effect"], "Allow");
    }
}

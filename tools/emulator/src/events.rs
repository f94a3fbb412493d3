//! The events API Gateway sends to a WebSocket API's integrations, built as JSON exactly as AWS shapes them:
//! `$connect` is the only event with the client's headers and query string; `MESSAGE` events carry only
//! `requestContext` and `body`; `$disconnect` carries a few gateway headers and the close status.
//! `requestContext.connectedAt` and `requestTimeEpoch` are always present (`aws_lambda_events` requires them).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

/// What the emulator knows about a connection, shared by all the events built for it.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    /// The connection id.
    pub connection_id: String,
    /// Epoch milliseconds of the handshake.
    pub connected_at: i64,
    /// The client's address.
    pub source_ip: String,
    /// The client's `User-Agent`, if it sent one.
    pub user_agent: Option<String>,
    /// `Host` the client connected to (becomes `domainName`).
    pub domain_name: String,
    /// The stage (the first path segment of the API's URL).
    pub stage: String,
    /// The authorizer's context, attached to every event after the authorizer ran.
    pub authorizer: Option<Map<String, Value>>,
}

/// The emulated API's id, as it appears in `apiId` and in ARNs.
pub const API_ID: &str = "local";

/// The `requestContext` common to all events.
fn request_context(info: &ConnectionInfo, route_key: &str, event_type: &str, now_ms: i64) -> Value {
    let request_id = random_id(12);
    let mut ctx = json!({
        "routeKey": route_key,
        "eventType": event_type,
        "extendedRequestId": request_id,
        "requestTime": crate::timefmt::clf(now_ms),
        "messageDirection": "IN",
        "stage": info.stage,
        "connectedAt": info.connected_at,
        "requestTimeEpoch": now_ms,
        "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
        "requestId": request_id,
        "domainName": info.domain_name,
        "connectionId": info.connection_id,
        "apiId": API_ID,
    });
    if let Some(authorizer) = &info.authorizer {
        ctx["authorizer"] = Value::Object(authorizer.clone());
    }
    ctx
}

/// Headers as API Gateway passes them: `headers` (last value wins) and `multiValueHeaders`.
fn header_maps(headers: &[(String, String)]) -> (Value, Value) {
    let mut single = Map::new();
    let mut multi: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for (name, value) in headers {
        single.insert(name.clone(), Value::String(value.clone()));
        multi
            .entry(name.clone())
            .or_default()
            .push(Value::String(value.clone()));
    }
    let multi = multi
        .into_iter()
        .map(|(k, v)| (k, Value::Array(v)))
        .collect::<Map<_, _>>();
    (Value::Object(single), Value::Object(multi))
}

/// Query parameters as API Gateway passes them; both maps are absent when there is no query string.
fn query_maps(query: &[(String, String)]) -> Option<(Value, Value)> {
    (!query.is_empty()).then(|| header_maps(query))
}

/// The `$connect` event.
pub fn connect(
    info: &ConnectionInfo,
    headers: &[(String, String)],
    query: &[(String, String)],
    now_ms: i64,
) -> Value {
    let (headers, multi_headers) = header_maps(headers);
    let mut event = json!({
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "requestContext": request_context(info, "$connect", "CONNECT", now_ms),
        "isBase64Encoded": false,
    });
    if let Some((q, mq)) = query_maps(query) {
        event["queryStringParameters"] = q;
        event["multiValueQueryStringParameters"] = mq;
    }
    event
}

/// The REQUEST authorizer's event for `$connect` (a WebSocket authorizer sees headers and query string too).
pub fn authorizer(
    info: &ConnectionInfo,
    headers: &[(String, String)],
    query: &[(String, String)],
    now_ms: i64,
) -> Value {
    let (headers, multi_headers) = header_maps(headers);
    let (q, mq) = query_maps(query).unwrap_or_else(|| (json!({}), json!({})));
    json!({
        "type": "REQUEST",
        "methodArn": format!("arn:aws:execute-api:us-east-1:000000000000:{API_ID}/{}/$connect", info.stage),
        "headers": headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": q,
        "multiValueQueryStringParameters": mq,
        "stageVariables": {},
        "requestContext": request_context(info, "$connect", "CONNECT", now_ms),
    })
}

/// A `MESSAGE` event for a text frame routed to `route_key`.
pub fn message(info: &ConnectionInfo, route_key: &str, body: &str, now_ms: i64) -> Value {
    let mut ctx = request_context(info, route_key, "MESSAGE", now_ms);
    ctx["messageId"] = Value::String(random_id(12));
    json!({ "requestContext": ctx, "body": body, "isBase64Encoded": false })
}

/// The `$disconnect` event, with the close status the client (or the gateway) gave.
pub fn disconnect(info: &ConnectionInfo, status_code: u16, reason: &str, now_ms: i64) -> Value {
    let mut ctx = request_context(info, "$disconnect", "DISCONNECT", now_ms);
    ctx["disconnectStatusCode"] = json!(status_code);
    ctx["disconnectReason"] = json!(reason);
    let gateway_headers = [
        ("Host".to_owned(), info.domain_name.clone()),
        ("X-Forwarded-For".to_owned(), info.source_ip.clone()),
        ("x-api-key".to_owned(), String::new()),
    ];
    let (headers, multi_headers) = header_maps(&gateway_headers);
    json!({ "headers": headers, "multiValueHeaders": multi_headers, "requestContext": ctx, "isBase64Encoded": false })
}

/// Picks the route for a text frame with the API's selection expression `$request.body.action`: the value of
/// `action` if it names a route, else `$default` (also when the body is not JSON).
pub fn select_route<'a>(body: &str, routes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let action = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| match v.get("action")? {
            Value::String(s) => Some(s.clone()),
            Value::Null => None,
            other => Some(other.to_string()),
        });
    let mut default = None;
    for route in routes {
        if action.as_deref() == Some(route) && !route.starts_with('$') {
            return Some(route);
        }
        if route == "$default" {
            default = Some(route);
        }
    }
    default
}

/// A random id in API Gateway's style: base64 of random bytes (`L0SM9cOFvHcCIhw=` for connection ids).
pub fn random_id(bytes: usize) -> String {
    use base64::Engine as _;
    let raw: Vec<u8> = (0..bytes).map(|_| fastrand::u8(..)).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

#[cfg(test)]
mod tests {
    use chat_shared::WebsocketRequest;

    use super::*;

    fn info() -> ConnectionInfo {
        ConnectionInfo {
            connection_id: "L0SM9cOFvHcCIhw=".into(),
            connected_at: 1_764_062_358_000,
            source_ip: "127.0.0.1".into(),
            user_agent: Some("test".into()),
            domain_name: "127.0.0.1:3000".into(),
            stage: "local".into(),
            authorizer: None,
        }
    }

    #[test]
    fn every_event_deserializes_into_the_lambda_type() {
        let headers = [("Origin".to_owned(), "http://127.0.0.1:3000".to_owned())];
        let query = [("room".to_owned(), "lobby".to_owned())];
        for event in [
            connect(&info(), &headers, &query, 1),
            message(&info(), "$default", r#"{"message":"hi"}"#, 2),
            disconnect(&info(), 1001, "Going away", 3),
        ] {
            let parsed: WebsocketRequest =
                serde_json::from_value(event.clone()).expect("deserializes");
            assert_eq!(
                parsed.request_context.connection_id.as_deref(),
                Some("L0SM9cOFvHcCIhw=")
            );
            assert!(parsed.request_context.connected_at > 0);
        }
    }

    #[test]
    fn only_connect_carries_the_query_string_and_client_headers() {
        let headers = [("Origin".to_owned(), "http://x".to_owned())];
        let query = [("room".to_owned(), "lobby".to_owned())];
        let connect = connect(&info(), &headers, &query, 1);
        let message = message(&info(), "$default", "{}", 2);

        assert_eq!(connect["queryStringParameters"]["room"], "lobby");
        assert_eq!(connect["headers"]["Origin"], "http://x");
        assert!(message.get("queryStringParameters").is_none());
        assert!(message.get("headers").is_none());
        assert!(message["requestContext"]["messageId"].is_string());
    }

    #[test]
    fn authorizer_context_rides_on_later_events() {
        let mut info = info();
        info.authorizer = Some(
            json!({ "room": "lobby", "principalId": "p" })
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );

        let parsed: WebsocketRequest =
            serde_json::from_value(message(&info, "$default", "{}", 2)).expect("deserializes");

        assert_eq!(
            parsed.request_context.authorizer.fields.get("room"),
            Some(&json!("lobby"))
        );
    }

    #[test]
    fn route_selection_falls_back_to_default() {
        let routes = ["$connect", "$disconnect", "$default", "sendmessage"];
        assert_eq!(
            select_route(r#"{"action":"sendmessage"}"#, routes),
            Some("sendmessage")
        );
        assert_eq!(
            select_route(r#"{"message":"hi"}"#, routes),
            Some("$default")
        );
        assert_eq!(select_route("not json", routes), Some("$default"));
        assert_eq!(
            select_route(r#"{"action":"$connect"}"#, routes),
            Some("$default")
        );
        assert_eq!(select_route(r#"{"action":"x"}"#, ["$connect"]), None);
    }
}

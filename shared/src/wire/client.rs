//! Frames a client sends ([`ClientFrame`]), and why one is refused ([`FrameError`]).

use super::{CHAT_FRAME_OVERHEAD, Epoch, MAX_POST_BYTES};

/// A frame sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `{"message": ..., "id": ...}`: a chat message for the room.
    Chat {
        /// The chat text, exactly as sent.
        message: String,
        /// The same text encoded as a JSON string (quotes included), once, as every member's frame carries it.
        json: String,
        /// The client's id of this message: sent again with the same id, it is not stored twice.
        id: Option<MessageId>,
    },
    /// `{"action": "history", ...}`: the retained messages after `after` of the room's history `epoch`.
    History {
        /// The highest seq the client has (it wants what follows); `None` for the most recent messages.
        after: Option<u64>,
        /// The epoch `after` belongs to.
        epoch: Option<Epoch>,
    },
    /// `{"action": "ping"}`: heartbeat.
    Ping,
    /// `{"action": "presence"}`: who is in the room; from then on, joins and leaves too.
    Presence,
}

/// Why a client frame was refused; the `Display` text is what the sender sees in `{"error": ...}`.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The frame is binary (API Gateway base64-encodes those).
    #[error("binary frames are not supported; send a JSON text frame")]
    Binary,
    /// The frame is empty.
    #[error("empty frame; send {{\"message\": \"...\"}}")]
    Empty,
    /// The frame is not JSON.
    #[error("frame is not valid JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// The frame is JSON but not an object.
    #[error("frame must be a JSON object like {{\"message\": \"...\"}}")]
    NotAnObject,
    /// The object has no `message` field (and no action this server knows).
    #[error("frame has no \"message\" field")]
    NoMessage,
    /// `message` is present but is not a string.
    #[error("\"message\" must be a string")]
    MessageNotString,
    /// `action` names nothing this server does.
    #[error("unknown action {0:?}; the actions are \"history\", \"ping\" and \"presence\"")]
    UnknownAction(String),
    /// `after` is not a non-negative integer.
    #[error("\"after\" must be a non-negative integer (the last seq you have)")]
    BadAfter,
    /// `id` is not 1–64 characters of the allowed set.
    #[error("\"id\" must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', ':' and '-'")]
    BadId,
    /// `epoch` is not an epoch this server could have sent.
    #[error("\"epoch\" must be the epoch string of a chat or history frame")]
    BadEpoch,
    /// The message's text is longer than `MAX_MESSAGE_BYTES`.
    #[error("message is too long: {bytes} bytes of UTF-8 (limit {limit})")]
    MessageTooLong {
        /// The text's UTF-8 bytes.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// The broadcast frame would exceed what PostToConnection accepts.
    #[error("message is too large: the encoded frame would be {0} bytes (limit {MAX_POST_BYTES})")]
    TooLarge(usize),
}

/// A client's id of one of its chat messages (`"id"`): 1 to 64 characters of `A-Z a-z 0-9 . _ : -`, so it
/// can sit in a Redis key and a frame as it is. The page makes a random one per message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageId(String);

impl MessageId {
    /// The most characters an id may have.
    pub const MAX_CHARS: usize = 64;

    /// Checks `raw`.
    ///
    /// # Errors
    /// [`FrameError::BadId`] when it is empty, too long or holds another character.
    pub fn parse(raw: &str) -> Result<Self, FrameError> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-');
        if raw.is_empty() || raw.len() > Self::MAX_CHARS || !raw.chars().all(allowed) {
            return Err(FrameError::BadId);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl ClientFrame {
    /// A chat frame for `message`, encoded once and checked before anything is stored or looked up: a message
    /// whose frame would exceed what PostToConnection accepts is refused like a malformed frame.
    fn chat(message: String, id: Option<MessageId>) -> Result<Self, FrameError> {
        // Encoding a string cannot fail.
        let json = serde_json::to_string(&message).unwrap_or_default();
        let size = json.len() + CHAT_FRAME_OVERHEAD;
        if size > MAX_POST_BYTES {
            return Err(FrameError::TooLarge(size));
        }
        Ok(Self::Chat { message, json, id })
    }

    /// Parses the body of a `$default` event.
    ///
    /// # Errors
    /// [`FrameError`] names what is wrong with the frame, in words fit to send back to its sender.
    pub fn parse(body: Option<&str>, is_base64: bool) -> Result<Self, FrameError> {
        use serde_json::Value;
        if is_base64 {
            return Err(FrameError::Binary);
        }
        let body = body.unwrap_or_default();
        if body.trim().is_empty() {
            return Err(FrameError::Empty);
        }
        let value: Value = serde_json::from_str(body).map_err(FrameError::NotJson)?;
        let Value::Object(mut object) = value else {
            return Err(FrameError::NotAnObject);
        };
        // A tutorial client's frame has no action; any other action with a message is chat, as before actions
        // existed (extra fields are ignored).
        match object.get("action").and_then(Value::as_str) {
            Some("history") => {
                let after = match object.remove("after") {
                    None | Some(Value::Null) => None,
                    Some(value) => Some(value.as_u64().ok_or(FrameError::BadAfter)?),
                };
                let epoch = match object.remove("epoch") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(raw)) => Some(Epoch::parse(&raw)?),
                    Some(_) => return Err(FrameError::BadEpoch),
                };
                return Ok(Self::History { after, epoch });
            }
            Some("ping") => return Ok(Self::Ping),
            Some("presence") => return Ok(Self::Presence),
            _ => {}
        }
        match object.remove("message") {
            Some(Value::String(message)) => {
                let id = match object.remove("id") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(raw)) => Some(MessageId::parse(&raw)?),
                    Some(_) => return Err(FrameError::BadId),
                };
                Self::chat(message, id)
            }
            Some(_) => Err(FrameError::MessageNotString),
            None => match object.remove("action") {
                Some(Value::String(action)) => Err(FrameError::UnknownAction(action)),
                _ => Err(FrameError::NoMessage),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_fields_in_a_client_frame_are_ignored() {
        let frame = ClientFrame::parse(Some(r#"{"action":"x","message":"hi","n":1}"#), false)
            .expect("valid");
        assert_eq!(
            frame,
            ClientFrame::Chat {
                message: "hi".into(),
                json: r#""hi""#.into(),
                id: None,
            }
        );
    }

    #[test]
    fn a_chat_message_may_carry_an_id_of_1_to_64_safe_characters() {
        let parse = |body: &str| ClientFrame::parse(Some(body), false);
        let Ok(ClientFrame::Chat { id, .. }) = parse(r#"{"message":"hi","id":"a1.b_c:d-E"}"#)
        else {
            panic!("valid");
        };
        assert_eq!(id.as_ref().map(MessageId::as_str), Some("a1.b_c:d-E"));
        assert!(parse(&format!(r#"{{"message":"hi","id":"{}"}}"#, "x".repeat(64))).is_ok());
        for bad in [
            r#""""#.to_owned(),
            format!(r#""{}""#, "x".repeat(65)),
            r#""a b""#.to_owned(),
            r#""a{b}""#.to_owned(),
            r#""é""#.to_owned(),
            "7".to_owned(),
        ] {
            let err = parse(&format!(r#"{{"message":"hi","id":{bad}}}"#)).expect_err(&bad);
            assert!(err.to_string().contains("\"id\""), "{bad}: {err}");
        }
    }

    #[test]
    fn history_and_ping_requests_parse_with_and_without_their_fields() {
        let parse = |body: &str| ClientFrame::parse(Some(body), false);

        assert_eq!(
            parse(r#"{"action":"history","after":41,"epoch":"9f2c"}"#).expect("valid"),
            ClientFrame::History {
                after: Some(41),
                epoch: Some(Epoch::parse("9f2c").expect("epoch"))
            }
        );
        assert_eq!(
            parse(r#"{"action":"history"}"#).expect("valid"),
            ClientFrame::History {
                after: None,
                epoch: None
            }
        );
        assert_eq!(
            parse(r#"{"action":"ping"}"#).expect("valid"),
            ClientFrame::Ping
        );
    }

    #[test]
    fn bad_history_requests_and_unknown_actions_are_refused_with_a_reason() {
        let cases = [
            (r#"{"action":"history","after":-1}"#, "non-negative integer"),
            (
                r#"{"action":"history","after":"5"}"#,
                "non-negative integer",
            ),
            (
                r#"{"action":"history","after":1.5}"#,
                "non-negative integer",
            ),
            (r#"{"action":"history","epoch":5}"#, "epoch"),
            (r#"{"action":"history","epoch":"a b"}"#, "epoch"),
            (r#"{"action":"history","epoch":""}"#, "epoch"),
            (r#"{"action":"dance"}"#, "unknown action"),
        ];
        for (body, expected) in cases {
            let err = ClientFrame::parse(Some(body), false).expect_err("refused");
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn malformed_frames_are_refused_with_a_reason() {
        let cases: [(Option<&str>, bool, &str); 8] = [
            (Some("not json"), false, "not valid JSON"),
            (Some(""), false, "empty frame"),
            (None, false, "empty frame"),
            (Some("[1,2]"), false, "JSON object"),
            (Some("\"message\""), false, "JSON object"),
            (Some(r#"{"msg":"hi"}"#), false, "no \"message\""),
            (Some(r#"{"message":42}"#), false, "must be a string"),
            (Some("aGVsbG8="), true, "binary"),
        ];
        for (body, b64, expected) in cases {
            let err = ClientFrame::parse(body, b64).expect_err("frame should be refused");
            assert!(
                err.to_string().contains(expected),
                "{body:?}: {err} should mention {expected:?}"
            );
        }
    }
}

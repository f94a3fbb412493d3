//! The chat's wire format and the identifiers parsed at the edge.
//!
//! Client → server: a text frame `{"message": "<text>"}` (the Django Channels tutorial's format; extra fields
//! are ignored). Server → client: `{"message": "<text>"}` for chat, `{"error": "<reason>"}` for a frame the
//! server refused. Room names and connection ids are parsed once, here, into newtypes: inside the crate they
//! never travel as bare strings.

use std::fmt;

use serde::Serialize;

/// Longest room name, in characters (the tutorial's group names stay under 100).
pub const MAX_ROOM_NAME_CHARS: usize = 100;

/// Largest payload API Gateway's PostToConnection accepts (128 KB); larger data gets 413.
pub const MAX_POST_BYTES: usize = 128 * 1024;

/// Largest text frame API Gateway accepts from a client (32 KB); larger frames close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

/// A validated room name: 1–100 Unicode word characters (letters, digits, underscore), the tutorial's `\w+`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

/// Why a room name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomNameError {
    /// No room was given at all.
    #[error("no room given: connect with ?room=NAME")]
    Missing,
    /// The name is the empty string.
    #[error("room name is empty")]
    Empty,
    /// The name is longer than [`MAX_ROOM_NAME_CHARS`].
    #[error("room name is longer than {MAX_ROOM_NAME_CHARS} characters")]
    TooLong,
    /// The name contains a character that is not a letter, digit or underscore.
    #[error("room name may only contain letters, digits and underscores (found {0:?})")]
    BadCharacter(char),
}

impl RoomName {
    /// Parses a room name with the tutorial's rule (`\w{1,100}`, Unicode-aware like Python's `re`).
    ///
    /// # Errors
    /// [`RoomNameError`] says which part of the rule the name breaks.
    pub fn parse(raw: &str) -> Result<Self, RoomNameError> {
        if raw.is_empty() {
            return Err(RoomNameError::Empty);
        }
        if let Some(bad) = raw.chars().find(|c| !is_word_char(*c)) {
            return Err(RoomNameError::BadCharacter(bad));
        }
        if raw.chars().count() > MAX_ROOM_NAME_CHARS {
            return Err(RoomNameError::TooLong);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Python's `\w` on `str`: alphanumeric in Unicode's sense, or underscore.
fn is_word_char(c: char) -> bool {
    c == '_' || c.is_alphanumeric()
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An API Gateway connection id (e.g. `L0SM9cOFvHcCIhw=`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectionId(String);

/// Why a connection id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionIdError {
    /// The event carries no connection id.
    #[error("event has no requestContext.connectionId")]
    Missing,
    /// Empty, too long, or containing whitespace or control characters.
    #[error("connection id is malformed")]
    Malformed,
}

impl ConnectionId {
    /// Longest id accepted; API Gateway's are 16 characters.
    pub const MAX_LEN: usize = 128;

    /// Parses a connection id: 1–128 visible ASCII characters.
    ///
    /// # Errors
    /// [`ConnectionIdError::Malformed`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, ConnectionIdError> {
        let visible = raw.bytes().all(|b| b.is_ascii_graphic());
        if raw.is_empty() || raw.len() > Self::MAX_LEN || !visible {
            return Err(ConnectionIdError::Malformed);
        }
        Ok(Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A chat frame sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// The chat text, exactly as sent.
    pub message: String,
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
    /// The object has no `message` field.
    #[error("frame has no \"message\" field")]
    NoMessage,
    /// `message` is present but is not a string.
    #[error("\"message\" must be a string")]
    MessageNotString,
    /// The broadcast frame would exceed what PostToConnection accepts.
    #[error("message is too large: the encoded frame would be {0} bytes (limit {MAX_POST_BYTES})")]
    TooLarge(usize),
}

impl ClientFrame {
    /// Parses the body of a `$default` event.
    ///
    /// # Errors
    /// [`FrameError`] names what is wrong with the frame, in words fit to send back to its sender.
    pub fn parse(body: Option<&str>, is_base64: bool) -> Result<Self, FrameError> {
        if is_base64 {
            return Err(FrameError::Binary);
        }
        let body = body.unwrap_or_default();
        if body.trim().is_empty() {
            return Err(FrameError::Empty);
        }
        let value: serde_json::Value = serde_json::from_str(body).map_err(FrameError::NotJson)?;
        let serde_json::Value::Object(mut object) = value else {
            return Err(FrameError::NotAnObject);
        };
        match object.remove("message") {
            None => Err(FrameError::NoMessage),
            Some(serde_json::Value::String(message)) => Ok(Self { message }),
            Some(_) => Err(FrameError::MessageNotString),
        }
    }
}

/// A frame the server sends to clients.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ServerFrame<'a> {
    /// A chat message: `{"message": ...}`, the tutorial's format.
    Message {
        /// The chat text.
        message: &'a str,
    },
    /// A refusal sent to one client only: `{"error": ...}`.
    Error {
        /// Why the frame was refused.
        error: &'a str,
    },
}

impl ServerFrame<'_> {
    /// Encodes the frame once, as the exact bytes every recipient gets.
    pub fn encode(&self) -> bytes::Bytes {
        // Serializing a struct of strings cannot fail: no maps with non-string keys, no I/O.
        serde_json::to_vec(self)
            .map(bytes::Bytes::from)
            .unwrap_or_else(|_| {
                bytes::Bytes::from_static(b"{\"error\":\"internal encoding error\"}")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_follow_the_tutorials_word_rule() {
        for ok in [
            "lobby",
            "room_1",
            "로비",
            "Ünïcödé",
            "_",
            "a1",
            &"x".repeat(100),
        ] {
            assert!(RoomName::parse(ok).is_ok(), "{ok:?} should be accepted");
        }
        assert_eq!(RoomName::parse(""), Err(RoomNameError::Empty));
        assert_eq!(
            RoomName::parse(&"x".repeat(101)),
            Err(RoomNameError::TooLong)
        );
        assert_eq!(
            RoomName::parse("a b"),
            Err(RoomNameError::BadCharacter(' '))
        );
        assert_eq!(
            RoomName::parse("a-b"),
            Err(RoomNameError::BadCharacter('-'))
        );
        assert_eq!(
            RoomName::parse("{tag}"),
            Err(RoomNameError::BadCharacter('{'))
        );
        assert_eq!(
            RoomName::parse("a/b"),
            Err(RoomNameError::BadCharacter('/'))
        );
        assert_eq!(
            RoomName::parse("😀"),
            Err(RoomNameError::BadCharacter('😀'))
        );
    }

    #[test]
    fn room_name_length_counts_characters_not_bytes() {
        assert!(RoomName::parse(&"로".repeat(100)).is_ok());
        assert_eq!(
            RoomName::parse(&"로".repeat(101)),
            Err(RoomNameError::TooLong)
        );
    }

    #[test]
    fn connection_ids_must_be_visible_ascii() {
        assert!(ConnectionId::parse("L0SM9cOFvHcCIhw=").is_ok());
        assert_eq!(ConnectionId::parse(""), Err(ConnectionIdError::Malformed));
        assert_eq!(
            ConnectionId::parse("a b"),
            Err(ConnectionIdError::Malformed)
        );
        assert_eq!(
            ConnectionId::parse(&"a".repeat(129)),
            Err(ConnectionIdError::Malformed)
        );
    }

    #[test]
    fn message_round_trips_byte_exactly() {
        for text in [
            "hello",
            "",
            "quote \" backslash \\ slash /",
            "tab\tnewline\n",
            "로비 😀 ünï",
            "\u{0}\u{1f}",
        ] {
            let body = serde_json::json!({ "message": text }).to_string();
            let frame = ClientFrame::parse(Some(&body), false).expect("valid frame");
            assert_eq!(frame.message, text);
            let out = ServerFrame::Message {
                message: &frame.message,
            }
            .encode();
            let back: serde_json::Value =
                serde_json::from_slice(&out).expect("server frame is JSON");
            assert_eq!(back, serde_json::json!({ "message": text }));
        }
    }

    #[test]
    fn extra_fields_in_a_client_frame_are_ignored() {
        let frame = ClientFrame::parse(Some(r#"{"action":"x","message":"hi","n":1}"#), false)
            .expect("valid");
        assert_eq!(frame.message, "hi");
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

    #[test]
    fn error_frames_are_json_objects_with_an_error_field() {
        let out = ServerFrame::Error {
            error: "bad \"frame\"",
        }
        .encode();
        let back: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(back, serde_json::json!({ "error": "bad \"frame\"" }));
    }
}

//! The chat's wire format and the identifiers parsed at the edge.
//!
//! Client → server ([`ClientFrame`]):
//! * `{"message": "<text>"}`: chat (the Django Channels tutorial's format; extra fields are ignored);
//! * `{"action": "history", "after": <seq>, "epoch": "<epoch>"}`: the retained messages after `after` (both
//!   fields optional: without them, the most recent retained messages);
//! * `{"action": "ping"}`: a heartbeat that also re-asserts the sender's membership;
//! * `{"action": "presence"}`: who is in the room, and a subscription to joins and leaves.
//!
//! Server → client:
//! * `{"message": "<text>", "user": "<name>", "seq": n, "epoch": "<epoch>", "ts": <epoch ms>}` to every member
//!   ([`chat_frame`]; `user` only when the sender connected with a name): the tutorial's frame plus fields, so the
//!   tutorial's page works unchanged;
//! * `{"history": [<chat frames>], "epoch": "<epoch>", "complete": <bool>}` to the one who asked, split into
//!   frames under [`MAX_FRAME_BYTES`] where `complete` rides on the last one only ([`history_frames`]);
//! * `{"pong": <epoch ms>}` and `{"error": "<reason>"}` to one connection only ([`ServerFrame`]);
//! * `{"presence": {"count": n, "members": [<names>]}}` to the one who asked `{"action": "presence"}`, and from
//!   then on `{"joined": <name or null>, "count": n}` / `{"left": …, "count": n}` to it when members come and go.
//!
//! Room names and connection ids are parsed once, here, into newtypes: inside the crate they never travel as bare
//! strings.

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

/// Longest display name, in characters (after normalization and trimming).
pub const MAX_DISPLAY_NAME_CHARS: usize = 32;

/// A person's display name, from `?name=` on the handshake: 1–32 characters in Unicode Normalization Form C,
/// trimmed, with no control or format characters (so nothing invisible, no bidi overrides, no line breaks).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DisplayName(String);

/// Why a display name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisplayNameError {
    /// Nothing left after trimming.
    #[error("name is empty")]
    Empty,
    /// Longer than [`MAX_DISPLAY_NAME_CHARS`].
    #[error("name is longer than {MAX_DISPLAY_NAME_CHARS} characters")]
    TooLong,
    /// A control or format character (line breaks, zero-width and bidi characters, ...).
    #[error("name may not contain control or invisible characters (found U+{:04X})", *.0 as u32)]
    BadCharacter(char),
}

impl DisplayName {
    /// Normalizes (NFC), trims and checks a name.
    ///
    /// # Errors
    /// [`DisplayNameError`] says which rule the name breaks.
    pub fn parse(raw: &str) -> Result<Self, DisplayNameError> {
        use unicode_normalization::UnicodeNormalization as _;
        let normalized: String = raw.nfc().collect();
        let name = normalized.trim();
        if name.is_empty() {
            return Err(DisplayNameError::Empty);
        }
        if let Some(bad) = name.chars().find(|c| c.is_control() || is_format_char(*c)) {
            return Err(DisplayNameError::BadCharacter(bad));
        }
        if name.chars().count() > MAX_DISPLAY_NAME_CHARS {
            return Err(DisplayNameError::TooLong);
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as a JSON string (quotes included).
    pub fn to_json(&self) -> String {
        // Encoding a string cannot fail.
        serde_json::to_string(&self.0).unwrap_or_default()
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Unicode's format characters (general category Cf, Unicode 15.1): invisible characters that change how the
/// text around them is shown. Listed here rather than pulled in with a general-category table.
fn is_format_char(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    )
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

/// A frame sent by a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `{"message": ...}`: a chat message for the room.
    Chat {
        /// The chat text, exactly as sent.
        message: String,
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

/// The name of one room's history. A room's history gets a new epoch (and `seq` restarts at 1) only when the old
/// one was lost, so a client that compares epochs knows whether its `seq` still means anything.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(String);

impl Epoch {
    /// Longest epoch accepted from a client.
    pub const MAX_LEN: usize = 64;

    /// A fresh, random epoch: 16 lowercase hex digits.
    pub fn random() -> Self {
        Self(format!("{:016x}", fastrand::u64(..)))
    }

    /// Parses an epoch: 1–64 ASCII letters, digits, `-` or `_` (what this server makes are hex).
    ///
    /// # Errors
    /// [`FrameError::BadEpoch`] for anything else.
    pub fn parse(raw: &str) -> Result<Self, FrameError> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(FrameError::BadEpoch)
        }
    }

    /// The epoch as text (safe to put between JSON quotes as is).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
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
    /// `epoch` is not an epoch this server could have sent.
    #[error("\"epoch\" must be the epoch string of a chat or history frame")]
    BadEpoch,
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
            Some(Value::String(message)) => Ok(Self::Chat { message }),
            Some(_) => Err(FrameError::MessageNotString),
            None => match object.remove("action") {
                Some(Value::String(action)) => Err(FrameError::UnknownAction(action)),
                _ => Err(FrameError::NoMessage),
            },
        }
    }
}

/// The most a chat frame adds around its JSON-encoded message: `{"message":` … `,"user":` (a name of 32
/// characters, JSON-escaped: up to 6 bytes each) `,"seq":` (20 digits) `,"epoch":"` (64) `","ts":` (20) `}`.
pub const CHAT_FRAME_OVERHEAD: usize = 160 + 10 + 6 * MAX_DISPLAY_NAME_CHARS + 2;

/// The chat frame every member receives: `{"message":<message_json>,"user":<name>,"seq":n,"epoch":"e","ts":t}`,
/// fields in this order, `user` only for a sender with a name. `message_json` is the message already encoded as a
/// JSON string (quotes included). The Redis store's script builds the very same bytes; a test holds the two to it.
pub fn chat_frame(
    message_json: &str,
    user: Option<&DisplayName>,
    seq: u64,
    epoch: &Epoch,
    ts: i64,
) -> String {
    let user = user
        .map(|u| format!(r#","user":{}"#, u.to_json()))
        .unwrap_or_default();
    format!(
        r#"{{"message":{message_json}{user},"seq":{seq},"epoch":"{epoch}","ts":{ts}}}"#,
        epoch = epoch.as_str()
    )
}

/// The answer to a history request, as frames of at most `max_bytes` each (a single chat frame larger than that
/// travels alone), in order; only the last carries `complete`. Always at least one frame.
pub fn history_frames(
    epoch: &Epoch,
    chats: &[String],
    complete: bool,
    max_bytes: usize,
) -> Vec<bytes::Bytes> {
    let head = r#"{"history":["#;
    let tail_more = format!(r#"],"epoch":"{}"}}"#, epoch.as_str());
    let tail_last = format!(r#"],"epoch":"{}","complete":{complete}}}"#, epoch.as_str());
    let mut frames = Vec::new();
    let mut current = String::from(head);
    let mut count = 0;
    for chat in chats {
        let needed = current.len() + usize::from(count > 0) + chat.len() + tail_last.len();
        if count > 0 && needed > max_bytes {
            current.push_str(&tail_more);
            frames.push(bytes::Bytes::from(std::mem::replace(
                &mut current,
                String::from(head),
            )));
            count = 0;
        }
        if count > 0 {
            current.push(',');
        }
        current.push_str(chat);
        count += 1;
    }
    current.push_str(&tail_last);
    frames.push(bytes::Bytes::from(current));
    frames
}

/// A frame the server sends to one connection (chat frames are built by [`chat_frame`]).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ServerFrame<'a> {
    /// A chat message without sequence fields (the unit tests' fan-out frames).
    Message {
        /// The chat text.
        message: &'a str,
    },
    /// A refusal sent to one client only: `{"error": ...}`.
    Error {
        /// Why the frame was refused.
        error: &'a str,
    },
    /// A chat message that did not get through: `{"error": ..., "undelivered": <the text>}`, to its sender.
    Undelivered {
        /// What happened.
        error: &'a str,
        /// The message's text, for the sender to send again.
        undelivered: &'a str,
    },
    /// The answer to a ping: `{"pong": <epoch ms>}`.
    Pong {
        /// The server's clock.
        pong: i64,
    },
    /// The answer to a presence request: `{"presence": {"count": n, "members": [names]}}`.
    Presence {
        /// Who is here.
        presence: PresenceBody<'a>,
    },
    /// To watchers: `{"joined": <name or null>, "count": n}`.
    Joined {
        /// The newcomer's name (`null`: anonymous).
        joined: Option<&'a str>,
        /// Members now.
        count: usize,
    },
    /// To watchers: `{"left": <name or null>, "count": n}`.
    Left {
        /// The leaver's name (`null`: anonymous).
        left: Option<&'a str>,
        /// Members now.
        count: usize,
    },
}

/// The body of a presence answer.
#[derive(Debug, Serialize)]
pub struct PresenceBody<'a> {
    /// Live members, anonymous ones included.
    pub count: usize,
    /// The named members' names (anonymous members are counted, not listed; at most 100).
    pub members: &'a [String],
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
            let ClientFrame::Chat { message } = frame else {
                panic!("{body} is chat")
            };
            assert_eq!(message, text);
            let json = serde_json::to_string(&message).expect("a string encodes");
            let out = chat_frame(
                &json,
                None,
                7,
                &Epoch::parse("e1").expect("epoch"),
                1_700_000_000_000,
            );
            let back: serde_json::Value = serde_json::from_str(&out).expect("server frame is JSON");
            assert_eq!(
                back,
                serde_json::json!({ "message": text, "seq": 7, "epoch": "e1", "ts": 1_700_000_000_000_i64 })
            );
            assert!(out.starts_with(&format!("{{\"message\":{json},")), "{out}");
        }
    }

    #[test]
    fn extra_fields_in_a_client_frame_are_ignored() {
        let frame = ClientFrame::parse(Some(r#"{"action":"x","message":"hi","n":1}"#), false)
            .expect("valid");
        assert_eq!(
            frame,
            ClientFrame::Chat {
                message: "hi".into()
            }
        );
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
    fn history_frames_stay_under_the_limit_in_order_and_only_the_last_says_complete() {
        let epoch = Epoch::parse("abc").expect("epoch");
        let chats: Vec<String> = (1..=50)
            .map(|seq| chat_frame(&format!("\"{}\"", "x".repeat(90)), None, seq, &epoch, 1))
            .collect();

        let frames = history_frames(&epoch, &chats, false, 1024);

        assert!(frames.len() > 1, "{}", frames.len());
        let mut seqs = Vec::new();
        for (i, frame) in frames.iter().enumerate() {
            assert!(frame.len() <= 1024, "frame {i} has {} bytes", frame.len());
            let value: serde_json::Value = serde_json::from_slice(frame).expect("JSON");
            assert_eq!(value["epoch"], "abc");
            let last = i == frames.len() - 1;
            assert_eq!(
                value.get("complete").cloned(),
                last.then_some(serde_json::json!(false))
            );
            for chat in value["history"].as_array().expect("array") {
                seqs.push(chat["seq"].as_u64().expect("seq"));
            }
        }
        assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    }

    #[test]
    fn an_empty_history_is_one_frame_and_an_oversized_chat_travels_alone() {
        let epoch = Epoch::parse("abc").expect("epoch");
        let empty = history_frames(&epoch, &[], true, 1024);
        assert_eq!(
            empty,
            vec![bytes::Bytes::from(
                r#"{"history":[],"epoch":"abc","complete":true}"#
            )]
        );

        let big = chat_frame(&format!("\"{}\"", "y".repeat(2000)), None, 1, &epoch, 1);
        let small = chat_frame("\"hi\"", None, 2, &epoch, 1);
        let frames = history_frames(&epoch, &[big, small], true, 1024);
        assert_eq!(frames.len(), 2);
        assert!(frames[1].len() <= 1024);
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

    #[test]
    fn a_chat_frame_names_its_sender_when_it_has_a_name() {
        let ann = DisplayName::parse("Ann \"the\" <b>").expect("a name");
        let out = chat_frame(
            "\"hi\"",
            Some(&ann),
            3,
            &Epoch::parse("e1").expect("epoch"),
            5,
        );

        let back: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(
            back,
            serde_json::json!({ "message": "hi", "user": "Ann \"the\" <b>", "seq": 3, "epoch": "e1", "ts": 5 })
        );
        assert!(out.starts_with(r#"{"message":"hi","user":"#), "{out}");
    }

    #[test]
    fn display_names_are_normalized_trimmed_and_bounded() {
        // "é" as e + combining acute becomes the single code point U+00E9.
        let name = DisplayName::parse("  Rene\u{301}e  ").expect("valid");
        assert_eq!(name.as_str(), "Ren\u{e9}e");
        assert_eq!(
            DisplayName::parse(&"가".repeat(32)).map(|n| n.as_str().chars().count()),
            Ok(32)
        );
        assert_eq!(
            DisplayName::parse(&"x".repeat(33)),
            Err(DisplayNameError::TooLong)
        );
        assert_eq!(DisplayName::parse(" \t "), Err(DisplayNameError::Empty));
        assert_eq!(DisplayName::parse(""), Err(DisplayNameError::Empty));
    }

    #[test]
    fn display_names_refuse_control_and_invisible_characters() {
        for (raw, bad) in [
            ("ann\nbob", '\n'),
            ("a\u{0}", '\u{0}'),
            ("a\u{200B}b", '\u{200B}'),
            ("evil\u{202E}txt", '\u{202E}'),
            ("\u{FEFF}x", '\u{FEFF}'),
            ("a\u{E0041}", '\u{E0041}'),
        ] {
            assert_eq!(
                DisplayName::parse(raw),
                Err(DisplayNameError::BadCharacter(bad)),
                "{raw:?}"
            );
        }
        let err = DisplayName::parse("a\u{202E}")
            .expect_err("refused")
            .to_string();
        assert!(err.contains("U+202E"), "{err}");
    }
}

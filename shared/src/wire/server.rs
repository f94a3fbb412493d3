//! Frames the server sends: chat frames ([`chat_frame`], built once per message and stored in the history),
//! history answers split under the frame limit ([`history_frames`]), and the frames for one connection
//! ([`ServerFrame`]).

use serde::Serialize;

use super::{DisplayName, Epoch, MAX_DISPLAY_NAME_CHARS, MAX_UID_CHARS, MessageId, Uid};

/// The most a chat frame adds around its JSON-encoded message: `{"message":` … `,"user":` (a name of 32
/// characters, JSON-escaped: up to 6 bytes each) `,"uid":` (255 characters, up to 6 bytes each) `,"seq":`
/// (20 digits) `,"epoch":"` (64) `","ts":` (20) `}`.
pub const CHAT_FRAME_OVERHEAD: usize =
    160 + 10 + 6 * MAX_DISPLAY_NAME_CHARS + 2 + 9 + 6 * MAX_UID_CHARS;

/// The chat frame every member receives:
/// `{"message":<message_json>,"user":<name>,"uid":<uid>,"seq":n,"epoch":"e","ts":t}`, fields in this order,
/// `user` only for a sender with a name and `uid` only for a signed-in one. `message_json` is the message already
/// encoded as a JSON string (quotes included). The Redis store's script builds the very same bytes; a test holds
/// the two to it.
pub fn chat_frame(
    message_json: &str,
    user: Option<&DisplayName>,
    uid: Option<&Uid>,
    seq: u64,
    epoch: &Epoch,
    ts: i64,
) -> String {
    let mut user = user
        .map(|u| format!(r#","user":{}"#, u.to_json()))
        .unwrap_or_default();
    if let Some(uid) = uid {
        user.push_str(&format!(r#","uid":{}"#, uid.to_json()));
    }
    format!(
        r#"{{"message":{message_json}{user},"seq":{seq},"epoch":"{epoch}","ts":{ts}}}"#,
        epoch = epoch.as_str()
    )
}

/// The sender's own copy of chat frame `frame`: the same, with `"id"` (the client's id of the message) last.
pub fn echo_frame(frame: &str, id: &MessageId) -> String {
    let body = frame.strip_suffix('}').unwrap_or(frame);
    // An id holds no character JSON escapes.
    format!(r#"{body},"id":"{}"}}"#, id.as_str())
}

/// The answer to a history request, as frames of at most `max_bytes` each (a single chat frame larger than that
/// travels alone), in order; only the last carries `complete`, and `"more": true` when `more` messages follow
/// than the answer holds. Always at least one frame.
pub fn history_frames(
    epoch: &Epoch,
    chats: &[String],
    complete: bool,
    more: bool,
    max_bytes: usize,
) -> Vec<bytes::Bytes> {
    let head = r#"{"history":["#;
    let tail_more = format!(r#"],"epoch":"{}"}}"#, epoch.as_str());
    let more = if more { r#","more":true"# } else { "" };
    let tail_last = format!(
        r#"],"epoch":"{}","complete":{complete}{more}}}"#,
        epoch.as_str()
    );
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
    /// A refusal sent to one client only: `{"error": ...}`, with `"undelivered": <the text>` when a chat message
    /// did not get through (for the sender to send again), and `"retryAfterMs"` when it must wait first.
    Error {
        /// Why the frame was refused.
        error: &'a str,
        /// The text of the chat message that did not get through.
        #[serde(skip_serializing_if = "Option::is_none")]
        undelivered: Option<&'a str>,
        /// How long to wait before sending again.
        #[serde(rename = "retryAfterMs", skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// The client's id of the chat message this is about.
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a str>,
        /// Whether the message may have been stored after all (the store did not answer in time): send it again
        /// with the same id, which cannot store it twice.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        uncertain: bool,
    },
    /// The answer to a ping: `{"pong": <epoch ms>, "epoch": e, "seq": n}`, the room's head when it has a
    /// history: a reader behind it asks for what it missed.
    Pong {
        /// The server's clock.
        pong: i64,
        /// The room's current history.
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        /// The seq of its newest message.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// The answer to a presence request: `{"presence": {"count": n, "members": [names]}, "epoch": e, "seq": n}`,
    /// with the room's head as in a pong.
    Presence {
        /// Who is here.
        presence: PresenceBody<'a>,
        /// The room's current history.
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        /// The seq of its newest message.
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// To watchers: `{"joined": <name or null>, "uid": <the user's id, signed in>, "count": n}`, and
    /// `"recount": true` when other joins and leaves were merged away (ask presence again in a moment).
    Joined {
        /// The newcomer's name (`null`: anonymous).
        joined: Option<&'a str>,
        /// The newcomer's user id (signed in only).
        #[serde(skip_serializing_if = "Option::is_none")]
        uid: Option<&'a str>,
        /// People now.
        count: usize,
        /// Some announcements were, or may soon be, merged away.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        recount: bool,
    },
    /// To watchers: `{"left": <name or null>, "uid": …, "count": n}`, with `"recount"` as for a join.
    Left {
        /// The leaver's name (`null`: anonymous).
        left: Option<&'a str>,
        /// The leaver's user id (signed in only).
        #[serde(skip_serializing_if = "Option::is_none")]
        uid: Option<&'a str>,
        /// People now.
        count: usize,
        /// Some announcements were, or may soon be, merged away.
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        recount: bool,
    },
}

/// The body of a presence answer: `{"count": n, "members": [names], "users": [{"user", "uid"}]}`.
#[derive(Debug, Serialize)]
pub struct PresenceBody<'a> {
    /// People in the room, anonymous ones included, a signed-in user's tabs counted once.
    pub count: usize,
    /// The named people's names, once each (anonymous members are counted, not listed; at most 100).
    pub members: Vec<&'a str>,
    /// The signed-in people among them, with their ids (left out when there are none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<UserRef<'a>>,
}

/// A signed-in person in a presence answer.
#[derive(Debug, Serialize)]
pub struct UserRef<'a> {
    /// The display name.
    pub user: &'a str,
    /// The user id.
    pub uid: &'a str,
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
    fn history_frames_stay_under_the_limit_in_order_and_only_the_last_says_complete() {
        let epoch = Epoch::parse("abc").expect("epoch");
        let chats: Vec<String> = (1..=50)
            .map(|seq| {
                chat_frame(
                    &format!("\"{}\"", "x".repeat(90)),
                    None,
                    None,
                    seq,
                    &epoch,
                    1,
                )
            })
            .collect();

        let frames = history_frames(&epoch, &chats, false, false, 1024);

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
        let empty = history_frames(&epoch, &[], true, false, 1024);
        assert_eq!(
            empty,
            vec![bytes::Bytes::from(
                r#"{"history":[],"epoch":"abc","complete":true}"#
            )]
        );

        let big = chat_frame(
            &format!("\"{}\"", "y".repeat(2000)),
            None,
            None,
            1,
            &epoch,
            1,
        );
        let small = chat_frame("\"hi\"", None, None, 2, &epoch, 1);
        let frames = history_frames(&epoch, &[big, small], true, true, 1024);
        assert_eq!(frames.len(), 2);
        assert!(frames[1].len() <= 1024);
        assert!(
            frames[1].ends_with(br#""complete":true,"more":true}"#),
            "the last frame says more follow"
        );
        assert!(!frames[0].windows(6).any(|w| w == b"\"more\""));
    }

    #[test]
    fn error_frames_are_json_objects_with_an_error_field() {
        let out = ServerFrame::Error {
            error: "bad \"frame\"",
            undelivered: None,
            retry_after_ms: None,
            id: None,
            uncertain: false,
        }
        .encode();
        let back: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(back, serde_json::json!({ "error": "bad \"frame\"" }));

        let waited = ServerFrame::Error {
            error: "too many",
            undelivered: Some("hi"),
            retry_after_ms: Some(1500),
            id: None,
            uncertain: false,
        }
        .encode();
        assert_eq!(
            waited,
            r#"{"error":"too many","undelivered":"hi","retryAfterMs":1500}"#
        );

        let unsure = ServerFrame::Error {
            error: "maybe",
            undelivered: None,
            retry_after_ms: None,
            id: Some("m-1"),
            uncertain: true,
        }
        .encode();
        assert_eq!(unsure, r#"{"error":"maybe","id":"m-1","uncertain":true}"#);
    }

    #[test]
    fn the_sender_s_echo_is_the_chat_frame_with_its_id_last() {
        let epoch = Epoch::parse("e1").expect("epoch");
        let frame = chat_frame("\"hi\"", None, None, 3, &epoch, 7);
        let id = MessageId::parse("a-1").expect("an id");

        assert_eq!(
            echo_frame(&frame, &id),
            r#"{"message":"hi","seq":3,"epoch":"e1","ts":7,"id":"a-1"}"#
        );
    }

    #[test]
    fn a_chat_frame_names_its_sender_when_it_has_a_name() {
        let ann = DisplayName::parse("Ann \"the\" <b>").expect("a name");
        let uid = Uid::parse("u-\"1\"").expect("a uid");
        let out = chat_frame(
            "\"hi\"",
            Some(&ann),
            None,
            3,
            &Epoch::parse("e1").expect("epoch"),
            5,
        );
        let signed_in = chat_frame(
            "\"hi\"",
            Some(&ann),
            Some(&uid),
            3,
            &Epoch::parse("e1").expect("epoch"),
            5,
        );

        let back: serde_json::Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(
            back,
            serde_json::json!({ "message": "hi", "user": "Ann \"the\" <b>", "seq": 3, "epoch": "e1", "ts": 5 })
        );
        let back: serde_json::Value = serde_json::from_str(&signed_in).expect("JSON");
        assert_eq!(back["uid"], "u-\"1\"");
        assert!(
            signed_in.contains(r#""user":"Ann \"the\" <b>","uid":"u-\"1\"","seq":3"#),
            "{signed_in}"
        );
        assert!(out.starts_with(r#"{"message":"hi","user":"#), "{out}");
    }
}

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
//! Room names and connection ids are parsed once, at the edge, into newtypes ([`ids`]): inside the crate they
//! never travel as bare strings. Client frames are [`client`], server frames [`server`].

mod client;
mod ids;
mod server;

pub use self::client::{ClientFrame, FrameError, MessageId};
pub use self::ids::{
    ConnectionId, ConnectionIdError, DisplayName, DisplayNameError, Epoch, MAX_DISPLAY_NAME_CHARS,
    MAX_ROOM_NAME_CHARS, MAX_UID_CHARS, RoomName, RoomNameError, SourceAddress, Uid,
};
pub use self::server::{
    CHAT_FRAME_OVERHEAD, PresenceBody, ServerFrame, UserRef, chat_frame, echo_frame, history_frames,
};

/// Largest payload API Gateway's PostToConnection accepts (128 KB); larger data gets 413.
pub const MAX_POST_BYTES: usize = 128 * 1024;

/// Largest text frame API Gateway accepts from a client (32 KB); larger frames close the socket with 1009.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

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
            let ClientFrame::Chat { message, .. } = frame else {
                panic!("{body} is chat")
            };
            assert_eq!(message, text);
            let json = serde_json::to_string(&message).expect("a string encodes");
            let out = chat_frame(
                &json,
                None,
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
}

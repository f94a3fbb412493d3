//! The identifiers parsed at the edge: room names and display names from the handshake, connection ids from the
//! event, epochs from history requests.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};

use super::FrameError;

/// Longest room name, in characters (the tutorial's group names stay under 100).
pub const MAX_ROOM_NAME_CHARS: usize = 100;

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
    /// Spaces around a name that should have been trimmed already.
    #[error("name has spaces around it")]
    Untrimmed,
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
        Self::check(normalized.trim())
    }

    /// A name the authorizer already parsed, as API Gateway carries it to every later event in
    /// `requestContext.authorizer` (which only the authorizer writes, never a client): checked again, but not
    /// normalized again, so the functions that only read names do not link Unicode's normalization tables.
    ///
    /// # Errors
    /// [`DisplayNameError`] says which rule the name breaks.
    pub fn parse_normalized(name: &str) -> Result<Self, DisplayNameError> {
        if name.trim() != name {
            return Err(DisplayNameError::Untrimmed);
        }
        Self::check(name)
    }

    fn check(name: &str) -> Result<Self, DisplayNameError> {
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

/// The address a connection comes from (`requestContext.identity.sourceIp`), in its canonical form, and the block
/// the handshake limits count it in: an IPv4 address alone, an IPv6 address with the rest of its /64 (one
/// subscriber's network: whoever holds one address of it can use any of its 2^64).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceAddress {
    ip: String,
    block: String,
}

impl SourceAddress {
    /// Parses an IPv4 or IPv6 address (an IPv4-mapped IPv6 address is its IPv4 address); `None` for anything else.
    pub fn parse(raw: &str) -> Option<Self> {
        let ip = raw.trim().parse::<IpAddr>().ok()?.to_canonical();
        let block = match ip {
            IpAddr::V4(v4) => v4.to_string(),
            IpAddr::V6(v6) => {
                let network = u128::from(v6) & !(u128::from(u64::MAX));
                format!("{}/64", Ipv6Addr::from(network))
            }
        };
        Some(Self {
            ip: ip.to_string(),
            block,
        })
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.ip
    }

    /// What the limits count by: the IPv4 address, or the IPv6 address's /64 (`2001:db8:1:2::/64`).
    pub fn block(&self) -> &str {
        &self.block
    }
}

/// A signed-in user's stable id: the token's `sub` (1–255 characters, none of them control characters). Pages
/// recognise a person by it across tabs and names.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uid(String);

/// The longest [`Uid`]: OpenID Connect's limit on `sub`.
pub const MAX_UID_CHARS: usize = 255;

impl Uid {
    /// Parses a user id; `None` when it is empty, too long, or holds a control character.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = !raw.is_empty()
            && raw.chars().count() <= MAX_UID_CHARS
            && !raw.chars().any(char::is_control);
        ok.then(|| Self(raw.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a JSON string, quotes included.
    pub fn to_json(&self) -> String {
        serde_json::Value::String(self.0.clone()).to_string()
    }
}

impl fmt::Display for Uid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for SourceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.ip)
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

    #[test]
    fn a_name_from_the_authorizer_context_is_checked_again_but_not_renormalized() {
        let parsed = DisplayName::parse("  Rene\u{301}e  ").expect("valid");

        assert_eq!(DisplayName::parse_normalized(parsed.as_str()), Ok(parsed));
        assert_eq!(
            DisplayName::parse_normalized(" Ann"),
            Err(DisplayNameError::Untrimmed)
        );
        assert_eq!(
            DisplayName::parse_normalized("a\u{202E}b"),
            Err(DisplayNameError::BadCharacter('\u{202E}'))
        );
        assert_eq!(
            DisplayName::parse_normalized(&"x".repeat(33)),
            Err(DisplayNameError::TooLong)
        );
        assert_eq!(
            DisplayName::parse_normalized(""),
            Err(DisplayNameError::Empty)
        );
    }

    #[test]
    fn a_source_address_is_an_ip_in_its_canonical_form() {
        assert_eq!(
            SourceAddress::parse("2001:DB8:0::1").map(|a| a.to_string()),
            Some("2001:db8::1".to_owned())
        );
        assert_eq!(
            SourceAddress::parse(" 203.0.113.9 ").map(|a| a.to_string()),
            Some("203.0.113.9".to_owned())
        );
        assert_eq!(SourceAddress::parse("203.0.113.9, 10.0.0.1"), None);
        assert_eq!(SourceAddress::parse("{x}"), None);
        assert_eq!(SourceAddress::parse(""), None);
    }

    #[test]
    fn an_ipv6_address_counts_with_its_64_and_an_ipv4_mapped_one_as_its_ipv4_address() {
        let block = |raw: &str| SourceAddress::parse(raw).map(|a| a.block().to_owned());
        assert_eq!(
            block("2001:db8:1:2:aaaa:bbbb:cccc:dddd"),
            Some("2001:db8:1:2::/64".to_owned())
        );
        assert_eq!(block("2001:db8:1:2::1"), block("2001:db8:1:2:ffff::9"));
        assert_ne!(block("2001:db8:1:2::1"), block("2001:db8:1:3::1"));
        assert_eq!(block("203.0.113.9"), Some("203.0.113.9".to_owned()));
        assert_ne!(block("203.0.113.9"), block("203.0.113.10"));
        let mapped = SourceAddress::parse("::ffff:203.0.113.9").expect("an address");
        assert_eq!(
            (mapped.as_str(), mapped.block()),
            ("203.0.113.9", "203.0.113.9")
        );
    }
}

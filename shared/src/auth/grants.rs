//! The rooms a token lets its user join ([`crate::config::AUTH_ROOMS_CLAIM`]): room names, or prefixes ending in
//! `*` (`team_*`). Without the claim, any room.

use serde_json::Value;

use crate::wire::RoomName;

/// Which rooms a user may join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoomGrants {
    /// Any room (the token has no rooms claim).
    Any,
    /// Only these; none at all when the claim is empty or unusable.
    Only(Vec<Grant>),
}

/// One entry of the claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// This room.
    Room(RoomName),
    /// Every room whose name starts with this (`team_*` → `team_`; `*` alone: every room).
    Prefix(String),
}

impl RoomGrants {
    /// The grants a claim's value makes: a list of strings, or one string of entries separated by commas or
    /// spaces (a Cognito custom attribute is a string). Any other value grants nothing: a claim that is there but
    /// unreadable must not open every room. Entries that are neither a room name nor a prefix are ignored.
    pub fn from_claim(value: Option<&Value>) -> Self {
        let entries: Vec<&str> = match value {
            None => return Self::Any,
            Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).collect(),
            Some(Value::String(list)) => list
                .split(|c: char| c == ',' || c.is_whitespace())
                .collect(),
            Some(_) => Vec::new(),
        };
        Self::Only(
            entries
                .into_iter()
                .map(str::trim)
                .filter_map(|entry| match entry.strip_suffix('*') {
                    Some(prefix) if !prefix.contains('*') => Some(Grant::Prefix(prefix.to_owned())),
                    Some(_) => None,
                    None => RoomName::parse(entry).ok().map(Grant::Room),
                })
                .collect(),
        )
    }

    /// Whether `room` may be joined.
    pub fn allows(&self, room: &RoomName) -> bool {
        match self {
            Self::Any => true,
            Self::Only(grants) => grants.iter().any(|grant| match grant {
                Grant::Room(name) => name == room,
                Grant::Prefix(prefix) => room.as_str().starts_with(prefix.as_str()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::parse(name).expect("room")
    }

    #[test]
    fn without_the_claim_every_room_is_open() {
        assert!(RoomGrants::from_claim(None).allows(&room("lobby")));
    }

    #[test]
    fn names_and_prefixes_grant_exactly_their_rooms() {
        let grants = RoomGrants::from_claim(Some(&json!(["lobby", "team_*", "bad name", "a*b*"])));

        assert!(grants.allows(&room("lobby")));
        assert!(grants.allows(&room("team_red")));
        assert!(grants.allows(&room("team_")));
        assert!(!grants.allows(&room("lobby2")));
        assert!(!grants.allows(&room("teams")));
        assert!(!grants.allows(&room("ab")));
    }

    #[test]
    fn a_string_claim_lists_entries_separated_by_commas_or_spaces() {
        let grants = RoomGrants::from_claim(Some(&json!("lobby, ops_* extra")));

        assert!(grants.allows(&room("lobby")));
        assert!(grants.allows(&room("ops_night")));
        assert!(grants.allows(&room("extra")));
        assert!(!grants.allows(&room("other")));
    }

    #[test]
    fn an_empty_or_unreadable_claim_opens_nothing_and_a_lone_star_opens_everything() {
        for closed in [
            json!([]),
            json!(""),
            json!(42),
            json!({ "rooms": "lobby" }),
            json!(null),
        ] {
            assert!(
                !RoomGrants::from_claim(Some(&closed)).allows(&room("lobby")),
                "{closed}"
            );
        }
        assert!(RoomGrants::from_claim(Some(&json!(["*"]))).allows(&room("anything")));
    }
}

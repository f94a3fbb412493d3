//! A verified token's claims, checked against the settings: issuer, audience, time, subject, and made into the
//! [`Identity`] the chat uses.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::grants::RoomGrants;
use super::{AuthError, Identity};
use crate::wire::{DisplayName, MAX_DISPLAY_NAME_CHARS, Uid};

/// What is read from a token's payload.
#[derive(Debug, Deserialize)]
pub struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Audience>,
    exp: Option<f64>,
    nbf: Option<f64>,
    token_use: Option<String>,
    client_id: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    #[serde(rename = "cognito:username")]
    cognito_username: Option<String>,
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// `aud`: one audience or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

/// What the claims must agree with.
pub struct Expected<'a> {
    /// `iss`, exactly.
    pub issuer: &'a str,
    /// In `aud`; for a Cognito access token (no `aud`, `token_use: access`), its `client_id`.
    pub audience: &'a str,
    /// The claim listing the rooms the user may join.
    pub rooms_claim: &'a str,
    /// How far `exp` and `nbf` may be off, in seconds.
    pub leeway: i64,
}

impl Claims {
    /// The identity these claims make, at `now` (epoch seconds), or why they make none.
    ///
    /// # Errors
    /// [`AuthError`] naming the first check that fails.
    pub fn check(self, expected: &Expected<'_>, now: i64) -> Result<Identity, AuthError> {
        if self.iss.as_deref() != Some(expected.issuer) {
            return Err(AuthError::WrongIssuer);
        }
        let audience_ok = match &self.aud {
            Some(Audience::One(aud)) => aud == expected.audience,
            Some(Audience::Many(auds)) => auds.iter().any(|a| a == expected.audience),
            None => {
                self.token_use.as_deref() == Some("access")
                    && self.client_id.as_deref() == Some(expected.audience)
            }
        };
        if !audience_ok {
            return Err(AuthError::WrongAudience);
        }
        let exp = self.exp.ok_or(AuthError::Malformed("no exp"))?;
        let exp = exp.floor() as i64;
        if now > exp.saturating_add(expected.leeway) {
            return Err(AuthError::Expired);
        }
        if self
            .nbf
            .is_some_and(|nbf| now.saturating_add(expected.leeway) < nbf.ceil() as i64)
        {
            return Err(AuthError::NotYetValid);
        }
        let uid = self
            .sub
            .as_deref()
            .and_then(Uid::parse)
            .ok_or(AuthError::Malformed("no usable sub"))?;
        let name = [
            self.name.as_deref(),
            self.preferred_username.as_deref(),
            self.cognito_username.as_deref(),
            Some(uid.as_str()),
        ]
        .into_iter()
        .flatten()
        .find_map(display_name)
        .ok_or(AuthError::Malformed("no usable name"))?;
        Ok(Identity {
            rooms: RoomGrants::from_claim(self.other.get(expected.rooms_claim)),
            uid,
            name,
            expires_at: exp,
        })
    }
}

/// A claim as a display name: normalized, cut to the longest name allowed, and checked like `?name=`.
fn display_name(claim: &str) -> Option<DisplayName> {
    let cut: String = claim.trim().chars().take(MAX_DISPLAY_NAME_CHARS).collect();
    DisplayName::parse(&cut).ok()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://id.example",
            audience: "app",
            rooms_claim: "rooms",
            leeway: 60,
        }
    }

    fn check(claims: Value) -> Result<Identity, AuthError> {
        serde_json::from_value::<Claims>(claims)
            .expect("claims")
            .check(&expected(), NOW)
    }

    fn valid() -> Value {
        json!({ "iss": "https://id.example", "aud": "app", "sub": "u-1", "exp": NOW + 300, "name": "Ann" })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut claims = valid();
        claims[field] = value;
        claims
    }

    #[test]
    fn a_valid_token_names_its_user_by_sub_and_by_name() {
        let who = check(valid()).expect("valid");

        assert_eq!((who.uid.as_str(), who.name.as_str()), ("u-1", "Ann"));
        assert_eq!(who.expires_at, NOW + 300);
        assert_eq!(who.rooms, RoomGrants::Any);
    }

    #[test]
    fn issuer_audience_and_time_are_each_checked_with_a_minute_of_leeway() {
        assert!(matches!(
            check(with("iss", json!("https://id.example/"))),
            Err(AuthError::WrongIssuer)
        ));
        assert!(matches!(
            check(with("aud", json!("other"))),
            Err(AuthError::WrongAudience)
        ));
        assert!(check(with("aud", json!(["other", "app"]))).is_ok());
        assert!(
            check(with("exp", json!(NOW - 59))).is_ok(),
            "within the leeway"
        );
        assert!(matches!(
            check(with("exp", json!(NOW - 61))),
            Err(AuthError::Expired)
        ));
        assert!(check(with("nbf", json!(NOW + 59))).is_ok());
        assert!(matches!(
            check(with("nbf", json!(NOW + 61))),
            Err(AuthError::NotYetValid)
        ));
        let mut no_exp = valid();
        no_exp.as_object_mut().expect("object").remove("exp");
        assert!(matches!(check(no_exp), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn a_cognito_access_token_has_its_audience_in_client_id() {
        let access = json!({
            "iss": "https://id.example", "sub": "u-2", "exp": NOW + 60, "token_use": "access",
            "client_id": "app", "username": "bob", "cognito:username": "bob"
        });
        let other_client = json!({
            "iss": "https://id.example", "sub": "u-2", "exp": NOW + 60, "token_use": "access", "client_id": "x"
        });
        let id_token_without_aud = json!({
            "iss": "https://id.example", "sub": "u-2", "exp": NOW + 60, "token_use": "id", "client_id": "app"
        });

        assert_eq!(check(access).expect("valid").name.as_str(), "bob");
        assert!(matches!(check(other_client), Err(AuthError::WrongAudience)));
        assert!(matches!(
            check(id_token_without_aud),
            Err(AuthError::WrongAudience)
        ));
    }

    #[test]
    fn the_name_falls_back_from_name_to_usernames_to_sub_and_is_cut_to_32_characters() {
        let mut claims = with("name", json!("\u{202E}evil"));
        claims["preferred_username"] = json!("ann.smith");
        assert_eq!(check(claims).expect("valid").name.as_str(), "ann.smith");

        let mut bare = valid();
        bare.as_object_mut().expect("object").remove("name");
        bare["sub"] = json!("3f6c0a2e-9d1b-4c55-8a77-0c2d1e4f5a6b");
        let who = check(bare).expect("valid");
        assert_eq!(who.name.as_str(), "3f6c0a2e-9d1b-4c55-8a77-0c2d1e4f");
        assert_eq!(who.uid.as_str(), "3f6c0a2e-9d1b-4c55-8a77-0c2d1e4f5a6b");

        assert!(matches!(
            check(with("sub", json!(""))),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn the_rooms_claim_is_read_by_its_configured_name() {
        let who = check(with("rooms", json!(["team_*"]))).expect("valid");

        assert!(
            !who.rooms
                .allows(&crate::wire::RoomName::parse("lobby").expect("room"))
        );
        assert!(
            who.rooms
                .allows(&crate::wire::RoomName::parse("team_a").expect("room"))
        );
    }
}

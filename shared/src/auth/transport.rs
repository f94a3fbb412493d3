//! How a token travels on the handshake. Browsers cannot set headers on a WebSocket, so a page offers two
//! subprotocols, `Sec-WebSocket-Protocol: wschat, <jwt>`, and `$connect` selects [`SUBPROTOCOL`]; other clients
//! may send `?token=<jwt>` instead. The subprotocol is preferred: query strings end up in access logs, proxies'
//! logs and browser history, headers do not.

/// The subprotocol a page offers next to its token, and `$connect` selects.
pub const SUBPROTOCOL: &str = "wschat";

/// A token as it arrived: its `Debug` never shows it, so no log line can carry it by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// The token's text, for the verifier.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The header, as the client sent it (`Sec-WebSocket-Protocol`), looked up case-insensitively in `headers`.
pub fn protocols_header<'h>(
    headers: impl IntoIterator<Item = (&'h str, &'h str)>,
) -> Option<&'h str> {
    headers
        .into_iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("sec-websocket-protocol"))
        .map(|(_, value)| value)
}

/// Whether the client offered [`SUBPROTOCOL`] (then `$connect` must select it, or a browser drops the socket).
pub fn offers_subprotocol(protocols: Option<&str>) -> bool {
    protocols.is_some_and(|list| list.split(',').any(|p| p.trim() == SUBPROTOCOL))
}

/// The token of a handshake: the offered subprotocol shaped like a JWT (three dot-separated parts), else the
/// `token` query parameter.
pub fn token(protocols: Option<&str>, query_token: Option<&str>) -> Option<Token> {
    protocols
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .find(|p| p.split('.').count() == 3)
        .or(query_token.map(str::trim))
        .filter(|t| !t.is_empty())
        .map(|t| Token(t.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_rides_as_a_subprotocol_or_in_the_query_and_the_header_wins() {
        let header = protocols_header([
            ("Host", "x"),
            ("sec-WebSocket-Protocol", "wschat, aaa.bbb.ccc"),
        ]);

        assert_eq!(header, Some("wschat, aaa.bbb.ccc"));
        assert!(offers_subprotocol(header));
        let text = |t: Option<Token>| t.map(|t| t.as_str().to_owned());
        assert_eq!(
            text(token(header, Some("q.q.q"))).as_deref(),
            Some("aaa.bbb.ccc")
        );
        assert_eq!(text(token(None, Some(" q.q.q "))).as_deref(), Some("q.q.q"));
        assert_eq!(token(Some("wschat"), None), None);
        assert_eq!(token(Some("chat, v2"), Some("")), None);
        assert_eq!(
            format!("{:?}", token(header, None)),
            "Some(Token(<redacted>))"
        );
        assert!(!offers_subprotocol(Some("chat, aaa.bbb.ccc")));
        assert!(!offers_subprotocol(None));
    }
}

//! How a token travels on the handshake. Browsers cannot set headers on a WebSocket, so a page offers two
//! subprotocols, `Sec-WebSocket-Protocol: wschat, <jwt>`, and `$connect` selects [`SUBPROTOCOL`]; other clients
//! may send `?token=<jwt>` instead. The subprotocol is preferred: query strings end up in access logs, proxies'
//! logs and browser history, headers do not.

/// The subprotocol a page offers next to its token, and `$connect` selects.
pub const SUBPROTOCOL: &str = "wschat";

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
pub fn token<'a>(protocols: Option<&'a str>, query_token: Option<&'a str>) -> Option<&'a str> {
    protocols
        .into_iter()
        .flat_map(|list| list.split(','))
        .map(str::trim)
        .find(|p| p.split('.').count() == 3)
        .or(query_token.map(str::trim))
        .filter(|t| !t.is_empty())
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
        assert_eq!(token(header, Some("q.q.q")), Some("aaa.bbb.ccc"));
        assert_eq!(token(None, Some(" q.q.q ")), Some("q.q.q"));
        assert_eq!(token(Some("wschat"), None), None);
        assert_eq!(token(Some("chat, v2"), Some("")), None);
        assert!(!offers_subprotocol(Some("chat, aaa.bbb.ccc")));
        assert!(!offers_subprotocol(None));
    }
}

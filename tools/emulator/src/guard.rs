//! What a web page in the developer's browser could forge against the emulator, refused before any route runs.
//!
//! * **A foreign `Host`** (421): a page on `evil.example` whose name is made to resolve to 127.0.0.1 (DNS
//!   rebinding) reaches the emulator as the same origin as itself, so it could read and drive everything here.
//!   Only the address the emulator serves on is answered (any IP literal when it listens on every address),
//!   `localhost` when that address is loopback, and the names given with `--allow-host`.
//! * **A `POST /_emulator/…` that is not JSON** (415): `fetch(url, {method: "POST", mode: "no-cors"})` from
//!   any page sends `text/plain` without asking; a JSON body needs a CORS preflight, which the emulator never
//!   allows. And one **from another origin** (403): a browser names the page's origin in `Origin` (and says
//!   `Sec-Fetch-Site: cross-site`); a tool sends neither.
//!
//! `/@connections` is left as API Gateway has it (signed requests, no browser involved), and so are the
//! WebSocket handshakes: their `Origin` is `$connect`'s to judge (`ALLOWED_ORIGINS`), as on AWS.

use std::net::IpAddr;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// The middleware: the request goes on, or is refused with why.
pub(crate) async fn refuse_forgeries(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match refusal(&state, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// Why `request` is refused, if it is.
fn refusal(state: &AppState, request: &Request) -> Option<Response> {
    let headers = request.headers();
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return Some(refuse(StatusCode::MISDIRECTED_REQUEST, "no Host header"));
    };
    if !host_allowed(host, state.addr.ip(), &state.options.allowed_hosts) {
        tracing::warn!(target: "apigw", host, "request refused: foreign Host");
        return Some(refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "the emulator answers only at its own address (--allow-host NAME adds a name)",
        ));
    }
    if request.method() == Method::POST && request.uri().path().starts_with("/_emulator/") {
        if !is_json(headers) {
            return Some(refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send Content-Type: application/json",
            ));
        }
        if !same_origin(headers, host) {
            tracing::warn!(target: "apigw", path = request.uri().path(), "request refused: another origin");
            return Some(refuse(StatusCode::FORBIDDEN, "not from another origin"));
        }
    }
    None
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

/// Whether `host` (a `Host` header: a name or address, maybe with a port) names the emulator at `ip`.
fn host_allowed(host: &str, ip: IpAddr, allowed: &[String]) -> bool {
    let name = host_name(host);
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(name)) {
        return true;
    }
    match name
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        Ok(asked) => {
            ip.is_unspecified() || asked == ip || (ip.is_loopback() && asked.is_loopback())
        }
        Err(_) => ip.is_loopback() && name.eq_ignore_ascii_case("localhost"),
    }
}

/// The host part of a `Host` header: `[::1]:3000` → `[::1]`, `127.0.0.1:3000` → `127.0.0.1`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// No `Origin` (a tool), or the emulator's own; and no `Sec-Fetch-Site` saying another site sent it.
fn same_origin(headers: &HeaderMap, host: &str) -> bool {
    let origin_ok = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|origin| {
            origin.eq_ignore_ascii_case(&format!("http://{host}"))
                || origin.eq_ignore_ascii_case(&format!("https://{host}"))
        });
    let site_ok = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_none_or(|site| matches!(site, "same-origin" | "none"));
    origin_ok && site_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn only_the_served_address_localhost_on_loopback_and_allowed_names_are_answered() {
        let loopback = ip("127.0.0.1");

        assert!(host_allowed("127.0.0.1:3000", loopback, &[]));
        assert!(host_allowed("localhost:3000", loopback, &[]));
        assert!(host_allowed("LOCALHOST", loopback, &[]));
        assert!(host_allowed("[::1]:3000", loopback, &[]));
        assert!(!host_allowed("evil.example:3000", loopback, &[]));
        assert!(!host_allowed("127.0.0.1.nip.io:3000", loopback, &[]));
        assert!(!host_allowed("192.168.1.20:3000", loopback, &[]));
        assert!(host_allowed(
            "chat.test:3000",
            loopback,
            &["chat.test".to_owned()]
        ));

        let everywhere = ip("0.0.0.0");
        assert!(host_allowed("192.168.1.20:3000", everywhere, &[]));
        assert!(!host_allowed("localhost:3000", everywhere, &[]));
        assert!(!host_allowed("evil.example", everywhere, &[]));
    }

    #[test]
    fn json_is_json_with_or_without_a_charset_and_text_is_not() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, value.parse().expect("value"));
            headers
        };

        assert!(is_json(&with("application/json")));
        assert!(is_json(&with("application/json; charset=utf-8")));
        assert!(!is_json(&with("text/plain")));
        assert!(!is_json(&with("application/x-www-form-urlencoded")));
        assert!(!is_json(&HeaderMap::new()));
    }

    #[test]
    fn a_request_naming_another_origin_or_site_is_not_same_origin() {
        let with = |pairs: &[(&'static str, &str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().expect("value"));
            }
            headers
        };
        let host = "127.0.0.1:3000";

        assert!(same_origin(&with(&[]), host), "a tool sends neither");
        assert!(same_origin(
            &with(&[
                ("origin", "http://127.0.0.1:3000"),
                ("sec-fetch-site", "same-origin")
            ]),
            host
        ));
        assert!(!same_origin(
            &with(&[("origin", "https://evil.example")]),
            host
        ));
        assert!(!same_origin(&with(&[("origin", "null")]), host));
        assert!(!same_origin(
            &with(&[("sec-fetch-site", "cross-site")]),
            host
        ));
    }
}

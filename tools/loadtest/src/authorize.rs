//! `wschat-loadtest authorize`: what sign-in costs. Against an emulator serving its development provider with
//! functions that trust it (`--oidc-provider`; in Lambda mode the sign-in stack of `lambda-stack.sh`):
//!
//! * a key of this tool's own is added to the provider's key set, and every token is signed with it;
//! * `--count` WebSocket handshakes one after another, each with a fresh token as the `wschat` subprotocol: the
//!   time from the request to the 101 (the authorizer and `$connect`), p50 and p99, after a warm-up;
//! * with `--invoke-url` (the functions' Lambda Invoke API), as many invocations of the authorizer alone;
//! * the CPU of one verification in this process: the shared verifier, keys cached, the same tokens.
//!
//! Bounded in count and time; loopback only.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use chat_shared::auth::Verifier;
use chat_shared::config::{AuthConfig, Config};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use wschat_emulator::oidc::{DEV_CLIENT_ID, SigningKey};

/// `authorize` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthorizeArgs {
    /// The emulator, `http://127.0.0.1:PORT` (loopback only), started with `--oidc-provider`.
    #[arg(long)]
    pub emulator: String,
    /// The functions' Lambda Invoke API (`http://127.0.0.1:PORT`), to time the authorizer alone.
    #[arg(long)]
    pub invoke_url: Option<String>,
    /// Handshakes (and invocations) to time, after 10 to warm up (at most 10,000).
    #[arg(long, default_value_t = 200)]
    pub count: usize,
}

/// What one run measured (milliseconds, and microseconds of CPU).
#[derive(Debug, Clone, Copy)]
pub struct AuthorizeResult {
    /// A whole signed-in handshake: p50, p99.
    pub handshake_ms: (f64, f64),
    /// The authorizer alone through the Invoke API: p50, p99.
    pub authorizer_ms: Option<(f64, f64)>,
    /// CPU of one verification with the keys cached.
    pub verify_cpu_us: f64,
}

const WARM_UP: usize = 10;

/// Runs the measurement and prints one line per figure.
///
/// # Errors
/// When the target is not on loopback, has no provider, or refuses a signed-in handshake.
pub async fn run(args: &AuthorizeArgs) -> anyhow::Result<AuthorizeResult> {
    let base = args.emulator.trim_end_matches('/');
    if !base.starts_with("http://127.0.0.1:") {
        bail!("authorize only runs against loopback: {base}");
    }
    let count = args.count.clamp(1, 10_000);
    let issuer = format!("{base}/oidc");
    let key = SigningKey::generate(&format!("bench-{:08x}", fastrand::u32(..)));
    let (status, _) = request(
        "POST",
        &format!("{base}/_emulator/oidc/keys"),
        key.jwk().to_string(),
    )
    .await?;
    if status != 204 {
        bail!(
            "the emulator at {base} does not take keys ({status}): is it running with --oidc-provider?"
        );
    }
    let token = |n: usize| {
        let now = chat_shared::handlers::now_ms() / 1000;
        key.sign(&json!({
            "iss": issuer, "aud": DEV_CLIENT_ID, "sub": format!("bench-{n}"), "name": format!("Bench {n}"),
            "iat": now, "exp": now + 600,
        }))
    };
    let tokens: Vec<String> = (0..count + WARM_UP).map(token).collect();

    let ws = format!(
        "{}/local?room=authorize_bench",
        base.replacen("http:", "ws:", 1)
    );
    let mut handshakes = Vec::with_capacity(count);
    for (n, token) in tokens.iter().enumerate() {
        let took = handshake(&ws, token).await?;
        if n >= WARM_UP {
            handshakes.push(took);
        }
    }
    let handshake_ms = percentiles(&mut handshakes);

    let authorizer_ms = match &args.invoke_url {
        Some(invoke) => {
            let url = format!(
                "{}/2015-03-31/functions/ws-authorize/invocations",
                invoke.trim_end_matches('/')
            );
            let mut times = Vec::with_capacity(count);
            for (n, token) in tokens.iter().enumerate() {
                let event = json!({
                    "type": "REQUEST",
                    "methodArn": "arn:aws:execute-api:us-east-1:000000000000:local/local/$connect",
                    "headers": { "Sec-WebSocket-Protocol": format!("wschat, {token}") },
                    "queryStringParameters": { "room": "authorize_bench" },
                    "requestContext": { "connectionId": "benchConn0000A=", "routeKey": "$connect", "eventType": "CONNECT" }
                });
                let started = Instant::now();
                let (status, body) = request("POST", &url, event.to_string()).await?;
                let took = started.elapsed();
                let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
                if status != 200
                    || answer.pointer("/policyDocument/Statement/0/Effect") != Some(&json!("Allow"))
                {
                    bail!("the authorizer did not allow a valid token ({status}): {answer}");
                }
                if n >= WARM_UP {
                    times.push(took);
                }
            }
            Some(percentiles(&mut times))
        }
        None => None,
    };

    let result = AuthorizeResult {
        handshake_ms,
        authorizer_ms,
        verify_cpu_us: verify_cpu(&issuer, &tokens).await?,
    };
    print!("{}", lines(&result, count));
    Ok(result)
}

/// The figures, a line each.
fn lines(r: &AuthorizeResult, count: usize) -> String {
    let mut out = format!(
        "signed-in handshake (authorizer + $connect): p50 {:.2} ms, p99 {:.2} ms, of {count}\n",
        r.handshake_ms.0, r.handshake_ms.1
    );
    if let Some((p50, p99)) = r.authorizer_ms {
        out.push_str(&format!(
            "authorizer alone (Lambda Invoke API): p50 {p50:.2} ms, p99 {p99:.2} ms, of {count}\n"
        ));
    }
    out.push_str(&format!(
        "one verification in process, keys cached: {:.1} µs of CPU\n",
        r.verify_cpu_us
    ));
    out
}

/// One signed-in handshake: the time to the 101; the socket is closed after.
async fn handshake(url: &str, token: &str) -> anyhow::Result<Duration> {
    let mut request = url.into_client_request()?;
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        format!("wschat, {token}").parse()?,
    );
    let started = Instant::now();
    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(10),
        tokio_tungstenite::connect_async(request),
    )
    .await
    .context("the handshake timed out")?
    .context("a signed-in handshake was refused")?;
    let took = started.elapsed();
    let _ = ws.close(None).await;
    Ok(took)
}

/// The CPU (µs) of one `Verifier::verify` of `tokens`, the keys fetched once beforehand.
async fn verify_cpu(issuer: &str, tokens: &[String]) -> anyhow::Result<f64> {
    let config = Config::from_lookup(|name| match name {
        "AUTH_MODE" => Some("oidc".to_owned()),
        "AUTH_ISSUER" => Some(issuer.to_owned()),
        "AUTH_AUDIENCE" => Some(DEV_CLIENT_ID.to_owned()),
        _ => None,
    })?;
    let AuthConfig::Oidc(oidc) = &config.auth else {
        bail!("not an oidc configuration");
    };
    let verifier = Verifier::new(oidc, None);
    let now = chat_shared::handlers::now_ms() / 1000;
    verifier
        .verify(&tokens[0], now)
        .await
        .context("the first token verifies")?;
    let before = crate::matrix::process_cpu_ns(std::process::id())?;
    for token in tokens {
        verifier
            .verify(token, now)
            .await
            .context("a token verifies")?;
    }
    let spent = crate::matrix::process_cpu_ns(std::process::id())?.saturating_sub(before);
    Ok(spent as f64 / 1000.0 / tokens.len() as f64)
}

/// p50 and p99 of `times`, in milliseconds.
fn percentiles(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let at = |q: f64| {
        let i = ((times.len() as f64 - 1.0) * q).round() as usize;
        times.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (at(0.50), at(0.99))
}

/// A plain HTTP request on loopback: its status and body.
async fn request(method: &str, url: &str, body: String) -> anyhow::Result<(u16, Bytes)> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .context("no answer in time")??;
    let status = response.status().as_u16();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn signed_in_handshakes_are_timed_against_an_emulator_with_its_provider() {
        let emulator = crate::emulated::signed_in_emulator().await;
        let args = AuthorizeArgs {
            emulator: format!("http://{}", emulator.addr()),
            invoke_url: None,
            count: 5,
        };

        let result = run(&args).await.expect("measured");

        assert!(result.handshake_ms.0 > 0.0 && result.handshake_ms.1 >= result.handshake_ms.0);
        assert!(result.authorizer_ms.is_none());
        assert!(result.verify_cpu_us.is_finite());
    }
}

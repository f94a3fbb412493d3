//! Logging setup shared by the functions and the tools: `tracing` with structured fields, JSON lines inside
//! Lambda (or with `LOG_FORMAT=json`), human-readable text elsewhere. `RUST_LOG` filters (default `info`).
//!
//! The filter is `tracing_subscriber`'s `Targets` (`info`, `apigw=warn`, `chat_shared=debug,info`), not
//! `EnvFilter`: `EnvFilter` links a regex engine into every function for span-field filters nobody here uses
//! (about 0.4 MB of each release binary).

use std::str::FromStr as _;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// Libraries that write what they carry at `TRACE`: `lambda_runtime` the raw event ("raw JSON event received
/// from Lambda", a chat message's text included), the HTTP and AWS clients the requests they send (a post's frame).
/// Message bodies never reach a log, whatever `RUST_LOG` says: these stop at `DEBUG`.
const PAYLOAD_LOGGERS: [&str; 9] = [
    "lambda_runtime",
    "lambda_runtime_api_client",
    "hyper",
    "hyper_util",
    "h2",
    "aws_smithy_runtime",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_smithy_http_client",
];

/// The filter `RUST_LOG` describes, or `info` when it is unset or does not parse; the [`PAYLOAD_LOGGERS`], and any
/// of their modules `RUST_LOG` names, at most at `DEBUG` either way.
fn filter(raw: Option<&str>) -> Targets {
    use tracing::level_filters::LevelFilter;
    let targets = raw
        .and_then(|r| Targets::from_str(r).ok())
        .unwrap_or_else(|| Targets::new().with_default(tracing::Level::INFO));
    let carries_payloads = |target: &str| {
        PAYLOAD_LOGGERS.iter().any(|logger| {
            target == *logger
                || target
                    .strip_prefix(logger)
                    .is_some_and(|rest| rest.starts_with("::"))
        })
    };
    let default = targets.default_level().unwrap_or(LevelFilter::OFF);
    let mut capped: Vec<(String, LevelFilter)> = PAYLOAD_LOGGERS
        .iter()
        .filter(|logger| !targets.iter().any(|(t, _)| t == **logger))
        .map(|logger| ((*logger).to_owned(), default))
        .collect();
    capped.extend(
        targets
            .iter()
            .filter(|(target, _)| carries_payloads(target))
            .map(|(target, level)| (target.to_owned(), level)),
    );
    let capped: Vec<(String, LevelFilter)> = capped
        .into_iter()
        .map(|(target, level)| (target, level.min(LevelFilter::DEBUG)))
        .collect();
    targets.with_targets(capped)
}

/// Installs the global subscriber. Safe to call more than once: later calls do nothing.
pub fn init() {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref());
    let json = std::env::var("AWS_LAMBDA_FUNCTION_NAME").is_ok()
        || std::env::var("LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        // Lambda adds its own timestamp and request id to every line.
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(false)
                    .without_time()
                    .with_writer(std::io::stderr),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_target(false)
                    .with_writer(std::io::stderr),
            )
            .try_init()
    };
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn rust_log_filters_by_target_and_defaults_to_info() {
        let unset = filter(None);
        assert!(unset.would_enable("anything", &Level::INFO));
        assert!(!unset.would_enable("anything", &Level::DEBUG));

        let quiet_gateway = filter(Some("apigw=warn,info"));
        assert!(!quiet_gateway.would_enable("apigw", &Level::INFO));
        assert!(quiet_gateway.would_enable("apigw", &Level::WARN));
        assert!(quiet_gateway.would_enable("chat_shared::fanout", &Level::INFO));

        let everything = filter(Some("trace"));
        assert!(everything.would_enable("chat_shared::fanout", &Level::TRACE));
        for noisy in [
            "lambda_runtime::layers::api_response",
            "hyper",
            "aws_smithy_runtime",
        ] {
            assert!(everything.would_enable(noisy, &Level::DEBUG), "{noisy}");
            assert!(!everything.would_enable(noisy, &Level::TRACE), "{noisy}");
        }
        let asked_for = filter(Some("info,lambda_runtime=trace"));
        assert!(
            !asked_for.would_enable("lambda_runtime::layers::api_response", &Level::TRACE),
            "not even when named"
        );
        assert!(
            !asked_for.would_enable("hyper", &Level::DEBUG),
            "no louder than asked"
        );
        let one_module = filter(Some("info,hyper::proto=trace"));
        assert!(one_module.would_enable("hyper::proto::h1", &Level::DEBUG));
        assert!(
            !one_module.would_enable("hyper::proto::h1", &Level::TRACE),
            "nor any of their modules"
        );

        let garbled = filter(Some("=!"));
        assert!(
            garbled.would_enable("x", &Level::INFO),
            "a bad RUST_LOG falls back to info"
        );
    }
}

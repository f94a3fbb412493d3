//! The Lambda runtime glue every function's `main` shares (feature `lambda`, so the emulator and the tests do not
//! build `lambda_runtime`): logs, the cold-start dependencies, and one mapping of [`HandlerError`] onto the
//! runtime's `Diagnostic`, whose `errorType` is the error's kind and whose message is its whole source chain.
//! A `main` is one line: `chat_shared::lambda::serve::<chat_shared::functions::WsConnect>().await`.

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};

use crate::functions::Function;
use crate::handlers::{HandlerError, error_chain};
use crate::metrics;
use crate::telemetry;

pub use lambda_runtime::Error;

/// Serves function `F` ([`crate::functions`]): initialises logging, builds its dependencies once per cold start,
/// then hands every event to it, and writes what the invocation did as one metrics line ([`metrics`]). Warm
/// invocations reuse the same Redis and Management API clients.
///
/// # Errors
/// The [`crate::startup::StartupError`] that kept the dependencies from being built (the runtime reports it as
/// an init error), or the runtime's own failure.
pub async fn serve<F: Function>() -> Result<(), Error> {
    telemetry::init();
    // Read once: the metrics' namespace, and everything the function's dependencies are built from.
    let config = crate::config::Config::from_env()?;
    crate::startup::trust_ca_bundle(&config)?;
    let namespace = config.metrics_namespace.clone();
    let deps = F::from_config(config).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<F::Event>| {
        let (deps, namespace) = (&deps, namespace.as_str());
        async move {
            let deadline = deadline(event.context.deadline, crate::handlers::now_ms());
            let (result, recorded) =
                metrics::record(F::handle(deps, &event.payload, deadline)).await;
            // Its own line on stdout: CloudWatch Logs reads a log event that is one EMF document as metrics. One
            // write, and a closed stdout is no reason to fail the invocation (println! would panic).
            let mut line = recorded.emf(namespace, F::BINARY, crate::handlers::now_ms());
            line.push('\n');
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), line.as_bytes());
            result.map_err(|e| diagnostic(&e))
        }
    }))
    .await
}

/// The invocation's deadline (`Lambda-Runtime-Deadline-Ms`, epoch ms) on tokio's clock; `None` when the value
/// is no epoch time at all. Lambda sends one; `cargo lambda watch` (1.9) sends the timeout itself (600000), which
/// read as a date lies in 1970 and would make every fan-out skip every post.
fn deadline(deadline_ms: u64, now_ms: i64) -> Option<tokio::time::Instant> {
    const DAY_MS: i64 = 24 * 60 * 60 * 1000;
    let deadline_ms = i64::try_from(deadline_ms).ok()?;
    if deadline_ms < now_ms - DAY_MS {
        return None;
    }
    let left = u64::try_from(deadline_ms - now_ms).unwrap_or(0);
    Some(tokio::time::Instant::now() + std::time::Duration::from_millis(left))
}

/// The runtime's report of a failed invocation: `errorType` = [`HandlerError::kind`], the message = its chain.
pub fn diagnostic(err: &HandlerError) -> Diagnostic {
    Diagnostic {
        error_type: err.kind().to_owned(),
        error_message: error_chain(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rooms::StoreError;

    #[test]
    fn an_epoch_deadline_is_kept_and_a_bare_timeout_is_not_taken_for_one() {
        let now = 1_800_000_000_000;

        let real = deadline(1_800_000_009_000, now).expect("an epoch deadline");
        let left = real - tokio::time::Instant::now();

        assert!(
            left > std::time::Duration::from_secs(8) && left <= std::time::Duration::from_secs(9)
        );
        assert!(
            deadline(600_000, now).is_none(),
            "cargo lambda watch's 600000"
        );
        assert!(
            deadline(1_799_999_999_000, now).is_some(),
            "a passed deadline is still one"
        );
    }

    #[test]
    fn a_handler_error_becomes_a_diagnostic_naming_its_kind_and_cause() {
        let err = HandlerError::Store(StoreError::Corrupt {
            key: "wschat:conn:{x}".into(),
        });

        let diagnostic = diagnostic(&err);

        assert_eq!(diagnostic.error_type, "RoomStoreError");
        assert_eq!(
            diagnostic.error_message,
            "room store failed: unexpected value under key wschat:conn:{x}"
        );
    }
}

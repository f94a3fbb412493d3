//! The Lambda runtime glue every function's `main` shares (feature `lambda`, so the emulator and the tests do not
//! build `lambda_runtime`): logs, the cold-start dependencies, and one mapping of [`HandlerError`] onto the
//! runtime's `Diagnostic`, whose `errorType` is the error's kind and whose message is its whole source chain.

use std::future::Future;

use lambda_runtime::{Diagnostic, LambdaEvent, service_fn};

use crate::handlers::authorize::{self, AuthorizerRequest, AuthorizerResponse};
use crate::handlers::{HandlerError, Route, error_chain};
use crate::startup::StartupError;
use crate::{WebsocketRequest, telemetry};

pub use lambda_runtime::Error;

/// Serves one route: initialises logging, builds the route's dependencies once per cold start (`deps`, typically
/// `Deps::from_env()`), then hands every event to it. Warm invocations reuse the same Redis and Management API
/// clients.
///
/// # Errors
/// The [`StartupError`] that kept the dependencies from being built (the runtime reports it as an init error), or
/// the runtime's own failure.
pub async fn serve<R>(deps: impl Future<Output = Result<R, StartupError>>) -> Result<(), Error>
where
    R: Route + 'static,
{
    telemetry::init();
    let route = deps.await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<WebsocketRequest>| {
        let route = &route;
        async move {
            route
                .handle(&event.payload)
                .await
                .map_err(|e| diagnostic(&e))
        }
    }))
    .await
}

/// Serves the `$connect` REQUEST authorizer, which needs no dependencies and cannot fail.
///
/// # Errors
/// The runtime's own failure.
pub async fn serve_authorizer() -> Result<(), Error> {
    telemetry::init();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<AuthorizerRequest>| async move {
            Ok::<AuthorizerResponse, Error>(authorize::handle(&event.payload))
        },
    ))
    .await
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

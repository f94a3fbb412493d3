//! `$default` route: one chat frame in, fanned out to the sender's room.
//! All the logic lives in `chat_shared::handlers::default`; this file only wires it to the Lambda runtime.

use chat_shared::handlers::default::{Deps, handle};
use chat_shared::handlers::error_chain;
use chat_shared::{WebsocketRequest, telemetry};
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    // Built once per cold start; warm invocations reuse the same Redis and Management API clients.
    let deps = Deps::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<WebsocketRequest>| {
        let deps = &deps;
        async move {
            handle(&event.payload, deps).await.map_err(|e| Diagnostic {
                error_type: e.kind().to_owned(),
                error_message: error_chain(&e),
            })
        }
    }))
    .await
}

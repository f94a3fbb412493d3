//! `$disconnect` route: leave the room.
//! All the logic lives in `chat_shared::handlers::disconnect`; this file only wires it to the Lambda runtime.

use chat_shared::handlers::disconnect::{Deps, handle};
use chat_shared::handlers::error_chain;
use chat_shared::{WebsocketRequest, telemetry};
use lambda_runtime::{Diagnostic, Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    // Built once per cold start; warm invocations reuse the same Redis client.
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

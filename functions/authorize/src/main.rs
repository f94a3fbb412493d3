//! `$connect` REQUEST authorizer: carries the room to every later event of the connection as
//! `requestContext.authorizer.room`. All the logic lives in `chat_shared::handlers::authorize`.

use chat_shared::handlers::authorize::{AuthorizerRequest, AuthorizerResponse, handle};
use chat_shared::telemetry;
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<AuthorizerRequest>| async move {
            Ok::<AuthorizerResponse, Error>(handle(&event.payload))
        },
    ))
    .await
}

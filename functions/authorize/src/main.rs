//! `$connect` REQUEST authorizer: carries the room to every later event of the connection as
//! `requestContext.authorizer.room`. All the logic lives in `chat_shared::handlers::authorize`.

#[tokio::main]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve_authorizer().await
}

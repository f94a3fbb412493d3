//! `$connect` route: validate the handshake and join the room named by `?room=`.
//! All the logic lives in `chat_shared::handlers::connect`; this file only names the route.

#[tokio::main]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve(chat_shared::handlers::connect::Deps::from_env()).await
}

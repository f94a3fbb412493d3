//! `$disconnect` route: leave the room.
//! All the logic lives in `chat_shared::handlers::disconnect`; this file only names the route.

#[tokio::main]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve(chat_shared::handlers::disconnect::Deps::from_env()).await
}

//! `$default` route: one chat frame in, fanned out to the sender's room.
//! All the logic lives in `chat_shared::handlers::default`; this file only names the route.

#[tokio::main]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve(chat_shared::handlers::default::Deps::from_env()).await
}

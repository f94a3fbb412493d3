//! `$connect` REQUEST authorizer: carries the room to every later event of the connection as
//! `requestContext.authorizer.room`. All the logic lives in `chat_shared` (`functions::WsAuthorize`).

// One thread: a function has at most one vCPU, and this one only answers one small event at a time.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve::<chat_shared::functions::WsAuthorize>().await
}

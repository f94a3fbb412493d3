//! `$connect` REQUEST authorizer: carries the room to every later event of the connection as
//! `requestContext.authorizer.room`. All the logic lives in `chat_shared::handlers::authorize`.

// One thread: a function has at most one vCPU, and a multi-threaded scheduler would spend its CPU waking
// workers across threads for every post (README, "Where the CPU goes").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve_authorizer().await
}

//! `$connect` route: validate the handshake and join the room named by `?room=`.
//! All the logic lives in `chat_shared` (`functions::WsConnect`); this file only names the function.

// One thread: a function has at most one vCPU, and a multi-threaded scheduler would spend its CPU waking
// workers across threads for every post (docs/benchmark.md, "Threads").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve::<chat_shared::functions::WsConnect>().await
}

//! `$default` route: one chat frame in, fanned out to the sender's room.
//! All the logic lives in `chat_shared` (`functions::WsDefault`); this file only names the function.

// mimalloc: every post allocates its request, headers and signature; glibc's malloc and free were 12-15 % of this
// function's CPU per frame (docs/benchmark.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// One thread: a function has at most one vCPU, and a multi-threaded scheduler would spend its CPU waking
// workers across threads for every post (docs/benchmark.md, "Threads").
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve::<chat_shared::functions::WsDefault>().await
}

//! One shard of a big room's fan-out, invoked asynchronously by `ws-default`; no API Gateway route.
//! All the logic lives in `chat_shared` (`functions::WsFanout`); this file only names the function.

// mimalloc and one thread, as ws-default: this function does nothing but post (functions/default/src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), chat_shared::lambda::Error> {
    chat_shared::lambda::serve::<chat_shared::functions::WsFanout>().await
}

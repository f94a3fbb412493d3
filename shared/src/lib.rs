//! wschat's shared crate: everything the Lambda functions do, so that the functions, the local emulator and the
//! tests all run the very same code.
//!
//! * [`config`]: the environment variables, their defaults and parsing; plain data, no I/O, no crate imports.
//! * [`wire`]: the frames, and the identifiers parsed at the edge ([`wire::RoomName`], [`wire::ConnectionId`], …).
//! * [`rooms`]: room membership and history ([`rooms::RoomStore`]) in Redis or in memory, bounded in time.
//! * [`gateway`]: PostToConnection behind [`gateway::Gateway`]; the direct client the functions use, the AWS SDK
//!   adapter (feature `sdk`: the tests and the load tool hold the two side by side) and a recording fake.
//! * [`signed`]: AWS requests signed with the SDK's own signer over one keep-alive HTTP client.
//! * [`secrets`]: the Redis URL (and the auth's shared secret) from Secrets Manager.
//! * [`auth`]: who is connecting when `AUTH_MODE=oidc`: the token's transport, its keys, its verification.
//! * [`invoke`]: Lambda's asynchronous invocation behind [`invoke::Invoker`], for the shards of a big room.
//! * [`fanout`]: `group_send`, concurrent and bounded, pruning gone members and retrying throttled ones; presence
//!   announcements; big rooms shared out to further invocations ([`fanout::shards`]).
//! * [`handlers`]: each route's event typed at the edge ([`handlers::events`]), and one pure `handle` per route.
//! * [`startup`]: cold start, from a [`config::Config`] to the [`startup::Parts`] every function is built from.
//! * [`functions`]: the table of the four Lambda functions: binary, dependencies, event → handler.
//! * [`tls`]: the rustls crypto provider (`ring`) every TLS client here uses.
//! * [`metrics`]: what each invocation did, as one CloudWatch Embedded Metric Format line.
//! * [`telemetry`]: logs. `lambda` (feature `lambda`): the runtime glue every function's `main` shares.
//!
//! Only [`gateway`] and [`signed`] see the AWS SDK's crates. Imports run one way, each module using only those
//! before it: `config`, `wire`, `metrics`, `tls`, `signed` → `rooms`, `gateway`, `invoke`, `secrets`, `auth` → `fanout` → `handlers`,
//! `startup` → `functions` → `lambda`; nothing imports in a circle.

pub mod auth;
pub mod config;
pub mod fanout;
pub mod functions;
pub mod gateway;
pub mod handlers;
pub mod http_client;
pub mod invoke;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod metrics;
pub mod rooms;
pub mod secrets;
pub mod signed;
pub mod startup;
pub mod telemetry;
pub mod tls;
pub mod wire;

pub use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse as ProxyResponse, ApiGatewayWebsocketProxyRequest as WebsocketRequest,
};

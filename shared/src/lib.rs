//! wschat's shared crate: everything the three Lambda functions do, so that the functions, the local emulator
//! and the tests all run the very same code.
//!
//! * [`wire`]: the `{"message": ...}` frames, [`wire::RoomName`] and [`wire::ConnectionId`], parsed at the edge.
//! * [`rooms`]: room membership ([`rooms::RoomStore`]) in Redis or in memory, bounded in time.
//! * [`gateway`]: PostToConnection behind [`gateway::Gateway`]; the AWS SDK adapter and a recording fake.
//! * [`fanout`]: `group_send`, concurrent and bounded, pruning gone members and retrying throttled ones.
//! * [`handlers`]: one pure `handle(&event, &deps)` per route (`$connect`, `$disconnect`, `$default`) and the
//!   optional `$connect` authorizer that carries the room to later events.
//! * [`config`] and [`telemetry`]: environment and logs.

pub mod config;
pub mod fanout;
pub mod gateway;
pub mod handlers;
pub mod rooms;
pub mod telemetry;
pub mod wire;

pub use aws_lambda_events::apigw::{
    ApiGatewayProxyResponse as ProxyResponse, ApiGatewayWebsocketProxyRequest as WebsocketRequest,
};

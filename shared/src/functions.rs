//! The API's Lambda functions, in one table: each names its binary, says how its dependencies are built, and
//! turns its event into the typed value its handler takes ([`crate::handlers::events`]) before handing it over.
//!
//! | function | route | event → typed value | dependencies |
//! |---|---|---|---|
//! | [`WsAuthorize`] | the `$connect` REQUEST authorizer | [`AuthorizerRequest`] → [`Authorization`] | the token verifier (`AUTH_MODE=oidc`) |
//! | [`WsConnect`] | `$connect` | [`WebsocketRequest`] → [`Connecting`] | the store, the origin rule, the Management API (optional: joins are announced) |
//! | [`WsDisconnect`] | `$disconnect` | [`WebsocketRequest`] → [`Leaving`] | the store, the Management API (optional: leaves are announced) |
//! | [`WsDefault`] | `$default` | [`WebsocketRequest`] → [`Message`] | the store, the Management API (required), the fan-out tuning, the invoker of `ws-fanout` (optional: big rooms are sharded) |
//! | [`WsFanout`] | none: invoked asynchronously by `ws-default` | [`Shard`] | the store, the Management API (required), the fan-out tuning |
//!
//! The Lambda mains serve one each (`lambda::serve::<WsConnect>()`, feature `lambda`), so a binary links only its
//! own handler; the emulator runs them all in one process ([`each`]). No other code names a binary: the
//! template's `BuildProperties.Binary` names them for deployment, and a test of the emulator's route table holds
//! the two together.

use std::future::Future;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::fanout::shards::Shard;
use crate::handlers::authorize::AuthorizerResponse;
use crate::handlers::connect::OriginPolicy;
use crate::handlers::events::{Authorization, AuthorizerRequest, Connecting, Leaving, Message};
use crate::handlers::fanout::ShardReport;
use crate::handlers::{HandlerError, authorize, connect, default, disconnect, fanout};
use crate::startup::{Parts, StartupError, fanout_settings, local_verifier, verifier};
use crate::{ProxyResponse, WebsocketRequest};

/// One Lambda function of the API.
pub trait Function: Send + Sync + 'static {
    /// The binary's name: its Cargo package, and `Metadata.BuildProperties.Binary` in the template.
    const BINARY: &'static str;
    /// Whether it needs the Management API (`WS_MANAGEMENT_ENDPOINT`) to work at all.
    const NEEDS_GATEWAY: bool = false;
    /// The event as Lambda delivers it.
    type Event: DeserializeOwned + Send + Sync;
    /// What it answers.
    type Response: Serialize + Send;
    /// What its handler needs, built once per cold start.
    type Deps: Send + Sync + 'static;

    /// Builds the dependencies from parts made once for every function (the emulator, the tests).
    ///
    /// # Errors
    /// [`StartupError`] when a part it needs is missing.
    fn wire(parts: &Parts) -> Result<Self::Deps, StartupError>;

    /// Builds the dependencies at cold start, from the configuration the environment gave.
    ///
    /// # Errors
    /// [`StartupError`] when a variable is missing, the Redis URL's secret cannot be read, or Redis is unreachable.
    fn from_config(
        config: Config,
    ) -> impl Future<Output = Result<Self::Deps, StartupError>> + Send {
        async move { Self::wire(&Parts::from_config(config, Self::NEEDS_GATEWAY).await?) }
    }

    /// Parses `event` into the handler's typed value and handles it; no post starts shortly before `deadline`
    /// (the Lambda's own).
    ///
    /// # Errors
    /// [`HandlerError`] for an infrastructure failure or an event API Gateway could not have sent.
    fn handle(
        deps: &Self::Deps,
        event: &Self::Event,
        deadline: Option<tokio::time::Instant>,
    ) -> impl Future<Output = Result<Self::Response, HandlerError>> + Send;
}

/// `ws-authorize`: the `$connect` REQUEST authorizer, which carries the room and the name to every later event.
pub struct WsAuthorize;

impl Function for WsAuthorize {
    const BINARY: &'static str = "ws-authorize";
    type Event = AuthorizerRequest;
    type Response = AuthorizerResponse;
    type Deps = authorize::Deps;

    fn wire(parts: &Parts) -> Result<authorize::Deps, StartupError> {
        Ok(authorize::Deps {
            verifier: local_verifier(&parts.config),
        })
    }

    /// With `AUTH_MODE=oidc`, the verifier: the authorizer connects to no store.
    async fn from_config(config: Config) -> Result<authorize::Deps, StartupError> {
        Ok(authorize::Deps {
            verifier: verifier(&config).await?,
        })
    }

    async fn handle(
        deps: &authorize::Deps,
        event: &AuthorizerRequest,
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<AuthorizerResponse, HandlerError> {
        let now_secs = crate::handlers::now_ms() / 1000;
        authorize::handle(Authorization::from(event), deps, now_secs).await
    }
}

/// `ws-connect`: `$connect`, which validates the handshake and joins the room.
pub struct WsConnect;

impl Function for WsConnect {
    const BINARY: &'static str = "ws-connect";
    type Event = WebsocketRequest;
    type Response = ProxyResponse;
    type Deps = connect::Deps;

    fn wire(parts: &Parts) -> Result<connect::Deps, StartupError> {
        Ok(connect::Deps {
            rooms: parts.rooms.clone(),
            origins: OriginPolicy::parse(&parts.config.allowed_origins),
            announcer: parts.announcer(),
            auth_required: parts.config.auth.oidc().is_some(),
        })
    }

    async fn handle(
        deps: &connect::Deps,
        event: &WebsocketRequest,
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<ProxyResponse, HandlerError> {
        connect::handle(Connecting::try_from(event)?, deps).await
    }
}

/// `ws-disconnect`: `$disconnect`, which leaves the room.
pub struct WsDisconnect;

impl Function for WsDisconnect {
    const BINARY: &'static str = "ws-disconnect";
    type Event = WebsocketRequest;
    type Response = ProxyResponse;
    type Deps = disconnect::Deps;

    fn wire(parts: &Parts) -> Result<disconnect::Deps, StartupError> {
        Ok(disconnect::Deps {
            rooms: parts.rooms.clone(),
            announcer: parts.announcer(),
        })
    }

    async fn handle(
        deps: &disconnect::Deps,
        event: &WebsocketRequest,
        _deadline: Option<tokio::time::Instant>,
    ) -> Result<ProxyResponse, HandlerError> {
        disconnect::handle(Leaving::try_from(event)?, deps).await
    }
}

/// `ws-default`: `$default`, every chat, history, presence and ping frame.
pub struct WsDefault;

impl Function for WsDefault {
    const BINARY: &'static str = "ws-default";
    const NEEDS_GATEWAY: bool = true;
    type Event = WebsocketRequest;
    type Response = ProxyResponse;
    type Deps = default::Deps;

    fn wire(parts: &Parts) -> Result<default::Deps, StartupError> {
        let gateway = parts.required_gateway()?;
        Ok(default::Deps {
            rooms: parts.rooms.clone(),
            gateway,
            fanout: fanout_settings(&parts.config),
            sharding: parts.sharding(),
            max_message_bytes: parts.config.max_message_bytes,
            token_leeway_secs: parts
                .config
                .auth
                .oidc()
                .map_or(crate::config::DEFAULT_AUTH_LEEWAY_SECS, |oidc| {
                    oidc.leeway_secs
                }),
        })
    }

    async fn handle(
        deps: &default::Deps,
        event: &WebsocketRequest,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<ProxyResponse, HandlerError> {
        Ok(default::handle(Message::try_from(event)?, deps, deadline).await)
    }
}

/// `ws-fanout`: one shard of a big room's fan-out, invoked asynchronously by `ws-default` (no route).
pub struct WsFanout;

impl Function for WsFanout {
    const BINARY: &'static str = "ws-fanout";
    const NEEDS_GATEWAY: bool = true;
    type Event = Shard;
    type Response = ShardReport;
    type Deps = fanout::Deps;

    fn wire(parts: &Parts) -> Result<fanout::Deps, StartupError> {
        let gateway = parts.required_gateway()?;
        Ok(fanout::Deps {
            rooms: parts.rooms.clone(),
            gateway,
            fanout: fanout_settings(&parts.config),
        })
    }

    async fn handle(
        deps: &fanout::Deps,
        event: &Shard,
        deadline: Option<tokio::time::Instant>,
    ) -> Result<ShardReport, HandlerError> {
        fanout::handle(event, deps, deadline).await
    }
}

/// Visits every function of the table, as a type: what the emulator builds its in-process backend with.
pub trait EachFunction {
    /// Called once per function.
    fn function<F: Function>(&mut self);
}

/// Visits every function of the API, the authorizer first.
pub fn each(visitor: &mut impl EachFunction) {
    visitor.function::<WsAuthorize>();
    visitor.function::<WsConnect>();
    visitor.function::<WsDisconnect>();
    visitor.function::<WsDefault>();
    visitor.function::<WsFanout>();
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::config::{Config, ConfigError};
    use crate::gateway::{Gateway, RecordingGateway};
    use crate::rooms::{MemoryRoomStore, RoomStore};

    /// The parts with the default configuration.
    fn parts(rooms: Arc<dyn RoomStore>, gateway: Option<Arc<dyn Gateway>>) -> Parts {
        Parts {
            config: Config::default(),
            rooms,
            gateway,
            invoker: None,
        }
    }

    struct Binaries(Vec<&'static str>);

    impl EachFunction for Binaries {
        fn function<F: Function>(&mut self) {
            self.0.push(F::BINARY);
        }
    }

    #[test]
    fn the_table_names_each_of_the_five_binaries_once() {
        let mut binaries = Binaries(Vec::new());

        each(&mut binaries);

        assert_eq!(
            binaries.0,
            [
                "ws-authorize",
                "ws-connect",
                "ws-disconnect",
                "ws-default",
                "ws-fanout"
            ]
        );
    }

    #[test]
    fn ws_default_is_not_built_without_a_management_api_and_the_others_are() {
        let rooms = Arc::new(MemoryRoomStore::default());
        let gateway = Arc::new(RecordingGateway::default());

        let without = parts(rooms.clone(), None);
        let with = parts(rooms, Some(gateway));

        assert!(matches!(
            WsDefault::wire(&without),
            Err(StartupError::Config(ConfigError::Missing(
                "WS_MANAGEMENT_ENDPOINT"
            )))
        ));
        assert!(WsDefault::wire(&with).is_ok());
        assert!(
            WsConnect::wire(&without)
                .expect("built")
                .announcer
                .is_none()
        );
        assert!(WsConnect::wire(&with).expect("built").announcer.is_some());
        assert!(WsDisconnect::wire(&without).is_ok());
    }
}

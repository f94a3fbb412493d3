//! Where the emulator sends events: the route table (route key → function) and the backends that run the
//! functions, either in this process ([`InProcess`], the default) or as real Lambda binaries behind
//! `cargo lambda watch` ([`crate::lambda::LambdaInvoke`]). Both take and return the event JSON exactly as API
//! Gateway and the Lambda Invoke API would, so the two modes differ in nothing but where the code runs.

use std::sync::Arc;

use async_trait::async_trait;
use chat_shared::config::OriginPolicy;
use chat_shared::fanout::FanoutSettings;
use chat_shared::gateway::AwsGateway;
use chat_shared::handlers::{self, HandlerError, authorize, connect, default, disconnect};
use chat_shared::rooms::{MemoryRoomStore, RedisRoomStore, RoomStore, StoreError};
use chat_shared::{ProxyResponse, WebsocketRequest};
use serde_json::Value;

/// One route of the API: which function API Gateway invokes for a route key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `$connect`, `$disconnect`, `$default` or a custom key matched against `$request.body.action`.
    pub key: String,
    /// The Lambda function (the workspace binary) behind it.
    pub function: String,
}

/// The API's routes and its `$connect` authorizer, the same table `infra/template.yaml` deploys (a test in
/// `tests/` checks that the two agree).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    /// Every route.
    pub routes: Vec<Route>,
    /// The REQUEST authorizer's function on `$connect`, if any.
    pub authorizer: Option<String>,
}

impl Default for RouteTable {
    fn default() -> Self {
        let route = |key: &str, function: &str| Route {
            key: key.to_owned(),
            function: function.to_owned(),
        };
        Self {
            routes: vec![
                route("$connect", "ws-connect"),
                route("$disconnect", "ws-disconnect"),
                route("$default", "ws-default"),
            ],
            authorizer: Some("ws-authorize".to_owned()),
        }
    }
}

impl RouteTable {
    /// The function for `route_key`.
    pub fn function_for(&self, route_key: &str) -> Option<&str> {
        self.routes
            .iter()
            .find(|r| r.key == route_key)
            .map(|r| r.function.as_str())
    }

    /// The route keys, in table order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.routes.iter().map(|r| r.key.as_str())
    }
}

/// A failed invocation. API Gateway answers a failed `$connect` with 500 and ignores a failed message.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    /// The route table names a function this backend does not have.
    #[error("no function named {0}")]
    UnknownFunction(String),
    /// The event or the response did not (de)serialize.
    #[error("event or response JSON did not fit the function's types")]
    Json(#[from] serde_json::Error),
    /// The handler returned an error (in process).
    #[error("handler failed")]
    Handler(#[from] HandlerError),
    /// The function returned an error (Lambda Invoke API: `errorType`/`errorMessage`).
    #[error("function failed with {error_type}: {error_message}")]
    Function {
        /// Lambda's `errorType`.
        error_type: String,
        /// Lambda's `errorMessage`.
        error_message: String,
    },
    /// The Invoke API could not be reached or answered garbage.
    #[error("could not invoke the function")]
    Transport(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Runs a function with an event and returns its response, both as JSON.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Invokes `function` with `event`.
    ///
    /// # Errors
    /// [`InvokeError`] when the function fails or cannot be reached.
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError>;
}

/// Runs the shared handlers in this process, exactly as the Lambda binaries would.
pub struct InProcess {
    connect: connect::Deps,
    disconnect: disconnect::Deps,
    default: default::Deps,
}

/// Where the in-process handlers keep room membership.
#[derive(Clone)]
pub enum StoreChoice {
    /// A fresh in-memory store.
    Memory,
    /// Redis at this URL, keys under this prefix.
    Redis {
        /// `redis://…`
        url: String,
        /// Key prefix.
        prefix: String,
    },
    /// A store the caller also holds (tests inspect it).
    Shared(Arc<dyn RoomStore>),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis { prefix, .. } => write!(f, "Redis {{ prefix: {prefix:?} }}"),
            Self::Shared(_) => f.write_str("Shared"),
        }
    }
}

/// What the in-process backend is built from.
#[derive(Debug, Clone)]
pub struct InProcessOptions {
    /// Where rooms live.
    pub store: StoreChoice,
    /// How long a membership lasts.
    pub membership_lifetime: std::time::Duration,
    /// Browser origins `$connect` accepts.
    pub allowed_origins: OriginPolicy,
    /// Fan-out tuning.
    pub fanout: FanoutSettings,
}

impl InProcess {
    /// Builds the handlers' dependencies; posts go through the real AWS SDK adapter to `management_endpoint`.
    ///
    /// # Errors
    /// [`StoreError`] when Redis cannot be reached.
    pub async fn new(
        options: &InProcessOptions,
        management_endpoint: &str,
    ) -> Result<Self, StoreError> {
        let rooms: Arc<dyn RoomStore> = match &options.store {
            StoreChoice::Redis { url, prefix } => {
                Arc::new(RedisRoomStore::connect(url, prefix, options.membership_lifetime).await?)
            }
            StoreChoice::Memory => Arc::new(MemoryRoomStore::new(options.membership_lifetime)),
            StoreChoice::Shared(rooms) => rooms.clone(),
        };
        let gateway = Arc::new(AwsGateway::local(management_endpoint));
        Ok(Self {
            connect: connect::Deps {
                rooms: rooms.clone(),
                origins: options.allowed_origins.clone(),
            },
            disconnect: disconnect::Deps {
                rooms: rooms.clone(),
            },
            default: default::Deps {
                rooms,
                gateway,
                fanout: options.fanout.clone(),
            },
        })
    }
}

fn to_json(response: &ProxyResponse) -> Result<Value, InvokeError> {
    Ok(serde_json::to_value(response)?)
}

#[async_trait]
impl Backend for InProcess {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        match function {
            "ws-authorize" => {
                let request: authorize::AuthorizerRequest = serde_json::from_value(event)?;
                Ok(serde_json::to_value(authorize::handle(&request))?)
            }
            "ws-connect" | "ws-disconnect" | "ws-default" => {
                let request: WebsocketRequest = serde_json::from_value(event)?;
                let response = match function {
                    "ws-connect" => handlers::connect::handle(&request, &self.connect).await?,
                    "ws-disconnect" => {
                        handlers::disconnect::handle(&request, &self.disconnect).await?
                    }
                    _ => handlers::default::handle(&request, &self.default).await?,
                };
                to_json(&response)
            }
            other => Err(InvokeError::UnknownFunction(other.to_owned())),
        }
    }
}

//! Where the emulator sends events: the backends that run the functions, either in this process ([`InProcess`],
//! the default) or as real Lambda binaries behind `cargo lambda watch` ([`crate::lambda::LambdaInvoke`]). Both
//! take and return the event JSON exactly as API Gateway and the Lambda Invoke API would, so the two modes differ
//! in nothing but where the code runs. Which function serves which route is [`crate::routes`]' business.

use std::sync::Arc;

use async_trait::async_trait;
use chat_shared::config::Config;
use chat_shared::functions::{self, EachFunction, Function};
use chat_shared::gateway::{DirectGateway, Gateway, GatewayError};
use chat_shared::handlers::HandlerError;
use chat_shared::invoke::Invoker;
use chat_shared::metrics;
use chat_shared::rooms::{MemoryRoomStore, RoomStore};
use chat_shared::startup::{Parts, StartupError, connect_store, policy};
use serde_json::Value;

use crate::activity::EmfLog;

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

    /// The functions' metrics, when they run in this process (in Lambda mode they are in the functions' logs).
    fn emf(&self) -> Option<&EmfLog> {
        None
    }

    /// What a Lambda's Init does once the emulator serves: open the Management API client's first connection
    /// ([`Gateway::warm`]). Lambda functions do it themselves at their cold start.
    async fn warm(&self) {}
}

/// Runs the shared handlers in this process, exactly as the Lambda binaries would: every function of
/// [`chat_shared::functions`]' table, by its binary's name, bound to dependencies built from one set of parts.
pub struct InProcess {
    functions: Vec<(&'static str, Box<dyn Invoke>)>,
    emf: Arc<EmfLog>,
    gateway: Arc<dyn Gateway>,
}

/// One function bound to its dependencies, taking and returning JSON as the Lambda Invoke API does.
#[async_trait]
trait Invoke: Send + Sync {
    async fn invoke(&self, event: Value) -> Result<Value, InvokeError>;
}

struct Bound<F: Function> {
    deps: F::Deps,
    emf: Arc<EmfLog>,
}

#[async_trait]
impl<F: Function> Invoke for Bound<F> {
    /// As `chat_shared::lambda::serve` does: the handler, and what it recorded as one metrics line.
    async fn invoke(&self, event: Value) -> Result<Value, InvokeError> {
        let event: F::Event = serde_json::from_value(event)?;
        let (response, recorded) = metrics::record(F::handle(&self.deps, &event, None)).await;
        self.emf.push(F::BINARY, &recorded);
        Ok(serde_json::to_value(response?)?)
    }
}

/// Binds every function of the table to dependencies wired from `parts`.
struct Table<'a> {
    parts: &'a Parts,
    emf: &'a Arc<EmfLog>,
    functions: Vec<(&'static str, Box<dyn Invoke>)>,
    failed: Option<StartupError>,
}

impl EachFunction for Table<'_> {
    fn function<F: Function>(&mut self) {
        match F::wire(self.parts) {
            Ok(deps) => {
                let bound = Bound::<F> {
                    deps,
                    emf: self.emf.clone(),
                };
                self.functions.push((F::BINARY, Box::new(bound)));
            }
            Err(err) => self.failed = Some(err),
        }
    }
}

/// Where the in-process handlers keep room membership.
#[derive(Clone)]
pub enum StoreChoice {
    /// A fresh in-memory store.
    Memory,
    /// Redis as the functions reach it (`REDIS_URL` or `REDIS_URL_SECRET_ARN`, `REDIS_CLUSTER`,
    /// `REDIS_CA_CERT_PATH`, `REDIS_KEY_PREFIX` of the [`InProcessOptions::config`]), through the same
    /// `connect_store` as the Lambda functions.
    Redis,
    /// A store the caller also holds (tests inspect it).
    Shared(Arc<dyn RoomStore>),
}

impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Memory => f.write_str("Memory"),
            Self::Redis => f.write_str("Redis"),
            Self::Shared(_) => f.write_str("Shared"),
        }
    }
}

/// How the in-process handlers post to connections (`--posts in-memory|http`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Posts {
    /// Straight into the emulator's connections (its `LocalGateway`): the same checks, faults, limits and meter as
    /// `POST /@connections/{id}`, without an HTTP round trip per member.
    #[default]
    InMemory,
    /// Over HTTP to the emulator's own `/@connections`, through the functions' Management API client
    /// (`DirectGateway`), signed as on AWS.
    Http,
}

/// What the in-process backend is built from: a store, the configuration the functions read, and how they post.
#[derive(Debug, Clone)]
pub struct InProcessOptions {
    /// Where rooms live.
    pub store: StoreChoice,
    /// Everything else (membership lifetime, allowed origins, fan-out tuning, Redis), as the functions read it.
    pub config: Config,
    /// How posts reach the connections.
    pub posts: Posts,
}

impl InProcessOptions {
    /// Rooms in Redis when `config` names one, in memory otherwise.
    pub fn from_config(config: Config) -> Self {
        let store = if config.has_redis() {
            StoreChoice::Redis
        } else {
            StoreChoice::Memory
        };
        Self {
            store,
            config,
            posts: Posts::default(),
        }
    }
}

impl InProcess {
    /// Builds the handlers' dependencies; asynchronous invocations go to `invoker`; posts go to `local` or, with [`Posts::Http`], through the functions' own
    /// Management API client ([`DirectGateway`]) to `management_endpoint`.
    ///
    /// # Errors
    /// [`StartupError`] when Redis is misconfigured or cannot be reached.
    pub async fn new(
        options: &InProcessOptions,
        local: Arc<dyn Gateway>,
        invoker: Arc<dyn Invoker>,
        management_endpoint: &str,
    ) -> Result<Self, StartupError> {
        let cfg = &options.config;
        let rooms: Arc<dyn RoomStore> = match &options.store {
            StoreChoice::Redis => connect_store(cfg).await?,
            StoreChoice::Memory => {
                Arc::new(MemoryRoomStore::new(cfg.membership_lifetime).with_policy(policy(cfg)))
            }
            StoreChoice::Shared(rooms) => rooms.clone(),
        };
        let gateway: Arc<dyn Gateway> = match options.posts {
            Posts::InMemory => local,
            Posts::Http => Arc::new(OneProcess {
                inner: DirectGateway::local(management_endpoint),
                permits: tokio::sync::Semaphore::new(PROCESS_POSTS_IN_FLIGHT),
            }),
        };
        let parts = Parts {
            config: cfg.clone(),
            rooms,
            gateway: Some(gateway.clone()),
            // Asynchronous invocations (a big room's shards) queue into the emulator, as into Lambda.
            invoker: cfg.fanout_function.is_some().then_some(invoker),
        };
        let emf = Arc::new(EmfLog::new(&cfg.metrics_namespace));
        let mut table = Table {
            parts: &parts,
            emf: &emf,
            functions: Vec::new(),
            failed: None,
        };
        functions::each(&mut table);
        match table.failed {
            Some(err) => Err(err),
            None => Ok(Self {
                functions: table.functions,
                emf,
                gateway,
            }),
        }
    }

    /// The names of the functions it runs.
    pub fn functions(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.functions.iter().map(|(name, _)| *name)
    }
}

/// Posts over HTTP in flight at once across every in-process invocation ([`Posts::Http`]). On AWS each
/// invocation runs in a sandbox of its own, with its own `FANOUT_MAX_IN_FLIGHT`; in one process, 200 overlapping
/// messages × 64 posts each would open thousands of sockets to this very emulator and starve it, so the
/// in-process backend shares one bound.
const PROCESS_POSTS_IN_FLIGHT: usize = 256;

/// The functions' gateway with [`PROCESS_POSTS_IN_FLIGHT`] shared by every invocation of this process.
struct OneProcess {
    inner: DirectGateway,
    permits: tokio::sync::Semaphore,
}

#[async_trait]
impl Gateway for OneProcess {
    async fn post_to_connection(
        &self,
        conn: &chat_shared::wire::ConnectionId,
        data: bytes::Bytes,
    ) -> Result<(), GatewayError> {
        // Closed never: the semaphore lives as long as the gateway.
        let _permit = self.permits.acquire().await;
        self.inner.post_to_connection(conn, data).await
    }

    async fn delete_connection(
        &self,
        conn: &chat_shared::wire::ConnectionId,
    ) -> Result<(), GatewayError> {
        let _permit = self.permits.acquire().await;
        self.inner.delete_connection(conn).await
    }

    async fn warm(&self) {
        self.inner.warm().await;
    }
}

#[async_trait]
impl Backend for InProcess {
    async fn invoke(&self, function: &str, event: Value) -> Result<Value, InvokeError> {
        let (_, found) = self
            .functions
            .iter()
            .find(|(name, _)| *name == function)
            .ok_or_else(|| InvokeError::UnknownFunction(function.to_owned()))?;
        found.invoke(event).await
    }

    fn emf(&self) -> Option<&EmfLog> {
        Some(&self.emf)
    }

    async fn warm(&self) {
        self.gateway.warm().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::RouteTable;
    use chat_shared::gateway::RecordingGateway;

    /// The functions in process with the default configuration: rooms in memory, posts and invocations recorded.
    async fn in_memory() -> InProcess {
        let options = InProcessOptions::from_config(Config::default());
        InProcess::new(
            &options,
            Arc::new(RecordingGateway::default()),
            Arc::new(chat_shared::invoke::RecordingInvoker::default()),
            "http://127.0.0.1:9/local",
        )
        .await
        .expect("memory needs nothing")
    }

    #[tokio::test]
    async fn every_function_the_deploy_template_names_runs_in_process() {
        let table = RouteTable::deployed().expect("infra/template.yaml can be followed");
        let backend = in_memory().await;
        let functions: Vec<&str> = backend.functions().collect();

        for function in table
            .routes
            .iter()
            .map(|r| r.function.as_str())
            .chain(table.authorizer.as_deref())
        {
            assert!(
                functions.contains(&function),
                "{function} has no in-process handler"
            );
        }
    }

    #[tokio::test]
    async fn an_unknown_function_is_an_error_not_a_panic() {
        let backend = in_memory().await;

        let err = backend
            .invoke("ws-nope", serde_json::json!({}))
            .await
            .expect_err("no such function");

        assert!(
            matches!(err, InvokeError::UnknownFunction(ref f) if f == "ws-nope"),
            "{err:?}"
        );
    }
}

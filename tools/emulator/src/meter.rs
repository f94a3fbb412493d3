//! The cost meter: counts what AWS would bill for what the emulator just did, and prices it.
//!
//! | meter | counted here | AWS's rule |
//! |---|---|---|
//! | API Gateway messages | every data frame a client sends and every frame delivered to a client (posts and the gateway's own error frames), in 32 KB units | "messages sent and received", metered in 32 KB increments |
//! | connection minutes | from the accepted handshake to the close, summed over connections | per minute connected |
//! | Lambda requests | every invocation: the authorizer and each route's function | per request |
//! | Lambda GB-seconds | measured duration rounded up to the millisecond × the template's `MemorySize` (in-process mode times the handler) | per ms × memory, priced by architecture |
//! | Redis | commands the Redis server counted (`INFO commandstats`) since the emulator started, when it can see that server | ElastiCache Serverless: ECPUs, at least one per command |
//!
//! It also says who was refused: every answer of 4xx or 5xx from a route's function (a refused handshake, a frame
//! over its budget) by route and status and by source address, and every connection closed by DeleteConnection.
//!
//! Prices are us-east-1 list prices ([`Prices::default`]); `--prices FILE` overrides any of them. The numbers are
//! estimates for comparing designs, not a bill: no free tier, no data transfer, no storage.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::routes::FunctionSpec;

/// API Gateway meters WebSocket messages in 32 KB increments.
pub const MESSAGE_UNIT_BYTES: usize = 32 * 1024;

/// List prices in USD (us-east-1, 2026), each overridable from a JSON file with the same field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Prices {
    /// Where these prices come from (free text, shown in reports).
    pub source: String,
    /// API Gateway WebSocket, per million messages (first billion a month).
    pub websocket_messages_per_million: f64,
    /// API Gateway WebSocket, per million connection minutes.
    pub connection_minutes_per_million: f64,
    /// Lambda, per million requests.
    pub lambda_requests_per_million: f64,
    /// Lambda on x86_64, per GB-second.
    pub lambda_gb_second_x86_64: f64,
    /// Lambda on arm64 (Graviton), per GB-second.
    pub lambda_gb_second_arm64: f64,
    /// ElastiCache Serverless (Redis OSS), per million ECPUs.
    pub redis_ecpus_per_million: f64,
}

impl Default for Prices {
    fn default() -> Self {
        Self {
            source: "AWS list prices, us-east-1".to_owned(),
            websocket_messages_per_million: 1.00,
            connection_minutes_per_million: 0.25,
            lambda_requests_per_million: 0.20,
            lambda_gb_second_x86_64: 0.000_016_666_7,
            lambda_gb_second_arm64: 0.000_013_333_4,
            redis_ecpus_per_million: 0.0034,
        }
    }
}

impl Prices {
    /// Reads a price file: a JSON object with any of [`Prices`]' fields; the others keep their defaults.
    ///
    /// # Errors
    /// When the file cannot be read, is not JSON, or names a field that does not exist.
    pub fn from_file(path: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context as _;
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("{} is not a price file", path.display()))
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct FunctionCount {
    requests: u64,
    billed_ms: u64,
    spec: Option<FunctionSpec>,
}

impl FunctionCount {
    fn add(&mut self, billed_ms: u64, spec: FunctionSpec) {
        self.requests += 1;
        self.billed_ms += billed_ms;
        self.spec = Some(spec);
    }
}

/// Reads how many commands a Redis server has run, to count what the functions cost there.
pub struct RedisCounter {
    client: redis::Client,
    baseline: u64,
}

impl RedisCounter {
    /// Connects to `url` (a plain `redis://` or `rediss://` URL) and remembers its count so far.
    ///
    /// # Errors
    /// When the server cannot be reached.
    pub async fn start(url: &str) -> anyhow::Result<Self> {
        chat_shared::tls::install_crypto_provider();
        let client = redis::Client::open(url)?;
        let baseline = commands_run(&client).await?;
        Ok(Self { client, baseline })
    }

    async fn since_start(&self) -> Option<u64> {
        let now = commands_run(&self.client).await.ok()?;
        Some(now.saturating_sub(self.baseline))
    }
}

/// Every command the server ran (scripts' inner commands included), minus the `INFO` calls that ask.
async fn commands_run(client: &redis::Client) -> redis::RedisResult<u64> {
    let mut conn = client.get_multiplexed_async_connection().await?;
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await?;
    Ok(info
        .lines()
        .filter(|line| line.starts_with("cmdstat_") && !line.starts_with("cmdstat_info:"))
        .filter_map(|line| {
            let calls = line.split_once("calls=")?.1;
            calls.split(',').next()?.parse::<u64>().ok()
        })
        .sum())
}

/// The counters. One per emulator; every socket, post and invocation adds to it.
pub struct Meter {
    started: Instant,
    messages_received: AtomicU64,
    messages_sent: AtomicU64,
    units: AtomicU64,
    connections: AtomicU64,
    closed_connection_ms: AtomicU64,
    functions: Mutex<BTreeMap<String, FunctionCount>>,
    refusals: Mutex<Refusals>,
    deleted: AtomicU64,
    redis: Option<RedisCounter>,
    prices: Prices,
}

/// Refusals by route and status (`"$connect 429"`) and by source address.
#[derive(Debug, Default, Clone)]
struct Refusals {
    by_route: BTreeMap<String, u64>,
    by_address: BTreeMap<String, BTreeMap<String, u64>>,
}

fn units(bytes: usize) -> u64 {
    u64::try_from(bytes.div_ceil(MESSAGE_UNIT_BYTES).max(1)).unwrap_or(u64::MAX)
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Meter {
    /// A meter pricing with `prices`, counting Redis commands through `redis` when given.
    pub fn new(prices: Prices, redis: Option<RedisCounter>) -> Self {
        Self {
            started: Instant::now(),
            messages_received: AtomicU64::new(0),
            messages_sent: AtomicU64::new(0),
            units: AtomicU64::new(0),
            connections: AtomicU64::new(0),
            closed_connection_ms: AtomicU64::new(0),
            functions: Mutex::default(),
            refusals: Mutex::default(),
            deleted: AtomicU64::new(0),
            redis,
            prices,
        }
    }

    /// `route`'s function answered `status` (4xx or 5xx) to a connection from `address`.
    pub fn refused(&self, route: &str, status: u64, address: &str) {
        let mut refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let why = format!("{route} {status}");
        *refusals
            .by_address
            .entry(address.to_owned())
            .or_default()
            .entry(why.clone())
            .or_default() += 1;
        *refusals.by_route.entry(why).or_default() += 1;
    }

    /// A connection was closed through DeleteConnection.
    pub fn deleted(&self) {
        self.deleted.fetch_add(1, Ordering::Relaxed);
    }

    /// A client sent a data message of `bytes`.
    pub fn received(&self, bytes: usize) {
        self.messages_received.fetch_add(1, Ordering::Relaxed);
        self.units.fetch_add(units(bytes), Ordering::Relaxed);
    }

    /// A frame of `bytes` reached a client.
    pub fn sent(&self, bytes: usize) {
        self.messages_sent.fetch_add(1, Ordering::Relaxed);
        self.units.fetch_add(units(bytes), Ordering::Relaxed);
    }

    /// A connection was accepted.
    pub fn opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection that lasted `lasted` has closed.
    pub fn closed(&self, lasted: Duration) {
        self.closed_connection_ms
            .fetch_add(ms(lasted), Ordering::Relaxed);
    }

    /// `function` ran for `took` (billed rounded up to the next millisecond, as Lambda does).
    pub fn invoked(&self, function: &str, spec: FunctionSpec, took: Duration) {
        let billed = took.as_nanos().div_ceil(1_000_000);
        let mut functions = self
            .functions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let billed_ms = u64::try_from(billed).unwrap_or(u64::MAX);
        // Looked up first: the name is copied once per function, not once per invocation.
        match functions.get_mut(function) {
            Some(count) => count.add(billed_ms, spec),
            None => {
                let mut count = FunctionCount::default();
                count.add(billed_ms, spec);
                functions.insert(function.to_owned(), count);
            }
        }
    }

    /// The counts so far and what they would cost; `live` are the open connections' durations so far.
    pub async fn snapshot(&self, live: impl IntoIterator<Item = Duration>) -> Value {
        let p = &self.prices;
        let connection_ms = self.closed_connection_ms.load(Ordering::Relaxed)
            + live.into_iter().map(ms).sum::<u64>();
        let connection_minutes = connection_ms as f64 / 60_000.0;
        let units = self.units.load(Ordering::Relaxed);
        let functions = self
            .functions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let (mut requests, mut gb_seconds, mut duration_cost) = (0_u64, 0.0_f64, 0.0_f64);
        let mut per_function = serde_json::Map::new();
        for (name, count) in &functions {
            let spec = count.spec.unwrap_or_default();
            let gbs = f64::from(spec.memory_mb) / 1024.0 * count.billed_ms as f64 / 1000.0;
            let rate = if spec.arm64 {
                p.lambda_gb_second_arm64
            } else {
                p.lambda_gb_second_x86_64
            };
            requests += count.requests;
            gb_seconds += gbs;
            duration_cost += gbs * rate;
            per_function.insert(
                name.clone(),
                json!({
                    "requests": count.requests,
                    "billedMs": count.billed_ms,
                    "memoryMb": spec.memory_mb,
                    "architecture": if spec.arm64 { "arm64" } else { "x86_64" },
                    "gbSeconds": gbs,
                }),
            );
        }
        let redis_commands = match &self.redis {
            Some(counter) => counter.since_start().await,
            None => None,
        };
        let per_million = |count: f64, price: f64| count * price / 1e6;
        let cost = json!({
            "messages": per_million(units as f64, p.websocket_messages_per_million),
            "connectionMinutes": per_million(connection_minutes, p.connection_minutes_per_million),
            "lambdaRequests": per_million(requests as f64, p.lambda_requests_per_million),
            "lambdaDuration": duration_cost,
            "redis": per_million(redis_commands.unwrap_or(0) as f64, p.redis_ecpus_per_million),
        });
        let total: f64 = cost
            .as_object()
            .map(|c| c.values().filter_map(Value::as_f64).sum())
            .unwrap_or_default();
        let mut cost = cost;
        cost["total"] = json!(total);
        json!({
            "seconds": self.started.elapsed().as_secs_f64(),
            "apiGateway": {
                "messagesReceived": self.messages_received.load(Ordering::Relaxed),
                "messagesSent": self.messages_sent.load(Ordering::Relaxed),
                "billedMessages": units,
                "connections": self.connections.load(Ordering::Relaxed),
                "connectionMinutes": connection_minutes,
            },
            "lambda": { "requests": requests, "gbSeconds": gb_seconds, "functions": per_function },
            "redis": redis_commands.map(|commands| json!({ "commands": commands, "ecpusAtLeast": commands })),
            "refusals": self.refusals_so_far(),
            "costUsd": cost,
            "prices": p,
        })
    }
}

impl Meter {
    fn refusals_so_far(&self) -> Value {
        let refusals = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        json!({
            "byRoute": refusals.by_route,
            "byAddress": refusals.by_address,
            "closedByDeleteConnection": self.deleted.load(Ordering::Relaxed),
        })
    }
}

/// One paragraph for the log when the emulator stops.
pub fn summary(snapshot: &Value) -> String {
    let n = |pointer: &str| snapshot.pointer(pointer).cloned().unwrap_or(Value::Null);
    format!(
        "what AWS would bill for this session: {} messages ({} received, {} sent), {:.1} connection-minutes, \
         {} Lambda requests, {:.3} GB-s, {} Redis commands: ${:.6} ({})",
        n("/apiGateway/billedMessages"),
        n("/apiGateway/messagesReceived"),
        n("/apiGateway/messagesSent"),
        n("/apiGateway/connectionMinutes")
            .as_f64()
            .unwrap_or_default(),
        n("/lambda/requests"),
        n("/lambda/gbSeconds").as_f64().unwrap_or_default(),
        n("/redis/commands"),
        n("/costUsd/total").as_f64().unwrap_or_default(),
        n("/prices/source").as_str().unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[tokio::test]
    async fn messages_are_billed_in_32_kb_units_in_both_directions() {
        let meter = Meter::new(Prices::default(), None);

        meter.received(10);
        meter.received(32 * 1024);
        meter.sent(32 * 1024 + 1);
        meter.sent(100 * 1024);
        let s = meter.snapshot([]).await;

        assert_eq!(s["apiGateway"]["messagesReceived"], 2);
        assert_eq!(s["apiGateway"]["messagesSent"], 2);
        assert_eq!(s["apiGateway"]["billedMessages"], 1 + 1 + 2 + 4);
        assert!(close(
            s["costUsd"]["messages"].as_f64().expect("cost"),
            8.0 / 1e6
        ));
    }

    #[tokio::test]
    async fn lambda_duration_is_rounded_up_to_the_millisecond_and_priced_by_memory_and_architecture()
     {
        let meter = Meter::new(Prices::default(), None);
        let arm = FunctionSpec {
            memory_mb: 256,
            arm64: true,
        };
        let x86 = FunctionSpec {
            memory_mb: 1024,
            arm64: false,
        };

        meter.invoked("f", arm, Duration::from_micros(1_200)); // billed 2 ms
        meter.invoked("f", arm, Duration::from_millis(8));
        meter.invoked("g", x86, Duration::from_millis(1000));
        let s = meter.snapshot([]).await;

        assert_eq!(s["lambda"]["requests"], 3);
        assert_eq!(s["lambda"]["functions"]["f"]["billedMs"], 10);
        let f_gbs = 0.25 * 0.010;
        assert!(close(
            s["lambda"]["functions"]["f"]["gbSeconds"]
                .as_f64()
                .expect("f"),
            f_gbs
        ));
        let expected = f_gbs * 0.000_013_333_4 + 1.0 * 0.000_016_666_7;
        assert!(close(
            s["costUsd"]["lambdaDuration"].as_f64().expect("cost"),
            expected
        ));
        assert!(close(
            s["costUsd"]["lambdaRequests"].as_f64().expect("cost"),
            3.0 * 0.20 / 1e6
        ));
    }

    #[tokio::test]
    async fn connection_minutes_count_closed_and_open_connections() {
        let meter = Meter::new(Prices::default(), None);

        meter.opened();
        meter.opened();
        meter.closed(Duration::from_secs(90));
        let s = meter.snapshot([Duration::from_secs(30)]).await;

        assert_eq!(s["apiGateway"]["connections"], 2);
        assert!(close(
            s["apiGateway"]["connectionMinutes"]
                .as_f64()
                .expect("minutes"),
            2.0
        ));
        assert!(close(
            s["costUsd"]["total"].as_f64().expect("total"),
            2.0 * 0.25 / 1e6
        ));
    }

    #[tokio::test]
    async fn refusals_are_counted_by_route_and_status_and_by_address_and_closes_apart() {
        let meter = Meter::new(Prices::default(), None);

        meter.refused("authorizer", 401, "203.0.113.1");
        meter.refused("$connect", 429, "203.0.113.1");
        meter.refused("$connect", 429, "203.0.113.2");
        meter.deleted();
        let s = meter.snapshot([]).await;

        assert_eq!(
            s["refusals"]["byRoute"],
            json!({ "$connect 429": 2, "authorizer 401": 1 })
        );
        assert_eq!(
            s["refusals"]["byAddress"],
            json!({
                "203.0.113.1": { "$connect 429": 1, "authorizer 401": 1 },
                "203.0.113.2": { "$connect 429": 1 }
            })
        );
        assert_eq!(s["refusals"]["closedByDeleteConnection"], 1);
    }

    #[test]
    fn a_price_file_overrides_only_what_it_names_and_rejects_unknown_fields() {
        let dir = std::env::temp_dir().join(format!("wschat-prices-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good.json");
        std::fs::write(
            &good,
            r#"{"websocketMessagesPerMillion": 0.8, "source": "eu"}"#,
        )
        .expect("write");
        let bad = dir.join("bad.json");
        std::fs::write(&bad, r#"{"websocketMessagePerMillion": 0.8}"#).expect("write");

        let prices = Prices::from_file(&good).expect("parses");
        assert!(close(prices.websocket_messages_per_million, 0.8));
        assert!(close(prices.connection_minutes_per_million, 0.25));
        assert!(
            Prices::from_file(&bad).is_err(),
            "a misspelt price is an error"
        );
        std::fs::remove_dir_all(&dir).ok();
    }
}

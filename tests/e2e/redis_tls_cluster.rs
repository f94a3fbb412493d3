//! The Redis room store over TLS and on a Redis Cluster, the two shapes of a deployed Redis (a managed Redis
//! behind `rediss://`, ElastiCache Serverless in cluster mode), against real servers these tests start themselves:
//! a TLS redis-server with a throw-away CA, and 3-node clusters, plain and TLS. Everything goes through
//! `connect_from_config`, the function the Lambda functions call at cold start.
//!
//! Needs `redis-server`, `redis-cli` (built with TLS, as Debian's are) and `openssl` on the PATH; without them the
//! tests fail with a message saying so: they never skip. Every server a test starts is killed, and its directory
//! removed, when the test ends, passed or panicked.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat_shared::WebsocketRequest;
use chat_shared::config::{Config, REDIS_CA_CERT_PATH, REDIS_CLUSTER, REDIS_KEY_PREFIX, REDIS_URL};
use chat_shared::fanout::FanoutSettings;
use chat_shared::gateway::RecordingGateway;
use chat_shared::handlers::{StartupError, default, error_chain, now_ms};
use chat_shared::rooms::RoomStore;
use chat_shared::rooms::redis::connect_from_config;
use chat_shared::wire::{ConnectionId, RoomName};
use serde_json::json;
use wschat_tests::unique_prefix;

/// How long any server may take to start, or a cluster to agree on its slots, before the test fails.
const STARTUP: Duration = Duration::from_secs(10);

fn id(raw: &str) -> ConnectionId {
    ConnectionId::parse(raw).expect("id")
}

fn room(raw: &str) -> RoomName {
    RoomName::parse(raw).expect("room")
}

/// Fails the test, with the way out, when `tool` is not installed.
fn require(tool: &str, version_arg: &str) {
    let found = Command::new(tool)
        .arg(version_arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "`{tool}` is not installed, and these tests start their own servers with it: install it \
         (`apt-get install redis-server redis-tools openssl`; tools/scripts/with-redis.sh does it for `make test`)"
    );
}

/// A scratch directory and the servers started in it; dropping it kills them and removes the directory, also
/// when the test panics.
struct Servers {
    dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Servers {
    fn new() -> Self {
        require("redis-server", "--version");
        require("redis-cli", "--version");
        let dir = std::env::temp_dir().join(format!("wschat-redis-tls-{:016x}", fastrand::u64(..)));
        std::fs::create_dir_all(&dir).expect("scratch directory");
        Self {
            dir,
            children: Vec::new(),
        }
    }

    /// Starts `redis-server` with `args` (and a private directory and log), waits until `port` accepts TCP
    /// connections. Returns `false` when the server exited first (its port was taken meanwhile), so the caller
    /// can retry on other ports; panics with its log on any other failure.
    async fn redis_server(&mut self, name: &str, port: u16, args: &[String]) -> bool {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir).expect("server directory");
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "notice"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.children.push((name.to_owned(), child));
        let deadline = Instant::now() + STARTUP;
        loop {
            if TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_ok() {
                return true;
            }
            let (_, child) = self.children.last_mut().expect("just pushed");
            if let Some(status) = child.try_wait().expect("try_wait") {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                if log.contains("Address already in use") {
                    self.children.pop();
                    return false;
                }
                panic!(
                    "redis-server {name} exited with {status} before listening on {port}:\n{log}"
                );
            }
            assert!(
                Instant::now() < deadline,
                "redis-server {name} did not listen on {port} within {STARTUP:?}:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `n` distinct ports that were free a moment ago.
fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("address").port())
        .collect()
}

fn run(what: &str, command: &mut Command) {
    let output = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed with {}:\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A throw-away CA, a server certificate it signed for 127.0.0.1 and localhost, and a second CA that signed
/// nothing the servers present.
struct Pki {
    ca: PathBuf,
    other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    fn generate(dir: &Path) -> Self {
        require("openssl", "version");
        let dir = dir.join("pki");
        std::fs::create_dir_all(&dir).expect("pki directory");
        let path = |name: &str| dir.join(name);
        let new_ca = |name: &str| {
            run(
                "openssl req (CA)",
                Command::new("openssl")
                    .args([
                        "req",
                        "-x509",
                        "-newkey",
                        "ec",
                        "-pkeyopt",
                        "ec_paramgen_curve:P-256",
                    ])
                    .args([
                        "-nodes",
                        "-days",
                        "2",
                        "-subj",
                        &format!("/CN=wschat test {name}"),
                    ])
                    .args(["-addext", "basicConstraints=critical,CA:TRUE"])
                    .args(["-addext", "keyUsage=critical,keyCertSign,cRLSign"])
                    .arg("-keyout")
                    .arg(path(&format!("{name}.key")))
                    .arg("-out")
                    .arg(path(&format!("{name}.crt"))),
            );
        };
        new_ca("ca");
        new_ca("other-ca");
        run(
            "openssl req (server)",
            Command::new("openssl")
                .args([
                    "req",
                    "-new",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:P-256",
                ])
                .args(["-nodes", "-subj", "/CN=127.0.0.1"])
                .arg("-keyout")
                .arg(path("server.key"))
                .arg("-out")
                .arg(path("server.csr")),
        );
        // clientAuth too: cluster nodes present the same certificate when they connect to each other.
        std::fs::write(
            path("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .expect("extensions file");
        run(
            "openssl x509 (sign the server certificate)",
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-CAcreateserial"])
                .arg("-in")
                .arg(path("server.csr"))
                .arg("-CA")
                .arg(path("ca.crt"))
                .arg("-CAkey")
                .arg(path("ca.key"))
                .arg("-extfile")
                .arg(path("server.ext"))
                .arg("-out")
                .arg(path("server.crt")),
        );
        Self {
            ca: path("ca.crt"),
            other_ca: path("other-ca.crt"),
            cert: path("server.crt"),
            key: path("server.key"),
        }
    }

    /// redis-server arguments: TLS on `port` only, no client certificates asked.
    fn server_args(&self, port: u16) -> Vec<String> {
        let mut args: Vec<String> = ["--port", "0", "--tls-port", &port.to_string()]
            .map(str::to_owned)
            .to_vec();
        for (flag, path) in [
            ("--tls-cert-file", &self.cert),
            ("--tls-key-file", &self.key),
            ("--tls-ca-cert-file", &self.ca),
        ] {
            args.push(flag.to_owned());
            args.push(path.display().to_string());
        }
        args.extend(["--tls-auth-clients", "no"].map(str::to_owned));
        args
    }

    fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).expect("CA certificate")
    }
}

fn config(vars: &[(&str, String)]) -> Config {
    Config::from_lookup(|name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    })
    .expect("valid configuration")
}

/// Starts a TLS-only redis-server; returns its port.
async fn tls_server(servers: &mut Servers, pki: &Pki) -> u16 {
    for _ in 0..3 {
        let port = free_ports(1)[0];
        if servers
            .redis_server("tls", port, &pki.server_args(port))
            .await
        {
            return port;
        }
    }
    panic!("no free port for the TLS redis-server after 3 attempts");
}

/// Joins two members to a room, reads them back, makes one leave: the store's whole life cycle.
async fn join_members_leave(store: &dyn RoomStore, stem: &str) {
    let lobby = room(&wschat_tests::unique_room(stem));
    store
        .join(&lobby, &id("a="), now_ms())
        .await
        .expect("join a");
    store
        .join(&lobby, &id("b="), now_ms())
        .await
        .expect("join b");

    let mut members = store.members(&lobby, now_ms()).await.expect("members");
    members.sort_by(|x, y| x.as_str().cmp(y.as_str()));
    assert_eq!(members, vec![id("a="), id("b=")]);
    assert_eq!(
        store.room_of(&id("a=")).await.expect("room_of"),
        Some(lobby.clone())
    );

    assert_eq!(
        store.leave(&id("a="), None).await.expect("leave"),
        Some(lobby.clone())
    );
    assert_eq!(
        store.members(&lobby, now_ms()).await.expect("members"),
        vec![id("b=")]
    );
    assert_eq!(store.room_of(&id("a=")).await.expect("room_of"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_joins_lists_and_leaves_over_tls_trusting_the_configured_ca() {
    let mut servers = Servers::new();
    let pki = Pki::generate(&servers.dir);
    let port = tls_server(&mut servers, &pki).await;
    let cfg = config(&[
        (REDIS_URL, format!("rediss://127.0.0.1:{port}")),
        (REDIS_CA_CERT_PATH, pki.ca.display().to_string()),
        (REDIS_KEY_PREFIX, unique_prefix()),
    ]);

    let store = connect_from_config(&cfg).await.expect("TLS connection");

    join_members_leave(store.as_ref(), "tls").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_the_client_does_not_trust_is_refused() {
    let mut servers = Servers::new();
    let pki = Pki::generate(&servers.dir);
    let port = tls_server(&mut servers, &pki).await;
    let url = format!("rediss://127.0.0.1:{port}");

    // Trusting another CA, then the system's roots (which never include a CA made a moment ago).
    let other_ca = connect_from_config(&config(&[
        (REDIS_URL, url.clone()),
        (REDIS_CA_CERT_PATH, pki.other_ca.display().to_string()),
    ]))
    .await;
    let system_roots = connect_from_config(&config(&[(REDIS_URL, url.clone())])).await;
    // redis-rs is built without `tls-rustls-insecure`: the URL cannot turn verification off either.
    let insecure = connect_from_config(&config(&[
        (REDIS_URL, format!("{url}/#insecure")),
        (REDIS_CA_CERT_PATH, pki.other_ca.display().to_string()),
    ]))
    .await;

    for (what, result) in [
        ("another CA", other_ca),
        ("the system roots", system_roots),
        ("#insecure", insecure),
    ] {
        let err = result
            .err()
            .unwrap_or_else(|| panic!("trusting {what}, the connection was accepted"));
        let chain = error_chain(&err);
        assert!(matches!(err, StartupError::Store(_)), "{what}: {chain}");
        let expected = if what == "#insecure" {
            "insecure"
        } else {
            "UnknownIssuer"
        };
        assert!(chain.contains(expected), "{what}: {chain}");
    }
}

/// A 3-node Redis Cluster (no replicas), plain or TLS.
struct Cluster {
    ports: Vec<u16>,
    ca_pem: Option<Vec<u8>>,
    /// `(first slot, last slot, port of the node serving them)`, read once the cluster is up.
    slots: Vec<(u16, u16, u16)>,
}

impl Cluster {
    async fn start(servers: &mut Servers, pki: Option<&Pki>) -> Self {
        'attempt: for _ in 0..3 {
            let ports = free_ports(6);
            let (client_ports, bus_ports) = ports.split_at(3);
            for (n, (port, bus)) in client_ports.iter().zip(bus_ports).enumerate() {
                let mut args: Vec<String> = match pki {
                    Some(pki) => {
                        let mut args = pki.server_args(*port);
                        args.extend(["--tls-cluster", "yes"].map(str::to_owned));
                        args
                    }
                    None => vec!["--port".to_owned(), port.to_string()],
                };
                args.extend(
                    [
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-port",
                        &bus.to_string(),
                        "--cluster-node-timeout",
                        "5000",
                    ]
                    .map(str::to_owned),
                );
                if !servers
                    .redis_server(&format!("node{n}"), *port, &args)
                    .await
                {
                    // A port was taken between probing and binding: start over on fresh ports.
                    for (_, mut child) in servers.children.drain(..) {
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    continue 'attempt;
                }
            }
            let mut cluster = Self {
                ports: client_ports.to_vec(),
                ca_pem: pki.map(Pki::ca_pem),
                slots: Vec::new(),
            };
            cluster.create(pki).await;
            cluster.slots = cluster.slot_map().await;
            return cluster;
        }
        panic!("no free ports for a 3-node cluster after 3 attempts");
    }

    /// `redis-cli --cluster create`, then waits until every node reports `cluster_state:ok`.
    async fn create(&self, pki: Option<&Pki>) {
        let mut create = Command::new("redis-cli");
        if let Some(pki) = pki {
            create.arg("--tls").arg("--cacert").arg(&pki.ca);
        }
        create
            .args(["--cluster", "create"])
            .args(self.ports.iter().map(|p| format!("127.0.0.1:{p}")))
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = create.spawn().expect("redis-cli starts");
        let deadline = Instant::now() + STARTUP;
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let output = child.wait_with_output().expect("output");
                panic!(
                    "redis-cli --cluster create did not finish within {STARTUP:?}:\n{}",
                    String::from_utf8_lossy(&output.stdout)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let output = child.wait_with_output().expect("output");
        assert!(
            status.success(),
            "redis-cli --cluster create failed with {status}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for port in &self.ports {
            let mut node = self.node(*port).await;
            let deadline = Instant::now() + STARTUP;
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut node)
                    .await
                    .expect("CLUSTER INFO");
                if info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {port} did not reach cluster_state:ok within {STARTUP:?}:\n{info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    fn url(&self) -> String {
        self.node_url(self.ports[0])
    }

    fn node_url(&self, port: u16) -> String {
        let scheme = if self.ca_pem.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// A plain (not cluster-aware) connection to one node, to see what that node holds.
    async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        let client = match &self.ca_pem {
            None => redis::Client::open(self.node_url(port)),
            Some(pem) => redis::Client::build_with_tls(
                self.node_url(port),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            ),
        }
        .expect("node URL");
        tokio::time::timeout(STARTUP, client.get_multiplexed_async_connection())
            .await
            .expect("node answers in time")
            .expect("node reachable")
    }

    /// `CLUSTER SLOTS`: each entry is `[first slot, last slot, [ip, port, id, ...], replicas...]`.
    async fn slot_map(&self) -> Vec<(u16, u16, u16)> {
        redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async::<Vec<redis::Value>>(&mut self.node(self.ports[0]).await)
            .await
            .expect("CLUSTER SLOTS")
            .into_iter()
            .map(|entry| {
                let redis::Value::Array(fields) = entry else {
                    panic!("CLUSTER SLOTS entry is not an array: {entry:?}");
                };
                let first: u16 = redis::from_redis_value_ref(&fields[0]).expect("first slot");
                let last: u16 = redis::from_redis_value_ref(&fields[1]).expect("last slot");
                let redis::Value::Array(primary) = &fields[2] else {
                    panic!("CLUSTER SLOTS primary is not an array: {:?}", fields[2]);
                };
                let port: u16 = redis::from_redis_value_ref(&primary[1]).expect("port");
                (first, last, port)
            })
            .collect()
    }

    /// The port of the node that serves `key`'s slot (the slot computed by the server: `CLUSTER KEYSLOT`).
    async fn owner(&self, node: &mut redis::aio::MultiplexedConnection, key: &str) -> u16 {
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query_async(node)
            .await
            .expect("CLUSTER KEYSLOT");
        self.slots
            .iter()
            .find(|(first, last, _)| (*first..=*last).contains(&slot))
            .map(|(_, _, port)| *port)
            .unwrap_or_else(|| panic!("no node serves slot {slot}"))
    }

    /// One node's count of an error reply, from `INFO errorstats` (`errorstat_MOVED:count=3`).
    async fn error_count(&self, port: u16, error: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("errorstats")
            .query_async(&mut self.node(port).await)
            .await
            .expect("INFO errorstats");
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("errorstat_{error}:count=")))
            .map_or(0, |n| n.trim().parse().expect("a count"))
    }

    /// One node's count of calls of `command`, from `INFO commandstats` (`cmdstat_evalsha:calls=3,...`).
    async fn calls(&self, port: u16, command: &str) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut self.node(port).await)
            .await
            .expect("INFO commandstats");
        info.lines()
            .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
            .map_or(0, |rest| {
                rest.split(',')
                    .next()
                    .expect("calls")
                    .parse()
                    .expect("a count")
            })
    }

    /// Whether the node serving `key` holds it, asked of that node directly.
    async fn holds(&self, key: &str) -> bool {
        let owner = self.owner(&mut self.node(self.ports[0]).await, key).await;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.node(owner).await)
            .await
            .expect("EXISTS")
    }
}

/// A room of the store's schema whose key lands on each node, and for each room two connections whose keys land
/// on other nodes than the room's, so every join, leave and prune spans nodes.
async fn spread(cluster: &Cluster, prefix: &str) -> Vec<(RoomName, Vec<ConnectionId>)> {
    let mut admin = cluster.node(cluster.ports[0]).await;
    let mut rooms = Vec::new();
    let mut used_nodes = BTreeSet::new();
    for n in 0.. {
        assert!(n < 10_000, "no room names spread over the 3 nodes");
        let name = format!("room{n}");
        let node = cluster
            .owner(&mut admin, &format!("{prefix}room:{{{name}}}"))
            .await;
        if !used_nodes.insert(node) {
            continue;
        }
        let mut members = Vec::new();
        for m in 0.. {
            assert!(m < 10_000, "no connection ids off node {node}");
            let conn = format!("{name}-c{m}=");
            if cluster
                .owner(&mut admin, &format!("{prefix}conn:{{{conn}}}"))
                .await
                != node
            {
                members.push(id(&conn));
                if members.len() == 2 {
                    members.sort_by(|x, y| x.as_str().cmp(y.as_str()));
                    break;
                }
            }
        }
        rooms.push((room(&name), members));
        if used_nodes.len() == cluster.ports.len() {
            return rooms;
        }
    }
    unreachable!("the loop returns or panics")
}

async fn cluster_store(cluster: &Cluster, pki: Option<&Pki>) -> (Arc<dyn RoomStore>, String) {
    let prefix = unique_prefix();
    let mut vars = vec![
        (REDIS_URL, cluster.url()),
        (REDIS_CLUSTER, "true".to_owned()),
        (REDIS_KEY_PREFIX, prefix.clone()),
    ];
    if let Some(pki) = pki {
        vars.push((REDIS_CA_CERT_PATH, pki.ca.display().to_string()));
    }
    let store = connect_from_config(&config(&vars))
        .await
        .unwrap_or_else(|e| panic!("cluster connection: {}", error_chain(&e)));
    (store, prefix)
}

/// Join, members, room_of, leave (with and without the room hint) and prune in rooms on every node, each
/// membership's two keys on different nodes; then checks where the keys live and that no node ever had to
/// redirect a request (`MOVED`): every command, pipeline and script went straight to the node owning its key.
async fn store_life_cycle_across_nodes(cluster: &Cluster, pki: Option<&Pki>) {
    let (store, prefix) = cluster_store(cluster, pki).await;
    let rooms = spread(cluster, &prefix).await;
    let joined_at = now_ms();

    for (room, members) in &rooms {
        for conn in members {
            store.join(room, conn, joined_at).await.expect("join");
        }
    }

    for (room, members) in &rooms {
        let mut listed = store.members(room, now_ms()).await.expect("members");
        listed.sort_by(|x, y| x.as_str().cmp(y.as_str()));
        assert_eq!(&listed, members, "members of {room}");
        for conn in members {
            assert_eq!(
                store.room_of(conn).await.expect("room_of").as_ref(),
                Some(room)
            );
            assert!(cluster.holds(&format!("{prefix}conn:{{{conn}}}")).await);
        }
        assert!(cluster.holds(&format!("{prefix}room:{{{room}}}")).await);
    }
    let mut admin = cluster.node(cluster.ports[0]).await;
    let mut room_nodes = BTreeSet::new();
    for (room, _) in &rooms {
        room_nodes.insert(
            cluster
                .owner(&mut admin, &format!("{prefix}room:{{{room}}}"))
                .await,
        );
    }
    assert_eq!(room_nodes.len(), 3, "the rooms live on all three nodes");

    let (first_room, first) = &rooms[0];
    let (second_room, second) = &rooms[1];
    let (third_room, third) = &rooms[2];
    assert_eq!(
        store.leave(&first[0], None).await.expect("leave"),
        Some(first_room.clone())
    );
    assert_eq!(
        store
            .leave(&second[0], Some(second_room))
            .await
            .expect("leave"),
        Some(second_room.clone())
    );
    store.prune(third_room, third).await.expect("prune");

    assert_eq!(
        store.members(first_room, now_ms()).await.expect("members"),
        vec![first[1].clone()]
    );
    assert_eq!(
        store.members(second_room, now_ms()).await.expect("members"),
        vec![second[1].clone()]
    );
    assert!(
        store
            .members(third_room, now_ms())
            .await
            .expect("members")
            .is_empty()
    );
    for gone in [&first[0], &second[0], &third[0], &third[1]] {
        assert_eq!(store.room_of(gone).await.expect("room_of"), None);
        assert!(!cluster.holds(&format!("{prefix}conn:{{{gone}}}")).await);
    }
    for port in &cluster.ports {
        assert_eq!(
            cluster.error_count(*port, "MOVED").await,
            0,
            "node {port} redirected a request"
        );
        assert_eq!(
            cluster.error_count(*port, "CROSSSLOT").await,
            0,
            "node {port} refused a cross-slot request"
        );
        assert!(
            cluster.calls(*port, "evalsha").await > 0,
            "the members script ran on node {port}, which holds a room"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_across_the_nodes_of_a_redis_cluster() {
    let mut servers = Servers::new();
    let cluster = Cluster::start(&mut servers, None).await;

    store_life_cycle_across_nodes(&cluster, None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_works_on_a_tls_cluster_like_elasticache_serverless() {
    let mut servers = Servers::new();
    let pki = Pki::generate(&servers.dir);
    let cluster = Cluster::start(&mut servers, Some(&pki)).await;

    store_life_cycle_across_nodes(&cluster, Some(&pki)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_reaches_every_member_of_a_room_on_a_cluster_and_gone_members_are_pruned() {
    let mut servers = Servers::new();
    let cluster = Cluster::start(&mut servers, None).await;
    let (store, prefix) = cluster_store(&cluster, None).await;
    let rooms = spread(&cluster, &prefix).await;
    let (lobby, members) = &rooms[0];
    let (elsewhere, outsiders) = &rooms[1];
    let sender = &members[0];
    let gone = &members[1];
    for conn in members {
        store.join(lobby, conn, now_ms()).await.expect("join");
    }
    for conn in outsiders {
        store.join(elsewhere, conn, now_ms()).await.expect("join");
    }
    let gateway = Arc::new(RecordingGateway::new());
    gateway.mark_gone(gone);
    let deps = default::Deps {
        rooms: store.clone(),
        gateway: gateway.clone(),
        fanout: FanoutSettings::default(),
    };
    // No authorizer context: the room comes from the sender's key, on another node than the room's.
    let event: WebsocketRequest = serde_json::from_value(json!({
        "requestContext": {
            "routeKey": "$default", "eventType": "MESSAGE", "connectionId": sender.as_str(), "messageId": "m1",
            "connectedAt": now_ms(), "requestTimeEpoch": now_ms(), "stage": "prod", "apiId": "x", "domainName": "d"
        },
        "body": r#"{"message":"hello, cluster"}"#,
        "isBase64Encoded": false
    }))
    .expect("event");

    let response = default::handle(&event, &deps).await.expect("handled");

    assert_eq!(response.status_code, 200);
    assert_eq!(
        gateway.received(sender),
        vec![r#"{"message":"hello, cluster"}"#.to_owned()]
    );
    for outsider in outsiders {
        assert!(
            gateway.received(outsider).is_empty(),
            "{outsider} is in another room"
        );
    }
    assert_eq!(
        store.members(lobby, now_ms()).await.expect("members"),
        vec![sender.clone()],
        "the gone member was pruned"
    );
    assert!(!cluster.holds(&format!("{prefix}conn:{{{gone}}}")).await);
}

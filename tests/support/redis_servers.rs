//! Real Redis servers a test starts itself and kills when it ends: a TLS redis-server with a throw-away CA
//! ([`Pki`]) and 3-node Redis Clusters, plain or TLS ([`Cluster`]), in a scratch directory ([`Servers`]).
//!
//! Needs `redis-server`, `redis-cli` (built with TLS, as Debian's are) and `openssl` on the PATH; without them the
//! tests fail with a message saying so: they never skip. Every server is killed, and its directory removed, when
//! the [`Servers`] that started it is dropped, also when the test panics.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long any server may take to start, or a cluster to agree on its slots, before the test fails.
pub const STARTUP: Duration = Duration::from_secs(10);

/// How long a cluster's failover may take before the test fails.
pub const FAILOVER: Duration = Duration::from_secs(30);

/// Fails the test, with the way out, when `tool` is not installed.
pub fn require(tool: &str, version_arg: &str) {
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
pub struct Servers {
    /// The scratch directory (certificates, server logs).
    pub dir: PathBuf,
    children: Vec<(String, Child)>,
}

impl Servers {
    /// A fresh scratch directory under the system temp dir.
    pub fn scratch() -> Self {
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
    pub async fn redis_server(&mut self, name: &str, port: u16, args: &[String]) -> bool {
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

impl Servers {
    /// The process id of server `name`.
    ///
    /// # Panics
    /// When no server of that name runs.
    pub fn pid(&self, name: &str) -> u32 {
        self.children
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, child)| child.id())
            .unwrap_or_else(|| panic!("no server named {name}"))
    }

    /// Kills server `name` (SIGKILL, like a crashed node) and waits for it; its directory stays.
    pub fn kill(&mut self, name: &str) {
        if let Some(i) = self.children.iter().position(|(n, _)| n == name) {
            let (_, mut child) = self.children.remove(i);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A redis-server a test owns and mistreats: paused (SIGSTOP, like a stalled node), killed, restarted with or
/// without its data (a failover that kept the data, or a node replaced, evicted or flushed).
pub struct FaultRedis {
    servers: Servers,
    port: u16,
}

impl FaultRedis {
    const NAME: &'static str = "fault";

    /// Starts one on a free port.
    pub async fn start() -> Self {
        for _ in 0..3 {
            let port = free_ports(1)[0];
            let mut servers = Servers::scratch();
            if servers
                .redis_server(Self::NAME, port, &Self::args(port))
                .await
            {
                return Self { servers, port };
            }
        }
        panic!("no free port for a redis-server after 3 attempts");
    }

    /// Starts one on `port`, which the caller reserved (the Lambda-mode fault stack's functions point at it).
    pub async fn start_on(port: u16) -> Self {
        let mut servers = Servers::scratch();
        assert!(
            servers
                .redis_server(Self::NAME, port, &Self::args(port))
                .await,
            "port {port} is taken: is another fault test running against the fault stack?"
        );
        Self { servers, port }
    }

    fn args(port: u16) -> Vec<String> {
        vec!["--port".to_owned(), port.to_string()]
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs one command on it with `redis-cli` and returns the answer (the test fails if the command does).
    pub fn cli(&self, args: &[&str]) -> String {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("redis-cli {args:?}: cannot run: {e}"));
        let answer = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            output.status.success() && !answer.starts_with("ERR"),
            "redis-cli {args:?} failed: {answer} {}",
            String::from_utf8_lossy(&output.stderr)
        );
        answer
    }

    /// Makes it a replica of the server on `port` (`REPLICAOF`): it refuses writes with `READONLY` from then on,
    /// and, when that server answers, takes its data.
    pub fn replicate(&self, port: u16) {
        self.cli(&["REPLICAOF", "127.0.0.1", &port.to_string()]);
    }

    /// Makes it a primary again (`REPLICAOF NO ONE`), keeping its data.
    pub fn promote(&self) {
        self.cli(&["REPLICAOF", "NO", "ONE"]);
    }

    /// Waits until it is a replica in sync with its primary.
    pub async fn wait_in_sync(&self) {
        let started = Instant::now();
        while !self
            .cli(&["INFO", "replication"])
            .contains("master_link_status:up")
        {
            assert!(
                started.elapsed() < STARTUP,
                "the replica on port {} did not sync within {STARTUP:?}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn signal(&self, signal: &str) {
        let pid = self.servers.pid(Self::NAME).to_string();
        let status = Command::new("kill")
            .args([signal, &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill {signal} {pid} failed");
    }

    /// Stops the process (SIGSTOP): connections stay open, nothing is answered.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a paused process go on (SIGCONT): it answers what queued up meanwhile.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Kills the process: connections are refused until [`FaultRedis::restart_empty`] or
    /// [`FaultRedis::restart_with_data`].
    pub fn kill(&mut self) {
        self.servers.kill(Self::NAME);
    }

    /// Kills it and starts a new, empty one on the same port.
    pub async fn restart_empty(&mut self) {
        self.kill();
        let _ = std::fs::remove_file(self.servers.dir.join(Self::NAME).join("dump.rdb"));
        self.start_again().await;
    }

    /// Saves its data (`SAVE`): a later [`FaultRedis::kill`] and [`FaultRedis::start_again`] bring back this
    /// snapshot, and lose whatever was written after it, as a restore from a backup or a failover to a replica
    /// that was behind does.
    pub fn save(&self) {
        self.cli(&["SAVE"]);
    }

    /// Saves its data and kills it: [`FaultRedis::start_again`] brings it back with that data.
    pub fn kill_after_saving(&mut self) {
        run(
            "redis-cli SAVE",
            Command::new("redis-cli").args(["-p", &self.port.to_string(), "SAVE"]),
        );
        self.kill();
    }

    /// Saves its data, kills it and starts a new one on the same port that loads the data.
    pub async fn restart_with_data(&mut self) {
        self.kill_after_saving();
        self.start_again().await;
    }

    /// Starts the server again after [`FaultRedis::kill`].
    pub async fn start_again(&mut self) {
        let port = self.port;
        assert!(
            self.servers
                .redis_server(Self::NAME, port, &Self::args(port))
                .await,
            "port {port} was taken while the fault redis-server was down"
        );
    }
}

impl Drop for FaultRedis {
    fn drop(&mut self) {
        // A stopped process ignores SIGKILL's delivery until continued on some systems: continue it first.
        if self.servers.children.iter().any(|(n, _)| n == Self::NAME) {
            self.signal("-CONT");
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
pub fn free_ports(n: usize) -> Vec<u16> {
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
pub struct Pki {
    /// The CA that signed the server certificate (PEM).
    pub ca: PathBuf,
    /// A CA that signed nothing the servers use (PEM).
    pub other_ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

impl Pki {
    /// Generates the two CAs and a `127.0.0.1`/`localhost` server certificate in `dir` with openssl.
    pub fn generate(dir: &Path) -> Self {
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
    pub fn server_args(&self, port: u16) -> Vec<String> {
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

    /// The CA certificate's PEM bytes.
    pub fn ca_pem(&self) -> Vec<u8> {
        std::fs::read(&self.ca).expect("CA certificate")
    }
}

/// Starts a TLS-only redis-server; returns its port.
pub async fn tls_server(servers: &mut Servers, pki: &Pki) -> u16 {
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

/// A 3-node Redis Cluster (no replicas), plain or TLS.
pub struct Cluster {
    /// The client ports of the three nodes.
    pub ports: Vec<u16>,
    ca_pem: Option<Vec<u8>>,
    /// `(first slot, last slot, port of the node serving them)`, read once the cluster is up.
    slots: Vec<(u16, u16, u16)>,
}

impl Cluster {
    /// Starts three nodes in `servers` (TLS-only when `pki` is given), joins them and waits until they agree.
    pub async fn start(servers: &mut Servers, pki: Option<&Pki>) -> Self {
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
    pub async fn create(&self, pki: Option<&Pki>) {
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

    /// Starts a plain node on a free port and makes it a replica of the node on `primary` (`CLUSTER MEET`, then
    /// `CLUSTER REPLICATE`); returns its port once it is in sync.
    pub async fn add_replica(&self, servers: &mut Servers, primary: u16) -> u16 {
        let ports = free_ports(2);
        let args: Vec<String> = [
            "--port",
            &ports[0].to_string(),
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-port",
            &ports[1].to_string(),
            "--cluster-node-timeout",
            "5000",
        ]
        .map(str::to_owned)
        .to_vec();
        assert!(
            servers.redis_server("replica", ports[0], &args).await,
            "the replica's port {} was taken",
            ports[0]
        );
        let mut replica = self.node(ports[0]).await;
        let mut of = self.node(primary).await;
        let primary_id: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut of)
            .await
            .expect("CLUSTER MYID");
        // A full sync at once, not after the default 5 s wait for more replicas.
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg(0)
            .query_async::<()>(&mut of)
            .await
            .expect("CONFIG SET");
        // Its bus port (not port + 10000 here): `<id> 127.0.0.1:<port>@<bus> myself,master …`.
        let nodes: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut of)
            .await
            .expect("CLUSTER NODES");
        let bus = nodes
            .lines()
            .find(|line| line.contains("myself"))
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|address| address.split(['@', ',']).nth(1))
            .unwrap_or_else(|| panic!("no bus port in CLUSTER NODES:\n{nodes}"))
            .to_owned();
        redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(primary)
            .arg(&bus)
            .query_async::<()>(&mut replica)
            .await
            .expect("CLUSTER MEET");
        let deadline = Instant::now() + STARTUP;
        // REPLICATE needs the replica to know the primary first: the MEET's gossip takes a moment.
        while let Err(err) = redis::cmd("CLUSTER")
            .arg("REPLICATE")
            .arg(&primary_id)
            .query_async::<()>(&mut replica)
            .await
        {
            assert!(
                Instant::now() < deadline,
                "CLUSTER REPLICATE kept failing: {err}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.wait_until(ports[0], "INFO", "replication", "master_link_status:up")
            .await;
        // Every primary must know it before it can vote for it in a failover.
        let replica_id: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut replica)
            .await
            .expect("CLUSTER MYID");
        for port in &self.ports {
            self.wait_until(*port, "CLUSTER", "NODES", &replica_id)
                .await;
        }
        ports[0]
    }

    /// `CLUSTER FAILOVER` on the replica on `port` (coordinated with its primary, so no write lands on both): it
    /// becomes the primary of its slots. A manual failover that does not complete within Redis's 5 s is dropped
    /// by Redis (on a busy machine the request to the primary can be lost): it is asked again, for up to
    /// [`FAILOVER`].
    pub async fn failover(&self, port: u16) {
        let mut node = self.node(port).await;
        let deadline = Instant::now() + FAILOVER;
        loop {
            redis::cmd("CLUSTER")
                .arg("FAILOVER")
                .query_async::<()>(&mut node)
                .await
                .expect("CLUSTER FAILOVER");
            let asked = Instant::now();
            while asked.elapsed() < Duration::from_secs(6) {
                let role: String = redis::cmd("INFO")
                    .arg("replication")
                    .query_async(&mut node)
                    .await
                    .unwrap_or_default();
                if role.contains("role:master") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            assert!(
                Instant::now() < deadline,
                "node {port} did not become a primary within {FAILOVER:?}"
            );
        }
    }

    /// Waits until `command section` on the node on `port` answers text holding `wanted`.
    async fn wait_until(&self, port: u16, command: &str, section: &str, wanted: &str) {
        let mut node = self.node(port).await;
        let deadline = Instant::now() + STARTUP;
        loop {
            let answer: String = redis::cmd(command)
                .arg(section)
                .query_async(&mut node)
                .await
                .unwrap_or_default();
            if answer.contains(wanted) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {port}: `{command} {section}` did not say {wanted} within {STARTUP:?}:\n{answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The URL of the first node, as a client is configured with.
    pub fn url(&self) -> String {
        self.node_url(self.ports[0])
    }

    /// The URL of the node on `port`.
    pub fn node_url(&self, port: u16) -> String {
        let scheme = if self.ca_pem.is_some() {
            "rediss"
        } else {
            "redis"
        };
        format!("{scheme}://127.0.0.1:{port}")
    }

    /// A plain (not cluster-aware) connection to one node, to see what that node holds.
    pub async fn node(&self, port: u16) -> redis::aio::MultiplexedConnection {
        chat_shared::tls::install_crypto_provider();
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
    pub async fn slot_map(&self) -> Vec<(u16, u16, u16)> {
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
    pub async fn owner(&self, node: &mut redis::aio::MultiplexedConnection, key: &str) -> u16 {
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
    pub async fn error_count(&self, port: u16, error: &str) -> u64 {
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
    pub async fn calls(&self, port: u16, command: &str) -> u64 {
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
    pub async fn holds(&self, key: &str) -> bool {
        let owner = self.owner(&mut self.node(self.ports[0]).await, key).await;
        redis::cmd("EXISTS")
            .arg(key)
            .query_async(&mut self.node(owner).await)
            .await
            .expect("EXISTS")
    }
}

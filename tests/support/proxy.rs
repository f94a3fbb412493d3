//! A TCP proxy in front of Redis that stands for a DNS name: each new connection goes to the server the name
//! points at now; [`SwitchProxy::point_at`] moves new connections only, and open ones stay with the server they
//! reached, as clients that resolved the name before a failover do.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// The proxy; dropping it closes its port and every connection through it.
pub struct SwitchProxy {
    port: u16,
    target: Arc<AtomicU16>,
    tasks: JoinSet<()>,
}

impl SwitchProxy {
    /// Listens on 127.0.0.1:`port` (0: any free port) and sends connections to 127.0.0.1:`target`.
    ///
    /// # Panics
    /// When the port cannot be bound.
    pub async fn start(port: u16, target: u16) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|e| panic!("the proxy cannot listen on port {port}: {e}"));
        let port = listener.local_addr().expect("a bound address").port();
        let target = Arc::new(AtomicU16::new(target));
        let mut tasks = JoinSet::new();
        let to = Arc::clone(&target);
        tasks.spawn(async move {
            // The connections' tasks live as long as the accept loop: aborting it drops them all.
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let port = to.load(Ordering::SeqCst);
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(("127.0.0.1", port)).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self {
            port,
            target,
            tasks,
        }
    }

    /// `redis://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// New connections go to 127.0.0.1:`target` from now on.
    pub fn point_at(&self, target: u16) {
        self.target.store(target, Ordering::SeqCst);
    }
}

impl Drop for SwitchProxy {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

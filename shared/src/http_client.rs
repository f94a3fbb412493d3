//! The one HTTP client of the functions: HTTP/1.1 over [`crate::tls::https_connector`], keep-alive, each
//! connection back in the pool the moment its answer has been read. Under every signed AWS call
//! ([`crate::signed`]: PostToConnection, Invoke, GetSecretValue) and the issuer's key fetches
//! ([`crate::auth::fetch`]).
//!
//! # Why not hyper-util's pooled client
//! hyper-util's `Client` hands a connection back to its pool from a task it spawns once the answer's head is in,
//! which runs only after the caller has moved on. A fan-out starts its next post in the same poll in which one
//! ends, so it found no idle connection and opened a new one: in the 1x50 benchmark cell one `ws-default`
//! opened hundreds of connections a second and kept up to a thousand, and a new connection (its socket, its
//! buffers, its task, fresh pages for them) costs many posts' worth of CPU (docs/benchmark.md, "Where the CPU
//! goes"). Here the connection is idle again as soon as the caller has the body, so a function keeps about as
//! many connections as it has posts in flight.
//!
//! # Reuse
//! Idle connections are kept per origin (scheme and authority), newest first, for [`IDLE_TIMEOUT`] and at most
//! [`MAX_IDLE`] of them. One the server closed is dropped when next seen. A request that a reused connection
//! turns away before writing it (the server closed it meanwhile) is sent once more on a new connection; one that
//! was written is never sent again, as a POST must not be.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, Scheme};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use tower_service::Service as _;

/// A boxed error from below (the connector, hyper).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How long an unused connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most idle connections kept (over all origins): more than the posts a function has in flight.
pub const MAX_IDLE: usize = 128;

/// One request's answer: the status and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, read to the end.
    pub body: Bytes,
}

/// An HTTP/1.1 client with a pool of keep-alive connections; clones share the pool.
#[derive(Clone)]
pub struct HttpClient {
    connector: crate::tls::HttpsConnector,
    idle: Arc<Mutex<Vec<Idle>>>,
    timeout: Duration,
    max_answer_bytes: usize,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A connection waiting for its next request.
struct Idle {
    origin: Origin,
    sender: SendRequest<Full<Bytes>>,
    since: Instant,
}

/// Where a connection goes: requests to one origin share connections.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
}

impl Origin {
    fn of(uri: &http::Uri) -> Result<Self, BoxError> {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority)) => Ok(Self {
                scheme: scheme.clone(),
                authority: authority.clone(),
            }),
            _ => Err(format!("not an absolute http(s) URL: {uri}").into()),
        }
    }

    /// The `Host` header: the host, and the port unless it is the scheme's default (RFC 9110, 7.2).
    fn host(&self) -> Result<http::HeaderValue, BoxError> {
        let default = if self.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        let host = match self.authority.port_u16() {
            Some(port) if port != default => format!("{}:{port}", self.authority.host()),
            _ => self.authority.host().to_owned(),
        };
        Ok(http::HeaderValue::try_from(host)?)
    }
}

impl HttpClient {
    /// A client whose requests give up after `timeout` (connecting included) and whose answers may weigh at most
    /// `max_answer_bytes`.
    pub fn new(timeout: Duration, max_answer_bytes: usize) -> Self {
        Self {
            connector: crate::tls::https_connector(timeout),
            idle: Arc::default(),
            timeout,
            max_answer_bytes,
        }
    }

    /// Sends `request` (an absolute `http://` or `https://` URI) and reads its answer.
    ///
    /// # Errors
    /// When no connection can be opened, the request cannot be sent or answered, the answer is too large, or all
    /// that takes longer than the timeout.
    pub async fn send(&self, request: http::Request<Full<Bytes>>) -> Result<Answer, BoxError> {
        let authority = request.uri().authority().cloned();
        tokio::time::timeout(self.timeout, self.exchange(request))
            .await
            .map_err(|_| {
                let from = authority.as_ref().map_or("", Authority::as_str);
                format!("no answer from {from} within {:?}", self.timeout)
            })?
    }

    /// Idle connections kept now (for tests and the load tool).
    pub fn idle_connections(&self) -> usize {
        self.lock().len()
    }

    async fn exchange(&self, request: http::Request<Full<Bytes>>) -> Result<Answer, BoxError> {
        let target = request.uri().clone();
        let origin = Origin::of(&target)?;
        // As a client of an origin server sends it: the path in the request line, the authority in Host
        // (RFC 9112, 3.2).
        let (mut head, body) = request.into_parts();
        if !head.headers.contains_key(http::header::HOST) {
            head.headers.insert(http::header::HOST, origin.host()?);
        }
        head.uri = target
            .path_and_query()
            .map_or_else(|| http::Uri::from_static("/"), |p| p.clone().into());
        let mut request = http::Request::from_parts(head, body);

        let (mut sender, mut reused) = self.sender_for(&origin, &target).await?;
        loop {
            match sender.try_send_request(request).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let body = Limited::new(response.into_body(), self.max_answer_bytes)
                        .collect()
                        .await?
                        .to_bytes();
                    self.checkin(origin, sender);
                    return Ok(Answer { status, body });
                }
                Err(mut err) => match err.take_message() {
                    // Turned away unwritten by a connection that was idle: the server closed it meanwhile.
                    Some(unsent) if reused => {
                        request = unsent;
                        sender = self.connect(&target).await?;
                        reused = false;
                    }
                    _ => return Err(err.into_error().into()),
                },
            }
        }
    }

    /// An idle connection to `origin`, once it is ready, else a new one; and whether it was idle.
    async fn sender_for(
        &self,
        origin: &Origin,
        target: &http::Uri,
    ) -> Result<(SendRequest<Full<Bytes>>, bool), BoxError> {
        // Bounded: each turn takes one connection out of the pool.
        while let Some(mut sender) = self.checkout(origin) {
            if sender.is_ready() || sender.ready().await.is_ok() {
                return Ok((sender, true));
            }
        }
        Ok((self.connect(target).await?, false))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest idle connection to `origin`, ready for a request if one is; closed and expired ones are dropped.
    fn checkout(&self, origin: &Origin) -> Option<SendRequest<Full<Bytes>>> {
        let now = Instant::now();
        let mut idle = self.lock();
        idle.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < IDLE_TIMEOUT);
        let found = idle
            .iter()
            .rposition(|c| c.origin == *origin && c.sender.is_ready())
            .or_else(|| idle.iter().rposition(|c| c.origin == *origin))?;
        Some(idle.remove(found).sender)
    }

    /// Keeps `sender` for the next request, unless its connection is closing. Its answer has been read, so it is
    /// ready again at once or nearly (its task has yet to see the answer's end); [`Self::sender_for`] waits for that
    /// rather than open another connection.
    fn checkin(&self, origin: Origin, sender: SendRequest<Full<Bytes>>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.lock();
        if idle.len() >= MAX_IDLE {
            // The oldest goes: its connection closes when its sender is dropped.
            idle.remove(0);
        }
        idle.push(Idle {
            origin,
            sender,
            since: Instant::now(),
        });
    }

    /// A new connection to `target`'s origin (TCP, TLS for https), its HTTP/1.1 task spawned, ready for a request.
    async fn connect(&self, target: &http::Uri) -> Result<SendRequest<Full<Bytes>>, BoxError> {
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx)).await?;
        let io = connector.call(target.clone()).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                let err: &dyn std::error::Error = &err;
                tracing::debug!(error = err, "HTTP connection ended with an error");
            }
        });
        sender.ready().await?;
        Ok(sender)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A keep-alive HTTP/1.1 server answering every request `200 ok`, counting connections and requests, and
    /// closing each connection after `per_connection` requests (announced with `Connection: close` when `announce`).
    async fn server(
        per_connection: usize,
        announce: bool,
    ) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let connections = Arc::new(AtomicUsize::new(0));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (count, seen) = (connections.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    for served in 1..=per_connection {
                        let head = loop {
                            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                                buf.drain(..end + 4);
                                break head;
                            }
                            let mut chunk = [0_u8; 4096];
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .map_or(0, |n| n.parse::<usize>().unwrap_or(0));
                        while buf.len() < length {
                            let mut chunk = [0_u8; 4096];
                            match socket.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        }
                        buf.drain(..length);
                        seen.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(head);
                        let close = if announce && served == per_connection {
                            "connection: close\r\n"
                        } else {
                            ""
                        };
                        let answer =
                            format!("HTTP/1.1 200 OK\r\n{close}content-length: 2\r\n\r\nok");
                        if socket.write_all(answer.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        (url, connections, heads)
    }

    fn post(url: &str) -> http::Request<Full<Bytes>> {
        http::Request::post(format!("{url}/@connections/a%3D?x=1"))
            .body(Full::new(Bytes::from_static(b"{}")))
            .expect("request")
    }

    fn client() -> HttpClient {
        HttpClient::new(Duration::from_secs(5), 1024)
    }

    #[tokio::test]
    async fn requests_one_after_another_share_one_connection_and_send_origin_form_with_host() {
        let (url, connections, heads) = server(usize::MAX, false).await;
        let client = client();

        for _ in 0..20 {
            let answer = client.send(post(&url)).await.expect("answered");
            assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
        }

        assert_eq!(connections.load(Ordering::SeqCst), 1);
        assert_eq!(client.idle_connections(), 1);
        let heads = heads.lock().unwrap_or_else(PoisonError::into_inner);
        let authority = url.trim_start_matches("http://");
        let first = &heads[0];
        assert!(
            first.starts_with("POST /@connections/a%3D?x=1 HTTP/1.1\r\n"),
            "{first}"
        );
        assert!(first.contains(&format!("host: {authority}")), "{first}");
    }

    #[tokio::test]
    async fn a_fan_out_of_posts_keeps_as_many_connections_as_posts_in_flight() {
        use futures_util::StreamExt as _;
        let (url, connections, _) = server(usize::MAX, false).await;
        let client = client();

        for _ in 0..5 {
            let answers: Vec<_> = futures_util::stream::iter(0..200)
                .map(|_| client.send(post(&url)))
                .buffer_unordered(16)
                .collect()
                .await;
            assert!(
                answers
                    .iter()
                    .all(|a| a.as_ref().is_ok_and(|a| a.status == 200))
            );
        }

        let opened = connections.load(Ordering::SeqCst);
        assert!(
            (1..=16).contains(&opened),
            "1,000 posts 16 at a time opened {opened} connections"
        );
    }

    #[tokio::test]
    async fn a_connection_the_server_closes_is_not_used_again() {
        let (url, connections, heads) = server(2, true).await;
        let client = client();

        for _ in 0..6 {
            client.send(post(&url)).await.expect("answered");
        }

        assert_eq!(
            heads.lock().unwrap_or_else(PoisonError::into_inner).len(),
            6
        );
        assert_eq!(connections.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_while_idle_is_dropped_for_a_new_one() {
        // Closed without a word after one answer: the client learns it only when it next looks.
        let (url, connections, heads) = server(1, false).await;
        let client = client();

        for _ in 0..4 {
            let answer = client.send(post(&url)).await.expect("answered");
            assert_eq!(answer.status, 200);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        assert_eq!(
            heads.lock().unwrap_or_else(PoisonError::into_inner).len(),
            4
        );
        assert_eq!(connections.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn an_answer_over_the_limit_is_an_error() {
        let (url, _, _) = server(usize::MAX, false).await;
        let client = HttpClient::new(Duration::from_secs(5), 1);

        let err = client.send(post(&url)).await.expect_err("too large");

        assert!(err.to_string().contains("length limit"), "{err}");
    }

    #[tokio::test]
    async fn a_relative_url_is_refused() {
        let request = http::Request::get("/x")
            .body(Full::new(Bytes::new()))
            .expect("request");

        let err = client().send(request).await.expect_err("refused");

        assert!(err.to_string().contains("not an absolute"), "{err}");
    }
}

//! The one HTTP client of the functions: HTTP/1.1 over [`crate::tls::https_connector`] (TCP, rustls for
//! `https://`), keep-alive connections in a pool. Under every signed AWS call ([`crate::signed`]:
//! PostToConnection, Invoke, GetSecretValue) and the issuer's key fetches ([`crate::auth::fetch`]).
//!
//! # Why its own HTTP/1.1
//! A fan-out is one small request per member, and `ws-default`'s CPU per delivered frame is held to 2.5× the
//! signed floor: one signed request written as bytes to a keep-alive socket and its answer parsed with
//! `httparse` (docs/benchmark.md, "CPU per PostToConnection"). hyper's client put about 3.5 µs a post over that
//! floor (its request and header maps, a channel and a task between the caller and each connection, a body
//! stream for the answer), and hyper-util's pool, which hands connections back from a task it spawns, kept opening
//! new connections in steady state under the 1x50 benchmark cell (600 to 2,900 a second; up to a thousand kept
//! by one instance). Here the caller's task writes the request, reads the answer and puts the connection back,
//! and the same cell opens no connection after the first invocation.
//!
//! What it speaks is what AWS's HTTP APIs and an issuer's key endpoint need: requests with a `content-length`
//! body; answers framed by `content-length`, `transfer-encoding: chunked` or the end of the connection (RFC
//! 9112, 6.3), 1xx answers skipped. A connection is reused only when its answer was framed and nothing follows
//! it, and neither side said `connection: close`.
//!
//! # Reuse
//! Idle connections are kept per origin (scheme and authority), newest first, for [`IDLE_TIMEOUT`] and at most
//! [`MAX_IDLE`] of them. Before one is reused it is read without waiting: one the server has closed (or that
//! holds bytes nobody asked for) is dropped for the next, or a new one. A request written to a connection that
//! then fails is never sent again, as a POST must not be: the caller hears of the failure.

use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Buf as _, Bytes, BytesMut};
use http::uri::{Authority, Scheme};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tower_service::Service as _;

/// A boxed error from below (the connector, the socket, a malformed answer).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// How long an unused connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The most idle connections kept (over all origins): more than the posts a function has in flight.
pub const MAX_IDLE: usize = 128;
/// The most an answer's head (status line and headers) may weigh.
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The most headers an answer may have.
const MAX_HEADERS: usize = 64;

/// One request's answer: the status and the body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body, read to the end.
    pub body: Bytes,
}

/// What went wrong with one request.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL is not an absolute `http://` or `https://` one.
    #[error("not an absolute http(s) URL: {0}")]
    Url(String),
    /// A header name or value that would break the request (a line break in it).
    #[error("header {0} holds a line break")]
    Header(String),
    /// No connection could be opened.
    #[error("could not connect to {authority}")]
    Connect {
        /// Where to.
        authority: String,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// Writing the request or reading the answer failed.
    #[error("the exchange with {authority} failed")]
    Io {
        /// With whom.
        authority: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The answer is not HTTP/1.1 as this client reads it.
    #[error("{authority} answered malformed HTTP: {reason}")]
    Malformed {
        /// Who.
        authority: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The answer's body is larger than the client takes.
    #[error("{authority} answered more than {limit} bytes")]
    TooLarge {
        /// Who.
        authority: String,
        /// The client's limit.
        limit: usize,
    },
    /// The whole exchange took longer than the client's timeout.
    #[error("no answer from {authority} within {timeout:?}")]
    Timeout {
        /// From whom.
        authority: String,
        /// The client's timeout.
        timeout: Duration,
    },
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

/// What the connector opens: TCP, or TLS over TCP.
type Stream = TokioIo<hyper_rustls::MaybeHttpsStream<TokioIo<tokio::net::TcpStream>>>;

/// One open connection and what it has read past the last answer (nothing, when it is idle).
struct Connection {
    stream: Stream,
    buf: BytesMut,
}

/// A connection waiting for its next request. Boxed: a TLS connection's state is large, and it moves in and out
/// of the pool at every request.
struct Idle {
    origin: Origin,
    connection: Box<Connection>,
    since: Instant,
}

/// Where a connection goes: requests to one origin share connections.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Origin {
    scheme: Scheme,
    authority: Authority,
}

impl Origin {
    fn of(uri: &http::Uri) -> Result<Self, HttpError> {
        match (uri.scheme(), uri.authority()) {
            (Some(scheme), Some(authority))
                if *scheme == Scheme::HTTP || *scheme == Scheme::HTTPS =>
            {
                Ok(Self {
                    scheme: scheme.clone(),
                    authority: authority.clone(),
                })
            }
            _ => Err(HttpError::Url(uri.to_string())),
        }
    }

    /// The `Host` header: the host, and the port unless it is the scheme's default (RFC 9110, 7.2).
    fn host(&self) -> std::borrow::Cow<'_, str> {
        let default = if self.scheme == Scheme::HTTPS {
            443
        } else {
            80
        };
        match self.authority.port_u16() {
            Some(port) if port != default => self.authority.as_str().into(),
            _ => self.authority.host().into(),
        }
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

    /// Sends `method uri` with `headers` (`host` and `content-length` are the client's) and `body`, and reads
    /// the answer.
    ///
    /// # Errors
    /// [`HttpError`]: a bad URL or header, no connection, a failed or malformed exchange, an answer too large,
    /// or all of it taking longer than the timeout.
    pub async fn send(
        &self,
        method: &str,
        uri: &http::Uri,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Answer, HttpError> {
        let origin = Origin::of(uri)?;
        let request = request_bytes(method, uri, &origin, headers, body)?;
        let no_body = method.eq_ignore_ascii_case("HEAD");
        let exchange = async {
            let mut connection = match self.checkout(&origin) {
                Some(connection) => connection,
                None => self.connect(uri, &origin).await?,
            };
            let io = |source| HttpError::Io {
                authority: origin.authority.to_string(),
                source,
            };
            connection.stream.write_all(&request).await.map_err(io)?;
            connection.stream.flush().await.map_err(io)?;
            let (answer, reusable) = self.read_answer(&mut connection, &origin, no_body).await?;
            if reusable {
                self.checkin(origin.clone(), connection);
            }
            Ok(answer)
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| HttpError::Timeout {
                authority: origin.authority.to_string(),
                timeout: self.timeout,
            })?
    }

    /// Idle connections kept now.
    #[cfg(test)]
    fn idle_connections(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Idle>> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The newest idle connection to `origin` that is still open and quiet; expired ones, and those the server
    /// closed, are dropped on the way.
    fn checkout(&self, origin: &Origin) -> Option<Box<Connection>> {
        let now = Instant::now();
        let mut idle = self.lock();
        idle.retain(|c| now.duration_since(c.since) < IDLE_TIMEOUT);
        while let Some(found) = idle.iter().rposition(|c| c.origin == *origin) {
            let mut connection = idle.swap_remove(found).connection;
            if connection.is_quiet() {
                return Some(connection);
            }
        }
        None
    }

    /// Keeps `connection` for the next request to `origin`.
    fn checkin(&self, origin: Origin, connection: Box<Connection>) {
        let mut idle = self.lock();
        if idle.len() >= MAX_IDLE {
            // The oldest goes, and its connection closes.
            idle.remove(0);
        }
        idle.push(Idle {
            origin,
            connection,
            since: Instant::now(),
        });
    }

    /// A new connection to `uri`'s origin (TCP, TLS for https).
    async fn connect(
        &self,
        uri: &http::Uri,
        origin: &Origin,
    ) -> Result<Box<Connection>, HttpError> {
        let failed = |source| HttpError::Connect {
            authority: origin.authority.to_string(),
            source,
        };
        let mut connector = self.connector.clone();
        std::future::poll_fn(|cx| connector.poll_ready(cx))
            .await
            .map_err(failed)?;
        let stream = connector.call(uri.clone()).await.map_err(failed)?;
        Ok(Box::new(Connection {
            stream: TokioIo::new(stream),
            buf: BytesMut::with_capacity(1024),
        }))
    }

    /// Reads one answer from `connection`: the answer, and whether the connection may carry another request.
    async fn read_answer(
        &self,
        connection: &mut Connection,
        origin: &Origin,
        no_body: bool,
    ) -> Result<(Answer, bool), HttpError> {
        let authority = || origin.authority.to_string();
        let malformed = |reason: String| HttpError::Malformed {
            authority: authority(),
            reason,
        };
        loop {
            let head = loop {
                match parse_head(&connection.buf).map_err(malformed)? {
                    Some(head) => break head,
                    None if connection.buf.len() > MAX_HEAD_BYTES => {
                        return Err(malformed("the head is too large".to_owned()));
                    }
                    None => connection.fill(authority).await?,
                }
            };
            connection.buf.advance(head.length);
            if (100..200).contains(&head.status) {
                continue; // informational: the answer follows
            }
            let too_large = || HttpError::TooLarge {
                authority: authority(),
                limit: self.max_answer_bytes,
            };
            let mut reusable = head.keep_alive;
            let body = if no_body || head.status == 204 || head.status == 304 {
                Bytes::new()
            } else if head.chunked {
                loop {
                    match decode_chunked(&connection.buf, self.max_answer_bytes)
                        .map_err(malformed)?
                    {
                        Chunked::Complete { body, consumed } => {
                            connection.buf.advance(consumed);
                            break body;
                        }
                        Chunked::TooLarge => return Err(too_large()),
                        // Chunk sizes and trailers are bounded too.
                        Chunked::Incomplete
                            if connection.buf.len() > self.max_answer_bytes + MAX_HEAD_BYTES =>
                        {
                            return Err(too_large());
                        }
                        Chunked::Incomplete => connection.fill(authority).await?,
                    }
                }
            } else if let Some(length) = head.content_length {
                if length > self.max_answer_bytes {
                    return Err(too_large());
                }
                while connection.buf.len() < length {
                    connection.fill(authority).await?;
                }
                connection.buf.split_to(length).freeze()
            } else {
                // Framed by the end of the connection, which is then of no further use.
                reusable = false;
                loop {
                    if connection.buf.len() > self.max_answer_bytes {
                        return Err(too_large());
                    }
                    if !connection.fill_or_end(authority).await? {
                        break connection.buf.split().freeze();
                    }
                }
            };
            // Bytes after the answer that nobody asked for: the connection is out of step.
            reusable &= connection.buf.is_empty();
            let answer = Answer {
                status: head.status,
                body,
            };
            return Ok((answer, reusable));
        }
    }
}

impl Connection {
    /// Reads more into the buffer; the end of the connection here is an error.
    async fn fill(&mut self, authority: impl Fn() -> String) -> Result<(), HttpError> {
        if self.fill_or_end(&authority).await? {
            Ok(())
        } else {
            Err(HttpError::Io {
                authority: authority(),
                source: std::io::ErrorKind::UnexpectedEof.into(),
            })
        }
    }

    /// Reads more into the buffer: false at the end of the connection.
    async fn fill_or_end(&mut self, authority: impl Fn() -> String) -> Result<bool, HttpError> {
        if self.buf.capacity() - self.buf.len() < 512 {
            // Doubling: a large answer is read in few reads, and a chunked one decoded as few times.
            self.buf.reserve(self.buf.len().max(4096));
        }
        match self.stream.read_buf(&mut self.buf).await {
            Ok(0) => Ok(false),
            Ok(_) => Ok(true),
            Err(source) => Err(HttpError::Io {
                authority: authority(),
                source,
            }),
        }
    }

    /// Whether the connection is open with nothing to read, as an idle one must be: read without waiting.
    fn is_quiet(&mut self) -> bool {
        let mut probe = [0_u8; 1];
        let mut probe = ReadBuf::new(&mut probe);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        matches!(
            std::pin::Pin::new(&mut self.stream).poll_read(&mut cx, &mut probe),
            Poll::Pending
        )
    }
}

/// The request as bytes: request line, `host`, the caller's headers, `content-length` (when there is a body or
/// the method usually has one), then the body.
fn request_bytes(
    method: &str,
    uri: &http::Uri,
    origin: &Origin,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<u8>, HttpError> {
    let path = uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let host = origin.host();
    let mut request = Vec::with_capacity(
        64 + method.len()
            + path.len()
            + host.len()
            + headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>()
            + body.len(),
    );
    if !method.bytes().all(|b| b.is_ascii_alphabetic()) || method.is_empty() {
        return Err(HttpError::Header(format!("method {method:?}")));
    }
    let mut line = |parts: &[&[u8]]| {
        for part in parts {
            request.extend_from_slice(part);
        }
        request.extend_from_slice(b"\r\n");
    };
    line(&[method.as_bytes(), b" ", path.as_bytes(), b" HTTP/1.1"]);
    line(&[b"host: ", host.as_bytes()]);
    for (name, value) in headers {
        let breaks = |s: &str| s.bytes().any(|b| b == b'\r' || b == b'\n');
        if breaks(name) || breaks(value) || name.is_empty() {
            return Err(HttpError::Header((*name).to_owned()));
        }
        if ["host", "content-length", "transfer-encoding", "connection"]
            .iter()
            .any(|own| name.eq_ignore_ascii_case(own))
        {
            continue;
        }
        line(&[name.as_bytes(), b": ", value.as_bytes()]);
    }
    let usually_has_body = ["POST", "PUT", "PATCH"]
        .iter()
        .any(|m| method.eq_ignore_ascii_case(m));
    if !body.is_empty() || usually_has_body {
        line(&[b"content-length: ", body.len().to_string().as_bytes()]);
    }
    line(&[]);
    request.extend_from_slice(body);
    Ok(request)
}

/// An answer's head, as far as this client needs it.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    status: u16,
    /// Its bytes, up to and including the empty line.
    length: usize,
    content_length: Option<usize>,
    chunked: bool,
    /// HTTP/1.1 without `connection: close`, or HTTP/1.0 with `connection: keep-alive`.
    keep_alive: bool,
}

/// The head at the start of `buf`, `None` while it is incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut headers);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(err) => return Err(err.to_string()),
    };
    let mut head = Head {
        status: response.code.unwrap_or(0),
        length,
        content_length: None,
        chunked: false,
        keep_alive: response.version == Some(1),
    };
    for header in response.headers.iter() {
        let value = std::str::from_utf8(header.value)
            .map_err(|_| format!("header {} is not text", header.name))?
            .trim();
        if header.name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse()
                .map_err(|_| format!("content-length {value:?}"))?;
            if head.content_length.is_some_and(|l| l != length) {
                return Err("two content-lengths".to_owned());
            }
            head.content_length = Some(length);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked must be the last coding (RFC 9112, 6.1); any other coding this client cannot read.
            let last = value.rsplit(',').next().unwrap_or("").trim();
            if !last.eq_ignore_ascii_case("chunked") {
                return Err(format!("transfer-encoding {value:?}"));
            }
            head.chunked = true;
        } else if header.name.eq_ignore_ascii_case("connection") {
            for option in value.split(',').map(str::trim) {
                if option.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if option.eq_ignore_ascii_case("keep-alive") && response.version == Some(0) {
                    head.keep_alive = true;
                }
            }
        }
    }
    if head.chunked {
        // Transfer-encoding overrides content-length (RFC 9112, 6.3), and the pair is a smuggling smell: do not
        // reuse the connection after it.
        if head.content_length.take().is_some() {
            head.keep_alive = false;
        }
    }
    Ok(Some(head))
}

/// A chunked body at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
enum Chunked {
    /// The body, and the bytes it took (chunks, last chunk, trailers, empty line).
    Complete { body: Bytes, consumed: usize },
    /// More bytes are needed.
    Incomplete,
    /// The body is larger than allowed.
    TooLarge,
}

/// Decodes the chunked body at the start of `buf` (RFC 9112, 7.1), at most `limit` bytes of it.
fn decode_chunked(buf: &[u8], limit: usize) -> Result<Chunked, String> {
    let mut body = Vec::new();
    let mut at = 0;
    let line_end = |from: usize| {
        buf[from..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map(|i| from + i)
    };
    loop {
        let Some(end) = line_end(at) else {
            return Ok(Chunked::Incomplete);
        };
        let line = std::str::from_utf8(&buf[at..end]).map_err(|_| "a chunk size is not text")?;
        let size = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| format!("chunk size {size:?}"))?;
        at = end + 2;
        if size == 0 {
            // Trailers, up to the empty line; they are not read.
            loop {
                let Some(end) = line_end(at) else {
                    return Ok(Chunked::Incomplete);
                };
                let empty = end == at;
                at = end + 2;
                if empty {
                    return Ok(Chunked::Complete {
                        body: body.into(),
                        consumed: at,
                    });
                }
            }
        }
        if body.len().saturating_add(size) > limit {
            return Ok(Chunked::TooLarge);
        }
        if buf.len() < at + size + 2 {
            return Ok(Chunked::Incomplete);
        }
        body.extend_from_slice(&buf[at..at + size]);
        if &buf[at + size..at + size + 2] != b"\r\n" {
            return Err("a chunk does not end with CRLF".to_owned());
        }
        at += size + 2;
    }
}

#[cfg(test)]
mod tests;

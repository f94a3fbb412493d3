use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// How the test server answers a request: the writes it makes (each flushed on its own), then whether it closes.
struct Reply {
    writes: Vec<Vec<u8>>,
    close: bool,
}

fn reply(text: &str) -> Reply {
    Reply {
        writes: vec![text.as_bytes().to_vec()],
        close: false,
    }
}

const OK: &str = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";

/// What the test server saw: connections accepted, and each request's head and body.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    requests: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Seen {
    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<(String, Vec<u8>)> {
        self.requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A server on loopback that reads requests (head, then a `content-length` body) and answers each with
/// `answer(its index on the connection)`.
async fn server(answer: impl Fn(usize) -> Reply + Send + Sync + 'static) -> (String, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Seen::default());
    let answer = Arc::new(answer);
    let (seen2, answer2) = (seen.clone(), answer.clone());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            seen2.connections.fetch_add(1, Ordering::SeqCst);
            let (seen, answer) = (seen2.clone(), answer2.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for index in 0.. {
                    let Some((head, body)) = read_request(&mut socket, &mut buf).await else {
                        return;
                    };
                    seen.requests
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((head, body));
                    let reply = answer(index);
                    for write in reply.writes {
                        if socket.write_all(&write).await.is_err() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    if reply.close {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

async fn read_request(
    socket: &mut tokio::net::TcpStream,
    buf: &mut Vec<u8>,
) -> Option<(String, Vec<u8>)> {
    let head = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            break head;
        }
        let mut chunk = [0_u8; 4096];
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
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
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    Some((head, buf.drain(..length).collect()))
}

fn client() -> HttpClient {
    HttpClient::new(Duration::from_secs(5), 1024)
}

async fn post(client: &HttpClient, url: &str) -> Result<Answer, HttpError> {
    let uri: http::Uri = format!("{url}/@connections/a%3D?x=1").parse().expect("uri");
    client
        .send(
            "POST",
            &uri,
            &[("content-type", "application/json")],
            b"{\"a\":1}",
        )
        .await
}

#[tokio::test]
async fn requests_one_after_another_share_one_connection_and_are_written_as_http_1_1() {
    let (url, seen) = server(|_| reply(OK)).await;
    let client = client();

    for _ in 0..20 {
        let answer = post(&client, &url).await.expect("answered");
        assert_eq!((answer.status, &answer.body[..]), (200, &b"ok"[..]));
    }

    assert_eq!(seen.connections(), 1);
    assert_eq!(client.idle_connections(), 1);
    let (head, body) = &seen.requests()[0];
    let authority = url.trim_start_matches("http://");
    assert_eq!(
        head,
        &format!(
            "POST /@connections/a%3D?x=1 HTTP/1.1\r\nhost: {authority}\r\n\
             content-type: application/json\r\ncontent-length: 7"
        )
    );
    assert_eq!(body, b"{\"a\":1}");
}

#[tokio::test]
async fn a_fan_out_of_posts_keeps_as_many_connections_as_posts_in_flight() {
    use futures_util::StreamExt as _;
    let (url, seen) = server(|_| reply(OK)).await;
    let client = client();

    for _ in 0..5 {
        let answers: Vec<_> = futures_util::stream::iter(0..200)
            .map(|_| post(&client, &url))
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_ok_and(|a| a.status == 200))
        );
    }

    let opened = seen.connections();
    assert!(
        (1..=16).contains(&opened),
        "1,000 posts 16 at a time opened {opened} connections"
    );
}

#[tokio::test]
async fn a_connection_either_side_closes_is_not_used_again() {
    let (url, seen) = server(|index| Reply {
        writes: vec![
            format!(
                "HTTP/1.1 200 OK\r\n{}content-length: 2\r\n\r\nok",
                if index == 1 {
                    "Connection: close\r\n"
                } else {
                    ""
                }
            )
            .into_bytes(),
        ],
        close: index == 1,
    })
    .await;
    let client = client();

    for _ in 0..6 {
        post(&client, &url).await.expect("answered");
    }

    assert_eq!(seen.requests().len(), 6);
    assert_eq!(seen.connections(), 3, "two requests a connection");
}

#[tokio::test]
async fn a_connection_the_server_closed_while_idle_is_dropped_for_a_new_one() {
    // Closed without a word after each answer: the client learns it when it next looks.
    let (url, seen) = server(|_| Reply {
        writes: vec![OK.as_bytes().to_vec()],
        close: true,
    })
    .await;
    let client = client();

    for _ in 0..4 {
        let answer = post(&client, &url).await.expect("answered");
        assert_eq!(answer.status, 200);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert_eq!(seen.requests().len(), 4);
    assert_eq!(seen.connections(), 4);
}

#[tokio::test]
async fn a_chunked_answer_arriving_in_pieces_is_read_whole_and_the_connection_kept() {
    let (url, seen) = server(|_| Reply {
        writes: vec![
            b"HTTP/1.1 410 Gone\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhel".to_vec(),
            b"lo\r\n".to_vec(),
            b"6\r\n world\r\n0\r\nx-trailer: 1\r\n".to_vec(),
            b"\r\n".to_vec(),
        ],
        close: false,
    })
    .await;
    let client = client();

    for _ in 0..2 {
        let answer = post(&client, &url).await.expect("answered");
        assert_eq!(
            (answer.status, &answer.body[..]),
            (410, &b"hello world"[..])
        );
    }

    assert_eq!(seen.connections(), 1);
}

#[tokio::test]
async fn an_answer_framed_by_the_end_of_the_connection_is_read_to_the_end() {
    let (url, seen) = server(|_| Reply {
        writes: vec![b"HTTP/1.1 200 OK\r\n\r\nall of ".to_vec(), b"it".to_vec()],
        close: true,
    })
    .await;
    let client = client();

    for _ in 0..2 {
        let answer = post(&client, &url).await.expect("answered");
        assert_eq!(&answer.body[..], b"all of it");
    }

    assert_eq!(seen.connections(), 2);
}

#[tokio::test]
async fn an_informational_answer_is_skipped_and_a_no_content_one_has_no_body() {
    let (url, seen) = server(|_| {
        reply("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\ncontent-length: 5\r\n\r\n")
    })
    .await;
    let client = client();

    for _ in 0..2 {
        let answer = post(&client, &url).await.expect("answered");
        assert_eq!((answer.status, answer.body.len()), (204, 0));
    }

    assert_eq!(seen.connections(), 1);
}

#[tokio::test]
async fn answers_over_the_limit_are_refused_and_their_connections_dropped() {
    let (url, seen) = server(|index| {
        if index % 2 == 0 {
            reply("HTTP/1.1 200 OK\r\ncontent-length: 2000\r\n\r\n")
        } else {
            reply("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n800\r\n")
        }
    })
    .await;
    let client = client();

    for _ in 0..2 {
        let err = post(&client, &url).await.expect_err("too large");
        assert!(
            matches!(err, HttpError::TooLarge { limit: 1024, .. }),
            "{err}"
        );
    }

    assert_eq!(seen.connections(), 2);
}

#[tokio::test]
async fn a_malformed_answer_is_an_error_naming_the_server() {
    let (url, _) = server(|_| reply("HTTP/1.1 200 OK\r\ncontent-length: many\r\n\r\n")).await;

    let err = post(&client(), &url).await.expect_err("malformed");

    assert!(matches!(err, HttpError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let (url, _) = server(|_| Reply {
        writes: vec![],
        close: false,
    })
    .await;
    let client = HttpClient::new(Duration::from_millis(200), 1024);

    let err = post(&client, &url).await.expect_err("no answer");

    assert!(matches!(err, HttpError::Timeout { .. }), "{err}");
}

#[tokio::test]
async fn a_header_with_a_line_break_or_a_relative_url_is_refused_before_anything_is_sent() {
    let (url, seen) = server(|_| reply(OK)).await;
    let client = client();
    let uri: http::Uri = format!("{url}/x").parse().expect("uri");

    let err = client
        .send("POST", &uri, &[("x-a", "1\r\nx-b: 2")], b"")
        .await
        .expect_err("refused");
    assert!(matches!(err, HttpError::Header(_)), "{err}");
    let err = client
        .send("GET", &"/x".parse().expect("uri"), &[], b"")
        .await
        .expect_err("refused");
    assert!(matches!(err, HttpError::Url(_)), "{err}");

    assert_eq!(seen.connections(), 0);
}

#[test]
fn a_head_gives_its_framing_and_whether_the_connection_stays_open() {
    let head = |text: &str| {
        parse_head(text.as_bytes())
            .expect("parses")
            .expect("complete")
    };

    let plain = head("HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\nrest");
    assert_eq!(
        plain,
        Head {
            status: 200,
            length: 39,
            content_length: Some(12),
            chunked: false,
            keep_alive: true
        }
    );
    assert!(!head("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!head("HTTP/1.0 200 OK\r\n\r\n").keep_alive);
    assert!(head("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    let both = head("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n");
    assert!(both.chunked && both.content_length.is_none() && !both.keep_alive);
    assert_eq!(parse_head(b"HTTP/1.1 200 OK\r\nContent-"), Ok(None));
    assert!(
        parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").is_err()
    );
    assert!(parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n").is_err());
    assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
}

#[test]
fn a_chunked_body_is_decoded_only_when_whole_and_within_the_limit() {
    let whole = b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nnext";
    assert_eq!(
        decode_chunked(whole, 100),
        Ok(Chunked::Complete {
            body: Bytes::from_static(b"abcde"),
            consumed: whole.len() - 4
        })
    );
    for cut in 0..whole.len() - 4 {
        assert_eq!(
            decode_chunked(&whole[..cut], 100),
            Ok(Chunked::Incomplete),
            "cut at {cut}"
        );
    }
    assert_eq!(decode_chunked(whole, 4), Ok(Chunked::TooLarge));
    assert!(decode_chunked(b"zz\r\n", 100).is_err());
    assert!(decode_chunked(b"3\r\nabcX\r\n", 100).is_err());
}

#[test]
fn the_host_header_names_the_port_only_when_it_is_not_the_scheme_s_default() {
    let host = |url: &str| {
        Origin::of(&url.parse().expect("uri"))
            .expect("origin")
            .host()
            .into_owned()
    };

    assert_eq!(
        host("https://abc.execute-api.eu-west-1.amazonaws.com/prod"),
        "abc.execute-api.eu-west-1.amazonaws.com"
    );
    assert_eq!(host("https://h:443/"), "h");
    assert_eq!(host("http://h:80/"), "h");
    assert_eq!(host("http://127.0.0.1:3000/x"), "127.0.0.1:3000");
    assert!(Origin::of(&"ftp://h/x".parse().expect("uri")).is_err());
}

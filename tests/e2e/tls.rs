//! The emulator's `--tls`: `wss://` and `https://` with a certificate of a local CA, and the in-process functions
//! posting to `https://…/@connections` with their own Management API client (`--posts http`), trusting that CA as
//! deployed functions trust theirs through `AWS_CA_BUNDLE`.

use std::sync::Arc;

use chat_shared::config::Config;
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use wschat_emulator::backend::{InProcessOptions, Posts, StoreChoice};
use wschat_emulator::tls::LocalTls;
use wschat_emulator::{BackendChoice, Emulator, Options};
use wschat_tests::{Client, unique_room};

/// An emulator serving TLS with a CA made in a scratch folder, its functions in process posting over HTTPS.
async fn tls_emulator() -> (Emulator, Arc<LocalTls>, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("wschat-tls-test-{:016x}", fastrand::u64(..)));
    let tls = Arc::new(LocalTls::in_dir(&dir, &[]).expect("a local CA"));
    let options = Options {
        tls: Some(tls.clone()),
        ..Options::default()
    };
    let backend = BackendChoice::InProcess(InProcessOptions {
        store: StoreChoice::Memory,
        config: Config::default(),
        posts: Posts::Http,
    });
    let emulator = Emulator::start("127.0.0.1:0".parse().expect("addr"), options, backend)
        .await
        .expect("the emulator starts");
    (emulator, tls, dir)
}

async fn join(emulator: &Emulator, tls: &LocalTls, room: &str) -> Client {
    let url = format!("wss://{}/local?room={room}", emulator.addr());
    Client::open_trusting(url.into_client_request().expect("request"), tls.ca())
        .await
        .expect("a client trusting the local CA gets in")
}

#[tokio::test]
async fn over_tls_every_member_gets_the_message_posted_to_https_connections() {
    let (emulator, tls, dir) = tls_emulator().await;
    let room = unique_room("tls");
    let mut ann = join(&emulator, &tls, &room).await;
    let mut bob = join(&emulator, &tls, &room).await;

    ann.say("over TLS").await;
    let to_ann = ann.recv_json().await;
    let to_bob = bob.recv_json().await;
    let meter = emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    assert_eq!(to_ann["message"], "over TLS");
    assert_eq!(to_bob["message"], "over TLS");
    // Posts::Http: had the functions' client refused the certificate, nothing would have arrived.
    assert_eq!(meter["apiGateway"]["messagesSent"], 2, "{meter}");
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_local_ca_is_refused_and_the_pages_are_told_wss() {
    let (emulator, tls, dir) = tls_emulator().await;
    let url = format!("wss://{}/local?room=lobby", emulator.addr());
    // Trusting the system's roots only, as a browser that was never told of the local CA.
    let stranger = Client::open(url.into_client_request().expect("request")).await;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Empty<bytes::Bytes>>(
        chat_shared::tls::https_connector(std::time::Duration::from_secs(5)),
    );
    // This process trusts the CA since the emulator started (as its in-process functions do).
    let answer = client
        .get(
            format!("{}/config.js", emulator.url())
                .parse()
                .expect("uri"),
        )
        .await
        .expect("https://…/config.js answers");
    let status = answer.status();
    let body = http_body_util::BodyExt::collect(answer.into_body())
        .await
        .expect("body")
        .to_bytes();
    let ca_file = std::fs::read_to_string(tls.ca_path()).expect("the CA file");
    emulator.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);

    let err = stranger
        .err()
        .expect("an unknown CA is refused")
        .to_string();
    assert!(
        err.contains("UnknownIssuer") || err.contains("certificate"),
        "{err}"
    );
    assert_eq!(status, 200);
    let body = String::from_utf8(body.to_vec()).expect("text");
    let config: Value = serde_json::from_str(
        body.split_once("= ")
            .and_then(|(_, json)| json.trim().strip_suffix(';'))
            .expect("window.WSCHAT_CONFIG = {…};"),
    )
    .expect("JSON");
    assert!(
        config["websocketUrl"]
            .as_str()
            .expect("a URL")
            .starts_with("wss://"),
        "{config}"
    );
    assert!(
        ca_file.starts_with("-----BEGIN CERTIFICATE-----"),
        "{ca_file}"
    );
}

//! `wschat-emulator` as a standalone local API Gateway for any WebSocket API: the binary reads a template at
//! run time, invokes its functions by logical id through a stand-in Lambda Invoke API (as it would front
//! `sam local start-lambda`), prices the session with a price file, and prints the bill when it stops.

use std::io::{BufRead as _, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::post;
use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use http_body_util::{BodyExt as _, Full};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket API of three Python functions and an authorizer: nothing here is wschat's.
const TEMPLATE: &str = r#"
AWSTemplateFormatVersion: "2010-09-09"
Transform: AWS::Serverless-2016-10-31
Globals:
  Function: { Runtime: python3.12, MemorySize: 512 }
Resources:
  EchoApi:
    Type: AWS::ApiGatewayV2::Api
    Properties: { Name: echo, ProtocolType: WEBSOCKET, RouteSelectionExpression: "$request.body.action" }
  ConnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties:
      ApiId: !Ref EchoApi
      RouteKey: $connect
      AuthorizationType: CUSTOM
      AuthorizerId: !Ref Gate
      Target: !Sub "integrations/${ConnectIntegration}"
  ConnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { IntegrationUri: !Sub "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${OnConnect.Arn}/invocations" }
  EchoRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref EchoApi, RouteKey: echo, Target: !Sub "integrations/${EchoIntegration}" }
  EchoIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { IntegrationUri: !Sub "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${OnEcho.Arn}/invocations" }
  DisconnectRoute:
    Type: AWS::ApiGatewayV2::Route
    Properties: { ApiId: !Ref EchoApi, RouteKey: $disconnect, Target: !Sub "integrations/${DisconnectIntegration}" }
  DisconnectIntegration:
    Type: AWS::ApiGatewayV2::Integration
    Properties: { IntegrationUri: !Sub "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${OnDisconnect.Arn}/invocations" }
  Gate:
    Type: AWS::ApiGatewayV2::Authorizer
    Properties: { AuthorizerUri: !Sub "arn:aws:apigateway:r:lambda:path/2015-03-31/functions/${Gatekeeper.Arn}/invocations" }
  OnConnect: { Type: AWS::Serverless::Function, Properties: { Handler: app.connect } }
  OnEcho: { Type: AWS::Serverless::Function, Properties: { Handler: app.echo, MemorySize: 1024, Architectures: [arm64] } }
  OnDisconnect: { Type: AWS::Serverless::Function, Properties: { Handler: app.disconnect } }
  Gatekeeper: { Type: AWS::Serverless::Function, Properties: { Handler: app.authorize } }
"#;

type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// The stand-in Invoke API. `OnEcho` posts the message back through the emulator's Management API, at the
/// endpoint the event names, as a real function would.
async fn stand_in(calls: Calls) -> String {
    let app = axum::Router::new()
        .route(
            "/2015-03-31/functions/{function}/invocations",
            post(
                |State(calls): State<Calls>, Path(function): Path<String>, axum::Json(event): axum::Json<Value>| async move {
                    calls.lock().expect("calls").push((function.clone(), event.clone()));
                    let answer = match function.as_str() {
                        "Gatekeeper" => json!({
                            "principalId": "ann",
                            "policyDocument": { "Version": "2012-10-17", "Statement": [{ "Action": "execute-api:Invoke", "Effect": "Allow", "Resource": "*" }] },
                            "context": { "user": "ann" }
                        }),
                        "OnEcho" => {
                            let ctx = &event["requestContext"];
                            // Connection ids are base64: a `/` or `+` in one must be escaped in the path.
                            let id = percent_encoding::utf8_percent_encode(
                                ctx["connectionId"].as_str().expect("connectionId"),
                                percent_encoding::NON_ALPHANUMERIC,
                            );
                            let url = format!(
                                "http://{}/{}/@connections/{id}",
                                ctx["domainName"].as_str().expect("domainName"),
                                ctx["stage"].as_str().expect("stage"),
                            );
                            let said: Value = serde_json::from_str(event["body"].as_str().expect("body")).expect("JSON body");
                            let echo = json!({ "echo": said["text"], "user": ctx["authorizer"]["user"] });
                            let (status, _) = http("POST", &url, echo.to_string().into_bytes()).await;
                            assert_eq!(status, 200, "the post back reached the client");
                            json!({ "statusCode": 200 })
                        }
                        _ => json!({ "statusCode": 200 }),
                    };
                    axum::Json(answer)
                },
            ),
        )
        .with_state(calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    format!("http://{addr}")
}

async fn http(method: &str, url: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let request = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", "AWS4-HMAC-SHA256 Credential=stand-in")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = tokio::time::timeout(Duration::from_secs(5), client.request(request))
        .await
        .expect("answered in time")
        .expect("HTTP");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, body)
}

/// Kills the process with this pid when dropped (a failed assertion unwinds through it).
struct Reaper(u32);

impl Drop for Reaper {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fronts_any_invoke_server_by_logical_id_with_a_template_read_at_run_time() {
    let dir = std::env::temp_dir().join(format!("wschat-standalone-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let template = dir.join("template.yaml");
    std::fs::write(&template, TEMPLATE).expect("template");
    let prices = dir.join("prices.json");
    std::fs::write(
        &prices,
        r#"{"websocketMessagesPerMillion": 2.0, "source": "test prices"}"#,
    )
    .expect("prices");
    let calls = Calls::default();
    let invoke_url = stand_in(calls.clone()).await;

    let mut emulator = Command::new(env!("CARGO_BIN_EXE_wschat-emulator"))
        .args([
            "--port",
            "0",
            "--function-names",
            "logical-id",
            "--lambda-invoke-url",
            &invoke_url,
        ])
        .arg("--template")
        .arg(&template)
        .arg("--prices")
        .arg(&prices)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the emulator starts");
    // Whatever happens below, the emulator does not outlive the test (a reader of its output would wait for it).
    let _reaper = Reaper(emulator.id());
    let stdout = emulator.stdout.take().expect("stdout");
    let addr = tokio::task::spawn_blocking(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .find_map(|line| {
                line.strip_prefix("wschat emulator listening on http://")
                    .map(str::to_owned)
            })
    })
    .await
    .expect("reader")
    .expect("the emulator says where it listens");
    let stderr = emulator.stderr.take().expect("stderr");
    let log = tokio::task::spawn_blocking(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });

    let (mut ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(format!("ws://{addr}/local?anything=goes")),
    )
    .await
    .expect("handshake in time")
    .expect("handshake accepted");
    ws.send(Message::text(r#"{"action":"echo","text":"hello"}"#))
        .await
        .expect("send");
    let echo = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo in time")
        .expect("open")
        .expect("frame");
    let echo: Value = serde_json::from_str(echo.to_text().expect("text")).expect("JSON");
    assert_eq!(echo, json!({ "echo": "hello", "user": "ann" }));

    // The function posted the echo before it returned, and the meter counts an invocation once it has returned:
    // ask until it has (bounded).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let (status, body) = http(
            "GET",
            &format!("http://{addr}/_emulator/metrics"),
            Vec::new(),
        )
        .await;
        assert_eq!(status, 200);
        let metrics: Value = serde_json::from_slice(&body).expect("JSON");
        if !metrics["lambda"]["functions"]["OnEcho"].is_null()
            || tokio::time::Instant::now() > deadline
        {
            break metrics;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(metrics["lambda"]["functions"]["OnEcho"]["memoryMb"], 1024);
    assert_eq!(
        metrics["lambda"]["functions"]["OnEcho"]["architecture"],
        "arm64"
    );
    assert_eq!(metrics["lambda"]["functions"]["OnConnect"]["memoryMb"], 512);
    assert_eq!(metrics["apiGateway"]["billedMessages"], 2);
    assert_eq!(metrics["costUsd"]["messages"], 2.0 * 2.0 / 1e6);
    assert_eq!(metrics["prices"]["source"], "test prices");

    ws.close(None).await.expect("close");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !calls
        .lock()
        .expect("calls")
        .iter()
        .any(|(f, _)| f == "OnDisconnect")
    {
        assert!(std::time::Instant::now() < deadline, "OnDisconnect ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = emulator.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let exited = tokio::task::spawn_blocking(move || emulator.wait())
        .await
        .expect("wait")
        .expect("exit");
    let log = log.await.expect("log");

    let invoked: Vec<String> = calls
        .lock()
        .expect("calls")
        .iter()
        .map(|(f, _)| f.clone())
        .collect();
    assert_eq!(
        invoked,
        ["Gatekeeper", "OnConnect", "OnEcho", "OnDisconnect"]
    );
    assert!(exited.success(), "{exited:?}");
    assert!(
        log.iter().any(
            |l| l.contains("what AWS would bill for this session") && l.contains("test prices")
        ),
        "the bill is printed at stop: {log:#?}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

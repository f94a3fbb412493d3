//! The only code in the workspace that sees the AWS SDK: PostToConnection through
//! `aws-sdk-apigatewaymanagement`, with errors mapped onto [`GatewayError`].
//!
//! The endpoint is the stage URL (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, or the emulator's
//! `http://127.0.0.1:3000/local`); the SDK appends `/@connections/{id}`. The SDK's own retries are turned off:
//! [`crate::fanout`] retries 429 with its own bounded backoff and counts the retries in its report.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::config::retry::RetryConfig;
use aws_sdk_apigatewaymanagement::config::timeout::TimeoutConfig;
use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use bytes::Bytes;

use super::{Gateway, GatewayError};
use crate::wire::ConnectionId;

/// How long one PostToConnection may take before it counts as failed. A VPC Lambda without a NAT route would
/// otherwise hang until the function times out.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Gateway`] backed by the API Gateway Management API.
#[derive(Debug, Clone)]
pub struct AwsGateway {
    client: aws_sdk_apigatewaymanagement::Client,
}

impl AwsGateway {
    /// A gateway for `endpoint` using the credentials and region of the environment (a Lambda's role).
    pub async fn from_env(endpoint: &str) -> Self {
        let sdk = aws_config::defaults(BehaviorVersion::latest()).load().await;
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(&sdk);
        Self::build(config, endpoint)
    }

    /// A gateway for a local emulator: fixed dummy credentials and region, no environment read.
    pub fn local(endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "wschat-local",
            ));
        Self::build(config, endpoint)
    }

    fn build(config: aws_sdk_apigatewaymanagement::config::Builder, endpoint: &str) -> Self {
        let config = config
            .endpoint_url(endpoint)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .build();
        Self {
            client: aws_sdk_apigatewaymanagement::Client::from_conf(config),
        }
    }
}

#[async_trait]
impl Gateway for AwsGateway {
    async fn post_to_connection(
        &self,
        conn: &ConnectionId,
        data: Bytes,
    ) -> Result<(), GatewayError> {
        let result = self
            .client
            .post_to_connection()
            .connection_id(conn.as_str())
            .data(Blob::new(data.to_vec()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => Err(classify(err)),
        }
    }

    async fn delete_connection(&self, conn: &ConnectionId) -> Result<(), GatewayError> {
        let result = self
            .client
            .delete_connection()
            .connection_id(conn.as_str())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let status = err.raw_response().map_or(0, |r| r.status().as_u16());
                Err(GatewayError::from_status(status, || Box::new(err))
                    .unwrap_or_else(|| GatewayError::Other("no answer".into())))
            }
        }
    }
}

fn classify(err: SdkError<PostToConnectionError>) -> GatewayError {
    match err.as_service_error() {
        Some(PostToConnectionError::GoneException(_)) => GatewayError::Gone,
        Some(PostToConnectionError::LimitExceededException(_)) => GatewayError::Throttled,
        Some(PostToConnectionError::PayloadTooLargeException(_)) => GatewayError::PayloadTooLarge,
        Some(PostToConnectionError::ForbiddenException(_)) => {
            GatewayError::Forbidden(Box::new(err))
        }
        _ => match err.raw_response().map(|r| r.status().as_u16()) {
            // Status codes without the modelled error type (a proxy, an emulator): classify by status alone.
            Some(410) => GatewayError::Gone,
            Some(429) => GatewayError::Throttled,
            Some(413) => GatewayError::PayloadTooLarge,
            Some(403) => GatewayError::Forbidden(Box::new(err)),
            _ => GatewayError::Other(Box::new(err)),
        },
    }
}

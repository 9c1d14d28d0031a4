//! Where the manage forms publish: the product stream, with the form's
//! `Nats-Msg-Id` and the operator's name in a header
//! ([`crate::product::OPERATOR_HEADER`]).

use crate::ingest::source::stream_identity;
use crate::product::OPERATOR_HEADER;
use async_nats::HeaderValue;
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use std::str::FromStr;
use std::time::Duration;

/// How long a publish may take before the form says it failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the http actor needs to publish: the NATS URL (credentials in it, as
/// for ingest), the subject and the stream.
#[derive(Clone)]
pub struct PublishTo {
    pub nats_url: String,
    pub subject: String,
    pub stream: String,
}

/// Why a form's message was not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the {0} cannot be a NATS header (it holds a line break)")]
    NotAHeader(&'static str),
    #[error("NATS did not take the message")]
    Publish(#[source] async_nats::Error),
    #[error("NATS did not answer within {PUBLISH_TIMEOUT:?}")]
    TimedOut,
}

/// A connection to NATS for the forms (present only when managing is on).
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    subject: String,
    stream: String,
}

impl Publisher {
    /// Connects in the background: returns at once, even while NATS is away
    /// (a form sent meanwhile says it could not be sent).
    pub async fn connect(to: &PublishTo) -> Result<Self, async_nats::ConnectError> {
        let (options, servers) = crate::nats_auth::connect_options(&to.nats_url);
        let client = options
            .name("products-ui")
            .retry_on_initial_connect()
            .connect(servers)
            .await?;
        Ok(Self {
            js: jetstream::new(client),
            subject: to.subject.clone(),
            stream: to.stream.clone(),
        })
    }

    /// Publishes `payload` with the id `message_id`, naming `operator`, and
    /// says where it landed (the stream's identity and the sequence).
    pub async fn publish(
        &self,
        payload: Bytes,
        message_id: &str,
        operator: &str,
    ) -> Result<(String, u64), PublishError> {
        let header =
            |what, value| HeaderValue::from_str(value).map_err(|_| PublishError::NotAHeader(what));
        let message = PublishMessage::build()
            .payload(payload)
            .header(
                async_nats::header::NATS_MESSAGE_ID,
                header("message id", message_id)?,
            )
            .header(OPERATOR_HEADER, header("operator's name", operator)?);
        let work = async {
            let ack = self
                .js
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|e| PublishError::Publish(e.into()))?
                .await
                .map_err(|e| PublishError::Publish(e.into()))?;
            let stream = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| PublishError::Publish(e.into()))?;
            let identity = stream_identity(&stream)
                .await
                .map_err(PublishError::Publish)?;
            Ok((identity, ack.sequence))
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, work)
            .await
            .map_err(|_| PublishError::TimedOut)?
    }
}

//! Where the manage forms publish: the product stream, through the one door
//! to JetStream ([`crate::jetstream`]), with the form's `Nats-Msg-Id` and the
//! operator's name in a header.

use crate::jetstream::{self, Outgoing, PublishError, ReplayError, Republished, Start};
use crate::secret::SecretUrl;
use async_nats::jetstream::Context;
use bytes::Bytes;
use std::time::Duration;

/// How long a publish may take before the form says it failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// What the http actor needs to publish: the NATS URL (credentials in it, as
/// for ingest), the subject and the stream.
#[derive(Clone)]
pub struct PublishTo {
    pub nats_url: SecretUrl,
    pub subject: String,
    pub stream: String,
}

/// A connection to NATS for the forms (present only when managing is on).
#[derive(Clone)]
pub struct Publisher {
    js: Context,
    subject: String,
    stream: String,
}

impl Publisher {
    /// Connects in the background: returns at once, even while NATS is away
    /// (a form sent meanwhile says it could not be sent).
    pub async fn connect(to: &PublishTo) -> Result<Self, async_nats::ConnectError> {
        let client = jetstream::connect(&to.nats_url, "products-ui", Start::InBackground).await?;
        Ok(Self {
            js: async_nats::jetstream::new(client),
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
        let work = async {
            let message = Outgoing {
                subject: &self.subject,
                payload,
                message_id,
                operator: Some(operator),
            };
            let ack = jetstream::publish(&self.js, message).await?;
            let stream = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| PublishError::Publish(e.into()))?;
            let identity = jetstream::identity(&stream)
                .await
                .map_err(PublishError::Publish)?;
            Ok((identity, ack.sequence))
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, work)
            .await
            .map_err(|_| PublishError::TimedOut(PUBLISH_TIMEOUT))?
    }

    /// Publishes the message `seq` again, read whole from the stream `held_by`
    /// (see [`jetstream::republish`]), naming `operator`.
    pub async fn republish(
        &self,
        held_by: &str,
        seq: u64,
        message_id: &str,
        operator: &str,
    ) -> Result<Republished, ReplayError> {
        let work = jetstream::republish(
            &self.js,
            &self.stream,
            held_by,
            seq,
            message_id,
            Some(operator),
        );
        tokio::time::timeout(PUBLISH_TIMEOUT, work)
            .await
            .map_err(|_| PublishError::TimedOut(PUBLISH_TIMEOUT))?
    }
}

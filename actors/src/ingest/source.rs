//! The JetStream side of ingest: the stream and the durable pull consumer it
//! reads (set up, or checked when they exist), and pulling one batch.

use crate::jetstream::StreamSpec;
use crate::secret::SecretUrl;
use crate::timeouts::IDLE_WAIT;
use async_nats::jetstream::consumer::{AckPolicy, pull};
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;
use std::time::Duration;
use tracing::{debug, warn};

/// Where and how to consume.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub nats_url: SecretUrl,
    pub stream: StreamSpec,
    /// The subject this service reads, e.g. `events.products`.
    pub subject: String,
    /// The durable consumer's name, e.g. `event-processor`.
    pub durable: String,
    /// The most messages stored in one transaction.
    pub batch_size: usize,
    /// How long JetStream waits for an ack before it redelivers.
    pub ack_wait: Duration,
    /// Whether a durable consumer whose configuration cannot be changed to the
    /// one this service needs may be deleted and created again.
    pub recreate_consumer: bool,
    /// Deliveries of a message Postgres refuses for a rule of the database
    /// before it is set aside (`INGEST_MAX_DELIVERIES`).
    pub max_deliveries: u32,
    /// The wait before a refused message comes again, doubling with each
    /// delivery up to [`MAX_RETRY_DELAY`] (`INGEST_RETRY_DELAY`).
    pub retry_delay: Duration,
}

/// The longest wait before a refused message comes again.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

impl IngestConfig {
    /// How long a message refused on its `delivered`th delivery waits before
    /// the next.
    pub fn retry_delay_after(&self, delivered: u64) -> Duration {
        let doublings = u32::try_from(delivered.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(16);
        self.retry_delay
            .saturating_mul(1 << doublings)
            .min(MAX_RETRY_DELAY)
    }

    /// The durable consumer this service needs.
    pub fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            filter_subject: self.subject.clone(),
            // Room for one batch in flight and the next one buffered.
            max_ack_pending: (self.batch_size * 4) as i64,
            // Delivered until answered: a message that cannot be stored now
            // (Postgres away) is never dropped by JetStream. Refused ones are
            // bounded by the service itself (`max_deliveries`), and their
            // waits are its naks', not a JetStream back-off.
            max_deliver: -1,
            backoff: Vec::new(),
            ..Default::default()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// NATS or JetStream could not be asked: worth trying again.
    #[error("cannot set up the stream and the consumer: {0}")]
    Unavailable(String),
    /// The existing durable consumer cannot serve this service, and may not be
    /// recreated: an operator must act.
    #[error("{0}")]
    Incompatible(String),
}

impl SourceError {
    fn unavailable(error: impl std::fmt::Display) -> Self {
        SourceError::Unavailable(error.to_string())
    }
}

pub type PullConsumer = consumer::PullConsumer;

/// Makes sure the stream and the durable consumer exist, and that the consumer
/// is one this service can rely on (pull, explicit acks, the products subject).
/// What JetStream lets change on an existing consumer is changed; what it does
/// not is an [`SourceError::Incompatible`] that names each difference and the fix,
/// unless `recreate_consumer` allows deleting it.
pub async fn open(
    client: &async_nats::Client,
    config: &IngestConfig,
) -> Result<(stream::Stream, PullConsumer), SourceError> {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(config.stream.config())
        .await
        .map_err(SourceError::unavailable)?;
    let wanted = config.consumer_config();
    match stream.consumer_info(&config.durable).await {
        Ok(info) => {
            let fixed = differences(&info.config, &wanted, Changeable::No);
            if !fixed.is_empty() {
                if !config.recreate_consumer {
                    return Err(SourceError::Incompatible(incompatible(config, &fixed)));
                }
                warn!(durable = %config.durable, differences = %fixed.join("; "), "deleting and recreating the durable consumer, as NATS_RECREATE_CONSUMER allows");
                stream
                    .delete_consumer(&config.durable)
                    .await
                    .map_err(SourceError::unavailable)?;
            } else {
                let changeable = differences(&info.config, &wanted, Changeable::Yes);
                if !changeable.is_empty() {
                    warn!(durable = %config.durable, changes = %changeable.join("; "), "updating the durable consumer's configuration");
                }
            }
        }
        Err(error) if error.kind() == ConsumerInfoErrorKind::NotFound => {}
        Err(error) => return Err(SourceError::unavailable(error)),
    }
    // Creates it, or (same name) changes what may change of the existing one.
    let consumer = stream
        .create_consumer(wanted)
        .await
        .map_err(SourceError::unavailable)?;
    Ok((stream, consumer))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Changeable {
    Yes,
    No,
}

/// The differences between the existing consumer and the one wanted, of one
/// kind: those JetStream (2.9) can change on an existing consumer, or not.
fn differences(have: &consumer::Config, want: &pull::Config, kind: Changeable) -> Vec<String> {
    let mut found = Vec::new();
    let mut differ = |changeable: Changeable, what: String| {
        if changeable == kind {
            found.push(what);
        }
    };
    if let Some(deliver_subject) = &have.deliver_subject {
        differ(
            Changeable::No,
            format!(
                "it is a push consumer (deliver_subject `{deliver_subject}`), and this service pulls"
            ),
        );
    }
    if have.ack_policy != want.ack_policy {
        differ(
            Changeable::No,
            format!(
                "ack_policy is {:?}, and this service needs {:?} (at-least-once)",
                have.ack_policy, want.ack_policy
            ),
        );
    }
    if have.filter_subject != want.filter_subject || !have.filter_subjects.is_empty() {
        let have_filter = if have.filter_subjects.is_empty() {
            have.filter_subject.clone()
        } else {
            have.filter_subjects.join(",")
        };
        differ(
            Changeable::No,
            format!(
                "filter_subject is `{have_filter}`, and this service reads `{}`",
                want.filter_subject
            ),
        );
    }
    if have.ack_wait != want.ack_wait {
        differ(
            Changeable::Yes,
            format!("ack_wait {:?} -> {:?}", have.ack_wait, want.ack_wait),
        );
    }
    // 0 and -1 both say "no limit".
    let unlimited = |n: i64| if n <= 0 { -1 } else { n };
    if unlimited(have.max_deliver) != unlimited(want.max_deliver) {
        differ(
            Changeable::Yes,
            format!(
                "max_deliver {} -> unlimited (INGEST_MAX_DELIVERIES bounds refused messages, and a \
                 message that cannot be stored yet must not be dropped)",
                have.max_deliver
            ),
        );
    }
    if have.backoff != want.backoff {
        differ(
            Changeable::Yes,
            format!(
                "backoff {:?} -> none (the service waits INGEST_RETRY_DELAY, doubling)",
                have.backoff
            ),
        );
    }
    if have.max_ack_pending != want.max_ack_pending {
        differ(
            Changeable::Yes,
            format!(
                "max_ack_pending {} -> {}",
                have.max_ack_pending, want.max_ack_pending
            ),
        );
    }
    found
}

fn incompatible(config: &IngestConfig, differences: &[String]) -> String {
    format!(
        "the durable consumer `{durable}` on stream `{stream}` cannot be used: {list}. \
         JetStream cannot change this on an existing consumer. Either delete it after checking \
         that nothing else uses it (`nats consumer rm {stream} {durable}`), or start this \
         service once with NATS_RECREATE_CONSUMER=true to have it deleted and created again \
         (what it had not acked is delivered again from the start of the stream; storing is \
         idempotent), or set NATS_DURABLE to another name.",
        durable = config.durable,
        stream = config.stream.name,
        list = differences.join("; "),
    )
}

/// Takes what is waiting now, up to `max` messages. When nothing is, waits up
/// to [`IDLE_WAIT`] for one message, then takes what else is waiting with it.
/// An empty batch means nothing came.
pub async fn next_batch(
    consumer: &PullConsumer,
    max: usize,
) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let waiting = consumer.fetch().max_messages(max).messages().await?;
    let mut batch = collect(waiting).await?;
    if batch.is_empty() {
        let first = consumer
            .batch()
            .max_messages(1)
            .expires(IDLE_WAIT)
            .messages()
            .await?;
        batch = collect(first).await?;
        if !batch.is_empty() && max > 1 {
            // The first message is ours now: whatever happens to the rest, keep it.
            match consumer.fetch().max_messages(max - 1).messages().await {
                Ok(rest) => match collect(rest).await {
                    Ok(rest) => batch.extend(rest),
                    Err(error) => debug!(%error, "fetching more after the first message failed"),
                },
                Err(error) => debug!(%error, "fetching more after the first message failed"),
            }
        }
    }
    Ok(batch)
}

/// Reads one pull request's messages. An error after some messages keeps
/// those (they are ours until acked); an error before any is returned.
async fn collect(mut messages: pull::Batch) -> Result<Vec<jetstream::Message>, async_nats::Error> {
    let mut batch = Vec::new();
    while let Some(message) = messages.next().await {
        match message {
            Ok(message) => batch.push(message),
            Err(error) if batch.is_empty() => return Err(error),
            Err(error) => {
                debug!(%error, "pull request ended early");
                break;
            }
        }
    }
    Ok(batch)
}

//! The ingest actor: reads the JetStream stream in batches, has persistence
//! store each batch, and acks it only once it has committed.
//!
//! The actor drives itself with messages: `Connect` sets up the stream and the
//! durable pull consumer (retrying with back-off while NATS is away), then each
//! `Pull` fetches one batch, stores it and acks it, and sends the next `Pull`.
//! A stop request is handled between two `Pull`s, so a graceful stop always
//! finishes and acks the batch in flight. Nothing is prefetched: a message is
//! pulled only when its batch is about to be stored, so a stopped or killed
//! process holds no messages that would wait out `ack_wait`.
//!
//! After the commit, the new versions go to the cache, then the messages are
//! acked. Invalid messages are stored in `rejected_messages` in the same
//! transaction as the valid ones of their batch, then terminated
//! (`AckKind::Term`) so that they are never redelivered. If the batch cannot be stored, every message of
//! it is nak'ed with a delay, and comes again.

use crate::backoff::Backoff;
use crate::cache::CacheMsg;
use crate::call::ask;
use crate::names::{Child, Names};
use crate::persistence::{Batch, Incoming, PersistenceMsg, Refused, Rejected, Stored};
use crate::product::decode;
use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::time::Duration;
use tokio::time::timeout;
use tracing::{debug, info, warn};

pub type IngestRef = ActorRef<IngestMsg>;

/// How long an idle `Pull` waits for a message before it yields to a stop request.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long one `Pull` (an idle wait included) may take before the consumer is
/// set up again.
const PULL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long setting up the stream and consumer may take before it is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long storing one batch may take before it is given up and redelivered.
/// One `Pull` can take this, plus [`PULL_TIMEOUT`] and [`PUT_TIMEOUT`]: the
/// supervisor waits longer than that for ingest to stop.
pub const STORE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the cache may take to take a batch's new versions.
const PUT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how to consume.
#[derive(Clone, Debug)]
pub struct IngestConfig {
    pub nats_url: String,
    /// The stream's name, e.g. `EVENTS`.
    pub stream: String,
    /// The subjects the stream takes, e.g. `events.>`.
    pub stream_subjects: Vec<String>,
    /// The subject this service reads, e.g. `events.products`.
    pub subject: String,
    /// The durable consumer's name, e.g. `event-processor`.
    pub durable: String,
    /// The most messages stored in one transaction.
    pub batch_size: usize,
    /// How long JetStream waits for an ack before it redelivers.
    pub ack_wait: Duration,
    /// How long JetStream remembers a `Nats-Msg-Id` to drop a duplicate publish.
    pub duplicate_window: Duration,
}

impl IngestConfig {
    /// The stream as this service creates it when it is missing (`produce` uses it too).
    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream.clone(),
            subjects: self.stream_subjects.clone(),
            duplicate_window: self.duplicate_window,
            ..Default::default()
        }
    }

    fn consumer_config(&self) -> pull::Config {
        pull::Config {
            durable_name: Some(self.durable.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: self.ack_wait,
            filter_subject: self.subject.clone(),
            // Room for one batch in flight and the next one buffered.
            max_ack_pending: (self.batch_size * 4) as i64,
            ..Default::default()
        }
    }
}

pub enum IngestMsg {
    /// From itself: make sure the stream and the durable consumer exist.
    Connect,
    /// From itself: take one batch, store it, ack it.
    Pull,
    /// From http's readiness check and tests.
    Status { reply: RpcReplyPort<IngestStatus> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IngestStatus {
    /// The NATS connection is up.
    pub nats_connected: bool,
    /// The consumer is set up and being read.
    pub consuming: bool,
}

#[derive(Clone)]
pub struct IngestArgs {
    pub names: Names,
    pub config: IngestConfig,
}

pub struct Ingest;

pub struct IngestState {
    names: Names,
    config: IngestConfig,
    client: async_nats::Client,
    source: Option<Source>,
    backoff: Backoff,
}

/// The durable consumer, once set up.
struct Source {
    /// The stream's name and creation time: sequences restart when a stream is
    /// recreated, so a sequence only orders messages of the same stream.
    stream_id: String,
    consumer: jetstream::consumer::PullConsumer,
}

impl Actor for Ingest {
    type Msg = IngestMsg;
    type State = IngestState;
    type Arguments = IngestArgs;

    async fn pre_start(
        &self,
        myself: IngestRef,
        args: IngestArgs,
    ) -> Result<IngestState, ActorProcessingErr> {
        // Returns at once even while NATS is away; the client keeps reconnecting.
        let (options, server) = crate::nats_auth::connect_options(&args.config.nats_url);
        let client = options
            .name("products")
            .retry_on_initial_connect()
            .connect(server)
            .await?;
        myself.cast(IngestMsg::Connect)?;
        Ok(IngestState {
            names: args.names,
            config: args.config,
            client,
            source: None,
            backoff: Backoff::default(),
        })
    }

    async fn handle(
        &self,
        myself: IngestRef,
        msg: IngestMsg,
        state: &mut IngestState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            IngestMsg::Connect => state.connect(myself).await,
            IngestMsg::Pull => state.pull(myself).await,
            IngestMsg::Status { reply } => {
                let _ = reply.send(IngestStatus {
                    nats_connected: state.client.connection_state()
                        == async_nats::connection::State::Connected,
                    consuming: state.source.is_some(),
                });
                Ok(())
            }
        }
    }

    async fn post_stop(
        &self,
        _myself: IngestRef,
        state: &mut IngestState,
    ) -> Result<(), ActorProcessingErr> {
        // Acks are buffered by the client: send them before the connection closes.
        match timeout(Duration::from_secs(2), state.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "could not flush acks before stopping"),
            Err(_) => warn!("could not flush acks before stopping: timed out"),
        }
        Ok(())
    }
}

impl IngestState {
    async fn connect(&mut self, myself: IngestRef) -> Result<(), ActorProcessingErr> {
        let result = timeout(CONNECT_TIMEOUT, open_source(&self.client, &self.config))
            .await
            .unwrap_or_else(|_| Err("timed out".into()));
        match result {
            Ok(source) => {
                info!(
                    stream = %self.config.stream,
                    subject = %self.config.subject,
                    durable = %self.config.durable,
                    "consuming"
                );
                self.source = Some(source);
                self.backoff.reset();
                myself.cast(IngestMsg::Pull)?;
            }
            Err(error) => {
                let delay = self.backoff.next_delay();
                warn!(%error, retry_in = ?delay, "cannot set up the JetStream consumer");
                myself.send_after(delay, || IngestMsg::Connect);
            }
        }
        Ok(())
    }

    async fn pull(&mut self, myself: IngestRef) -> Result<(), ActorProcessingErr> {
        let Some(source) = self.source.as_ref() else {
            myself.cast(IngestMsg::Connect)?;
            return Ok(());
        };
        // A pull request whose connection died under it never ends by itself.
        let pulled = timeout(
            PULL_TIMEOUT,
            next_batch(&source.consumer, self.config.batch_size),
        )
        .await
        .unwrap_or_else(|_| Err("the pull request got no answer".into()));
        match pulled {
            Ok(batch) if batch.is_empty() => {
                myself.cast(IngestMsg::Pull)?;
                Ok(())
            }
            Ok(batch) => {
                let stream_id = source.stream_id.clone();
                self.store_and_ack(myself, stream_id, batch).await
            }
            Err(error) => {
                // The consumer may be gone, or NATS: set up again after a pause.
                let delay = self.backoff.next_delay();
                warn!(%error, retry_in = ?delay, "cannot pull from the consumer");
                self.source = None;
                myself.send_after(delay, || IngestMsg::Connect);
                Ok(())
            }
        }
    }

    async fn store_and_ack(
        &mut self,
        myself: IngestRef,
        stream_id: String,
        messages: Vec<jetstream::Message>,
    ) -> Result<(), ActorProcessingErr> {
        let (products, mut rejected, mut verdicts) = decode_batch(&messages);
        let batch = Batch {
            stream: stream_id.clone(),
            products,
            rejected: rejected.clone(),
        };
        let mut stored = self.store(batch).await;
        if let Ok(outcome) = &mut stored
            && !outcome.refused.is_empty()
        {
            // Stored but for a few that Postgres refused: set those aside too.
            let refused = set_aside(
                &messages,
                &mut verdicts,
                std::mem::take(&mut outcome.refused),
            );
            let batch = Batch {
                stream: stream_id,
                products: Vec::new(),
                rejected: refused.clone(),
            };
            match self.store(batch).await {
                Ok(_) => rejected.extend(refused),
                Err(error) => stored = Err(error),
            }
        }

        match stored {
            Ok(Stored { current, .. }) => {
                // The cache serves the new versions before they are acked: once
                // a message is acked, its version is what readers get.
                let products = current.len();
                let put = ask(
                    self.names.cache(),
                    Child::Cache,
                    |reply| CacheMsg::Put {
                        products: current,
                        reply,
                    },
                    PUT_TIMEOUT,
                )
                .await;
                if let Err(error) = put {
                    // Stored all the same; a cache that comes back rebuilds from Postgres.
                    warn!(%error, "the cache did not take the new versions");
                }
                for (message, verdict) in messages.iter().zip(&verdicts) {
                    let acked = match verdict {
                        Verdict::Ack => message.ack().await,
                        Verdict::Term => message.ack_with(AckKind::Term).await,
                        Verdict::Skip => Ok(()),
                    };
                    if let Err(error) = acked {
                        // The batch is stored: a redelivery will change nothing.
                        debug!(%error, "ack failed");
                    }
                }
                for r in &rejected {
                    warn!(stream_seq = r.stream_seq, subject = %r.subject, reason = %r.reason, "message rejected");
                }
                debug!(messages = messages.len(), products, "batch stored");
                self.backoff.reset();
                myself.cast(IngestMsg::Pull)?;
            }
            Err(error) => {
                let delay = self.backoff.next_delay();
                warn!(%error, messages = messages.len(), retry_in = ?delay, "cannot store batch; it will be redelivered");
                for message in &messages {
                    let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                }
                myself.send_after(delay, || IngestMsg::Pull);
            }
        }
        Ok(())
    }

    async fn store(&self, batch: Batch) -> Result<Stored, String> {
        ask(
            self.names.persistence(),
            Child::Persistence,
            |reply| PersistenceMsg::StoreBatch { batch, reply },
            STORE_TIMEOUT,
        )
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
}

/// Decodes each message: the valid ones to store, the invalid ones to set
/// aside, and what to answer each message once the batch is stored.
fn decode_batch(messages: &[jetstream::Message]) -> (Vec<Incoming>, Vec<Rejected>, Vec<Verdict>) {
    let mut products = Vec::with_capacity(messages.len());
    let mut rejected = Vec::new();
    let mut verdicts = Vec::with_capacity(messages.len());
    for message in messages {
        let Some(stream_seq) = stream_seq(message) else {
            // Every message of a pull consumer has one (its reply subject);
            // without it there is no sequence to store it under, and no
            // subject to ack or terminate it on.
            warn!(subject = %message.subject, "message without JetStream metadata skipped");
            verdicts.push(Verdict::Skip);
            continue;
        };
        match decode(&message.payload) {
            Ok(update) => {
                products.push(Incoming { stream_seq, update });
                verdicts.push(Verdict::Ack);
            }
            Err(reason) => {
                rejected.push(rejection(message, stream_seq, reason.to_string()));
                verdicts.push(Verdict::Term);
            }
        }
    }
    (products, rejected, verdicts)
}

/// Turns the messages Postgres refused into rejections, to be terminated.
fn set_aside(
    messages: &[jetstream::Message],
    verdicts: &mut [Verdict],
    refused: Vec<Refused>,
) -> Vec<Rejected> {
    refused
        .into_iter()
        .filter_map(|refused| {
            let index = messages
                .iter()
                .position(|m| stream_seq(m) == Some(refused.stream_seq))?;
            verdicts[index] = Verdict::Term;
            Some(rejection(
                &messages[index],
                refused.stream_seq,
                refused.reason,
            ))
        })
        .collect()
}

fn stream_seq(message: &jetstream::Message) -> Option<u64> {
    message.info().ok().map(|info| info.stream_sequence)
}

fn rejection(message: &jetstream::Message, stream_seq: u64, reason: String) -> Rejected {
    let payload = &message.payload;
    Rejected {
        stream_seq,
        subject: message.subject.to_string(),
        payload: payload[..payload.len().min(Rejected::KEPT_BYTES)].to_vec(),
        payload_len: payload.len(),
        reason,
    }
}

enum Verdict {
    Ack,
    Term,
    Skip,
}

async fn open_source(
    client: &async_nats::Client,
    config: &IngestConfig,
) -> Result<Source, async_nats::Error> {
    let js = jetstream::new(client.clone());
    let stream = js.get_or_create_stream(config.stream_config()).await?;
    let stream_id = format!("{}@{}", config.stream, stream.cached_info().created);
    let consumer = stream
        .get_or_create_consumer(&config.durable, config.consumer_config())
        .await?;
    Ok(Source {
        stream_id,
        consumer,
    })
}

/// Takes what is waiting now, up to `max` messages. When nothing is, waits up
/// to [`IDLE_WAIT`] for one message, then takes what else is waiting with it.
/// An empty batch means nothing came.
async fn next_batch(
    consumer: &jetstream::consumer::PullConsumer,
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

//! The ingest actor: reads the JetStream stream in batches, has persistence
//! store each batch, and answers each message once its batch has committed.
//!
//! The actor drives itself with messages: `Connect` sets up the stream and the
//! durable pull consumer (retrying with back-off while NATS is away; stopping
//! the service if an existing consumer cannot serve it), then each `Pull`
//! fetches one batch, stores it, answers it, and sends the next `Pull`. A stop
//! request is handled between two `Pull`s, so a graceful stop finishes and
//! answers the batch in flight. Nothing is prefetched: a message is pulled
//! only when its batch is about to be stored.
//!
//! A store is awaited, however slow: while it runs, JetStream is told every
//! third of `ack_wait` that the messages are in progress, so that it
//! redelivers none of them (to this replica or another). The writer cancels a
//! store that passes its deadline (see [`crate::timeouts`]).
//!
//! Once the batch has committed (and the writer has handed its new versions
//! to the cache, see `persistence/writer.rs`), each message is answered as
//! persistence says: acked (stored), terminated (set aside in
//! `rejected_messages`), or nak'ed with a delay that doubles with each of its
//! deliveries (`INGEST_RETRY_DELAY`), to be tried again; a message on its last
//! delivery (`INGEST_MAX_DELIVERIES`) that Postgres refuses is set aside
//! instead, so refused messages never fill the consumer's unanswered window.
//! If the batch cannot be stored at all (Postgres away), every message of it
//! is nak'ed with the actor's back-off, however often it has come.
//!
//! What ingest knows of its job (NATS connected, consumer set up, last store)
//! it writes to [`Health`], where `/readyz` reads it without asking. What it
//! counts (messages, batches, store latency, the consumer's lag, sampled by a
//! task of its own) goes to [`Metrics`]. Its log lines about a batch carry the
//! batch's first and last stream sequence, and those about one message its
//! stream sequence and product id (a span each).

pub mod source;

use crate::backoff::Backoff;
use crate::call::CallError;
use crate::freshness::Freshness;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::names::Names;
use crate::persistence::{self, PersistenceMsg, StoreError};
use crate::timeouts::{CONNECT_TIMEOUT, PULL_TIMEOUT, STORE_REPLY_WAIT};
use async_nats::jetstream::{self, AckKind, stream};
use catalogue::batch::{Batch, Incoming, Outcome, Rejection, Stored};
use catalogue::product::{DecodeError, OPERATOR_HEADER, check_operator, decode};
use ractor::{Actor, ActorProcessingErr, ActorRef};
pub use source::IngestConfig;
use source::{PullConsumer, SourceError};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::{Instrument, debug, error, info, info_span, warn};

/// How often the consumer's lag is asked of JetStream (one round trip each).
const LAG_SAMPLE_EVERY: Duration = Duration::from_secs(2);

pub type IngestRef = ActorRef<IngestMsg>;

pub enum IngestMsg {
    /// From itself: make sure the stream and the durable consumer exist.
    Connect,
    /// From itself: take one batch, store it, answer it.
    Pull,
}

#[derive(Clone)]
pub struct IngestArgs {
    pub names: Names,
    pub config: IngestConfig,
    pub health: Health,
}

pub struct Ingest;

pub struct IngestState {
    names: Names,
    config: IngestConfig,
    health: Health,
    client: async_nats::Client,
    source: Option<(stream::Stream, PullConsumer)>,
    backoff: Backoff,
    metrics: Metrics,
    /// Samples the consumer's lag while `source` is set up.
    lag_sampler: Option<LagSampler>,
    /// The next batch, pulled while the one before it is stored.
    next: Option<Prefetch>,
}

/// A pull begun ahead: the stream's identity and the messages. Dropping it
/// stops the pull (messages it had taken stay unacked, and come again after
/// the ack wait).
struct Prefetch(JoinHandle<Result<(String, Vec<jetstream::Message>), async_nats::Error>>);

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Prefetch {
    fn start(stream: &stream::Stream, consumer: &PullConsumer, max: usize) -> Self {
        let (stream, consumer) = (stream.clone(), consumer.clone());
        Self(tokio::spawn(async move {
            let messages = source::next_batch(&consumer, max).await?;
            if messages.is_empty() {
                return Ok((String::new(), messages));
            }
            Ok((crate::jetstream::identity(&stream).await?, messages))
        }))
    }

    /// Its batch, once pulled.
    async fn pulled(&mut self) -> Result<(String, Vec<jetstream::Message>), async_nats::Error> {
        (&mut self.0).await?
    }
}

/// The task that samples the consumer's lag; dropping it stops the task (also
/// when the actor fails and its state is dropped without `post_stop`).
struct LagSampler(JoinHandle<()>);

impl Drop for LagSampler {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl LagSampler {
    fn spawn(consumer: PullConsumer, metrics: Metrics, freshness: Freshness) -> Self {
        Self(tokio::spawn(
            async move {
                let mut every = tokio::time::interval(LAG_SAMPLE_EVERY);
                loop {
                    // Now and then, and at once when a request waits for a
                    // sequence (`?min_seq=`): one sample at a time, however
                    // many wait.
                    tokio::select! {
                        _ = every.tick() => {}
                        _ = freshness.sample_wanted() => {}
                    }
                    match consumer.get_info().await {
                        Ok(info) => {
                            freshness.sampled(info.ack_floor.stream_sequence);
                            metrics.consumer_pending.set(info.num_pending as f64);
                            metrics
                                .consumer_ack_pending
                                .set(info.num_ack_pending as f64);
                            metrics
                                .consumer_redelivered
                                .set(info.num_redelivered as f64);
                        }
                        Err(error) => debug!(%error, "cannot sample the consumer's lag"),
                    }
                }
            }
            .in_current_span(),
        ))
    }
}

/// Why a batch could not be stored.
#[derive(Debug, thiserror::Error)]
enum StoreFailure {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
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
        let health = args.health.clone();
        // Returns at once even while NATS is away; the client keeps reconnecting
        // and says when it is connected or not.
        let (options, server) = crate::jetstream::options(&args.config.nats_url, "products");
        let client = options
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let health = health.clone();
                async move {
                    match event {
                        async_nats::Event::Connected => {
                            health.update_ingest(|h| h.nats_connected = true)
                        }
                        async_nats::Event::Disconnected | async_nats::Event::Closed => {
                            health.update_ingest(|h| h.nats_connected = false)
                        }
                        _ => {}
                    }
                }
            })
            .connect(server)
            .await?;
        myself.cast(IngestMsg::Connect)?;
        Ok(IngestState {
            metrics: Metrics::new(&args.names),
            lag_sampler: None,
            next: None,
            names: args.names,
            config: args.config,
            health: args.health,
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
        }
    }

    async fn post_stop(
        &self,
        _myself: IngestRef,
        state: &mut IngestState,
    ) -> Result<(), ActorProcessingErr> {
        // The batch pulled ahead is finished too, as the one in flight was:
        // stored and answered, so that nothing is left delivered but unacked.
        if let Some(mut ahead) = state.next.take()
            && let Ok(Ok((stream_id, messages))) = timeout(PULL_TIMEOUT, ahead.pulled()).await
            && !messages.is_empty()
        {
            state.store_and_answer(stream_id, messages).await;
        }
        // Acks are buffered by the client: send them before the connection closes.
        match timeout(Duration::from_secs(2), state.client.flush()).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => warn!(%error, "could not flush acks before stopping"),
            Err(_) => warn!("could not flush acks before stopping: timed out"),
        }
        state
            .health
            .update_ingest(|h| h.consumer_problem = Some("ingest is not running".into()));
        Ok(())
    }
}

impl IngestState {
    async fn connect(&mut self, myself: IngestRef) -> Result<(), ActorProcessingErr> {
        let result = timeout(CONNECT_TIMEOUT, source::open(&self.client, &self.config))
            .await
            .unwrap_or_else(|_| Err(SourceError::Unavailable("timed out".into())));
        match result {
            Ok(source) => {
                info!(
                    stream = %self.config.stream.name,
                    subject = %self.config.subject,
                    durable = %self.config.durable,
                    "consuming"
                );
                self.lag_sampler = Some(LagSampler::spawn(
                    source.1.clone(),
                    self.metrics.clone(),
                    self.health.freshness().clone(),
                ));
                self.source = Some(source);
                self.health.update_ingest(|h| h.consumer_problem = None);
                self.backoff.reset();
                myself.cast(IngestMsg::Pull)?;
            }
            Err(SourceError::Incompatible(reason)) => {
                // No retry can mend this: stop the service, saying why.
                error!(%reason, "cannot consume");
                self.health
                    .update_ingest(|h| h.consumer_problem = Some(reason.clone()));
                self.health.set_fatal(reason);
            }
            Err(error) => {
                let delay = self.backoff.next_delay();
                warn!(%error, retry_in = ?delay, "cannot set up the JetStream consumer");
                self.health
                    .update_ingest(|h| h.consumer_problem = Some(error.to_string()));
                myself.send_after(delay, || IngestMsg::Connect);
            }
        }
        Ok(())
    }

    async fn pull(&mut self, myself: IngestRef) -> Result<(), ActorProcessingErr> {
        let Some((stream, consumer)) = self.source.as_ref() else {
            myself.cast(IngestMsg::Connect)?;
            return Ok(());
        };
        let max = self.config.batch_size;
        let mut pulling = match self.next.take() {
            Some(pulling) => pulling,
            None => Prefetch::start(stream, consumer, max),
        };
        // A pull request whose connection died under it never ends by itself.
        let pulled = timeout(PULL_TIMEOUT, pulling.pulled())
            .await
            .unwrap_or_else(|_| Err("the pull request got no answer".into()));
        // Stored in order of pulling, the next batch is pulled meanwhile
        // (the newest stream sequence of an id wins whatever the order, so a
        // batch redelivered after a later one is stored changes nothing).
        if pulled
            .as_ref()
            .is_ok_and(|(_, messages)| !messages.is_empty())
        {
            self.next = Some(Prefetch::start(stream, consumer, max));
        }
        match pulled {
            Ok((_, messages)) if messages.is_empty() => {
                myself.cast(IngestMsg::Pull)?;
                Ok(())
            }
            Ok((stream_id, messages)) => {
                self.metrics.consumed.increment(messages.len() as u64);
                let seqs = messages
                    .iter()
                    .filter_map(|m| m.info().ok())
                    .map(|i| i.stream_sequence);
                let (first_seq, last_seq) = (seqs.clone().min(), seqs.max());
                let span = info_span!("batch", first_seq, last_seq, messages = messages.len());
                let delay = self
                    .store_and_answer(stream_id, messages)
                    .instrument(span)
                    .await;
                // Sent outside the batch's span: ractor hands a message's span
                // on to its handling, and each batch would nest in the last.
                if delay.is_zero() {
                    myself.cast(IngestMsg::Pull)?;
                } else {
                    // Postgres failed: what was pulled ahead waits as long
                    // as the batch that failed, told so, not past its ack wait.
                    if let Some(mut ahead) = self.next.take()
                        && ahead.0.is_finished()
                        && let Ok((_, messages)) = ahead.pulled().await
                    {
                        for message in &messages {
                            let _ = message.ack_with(AckKind::Nak(Some(delay))).await;
                        }
                    }
                    myself.send_after(delay, || IngestMsg::Pull);
                }
                Ok(())
            }
            Err(error) => {
                // The consumer may be gone, or NATS: set up again after a pause.
                let error: async_nats::Error = error;
                let delay = self.backoff.next_delay();
                warn!(%error, retry_in = ?delay, "cannot pull from the consumer");
                self.source = None;
                self.lag_sampler = None;
                self.next = None;
                self.health
                    .update_ingest(|h| h.consumer_problem = Some(error.to_string()));
                myself.send_after(delay, || IngestMsg::Connect);
                Ok(())
            }
        }
    }

    /// Returns how long to wait before the next pull.
    async fn store_and_answer(
        &mut self,
        stream_id: String,
        messages: Vec<jetstream::Message>,
    ) -> Duration {
        let (messages, batch) = to_batch(stream_id, messages, &self.config, &self.metrics);
        let ids: Vec<Option<i64>> = batch
            .messages
            .iter()
            .map(|m| m.decoded.as_ref().ok().and_then(|update| update.id()))
            .collect();
        self.metrics.batch_size.record(batch.messages.len() as f64);
        let started = Instant::now();
        let stored = self.store(batch, &messages).await;
        self.metrics.store_duration.record(started.elapsed());
        match stored {
            Ok(Stored { outcomes, .. }) => {
                let retry = outcomes.iter().find_map(|outcome| match outcome {
                    Outcome::Retry { reason } => Some(reason.clone()),
                    _ => None,
                });
                // The batch committed: the next one is pulled at once, also
                // when some of its messages were refused (each comes again
                // after its own wait, and the ones behind it must not wait).
                self.backoff.reset();
                for ((kept, outcome), id) in messages.iter().zip(&outcomes).zip(ids) {
                    self.count(outcome);
                    let delay = self.config.retry_delay_after(kept.delivered);
                    answer(&kept.message, outcome, delay)
                        .instrument(info_span!(
                            "message",
                            stream_seq = kept.seq,
                            product_id = id
                        ))
                        .await;
                }
                self.health.update_ingest(|h| {
                    h.store_problem =
                        retry.map(|reason| format!("cannot store a message: {reason}"))
                });
                debug!(messages = messages.len(), "batch stored");
                Duration::ZERO
            }
            Err(failure) => {
                let delay = self.backoff.next_delay();
                warn!(error = %failure, messages = messages.len(), retry_in = ?delay, "cannot store batch; it will be redelivered");
                self.metrics.retried.increment(messages.len() as u64);
                for kept in &messages {
                    let _ = kept.message.ack_with(AckKind::Nak(Some(delay))).await;
                }
                self.health.update_ingest(|h| {
                    h.store_problem = Some(format!("cannot store messages: {failure}"))
                });
                delay
            }
        }
    }

    fn count(&self, outcome: &Outcome) {
        match outcome {
            Outcome::Stored => self.metrics.stored.increment(1),
            Outcome::SetAside(Rejection::Invalid(_)) => self.metrics.set_aside_invalid.increment(1),
            Outcome::SetAside(Rejection::RefusedByPostgres(_)) => {
                self.metrics.set_aside_by_postgres.increment(1)
            }
            Outcome::Retry { .. } => self.metrics.retried.increment(1),
        }
    }

    /// Has persistence store the batch, telling JetStream meanwhile that its
    /// messages are in progress, so that a slow store is never redelivered.
    async fn store(&self, batch: Batch, messages: &[Pulled]) -> Result<Stored, StoreFailure> {
        let persistence = persistence::peer(&self.names);
        let call = persistence.ask(
            |reply| PersistenceMsg::StoreBatch { batch, reply },
            STORE_REPLY_WAIT,
        );
        tokio::pin!(call);
        let every = (self.config.ack_wait / 3).max(Duration::from_millis(100));
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        loop {
            tokio::select! {
                stored = &mut call => return Ok(stored??),
                _ = progress.tick() => {
                    for kept in messages {
                        let _ = kept.message.ack_with(AckKind::Progress).await;
                    }
                }
            }
        }
    }
}

/// Decodes each message into the batch handed to persistence, keeping each
/// message (with its stream sequence) to answer it afterwards.
/// A message pulled, with what ingest needs to answer it.
struct Pulled {
    message: jetstream::Message,
    seq: u64,
    /// Its delivery, counting from 1.
    delivered: u64,
}

fn to_batch(
    stream: String,
    messages: Vec<jetstream::Message>,
    config: &IngestConfig,
    metrics: &Metrics,
) -> (Vec<Pulled>, Batch) {
    let mut kept = Vec::with_capacity(messages.len());
    let mut incoming = Vec::with_capacity(messages.len());
    for message in messages {
        let Ok(info) = message.info() else {
            // Every message of a pull consumer has one (its reply subject);
            // without it there is no sequence to store it under, and no
            // subject to answer it on.
            warn!(subject = %message.subject, "message without JetStream metadata skipped");
            continue;
        };
        let stream_seq = info.stream_sequence;
        let delivered = u64::try_from(info.delivered).unwrap_or(1).max(1);
        if delivered > 1 {
            metrics.redelivered.increment(1);
        }
        let operator = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(OPERATOR_HEADER))
            .map(|name| name.as_str().to_owned());
        let decoded = match operator.as_deref().map(check_operator) {
            Some(Err(problem)) => Err(DecodeError::Operator { problem }),
            _ => decode(&message.payload),
        };
        incoming.push(Incoming {
            stream_seq,
            subject: message.subject.to_string(),
            payload: message.payload.clone(),
            decoded,
            operator,
            last_delivery: delivered >= u64::from(config.max_deliveries),
        });
        kept.push(Pulled {
            message,
            seq: stream_seq,
            delivered,
        });
    }
    let batch = Batch {
        stream,
        messages: incoming,
    };
    (kept, batch)
}

/// Tells JetStream what became of one message (in the span of that message,
/// which names its stream sequence and product id).
async fn answer(message: &jetstream::Message, outcome: &Outcome, delay: Duration) {
    let answered = match outcome {
        Outcome::Stored => message.ack().await,
        Outcome::SetAside(rejection) => {
            warn!(subject = %message.subject, reason = %rejection, "message set aside");
            message.ack_with(AckKind::Term).await
        }
        Outcome::Retry { reason } => {
            warn!(subject = %message.subject, %reason, retry_in = ?delay, "message not stored; it will be redelivered");
            message.ack_with(AckKind::Nak(Some(delay))).await
        }
    };
    if let Err(error) = answered {
        // The batch is stored: a redelivery will change nothing.
        debug!(%error, "ack failed");
    }
}

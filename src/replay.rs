//! `products rejected replay --id N`: publishes a message that was set aside
//! again, once its cause is fixed, and says what became of it. The original
//! is read whole from the stream by its sequence (not from the preview kept
//! in Postgres) and published to its subject with a new `Nats-Msg-Id`; the
//! service then stores it, or sets it aside again with the reason, as any
//! message.

use crate::produce;
use crate::settings::Settings;
use actors::jetstream::{Republished, republish};
use actors::persistence::{MessageOutcome, outcome, rejected_one};
use anyhow::{Context, anyhow};
use sea_orm::Database;
use std::time::{Duration, Instant};

/// How often Postgres is asked what became of it.
const POLL: Duration = Duration::from_millis(200);

/// What became of a message published again.
#[derive(Debug)]
pub struct Replay {
    pub rejected: i64,
    pub original_seq: i64,
    pub republished: Republished,
    /// What Postgres says of it at the end of the wait.
    pub outcome: MessageOutcome,
}

impl std::fmt::Display for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "rejected message {} (stream sequence {}) published again as stream sequence {}: ",
            self.rejected, self.original_seq, self.republished.seq
        )?;
        match &self.outcome {
            MessageOutcome::Stored { id, deleted: false } => write!(f, "stored as product {id}"),
            MessageOutcome::Stored { id, deleted: true } => {
                write!(f, "stored: product {id} is deleted")
            }
            MessageOutcome::Rejected { reason } => write!(f, "set aside again: {reason}"),
            MessageOutcome::Waiting => write!(
                f,
                "not stored yet (it is in the stream: a running service stores it, or sets it \
                 aside with the reason, on /rejected)"
            ),
        }
    }
}

/// Publishes the rejected message `id` again and waits up to `wait` for the
/// service to store it or set it aside.
pub async fn run(settings: &Settings, id: i64, wait: Duration) -> anyhow::Result<Replay> {
    let db = Database::connect(settings.database.url.expose())
        .await
        .with_context(|| format!("cannot connect to Postgres at {}", settings.database.url))?;
    let rejected = rejected_one(&db, id)
        .await?
        .ok_or_else(|| anyhow!("there is no rejected message {id} (see /rejected)"))?;
    let (client, js) = produce::connect(settings, "products-replay").await?;
    let message_id = format!("replay-{id}-{}", uuid::Uuid::new_v4());
    let seq = u64::try_from(rejected.stream_seq).context("a stream sequence is positive")?;
    let republished = republish(
        &js,
        &settings.nats.stream,
        &rejected.stream,
        seq,
        &message_id,
        None,
    )
    .await
    .with_context(|| format!("rejected message {id} could not be published again"))?;
    client.flush().await?;
    let product = catalogue::product::decode(&republished.payload)
        .ok()
        .and_then(|update| update.id());
    let new_seq = i64::try_from(republished.seq).context("a stream sequence fits an i64")?;
    let deadline = Instant::now() + wait;
    let outcome = loop {
        let now = outcome(&db, &republished.stream, new_seq, product).await?;
        if now != MessageOutcome::Waiting || Instant::now() >= deadline {
            break now;
        }
        tokio::time::sleep(POLL).await;
    };
    Ok(Replay {
        rejected: id,
        original_seq: rejected.stream_seq,
        republished,
        outcome,
    })
}

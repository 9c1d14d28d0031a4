//! The replica's reader of the newest history, shared by every open change
//! stream (`GET /products/changes`, the live pages' among them): one read of
//! Postgres per change, however many follow.
//!
//! It reads the history after the last position it read whenever the cache
//! says the change feed moved (Postgres's `NOTIFY` at each commit), and once
//! a [`TICK`] besides (for a watermark moved by a transaction that wrote
//! nothing here), and sends each read as a [`Batch`] from where it started
//! to where it got. A stream takes a batch only if it starts at or before the
//! stream's own position, and only the events after that position: so it
//! gets each change once, and one that finds a gap (it was slow and missed
//! batches, or the tail began after it) reads from Postgres itself until it
//! is up to date again. While no stream is open it reads nothing.

use crate::call::CallError;
use crate::names::Names;
use crate::persistence::history::History;
use crate::persistence::{self, PersistenceMsg, ReadError};
use crate::timeouts::PERSISTENCE_TIMEOUT;
use catalogue::history::Position;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, watch};
use tracing::warn;

/// How often the tail reads with no change announced.
const TICK: Duration = Duration::from_secs(1);
/// The most changes one read takes.
pub const PAGE: u64 = 1_000;
/// Batches kept for a slow stream before it must read from Postgres itself.
const BATCHES: usize = 64;

/// One read of the history: every change after `from`, up to `to`.
#[derive(Debug)]
pub struct Batch {
    pub from: Position,
    pub to: Position,
    /// Each change's position and its JSON, encoded once for every stream.
    pub events: Vec<(Position, Arc<str>)>,
}

/// Where the tail's batches are sent.
#[derive(Clone)]
pub struct Tail {
    sender: broadcast::Sender<Arc<Batch>>,
}

impl Default for Tail {
    fn default() -> Self {
        Self {
            sender: broadcast::channel(BATCHES).0,
        }
    }
}

impl Tail {
    /// The batches read from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Batch>> {
        self.sender.subscribe()
    }

    /// Reads the history for the streams (from `names`'s persistence) each
    /// time `moved` changes, until `closing` is `true`.
    pub fn spawn(&self, names: Names, moved: watch::Receiver<u64>, closing: watch::Receiver<bool>) {
        let sender = self.sender.clone();
        tokio::spawn(run(sender, Reader(names), moved, closing));
    }
}

/// Why the tail could not read.
#[derive(Debug, thiserror::Error)]
enum ReadFailed {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// The history, read through persistence.
struct Reader(Names);

impl Reader {
    async fn history(&self, after: Position, limit: u64) -> Result<History, ReadFailed> {
        let reply = persistence::peer(&self.0)
            .ask(
                |reply| PersistenceMsg::History {
                    after,
                    limit,
                    reply,
                },
                PERSISTENCE_TIMEOUT,
            )
            .await?;
        Ok(reply?)
    }

    async fn served_through(&self) -> Result<Position, ReadFailed> {
        let reply = persistence::peer(&self.0)
            .ask(
                |reply| PersistenceMsg::ServedThrough { reply },
                PERSISTENCE_TIMEOUT,
            )
            .await?;
        Ok(reply?)
    }
}

async fn run(
    sender: broadcast::Sender<Arc<Batch>>,
    app: Reader,
    mut moved: watch::Receiver<u64>,
    mut closing: watch::Receiver<bool>,
) {
    let mut through: Option<Position> = None;
    loop {
        tokio::select! {
            // However many moves there were since the last read: one read.
            changed = moved.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = tokio::time::sleep(TICK) => {}
            _ = closing.wait_for(|closing| *closing) => return,
        }
        if sender.receiver_count() == 0 {
            // Nobody follows: start again from the newest when one does.
            through = None;
            continue;
        }
        through = read(&sender, &app, through).await;
    }
}

/// Reads and sends everything after `through` (none: only finds where the
/// history ends now); answers where the next read starts.
async fn read(
    sender: &broadcast::Sender<Arc<Batch>>,
    app: &Reader,
    through: Option<Position>,
) -> Option<Position> {
    let Some(mut from) = through else {
        let now = app
            .served_through()
            .await
            .inspect_err(|error| warn!(%error, "the change stream's tail could not read"))
            .ok()?;
        // Where the tail starts, said to the streams: one that stands
        // before it (it opened while nobody followed, and a change came
        // since) reads the gap itself, instead of waiting for the next
        // change, which a quiet database may never make.
        let _ = sender.send(Arc::new(Batch {
            from: now,
            to: now,
            events: Vec::new(),
        }));
        return Some(now);
    };
    loop {
        let page = match app.history(from, PAGE).await {
            Ok(History::Page(page)) => page,
            // Pruned past this replica's tail (a retention shorter than a
            // pause): the streams find it for themselves.
            Ok(History::Gone { .. }) => return None,
            Err(error) => {
                warn!(%error, "the change stream's tail could not read");
                return Some(from);
            }
        };
        let to = page.through.unwrap_or(from);
        if to > from {
            let events = page
                .events
                .iter()
                .map(|event| (event.position, Arc::from(event.to_json())))
                .collect();
            let _ = sender.send(Arc::new(Batch { from, to, events }));
        }
        from = to;
        if page.complete {
            return Some(from);
        }
    }
}

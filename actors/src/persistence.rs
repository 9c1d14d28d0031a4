//! The persistence actor: the only part that talks to Postgres, through SeaORM.
//!
//! Writes (`StoreBatch`) go to its child, the [`writer`], which stores them
//! one at a time in the order ingest sends them, over connections of its own.
//! The write queue is bounded: a batch that finds it full is refused at once
//! (ingest redelivers it later) rather than queued behind work it cannot
//! overtake. Reads (`Get`, `Page`, `Ping`) run on tasks of their own over the
//! read pool. The actor itself only dispatches, so a slow write never holds up
//! a read, nor a flood of reads a write. Every statement is cut off after
//! [`STATEMENT_TIMEOUT`].

mod feed;
pub mod history;
mod listener;
mod lookups;
mod reads;
mod store;
pub mod writer;

pub use lookups::{outcome, rejected_one, search};
pub use reads::product;

use crate::call::Peer;
use crate::changes::{ChangeSignal, Commits};
use crate::names::{Child, Names};
use crate::secret::SecretUrl;
use crate::timeouts::{POSTGRES_CONNECT_TIMEOUT, STATEMENT_TIMEOUT};
use catalogue::batch::{Batch, Stored};
use catalogue::feed::{Changes, Version};
use catalogue::filter::Filter;
use catalogue::history::Position;
use catalogue::product::Product;
use history::History;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tracing::{Instrument, info, warn};
use writer::{Writer, WriterArgs, WriterMsg, WriterRef};

pub type PersistenceRef = ActorRef<PersistenceMsg>;

/// Persistence, found by name.
pub fn peer(names: &Names) -> Peer<PersistenceMsg> {
    Peer::new(names, Child::Persistence)
}

/// Connections kept for the writer: one for the batch being stored, one for
/// the next while a cancelled batch's connection is still rolling back.
pub const WRITE_CONNECTIONS: u32 = 2;
/// Batches accepted for storing at once (being stored, or next).
const WRITE_QUEUE: usize = 2;
/// Searches (`LIKE '%text%'`) may be slow on a large catalogue: they run on
/// at most one in this many read connections, so the pages, the change feed
/// and the readiness probe always keep the others.
const READS_PER_SEARCH: u32 = 4;
/// How long a search waits for a turn before it is refused.
const SEARCH_WAIT: Duration = Duration::from_secs(2);

/// Why a batch was not stored (`StoreBatch`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error("the writer already has {WRITE_QUEUE} batches to store")]
    Busy,
    #[error("storing took longer than {0:?} and was cancelled")]
    Cancelled(Duration),
}

/// Why a read (anything but `StoreBatch`) was not answered.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Database(#[from] DbErr),
    /// Every connection searches may use is busy with other searches.
    #[error("other searches hold every connection searches may use")]
    SearchesBusy,
}

/// How often the tombstones past the retention are pruned: a quarter of it,
/// from once a second to once an hour.
fn prune_every(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_secs(1), Duration::from_secs(3600))
}

/// Postgres's SQLSTATE, if Postgres answered with an error (match on these,
/// never on an error's text).
pub fn sqlstate(error: &DbErr) -> Option<String> {
    let (DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error))) =
        error
    else {
        return None;
    };
    match error.as_ref() {
        sea_orm::sqlx::Error::Database(error) => error.code().map(|code| code.into_owned()),
        _ => None,
    }
}

impl StoreError {
    fn sqlstate(&self) -> Option<String> {
        match self {
            StoreError::Database(error) => sqlstate(error),
            _ => None,
        }
    }

    /// Postgres refused the data (a data exception, a constraint, a limit), as
    /// opposed to being unreachable or failing as a whole: the same data would
    /// fail again, and other data may not.
    pub fn is_refusal(&self) -> bool {
        self.sqlstate()
            .is_some_and(|code| ["22", "23", "54"].iter().any(|c| code.starts_with(c)))
    }

    /// Another row holds the key (SQLSTATE 23505): two writers took the same
    /// free id at once, say; the next try goes through.
    pub fn is_unique_violation(&self) -> bool {
        self.sqlstate().is_some_and(|code| code == "23505")
    }

    /// The data itself is something Postgres cannot hold (class 22, data
    /// exception, or 54, a limit): the message's fault. A constraint (class
    /// 23) is a rule of the database the contract does not know, such as one a
    /// deployment added: not the message's fault.
    pub fn is_data_exception(&self) -> bool {
        self.sqlstate()
            .is_some_and(|code| code.starts_with("22") || code.starts_with("54"))
    }
}

/// One message set aside, as the rejected page shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectedMessage {
    pub id: i64,
    /// The identity of the stream that held it (`jetstream::identity`).
    #[serde(skip)]
    pub stream: String,
    pub stream_seq: i64,
    pub subject: String,
    /// The start of the payload as text (invalid UTF-8 replaced), at most
    /// [`REJECTED_PREVIEW_CHARS`] characters.
    pub payload: String,
    pub payload_len: i64,
    pub reason: String,
    /// When, in UTC (`2026-11-26 00:12:03 UTC`).
    pub rejected_at: String,
}

/// How much of a rejected payload the rejected page shows.
pub const REJECTED_PREVIEW_CHARS: usize = 300;

/// What became of one published message, as far as Postgres knows now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageOutcome {
    /// Not stored nor set aside yet.
    Waiting,
    /// Stored (or overtaken by a newer message for the same id).
    Stored { id: i64, deleted: bool },
    /// Set aside, for this reason.
    Rejected { reason: String },
}

pub enum PersistenceMsg {
    /// From ingest: store a batch in one transaction. Replies once it has
    /// committed, with what became of each message; or at once with
    /// [`StoreError::Busy`] if the write queue is full.
    StoreBatch {
        batch: Batch,
        reply: RpcReplyPort<Result<Stored, StoreError>>,
    },
    /// From tests: one product by id, read from Postgres (the service
    /// reads blocks, [`PersistenceMsg::Versions`]).
    #[cfg(feature = "testing")]
    Get {
        id: i64,
        reply: RpcReplyPort<Result<Option<Product>, ReadError>>,
    },
    /// From the cache, to serve a list page before its index is complete: up
    /// to `limit` products after the id `after`.
    Page {
        after: i64,
        limit: u64,
        reply: RpcReplyPort<Result<Vec<Product>, ReadError>>,
    },
    /// From the cache, to fill a block or rebuild: every version of the ids
    /// from `from` to `until` (both included), deleted ones too, in id order,
    /// at most `limit`.
    Versions {
        from: i64,
        until: i64,
        limit: u64,
        reply: RpcReplyPort<Result<Vec<Version>, ReadError>>,
    },
    /// From the cache's change feed: every change committed since the
    /// snapshot `since` (none given: only the snapshot to start from).
    ChangesSince {
        since: Option<String>,
        /// Past this many changed rows, only the blocks are answered
        /// ([`Changes::too_many`]).
        max_rows: u64,
        /// Whether to say which blocks, past `max_rows` (a whole-table
        /// aggregate: the cache needs it, a test may only need to know).
        blocks: bool,
        reply: RpcReplyPort<Result<Changes, ReadError>>,
    },
    /// From http's search (the pages' and the API's): up to `limit` products
    /// after the id `after` that `filter` asks for.
    Search {
        filter: Filter,
        after: i64,
        limit: u64,
        reply: RpcReplyPort<Result<Vec<Product>, ReadError>>,
    },
    /// From http's rejected page: up to `limit` rejected messages, newest
    /// first, older than the one with the row id `before` (none: the newest).
    Rejected {
        before: Option<i64>,
        limit: u64,
        reply: RpcReplyPort<Result<Vec<RejectedMessage>, ReadError>>,
    },
    /// From http's replay form: the rejected message with the row id `id`.
    RejectedOne {
        id: i64,
        reply: RpcReplyPort<Result<Option<RejectedMessage>, ReadError>>,
    },
    /// From http's manage pages: what became of the message `seq` of the
    /// stream `stream` (its identity), which named the product `id` (none:
    /// a new product).
    Outcome {
        stream: String,
        seq: i64,
        id: Option<i64>,
        reply: RpcReplyPort<Result<MessageOutcome, ReadError>>,
    },
    /// From http's change stream: up to `limit` changes after `after`.
    History {
        after: Position,
        limit: u64,
        reply: RpcReplyPort<Result<History, ReadError>>,
    },
    /// From http's change stream and snapshot: the end of the history served
    /// now (what a snapshot begun now holds, and where its changes start).
    ServedThrough {
        reply: RpcReplyPort<Result<Position, ReadError>>,
    },
    /// From http's snapshot: up to `limit` products after the id `after`
    /// whose latest change is at or before `through`.
    SnapshotPage {
        through: Position,
        after: i64,
        limit: u64,
        reply: RpcReplyPort<Result<Vec<Product>, ReadError>>,
    },
    /// Its own timer: prune the tombstones older than the retention.
    Prune,
    /// From http's readiness check: can Postgres be read?
    Ping {
        reply: RpcReplyPort<Result<(), ReadError>>,
    },
}

#[derive(Clone)]
pub struct PersistenceArgs {
    pub names: Names,
    pub database_url: SecretUrl,
    /// All connections, the writer's [`WRITE_CONNECTIONS`] included (and one
    /// more, for the change listener).
    pub max_connections: u32,
    /// Raised when Postgres says products changed.
    pub changes: ChangeSignal,
    /// Where the writer hands what it committed, for the cache.
    pub commits: Commits,
    /// How long the change stream keeps a deletion's tombstone
    /// (`CHANGES_RETENTION`): a client may resume from any younger position.
    pub retention: Duration,
}

pub struct Persistence;

pub struct PersistenceState {
    reads: DatabaseConnection,
    writer: WriterRef,
    write_queue: Arc<Semaphore>,
    /// A permit per read connection searches may hold (see [`READS_PER_SEARCH`]).
    searches: Arc<Semaphore>,
    retention: Duration,
    _listening: listener::Listening,
}

impl Actor for Persistence {
    type Msg = PersistenceMsg;
    type State = PersistenceState;
    type Arguments = PersistenceArgs;

    async fn pre_start(
        &self,
        myself: PersistenceRef,
        args: PersistenceArgs,
    ) -> Result<PersistenceState, ActorProcessingErr> {
        let read_connections = args
            .max_connections
            .saturating_sub(WRITE_CONNECTIONS)
            .max(1);
        let reads = pool(args.database_url.expose(), read_connections).await?;
        let writes = pool(args.database_url.expose(), WRITE_CONNECTIONS).await?;
        // A persistence actor that failed or was killed did not stop its
        // writer (ractor stops children only when asked): end that one first.
        if let Some(orphan) = ractor::registry::where_is(args.names.writer()) {
            orphan.kill_and_wait(Some(STATEMENT_TIMEOUT)).await?;
        }
        let writer_args = WriterArgs {
            db: writes,
            commits: args.commits,
        };
        let (writer, _) = Actor::spawn_linked(
            Some(args.names.writer()),
            Writer,
            writer_args,
            myself.get_cell(),
        )
        .await?;
        myself.send_interval(prune_every(args.retention), || PersistenceMsg::Prune);
        Ok(PersistenceState {
            reads,
            writer,
            write_queue: Arc::new(Semaphore::new(WRITE_QUEUE)),
            searches: Arc::new(Semaphore::new(search_permits(read_connections))),
            retention: args.retention,
            _listening: listener::spawn(args.database_url, args.changes),
        })
    }

    async fn handle(
        &self,
        _myself: PersistenceRef,
        msg: PersistenceMsg,
        state: &mut PersistenceState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            PersistenceMsg::StoreBatch { batch, reply } => {
                let Ok(permit) = state.write_queue.clone().try_acquire_owned() else {
                    let _ = reply.send(Err(StoreError::Busy));
                    return Ok(());
                };
                state.writer.cast(WriterMsg::Store {
                    batch,
                    reply,
                    permit,
                })?;
            }
            #[cfg(feature = "testing")]
            PersistenceMsg::Get { id, reply } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move { reads::find(&db, id).await });
            }
            PersistenceMsg::Page {
                after,
                limit,
                reply,
            } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move { reads::page(&db, after, limit).await });
            }
            PersistenceMsg::Versions {
                from,
                until,
                limit,
                reply,
            } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move {
                    reads::versions(&db, from, until, limit).await
                });
            }
            PersistenceMsg::ChangesSince {
                since,
                max_rows,
                blocks,
                reply,
            } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move {
                    feed::changes_since(&db, since.as_deref(), max_rows, blocks).await
                });
            }
            PersistenceMsg::Search {
                filter,
                after,
                limit,
                reply,
            } => {
                let db = state.reads.clone();
                let searches = Arc::clone(&state.searches);
                spawn_reply(reply, async move {
                    let Ok(Ok(_turn)) =
                        tokio::time::timeout(SEARCH_WAIT, searches.acquire_owned()).await
                    else {
                        return Err(ReadError::SearchesBusy);
                    };
                    lookups::search(&db, &filter, after, limit).await
                });
            }
            PersistenceMsg::Rejected {
                before,
                limit,
                reply,
            } => {
                let db = state.reads.clone();
                spawn_reply(
                    reply,
                    async move { lookups::rejected(&db, before, limit).await },
                );
            }
            PersistenceMsg::RejectedOne { id, reply } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move { lookups::rejected_one(&db, id).await });
            }
            PersistenceMsg::Outcome {
                stream,
                seq,
                id,
                reply,
            } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move {
                    lookups::outcome(&db, &stream, seq, id).await
                });
            }
            PersistenceMsg::History {
                after,
                limit,
                reply,
            } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move {
                    history::changes_after(&db, after, limit).await
                });
            }
            PersistenceMsg::ServedThrough { reply } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move { history::served_through(&db).await });
            }
            PersistenceMsg::SnapshotPage {
                through,
                after,
                limit,
                reply,
            } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move {
                    history::snapshot_page(&db, through, after, limit).await
                });
            }
            PersistenceMsg::Prune => {
                let db = state.reads.clone();
                let retention = state.retention;
                tokio::spawn(async move {
                    match history::prune(&db, retention).await {
                        Ok(0) => {}
                        Ok(pruned) => info!(
                            pruned,
                            ?retention,
                            "pruned the change stream's old tombstones"
                        ),
                        Err(error) => {
                            warn!(%error, "pruning the change stream's old tombstones failed")
                        }
                    }
                });
            }
            PersistenceMsg::Ping { reply } => {
                let db = state.reads.clone();
                spawn_reply(reply, async move { Ok(db.ping().await?) });
            }
        }
        Ok(())
    }

    /// The writer is part of this actor: if it ends, so does persistence, and
    /// the supervisor starts both again.
    async fn handle_supervisor_evt(
        &self,
        _myself: PersistenceRef,
        event: SupervisionEvent,
        _state: &mut PersistenceState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(_, error) => {
                Err(format!("the writer failed: {error}").into())
            }
            SupervisionEvent::ActorTerminated(_, _, reason) => Err(format!(
                "the writer stopped: {}",
                reason.as_deref().unwrap_or("no reason given")
            )
            .into()),
            _ => Ok(()),
        }
    }

    async fn post_stop(
        &self,
        _myself: PersistenceRef,
        state: &mut PersistenceState,
    ) -> Result<(), ActorProcessingErr> {
        // Let the writer finish what it was given, then close the read pool.
        let _ = state
            .writer
            .drain_and_wait(Some(crate::timeouts::WRITE_DEADLINE))
            .await;
        let _ = state.reads.clone().close().await;
        Ok(())
    }
}

/// A lazy pool: the actor starts (and restarts) even while Postgres is away,
/// and each query connects as needed (sqlx 0.9.1 sets `TCP_NODELAY` on its
/// TCP connections, so a statement larger than one segment is not held
/// back by Nagle's algorithm).
async fn pool(database_url: &str, max_connections: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url);
    options
        .max_connections(max_connections)
        .min_connections(0)
        .connect_timeout(POSTGRES_CONNECT_TIMEOUT)
        .acquire_timeout(POSTGRES_CONNECT_TIMEOUT)
        .connect_lazy(true)
        .statement_timeout(STATEMENT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(options).await
}

/// How many searches may run at once over `read_connections` connections.
fn search_permits(read_connections: u32) -> usize {
    (read_connections / READS_PER_SEARCH).max(1) as usize
}

/// Answers a read on a task of its own, so the actor goes on to the next message.
fn spawn_reply<T: Send + 'static>(
    reply: RpcReplyPort<T>,
    work: impl Future<Output = T> + Send + 'static,
) {
    tokio::spawn(
        async move {
            let _ = reply.send(work.await);
        }
        .in_current_span(),
    );
}

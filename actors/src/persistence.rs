//! The persistence actor: the only part that talks to Postgres, through SeaORM.
//!
//! Writes (`StoreBatch`) go to one writer task that stores them one at a time,
//! in the order ingest sends them, so that what is committed follows the
//! stream. Reads (`Get`, `Page`, `Ping`) run on tasks of their own over the
//! connection pool. The actor itself only dispatches, so a slow write never
//! holds up a read, nor a slow read a write. Every statement is cut off after
//! [`STATEMENT_TIMEOUT`].

mod store;

use crate::product::{Product, ProductUpdate};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr, RuntimeErr};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::Instrument;

pub type PersistenceRef = ActorRef<PersistenceMsg>;

/// One batch of messages from the stream, to be stored in one transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream's identity (name and creation time), see [`crate::ingest`].
    pub stream: String,
    /// The valid messages, in stream order.
    pub products: Vec<Incoming>,
    /// The invalid messages, set aside with their reason.
    pub rejected: Vec<Rejected>,
}

/// A valid message.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub stream_seq: u64,
    pub update: ProductUpdate,
}

/// An invalid message.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub stream_seq: u64,
    pub subject: String,
    /// The start of the payload, cut to [`Rejected::KEPT_BYTES`].
    pub payload: Vec<u8>,
    pub payload_len: usize,
    pub reason: String,
}

impl Rejected {
    /// How much of an invalid payload is kept for a person to look at.
    pub const KEPT_BYTES: usize = 4096;
}

/// What storing a batch did.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The current version of every product the batch names, to be put in the cache.
    pub current: Vec<Product>,
    /// Messages Postgres refused on their own (the rest were stored): to be set
    /// aside like invalid ones.
    pub refused: Vec<Refused>,
}

#[derive(Debug, Clone)]
pub struct Refused {
    pub stream_seq: u64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] DbErr),
}

impl StoreError {
    /// Postgres refused the data itself (a data exception, a constraint, a
    /// limit), as opposed to being unreachable: the same data would fail again.
    pub fn is_refusal(&self) -> bool {
        let StoreError::Database(
            DbErr::Exec(RuntimeErr::SqlxError(error)) | DbErr::Query(RuntimeErr::SqlxError(error)),
        ) = self
        else {
            return false;
        };
        match error.as_ref() {
            sea_orm::sqlx::Error::Database(error) => error.code().is_some_and(|code| {
                ["22", "23", "54"]
                    .iter()
                    .any(|class| code.starts_with(class))
            }),
            _ => false,
        }
    }
}

pub enum PersistenceMsg {
    /// From ingest: store a batch in one transaction. Replies once it has
    /// committed, with what changed and what Postgres refused.
    StoreBatch {
        batch: Batch,
        reply: RpcReplyPort<Result<Stored, StoreError>>,
    },
    /// From the cache, on a miss: one product by id.
    Get {
        id: i64,
        reply: RpcReplyPort<Result<Option<Product>, StoreError>>,
    },
    /// From http and the cache rebuild: up to `limit` products after the id `after`.
    Page {
        after: i64,
        limit: u64,
        reply: RpcReplyPort<Result<Vec<Product>, StoreError>>,
    },
    /// From http's readiness check: is Postgres reachable?
    Ping {
        reply: RpcReplyPort<Result<(), StoreError>>,
    },
}

#[derive(Clone)]
pub struct PersistenceArgs {
    pub database_url: String,
    pub max_connections: u32,
}

pub struct Persistence;

pub struct PersistenceState {
    db: DatabaseConnection,
    writes: Option<mpsc::UnboundedSender<Write>>,
    writer: Option<JoinHandle<()>>,
}

/// A batch to store, and where to send the outcome.
type Write = (Batch, RpcReplyPort<Result<Stored, StoreError>>);

/// The longest any statement may run (a write shorter than ingest's store
/// timeout, so that a hung write fails before ingest gives up on it).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(8);

impl Actor for Persistence {
    type Msg = PersistenceMsg;
    type State = PersistenceState;
    type Arguments = PersistenceArgs;

    async fn pre_start(
        &self,
        _myself: PersistenceRef,
        args: PersistenceArgs,
    ) -> Result<PersistenceState, ActorProcessingErr> {
        // A lazy pool: the actor starts (and restarts) even while Postgres is away,
        // and each query connects as needed.
        let mut options = ConnectOptions::new(args.database_url);
        options
            .max_connections(args.max_connections)
            .min_connections(0)
            .connect_timeout(Duration::from_secs(3))
            .acquire_timeout(Duration::from_secs(3))
            .connect_lazy(true)
            .statement_timeout(STATEMENT_TIMEOUT)
            .sqlx_logging(false);
        let db = Database::connect(options).await?;
        let (writes, mut queue) = mpsc::unbounded_channel::<Write>();
        let writer_db = db.clone();
        let writer = tokio::spawn(
            async move {
                while let Some((batch, reply)) = queue.recv().await {
                    let _ = reply.send(store::store_batch(&writer_db, batch).await);
                }
            }
            .in_current_span(),
        );
        Ok(PersistenceState {
            db,
            writes: Some(writes),
            writer: Some(writer),
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
                if let Some(writes) = &state.writes {
                    // The writer outlives the channel only while stopping.
                    let _ = writes.send((batch, reply));
                }
            }
            PersistenceMsg::Get { id, reply } => {
                let db = state.db.clone();
                spawn_reply(reply, async move { store::find(&db, id).await });
            }
            PersistenceMsg::Page {
                after,
                limit,
                reply,
            } => {
                let db = state.db.clone();
                spawn_reply(reply, async move { store::page(&db, after, limit).await });
            }
            PersistenceMsg::Ping { reply } => {
                let db = state.db.clone();
                spawn_reply(reply, async move { Ok(db.ping().await?) });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: PersistenceRef,
        state: &mut PersistenceState,
    ) -> Result<(), ActorProcessingErr> {
        // Let the writer finish what it was given, then close the pool.
        state.writes.take();
        if let Some(writer) = state.writer.take() {
            let _ = tokio::time::timeout(STATEMENT_TIMEOUT * 2, writer).await;
        }
        let _ = state.db.clone().close().await;
        Ok(())
    }
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

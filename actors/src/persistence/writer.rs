//! The writer: a child actor of persistence that stores batches one at a time,
//! in the order they come, over connections of its own (a bulkhead: however
//! many reads wait for a connection, a write never waits behind them).
//!
//! A batch that takes longer than [`WRITE_DEADLINE`] is cancelled: its
//! transaction is dropped uncommitted (rolled back; Postgres ends the
//! statement in flight within [`STATEMENT_TIMEOUT`]), and the writer answers
//! that it was cancelled, so that a store is either awaited or cancelled,
//! never abandoned while it commits behind the caller's back.
//!
//! Once a batch has committed, the writer hands its new versions to the cache
//! ([`Commits`]) and waits until they are served, up to [`PUT_TIMEOUT`],
//! before it answers: so once ingest acks a message, this replica serves its
//! version.
//!
//! The writer is linked to persistence: if it dies, persistence fails with it
//! and the supervisor restarts both, so a store request is never dropped by a
//! writer that is gone while persistence looks alive.

use super::{StoreError, store};
use crate::changes::Commits;
use crate::timeouts::{PUT_TIMEOUT, STATEMENT_TIMEOUT, WRITE_DEADLINE};
use catalogue::batch::{Batch, Stored};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sea_orm::DatabaseConnection;
use tokio::sync::OwnedSemaphorePermit;
use tracing::warn;

pub type WriterRef = ActorRef<WriterMsg>;

pub enum WriterMsg {
    /// From persistence: store one batch; replies once it has committed, failed
    /// or been cancelled. `permit` is its place in the bounded write queue,
    /// given back when the reply is sent.
    Store {
        batch: Batch,
        reply: RpcReplyPort<Result<Stored, StoreError>>,
        permit: OwnedSemaphorePermit,
    },
}

pub struct Writer;

/// The writer's connections, and where its commits go.
pub struct WriterArgs {
    pub db: DatabaseConnection,
    pub commits: Commits,
}

impl Actor for Writer {
    type Msg = WriterMsg;
    type State = WriterArgs;
    type Arguments = WriterArgs;

    async fn pre_start(
        &self,
        _myself: WriterRef,
        args: WriterArgs,
    ) -> Result<WriterArgs, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _myself: WriterRef,
        msg: WriterMsg,
        state: &mut WriterArgs,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WriterMsg::Store {
                batch,
                reply,
                permit,
            } => {
                let stored =
                    tokio::time::timeout(WRITE_DEADLINE, store::store_batch(&state.db, &batch))
                        .await
                        .unwrap_or(Err(StoreError::Cancelled(WRITE_DEADLINE)));
                if let Ok(stored) = &stored {
                    let served = state
                        .commits
                        .publish(stored.current.clone(), PUT_TIMEOUT)
                        .await;
                    if let Err(error) = served {
                        // Stored all the same: the change feed brings them,
                        // and a cache that comes back rebuilds from Postgres.
                        warn!(%error, "the cache did not take the new versions");
                    }
                }
                drop(permit);
                let _ = reply.send(stored);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: WriterRef,
        state: &mut WriterArgs,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tokio::time::timeout(STATEMENT_TIMEOUT, state.db.clone().close()).await;
        Ok(())
    }
}

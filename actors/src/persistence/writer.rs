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
//! The writer is linked to persistence: if it dies, persistence fails with it
//! and the supervisor restarts both, so a store request is never dropped by a
//! writer that is gone while persistence looks alive.

use super::{StoreError, store};
use crate::batch::{Batch, Stored};
use crate::timeouts::{STATEMENT_TIMEOUT, WRITE_DEADLINE};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use sea_orm::DatabaseConnection;
use tokio::sync::OwnedSemaphorePermit;

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

impl Actor for Writer {
    type Msg = WriterMsg;
    type State = DatabaseConnection;
    type Arguments = DatabaseConnection;

    async fn pre_start(
        &self,
        _myself: WriterRef,
        db: DatabaseConnection,
    ) -> Result<DatabaseConnection, ActorProcessingErr> {
        Ok(db)
    }

    async fn handle(
        &self,
        _myself: WriterRef,
        msg: WriterMsg,
        db: &mut DatabaseConnection,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WriterMsg::Store {
                batch,
                reply,
                permit,
            } => {
                let stored = tokio::time::timeout(WRITE_DEADLINE, store::store_batch(db, &batch))
                    .await
                    .unwrap_or(Err(StoreError::Cancelled(WRITE_DEADLINE)));
                drop(permit);
                let _ = reply.send(stored);
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: WriterRef,
        db: &mut DatabaseConnection,
    ) -> Result<(), ActorProcessingErr> {
        let _ = tokio::time::timeout(STATEMENT_TIMEOUT, db.clone().close()).await;
        Ok(())
    }
}

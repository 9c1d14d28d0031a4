//! The one fixture for tests that drive the persistence actor through its
//! messages: an actor over a fresh database of its own (dropped when the
//! fixture is), with the requests every such test makes.

use super::{Cleanup, ask_persistence, prepared_database, spawn_persistence, unique_settings};
use actors::persistence::{PersistenceMsg, PersistenceRef};
use actors::secret::SecretUrl;
use catalogue::batch::{Batch, Outcome, Rejection, Stored};
use catalogue::product::Product;

pub struct PersistenceFixture {
    pub persistence: PersistenceRef,
    pub database_url: SecretUrl,
    _cleanup: Cleanup,
}

/// A persistence actor over a new, migrated database.
pub async fn persistence_fixture() -> PersistenceFixture {
    let settings = unique_settings();
    let cleanup = prepared_database(&settings).await;
    PersistenceFixture {
        persistence: spawn_persistence(None, &settings, &Default::default()).await,
        database_url: settings.database.url,
        _cleanup: cleanup,
    }
}

impl PersistenceFixture {
    /// Stores `batch`, whose messages must each be stored or set aside as
    /// invalid (not refused, not retried), and returns the current version
    /// of every product it names.
    pub async fn store(&self, batch: Batch) -> Vec<Product> {
        let stored = self.store_all(batch).await;
        assert!(
            stored.outcomes.iter().all(|o| matches!(
                o,
                Outcome::Stored | Outcome::SetAside(Rejection::Invalid(_))
            )),
            "{:?}",
            stored.outcomes
        );
        stored.current
    }

    /// Stores `batch`, whatever becomes of its messages.
    pub async fn store_all(&self, batch: Batch) -> Stored {
        ask_persistence(&self.persistence, |reply| PersistenceMsg::StoreBatch {
            batch,
            reply,
        })
        .await
    }

    pub async fn get(&self, id: i64) -> Option<Product> {
        ask_persistence(&self.persistence, |reply| PersistenceMsg::Get { id, reply }).await
    }
}

//! The signal that Postgres has committed changes to the products: set by
//! persistence's listener (`LISTEN products_changed`, see the migration that
//! adds revisions), followed by the cache, which then asks what changed.
//!
//! It only says "something changed": what changed is always read from
//! Postgres, so a lost signal delays a change (until the next signal or the
//! cache's timer), never loses it.

use std::sync::Arc;
use tokio::sync::watch;

/// Clones share one signal. Created once by the binary, so that it outlives
/// the restarts of the actors on either end.
#[derive(Clone, Debug)]
pub struct ChangeSignal(Arc<watch::Sender<u64>>);

impl Default for ChangeSignal {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl ChangeSignal {
    /// Something changed (or may have: the listener was away).
    pub fn notify(&self) {
        self.0.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// A receiver that wakes once for any number of signals since it last looked.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

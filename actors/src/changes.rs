//! The two ways committed changes reach the cache; neither end knows the
//! other's actor.
//!
//! - [`ChangeSignal`]: Postgres has committed changes to the products, by any
//!   replica or by hand. Set by persistence's listener (`LISTEN
//!   products_changed`, see the migration that adds revisions), followed by
//!   the cache, which then asks what changed. It only says "something
//!   changed": what changed is always read from Postgres, so a lost signal
//!   delays a change (until the next signal or the cache's timer), never
//!   loses it.
//! - [`Commits`]: what this replica's writer has just committed, from the
//!   writer to the cache, so that this replica serves a version before its
//!   message is acked.

use catalogue::product::Product;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot, watch};

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

/// The versions this replica's writer has just committed, handed to the
/// cache, which serves them before the writer answers the batch (so before
/// ingest acks its messages: once a message is acked, this replica serves
/// its version). The change feed brings the same versions a moment later, and
/// every other replica's; revisions decide which one a cache keeps, so the
/// two never disagree.
pub struct Committed {
    pub products: Vec<Product>,
    /// Answered once the cache serves them.
    pub served: oneshot::Sender<()>,
}

/// The way from the writer to the cache. Clones share one channel. Created
/// once by the binary, so that it outlives the restarts of the actors on
/// either end: a restarted cache takes the receiving end over
/// ([`Commits::take`]).
#[derive(Clone)]
pub struct Commits {
    sender: mpsc::Sender<Committed>,
    receiver: Arc<Mutex<mpsc::Receiver<Committed>>>,
}

impl Default for Commits {
    fn default() -> Self {
        // The writer waits for each batch to be served: one is in flight.
        let (sender, receiver) = mpsc::channel(1);
        Self {
            sender,
            receiver: Arc::new(Mutex::new(receiver)),
        }
    }
}

/// Why committed versions were not served in time (they are stored all the
/// same, and the change feed or a rebuild brings them).
#[derive(Debug, thiserror::Error)]
pub enum NotServed {
    #[error("no cache is taking committed versions")]
    NoCache,
    #[error("the cache did not serve them within {0:?}")]
    TooSlow(Duration),
}

impl Commits {
    /// Hands `products` to the cache and waits until it serves them, at most
    /// `wait`. Returns at once when no cache is taking them (none is running).
    pub async fn publish(&self, products: Vec<Product>, wait: Duration) -> Result<(), NotServed> {
        if self.receiver.try_lock().is_ok() {
            return Err(NotServed::NoCache);
        }
        let (served, done) = oneshot::channel();
        let handed = async {
            self.sender
                .send(Committed { products, served })
                .await
                .map_err(|_| NotServed::NoCache)?;
            done.await.map_err(|_| NotServed::NoCache)
        };
        tokio::time::timeout(wait, handed)
            .await
            .map_err(|_| NotServed::TooSlow(wait))?
    }

    /// The receiving end, for one cache at a time: waits until the one
    /// before (if any) has let go of it.
    pub async fn take(&self) -> OwnedMutexGuard<mpsc::Receiver<Committed>> {
        Arc::clone(&self.receiver).lock_owned().await
    }
}

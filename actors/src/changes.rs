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
//! - [`Applied`]: the transactions whose every write the cache has applied
//!   (this replica's, and those other replicas shipped to it), which its
//!   change feed's reads leave out.

use catalogue::feed::{Version, Written};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard, mpsc, oneshot, watch};
use tokio::time::Instant;

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
    pub versions: Vec<Version>,
    /// The transaction, and how many products it wrote (all in `versions`).
    pub written: Option<Written>,
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
    /// Hands `versions` to the cache and waits until it serves them, at most
    /// `wait`. Returns at once when no cache is taking them (none is running).
    pub async fn publish(
        &self,
        versions: Vec<Version>,
        written: Option<Written>,
        wait: Duration,
    ) -> Result<(), NotServed> {
        if self.receiver.try_lock().is_ok() {
            return Err(NotServed::NoCache);
        }
        let (served, done) = oneshot::channel();
        let handed = async {
            self.sender
                .send(Committed {
                    versions,
                    written,
                    served,
                })
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

/// The transactions whose every write this replica's cache has applied, by
/// id (with how many products each wrote), so that its change feed leaves
/// them out instead of reading them back from Postgres. One per cache actor
/// (a restarted cache starts empty, and rebuilds). Clones share one set.
///
/// A transaction is added only once its versions are applied, and only with
/// the number of rows it wrote: the feed compares that with the rows
/// Postgres holds for it, and reads it if they differ. So leaving one out
/// never hides a write; a transaction never added is read, as before.
#[derive(Clone, Default)]
pub struct Applied(Arc<AppliedInner>);

#[derive(Default)]
struct AppliedInner {
    // A std lock: held only to read or change the map, never across an await.
    set: std::sync::Mutex<AppliedSet>,
    /// Counts additions, for readers waiting on one.
    added: watch::Sender<u64>,
}

#[derive(Default)]
struct AppliedSet {
    /// Each transaction's rows, and when it was added (`next`'s value then).
    by_xid: BTreeMap<u64, (u64, u64)>,
    next: u64,
}

/// The most transactions kept: past it, the oldest are forgotten (and read
/// from Postgres if a feed still asks for them).
const APPLIED_MAX: usize = 65_536;

impl Applied {
    /// `written`'s versions are applied.
    pub fn add(&self, written: Written) {
        {
            let mut set = self.0.set.lock().unwrap_or_else(|e| e.into_inner());
            let mark = set.next;
            set.next += 1;
            set.by_xid.insert(written.xid, (written.rows, mark));
            if set.by_xid.len() > APPLIED_MAX {
                let oldest = set.next - APPLIED_MAX as u64;
                set.by_xid.retain(|_, (_, mark)| *mark >= oldest);
            }
        }
        self.0
            .added
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Where the set stands now: see [`Applied::forget_before`].
    pub fn mark(&self) -> u64 {
        self.0.set.lock().unwrap_or_else(|e| e.into_inner()).next
    }

    /// Forgets the transactions added before `mark`: a read of Postgres
    /// begun after them sees them committed (each was added after its
    /// commit), so no feed reading from that read's snapshot asks for them.
    pub fn forget_before(&self, mark: u64) {
        self.0
            .set
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_xid
            .retain(|_, (_, added)| *added >= mark);
    }

    /// Of `asked` (transactions and the rows each wrote, as Postgres says),
    /// those not applied whole, waiting up to `within` for them to be
    /// (a shipment is on its way just after its commit).
    pub async fn missing(&self, asked: &[Written], within: Duration) -> Vec<u64> {
        let deadline = Instant::now() + within;
        let mut added = self.0.added.subscribe();
        loop {
            let missing: Vec<u64> = {
                let set = self.0.set.lock().unwrap_or_else(|e| e.into_inner());
                asked
                    .iter()
                    .filter(|written| {
                        set.by_xid.get(&written.xid).map(|(rows, _)| *rows) != Some(written.rows)
                    })
                    .map(|written| written.xid)
                    .collect()
            };
            if missing.is_empty() {
                return missing;
            }
            match tokio::time::timeout_at(deadline, added.changed()).await {
                Ok(Ok(())) => {}
                _ => return missing,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(xid: u64, rows: u64) -> Written {
        Written { xid, rows }
    }

    #[tokio::test]
    async fn a_transaction_is_missing_until_it_is_added_with_every_row() {
        let applied = Applied::default();
        let asked = [written(7, 3), written(8, 1)];
        applied.add(written(7, 2));
        assert_eq!(applied.missing(&asked, Duration::ZERO).await, vec![7, 8]);
        applied.add(written(7, 3));
        assert_eq!(applied.missing(&asked, Duration::ZERO).await, vec![8]);
        let later = applied.clone();
        let waiting =
            tokio::spawn(async move { later.missing(&asked, Duration::from_secs(30)).await });
        applied.add(written(8, 1));
        assert_eq!(waiting.await.unwrap(), Vec::<u64>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn a_wait_for_a_transaction_never_added_ends_at_its_deadline() {
        let applied = Applied::default();
        let started = Instant::now();
        let missing = applied
            .missing(&[written(1, 1)], Duration::from_millis(20))
            .await;
        assert_eq!(missing, vec![1]);
        assert_eq!(started.elapsed(), Duration::from_millis(20));
    }

    #[test]
    fn a_transaction_added_before_a_mark_is_forgotten_after_it() {
        let applied = Applied::default();
        applied.add(written(1, 1));
        let mark = applied.mark();
        applied.add(written(2, 1));
        applied.forget_before(mark);
        let set = applied.0.set.lock().unwrap();
        assert_eq!(set.by_xid.keys().copied().collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn the_set_keeps_at_most_its_bound_forgetting_the_oldest() {
        let applied = Applied::default();
        for xid in 0..(APPLIED_MAX as u64 + 10) {
            applied.add(written(xid, 1));
        }
        let set = applied.0.set.lock().unwrap();
        assert_eq!(set.by_xid.len(), APPLIED_MAX);
        assert_eq!(set.by_xid.keys().next(), Some(&10));
    }
}

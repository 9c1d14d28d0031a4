//! How fresh this replica's answers are, as a stream sequence: every message
//! of the stream up to [`Freshness::applied`] has been stored (or set aside)
//! by some replica, and this replica's cache has seen it through the change
//! feed. `Products-Applied-Seq` says it on every answer, and a client that
//! knows the sequence of its own publish (the JetStream ack says it) asks
//! `?min_seq=N` to read its own write on any replica.
//!
//! Where the number comes from, on every replica alike:
//! - ingest samples the durable consumer's ack floor ([`Freshness::sampled`]):
//!   every message up to it has been answered, and a message is acked only
//!   once its batch has committed. So whatever is at or below the floor
//!   sampled at time T was committed before T.
//! - the cache notes the floor last sampled as a catch-up of its change feed
//!   starts ([`Freshness::floor`]), and once that catch-up is applied
//!   ([`Freshness::caught_up_from`]) the floor is applied: the catch-up read
//!   Postgres after T, so it saw every one of those commits.
//! - a floor that moves wakes the cache for one more catch-up, and a request
//!   that waits asks ingest to sample at once ([`Freshness::want_sample`]),
//!   so that a wait is a few round trips, not a sampling period.
//!
//! A message nak'ed for a retry holds the floor (it is not applied yet), so a
//! client waits for it or is told how far the replica got.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How soon a waiting request asks for a sample again, first and at most.
const FIRST_ASK_AGAIN: Duration = Duration::from_millis(2);
const LAST_ASK_AGAIN: Duration = Duration::from_millis(100);

/// Clones share one state; created once by the binary (in [`crate::health::Health`]),
/// so it outlives the actors' restarts.
#[derive(Clone, Debug)]
pub struct Freshness(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// The consumer's ack floor, as last sampled.
    floor: watch::Sender<u64>,
    /// The last stream sequence this replica has applied.
    applied: watch::Sender<u64>,
    /// A request is waiting for a sequence past `applied`.
    wanted: Notify,
}

impl Default for Freshness {
    fn default() -> Self {
        Self(Arc::new(Inner {
            floor: watch::Sender::new(0),
            applied: watch::Sender::new(0),
            wanted: Notify::new(),
        }))
    }
}

impl Freshness {
    /// From ingest: the consumer's ack floor now.
    pub fn sampled(&self, floor: u64) {
        self.0.floor.send_if_modified(|kept| {
            let newer = floor > *kept;
            *kept = (*kept).max(floor);
            newer
        });
    }

    /// From the cache, as a catch-up (or a rebuild) starts: the floor that it
    /// will have applied once it is done.
    pub fn floor(&self) -> u64 {
        *self.0.floor.borrow()
    }

    /// From the cache: the catch-up that started when the floor was `floor`
    /// has been applied.
    pub fn caught_up_from(&self, floor: u64) {
        self.0.applied.send_if_modified(|applied| {
            let newer = floor > *applied;
            *applied = (*applied).max(floor);
            newer
        });
    }

    /// The last stream sequence this replica has applied.
    pub fn applied(&self) -> u64 {
        *self.0.applied.borrow()
    }

    /// A receiver that wakes when the sampled floor moves (the cache catches
    /// up then).
    pub fn floor_moves(&self) -> watch::Receiver<u64> {
        self.0.floor.subscribe()
    }

    /// Waits until ingest should sample the floor again (a request is
    /// waiting for it).
    pub async fn sample_wanted(&self) {
        self.0.wanted.notified().await;
    }

    /// Asks ingest to sample the floor now.
    pub fn want_sample(&self) {
        self.0.wanted.notify_one();
    }

    /// Waits until this replica has applied `seq`, at most `wait`. `Ok` with
    /// the sequence applied then, or `Err` with the one reached.
    pub async fn wait_for(&self, seq: u64, wait: Duration) -> Result<u64, u64> {
        let mut applied = self.0.applied.subscribe();
        let reached = async {
            // Ask again soon, then less and less often: a sample that found
            // the floor short is often followed within milliseconds by the
            // ack that moves it (a lone waiter would otherwise wait for the
            // next ask however soon the ack came). Samples are one at a time
            // however many wait.
            let mut again = FIRST_ASK_AGAIN;
            loop {
                let now = *applied.borrow_and_update();
                if now >= seq {
                    return now;
                }
                self.want_sample();
                let _ = tokio::time::timeout(again, applied.changed()).await;
                again = (again * 2).min(LAST_ASK_AGAIN);
            }
        };
        tokio::time::timeout(wait, reached)
            .await
            .map_err(|_| self.applied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_floor_is_applied_only_once_a_catch_up_begun_after_it_is_done() {
        let freshness = Freshness::default();
        let before = freshness.floor();
        freshness.sampled(7);
        // A catch-up that began before the sample applies what it began with.
        freshness.caught_up_from(before);
        assert_eq!(freshness.applied(), 0);
        let started = freshness.floor();
        freshness.caught_up_from(started);
        assert_eq!(freshness.applied(), 7);
        // Neither number goes back.
        freshness.sampled(3);
        freshness.caught_up_from(2);
        assert_eq!((freshness.floor(), freshness.applied()), (7, 7));
    }

    #[tokio::test]
    async fn a_wait_ends_when_the_sequence_is_applied_or_says_how_far_it_got() {
        let freshness = Freshness::default();
        freshness.sampled(5);
        freshness.caught_up_from(5);
        assert_eq!(freshness.wait_for(5, Duration::ZERO).await, Ok(5));
        assert_eq!(
            freshness.wait_for(6, Duration::from_millis(50)).await,
            Err(5)
        );
        let later = freshness.clone();
        let applying = tokio::spawn(async move {
            later.sample_wanted().await;
            later.sampled(9);
            later.caught_up_from(9);
        });
        assert_eq!(freshness.wait_for(6, Duration::from_secs(5)).await, Ok(9));
        applying.await.unwrap();
    }
}

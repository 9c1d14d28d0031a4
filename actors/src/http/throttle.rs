//! Failed sign-ins, per name and per client address: a failed sign-in's
//! answer waits longer the more failures its name or its address has had
//! lately (250 ms, doubling, up to [`MAX_DELAY`]), and for twice that wait
//! another try for the same name or from the same address is answered 429
//! without checking the password (so parallel guesses gain nothing).
//! Failures are kept in a bounded cache (an attacker cycling names or
//! addresses evicts entries, never grows memory), forgotten after
//! [`FORGET_AFTER`] without another.

use moka::future::Cache;
use std::time::{Duration, Instant};

/// The longest a failed sign-in's answer waits.
const MAX_DELAY: Duration = Duration::from_secs(8);
/// Names and addresses whose failures are remembered, at most.
const REMEMBERED: u64 = 100_000;
/// Failures are forgotten after this long without another.
const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);

/// Recent failed sign-ins, per name and per client address.
#[derive(Clone)]
pub struct Failures {
    cache: Cache<String, Failed>,
}

#[derive(Clone, Copy)]
struct Failed {
    count: u32,
    /// No further try before then.
    not_before: Instant,
}

impl Default for Failures {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(REMEMBERED)
                .time_to_idle(FORGET_AFTER)
                .build(),
        }
    }
}

impl Failures {
    /// How long until `keys` may try again, if they may not now.
    pub async fn wait(&self, keys: &[String]) -> Option<Duration> {
        let now = Instant::now();
        let mut longest = None;
        for key in keys {
            if let Some(failed) = self.cache.get(key).await
                && failed.not_before > now
            {
                longest = longest.max(Some(failed.not_before - now));
            }
        }
        longest
    }

    /// Counts a failure for each of `keys`; how long its answer waits.
    pub async fn failed(&self, keys: &[String]) -> Duration {
        let mut most = 0;
        for key in keys {
            let count = self.cache.get(key).await.map_or(0, |f| f.count) + 1;
            most = most.max(count);
            // Held back for twice the answer's wait: a client that tries
            // again as soon as it is answered is still held back.
            let hold = delay(count) * 2;
            self.cache
                .insert(
                    key.clone(),
                    Failed {
                        count,
                        not_before: Instant::now() + hold,
                    },
                )
                .await;
        }
        delay(most)
    }

    pub async fn succeeded(&self, name_key: &str) {
        self.cache.invalidate(name_key).await;
    }
}

/// 250 ms after the first failure, doubling with each, up to [`MAX_DELAY`].
fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    (Duration::from_millis(250) * 2u32.pow(doublings)).min(MAX_DELAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_doubles_from_a_quarter_second_up_to_its_cap() {
        assert_eq!(delay(1), Duration::from_millis(250));
        assert_eq!(delay(2), Duration::from_millis(500));
        assert_eq!(delay(3), Duration::from_secs(1));
        assert_eq!(delay(20), MAX_DELAY);
        assert_eq!(delay(u32::MAX), MAX_DELAY);
    }

    #[tokio::test]
    async fn a_failure_holds_back_the_next_try_of_its_name_and_its_address() {
        let failures = Failures::default();
        let keys = ["name:alice".to_owned(), "addr:10.0.0.1".to_owned()];
        assert_eq!(failures.wait(&keys).await, None);
        assert_eq!(failures.failed(&keys).await, Duration::from_millis(250));
        assert!(failures.wait(&["name:alice".to_owned()]).await.is_some());
        assert!(failures.wait(&["addr:10.0.0.1".to_owned()]).await.is_some());
        assert_eq!(failures.wait(&["name:bob".to_owned()]).await, None);
        assert_eq!(failures.failed(&keys).await, Duration::from_millis(500));
    }
}

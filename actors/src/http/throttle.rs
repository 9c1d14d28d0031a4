//! Failed sign-ins, per name and per client address: a failed sign-in's
//! answer waits longer the more failures its name or its address has had
//! lately (250 ms, doubling, up to [`MAX_DELAY`]), and for twice that wait
//! another try for the same name or from the same address is answered 429
//! without checking the password (so parallel guesses gain nothing).
//! Failures are kept in a bounded cache (an attacker cycling names or
//! addresses evicts entries, never grows memory), forgotten after
//! [`FORGET_AFTER`] without another.

use moka::future::Cache;
use moka::ops::compute::Op;
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
    /// Begins a try for `keys`, unless one of them is held back: then how
    /// long it is, and no key is touched (a try held back by one key must not
    /// hold back the others, or two keys could keep each other held). A try
    /// that begins holds its keys back as if it will fail, so that tries sent
    /// together cannot all pass before the first failure is counted.
    pub async fn begin(&self, keys: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut longest: Option<Duration> = None;
        for key in keys {
            if let Some(failed) = self.cache.get(key).await
                && failed.not_before > now
            {
                longest = Some(longest.unwrap_or_default().max(failed.not_before - now));
            }
        }
        if let Some(wait) = longest {
            return Err(wait);
        }
        // Each key held in one step: of two tries that got this far at once,
        // one holds the key and the other finds it held.
        let mut raced: Option<Duration> = None;
        for key in keys {
            let raced = &mut raced;
            self.cache
                .entry(key.clone())
                .and_compute_with(|entry| async move {
                    let now = Instant::now();
                    let failed = entry.map(|entry| entry.into_value());
                    match failed {
                        Some(failed) if failed.not_before > now => {
                            *raced = Some(raced.unwrap_or_default().max(failed.not_before - now));
                            Op::Nop
                        }
                        failed => {
                            let count = failed.map_or(0, |f| f.count);
                            Op::Put(Failed {
                                count,
                                not_before: now + delay(count + 1),
                            })
                        }
                    }
                })
                .await;
        }
        raced.map_or(Ok(()), Err)
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

    /// A try for `keys` succeeded: its name's failures are forgotten, and
    /// an address with none lets the next try through at once.
    pub async fn succeeded(&self, keys: &[String]) {
        for key in keys {
            if key.starts_with("name:") || self.cache.get(key).await.is_some_and(|f| f.count == 0) {
                self.cache.invalidate(key).await;
            }
        }
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
    async fn a_try_holds_back_the_next_of_its_name_and_its_address_until_it_ends() {
        let failures = Failures::default();
        let keys = ["name:alice".to_owned(), "addr:10.0.0.1".to_owned()];
        assert_eq!(failures.begin(&keys).await, Ok(()));
        // Sent together: the second waits, whatever the first's outcome.
        assert!(failures.begin(&["name:alice".to_owned()]).await.is_err());
        assert!(failures.begin(&["addr:10.0.0.1".to_owned()]).await.is_err());
        assert_eq!(failures.begin(&["name:bob".to_owned()]).await, Ok(()));
        assert_eq!(failures.failed(&keys).await, Duration::from_millis(250));
        assert_eq!(failures.failed(&keys).await, Duration::from_millis(500));
    }

    #[tokio::test]
    async fn a_success_lets_the_next_try_through() {
        let failures = Failures::default();
        let keys = ["name:alice".to_owned(), "addr:10.0.0.1".to_owned()];
        assert_eq!(failures.begin(&keys).await, Ok(()));
        failures.succeeded(&keys).await;
        assert_eq!(failures.begin(&keys).await, Ok(()));
    }
}

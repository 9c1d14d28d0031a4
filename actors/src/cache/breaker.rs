//! While Postgres cannot be read, a read through the cache is not made to
//! wait for it again and again. sqlx retries a refused connection until its
//! acquire timeout (3 s, `POSTGRES_CONNECT_TIMEOUT`), so every read that
//! missed the cache would take that long during an outage; instead, once a
//! read has failed, one read (a probe) asks Postgres again after
//! [`PROBE_EVERY`], and the others fail at once (and are served from what
//! was written since start, or answered 503). The first probe that succeeds
//! closes it again.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How long after a failed read the next probe may ask Postgres.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct Breaker {
    /// The last read through failed.
    failing: AtomicBool,
    /// A read is asking Postgres while it fails.
    probing: AtomicBool,
    /// When the last read failed (a std lock: held only to read or set it).
    failed_at: Mutex<Option<Instant>>,
}

/// Leave to ask Postgres; say how it went with [`Ticket::done`]. A ticket
/// dropped unused (its read was cancelled) lets the next read probe.
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Breaker {
    /// Leave to read from Postgres, or `None`: it is failing and another
    /// read is finding out whether it is back.
    pub fn admit(&self) -> Option<Ticket<'_>> {
        if !self.failing.load(Ordering::Acquire) {
            return Some(Ticket {
                breaker: self,
                probe: false,
            });
        }
        let failed_at = *self.failed_at.lock().unwrap_or_else(|e| e.into_inner());
        if failed_at.is_some_and(|at| at.elapsed() < PROBE_EVERY) {
            return None;
        }
        let free = self
            .probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        free.then_some(Ticket {
            breaker: self,
            probe: true,
        })
    }
}

impl Ticket<'_> {
    /// The read succeeded (`true`) or failed.
    pub fn done(self, succeeded: bool) {
        if !succeeded {
            *self
                .breaker
                .failed_at
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        }
        self.breaker.failing.store(!succeeded, Ordering::Release);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As if the last failure was a probe period ago.
    fn age(breaker: &Breaker) {
        *breaker.failed_at.lock().unwrap() = Some(Instant::now() - PROBE_EVERY);
    }

    #[test]
    fn after_a_failure_one_read_a_period_probes_until_one_succeeds() {
        let breaker = Breaker::default();
        let (a, b) = (breaker.admit().unwrap(), breaker.admit().unwrap());
        a.done(false);
        b.done(false);
        assert!(breaker.admit().is_none(), "no probe within the period");
        age(&breaker);
        let probe = breaker.admit().expect("one probe");
        assert!(breaker.admit().is_none(), "a second read fails at once");
        probe.done(false);
        assert!(
            breaker.admit().is_none(),
            "the failed probe starts a period"
        );
        age(&breaker);
        let probe = breaker.admit().expect("the next probe");
        probe.done(true);
        let (c, d) = (breaker.admit(), breaker.admit());
        assert!(c.is_some() && d.is_some(), "closed again");
    }

    #[test]
    fn a_probe_dropped_unused_lets_the_next_read_probe() {
        let breaker = Breaker::default();
        breaker.admit().unwrap().done(false);
        age(&breaker);
        drop(breaker.admit().expect("a probe"));
        assert!(breaker.admit().is_some());
    }
}

//! What the parts report about themselves, kept where others read it without
//! asking a busy actor: `/readyz` reads these at any time, and the binary
//! learns from them why the service stopped.
//!
//! Each is a `tokio::sync::watch`, created once by the binary and handed to
//! the actors' arguments, so it outlives the restart of the actor that writes it.

use crate::freshness::Freshness;
use std::sync::Arc;
use tokio::sync::watch;

/// The handles on every report; clones share them.
#[derive(Clone, Debug)]
pub struct Health {
    ingest: Arc<watch::Sender<IngestHealth>>,
    cache_rebuilt: Arc<watch::Sender<bool>>,
    feed: Arc<watch::Sender<FeedHealth>>,
    shutting_down: Arc<watch::Sender<bool>>,
    fatal: Arc<watch::Sender<Option<String>>>,
    freshness: Freshness,
}

/// The change feed's view: how current this replica's cache is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FeedHealth {
    /// When the last catch-up with Postgres succeeded.
    pub caught_up_at: Option<std::time::SystemTime>,
    /// Why the cache is not caught up, if it is not (a failed read, or more
    /// changes than one read takes being read again by block).
    pub problem: Option<String>,
}

/// Ingest's view of its job: reading from NATS and storing into Postgres.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestHealth {
    /// The NATS connection is up.
    pub nats_connected: bool,
    /// Why the stream or the durable consumer cannot be read, if it cannot
    /// (`None` once it is set up).
    pub consumer_problem: Option<String>,
    /// Why the last batch could not be stored, if it could not (`None` after a
    /// batch is stored).
    pub store_problem: Option<String>,
    /// Since when updates have been paused (NATS away, the consumer not
    /// set up, or Postgres not storing); `None` while they flow. Kept by
    /// [`Health::update_ingest`].
    pub paused_since: Option<std::time::SystemTime>,
}

impl IngestHealth {
    /// Why updates are paused, in words for a person, if they are.
    pub fn paused(&self) -> Option<&'static str> {
        if !self.nats_connected || self.consumer_problem.is_some() {
            Some("the stream cannot be read")
        } else if self.store_problem.is_some() {
            Some("the database is not storing changes")
        } else {
            None
        }
    }
}

impl Default for Health {
    fn default() -> Self {
        Self::new()
    }
}

impl Health {
    pub fn new() -> Self {
        Self {
            ingest: Arc::new(watch::Sender::new(IngestHealth {
                nats_connected: false,
                consumer_problem: Some("not set up yet".into()),
                store_problem: None,
                paused_since: Some(std::time::SystemTime::now()),
            })),
            cache_rebuilt: Arc::new(watch::Sender::new(false)),
            feed: Arc::new(watch::Sender::new(FeedHealth::default())),
            shutting_down: Arc::new(watch::Sender::new(false)),
            fatal: Arc::new(watch::Sender::new(None)),
            freshness: Freshness::default(),
        }
    }

    /// How far this replica has applied the stream (see [`Freshness`]).
    pub fn freshness(&self) -> &Freshness {
        &self.freshness
    }

    pub fn ingest(&self) -> IngestHealth {
        self.ingest.borrow().clone()
    }

    /// Changes ingest's report in place (only when the change is real, so that
    /// a watcher wakes for changes only).
    pub fn update_ingest(&self, change: impl FnOnce(&mut IngestHealth)) {
        self.ingest.send_if_modified(|health| {
            let before = health.clone();
            change(health);
            health.paused_since = match (health.paused(), before.paused_since) {
                (None, _) => None,
                (Some(_), Some(since)) => Some(since),
                (Some(_), None) => Some(std::time::SystemTime::now()),
            };
            *health != before
        });
    }

    pub fn cache_rebuilt(&self) -> bool {
        *self.cache_rebuilt.borrow()
    }

    pub fn set_cache_rebuilt(&self, rebuilt: bool) {
        self.cache_rebuilt.send_replace(rebuilt);
    }

    pub fn feed(&self) -> FeedHealth {
        self.feed.borrow().clone()
    }

    /// The feed caught up now.
    pub fn feed_caught_up(&self) {
        self.feed.send_replace(FeedHealth {
            caught_up_at: Some(std::time::SystemTime::now()),
            problem: None,
        });
    }

    /// The feed is not caught up, and why.
    pub fn feed_behind(&self, problem: String) {
        self.feed.send_modify(|feed| feed.problem = Some(problem));
    }

    /// Whether the service has been asked to stop (it drains: `/readyz`
    /// answers 503 while requests are still served).
    pub fn shutting_down(&self) -> bool {
        *self.shutting_down.borrow()
    }

    pub fn set_shutting_down(&self) {
        self.shutting_down.send_replace(true);
    }

    /// Why the service cannot go on (a configuration that cannot work), once
    /// a part has said so.
    pub fn fatal(&self) -> Option<String> {
        self.fatal.borrow().clone()
    }

    pub fn set_fatal(&self, reason: String) {
        self.fatal.send_replace(Some(reason));
    }

    /// Completes once a part has said the service cannot go on, with its reason.
    pub async fn fatal_reported(&self) -> String {
        let mut fatal = self.fatal.subscribe();
        loop {
            if let Some(reason) = fatal.borrow_and_update().clone() {
                return reason;
            }
            // The sender lives as long as `self`: this never ends in an error.
            let _ = fatal.changed().await;
        }
    }
}

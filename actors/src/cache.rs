//! The cache actor: owns the cached products ([`ProductCache`]) and keeps them
//! current with Postgres, on every replica.
//!
//! - http reads the shared [`ProductCache`] directly (no mailbox on the hot
//!   path); a miss reads its block (64 ids) through from Postgres, once for
//!   every reader that misses it meanwhile.
//! - What this replica's writer commits comes on [`Commits`], to a task of
//!   the actor's that puts it in the shared cache before the writer answers,
//!   so that what this replica stored is served before it is acked.
//! - `Changed` comes when Postgres says products changed (a `NOTIFY` at
//!   commit, heard by persistence): the actor asks what changed since the
//!   snapshot of its last read ([`PersistenceMsg::ChangesSince`]) and applies
//!   it, so a write stored by any replica, or by hand in SQL, reaches every
//!   replica's cache at once. One catch-up runs at a time; signals that come
//!   meanwhile make one more.
//! - `Invalidate` comes from a timer every `invalidate_every` (15 s by
//!   default): it logs `invalidate cache` and catches up the same way, so
//!   exactly what is stale is replaced or dropped, and the rest stays warm.
//!   Correctness never depends on a signal: this catch-up finds whatever a
//!   lost one would have brought.
//! - On start (and so on every restart) the cache is emptied and rebuilt from
//!   Postgres: a snapshot to catch up from, then every product in id order.
//!   Reads go through to Postgres meanwhile.
//! - The change feed's lag (`products_change_feed_lag_seconds`) is measured
//!   by each catch-up that applies changes: Postgres's clock at its read less
//!   the newest change's `updated_at` (or `deleted_at`), plus the time to
//!   apply them. One clock for every replica (no skew), and a change whose
//!   signal was lost shows as the timer's delay, as it should. It counts from
//!   the writing transaction's start (`now()`), so a long write adds its own
//!   time; a row changed by hand without setting `updated_at` shows as old.

mod breaker;
pub mod products;

use crate::backoff::Backoff;
use crate::call::{CallError, Peer};
use crate::changes::{ChangeSignal, Commits, Committed};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::names::{Child, Names};
use crate::persistence::{self, PersistenceMsg, ReadError};
use crate::timeouts::PERSISTENCE_TIMEOUT;
pub use catalogue::block::Cached;
use catalogue::block::block_of;
use catalogue::feed::{Changes, TooMany, Version};
pub use products::{Page, ProductCache};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub type CacheRef = ActorRef<CacheMsg>;

/// The cache, found by name.
pub fn peer(names: &Names) -> Peer<CacheMsg> {
    Peer::new(names, Child::Cache)
}

/// Products read per query while rebuilding.
const REBUILD_PAGE: u64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The last read of Postgres failed, and another read is finding out
    /// whether it is back (see `cache/breaker.rs`).
    #[error("Postgres could not be read just now, and another read is trying it")]
    PostgresAway,
}

pub enum CacheMsg {
    /// From the change signal's watcher: Postgres has committed changes.
    Changed,
    /// From the timer: catch up with Postgres, and say so. No reply.
    Invalidate,
    /// From itself: fill the cache from Postgres (on start, and again after a
    /// failure or a TRUNCATE).
    Rebuild,
    /// From the rebuild task: how it ended (the snapshot it started from).
    Rebuilt { result: Result<String, CacheError> },
    /// From a catch-up task: how it ended (the snapshot to catch up from
    /// next), and the consumer's ack floor when it began.
    CaughtUp {
        result: Result<CatchUp, CacheError>,
        floor: u64,
    },
    /// From tests and benchmarks: has the cache been rebuilt, how much does it
    /// hold, how many invalidations has it done?
    #[cfg(feature = "testing")]
    Status {
        reply: ractor::RpcReplyPort<CacheStatus>,
    },
}

/// How a catch-up ended.
pub enum CatchUp {
    /// Applied; the next one starts from this snapshot.
    Applied(String),
    /// Every product was deleted at once (TRUNCATE): rebuild.
    Truncated,
}

#[cfg(feature = "testing")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStatus {
    pub rebuilt: bool,
    /// Products held.
    pub entries: u64,
    /// What the blocks that hold them weigh, in bytes.
    pub bytes: u64,
    /// Invalidations since the actor started.
    pub invalidations: u64,
}

#[derive(Clone)]
pub struct CacheArgs {
    pub health: Health,
    /// The shared products, which http reads too.
    pub products: ProductCache,
    /// Raised when Postgres says products changed.
    pub changes: ChangeSignal,
    /// What this replica's writer committed.
    pub commits: Commits,
    pub invalidate_every: Duration,
    /// Changed rows one catch-up reads at most (`CACHE_CATCH_UP_MAX_ROWS`);
    /// past it, the blocks that hold them are read again whole.
    pub catch_up_max_rows: u64,
    pub names: Names,
}

pub struct Cache;

pub struct CacheState {
    names: Names,
    health: Health,
    products: ProductCache,
    /// The snapshot of the last read from Postgres; `None` until rebuilt.
    cursor: Option<String>,
    catching_up: bool,
    /// A signal came during a catch-up: one more is due.
    again: bool,
    invalidations: u64,
    rebuild_backoff: Backoff,
    catch_up_max_rows: u64,
    tasks: [JoinHandle<()>; 3],
    metrics: Metrics,
}

impl Actor for Cache {
    type Msg = CacheMsg;
    type State = CacheState;
    type Arguments = CacheArgs;

    async fn pre_start(
        &self,
        myself: CacheRef,
        args: CacheArgs,
    ) -> Result<CacheState, ActorProcessingErr> {
        args.health.set_cache_rebuilt(false);
        args.products.clear();
        let timer = myself.send_interval(args.invalidate_every, || CacheMsg::Invalidate);
        let watcher = tokio::spawn(watch_changes(
            args.changes.clone(),
            args.health.freshness().floor_moves(),
            myself.clone(),
        ));
        let committed = tokio::spawn(serve_commits(args.commits.clone(), args.products.clone()));
        myself.cast(CacheMsg::Rebuild)?;
        Ok(CacheState {
            metrics: Metrics::new(&args.names),
            names: args.names,
            health: args.health,
            products: args.products,
            cursor: None,
            catch_up_max_rows: args.catch_up_max_rows,
            catching_up: false,
            again: false,
            invalidations: 0,
            rebuild_backoff: Backoff::default(),
            tasks: [timer, watcher, committed],
        })
    }

    async fn handle(
        &self,
        myself: CacheRef,
        msg: CacheMsg,
        state: &mut CacheState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CacheMsg::Changed => state.catch_up(myself),
            CacheMsg::Invalidate => {
                state.invalidations += 1;
                state.metrics.cache_invalidations.increment(1);
                info!("invalidate cache");
                state.catch_up(myself);
            }
            CacheMsg::Rebuild => state.start_rebuild(myself),
            CacheMsg::Rebuilt { result } => state.finish_rebuild(myself, result),
            CacheMsg::CaughtUp { result, floor } => state.finish_catch_up(myself, result, floor),
            #[cfg(feature = "testing")]
            CacheMsg::Status { reply } => {
                let (entries, bytes) = state.products.size().await;
                let _ = reply.send(CacheStatus {
                    rebuilt: state.cursor.is_some(),
                    entries,
                    bytes,
                    invalidations: state.invalidations,
                });
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: CacheRef,
        state: &mut CacheState,
    ) -> Result<(), ActorProcessingErr> {
        for task in &state.tasks {
            task.abort();
        }
        Ok(())
    }
}

/// Turns every raise of the change signal, and every move of the consumer's
/// ack floor (so that it is applied, see `freshness.rs`), into one `Changed`
/// (signals that come together make one message).
async fn watch_changes(changes: ChangeSignal, mut floor: watch::Receiver<u64>, cache: CacheRef) {
    let mut signal = changes.subscribe();
    loop {
        let woken = tokio::select! {
            woken = signal.changed() => woken,
            woken = floor.changed() => woken,
        };
        if woken.is_err() || cache.cast(CacheMsg::Changed).is_err() {
            return;
        }
    }
}

/// Serves what the writer commits, as it commits it (the writer waits). A
/// read-through in progress holds its block until Postgres answers: this
/// waits for it, never the actor. Revisions, not arrival order, decide which
/// version stays.
async fn serve_commits(commits: Commits, products: ProductCache) {
    let mut receiver = commits.take().await;
    while let Some(Committed {
        products: versions,
        served,
    }) = receiver.recv().await
    {
        products.put(versions.into_iter().map(Arc::new)).await;
        let _ = served.send(());
    }
}

impl CacheState {
    fn catch_up(&mut self, myself: CacheRef) {
        let Some(since) = self.cursor.clone() else {
            // Not rebuilt yet: the rebuild's first catch-up covers this.
            return;
        };
        if self.catching_up {
            self.again = true;
            return;
        }
        self.catching_up = true;
        let persistence = persistence::peer(&self.names);
        let products = self.products.clone();
        let metrics = self.metrics.clone();
        let health = self.health.clone();
        let max_rows = self.catch_up_max_rows;
        // What this catch-up will have applied: it reads Postgres after this.
        let floor = self.health.freshness().floor();
        tokio::spawn(async move {
            let feed = Feed {
                persistence: &persistence,
                products: &products,
                metrics: &metrics,
                health: &health,
                max_rows,
            };
            let result = feed.catch_up(since).await;
            let _ = myself.cast(CacheMsg::CaughtUp { result, floor });
        });
    }

    fn finish_catch_up(
        &mut self,
        myself: CacheRef,
        result: Result<CatchUp, CacheError>,
        floor: u64,
    ) {
        self.catching_up = false;
        match result {
            Ok(CatchUp::Applied(snapshot)) => {
                self.products.caught_up_to(&snapshot);
                self.health.freshness().caught_up_from(floor);
                self.cursor = Some(snapshot);
                self.health.feed_caught_up();
                self.metrics
                    .change_feed_caught_up
                    .set(unix_seconds(std::time::SystemTime::now()));
                if std::mem::take(&mut self.again) {
                    self.catch_up(myself);
                }
            }
            Ok(CatchUp::Truncated) => {
                warn!("every product was deleted at once; rebuilding the cache");
                self.products.clear();
                self.cursor = None;
                self.start_rebuild(myself);
            }
            Err(error) => {
                // The next signal or the timer tries again, from the same snapshot.
                warn!(%error, "cannot catch up with Postgres; serving what is cached");
                self.health
                    .feed_behind(format!("cannot catch up with Postgres: {error}"));
            }
        }
    }

    fn start_rebuild(&mut self, myself: CacheRef) {
        self.health.set_cache_rebuilt(false);
        let persistence = persistence::peer(&self.names);
        let products = self.products.clone();
        tokio::spawn(async move {
            let result = rebuild(&persistence, &products).await;
            let _ = myself.cast(CacheMsg::Rebuilt { result });
        });
    }

    fn finish_rebuild(&mut self, myself: CacheRef, result: Result<String, CacheError>) {
        match result {
            Ok(snapshot) => {
                self.products.index_is_complete();
                self.products.caught_up_to(&snapshot);
                self.cursor = Some(snapshot);
                self.health.set_cache_rebuilt(true);
                self.rebuild_backoff.reset();
                info!("cache rebuilt from Postgres");
                // What was committed while rebuilding.
                self.catch_up(myself);
            }
            Err(error) => {
                let delay = self.rebuild_backoff.next_delay();
                warn!(%error, retry_in = ?delay, "cache rebuild failed");
                myself.send_after(delay, || CacheMsg::Rebuild);
            }
        }
    }
}

/// What a catch-up task needs.
struct Feed<'a> {
    persistence: &'a Peer<PersistenceMsg>,
    products: &'a ProductCache,
    metrics: &'a Metrics,
    health: &'a Health,
    max_rows: u64,
}

impl Feed<'_> {
    /// Applies every change committed since `since`: each one, or, past
    /// `max_rows`, the blocks that hold them, read again whole.
    async fn catch_up(&self, since: String) -> Result<CatchUp, CacheError> {
        let Changes {
            snapshot,
            products: changed,
            deleted,
            age,
            too_many,
        } = self
            .persistence
            .ask(
                |reply| PersistenceMsg::ChangesSince {
                    since: Some(since),
                    max_rows: self.max_rows,
                    blocks: true,
                    reply,
                },
                PERSISTENCE_TIMEOUT,
            )
            .await??;
        if deleted.iter().any(|deleted| deleted.id.is_none()) {
            return Ok(CatchUp::Truncated);
        }
        if let Some(TooMany { rows, blocks }) = too_many {
            let problem = format!(
                "the change feed fell behind: {rows} rows changed at once, more than one read \
                 takes ({max}); reading their {} blocks again",
                blocks.len(),
                max = self.max_rows
            );
            warn!(rows, blocks = blocks.len(), "{problem}");
            self.health.feed_behind(problem);
            self.products.reload(&blocks).await?;
            self.metrics
                .change_feed_blocks_reread
                .increment(blocks.len() as u64);
            return Ok(CatchUp::Applied(snapshot));
        }
        if !changed.is_empty() || !deleted.is_empty() {
            debug!(
                changed = changed.len(),
                deleted = deleted.len(),
                "caught up with Postgres"
            );
        }
        let read = Instant::now();
        self.products.delete(deleted).await;
        self.products.put(changed.into_iter().map(Arc::new)).await;
        if let Some(age) = age {
            self.metrics.change_feed_lag.record(age + read.elapsed());
        }
        Ok(CatchUp::Applied(snapshot))
    }
}

/// Seconds since the Unix epoch, for a timestamp gauge.
fn unix_seconds(at: std::time::SystemTime) -> f64 {
    at.duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Takes the snapshot to catch up from, then loads every product in id
/// order, a block at a time.
async fn rebuild(
    persistence: &Peer<PersistenceMsg>,
    products: &ProductCache,
) -> Result<String, CacheError> {
    let start = persistence
        .ask(
            |reply| PersistenceMsg::ChangesSince {
                since: None,
                max_rows: 0,
                blocks: false,
                reply,
            },
            PERSISTENCE_TIMEOUT,
        )
        .await??;
    // A rebuild of a cache cleared since (by a newer one) fills nothing.
    let generation = products.generation();
    let mut count = 0usize;
    // The versions of the block being read: it may go on in the next page.
    let mut block: Vec<Version> = Vec::new();
    // Each page is asked for while the one before is being cached, so that
    // Postgres and this task work at once.
    let mut next = Some(read_page(persistence, i64::MIN));
    while let Some(reading) = next.take() {
        let page = reading
            .await
            .map_err(|_| CallError::Dropped(Child::Persistence))???;
        let Some(last) = page.last() else { break };
        next = last
            .id()
            .checked_add(1)
            .map(|from| read_page(persistence, from));
        count += page.len();
        for version in page {
            if block
                .first()
                .is_some_and(|first| block_of(first.id()) != block_of(version.id()))
            {
                products.fill(std::mem::take(&mut block), generation).await;
            }
            block.push(version);
        }
    }
    products.fill(block, generation).await;
    debug!(rows = count, "loaded every product");
    Ok(start.snapshot)
}

/// A task reading the rebuild's page of ids from `from` on.
fn read_page(
    persistence: &Peer<PersistenceMsg>,
    from: i64,
) -> JoinHandle<Result<Result<Vec<Version>, ReadError>, CallError>> {
    let persistence = persistence.clone();
    tokio::spawn(async move {
        persistence
            .ask(
                |reply| PersistenceMsg::Versions {
                    from,
                    until: i64::MAX,
                    limit: REBUILD_PAGE,
                    reply,
                },
                PERSISTENCE_TIMEOUT,
            )
            .await
    })
}

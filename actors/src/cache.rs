//! The cache actor: products by id in a moka cache, in front of Postgres.
//!
//! - `Get` answers from memory; on a miss it reads through to persistence once
//!   and fills the cache. Concurrent misses for one id wait for that one read.
//! - `Put` comes from ingest after each commit, so a new version is served at
//!   once, without waiting for the next invalidation.
//! - `Invalidate` comes from a timer every `invalidate_every` (15 s by default):
//!   every entry becomes stale, and the next `Get` of it reads through to
//!   Postgres again. While Postgres cannot be read, a stale entry is served
//!   rather than an error (stale-if-error): a product never disappears because
//!   of an invalidation.
//! - On start (and so on every restart) the cache rebuilds itself from Postgres.
//!
//! Every write to one key goes through moka's `and_compute_with`, which runs
//! one at a time per key, and keeps the newer
//! [`Version`](crate::product::Version) (stream and stream
//! sequence of the message it comes from): a read-through or a rebuild can
//! never put back a version older than one that `Put` stored.

use crate::backoff::Backoff;
use crate::call::{CallError, Peer};
use crate::health::Health;
use crate::names::{Child, Names};
use crate::persistence::{self, PersistenceMsg, StoreError};
use crate::product::Product;
use crate::timeouts::PERSISTENCE_TIMEOUT;
use moka::future::Cache as Moka;
use moka::ops::compute::{CompResult, Op};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub type CacheRef = ActorRef<CacheMsg>;

/// The cache, found by name.
pub fn peer(names: &Names) -> Peer<CacheMsg> {
    Peer::new(names, Child::Cache)
}
type Products = Moka<i64, Cached>;

/// A product, and the invalidation generation it was read in: it is fresh
/// while that is the current generation.
#[derive(Clone)]
struct Cached {
    product: Arc<Product>,
    generation: u64,
}

/// Products read per query while rebuilding.
const REBUILD_PAGE: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub enum CacheMsg {
    /// From http: one product by id (`None`: no such product). A miss reads
    /// through to persistence; the reply is sent when the product is known.
    Get {
        id: i64,
        reply: RpcReplyPort<Result<Option<Arc<Product>>, CacheError>>,
    },
    /// From ingest, after a batch committed and before it is acked: the
    /// versions now stored. Replies once they are served.
    Put {
        products: Vec<Product>,
        reply: RpcReplyPort<()>,
    },
    /// From the timer: make every entry stale. No reply.
    Invalidate,
    /// From itself: fill the cache from Postgres (on start, and again after a failure).
    Rebuild,
    /// From the rebuild task: how it ended.
    Rebuilt { result: Result<usize, CacheError> },
    /// From http's readiness check and tests: has the cache been rebuilt, and how
    /// many entries does it hold?
    Status { reply: RpcReplyPort<CacheStatus> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStatus {
    pub rebuilt: bool,
    /// Entries held, fresh or stale.
    pub entries: u64,
    /// Invalidations since the actor started.
    pub invalidations: u64,
}

#[derive(Clone)]
pub struct CacheArgs {
    pub names: Names,
    pub health: Health,
    /// The most products kept in memory.
    pub capacity: u64,
    pub invalidate_every: Duration,
}

pub struct Cache;

pub struct CacheState {
    names: Names,
    health: Health,
    products: Products,
    capacity: u64,
    rebuilt: bool,
    /// Bumped by each invalidation; entries of older generations are stale.
    generation: u64,
    rebuild_backoff: Backoff,
    timer: JoinHandle<()>,
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
        let products = Moka::builder().max_capacity(args.capacity).build();
        let timer = myself.send_interval(args.invalidate_every, || CacheMsg::Invalidate);
        myself.cast(CacheMsg::Rebuild)?;
        args.health.set_cache_rebuilt(false);
        Ok(CacheState {
            names: args.names,
            health: args.health,
            products,
            capacity: args.capacity,
            rebuilt: false,
            generation: 0,
            rebuild_backoff: Backoff::default(),
            timer,
        })
    }

    async fn handle(
        &self,
        myself: CacheRef,
        msg: CacheMsg,
        state: &mut CacheState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            CacheMsg::Get { id, reply } => state.get(id, reply).await,
            CacheMsg::Put { products, reply } => state.put(products, reply),
            CacheMsg::Invalidate => {
                state.generation += 1;
                info!("invalidate cache");
            }
            CacheMsg::Rebuild => state.start_rebuild(myself),
            CacheMsg::Rebuilt { result } => state.finish_rebuild(myself, result),
            CacheMsg::Status { reply } => {
                state.products.run_pending_tasks().await;
                let _ = reply.send(CacheStatus {
                    rebuilt: state.rebuilt,
                    entries: state.products.entry_count(),
                    invalidations: state.generation,
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
        state.timer.abort();
        Ok(())
    }
}

impl CacheState {
    async fn get(&self, id: i64, reply: RpcReplyPort<Result<Option<Arc<Product>>, CacheError>>) {
        if let Some(cached) = self.products.get(&id).await
            && cached.generation == self.generation
        {
            let _ = reply.send(Ok(Some(cached.product)));
            return;
        }
        // A miss waits on Postgres: on a task of its own, so other gets go on.
        let products = self.products.clone();
        let names = self.names.clone();
        let generation = self.generation;
        tokio::spawn(async move {
            let _ = reply.send(read_through(&products, &names, id, generation).await);
        });
    }

    /// Stores the new versions on a task of its own: an entry being read
    /// through holds its key until Postgres answers, and the actor must not
    /// wait for that. Versions, not arrival order, decide which one stays.
    fn put(&self, products: Vec<Product>, reply: RpcReplyPort<()>) {
        let cache = self.products.clone();
        let generation = self.generation;
        tokio::spawn(async move {
            for product in products {
                let candidate = Cached {
                    product: Arc::new(product),
                    generation,
                };
                store_if_newer(&cache, candidate).await;
            }
            let _ = reply.send(());
        });
    }

    fn start_rebuild(&self, myself: CacheRef) {
        let products = self.products.clone();
        let names = self.names.clone();
        let capacity = self.capacity;
        let generation = self.generation;
        tokio::spawn(async move {
            let result = rebuild(&products, &names, capacity, generation).await;
            let _ = myself.cast(CacheMsg::Rebuilt { result });
        });
    }

    fn finish_rebuild(&mut self, myself: CacheRef, result: Result<usize, CacheError>) {
        match result {
            Ok(count) => {
                self.rebuilt = true;
                self.health.set_cache_rebuilt(true);
                info!(products = count, "cache rebuilt from Postgres");
            }
            Err(error) => {
                let delay = self.rebuild_backoff.next_delay();
                warn!(%error, retry_in = ?delay, "cache rebuild failed");
                myself.send_after(delay, || CacheMsg::Rebuild);
            }
        }
    }
}

impl Cached {
    /// Whether this should take the place of `existing`: a newer version, or
    /// the same version read again since an invalidation.
    fn replaces(&self, existing: Option<&Cached>) -> bool {
        existing.is_none_or(|existing| {
            let (mine, theirs) = (&self.product.version, &existing.product.version);
            mine.is_newer_than(theirs) || (mine == theirs && self.generation > existing.generation)
        })
    }
}

async fn store_if_newer(cache: &Products, candidate: Cached) {
    cache
        .entry(candidate.product.id)
        .and_compute_with(|entry| async move {
            if candidate.replaces(entry.as_ref().map(|e| e.value())) {
                Op::Put(candidate)
            } else {
                Op::Nop
            }
        })
        .await;
}

/// Fills a missing or stale entry from Postgres, holding the key meanwhile so
/// that concurrent misses wait for this one read. If Postgres cannot be read,
/// a stale entry is served, and counted fresh until the next invalidation so
/// that the gets after it do not each wait on Postgres again.
async fn read_through(
    products: &Products,
    names: &Names,
    id: i64,
    generation: u64,
) -> Result<Option<Arc<Product>>, CacheError> {
    let result = products
        .entry(id)
        .and_try_compute_with(|entry| async move {
            let stale = match entry {
                Some(entry) if entry.value().generation >= generation => return Ok(Op::Nop),
                Some(entry) => Some(entry.into_value()),
                None => None,
            };
            let found = persistence::peer(names)
                .ask(
                    |reply| PersistenceMsg::Get { id, reply },
                    PERSISTENCE_TIMEOUT,
                )
                .await
                .map_err(CacheError::from)
                .and_then(|found| found.map_err(CacheError::from));
            match (found, stale) {
                (Ok(Some(product)), _) => Ok(Op::Put(Cached {
                    product: Arc::new(product),
                    generation,
                })),
                (Ok(None), Some(_)) => Ok(Op::Remove),
                (Ok(None), None) => Ok(Op::Nop),
                (Err(error), Some(stale)) => {
                    warn!(id, %error, "serving a stale product: Postgres cannot be read");
                    Ok(Op::Put(Cached {
                        product: stale.product,
                        generation,
                    }))
                }
                (Err(error), None) => Err(error),
            }
        })
        .await?;
    Ok(match result {
        CompResult::Inserted(entry)
        | CompResult::ReplacedWith(entry)
        | CompResult::Unchanged(entry) => Some(entry.into_value().product),
        CompResult::StillNone(_) | CompResult::Removed(_) => None,
    })
}

/// Pages through every product in id order, up to `capacity` of them.
async fn rebuild(
    products: &Products,
    names: &Names,
    capacity: u64,
    generation: u64,
) -> Result<usize, CacheError> {
    let mut after = 0;
    let mut count = 0usize;
    while (count as u64) < capacity {
        let limit = REBUILD_PAGE.min(capacity - count as u64);
        let page = persistence::peer(names)
            .ask(
                |reply| PersistenceMsg::Page {
                    after,
                    limit,
                    reply,
                },
                PERSISTENCE_TIMEOUT,
            )
            .await??;
        let Some(last) = page.last() else { break };
        after = last.id;
        count += page.len();
        for product in page {
            let candidate = Cached {
                product: Arc::new(product),
                generation,
            };
            store_if_newer(products, candidate).await;
        }
    }
    Ok(count)
}

//! The cached products, as one handle that http reads directly (no mailbox
//! on the hot path) and the cache actor keeps current.
//!
//! - Entries are products by id, in moka, bounded by bytes (each entry weighs
//!   what it holds, see [`weight`]). An id Postgres does not have is remembered
//!   as absent for [`ABSENT_TTL`], so that a flood of unknown ids does not
//!   reach Postgres, and is replaced at once when the product is written.
//! - Every write to one key goes through moka's per-key compute, and keeps the
//!   higher revision (Postgres stamps a higher one on every later version of a
//!   row): whatever order a read-through, a rebuild, ingest's own writes and
//!   the change feed arrive in, a newer version is never replaced by an older.
//! - An index of every id (with its revision) in order serves the list pages
//!   from memory, once a rebuild has filled it; until then lists are read
//!   from Postgres. It holds ids only (about 30 bytes each), never evicted.
//! - Every change that reaches it from a write (`put`, `delete`, which ingest
//!   and the change feed call) and actually changes what it holds is announced
//!   on a bounded broadcast ([`LiveEvent`]), which the live pages follow. So
//!   every replica announces every committed write, whoever stored it. Loads
//!   that only fill it (a rebuild, a read-through) are not changes, and are
//!   not announced.

use super::CacheError;
use crate::call::Peer;
use crate::metrics::Metrics;
use crate::names::Names;
use crate::persistence::{self, Deleted, PersistenceMsg};
use crate::product::Product;
use crate::timeouts::PERSISTENCE_TIMEOUT;
use moka::Expiry;
use moka::future::Cache as Moka;
use moka::ops::compute::{CompResult, Op};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

/// How long "there is no product with this id" is remembered (a product
/// written in the meantime replaces it at once).
pub const ABSENT_TTL: Duration = Duration::from_secs(5);

/// What moka keeps per entry besides the product itself (its key, its
/// bookkeeping, the `Arc`), counted in each entry's weight.
const ENTRY_OVERHEAD: usize = 160;

/// Changes kept for each live follower that has not read them yet: a
/// follower further behind loses them and is told so (it reloads), so a slow
/// browser costs at most this many events' worth of memory.
pub const LIVE_BUFFER: usize = 256;

/// A change to the products, as the live pages are told of it.
#[derive(Clone, Debug)]
pub enum LiveEvent {
    /// Created or changed: the new version.
    Changed(Arc<Product>),
    /// Deleted, by the write with this revision.
    Deleted { id: i64, revision: i64 },
}

impl LiveEvent {
    pub fn id(&self) -> i64 {
        match self {
            LiveEvent::Changed(product) => product.id,
            LiveEvent::Deleted { id, .. } => *id,
        }
    }

    pub fn revision(&self) -> i64 {
        match self {
            LiveEvent::Changed(product) => product.revision,
            LiveEvent::Deleted { revision, .. } => *revision,
        }
    }
}

#[derive(Clone)]
enum Entry {
    Present(Arc<Product>),
    Absent,
}

impl Entry {
    fn product(self) -> Option<Arc<Product>> {
        match self {
            Entry::Present(product) => Some(product),
            Entry::Absent => None,
        }
    }

    fn revision(&self) -> Option<i64> {
        match self {
            Entry::Present(product) => Some(product.revision),
            Entry::Absent => None,
        }
    }
}

/// The shared handle; clones share the same cache and index.
#[derive(Clone)]
pub struct ProductCache {
    entries: Moka<i64, Entry>,
    // A std lock: held only to read or change the map, never across an await.
    index: Arc<RwLock<Index>>,
    persistence: Peer<PersistenceMsg>,
    live: broadcast::Sender<LiveEvent>,
    /// The highest revision announced (or loaded): where a live page starts.
    latest: Arc<AtomicI64>,
    metrics: Metrics,
}

#[derive(Default)]
struct Index {
    /// Every id Postgres holds (as far as the feed has told), with its revision.
    ids: BTreeMap<i64, i64>,
    /// The ids were loaded whole (a rebuild finished): lists may be served from here.
    complete: bool,
}

impl ProductCache {
    /// An empty cache of at most `max_bytes`, reading through to `names`'s persistence.
    pub fn new(names: &Names, max_bytes: u64) -> Self {
        let entries = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|_, entry: &Entry| weight(entry))
            .expire_after(AbsentForAWhile)
            .build();
        Self {
            entries,
            index: Arc::default(),
            persistence: persistence::peer(names),
            live: broadcast::Sender::new(LIVE_BUFFER),
            latest: Arc::default(),
            metrics: Metrics::new(names),
        }
    }

    /// One product by id (`None`: Postgres has no such product). A miss reads
    /// through to Postgres once: concurrent misses for one id wait for that read.
    pub async fn get(&self, id: i64) -> Result<Option<Arc<Product>>, CacheError> {
        if let Some(entry) = self.entries.get(&id).await {
            self.metrics.cache_hits.increment(1);
            return Ok(entry.product());
        }
        self.metrics.cache_misses.increment(1);
        let persistence = &self.persistence;
        let read = self
            .entries
            .entry(id)
            .and_try_compute_with(|entry| async move {
                if entry.is_some() {
                    // Filled while this read waited for the key.
                    return Ok(Op::Nop);
                }
                let found = persistence
                    .ask(
                        |reply| PersistenceMsg::Get { id, reply },
                        PERSISTENCE_TIMEOUT,
                    )
                    .await??;
                Ok::<_, CacheError>(Op::Put(match found {
                    Some(product) => Entry::Present(Arc::new(product)),
                    None => Entry::Absent,
                }))
            })
            .await?;
        let product = match read {
            CompResult::Inserted(entry)
            | CompResult::ReplacedWith(entry)
            | CompResult::Unchanged(entry) => entry.into_value().product(),
            CompResult::StillNone(_) | CompResult::Removed(_) => None,
        };
        if let Some(product) = &product {
            self.index_put(product);
        }
        Ok(product)
    }

    /// Up to `limit` products with an id greater than `after`, in id order:
    /// from memory once the index is complete, else from Postgres.
    pub async fn page(&self, after: i64, limit: u64) -> Result<Vec<Arc<Product>>, CacheError> {
        let Some(ids) = self.ids_after(after, limit) else {
            let page = self
                .persistence
                .ask(
                    |reply| PersistenceMsg::Page {
                        after,
                        limit,
                        reply,
                    },
                    PERSISTENCE_TIMEOUT,
                )
                .await??;
            return Ok(page.into_iter().map(Arc::new).collect());
        };
        let mut slots = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for &id in &ids {
            let cached = self.entries.get(&id).await.and_then(Entry::product);
            if cached.is_some() {
                self.metrics.cache_hits.increment(1);
            } else {
                self.metrics.cache_misses.increment(1);
                missing.push(id);
            }
            slots.push((id, cached));
        }
        if !missing.is_empty() {
            let loaded = self
                .persistence
                .ask(
                    |reply| PersistenceMsg::GetMany {
                        ids: missing,
                        reply,
                    },
                    PERSISTENCE_TIMEOUT,
                )
                .await??;
            let mut loaded: BTreeMap<i64, Arc<Product>> = loaded
                .into_iter()
                .map(|product| (product.id, Arc::new(product)))
                .collect();
            for product in loaded.values() {
                self.load(Arc::clone(product)).await;
            }
            for (id, slot) in &mut slots {
                if slot.is_none() {
                    *slot = loaded.remove(id);
                }
            }
        }
        // An id deleted since the index listed it has no product: left out.
        Ok(slots
            .into_iter()
            .filter_map(|(_, product)| product)
            .collect())
    }

    /// A write: keeps `product` unless a newer version of it is cached
    /// already, and announces it to the live pages if it was kept.
    pub async fn put(&self, product: Arc<Product>) {
        if self.keep(Arc::clone(&product)).await {
            self.announce(LiveEvent::Changed(product));
        }
    }

    /// A load (a rebuild, a read-through): as [`Self::put`], unannounced.
    pub async fn load(&self, product: Arc<Product>) {
        self.latest.fetch_max(product.revision, Ordering::Relaxed);
        self.keep(product).await;
    }

    /// Keeps `product` unless a newer version is cached; says whether it did.
    async fn keep(&self, product: Arc<Product>) -> bool {
        let newer_than_index = self.index_put(&product);
        let result = self
            .entries
            .entry(product.id)
            .and_compute_with(|entry| async move {
                let newer = entry
                    .and_then(|entry| entry.value().revision())
                    .is_none_or(|cached| product.revision > cached);
                if newer {
                    Op::Put(Entry::Present(product))
                } else {
                    Op::Nop
                }
            })
            .await;
        // An entry evicted (or absent) but listed with an older revision is
        // a change too.
        matches!(result, CompResult::ReplacedWith(_))
            || (matches!(result, CompResult::Inserted(_)) && newer_than_index)
    }

    /// A receiver of every change announced from now on (at most
    /// [`LIVE_BUFFER`] unread), and the latest revision announced so far.
    pub fn follow(&self) -> (broadcast::Receiver<LiveEvent>, i64) {
        let receiver = self.live.subscribe();
        (receiver, self.latest.load(Ordering::Relaxed))
    }

    /// The latest revision announced or loaded.
    pub fn latest_revision(&self) -> i64 {
        self.latest.load(Ordering::Relaxed)
    }

    /// The `after` of the page of `limit` products that ends just before the
    /// id `before` (0: the first page), once the index holds every id.
    pub fn previous_after(&self, before: i64, limit: u64) -> Option<i64> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.complete.then(|| {
            index
                .ids
                .range(..before)
                .rev()
                .nth(usize::try_from(limit).unwrap_or(usize::MAX))
                .map_or(0, |(&id, _)| id)
        })
    }

    /// How many products there are, once the index holds every id.
    pub fn count(&self) -> Option<u64> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.complete.then(|| index.ids.len() as u64)
    }

    fn announce(&self, event: LiveEvent) {
        self.latest.fetch_max(event.revision(), Ordering::Relaxed);
        // No follower: nobody to tell.
        let _ = self.live.send(event);
    }

    /// Forgets a deleted product, unless the cache holds a version written
    /// after the deletion. A deletion of every product (`id: None`) is left to
    /// the caller, who rebuilds.
    pub async fn delete(&self, deleted: Deleted) {
        let Some(id) = deleted.id else { return };
        let listed = {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            let listed = index.ids.get(&id).is_some_and(|&r| r < deleted.revision);
            if listed {
                index.ids.remove(&id);
            }
            listed
        };
        let result = self
            .entries
            .entry(id)
            .and_compute_with(|entry| async move {
                match entry.and_then(|entry| entry.value().revision()) {
                    Some(cached) if cached < deleted.revision => Op::Put(Entry::Absent),
                    _ => Op::Nop,
                }
            })
            .await;
        if listed || matches!(result, CompResult::ReplacedWith(_)) {
            self.announce(LiveEvent::Deleted {
                id,
                revision: deleted.revision,
            });
        }
    }

    /// Forgets everything (on a cache restart, or after a TRUNCATE): reads go
    /// to Postgres until a rebuild has filled it again.
    pub fn clear(&self) {
        self.entries.invalidate_all();
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.ids.clear();
        index.complete = false;
    }

    /// Says that the index holds every id (a rebuild has loaded them all).
    pub fn index_is_complete(&self) {
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .complete = true;
    }

    /// Entries and their weight in bytes, after moka's pending work.
    pub async fn size(&self) -> (u64, u64) {
        self.entries.run_pending_tasks().await;
        (self.entries.entry_count(), self.entries.weighted_size())
    }

    fn ids_after(&self, after: i64, limit: u64) -> Option<Vec<i64>> {
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.complete.then(|| {
            index
                .ids
                .range(after.saturating_add(1)..)
                .take(usize::try_from(limit).unwrap_or(usize::MAX))
                .map(|(&id, _)| id)
                .collect()
        })
    }

    /// Lists `product`; says whether the index had no newer revision of it.
    fn index_put(&self, product: &Product) -> bool {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        match index.ids.entry(product.id) {
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(product.revision);
                true
            }
            std::collections::btree_map::Entry::Occupied(mut slot) => {
                let newer = product.revision > *slot.get();
                if newer {
                    slot.insert(product.revision);
                }
                newer
            }
        }
    }
}

/// What an entry holds, in bytes, roughly: the product's fields and moka's
/// own bookkeeping.
fn weight(entry: &Entry) -> u32 {
    let bytes = match entry {
        Entry::Absent => 0,
        Entry::Present(product) => {
            std::mem::size_of::<Product>()
                + product.name.len()
                + product.manufacturer.len()
                + product.description.as_ref().map_or(0, String::len)
                + product
                    .attributes
                    .iter()
                    .map(|(key, value)| key.len() + value_bytes(value) + 48)
                    .sum::<usize>()
        }
    };
    u32::try_from(bytes + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len() + 24,
        _ => 24,
    }
}

/// Absent entries expire after [`ABSENT_TTL`]; products do not (they are kept
/// current by the feed, and evicted by weight).
struct AbsentForAWhile;

impl Expiry<i64, Entry> for AbsentForAWhile {
    fn expire_after_create(&self, _: &i64, entry: &Entry, _: Instant) -> Option<Duration> {
        matches!(entry, Entry::Absent).then_some(ABSENT_TTL)
    }

    fn expire_after_update(
        &self,
        _: &i64,
        entry: &Entry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        matches!(entry, Entry::Absent).then_some(ABSENT_TTL)
    }
}

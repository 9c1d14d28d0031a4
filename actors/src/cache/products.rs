//! The cached products, as one handle that http reads directly (no mailbox
//! on the hot path) and the cache actor keeps current.
//!
//! - Products are kept in blocks of 64 ids ([`Block`]), in moka, bounded by
//!   bytes (each block weighs what it holds). A block is read from Postgres
//!   whole, on a miss (concurrent misses for one block share one read), and
//!   knows every id of its range: an id it does not hold is absent, without
//!   asking Postgres again. Each product is kept as the JSON the API serves.
//! - Every write to a block goes through moka's per-key compute, and keeps
//!   for each id the higher revision (Postgres stamps a higher one on every
//!   later version of a row, deletions included): whatever order a
//!   read-through, a rebuild, ingest's own writes and the change feed arrive
//!   in, a newer version is never replaced by an older. A write to a block
//!   that is not cached changes no block: the next read of that block reads
//!   Postgres, where the write is committed.
//! - Every version written (by ingest, or seen through the change feed) is
//!   also kept on its own, the newest per id, in a second moka bounded by an
//!   eighth of the budget ([`WRITTEN_SHARE`]): while Postgres cannot be read,
//!   a product (or a list block) that no cached block holds is served from
//!   there, so what the service stored or saw since it started stays
//!   readable through an outage, within that budget.
//! - An index of every block that holds products (with a bit per id) serves
//!   the list pages from memory, once a rebuild has filled it; until then
//!   lists are read from Postgres. It costs 16 bytes per 64 ids, and is never
//!   evicted. Its bits are cleared only from a block's own contents, so it
//!   may name an id that is gone (until that block is next read), never miss
//!   one that is there.
//! - A search index ([`SearchIndex`]: each product's name and manufacturer,
//!   lower-cased, and its price) holds every product, never evicted: it is
//!   changed with the blocks, in the same per-key compute, by every version
//!   the cache is given or reads (a block read whole replaces its part), so
//!   searches are served from memory once a rebuild has filled it, and from
//!   Postgres until then.
//! - Each time the change feed moves ([`ProductCache::caught_up_to`]) it
//!   says so on a watch ([`ProductCache::moved`]): http's change stream reads
//!   the new history from Postgres then, once for every page and program
//!   that follows it.

use super::CacheError;
use super::breaker::Breaker;
use crate::call::Peer;
use crate::metrics::Metrics;
use crate::names::Names;
use crate::persistence::{self, PersistenceMsg};
use crate::timeouts::PERSISTENCE_TIMEOUT;
use catalogue::block::{BLOCK_IDS, Block, Cached, block_of, ids_of};
use catalogue::feed::{Deleted, Version};
use catalogue::filter::Filter;
use catalogue::index::Index;
use catalogue::product::Product;
use catalogue::search::{Matcher, SearchIndex};
use futures::StreamExt;
use moka::future::Cache as Moka;
use moka::ops::compute::{CompResult, Op};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// What moka keeps per entry besides the block itself (its key, its
/// bookkeeping, the `Arc`), counted in each entry's weight.
const ENTRY_OVERHEAD: usize = 160;

/// The versions written since start get this share of the budget, on top of
/// the blocks' (1/8).
const WRITTEN_SHARE: u64 = 8;

/// Blocks read at once after a deletion (see [`ProductCache::delete`]).
const DELETION_READS: usize = 8;

/// Blocks a search looks at per hold of the search index's lock (16,384
/// ids), so that writers wait for a part of a search, never a whole one.
const SEARCH_BLOCKS_PER_LOCK: usize = 256;

/// A page of the list.
pub struct Page {
    /// The products, in id order.
    pub products: Vec<Cached>,
    /// The cached blocks they were read from, in id order (none when the
    /// page was read from Postgres).
    pub blocks: Vec<Arc<Block>>,
}

/// The shared handle; clones share the same cache and index.
#[derive(Clone)]
pub struct ProductCache {
    blocks: Moka<i64, Arc<Block>>,
    /// The newest version of each id written since start (within its
    /// budget), for reads while Postgres is away.
    written: Moka<i64, Version>,
    // A std lock: held only to read or change the map, never across an await.
    index: Arc<RwLock<Index>>,
    /// Every product's searchable fields (a std lock, as `index`).
    search: Arc<RwLock<SearchIndex>>,
    persistence: Peer<PersistenceMsg>,
    /// Reads through fail at once while Postgres fails, but for one probe.
    breaker: Arc<Breaker>,
    /// Counts the change feed's moves (see [`ProductCache::moved`]).
    moved: Arc<watch::Sender<u64>>,
    /// Raised by every `clear`: a read begun before it is not kept.
    generation: Arc<AtomicU64>,
    /// The change feed's position: the Postgres snapshot of the last
    /// catch-up applied (`None` until the first); where a page starts.
    position: Arc<RwLock<Option<Arc<str>>>>,
    metrics: Metrics,
}

impl ProductCache {
    /// An empty cache of at most `max_bytes`, reading through to `names`'s persistence.
    pub fn new(names: &Names, max_bytes: u64) -> Self {
        let blocks = Moka::builder()
            .max_capacity(max_bytes)
            .weigher(|_, block: &Arc<Block>| weight(block))
            .build();
        let written = Moka::builder()
            .max_capacity(max_bytes / WRITTEN_SHARE)
            .weigher(|_, version: &Version| version_weight(version))
            .build();
        Self {
            blocks,
            written,
            index: Arc::default(),
            search: Arc::default(),
            persistence: persistence::peer(names),
            breaker: Arc::default(),
            moved: Arc::new(watch::Sender::new(0)),
            generation: Arc::default(),
            position: Arc::default(),
            metrics: Metrics::new(names),
        }
    }

    /// One product by id (`None`: Postgres has no such product). A miss reads
    /// its block through from Postgres once: concurrent misses wait for that read.
    pub async fn get(&self, id: i64) -> Result<Option<Cached>, CacheError> {
        match self.block(block_of(id)).await {
            Ok(block) => Ok(block.get(id)),
            // Postgres cannot be read: the version this service last wrote
            // or saw, if it kept one.
            Err(error) => match self.written.get(&id).await {
                Some(version) => Ok(Block::new([version]).get(id)),
                None => Err(error),
            },
        }
    }

    /// Up to `limit` products with an id greater than `after`, in id order:
    /// from memory once the index is complete, else from Postgres.
    pub async fn page(&self, after: i64, limit: u64) -> Result<Page, CacheError> {
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut page = Vec::with_capacity(limit.min(1024));
        let mut blocks = Vec::new();
        let mut key = block_of(after.saturating_add(1));
        while page.len() < limit {
            // `None`: the index is not complete yet.
            let next = {
                let index = self.index.read().unwrap_or_else(|e| e.into_inner());
                index.next_block(key)
            };
            let Some(next) = next else {
                return self.page_from_postgres(after, limit).await;
            };
            let Some(found) = next else { break };
            let block = self.listed_block(found).await?;
            page.extend(block.after(after).take(limit - page.len()));
            blocks.push(block);
            match found.checked_add(1) {
                Some(next) => key = next,
                None => break,
            }
        }
        Ok(Page {
            products: page,
            blocks,
        })
    }

    async fn page_from_postgres(&self, after: i64, limit: usize) -> Result<Page, CacheError> {
        let page = self
            .persistence
            .ask(
                |reply| PersistenceMsg::Page {
                    after,
                    limit: limit as u64,
                    reply,
                },
                PERSISTENCE_TIMEOUT,
            )
            .await??;
        let block = Block::new(page.into_iter().map(|p| Version::Stored(Arc::new(p))));
        Ok(Page {
            products: block.after(after).collect(),
            blocks: Vec::new(),
        })
    }

    /// Writes: keeps each product unless a newer version of it is cached
    /// already.
    pub async fn put(&self, products: impl IntoIterator<Item = Arc<Product>>) {
        self.write(products.into_iter().map(Version::Stored)).await;
    }

    /// Forgets deleted products, unless the cache holds a version written
    /// after the deletion. A deletion of every product (`id: None`) is left to
    /// the caller, who rebuilds.
    pub async fn delete(&self, deleted: impl IntoIterator<Item = Deleted>) {
        let deleted: Vec<Version> = deleted
            .into_iter()
            .filter_map(|deleted| {
                deleted.id.map(|id| Version::Deleted {
                    id,
                    revision: deleted.revision,
                })
            })
            .collect();
        let listed: BTreeSet<i64> = {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            deleted
                .iter()
                .filter(|v| index.lists(v.id()))
                .map(|v| block_of(v.id()))
                .collect()
        };
        self.write(deleted.into_iter()).await;
        // The index clears an id only from its block: a block that lists a
        // deleted id and was not cached is read now (the deletion is
        // committed), so that the count and the lists drop the id at once. A
        // failed read leaves that to the next one.
        futures::stream::iter(listed)
            .for_each_concurrent(DELETION_READS, |key| async move {
                if !self.blocks.contains_key(&key) {
                    let _ = self.block(key).await;
                }
            })
            .await;
    }

    async fn write(&self, versions: impl Iterator<Item = Version>) {
        let mut by_block: BTreeMap<i64, Vec<Version>> = BTreeMap::new();
        for version in versions {
            self.remember(&version).await;
            by_block
                .entry(block_of(version.id()))
                .or_default()
                .push(version);
        }
        for (key, versions) in by_block {
            let cached = self.write_block(key, versions).await;
            if !cached && !self.index_complete() {
                // A rebuild is filling the cache from reads made before this
                // write: read the block now (the write is committed), so that
                // the rebuild's older read cannot hide it (a fill keeps the
                // newer of each). A failed read leaves it to the catch-up
                // that follows the rebuild.
                let _ = self.block(key).await;
            }
        }
    }

    /// Applies `versions` to the block `key` if it is cached (newer ones
    /// only); answers whether it was.
    async fn write_block(&self, key: i64, versions: Vec<Version>) -> bool {
        let mut cached = false;
        let index = &self.index;
        let search = &self.search;
        let cached_out = &mut cached;
        self.blocks
            .entry(key)
            .and_compute_with(|entry| async move {
                write(search).merge(&versions);
                let Some(entry) = entry else {
                    // Not cached: nothing to replace; list the new ids.
                    let mut index = index.write().unwrap_or_else(|e| e.into_inner());
                    for version in &versions {
                        if let Version::Stored(product) = version {
                            index.add(product.id);
                        }
                    }
                    return Op::Nop;
                };
                *cached_out = true;
                let (block, applied) = entry.value().merge(versions);
                if applied.is_empty() {
                    return Op::Nop;
                }
                list(index, key, block.mask());
                Op::Put(Arc::new(block))
            })
            .await;
        cached
    }

    /// Keeps `version` as the id's newest written, unless a newer one is kept.
    async fn remember(&self, version: &Version) {
        let version = version.clone();
        self.written
            .entry(version.id())
            .and_compute_with(|kept| async move {
                match kept {
                    Some(kept) if kept.value().revision() >= version.revision() => Op::Nop,
                    _ => Op::Put(version),
                }
            })
            .await;
    }

    /// The block `key` for a list: from memory or Postgres, or else, while
    /// Postgres cannot be read, made of the versions written since start if
    /// they hold every id the index lists in it.
    async fn listed_block(&self, key: i64) -> Result<Arc<Block>, CacheError> {
        let error = match self.block(key).await {
            Ok(block) => return Ok(block),
            Err(error) => error,
        };
        let mask = self
            .index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .mask(key);
        let (first, _) = ids_of(key);
        let mut versions = Vec::new();
        for bit in 0..BLOCK_IDS {
            if mask & (1 << bit) == 0 {
                continue;
            }
            match self.written.get(&(first + bit)).await {
                Some(version) => versions.push(version),
                None => return Err(error),
            }
        }
        Ok(Arc::new(Block::new(versions)))
    }

    /// A load (a rebuild): every version of one block's ids, merged into what
    /// is cached (or cached as it is), unannounced. Nothing is kept if the
    /// cache was cleared since `generation`.
    pub async fn fill(&self, versions: Vec<Version>, generation: u64) {
        let Some(first) = versions.first() else {
            return;
        };
        let key = block_of(first.id());
        let index = &self.index;
        let search = &self.search;
        let current = &self.generation;
        self.blocks
            .entry(key)
            .and_compute_with(|entry| async move {
                if current.load(Ordering::Acquire) != generation {
                    return Op::Nop;
                }
                write(search).merge(&versions);
                let block = match entry {
                    None => Block::new(versions),
                    Some(entry) => match entry.value().merge(versions) {
                        (_, applied) if applied.is_empty() => {
                            // Listed, whatever put it there.
                            list(index, key, entry.value().mask());
                            return Op::Nop;
                        }
                        (block, _) => block,
                    },
                };
                list(index, key, block.mask());
                Op::Put(Arc::new(block))
            })
            .await;
    }

    /// Where `fill` starts from: it fills nothing once the cache is cleared again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn index_complete(&self) -> bool {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .count()
            .is_some()
    }

    /// The block `key`, from memory or else read from Postgres (once, for
    /// every reader that misses it meanwhile).
    async fn block(&self, key: i64) -> Result<Arc<Block>, CacheError> {
        if let Some(block) = self.blocks.get(&key).await {
            self.metrics.cache_hits.increment(1);
            return Ok(block);
        }
        self.metrics.cache_misses.increment(1);
        self.read_block(key, false).await
    }

    /// Reads the block `key` from Postgres, whole, and keeps it; unless
    /// `again` is false and a reader that missed it at the same time has
    /// kept it meanwhile (its read is as new: it began after the miss).
    async fn read_block(&self, key: i64, again: bool) -> Result<Arc<Block>, CacheError> {
        let persistence = &self.persistence;
        let breaker = &self.breaker;
        let index = &self.index;
        let search = &self.search;
        let current = &self.generation;
        let generation = current.load(Ordering::Acquire);
        // A block read before a `clear` and not kept: served to this reader only.
        let mut unkept = None;
        let unkept_out = &mut unkept;
        let read = self
            .blocks
            .entry(key)
            .and_try_compute_with(|entry| async move {
                if entry.is_some() && !again {
                    // Filled while this read waited for the key.
                    return Ok(Op::Nop);
                }
                let (first, last) = ids_of(key);
                let ticket = breaker.admit().ok_or(CacheError::PostgresAway)?;
                let versions = persistence
                    .ask(
                        |reply| PersistenceMsg::Versions {
                            from: first,
                            until: last,
                            limit: BLOCK_IDS as u64,
                            reply,
                        },
                        PERSISTENCE_TIMEOUT,
                    )
                    .await
                    .map_err(CacheError::from)
                    .and_then(|read| read.map_err(CacheError::from));
                ticket.done(versions.is_ok());
                let versions = versions?;
                if current.load(Ordering::Acquire) != generation {
                    *unkept_out = Some(Arc::new(Block::new(versions)));
                    return Ok(Op::Nop);
                }
                // Read whole: what it does not hold is gone.
                write(search).replace(key, &versions);
                let block = Arc::new(Block::new(versions));
                list(index, key, block.mask());
                Ok::<_, CacheError>(Op::Put(block))
            })
            .await?;
        match read {
            CompResult::Inserted(entry)
            | CompResult::ReplacedWith(entry)
            | CompResult::Unchanged(entry) => Ok(entry.into_value()),
            // Read, but the cache was cleared meanwhile. (The closure above
            // never removes a block.)
            CompResult::StillNone(_) | CompResult::Removed(_) => Ok(unkept.unwrap_or_default()),
        }
    }

    /// Changes each time the change feed moves: Postgres has committed
    /// changes this replica has applied (the change stream reads them then).
    pub fn moved(&self) -> watch::Receiver<u64> {
        self.moved.subscribe()
    }

    /// Where the change feed stands: every change committed before this
    /// Postgres snapshot has been applied (or loaded by the rebuild that
    /// began there). `None` until the first rebuild.
    pub fn position(&self) -> Option<Arc<str>> {
        self.position
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The change feed has applied everything committed before `snapshot`:
    /// a page starts from there, and the change stream is told to read.
    pub fn caught_up_to(&self, snapshot: &str) {
        *self.position.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(snapshot));
        self.moved
            .send_modify(|moves| *moves = moves.wrapping_add(1));
    }

    /// The `after` of the page of `limit` products that ends just before the
    /// id `before` (0: the first page), once the index holds every id.
    pub fn previous_after(&self, before: i64, limit: u64) -> Option<i64> {
        self.index
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .previous_after(before, limit)
    }

    /// Up to `limit` products with an id greater than `after` that `filter`
    /// asks for, in id order, from the search index, once a rebuild has
    /// filled it (`None` until then: search Postgres). Each is read from its
    /// block and checked again, so a product changed since the index was
    /// read is answered as it is now, or left out.
    pub async fn search(
        &self,
        filter: &Filter,
        after: i64,
        limit: u64,
    ) -> Option<Result<Vec<Product>, CacheError>> {
        let generation = self.generation();
        let matcher = Matcher::new(filter);
        let limit = usize::try_from(limit).unwrap_or(usize::MAX);
        let mut products = Vec::new();
        let mut after = after;
        while products.len() < limit {
            // Complete, and not cleared since the search began (a restart or
            // a TRUNCATE empties it): else Postgres answers.
            if !self.index_complete() || self.generation() != generation {
                return None;
            }
            let asked = limit - products.len();
            let found = read(&self.search).search(&matcher, after, asked, SEARCH_BLOCKS_PER_LOCK);
            let full = found.ids.len() == asked;
            for id in found.ids {
                after = id;
                match self.get(id).await {
                    Ok(Some(cached)) => {
                        let product = cached.product();
                        if matcher.matches(&product.name, &product.manufacturer, product.price) {
                            products.push(product);
                        }
                    }
                    Ok(None) => {}
                    Err(error) => return Some(Err(error)),
                }
            }
            match found.resume_after {
                Some(next) => after = next,
                None if full => {}
                None => break,
            }
            // A search of the whole catalogue is some milliseconds of CPU:
            // the other requests on this worker thread go between its parts.
            tokio::task::yield_now().await;
        }
        Some(Ok(products))
    }

    /// How many products there are, once the index holds every id.
    pub fn count(&self) -> Option<u64> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).count()
    }

    /// Forgets everything (on a cache restart, or after a TRUNCATE), the
    /// versions written since start included: reads go to Postgres until a
    /// rebuild has filled it again.
    pub fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.blocks.invalidate_all();
        self.written.invalidate_all();
        *self.index.write().unwrap_or_else(|e| e.into_inner()) = Index::default();
        write(&self.search).clear();
    }

    /// Reads the blocks `keys` again from Postgres, whole (the change feed
    /// had more changes than one read takes: these blocks hold them). Fails
    /// if a block cannot be read (the caller tries again).
    pub async fn reload(&self, keys: &[i64]) -> Result<(), CacheError> {
        let mut reads = futures::stream::iter(keys.iter().copied())
            .map(|key| async move {
                let (first, last) = ids_of(key);
                for id in first..=last {
                    self.written.invalidate(&id).await;
                }
                self.blocks.invalidate(&key).await;
                // Read again even if a read of the block that began before
                // the changes fills it first (it waits for that one).
                self.read_block(key, true).await.map(drop)
            })
            .buffer_unordered(DELETION_READS);
        while let Some(read) = reads.next().await {
            read?;
        }
        Ok(())
    }

    /// Says that the index holds every id (a rebuild has loaded them all).
    pub fn index_is_complete(&self) {
        self.index
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .mark_complete();
    }

    /// The most the cache weighs, in bytes.
    pub fn capacity(&self) -> u64 {
        self.blocks.policy().max_capacity().unwrap_or(u64::MAX)
    }

    /// Products cached and their weight in bytes, after moka's pending work.
    pub async fn size(&self) -> (u64, u64) {
        self.blocks.run_pending_tasks().await;
        let products = self
            .blocks
            .iter()
            .map(|(_, block)| block.len() as u64)
            .sum();
        (products, self.blocks.weighted_size())
    }
}

/// Lists the ids of the block `key` (from the block's own contents).
/// What a version kept on its own weighs, roughly: its text, and what moka
/// keeps per entry.
fn version_weight(version: &Version) -> u32 {
    let text = match version {
        Version::Stored(product) => {
            product.name.len()
                + product.manufacturer.len()
                + product.description.as_ref().map_or(0, String::len)
                + 64 * product.attributes.len()
                + std::mem::size_of::<Product>()
        }
        Version::Deleted { .. } => 0,
    };
    u32::try_from(text + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

fn list(index: &RwLock<Index>, key: i64, mask: u64) {
    index
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .set(key, mask);
}

/// What a block holds, in bytes, and moka's own bookkeeping.
fn weight(block: &Block) -> u32 {
    u32::try_from(block.bytes() + ENTRY_OVERHEAD).unwrap_or(u32::MAX)
}

/// The search index, to change (a poisoned lock is taken as it is: each of
/// its blocks is replaced whole, never left half changed).
fn write(search: &RwLock<SearchIndex>) -> std::sync::RwLockWriteGuard<'_, SearchIndex> {
    search.write().unwrap_or_else(|e| e.into_inner())
}

/// The search index, to read.
fn read(search: &RwLock<SearchIndex>) -> std::sync::RwLockReadGuard<'_, SearchIndex> {
    search.read().unwrap_or_else(|e| e.into_inner())
}

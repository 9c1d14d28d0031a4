//! A block: every product whose id falls in one run of [`BLOCK_IDS`] ids,
//! kept as the JSON the API serves, in one buffer.
//!
//! Pure code, no I/O. The cache keeps blocks, not single products, because:
//! - a list page is a few blocks, and its JSON is the products' JSON joined,
//!   never serialized again;
//! - a block knows every id of its range: an id it does not hold is absent,
//!   with no entry of its own to say so;
//! - one buffer and one cache entry for up to 64 products cost far less
//!   memory than an allocation per string and an entry per product.
//!
//! A block is never changed in place: [`Block::merge`] makes a new one, and
//! readers holding the old one go on reading it. Every version in it carries
//! its revision, and a merge keeps, for each id, the higher one, deletions
//! included (a deleted id is kept as a tombstone with the revision of its
//! deletion), so versions may arrive in any order.

use crate::feed::Version;
use crate::product::Product;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};

/// Ids per block: a block holds the ids `key * BLOCK_IDS ..= key * BLOCK_IDS + 63`.
pub const BLOCK_IDS: i64 = 64;
const BLOCK_BITS: u32 = BLOCK_IDS.trailing_zeros();

/// The block that holds `id`.
pub fn block_of(id: i64) -> i64 {
    id >> BLOCK_BITS
}

/// The first and the last id of the block `key`.
pub fn ids_of(key: i64) -> (i64, i64) {
    let first = key << BLOCK_BITS;
    (first, first + (BLOCK_IDS - 1))
}

/// `id`'s bit in its block's mask.
pub fn bit_of(id: i64) -> u64 {
    1 << (id & (BLOCK_IDS - 1))
}

/// One cached product: what the API serves (its JSON, shared with its block).
#[derive(Clone, Debug)]
pub struct Cached {
    pub id: i64,
    pub revision: i64,
    json: Bytes,
}

impl Cached {
    /// The product as the API serves it: a JSON object.
    pub fn json(&self) -> &Bytes {
        &self.json
    }

    /// The product, read back from its JSON.
    pub fn product(&self) -> Product {
        let mut product: Product = serde_json::from_slice(&self.json)
            .expect("a block holds JSON written from a Product by serde_json");
        product.revision = self.revision;
        product
    }
}

/// A block's products, in id order, in one buffer.
#[derive(Debug, Default)]
pub struct Block {
    items: Vec<Item>,
    /// Each product's JSON, one after another.
    buffer: Bytes,
    /// This version of the block, unique in the process (0: empty).
    stamp: u64,
}

/// The stamp of the next block built.
static NEXT_STAMP: AtomicU64 = AtomicU64::new(1);

/// One id of a block: where its JSON is in the buffer, or a tombstone.
#[derive(Clone, Copy, Debug)]
struct Item {
    id: i64,
    revision: i64,
    /// The JSON is `buffer[start..end]`; `start == end`: deleted.
    start: u32,
    end: u32,
}

impl Item {
    fn is_deleted(&self) -> bool {
        self.start == self.end
    }
}

impl Block {
    /// A block of these versions (any order; for a repeated id, the higher revision).
    pub fn new(versions: impl IntoIterator<Item = Version>) -> Self {
        Block::default().merge(versions).0
    }

    /// This block with `versions` applied where they are newer than what it
    /// holds, and the versions that were.
    pub fn merge(&self, versions: impl IntoIterator<Item = Version>) -> (Block, Vec<Version>) {
        let mut incoming: Vec<Version> = versions.into_iter().collect();
        incoming.sort_by_key(|v| (v.id(), std::cmp::Reverse(v.revision())));
        incoming.dedup_by_key(|v| v.id());
        incoming.retain(|v| {
            self.item(v.id())
                .is_none_or(|old| v.revision() > old.revision)
        });
        if incoming.is_empty() {
            return (self.copy(), incoming);
        }
        let mut builder = Builder::with_capacity(self.items.len() + incoming.len());
        let mut new = incoming.iter().peekable();
        for old in &self.items {
            while let Some(version) = new.next_if(|v| v.id() < old.id) {
                builder.push_version(version);
            }
            match new.next_if(|v| v.id() == old.id) {
                Some(version) => builder.push_version(version),
                None => builder.push_item(old, &self.buffer),
            }
        }
        for version in new {
            builder.push_version(version);
        }
        (builder.finish(), incoming)
    }

    /// The product `id`, if this block holds it (and it is not deleted).
    pub fn get(&self, id: i64) -> Option<Cached> {
        self.item(id)
            .filter(|item| !item.is_deleted())
            .map(|item| self.cached(item))
    }

    /// The products with an id greater than `after`, in id order.
    pub fn after(&self, after: i64) -> impl Iterator<Item = Cached> + '_ {
        let from = self.items.partition_point(|item| item.id <= after);
        self.items[from..]
            .iter()
            .filter(|item| !item.is_deleted())
            .map(|item| self.cached(item))
    }

    /// The ids it holds (not deleted), one bit each ([`bit_of`]).
    pub fn mask(&self) -> u64 {
        self.items
            .iter()
            .filter(|item| !item.is_deleted())
            .fold(0, |mask, item| mask | bit_of(item.id))
    }

    /// Products held (not deleted).
    pub fn len(&self) -> usize {
        self.mask().count_ones() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The revision it holds of `id`, a deletion's included.
    pub fn revision_of(&self, id: i64) -> Option<i64> {
        self.item(id).map(|item| item.revision)
    }

    /// Identifies this version of the block: a changed block is a new block
    /// with a new stamp, so what is derived from a block can be kept by its
    /// stamp and is never stale.
    pub fn stamp(&self) -> u64 {
        self.stamp
    }

    /// The highest revision it holds, deletions included.
    pub fn latest_revision(&self) -> i64 {
        self.items
            .iter()
            .map(|item| item.revision)
            .max()
            .unwrap_or(0)
    }

    /// What it holds, in bytes.
    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.items.len() * std::mem::size_of::<Item>()
            + self.buffer.len()
    }

    fn item(&self, id: i64) -> Option<&Item> {
        self.items
            .binary_search_by_key(&id, |item| item.id)
            .ok()
            .map(|at| &self.items[at])
    }

    fn cached(&self, item: &Item) -> Cached {
        Cached {
            id: item.id,
            revision: item.revision,
            json: self.buffer.slice(item.start as usize..item.end as usize),
        }
    }

    fn copy(&self) -> Block {
        Block {
            items: self.items.clone(),
            buffer: self.buffer.clone(),
            stamp: self.stamp,
        }
    }
}

struct Builder {
    items: Vec<Item>,
    buffer: Vec<u8>,
}

impl Builder {
    fn with_capacity(items: usize) -> Self {
        Self {
            items: Vec::with_capacity(items),
            buffer: Vec::with_capacity(items * 160),
        }
    }

    fn push_version(&mut self, version: &Version) {
        match version {
            Version::Stored(product) => {
                let start = self.offset();
                serde_json::to_writer(&mut self.buffer, &**product)
                    .expect("a Product always serializes to JSON");
                self.items.push(Item {
                    id: product.id,
                    revision: product.revision,
                    start,
                    end: self.offset(),
                });
            }
            Version::Deleted { id, revision } => {
                let at = self.offset();
                self.items.push(Item {
                    id: *id,
                    revision: *revision,
                    start: at,
                    end: at,
                });
            }
        }
    }

    fn push_item(&mut self, item: &Item, buffer: &[u8]) {
        let start = self.offset();
        self.buffer
            .extend_from_slice(&buffer[item.start as usize..item.end as usize]);
        self.items.push(Item {
            start,
            end: self.offset(),
            ..*item
        });
    }

    /// Where the next bytes go. A block holds at most a page of products (64
    /// in the cache, up to 1,000 for a list read from Postgres before the
    /// cache is rebuilt) of at most 64 KiB of JSON each (the largest payload
    /// the decoder reads), so its buffer stays far below 4 GiB.
    fn offset(&self) -> u32 {
        u32::try_from(self.buffer.len()).expect("a block's buffer stays below 4 GiB")
    }

    /// The block, with no spare capacity kept (a cache holds many).
    fn finish(self) -> Block {
        Block {
            items: self.items.into_boxed_slice().into_vec(),
            buffer: Bytes::from(self.buffer.into_boxed_slice()),
            stamp: NEXT_STAMP.fetch_add(1, Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn product(id: i64, name: &str, revision: i64) -> Version {
        let mut attributes = serde_json::Map::new();
        attributes.insert("colour".into(), "blue \"navy\"".into());
        Version::Stored(Arc::new(Product {
            id,
            name: name.into(),
            price: 10 * id,
            manufacturer: "bic".into(),
            description: (id % 2 == 0).then(|| "a <b>pen</b>".into()),
            attributes,
            revision,
            stream_seq: revision + 100,
            updated_at: format!("2026-11-26T00:00:{revision:02}.000000Z"),
            changed_by: None,
        }))
    }

    fn names(block: &Block) -> Vec<(i64, String)> {
        block
            .after(i64::MIN)
            .map(|c| (c.id, c.product().name))
            .collect()
    }

    #[test]
    fn a_product_reads_back_as_it_was_written_and_serves_the_same_json() {
        let Version::Stored(pen) = product(2, "pen", 7) else {
            unreachable!()
        };
        let block = Block::new([Version::Stored(Arc::clone(&pen))]);
        let cached = block.get(2).unwrap();
        assert_eq!(cached.product(), *pen);
        assert_eq!(&cached.json()[..], serde_json::to_vec(&*pen).unwrap());
        assert_eq!(cached.product().updated_at, "2026-11-26T00:00:07.000000Z");
        assert!(block.get(3).is_none());
    }

    #[test]
    fn a_merge_keeps_the_higher_revision_of_each_id_in_any_order() {
        let block = Block::new([product(3, "c", 5), product(1, "a", 5)]);
        let (block, applied) = block.merge([
            product(1, "a older", 4),
            product(2, "b", 6),
            product(3, "c newer", 9),
            product(3, "c between", 7),
        ]);
        assert_eq!(
            names(&block),
            [(1, "a".into()), (2, "b".into()), (3, "c newer".into())]
        );
        let applied: Vec<_> = applied.iter().map(|v| (v.id(), v.revision())).collect();
        assert_eq!(applied, [(2, 6), (3, 9)]);
        assert_eq!(block.latest_revision(), 9);
    }

    #[test]
    fn a_deletion_is_kept_so_that_an_older_version_never_comes_back() {
        let block = Block::new([product(1, "a", 5), product(2, "b", 5)]);
        let (block, applied) = block.merge([Version::Deleted { id: 1, revision: 6 }]);
        assert_eq!(applied.len(), 1);
        assert!(block.get(1).is_none());
        assert_eq!(block.mask(), bit_of(2));

        let (block, applied) = block.merge([product(1, "a again, older", 5)]);
        assert!(applied.is_empty());
        assert!(block.get(1).is_none());

        let (block, _) = block.merge([product(1, "a again, newer", 8)]);
        assert_eq!(block.get(1).unwrap().product().name, "a again, newer");
        assert_eq!(block.len(), 2);
    }

    #[test]
    fn after_lists_the_products_past_an_id_in_order() {
        let block = Block::new((64..128).rev().map(|id| product(id, "x", 1)));
        let ids: Vec<_> = block.after(120).map(|c| c.id).collect();
        assert_eq!(ids, (121..128).collect::<Vec<_>>());
        assert_eq!(block.mask(), u64::MAX);
        assert_eq!(block_of(64), 1);
        assert_eq!(block_of(127), 1);
        assert_eq!(ids_of(1), (64, 127));
    }

    #[test]
    fn negative_ids_fall_in_their_own_blocks_in_order() {
        assert_eq!(block_of(-1), -1);
        assert_eq!(ids_of(-1), (-64, -1));
        assert_eq!(bit_of(-1), 1 << 63);
        assert_eq!(bit_of(-64), 1);
    }
}

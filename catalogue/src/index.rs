//! The cache's index: every block that holds products, with a bit for each
//! id it holds. It serves the list pages from memory (which blocks to read,
//! how many products there are, where the previous page starts) once a
//! rebuild has filled it. It costs 16 bytes per 64 ids.
//!
//! Its bits are cleared only from a block's own contents, so it may name an id
//! that is gone (until that block is next read), never miss one that is there.

use crate::block::{BLOCK_IDS, bit_of, block_of, ids_of};
use std::collections::BTreeMap;

#[derive(Default, Debug)]
pub struct Index {
    /// Every block that holds products (as far as the cache was told), with
    /// a bit for each id it holds.
    blocks: BTreeMap<i64, u64>,
    /// How many bits are set in `blocks`.
    count: u64,
    /// The blocks were loaded whole (a rebuild finished): lists may be served from here.
    complete: bool,
}

impl Index {
    /// The block `key` holds exactly the ids of `mask`.
    pub fn set(&mut self, key: i64, mask: u64) {
        let old = if mask == 0 {
            self.blocks.remove(&key)
        } else {
            self.blocks.insert(key, mask)
        };
        self.count =
            self.count + u64::from(mask.count_ones()) - u64::from(old.unwrap_or(0).count_ones());
    }

    /// `id` is held.
    pub fn add(&mut self, id: i64) {
        let key = block_of(id);
        let mask = self.mask(key) | bit_of(id);
        self.set(key, mask);
    }

    /// The ids the block `key` holds, as far as the index knows.
    pub fn mask(&self, key: i64) -> u64 {
        self.blocks.get(&key).copied().unwrap_or(0)
    }

    /// The index lists `id`.
    pub fn lists(&self, id: i64) -> bool {
        self.mask(block_of(id)) & bit_of(id) != 0
    }

    /// Says that the index holds every id (a rebuild has loaded them all).
    pub fn mark_complete(&mut self) {
        self.complete = true;
    }

    /// The first block from `key` on that holds products (`Some(None)`: none
    /// does); `None` while the index is not complete.
    pub fn next_block(&self, key: i64) -> Option<Option<i64>> {
        self.complete
            .then(|| self.blocks.range(key..).next().map(|(&key, _)| key))
    }

    /// How many products there are, once the index holds every id.
    pub fn count(&self) -> Option<u64> {
        self.complete.then_some(self.count)
    }

    /// The `after` of the page of `limit` products that ends just before the
    /// id `before` (0: the first page), once the index holds every id.
    pub fn previous_after(&self, before: i64, limit: u64) -> Option<i64> {
        if !self.complete {
            return None;
        }
        let Some(last) = before.checked_sub(1) else {
            return Some(0);
        };
        // The id `limit` places before the last one before `before`.
        let mut skip = limit;
        for (&key, &mask) in self.blocks.range(..=block_of(last)).rev() {
            let mut mask = if key == block_of(last) {
                mask & (u64::MAX >> (63 - (last & (BLOCK_IDS - 1))))
            } else {
                mask
            };
            let held = u64::from(mask.count_ones());
            if skip >= held {
                skip -= held;
                continue;
            }
            for _ in 0..skip {
                mask &= !(1 << (63 - mask.leading_zeros()));
            }
            return Some(ids_of(key).0 + i64::from(63 - mask.leading_zeros()));
        }
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(ids: &[i64]) -> Index {
        let mut index = Index::default();
        for &id in ids {
            index.add(id);
        }
        index.mark_complete();
        index
    }

    #[test]
    fn an_incomplete_index_answers_nothing_about_lists() {
        let mut index = Index::default();
        index.add(5);
        assert_eq!(index.count(), None);
        assert_eq!(index.next_block(0), None);
        assert_eq!(index.previous_after(10, 2), None);
        assert!(index.lists(5));
    }

    #[test]
    fn the_count_follows_sets_across_blocks() {
        let mut index = complete(&[1, 2, 64, 200]);
        assert_eq!(index.count(), Some(4));
        index.set(block_of(1), bit_of(2));
        assert_eq!(index.count(), Some(3));
        index.set(block_of(64), 0);
        assert_eq!(index.count(), Some(2));
        assert_eq!(index.next_block(1), Some(Some(block_of(200))));
        assert_eq!(index.next_block(block_of(200) + 1), Some(None));
    }

    #[test]
    fn the_previous_page_starts_limit_ids_back_across_blocks() {
        let index = complete(&[1, 2, 3, 70, 71, 200]);
        // Before 200, two back: the page is 70, 71, so it starts after 3.
        assert_eq!(index.previous_after(200, 2), Some(3));
        assert_eq!(index.previous_after(200, 3), Some(2));
        assert_eq!(index.previous_after(71, 10), Some(0));
        assert_eq!(index.previous_after(0, 10), Some(0));
    }
}

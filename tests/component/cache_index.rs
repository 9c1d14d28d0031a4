//! The cache's own bookkeeping, with no Postgres behind it: the blocks it
//! was given are all it knows. The ids are chosen to sit on the edges of the
//! 64-id blocks, where an off-by-one would show.

use crate::common::product;
use actors::cache::ProductCache;
use actors::names::Names;
use catalogue::feed::{Deleted, Version};
use std::collections::{BTreeMap, BTreeSet};

fn cache() -> ProductCache {
    ProductCache::new(&Names::new(uuid::Uuid::new_v4().to_string()), 64 << 20)
}

/// Loads `ids` as a rebuild would (block by block, in id order), and says
/// the index is complete.
async fn filled(ids: &BTreeSet<i64>) -> ProductCache {
    let cache = cache();
    let mut blocks: BTreeMap<i64, Vec<Version>> = BTreeMap::new();
    for &id in ids {
        blocks
            .entry(id >> 6)
            .or_default()
            .push(Version::Stored(product(id, 1)));
    }
    for (_, versions) in blocks {
        cache.fill(versions, cache.generation()).await;
    }
    cache.index_is_complete();
    cache
}

/// What a list over `ids` must answer, the slow way.
fn expected_page(ids: &BTreeSet<i64>, after: i64, limit: usize) -> Vec<i64> {
    ids.range(after + 1..).take(limit).copied().collect()
}

fn expected_previous(ids: &BTreeSet<i64>, before: i64, limit: usize) -> i64 {
    ids.range(..before).rev().nth(limit).copied().unwrap_or(0)
}

fn edge_ids() -> BTreeSet<i64> {
    let mut ids: BTreeSet<i64> = [1, 2, 62, 63, 64, 65, 127, 128, 191, 640, 703, 704, 4095]
        .into_iter()
        .collect();
    // A full block, and a sparse stretch after it.
    ids.extend(1024..1088);
    ids.extend((5000..9000).step_by(97));
    ids
}

#[tokio::test]
async fn pages_previous_pages_and_the_count_match_the_sorted_ids() {
    let ids = edge_ids();
    let cache = filled(&ids).await;
    assert_eq!(cache.count(), Some(ids.len() as u64));
    let probes: Vec<i64> = ids
        .iter()
        .flat_map(|&id| [id - 1, id, id + 1])
        .chain([0, 9000, i64::MAX - 1])
        .collect();
    for limit in [1usize, 2, 3, 10, 63, 64, 65, 100] {
        for &at in &probes {
            let page: Vec<i64> = cache
                .page(at, limit as u64)
                .await
                .unwrap()
                .products
                .iter()
                .map(|p| p.id)
                .collect();
            assert_eq!(
                page,
                expected_page(&ids, at, limit),
                "after {at}, limit {limit}"
            );
            let before = at.max(1);
            assert_eq!(
                cache.previous_after(before, limit as u64),
                Some(expected_previous(&ids, before, limit)),
                "before {before}, limit {limit}"
            );
        }
    }
}

#[tokio::test]
async fn a_deletion_leaves_the_lists_and_the_count_at_once_and_an_older_write_does_not_bring_it_back()
 {
    let mut ids = edge_ids();
    let cache = filled(&ids).await;
    for id in [63, 64, 1024, 1087] {
        cache
            .delete([Deleted {
                id: Some(id),
                revision: 5,
            }])
            .await;
        ids.remove(&id);
    }
    // A write older than the deletion, arriving after it.
    cache.put([product(64, 4)]).await;
    assert!(cache.get(64).await.unwrap().is_none());
    assert_eq!(cache.count(), Some(ids.len() as u64));
    let listed: Vec<i64> = cache
        .page(0, 1000)
        .await
        .unwrap()
        .products
        .iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(listed, ids.iter().copied().collect::<Vec<_>>());

    // A newer write does.
    cache.put([product(64, 6)]).await;
    assert_eq!(cache.get(64).await.unwrap().unwrap().revision, 6);
    assert_eq!(cache.count(), Some(ids.len() as u64 + 1));
}

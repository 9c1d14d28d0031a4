//! The rows of the list page, as HTML: each product's row is rendered from
//! `views/product_row.hbs`, a whole block at a time, and kept by the block's
//! stamp ([`Block::stamp`]), so a page of 100 rows whose blocks were listed
//! before is two or three lookups and a copy, not 100 renderings. A block
//! that changes is a new block with a new stamp: rows are never stale, and
//! the old ones are evicted in time. Bounded by bytes (an eighth of the
//! product cache's budget). A block a page shows only part of has its rows
//! kept the second time it is asked for ([`RowsCache::page`]). A row is
//! written from the template taken apart once ([`template`]), not by
//! handlebars each time.

mod template;

use crate::cache::Page;
use catalogue::block::{Block, Cached};
use catalogue::product::Product;
use handlebars::{RenderError, RenderErrorReason};
use moka::future::Cache as Moka;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// The rows cache's share of the product cache's budget.
const SHARE_OF_CACHE: u64 = 8;

#[derive(Clone)]
pub struct RowsCache {
    rows: Moka<u64, Arc<Rows>>,
    /// The stamps of blocks a page showed part of, whose rows were not kept.
    asked: Moka<u64, ()>,
}

/// Blocks remembered as asked for (a stamp each, under a MiB in all).
const ASKED_BLOCKS: u64 = 4096;

/// A block's rows, one after another, and where each product's is.
struct Rows {
    html: String,
    /// (id, start, end) in `html`, in id order.
    at: Vec<(i64, usize, usize)>,
}

impl Rows {
    fn of(&self, id: i64) -> Option<&str> {
        let found = self.at.binary_search_by_key(&id, |&(id, ..)| id).ok()?;
        let (_, start, end) = self.at[found];
        Some(&self.html[start..end])
    }
}

/// What a row of the list shows of a product.
#[derive(Serialize, Deserialize)]
pub struct ListRow<'a> {
    id: i64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    price: i64,
    #[serde(borrow)]
    manufacturer: Cow<'a, str>,
}

impl<'a> ListRow<'a> {
    /// Read from the product's cached JSON (its other fields are skipped).
    pub fn from_cached(cached: &'a Cached) -> Self {
        serde_json::from_slice(cached.json())
            .expect("a block holds JSON written from a Product by serde_json")
    }

    pub fn from_product(product: &'a Product) -> Self {
        ListRow::new(
            product.id,
            &product.name,
            product.price,
            &product.manufacturer,
        )
    }

    fn new(id: i64, name: &'a str, price: i64, manufacturer: &'a str) -> Self {
        ListRow {
            id,
            name: Cow::Borrowed(name),
            price,
            manufacturer: Cow::Borrowed(manufacturer),
        }
    }

    /// This row's HTML, written at the end of `out`.
    fn render_into(&self, out: &mut String) -> Result<(), RenderError> {
        template::render_into(self, out)
    }
}

impl RowsCache {
    /// A rows cache sized for a product cache of `cache_bytes`.
    pub fn new(cache_bytes: u64) -> Self {
        let rows = Moka::builder()
            .max_capacity(cache_bytes / SHARE_OF_CACHE)
            .weigher(|_, rows: &Arc<Rows>| {
                let bytes = rows.html.len() + rows.at.len() * 24 + 64;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            rows,
            asked: Moka::new(ASKED_BLOCKS),
        }
    }

    /// The rows of a page's products, in order. For each block of the page:
    /// its rows from the cache; or, when they are not there, rendered whole
    /// and kept if the page shows every product of the block or the block
    /// was asked for recently, else only the rows the page shows (a page at
    /// a random place would otherwise render up to three blocks' rows, 164
    /// on average, for its 100, and keep rows no one asks for again).
    pub async fn page(&self, page: &Page) -> Result<String, RenderError> {
        let mut html = String::with_capacity(page.products.len() * 256);
        let mut products = page.products.as_slice();
        for block in &page.blocks {
            // The products are in the blocks' order.
            let shown = products
                .iter()
                .take_while(|product| block.revision_of(product.id).is_some())
                .count();
            let (on_page, rest) = products.split_at(shown);
            products = rest;
            if on_page.is_empty() {
                continue;
            }
            let stamp = block.stamp();
            let rows = match self.rows.get(&stamp).await {
                Some(rows) => Some(rows),
                None if on_page.len() == block.len() || self.asked_before(stamp).await => {
                    Some(self.block(block).await?)
                }
                None => None,
            };
            match rows {
                Some(rows) => {
                    for product in on_page {
                        match rows.of(product.id) {
                            Some(row) => html.push_str(row),
                            None => ListRow::from_cached(product).render_into(&mut html)?,
                        }
                    }
                }
                None => {
                    for product in on_page {
                        ListRow::from_cached(product).render_into(&mut html)?;
                    }
                }
            }
        }
        // Read from Postgres (no blocks): rendered here.
        for product in products {
            ListRow::from_cached(product).render_into(&mut html)?;
        }
        Ok(html)
    }

    /// Whether a page asked for part of the block `stamp` before (its rows
    /// are then kept, for the next page or the same page again); noted for
    /// the next time when not.
    async fn asked_before(&self, stamp: u64) -> bool {
        if self.asked.contains_key(&stamp) {
            return true;
        }
        self.asked.insert(stamp, ()).await;
        false
    }

    /// The rows of products not from the cache (a search's results).
    pub fn products(&self, products: &[Product]) -> Result<String, RenderError> {
        let mut html = String::new();
        for product in products {
            ListRow::from_product(product).render_into(&mut html)?;
        }
        Ok(html)
    }

    /// A block's rows: rendered once per version, by one reader.
    async fn block(&self, block: &Block) -> Result<Arc<Rows>, RenderError> {
        self.rows
            .try_get_with(block.stamp(), async {
                let mut rows = Rows {
                    html: String::new(),
                    at: Vec::with_capacity(block.len()),
                };
                for product in block.after(i64::MIN) {
                    let start = rows.html.len();
                    ListRow::from_cached(&product).render_into(&mut rows.html)?;
                    rows.at.push((product.id, start, rows.html.len()));
                }
                Ok(Arc::new(rows))
            })
            .await
            .map_err(|e: Arc<RenderError>| RenderErrorReason::Other(e.to_string()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use catalogue::feed::Version;
    use std::ops::RangeInclusive;

    /// A block of the ids in `ids` but every seventh, each named for `tag`.
    fn block(ids: RangeInclusive<i64>, tag: &str) -> Arc<Block> {
        Arc::new(Block::new(ids.filter(|id| id % 7 != 0).map(|id| {
            Version::Stored(Arc::new(Product {
                id,
                name: format!("{tag} <{id}> & \"co\""),
                price: id * 1001,
                manufacturer: format!("maker {}", id % 3),
                description: Some("skipped".into()),
                attributes: Default::default(),
                revision: id,
                stream_seq: id,
                updated_at: "2026-12-05T00:00:00Z".into(),
                changed_by: None,
            }))
        })))
    }

    /// The page of `limit` products after `after`, as the cache reads it.
    fn page(blocks: &[Arc<Block>], after: i64, limit: usize) -> Page {
        let products: Vec<Cached> = blocks
            .iter()
            .flat_map(|block| block.after(after))
            .take(limit)
            .collect();
        let blocks = blocks
            .iter()
            .filter(|block| products.iter().any(|p| block.get(p.id).is_some()))
            .cloned()
            .collect();
        Page { products, blocks }
    }

    /// Each product's row rendered by handlebars, one after the other.
    fn one_by_one(page: &Page) -> String {
        page.products
            .iter()
            .map(|product| {
                ListRow::from_cached(product)
                    .render_with_handlebars()
                    .unwrap()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_page_lists_its_products_rows_in_order_whether_its_blocks_rows_are_kept_or_not() {
        let rows = RowsCache::new(1 << 20);
        let mut blocks = vec![
            block(1..=63, "a"),
            block(64..=127, "a"),
            block(128..=191, "a"),
            block(192..=255, "a"),
        ];
        for round in 0..2 {
            // Pages that show blocks whole and in part, each asked for three
            // times (the rows of a block shown in part are kept the second).
            for (after, limit) in [
                (0, 100),
                (10, 100),
                (63, 64),
                (100, 100),
                (150, 20),
                (200, 100),
            ] {
                let page = page(&blocks, after, limit);
                assert!(!page.products.is_empty());
                for time in 0..3 {
                    let html = rows.page(&page).await.unwrap();
                    assert_eq!(
                        html,
                        one_by_one(&page),
                        "round {round}, after {after}, time {time}"
                    );
                }
            }
            // A changed block is a new block: its new rows are listed.
            blocks[1] = block(64..=127, "b");
        }
        assert!(one_by_one(&page(&blocks, 63, 10)).contains("b &lt;64&gt;"));
    }
}

//! The rows of the list page: each product's row is rendered from
//! `views/product_row.hbs`, written from the template taken apart once
//! ([`template`]), not by handlebars each time. What a row shows of each
//! product of a block (its id, name, price and manufacturer) is read from the
//! products' JSON once per version of the block and kept by the block's
//! stamp ([`Block::stamp`]), so a page of 100 rows whose blocks were listed
//! before is two or three lookups and 100 rows written, with no JSON read. A
//! block that changes is a new block with a new stamp: rows are never stale,
//! and the old ones are evicted in time. Bounded by bytes (an eighth of the
//! product cache's budget): kept as values, not as HTML, a row takes about a
//! fifth of the room, and the rows of a catalogue of 1,000,000 products fit.

mod template;

use crate::cache::Page;
use catalogue::block::{Block, Cached};
use catalogue::product::Product;
use handlebars::RenderError;
use moka::future::Cache as Moka;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::sync::Arc;

/// The rows cache's share of the product cache's budget.
const SHARE_OF_CACHE: u64 = 8;

#[derive(Clone)]
pub struct RowsCache {
    rows: Moka<u64, Arc<Rows>>,
}

/// What the rows of a block's products show, in id order.
struct Rows {
    /// Each row's name then its manufacturer, one row after the other.
    text: String,
    rows: Vec<Row>,
}

struct Row {
    id: i64,
    price: i64,
    /// Where its name and its manufacturer end in `text`; its name starts
    /// where the row before it ends.
    name_end: u32,
    end: u32,
}

impl Rows {
    /// The rows of a block's products, each read from its JSON.
    fn of(block: &Block) -> Self {
        let mut rows = Rows {
            text: String::new(),
            rows: Vec::with_capacity(block.len()),
        };
        for product in block.after(i64::MIN) {
            let row = ListRow::from_cached(&product);
            rows.text.push_str(&row.name);
            let name_end = rows.text.len();
            rows.text.push_str(&row.manufacturer);
            rows.rows.push(Row {
                id: row.id,
                price: row.price,
                name_end: offset(name_end),
                end: offset(rows.text.len()),
            });
        }
        rows
    }

    /// The row of `id`, if the block held it.
    fn get(&self, id: i64) -> Option<ListRow<'_>> {
        let at = self.rows.binary_search_by_key(&id, |row| row.id).ok()?;
        let start = at
            .checked_sub(1)
            .map_or(0, |before| self.rows[before].end as usize);
        let row = &self.rows[at];
        let name_end = row.name_end as usize;
        Some(ListRow::new(
            row.id,
            &self.text[start..name_end],
            row.price,
            &self.text[name_end..row.end as usize],
        ))
    }

    /// What it takes in memory, about.
    fn bytes(&self) -> usize {
        self.text.len() + self.rows.len() * std::mem::size_of::<Row>() + 64
    }
}

/// An offset in a block's text: 64 names and manufacturers, far below 4 GiB.
fn offset(at: usize) -> u32 {
    u32::try_from(at).expect("a block's names and manufacturers take less than 4 GiB")
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
            .weigher(|_, rows: &Arc<Rows>| u32::try_from(rows.bytes()).unwrap_or(u32::MAX))
            .build();
        Self { rows }
    }

    /// The rows of a page's products, in order.
    pub async fn page(&self, page: &Page) -> Result<String, RenderError> {
        let mut blocks = Vec::with_capacity(page.blocks.len());
        for block in &page.blocks {
            blocks.push(self.block(block).await);
        }
        let mut html = String::with_capacity(page.products.len() * 256);
        let mut blocks = blocks.iter().peekable();
        for product in &page.products {
            // The products are in the blocks' order: skip the blocks passed.
            while blocks
                .next_if(|rows| rows.get(product.id).is_none())
                .is_some()
            {}
            match blocks.peek().and_then(|rows| rows.get(product.id)) {
                Some(row) => row.render_into(&mut html)?,
                // Read from Postgres (no blocks): read from its JSON here.
                None => ListRow::from_cached(product).render_into(&mut html)?,
            }
        }
        Ok(html)
    }

    /// The rows of products not from the cache (a search's results).
    pub fn products(&self, products: &[Product]) -> Result<String, RenderError> {
        let mut html = String::new();
        for product in products {
            ListRow::from_product(product).render_into(&mut html)?;
        }
        Ok(html)
    }

    /// A block's rows: read once per version, by one reader.
    async fn block(&self, block: &Block) -> Arc<Rows> {
        self.rows
            .get_with(block.stamp(), async { Arc::new(Rows::of(block)) })
            .await
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
    async fn a_page_lists_its_products_rows_in_order_first_asked_and_again() {
        let rows = RowsCache::new(1 << 20);
        let mut blocks = vec![
            block(1..=63, "a"),
            block(64..=127, "a"),
            block(128..=191, "a"),
            block(192..=255, "a"),
        ];
        for round in 0..2 {
            // Pages that show blocks whole and in part, each asked for three
            // times (the rows read from the JSON, then kept).
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

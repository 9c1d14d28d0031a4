//! The rows of the list page, as HTML: each product's row is rendered from
//! `views/product_row.hbs`, a whole block at a time, and kept by the block's
//! stamp ([`Block::stamp`]), so a page of 100 rows is two or three lookups
//! and a copy, not 100 renderings. A block that changes is a new block with
//! a new stamp: rows are never stale, and the old ones are evicted in time.
//! Bounded by bytes (an eighth of the product cache's budget). A row is
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
}

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
        Self { rows }
    }

    /// The rows of a page's products, in order.
    pub async fn page(&self, page: &Page) -> Result<String, RenderError> {
        let mut blocks = Vec::with_capacity(page.blocks.len());
        for block in &page.blocks {
            blocks.push(self.block(block).await?);
        }
        let mut html = String::with_capacity(page.products.len() * 256);
        let mut blocks = blocks.iter().peekable();
        for product in &page.products {
            // The products are in the blocks' order: skip the blocks passed.
            while blocks
                .next_if(|rows| rows.of(product.id).is_none())
                .is_some()
            {}
            match blocks.peek().and_then(|rows| rows.of(product.id)) {
                Some(row) => html.push_str(row),
                // Read from Postgres (no blocks): rendered here.
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

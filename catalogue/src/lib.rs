//! The core of the products service: what a product is, what a message may
//! ask, and the shapes the other parts exchange and keep. No I/O and no web,
//! database or messaging crate: the compiler keeps every promise here that it
//! is pure (the root package's `catalogue_is_pure` test keeps it so).
//!
//! - what a valid message is, field by field: [`product`] (the wire format in
//!   `product/decode.rs`, each field's rules in `product/rules.rs`)
//! - what ingest and persistence exchange about a batch: [`batch`]
//! - what the change feed answers, and one version of one id: [`feed`]
//! - how the cache keeps products (blocks of 64 ids as served JSON): [`block`]
//! - which blocks hold products, for the list pages: [`index`]
//! - what a search asks for: [`filter`]; every product's searchable fields,
//!   in memory: [`search`]
//! - the change stream for programs and the live pages: positions, changes
//!   and one read of the history: [`history`]

pub mod batch;
pub mod block;
pub mod feed;
pub mod filter;
pub mod history;
pub mod index;
pub mod product;
pub mod search;

//! The actors of the products service, and the messages they exchange.
//!
//! ```text
//!                         supervisor
//!          (spawns, links, restarts within a budget)
//!        ┌───────────┬──────────┴─────┬────────────┐
//!   persistence    cache            http        ingest
//!    (SeaORM)      (moka)          (salvo)   (JetStream pull)
//! ```
//!
//! The life of one message: `ingest` pulls a batch from JetStream and decodes
//! each message ([`product::decode`]); it asks `persistence` to store the batch
//! in one transaction (`StoreBatch`), acks the messages once that has
//! committed, and sends the new versions to `cache` (`Put`). `http` answers a
//! product page from `cache` (`Get`, which reads through to `persistence` on a
//! miss) and the lists from `persistence` (`Page`).
//!
//! Where a change goes:
//! - what a valid message is: [`product`]
//! - SQL, upsert rules: [`persistence`] (queries in `persistence/store.rs`)
//! - caching, invalidation: [`cache`]
//! - routes, pages, JSON: [`http`] (templates in `views/` at the repo's top)
//! - consuming, acking, back-off: [`ingest`]
//! - restarts and shutdown order: [`supervisor`]

pub mod backoff;
pub mod cache;
pub mod call;
pub mod http;
pub mod ingest;
pub mod names;
pub mod nats_auth;
pub mod persistence;
pub mod product;
pub mod supervisor;

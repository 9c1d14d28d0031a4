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
//! each message ([`catalogue::product::decode`]); it asks `persistence` to
//! store the batch (`StoreBatch`, a [`catalogue::batch::Batch`]), which its
//! child the writer does in one transaction, setting invalid messages aside in
//! the same one. Once that has committed, the writer hands the new versions to
//! the cache ([`changes::Commits`]) and waits until they are served; then
//! ingest answers each message as the [`catalogue::batch::Outcome`] says (ack,
//! terminate, or redeliver later).
//! `http` reads the cached products directly ([`cache::ProductCache`], no
//! message on the hot path): a product, or a list page, from blocks of 64 ids
//! kept as the JSON the API serves; a block not cached is read through from
//! `persistence` (`Versions`).
//! It also streams the catalogue's changes, read from Postgres, to programs
//! and the open pages (`GET /products/changes`), and
//! its forms publish messages to the stream (never to Postgres).
//! Actors find each other by name ([`call::Peer`]); what they report about
//! themselves (`/readyz` reads it) is in [`health::Health`].
//!
//! What is pure (the product and its decoder, the batch and change-feed
//! contracts, the cache's blocks and index) is in the `catalogue` crate,
//! which knows no framework; this crate is everything that does I/O.
//!
//! Where a change goes:
//! - what a valid message is, a batch, the change feed's answer: `catalogue`
//! - connecting to NATS, the stream, publishing: [`jetstream`]
//! - SQL, upsert rules: [`persistence`] (queries in `persistence/store.rs`,
//!   the writer in `persistence/writer.rs`)
//! - caching, invalidation: [`cache`] (the shared handle in
//!   `cache/products.rs`; the blocks and the index in `catalogue`)
//! - routes, pages, JSON: [`http`] (templates in `views/` at the repo's top)
//! - consuming, acking, back-off: [`ingest`] (JetStream set-up and pulls in
//!   `ingest/source.rs`)
//! - restarts and shutdown order: [`supervisor`]
//! - any deadline that must agree with another: [`timeouts`]
//! - what `/metrics` shows, each name defined once: [`metrics`]

pub mod backoff;
pub mod cache;
pub mod call;
pub mod changes;
pub mod freshness;
pub mod health;
pub mod http;
pub mod ingest;
pub mod jetstream;
pub mod metrics;
pub mod names;
pub mod persistence;
pub mod secret;
pub mod supervisor;
pub mod timeouts;

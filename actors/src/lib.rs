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
//! (`StoreBatch`, a [`batch::Batch`]), which its child the writer does in one
//! transaction, setting invalid messages aside in the same one. Once that has
//! committed, ingest sends the new versions to `cache` (`Put`) and answers each
//! message as the [`batch::Outcome`] says (ack, terminate, or redeliver later).
//! `http` reads the cached products directly ([`cache::ProductCache`], no
//! message on the hot path): a product, or a list page, from blocks of 64 ids
//! kept as the JSON the API serves; a block not cached is read through from
//! `persistence` (`Versions`).
//! It also streams the cache's changes to the open pages (`GET /events`), and
//! its forms publish messages to the stream (never to Postgres).
//! Actors find each other by name ([`call::Peer`]); what they report about
//! themselves (`/readyz` reads it) is in [`health::Health`].
//!
//! Where a change goes:
//! - what a valid message is: [`product`]
//! - what ingest and persistence exchange about a batch: [`batch`]
//! - SQL, upsert rules: [`persistence`] (queries in `persistence/store.rs`,
//!   the writer in `persistence/writer.rs`)
//! - caching, invalidation: [`cache`] (the blocks in `cache/block.rs`, the
//!   shared handle in `cache/products.rs`)
//! - routes, pages, JSON: [`http`] (templates in `views/` at the repo's top)
//! - consuming, acking, back-off: [`ingest`] (JetStream set-up and pulls in
//!   `ingest/source.rs`)
//! - restarts and shutdown order: [`supervisor`]
//! - any deadline that must agree with another: [`timeouts`]
//! - what `/metrics` shows, each name defined once: [`metrics`]

pub mod backoff;
pub mod batch;
pub mod cache;
pub mod call;
pub mod changes;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod names;
pub mod nats_auth;
pub mod persistence;
pub mod product;
pub mod supervisor;
pub mod timeouts;

//! One part at a time, driven through its messages or its handle against the
//! real Postgres and NATS: the persistence, cache and ingest actors, the
//! supervisor, the change feed, the database's rules, the settings, and the
//! core crate's purity.

mod actors_cache;
mod actors_ingest;
mod actors_persistence;
mod cache_index;
mod catalogue_is_pure;
mod change_feed;
mod consumer_config;
mod database_rules;
mod deletion;
mod settings;
mod supervisor;

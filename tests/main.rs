//! Integration tests, one module per behaviour, all in one binary (one link).
//! Each test runs against the real Postgres (127.0.0.1:5432) and NATS with
//! JetStream (127.0.0.1:4222), in its own database and stream.

mod common;

mod actors_cache;
mod actors_ingest;
mod actors_persistence;
mod bad_input;
mod bench_smoke;
mod browser;
mod cache_index;
mod change_feed;
mod commands;
mod consumer_config;
mod database_rules;
mod deletion;
mod faults_kill;
mod faults_nats;
mod faults_postgres;
mod faults_slow_store;
mod http;
mod limits;
mod logs;
mod metrics;
mod openapi;
mod operators;
mod pipeline;
mod readiness;
mod scale_out;
mod settings;
mod smoke;
mod stream_recreated;
mod supervisor;
mod test_servers;
mod ui;

//! The whole service, as its users meet it: messages published to JetStream
//! and answers read over HTTP, the pages in a real browser, the commands,
//! the logs, the metrics and the OpenAPI description.

mod api_search;
mod bad_input;
mod bench_smoke;
mod browser;
mod changes;
mod commands;
mod cors;
mod freshness;
mod http;
mod limits;
mod logs;
mod metrics;
mod openapi;
mod operators;
mod pipeline;
mod prometheus;
mod readiness;
mod rejected_api;
mod replay;
mod smoke;
mod ui;

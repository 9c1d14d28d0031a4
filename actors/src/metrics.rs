//! The service's metrics, served on `GET /metrics` in Prometheus's text
//! format: every name is defined and described here, once, and recorded
//! through [`Metrics`].
//!
//! The `metrics` facade records into one recorder per process (a global one):
//! a Prometheus recorder installed on first use, without its HTTP listener
//! (the salvo route renders it). Several apps can run in one process (the
//! tests do), so every series carries the label `app` with the app's
//! instance name (`products` in production), and a test reads its own app's
//! series only. The label is not called `instance`: Prometheus sets that one
//! on every scraped series itself, and would rename ours.
//!
//! A [`Metrics`] is cheap to make from the app's [`Names`] wherever an actor
//! needs one: handles on the same series are shared, whoever registered them.

use crate::names::{Child, Names};
use metrics::{
    Counter, Gauge, Histogram, Unit, counter, describe_counter, describe_gauge, describe_histogram,
    gauge, histogram,
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

/// An HTTP series: the route's pattern, the method, the status.
type HttpSeries = (String, &'static str, u16);

pub const MESSAGES_CONSUMED: &str = "products_messages_consumed_total";
pub const MESSAGES_STORED: &str = "products_messages_stored_total";
pub const MESSAGES_SET_ASIDE: &str = "products_messages_set_aside_total";
pub const MESSAGES_REDELIVERED: &str = "products_messages_redelivered_total";
pub const MESSAGES_RETRIED: &str = "products_messages_retried_total";
pub const BATCH_SIZE: &str = "products_batch_size_messages";
pub const STORE_DURATION: &str = "products_store_duration_seconds";
pub const CONSUMER_PENDING: &str = "products_consumer_pending_messages";
pub const CONSUMER_ACK_PENDING: &str = "products_consumer_ack_pending_messages";
pub const CONSUMER_REDELIVERED: &str = "products_consumer_redelivered_messages";
pub const CACHE_HITS: &str = "products_cache_hits_total";
pub const CACHE_MISSES: &str = "products_cache_misses_total";
pub const CACHE_ENTRIES: &str = "products_cache_entries";
pub const CACHE_BYTES: &str = "products_cache_bytes";
pub const CACHE_INVALIDATIONS: &str = "products_cache_invalidations_total";
pub const CHANGE_FEED_LAG: &str = "products_change_feed_lag_seconds";
pub const CHANGE_FEED_CAUGHT_UP: &str = "products_change_feed_caught_up_timestamp_seconds";
pub const CHANGE_FEED_BLOCKS_REREAD: &str = "products_change_feed_blocks_reread_total";
pub const HTTP_REQUESTS: &str = "products_http_requests_total";
pub const HTTP_DURATION: &str = "products_http_request_duration_seconds";
pub const HTTP_PANICS: &str = "products_http_panics_total";
pub const PART_READY: &str = "products_part_ready";
pub const SHUTTING_DOWN: &str = "products_shutting_down";
pub const LIVE_FOLLOWERS: &str = "products_live_followers";
pub const LIVE_REFUSED: &str = "products_live_followers_refused_total";
pub const SIGN_IN_FAILURES: &str = "products_sign_in_failures_total";
pub const ACTOR_RESTARTS: &str = "products_actor_restarts_total";

/// The label every series carries: the app's instance name.
pub const APP: &str = "app";

/// Seconds: from a fast cache read (0.5 ms) to a store that waits on a slow
/// Postgres (the write deadline is 20 s).
const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0,
];
/// Messages in a batch: 1 to `INGEST_BATCH_SIZE`'s largest, 1000.
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
/// Histogram samples are folded into their buckets at every scrape; between
/// scrapes (or with no scraper at all) this bounds the samples kept.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// The process's Prometheus recorder, installed as the global one on first
/// use; what `/metrics` renders.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
            .and_then(|b| b.set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS))
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed: /metrics stays empty");
        }
        describe();
        // A thread, not a task: the first app's runtime may end before the
        // process does (each test has its own).
        let upkeep = handle.clone();
        let _ = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        handle
    })
}

fn describe() {
    describe_counter!(
        MESSAGES_CONSUMED,
        "Messages pulled from the stream (redeliveries included)."
    );
    describe_counter!(
        MESSAGES_STORED,
        "Messages acked after their batch committed (redeliveries of stored ones included)."
    );
    describe_counter!(
        MESSAGES_SET_ASIDE,
        "Messages kept in rejected_messages and terminated, by who refused them (reason: invalid, postgres)."
    );
    describe_counter!(
        MESSAGES_REDELIVERED,
        "Messages JetStream delivered more than once."
    );
    describe_counter!(
        MESSAGES_RETRIED,
        "Messages nak'ed to be delivered again later (their batch or they could not be stored)."
    );
    describe_histogram!(
        BATCH_SIZE,
        Unit::Count,
        "Messages per batch handed to persistence."
    );
    describe_histogram!(
        STORE_DURATION,
        Unit::Seconds,
        "From handing a batch to persistence to its answer (committed or failed)."
    );
    describe_gauge!(
        CONSUMER_PENDING,
        Unit::Count,
        "Messages of the stream the durable consumer has not delivered yet (sampled every 2 s)."
    );
    describe_gauge!(
        CONSUMER_ACK_PENDING,
        Unit::Count,
        "Messages delivered and not answered yet (sampled every 2 s)."
    );
    describe_gauge!(
        CONSUMER_REDELIVERED,
        Unit::Count,
        "Messages being retried: delivered more than once and not answered yet, on every replica (sampled every 2 s)."
    );
    describe_counter!(
        CACHE_HITS,
        "Block reads (64 ids a block) the cache answered from memory."
    );
    describe_counter!(CACHE_MISSES, "Block reads that went through to Postgres.");
    describe_gauge!(
        CACHE_ENTRIES,
        Unit::Count,
        "Products in the cache (at the scrape)."
    );
    describe_gauge!(
        CACHE_BYTES,
        Unit::Bytes,
        "What the cache's blocks weigh, in bytes (at the scrape)."
    );
    describe_counter!(
        CACHE_INVALIDATIONS,
        "Timed catch-ups of the cache with Postgres (CACHE_INVALIDATE_EVERY)."
    );
    describe_histogram!(
        CHANGE_FEED_LAG,
        Unit::Seconds,
        "Per catch-up that applied changes: Postgres's clock at the read less the newest change's updated_at, plus the time to apply it."
    );
    describe_gauge!(
        CHANGE_FEED_CAUGHT_UP,
        Unit::Seconds,
        "When this replica's cache last caught up with Postgres (Unix time): time() minus this is how far behind it may be."
    );
    describe_counter!(
        CHANGE_FEED_BLOCKS_REREAD,
        "Blocks the change feed read again whole because more changes came at once than one read takes (CACHE_CATCH_UP_MAX_ROWS)."
    );
    describe_counter!(
        HTTP_REQUESTS,
        "HTTP requests answered, by route pattern, method and status."
    );
    describe_histogram!(
        HTTP_DURATION,
        Unit::Seconds,
        "HTTP request latency, by route pattern, method and status."
    );
    describe_gauge!(
        PART_READY,
        "1 when a part can do its job, by part (postgres: the last store; nats: connected with a consumer; cache: rebuilt; change_feed: caught up), read at the scrape."
    );
    describe_gauge!(
        SHUTTING_DOWN,
        "1 from the stop signal on: /readyz answers 503 while requests drain."
    );
    describe_counter!(
        HTTP_PANICS,
        "Requests whose handler panicked (each answered with a 500 and logged with its request id)."
    );
    describe_gauge!(
        LIVE_FOLLOWERS,
        Unit::Count,
        "Change streams (GET /products/changes, the live pages' included) and snapshots (GET /products.ndjson) open now."
    );
    describe_counter!(
        LIVE_REFUSED,
        "Change streams and snapshots refused with a 503 because EVENTS_MAX_FOLLOWERS were open."
    );
    describe_counter!(
        SIGN_IN_FAILURES,
        "Sign-ins refused for a wrong name or password (or slowed away after too many)."
    );
    describe_counter!(
        ACTOR_RESTARTS,
        "Actors the supervisor restarted after they failed or stopped, by actor."
    );
}

/// One app's handles. Clones share them.
#[derive(Clone)]
pub struct Metrics {
    app: String,
    /// The HTTP series' handles, by route, method and status.
    http: Arc<RwLock<HashMap<HttpSeries, (Counter, Histogram)>>>,
    pub consumed: Counter,
    pub stored: Counter,
    pub set_aside_invalid: Counter,
    pub set_aside_by_postgres: Counter,
    pub redelivered: Counter,
    pub retried: Counter,
    pub batch_size: Histogram,
    pub store_duration: Histogram,
    pub consumer_pending: Gauge,
    pub consumer_ack_pending: Gauge,
    pub consumer_redelivered: Gauge,
    pub cache_hits: Counter,
    pub cache_misses: Counter,
    pub cache_entries: Gauge,
    pub cache_bytes: Gauge,
    pub cache_invalidations: Counter,
    pub change_feed_lag: Histogram,
    pub change_feed_caught_up: Gauge,
    pub change_feed_blocks_reread: Counter,
    pub http_panics: Counter,
    pub live_followers: Gauge,
    pub live_refused: Counter,
    pub sign_in_failures: Counter,
}

impl Metrics {
    /// The handles of `names`'s app; the recorder is installed first if need
    /// be (a handle made before that would record nothing). Registering them
    /// makes every counter show as 0 from the start.
    pub fn new(names: &Names) -> Self {
        handle();
        let app = names.instance().to_owned();
        for child in Child::ALL {
            counter!(ACTOR_RESTARTS, APP => app.clone(), "actor" => child.as_str()).increment(0);
        }
        let a = || [(APP, app.clone())];
        Self {
            consumed: counter!(MESSAGES_CONSUMED, &a()),
            stored: counter!(MESSAGES_STORED, &a()),
            set_aside_invalid: counter!(MESSAGES_SET_ASIDE, APP => app.clone(), "reason" => "invalid"),
            set_aside_by_postgres: counter!(MESSAGES_SET_ASIDE, APP => app.clone(), "reason" => "postgres"),
            redelivered: counter!(MESSAGES_REDELIVERED, &a()),
            retried: counter!(MESSAGES_RETRIED, &a()),
            batch_size: histogram!(BATCH_SIZE, &a()),
            store_duration: histogram!(STORE_DURATION, &a()),
            consumer_pending: gauge!(CONSUMER_PENDING, &a()),
            consumer_ack_pending: gauge!(CONSUMER_ACK_PENDING, &a()),
            consumer_redelivered: gauge!(CONSUMER_REDELIVERED, &a()),
            cache_hits: counter!(CACHE_HITS, &a()),
            cache_misses: counter!(CACHE_MISSES, &a()),
            cache_entries: gauge!(CACHE_ENTRIES, &a()),
            cache_bytes: gauge!(CACHE_BYTES, &a()),
            cache_invalidations: counter!(CACHE_INVALIDATIONS, &a()),
            change_feed_lag: histogram!(CHANGE_FEED_LAG, &a()),
            change_feed_caught_up: gauge!(CHANGE_FEED_CAUGHT_UP, &a()),
            change_feed_blocks_reread: counter!(CHANGE_FEED_BLOCKS_REREAD, &a()),
            http_panics: counter!(HTTP_PANICS, &a()),
            live_followers: gauge!(LIVE_FOLLOWERS, &a()),
            live_refused: counter!(LIVE_REFUSED, &a()),
            sign_in_failures: counter!(SIGN_IN_FAILURES, &a()),
            http: Arc::default(),
            app,
        }
    }

    /// One HTTP request answered. `route` is the router's pattern (never the
    /// raw path), so the series stay few.
    ///
    /// The handles of each series are made once and kept (the series are
    /// few: routes, methods and statuses), so that a request does not build
    /// and hash its labels again in the registry.
    pub fn http_request(&self, route: String, method: &'static str, status: u16, took: Duration) {
        let key = (route, method, status);
        let known = self
            .http
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        let (requests, duration) = known.unwrap_or_else(|| {
            let labels = [
                (APP, self.app.clone()),
                ("route", key.0.clone()),
                ("method", method.to_owned()),
                ("status", status.to_string()),
            ];
            let handles = (
                counter!(HTTP_REQUESTS, &labels),
                histogram!(HTTP_DURATION, &labels),
            );
            self.http
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, handles.clone());
            handles
        });
        requests.increment(1);
        duration.record(took);
    }

    /// Whether `part` can do its job now (set at each scrape).
    pub fn part_ready(&self, part: &'static str, ready: bool) {
        gauge!(PART_READY, APP => self.app.clone(), "part" => part).set(if ready {
            1.0
        } else {
            0.0
        });
    }

    /// Whether the service is shutting down (set at each scrape).
    pub fn shutting_down(&self, yes: bool) {
        gauge!(SHUTTING_DOWN, APP => self.app.clone()).set(if yes { 1.0 } else { 0.0 });
    }

    /// The supervisor restarted `child`.
    pub fn actor_restarted(&self, child: Child) {
        counter!(ACTOR_RESTARTS, APP => self.app.clone(), "actor" => child.as_str()).increment(1);
    }
}

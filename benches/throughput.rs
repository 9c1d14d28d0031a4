//! Throughput, each figure beside a baseline measured in the same run:
//!
//! - ingest: a backlog of generated products, from JetStream to Postgres and
//!   the cache, in messages a second: first id-less products (inserts), then
//!   an update by id of each of them (upserts of existing rows). The baseline
//!   of each is the same backlog pulled and acked by a bare consumer that
//!   stores nothing (what NATS alone allows). Every clock stops at the same
//!   condition: the consumer's ack floor, as the server sees it, reaches the
//!   backlog's last message.
//! - reads: `GET /products/{id}` from the cache, in requests a second; the
//!   baseline is `GET /healthz`, which asks no actor.
//!
//! Run: `cargo bench --bench throughput` (needs the Postgres and NATS of
//! `scripts/services`). `BENCH_MESSAGES` sets the backlog (default 50000);
//! `BENCH_PG_SOCKET=/var/run/postgresql` reaches Postgres over its Unix socket
//! instead of TCP. The HTTP load comes from this same process, on the same cores.
//! The cache's periodic invalidation is pushed an hour away, so that no read
//! goes to Postgres because a timer fired during the run.

use actors::supervisor::RestartBudget;
use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use products::App;
use products::produce::Source;
use products::settings::Settings;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const HTTP_CLIENTS: usize = 32;
const HTTP_SECONDS: u64 = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let messages: u64 = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50_000);
    let settings = bench_settings();
    let result = run(&settings, messages).await;
    products::database::drop_database(&settings.database_url).await?;
    let client = async_nats::connect(settings.nats_url.expose()).await?;
    let _ = jetstream::new(client)
        .delete_stream(&settings.nats_stream)
        .await;
    result
}

async fn run(settings: &Settings, messages: u64) -> anyhow::Result<()> {
    products::produce::run(settings, Source::Generated(messages)).await?;
    let client = async_nats::connect(settings.nats_url.expose()).await?;
    let js = jetstream::new(client.clone());
    let stream = js.get_stream(&settings.nats_stream).await?;

    // Inserts: the id-less backlog, from the app's start.
    let baseline = bare_consumer(&client, &stream, "bench-inserts", 1, messages).await?;
    let app = App::start(settings, "bench", RestartBudget::default()).await?;
    let started = Instant::now();
    let mut consumer: jetstream::consumer::PullConsumer = loop {
        if let Ok(consumer) = stream.get_consumer(&settings.nats_durable).await {
            break consumer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    acked_up_to(&mut consumer, messages).await?;
    let inserts = started.elapsed();
    app.shutdown().await?;

    // Upserts: an update by id of every product stored above, published while
    // the app is stopped and timed from its next start.
    let updates = updates_file(messages)?;
    let published = products::produce::run(settings, Source::File(updates.clone())).await;
    let _ = std::fs::remove_file(&updates);
    published?;
    let last = 2 * messages;
    let upsert_baseline =
        bare_consumer(&client, &stream, "bench-upserts", messages + 1, last).await?;
    let app = App::start(settings, "bench", RestartBudget::default()).await?;
    let started = Instant::now();
    acked_up_to(&mut consumer, last).await?;
    let upserts = started.elapsed();

    println!(
        "ingest (batches of {}), Postgres at {}:",
        settings.ingest_batch_size,
        settings.database_url_redacted()
    );
    println!("  {messages} id-less products (inserts):");
    report(
        "bare consumer, pull + ack, no store (baseline)",
        messages,
        baseline,
    );
    report(
        "products: decode, store in Postgres, cache, ack",
        messages,
        inserts,
    );
    println!("  {messages} updates by id of those products (upserts):");
    report(
        "bare consumer, pull + ack, no store (baseline)",
        messages,
        upsert_baseline,
    );
    report(
        "products: decode, store in Postgres, cache, ack",
        messages,
        upserts,
    );

    let base = format!("http://{}", app.http_addr());
    let healthz = http_load(&base, |_| "/healthz".to_owned()).await?;
    let products = http_load(&base, move |i| format!("/products/{}", 1 + i % messages)).await?;
    println!("reads, {HTTP_CLIENTS} clients for {HTTP_SECONDS} s each:");
    report(
        "GET /healthz, no actor asked (baseline)",
        healthz,
        secs(HTTP_SECONDS),
    );
    report(
        "GET /products/{id}, from the cache",
        products,
        secs(HTTP_SECONDS),
    );
    app.shutdown().await
}

/// Waits until the server has the consumer's acks up to `last`.
async fn acked_up_to(
    consumer: &mut jetstream::consumer::PullConsumer,
    last: u64,
) -> anyhow::Result<()> {
    loop {
        let info = consumer.info().await?;
        if info.ack_floor.stream_sequence >= last {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A file of `count` updates, one per id from 1, for `produce --file`.
fn updates_file(count: u64) -> anyhow::Result<std::path::PathBuf> {
    let updates: Vec<serde_json::Value> = (1..=count)
        .map(|id| {
            serde_json::json!({
                "id": id, "name": format!("product {id}"), "price": id % 10_000 + 1,
                "manufacturer": "generator", "description": "updated"
            })
        })
        .collect();
    let path = std::env::temp_dir().join(format!("products-bench-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&path, serde_json::to_vec(&updates)?)?;
    Ok(path)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn report(what: &str, count: u64, took: Duration) {
    println!(
        "  {what:<50} {count:>8} in {:>6.2} s = {:>8.0} /s",
        took.as_secs_f64(),
        count as f64 / took.as_secs_f64()
    );
}

/// Pulls and acks the stream from `first` to `last` on a durable of its own,
/// storing nothing; the clock stops when the server has every ack.
async fn bare_consumer(
    client: &async_nats::Client,
    stream: &jetstream::stream::Stream,
    name: &str,
    first: u64,
    last: u64,
) -> anyhow::Result<Duration> {
    let mut consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(name.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence {
                start_sequence: first,
            },
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut acked = 0;
    while acked < last - first + 1 {
        let mut batch = consumer
            .fetch()
            .max_messages(500)
            .messages()
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        while let Some(message) = batch.next().await {
            let message = message.map_err(|e| anyhow::anyhow!(e))?;
            message.ack().await.map_err(|e| anyhow::anyhow!(e))?;
            acked += 1;
        }
    }
    // Acks are buffered by the client: sent, then seen by the server.
    client.flush().await?;
    acked_up_to(&mut consumer, last).await?;
    Ok(started.elapsed())
}

/// Requests from `HTTP_CLIENTS` clients for `HTTP_SECONDS`; every answer must be 200.
async fn http_load(
    base: &str,
    path: impl Fn(u64) -> String + Send + Sync + 'static,
) -> anyhow::Result<u64> {
    let done = Arc::new(AtomicU64::new(0));
    let path = Arc::new(path);
    let until = Instant::now() + secs(HTTP_SECONDS);
    let mut clients = Vec::new();
    for client in 0..HTTP_CLIENTS {
        let (done, path, base) = (done.clone(), path.clone(), base.to_owned());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut i = client as u64;
            while Instant::now() < until {
                let response = http.get(format!("{base}{}", path(i))).send().await?;
                anyhow::ensure!(
                    response.status() == 200,
                    "{} answered {}",
                    path(i),
                    response.status()
                );
                response.bytes().await?;
                done.fetch_add(1, Ordering::Relaxed);
                i += HTTP_CLIENTS as u64;
            }
            Ok(())
        }));
    }
    for client in clients {
        client.await.context("a client panicked")??;
    }
    Ok(done.load(Ordering::Relaxed))
}

fn bench_settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut settings = Settings::defaults();
    settings.database_url = match std::env::var("BENCH_PG_SOCKET") {
        Ok(dir) => format!("postgres://postgres@localhost/products_bench_{id}?host={dir}"),
        Err(_) => format!("postgres://postgres@127.0.0.1:5432/products_bench_{id}"),
    }
    .into();
    settings.nats_url = "nats://127.0.0.1:4222".into();
    settings.http_addr = "127.0.0.1:0".parse().unwrap();
    settings.nats_stream = format!("BENCH_{id}");
    settings.nats_stream_subjects = vec![format!("bench_{id}.>")];
    settings.nats_subject = format!("bench_{id}.products");
    settings.nats_durable = format!("bench_{id}");
    settings.cache_invalidate_every = Duration::from_secs(3600);
    settings
}

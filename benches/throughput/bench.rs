//! The benchmark, shared by `cargo bench --bench throughput` and its smoke test.
//!
//! One run, on one machine, each figure beside its baseline from that run:
//!
//! 1. **Raw batched upsert**, the ceiling Postgres sets: the same rows as the
//!    all-new backlog upserted into a bare table (`products`' columns and
//!    defaults, the primary key only: the physical cost of storing them) and
//!    into a table with `products`' indexes too (what the schema adds), each
//!    by `psql` (100 rows a statement, one TCP connection, each statement its
//!    own transaction) and by a bare sqlx loop (`UNNEST` of arrays, batches
//!    of `INGEST_BATCH_SIZE`, a transaction each, one connection).
//! 2. **Bare pull + ack**, the ceiling NATS sets: the backlog pulled and acked
//!    by a consumer that stores nothing.
//! 3. **Ingest, all new**: a backlog of `messages` products with ids,
//!    published while the service is stopped, drained from its start (the
//!    clock starts before `App::start`) until every message is acked; then
//!    checked: every id stored.
//! 4. **Ingest, many updates per id**: `versions` versions of `ids` ids, one
//!    version of every id after the other (so that no batch holds two versions
//!    of one id), drained by a restarted service; checked: every id at its
//!    last version.
//! 5. **Scale-out**: another all-new backlog of `messages` drained by
//!    [`REPLICAS`] replicas on the one durable; checked: every id stored.
//! 6. **Freshness**: two replicas, once both are ready (caches rebuilt);
//!    products are published at half the all-new rate for
//!    `freshness_seconds`; for one message in each 10 ms, the time from its
//!    publish ack until `GET /products/{id}` serves it on both replicas,
//!    with the Postgres checkpoints counted meanwhile. Measured twice:
//!    polling each replica every millisecond (the polls load the machine
//!    too: a dozen samples waiting make some 20,000 requests a second), then
//!    with one request a replica that asks the API's freshness contract to
//!    wait (`?min_seq=<the ack's sequence>&wait=5s`, checked to answer the
//!    published price or a later one), and the same one sample at a time
//!    (a program reading its own write while nobody else waits).
//!
//! Reads are measured by `cargo bench --bench read_model`, beside a bare
//! server, with a load generator in a process of its own.

use actors::supervisor::RestartBudget;
use anyhow::{Context, bail, ensure};
use async_nats::jetstream::{self, consumer::pull, stream::Stream};
use futures::StreamExt;
use products::App;
use products::settings::Settings;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgConnection};
use sea_orm::sqlx::{self, Connection};
use std::time::{Duration, Instant};

/// The sizes of one run.
pub struct Plan {
    /// The all-new backlog.
    pub messages: u64,
    /// The backlog of updates: `versions` messages for each of `ids` ids.
    pub ids: u64,
    pub versions: u64,
    pub freshness_seconds: u64,
    /// A Unix socket directory to reach Postgres by, instead of TCP.
    pub pg_socket: Option<String>,
    /// `INGEST_BATCH_SIZE` for the service and the bare loops (none: the default).
    pub batch_size: Option<u16>,
}

/// Ids of the updated products start above this, apart from the all-new ones.
const UPDATED_IDS: i64 = 10_000_000;
/// Rows per statement for `psql`, as the issue measured it.
const PSQL_ROWS: usize = 100;

/// The replicas of the scale-out drain, and of freshness (where each sample
/// waits until every replica serves it).
pub const REPLICAS: usize = 3;
const FRESHNESS_REPLICAS: usize = 2;
/// Ids of the scale-out backlog start above this.
const SCALE_OUT_IDS: i64 = 20_000_000;

/// The raw batched upsert of the all-new backlog's rows into one table.
pub struct Baseline {
    pub table: Table,
    /// By `psql`, [`PSQL_ROWS`] rows a statement; `None` without `psql`.
    pub psql: Option<Rate>,
    /// By a bare sqlx loop, the service's statement shape.
    pub sqlx: Rate,
}

/// A count of things done in a time.
#[derive(Clone, Copy)]
pub struct Rate {
    pub count: u64,
    pub took: Duration,
}

impl Rate {
    pub fn per_second(&self) -> f64 {
        self.count as f64 / self.took.as_secs_f64()
    }
}

pub struct Freshness {
    pub asking: Asking,
    pub published_per_second: f64,
    pub samples: Vec<Duration>,
    /// Postgres checkpoints (by anyone: a `CREATE` or `DROP DATABASE` forces
    /// one) while it was measured; each can hold commits up for a while.
    pub checkpoints: i64,
}

/// How a freshness sample asks each replica whether it serves a write.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Asking {
    /// `GET /products/{id}` every millisecond until it answers the write.
    Polling,
    /// One `GET /products/{id}?min_seq=<the ack's sequence>&wait=5s`.
    MinSeq,
    /// The same, one sample at a time (a program that reads its own write
    /// while nobody else waits): a message is sampled only once the sample
    /// before has been answered by both replicas.
    MinSeqAlone,
}

impl Freshness {
    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.samples.clone();
        sorted.sort();
        let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
        sorted[rank.clamp(1, sorted.len()) - 1]
    }
}

/// What one run measured.
pub struct Report {
    pub machine: String,
    pub database: String,
    pub batch_size: u16,
    /// The same rows into a table with `products`' columns and nothing else.
    pub bare: Baseline,
    /// The same rows into a table with `products`' indexes too.
    pub indexed: Baseline,
    pub pull_ack: Rate,
    pub ingest_new: Rate,
    pub ingest_updates: Rate,
    /// An all-new backlog as large as the first, drained by [`REPLICAS`]
    /// replicas on one durable.
    pub scale_out: Rate,
    /// Freshness by polling, then by asking to wait, then by asking to
    /// wait one sample at a time.
    pub freshness: [Freshness; 3],
}

/// Runs the whole benchmark in a database and stream of its own, removed
/// afterwards whatever happens.
pub async fn run(plan: &Plan) -> anyhow::Result<Report> {
    let settings = settings(plan);
    let result = measure(plan, &settings).await;
    let dropped = products::database::drop_database(&settings.database.url).await;
    let client = async_nats::connect(settings.nats.url.expose()).await?;
    let _ = jetstream::new(client)
        .delete_stream(&settings.nats.stream)
        .await;
    let report = result?;
    dropped?;
    Ok(report)
}

async fn measure(plan: &Plan, settings: &Settings) -> anyhow::Result<Report> {
    products::database::prepare(&settings.database.url).await?;
    let client = async_nats::connect(settings.nats.url.expose()).await?;
    let nats_version = client.server_info().version.clone();
    let js = jetstream::new(client.clone());
    let mut stream = js.get_or_create_stream(settings.stream().config()).await?;
    let batch = usize::from(settings.ingest.batch_size);

    // Baselines: Postgres alone, then NATS alone.
    let options: PgConnectOptions = settings.database.url.expose().parse()?;
    let mut pg = PgConnection::connect_with(&options).await?;
    let pg_version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(&mut pg)
        .await?;
    let rows: Vec<i64> = (1..=plan.messages as i64).collect();
    let mut baselines = Vec::new();
    for table in [Table::Bare, Table::Indexed] {
        baselines.push(Baseline {
            table,
            psql: psql_upsert(settings.database.url.expose(), &mut pg, table, &rows).await?,
            sqlx: raw_upsert(&mut pg, table, &rows, batch).await?,
        });
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP TABLE {}", table.name())))
            .execute(&mut pg)
            .await?;
    }
    let [bare, indexed] =
        <[Baseline; 2]>::try_from(baselines).map_err(|_| anyhow::anyhow!("two baselines"))?;

    let new = (1..=plan.messages as i64).map(|id| payload(id, id % 10_000));
    publish_all(&js, &settings.nats.subject, new).await?;
    let pull_ack = bare_consumer(&stream, plan.messages).await?;

    // The service: the all-new backlog from its start.
    let ingest_new = drain(settings, &stream, 1, plan.messages, plan.messages).await?;
    ensure_stored(&mut pg, 0, plan.messages, "one replica").await?;

    // Many updates per id, drained by a restarted service.
    let updates = plan.ids * plan.versions;
    // One version after the other: publishes in flight may land in any
    // order, and the last version must be the newest in the stream.
    for version in 1..=plan.versions as i64 {
        let round = (1..=plan.ids as i64).map(|i| payload(UPDATED_IDS + i, version));
        publish_all(&js, &settings.nats.subject, round).await?;
    }
    let ingest_updates = drain(settings, &stream, 1, updates, plan.messages + updates).await?;
    let newest: i64 =
        sqlx::query_scalar("SELECT count(*) FROM products WHERE id > $1 AND price = $2")
            .bind(UPDATED_IDS)
            .bind(plan.versions as i64)
            .fetch_one(&mut pg)
            .await?;
    ensure!(
        newest == plan.ids as i64,
        "{newest} of {} updated products at their last version",
        plan.ids
    );

    // Scale-out: a backlog as large as the first, drained by three replicas
    // (into a table that holds more rows by then).
    let scaled = (1..=plan.messages as i64).map(|i| payload(SCALE_OUT_IDS + i, i % 10_000));
    publish_all(&js, &settings.nats.subject, scaled).await?;
    let last_seq = plan.messages * 2 + updates;
    let scale_out = drain(settings, &stream, REPLICAS, plan.messages, last_seq).await?;
    ensure_stored(&mut pg, SCALE_OUT_IDS, plan.messages, "three replicas").await?;

    // Freshness, with two replicas running.
    let mut apps = Vec::new();
    for replica in 0..FRESHNESS_REPLICAS {
        apps.push(
            App::start(
                settings,
                &format!("bench-{replica}"),
                RestartBudget::default(),
            )
            .await?,
        );
    }
    let bases: Vec<String> = apps
        .iter()
        .map(|app| format!("http://{}", app.http_addr()))
        .collect();
    // Steady state: the caches have rebuilt themselves from Postgres (`/readyz`).
    for base in &bases {
        ready(base).await?;
    }
    let rate = (ingest_new.per_second() / 2.0).max(100.0);
    let mut measured = Vec::new();
    for asking in [Asking::Polling, Asking::MinSeq, Asking::MinSeqAlone] {
        let measuring = Measuring {
            js: &js,
            client: &client,
            subject: &settings.nats.subject,
            bases: &bases,
            plan,
            rate,
            asking,
        };
        measured.push(measuring.freshness(&mut stream, &mut pg).await);
    }
    for app in apps {
        app.shutdown().await?;
    }

    Ok(Report {
        machine: format!(
            "{}; Postgres {pg_version}; nats-server {nats_version}",
            machine()
        ),
        database: settings.database_url_redacted(),
        batch_size: settings.ingest.batch_size,
        bare,
        indexed,
        pull_ack,
        ingest_new,
        ingest_updates,
        scale_out,
        freshness: measured
            .into_iter()
            .collect::<anyhow::Result<Vec<_>>>()?
            .try_into()
            .map_err(|_| anyhow::anyhow!("three freshness runs"))?,
    })
}

/// Checks that every one of the `count` products with ids after `after` was
/// stored (drained by `by`).
async fn ensure_stored(
    pg: &mut PgConnection,
    after: i64,
    count: u64,
    by: &str,
) -> anyhow::Result<()> {
    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM products WHERE id > $1 AND id <= $2")
            .bind(after)
            .bind(after + count as i64)
            .fetch_one(&mut *pg)
            .await?;
    ensure!(
        stored == count as i64,
        "{stored} of {count} products stored by {by}"
    );
    Ok(())
}

/// A product message with an id; `price` marks its version.
fn payload(id: i64, price: i64) -> String {
    format!(r#"{{"id":{id},"name":"product {id}","price":{price},"manufacturer":"generator"}}"#)
}

async fn publish_all(
    js: &jetstream::Context,
    subject: &str,
    payloads: impl Iterator<Item = String>,
) -> anyhow::Result<()> {
    let failures = futures::stream::iter(payloads)
        .map(|payload| async move {
            js.publish(subject.to_owned(), payload.into())
                .await?
                .await?;
            anyhow::Ok(())
        })
        .buffer_unordered(256)
        .filter(|result| std::future::ready(result.is_err()))
        .count()
        .await;
    ensure!(failures == 0, "{failures} publishes failed");
    Ok(())
}

/// Starts `replicas` replicas of the service (one durable) and waits until
/// the consumer has acked up to `last_seq`; the time includes the starts.
/// Stops them afterwards.
async fn drain(
    settings: &Settings,
    stream: &Stream,
    replicas: usize,
    messages: u64,
    last_seq: u64,
) -> anyhow::Result<Rate> {
    let started = Instant::now();
    let names: Vec<String> = (0..replicas).map(|r| format!("bench-{r}")).collect();
    let starts = names
        .iter()
        .map(|name| App::start(settings, name, RestartBudget::default()));
    let apps = futures::future::try_join_all(starts).await?;
    let deadline = started + Duration::from_secs(600);
    loop {
        if let Ok(mut consumer) = stream
            .get_consumer::<pull::Config>(&settings.nats.durable)
            .await
            && consumer.info().await?.ack_floor.stream_sequence >= last_seq
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the backlog was not drained within 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    for app in apps {
        app.shutdown().await?;
    }
    Ok(Rate {
        count: messages,
        took,
    })
}

/// Pulls and acks the whole backlog on a durable of its own, storing nothing.
async fn bare_consumer(stream: &Stream, messages: u64) -> anyhow::Result<Rate> {
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some("bench-baseline".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await?;
    let started = Instant::now();
    let mut acked = 0;
    while acked < messages {
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
    let took = started.elapsed();
    stream.delete_consumer("bench-baseline").await?;
    Ok(Rate {
        count: messages,
        took,
    })
}

/// The tables the baselines write to: `products`' columns and defaults,
/// with no trigger. Their names are constants, the only text the SQL built
/// here takes (`AssertSqlSafe`).
#[derive(Clone, Copy)]
pub enum Table {
    /// The primary key only: the physical cost of storing the rows.
    Bare,
    /// `products`' own indexes too (the two trigram indexes for search, the
    /// change stream's): what the schema adds.
    Indexed,
}

impl Table {
    fn name(self) -> &'static str {
        match self {
            Table::Bare => "bare_products",
            Table::Indexed => "raw_products",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Table::Bare => "a bare table (primary key only)",
            Table::Indexed => "a table with `products`' indexes",
        }
    }

    /// Creates the table if need be, empty.
    async fn fresh(self, pg: &mut PgConnection) -> anyhow::Result<()> {
        let create = match self {
            Table::Bare => {
                "CREATE TABLE IF NOT EXISTS bare_products \
                 (LIKE products INCLUDING DEFAULTS, PRIMARY KEY (id))"
            }
            Table::Indexed => {
                "CREATE TABLE IF NOT EXISTS raw_products (LIKE products INCLUDING ALL)"
            }
        };
        sqlx::query(create).execute(&mut *pg).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("TRUNCATE {}", self.name())))
            .execute(&mut *pg)
            .await?;
        Ok(())
    }
}

/// The service's upsert (`persistence/store.rs`), less what only the service
/// has: `RETURNING`, the operator, deletions.
fn raw_upsert_sql(table: Table) -> String {
    let table = table.name();
    format!(
        "INSERT INTO {table} \
            (id, name, price, manufacturer, description, attributes, stream, stream_seq) \
        SELECT u.id, u.name, u.price, u.manufacturer, NULL, u.attributes, $6, u.id \
        FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::jsonb[]) \
             AS u(id, name, price, manufacturer, attributes) \
        ON CONFLICT (id) DO UPDATE SET \
            name = excluded.name, price = excluded.price, manufacturer = excluded.manufacturer, \
            description = excluded.description, attributes = excluded.attributes, \
            stream = excluded.stream, stream_seq = excluded.stream_seq, \
            updated_at = excluded.updated_at \
        WHERE {table}.stream <> excluded.stream OR {table}.stream_seq < excluded.stream_seq"
    )
}

/// The rows of `ids` upserted by a bare sqlx loop, a transaction per batch.
async fn raw_upsert(
    pg: &mut PgConnection,
    table: Table,
    ids: &[i64],
    batch: usize,
) -> anyhow::Result<Rate> {
    table.fresh(pg).await?;
    let sql = raw_upsert_sql(table);
    let started = Instant::now();
    for chunk in ids.chunks(batch) {
        let mut txn = pg.begin().await?;
        sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
            .bind(chunk)
            .bind(
                chunk
                    .iter()
                    .map(|id| format!("product {id}"))
                    .collect::<Vec<_>>(),
            )
            .bind(chunk.iter().map(|id| id % 10_000).collect::<Vec<_>>())
            .bind(vec!["generator"; chunk.len()])
            .bind(vec![serde_json::json!({}); chunk.len()])
            .bind("bench")
            .execute(&mut *txn)
            .await?;
        txn.commit().await?;
    }
    Ok(Rate {
        count: ids.len() as u64,
        took: started.elapsed(),
    })
}

/// The rows of `ids` upserted by `psql`, [`PSQL_ROWS`] a statement; `None`
/// when there is no `psql` to run.
async fn psql_upsert(
    database_url: &str,
    pg: &mut PgConnection,
    table: Table,
    ids: &[i64],
) -> anyhow::Result<Option<Rate>> {
    use tokio::io::AsyncWriteExt;
    table.fresh(pg).await?;
    let name = table.name();
    let mut script = String::new();
    for chunk in ids.chunks(PSQL_ROWS) {
        script.push_str(&format!(
            "INSERT INTO {name} (id, name, price, manufacturer, attributes, stream, stream_seq) VALUES ",
        ));
        for (i, id) in chunk.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            script.push_str(&format!(
                "{sep}({id},'product {id}',{},'generator','{{}}','bench',{id})",
                id % 10_000
            ));
        }
        script.push_str(&format!(
            " ON CONFLICT (id) DO UPDATE SET name = excluded.name, price = excluded.price, \
             manufacturer = excluded.manufacturer, description = excluded.description, \
             attributes = excluded.attributes, stream = excluded.stream, \
             stream_seq = excluded.stream_seq, updated_at = excluded.updated_at \
             WHERE {name}.stream <> excluded.stream OR {name}.stream_seq < excluded.stream_seq;\n",
        ));
    }
    let started = Instant::now();
    let child = tokio::process::Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            database_url,
            "-f",
            "-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error).context("cannot run psql"),
    };
    let mut stdin = child.stdin.take().context("psql's stdin")?;
    stdin.write_all(script.as_bytes()).await?;
    drop(stdin);
    let status = child.wait().await?;
    let took = started.elapsed();
    ensure!(status.success(), "psql failed: {status}");
    Ok(Some(Rate {
        count: ids.len() as u64,
        took,
    }))
}

/// One freshness measurement's settings.
struct Measuring<'a> {
    js: &'a jetstream::Context,
    client: &'a async_nats::Client,
    subject: &'a str,
    bases: &'a [String],
    plan: &'a Plan,
    rate: f64,
    asking: Asking,
}

impl Measuring<'_> {
    /// Publishes updates of the updated ids at `rate` a second for
    /// `freshness_seconds`; for the first message of every 10 ms, measures
    /// from its publish ack until every replica serves it. The other
    /// messages go out as plain NATS publishes (the stream takes them all
    /// the same; its message count is checked at the end), so that the
    /// publisher, on the same cores, costs little. Counts the Postgres
    /// checkpoints meanwhile.
    async fn freshness(
        &self,
        stream: &mut Stream,
        pg: &mut PgConnection,
    ) -> anyhow::Result<Freshness> {
        const TICK: Duration = Duration::from_millis(10);
        let checkpoints = "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter";
        let checkpoints_before: i64 = sqlx::query_scalar(checkpoints).fetch_one(&mut *pg).await?;
        let per_tick = ((self.rate * TICK.as_secs_f64()).round() as u64).max(1);
        let ticks = self.plan.freshness_seconds * 100;
        let before = stream.info().await?.state.messages;
        let http = reqwest::Client::new();
        let mut samples = Vec::new();
        let mut ticker = tokio::time::interval(TICK);
        let started = Instant::now();
        let mut k = 0u64;
        for _ in 0..ticks {
            ticker.tick().await;
            for j in 0..per_tick {
                k += 1;
                let id = UPDATED_IDS + 1 + (k % self.plan.ids.max(1)) as i64;
                let price = 1_000_000 + k as i64;
                let alone_busy = self.asking == Asking::MinSeqAlone
                    && samples
                        .last()
                        .is_some_and(|last: &tokio::task::JoinHandle<_>| !last.is_finished());
                if j == 0 && !alone_busy {
                    let ack = self
                        .js
                        .publish(self.subject.to_owned(), payload(id, price).into())
                        .await?;
                    let urls = self
                        .bases
                        .iter()
                        .map(|base| format!("{base}/products/{id}"))
                        .collect();
                    samples.push(tokio::spawn(served_after(
                        ack,
                        http.clone(),
                        urls,
                        price,
                        self.asking,
                    )));
                } else {
                    self.client
                        .publish(self.subject.to_owned(), payload(id, price).into())
                        .await?;
                }
            }
        }
        let published = k;
        let publishing = started.elapsed();
        let mut waits = Vec::new();
        for sample in samples {
            waits.push(sample.await??);
        }
        self.client.flush().await?;
        let stored = stream.info().await?.state.messages - before;
        ensure!(
            stored == published,
            "the stream took {stored} of {published} messages"
        );
        let checkpoints_after: i64 = sqlx::query_scalar(checkpoints).fetch_one(&mut *pg).await?;
        Ok(Freshness {
            asking: self.asking,
            published_per_second: published as f64 / publishing.as_secs_f64(),
            samples: waits,
            checkpoints: checkpoints_after - checkpoints_before,
        })
    }
}

/// Waits until `/readyz` answers 200: Postgres and NATS reachable, the cache rebuilt.
async fn ready(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if http
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|response| response.status() == 200)
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    bail!("the service was not ready within 2 minutes")
}

/// From the publish ack until every one of `urls` has answered with a price
/// of at least `price` (a later message of the same id serves it too):
/// polled every millisecond, or asked once to wait for the ack's sequence.
async fn served_after(
    ack: async_nats::jetstream::context::PublishAckFuture,
    http: reqwest::Client,
    urls: Vec<String>,
    price: i64,
    asking: Asking,
) -> anyhow::Result<Duration> {
    let seq = ack.await?.sequence;
    let acked = Instant::now();
    let served = urls.into_iter().map(|url| {
        let http = http.clone();
        async move {
            let url = match asking {
                Asking::Polling => url,
                Asking::MinSeq | Asking::MinSeqAlone => format!("{url}?min_seq={seq}&wait=5s"),
            };
            while acked.elapsed() < Duration::from_secs(30) {
                let response = http.get(&url).send().await?;
                if response.status() == 200 {
                    let product: serde_json::Value = response.json().await?;
                    if product["price"].as_i64().is_some_and(|p| p >= price) {
                        return Ok(acked.elapsed());
                    }
                    ensure!(
                        asking == Asking::Polling,
                        "{url} answered an older price than {price}: {product}"
                    );
                }
                if asking == Asking::Polling {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
            bail!("{url} did not serve price {price} within 30 s of its publish ack")
        }
    });
    let waits = futures::future::try_join_all(served).await?;
    Ok(waits.into_iter().max().unwrap_or_default())
}

fn settings(plan: &Plan) -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut settings = Settings::defaults();
    settings.database.url = match &plan.pg_socket {
        Some(dir) => format!("postgres://postgres@localhost/products_bench_{id}?host={dir}"),
        None => format!("postgres://postgres@127.0.0.1:5432/products_bench_{id}"),
    }
    .into();
    settings.nats.url = "nats://127.0.0.1:4222".into();
    settings.http.addr = "127.0.0.1:0".parse().unwrap();
    settings.nats.stream = format!("BENCH_{id}");
    settings.nats.stream_subjects = vec![format!("bench_{id}.>")];
    settings.nats.subject = format!("bench_{id}.products");
    settings.nats.durable = format!("bench_{id}");
    if let Some(size) = plan.batch_size {
        settings.ingest.batch_size = size;
    }
    settings
}

/// The host, its cores and CPU, and the time, as the report's heading.
fn machine() -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split(':').nth(1))
                .map(|model| model.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default();
    format!("{date}; host {}, {cores} cores ({cpu})", host.trim())
}

impl Report {
    /// The report as a Markdown table, each figure beside its baseline.
    pub fn table(&self, command: &str) -> String {
        let mut out = String::new();
        let rate = |r: &Rate| {
            format!(
                "{:.0} /s ({} in {:.2} s)",
                r.per_second(),
                r.count,
                r.took.as_secs_f64()
            )
        };
        let ratio = |a: &Rate, b: &Rate| format!("{:.2}×", a.per_second() / b.per_second());
        out.push_str(&format!(
            "{}\ncommand: `{command}`\nPostgres: {}, ingest batches of {}\n\n",
            self.machine, self.database, self.batch_size
        ));
        out.push_str("| what | baseline, same run | products | ratio |\n|---|---|---|---|\n");
        let new = &self.ingest_new;
        // Like for like first: the rows stored with nothing else to do.
        for baseline in [&self.bare, &self.indexed] {
            let table = baseline.table.describe();
            if let Some(psql) = &baseline.psql {
                out.push_str(&format!(
                    "| drain of an all-new backlog vs `psql`'s batched upsert of the same rows into {table} ({PSQL_ROWS} rows a statement, TCP) | {} | {} | {} |\n",
                    rate(psql), rate(new), ratio(new, psql)
                ));
            }
            out.push_str(&format!(
                "| the same vs a bare sqlx loop into {table} (`UNNEST`, batches of {}, the service's statement shape) | {} | {} | {} |\n",
                self.batch_size, rate(&baseline.sqlx), rate(new), ratio(new, &baseline.sqlx)
            ));
        }
        out.push_str(&format!(
            "| the same vs a bare pull + ack, nothing stored | {} | {} | {} |\n",
            rate(&self.pull_ack),
            rate(new),
            ratio(new, &self.pull_ack)
        ));
        out.push_str(&format!(
            "| drain of an all-new backlog by {REPLICAS} replicas on one durable vs by one (the first drain) | {} | {} | {} |\n",
            rate(new),
            rate(&self.scale_out),
            ratio(&self.scale_out, new)
        ));
        out.push_str(&format!(
            "| drain of many updates per id vs the all-new drain above | {} | {} | {} |\n",
            rate(new),
            rate(&self.ingest_updates),
            ratio(&self.ingest_updates, new)
        ));
        for f in &self.freshness {
            let how = match f.asking {
                Asking::Polling => "served by `GET /products/{id}` (each replica polled every ms)",
                Asking::MinSeq => {
                    "answered by one `GET /products/{id}?min_seq=<the ack's sequence>&wait=5s` a replica"
                }
                Asking::MinSeqAlone => {
                    "answered by one `GET /products/{id}?min_seq=…&wait=5s` a replica, one sample at a time"
                }
            };
            out.push_str(&format!(
                "| freshness, publish ack → {how} on both of {FRESHNESS_REPLICAS} replicas, at {:.0} msg/s (half the all-new drain), {} samples; Postgres checkpoints meanwhile: {} | | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms | |\n",
                f.published_per_second,
                f.samples.len(),
                f.checkpoints,
                ms(f.percentile(50.0)),
                ms(f.percentile(99.0)),
                ms(f.percentile(100.0)),
            ));
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

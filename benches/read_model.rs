//! The read model, each figure beside a baseline measured in the same run, on
//! a catalogue of `BENCH_PRODUCTS` products (default 1,000,000) written
//! straight into Postgres:
//!
//! - restart to warm: from `App::start` to the first product served, and to
//!   the cache rebuilt (`/readyz` 200); memory per cached product (the
//!   cache's own weight, and the process's resident memory) beside the size
//!   of the stored row;
//! - `GET /products/{id}` and `GET /product?id=N` on random ids, beside a bare
//!   salvo handler reading a moka map of the same products (no actors, no
//!   Postgres); the same during invalidations, with rows changing;
//! - list pages (`/products?limit=100`, `/?limit=100`) at random places,
//!   each beside a bare salvo handler that reads the page from Postgres with
//!   SeaORM and answers the same way the service did before its lists came
//!   from memory (the JSON serialized with serde; the HTML rendered from the
//!   same template);
//! - a search (`/products?q=product%20N`, random N) from memory, beside the
//!   same search in Postgres with the trigram indexes it used before;
//! - freshness across replicas: a second app on the same database and durable;
//!   for each of `BENCH_UPDATES` updates, publish-ack to served by both.
//!
//! Run: `cargo bench --bench read_model` (needs the Postgres and NATS of
//! `scripts/services`, and `wrk`). `BENCH_SECONDS` sets each load's length
//! (default 5). The HTTP load comes from `wrk` (Debian's package), a process
//! of its own, [`HTTP_CLIENTS`] connections on two threads, for the
//! baselines alike: so that the client's cost is not the server's, and does
//! not push the ratios toward 1.

use actors::cache::{CacheMsg, CacheStatus};
use actors::supervisor::RestartBudget;
use anyhow::Context;
use async_nats::jetstream;
use catalogue::filter::Filter;
use catalogue::product::Product;
use entity::products as rows;
use moka::future::Cache as Moka;
use products::App;
use products::settings::Settings;
use rand::Rng;
use salvo::prelude::*;
use sea_orm::{
    ColumnTrait, ConnectionTrait, Database, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Statement,
};
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, Instant};

const HTTP_CLIENTS: usize = 32;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let count: i64 = env_or("BENCH_PRODUCTS", 1_000_000);
    let seconds: u64 = env_or("BENCH_SECONDS", 5);
    let updates: usize = env_or("BENCH_UPDATES", 200);
    let settings = bench_settings();
    let result = run(&settings, count, Duration::from_secs(seconds), updates).await;
    products::database::drop_database(&settings.database.url).await?;
    let client = async_nats::connect(settings.nats.url.expose()).await?;
    let _ = jetstream::new(client)
        .delete_stream(&settings.nats.stream)
        .await;
    result
}

async fn run(
    settings: &Settings,
    count: i64,
    seconds: Duration,
    updates: usize,
) -> anyhow::Result<()> {
    println!(
        "read model, {count} products, {HTTP_CLIENTS} clients x {seconds:?} per load, {} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        chrono_now()
    );
    products::database::prepare(&settings.database.url).await?;
    let db = Database::connect(settings.database.url.expose()).await?;
    let started = Instant::now();
    fill(&db, count).await?;
    println!("filled Postgres in {:.1?}", started.elapsed());
    let row_bytes = average_row_bytes(&db).await?;

    // Restart to warm.
    let rss_before = resident_bytes();
    let started = Instant::now();
    let app = App::start(settings, "bench-a", RestartBudget::default()).await?;
    let base = format!("http://{}", app.http_addr());
    let http = reqwest::Client::new();
    wait_for(|| async {
        http.get(format!("{base}/products/{}", count / 2))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
    let first_served = started.elapsed();
    wait_ready(&http, &base).await;
    let warm = started.elapsed();
    // The service's memory once warm, before the baselines' (the bare
    // server holds its own map of every product in this process).
    let rss_warm = resident_bytes().saturating_sub(rss_before);

    let bare = BareServer::start(&db, count).await?;
    // The baselines answer what the service answers: the same rows.
    let bare_rows = http
        .get(format!("{}/html-page?after=0", bare.base))
        .send()
        .await?
        .text()
        .await?
        .matches("<tr data-id=")
        .count();
    let served_rows = http
        .get(format!("{base}/?limit=100&after=0"))
        .send()
        .await?
        .text()
        .await?
        .matches("<tr data-id=")
        .count();
    anyhow::ensure!(
        bare_rows == served_rows && served_rows == (count as usize).min(100),
        "the HTML baseline lists {bare_rows} rows, the service {served_rows}"
    );
    let mut rows = Vec::new();
    let random_ids = 1..=count;

    let baseline = http_load(&bare.base, seconds, "/products/", random_ids.clone()).await?;
    let json = http_load(&base, seconds, "/products/", random_ids.clone()).await?;
    rows.push(row("GET /products/{id}, random ids", &baseline, &json));
    let html = http_load(&base, seconds, "/product?id=", random_ids.clone()).await?;
    rows.push(row(
        "GET /product?id=N (HTML), random ids",
        &baseline,
        &html,
    ));

    // During invalidations: one every 200 ms, with 100 rows changed before each.
    let churn = {
        let (db, names) = (db.clone(), app.names().clone());
        tokio::spawn(async move {
            loop {
                let _ = db
                    .execute_unprepared(&format!(
                        "UPDATE products SET price = price + 1 WHERE id IN \
                         (SELECT (random() * {count})::bigint + 1 FROM generate_series(1, 100))"
                    ))
                    .await;
                let _ = actors::cache::peer(&names)
                    .get()
                    .map(|cache| cache.cast(CacheMsg::Invalidate));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let during = http_load(&base, seconds, "/products/", random_ids).await?;
    churn.abort();
    rows.push(row(
        "GET /products/{id} during invalidations (5/s, 100 rows changed each)",
        &baseline,
        &during,
    ));

    // The lists, each beside the same page read from Postgres (and for the
    // HTML, rendered from the same template): at random places, and the
    // first page, as the issue measured it.
    let random_after = 0..=count.saturating_sub(101).max(0);
    let first_page = 0..=0;
    let lists: [(&str, &str, &str, RangeInclusive<i64>); 4] = [
        (
            "GET /products?limit=100 (JSON list), random pages; baseline: the page read from Postgres",
            "/page",
            "/products?limit=100&",
            random_after.clone(),
        ),
        (
            "GET /?limit=100 (HTML list), random pages; baseline: the page read from Postgres, rendered from the same template",
            "/html-page",
            "/?limit=100&",
            random_after,
        ),
        (
            "GET /products?limit=100 (JSON list), the first page; baseline: the page read from Postgres",
            "/page",
            "/products?limit=100&",
            first_page.clone(),
        ),
        (
            "GET /?limit=100 (HTML list), the first page; baseline: the page read from Postgres, rendered from the same template",
            "/html-page",
            "/?limit=100&",
            first_page,
        ),
    ];
    let rss_before_lists = resident_bytes();
    for (what, bare_path, path, after) in lists {
        let bare_path = format!("{bare_path}?after=");
        let baseline = http_load(&bare.base, seconds, &bare_path, after.clone()).await?;
        let served = http_load(&base, seconds, &format!("{path}after="), after).await?;
        rows.push(row(what, &baseline, &served));
    }
    // Memory, once the lists have filled the rows cache too: the growth
    // while they were served is the service's (the baselines' is fixed).
    let status = cache_status(&app).await?;
    let rss = rss_warm + resident_bytes().saturating_sub(rss_before_lists);

    // Search, from memory, beside the same search in Postgres with the
    // trigram indexes it had before (made for the baseline only, and
    // dropped after it). `product N` holds N, and every id that starts with
    // N's digits: up to a page of matches, spread over the catalogue.
    let texts = 1000.min(count)..=count;
    let served = http_load(
        &base,
        seconds,
        "/products?limit=100&q=product%20",
        texts.clone(),
    )
    .await?;
    let started = Instant::now();
    db.execute_unprepared(TRIGRAM_INDEXES).await?;
    println!("made the trigram indexes in {:.1?}", started.elapsed());
    let baseline = http_load(&bare.base, seconds, "/search?q=product%20", texts).await?;
    db.execute_unprepared("DROP INDEX products_name_trgm; DROP INDEX products_manufacturer_trgm;")
        .await?;
    rows.push(row(
        "GET /products?q=product%20N&limit=100 (search, JSON), N random; baseline: the same search in Postgres with the trigram indexes it had before",
        &baseline,
        &served,
    ));

    // Freshness across replicas.
    let other = App::start(settings, "bench-b", RestartBudget::default()).await?;
    let other_base = format!("http://{}", other.http_addr());
    wait_ready(&http, &other_base).await;
    let freshness = freshness(settings, &[&base, &other_base], updates).await?;

    println!();
    println!("| what | baseline, same run | products | ratio |");
    println!("|---|---|---|---|");
    for line in rows {
        println!("{line}");
    }
    println!(
        "| restart to warm, {count} products | | first product served after {first_served:.2?}; \
         cache rebuilt (/readyz 200) after {warm:.2?} | |"
    );
    println!(
        "| memory per cached product, after the loads above (the HTML rows cache filled too) | stored row: {row_bytes:.0} B (pg_column_size) | \
         cache weight {:.0} B ({} entries, {} MiB); process resident memory {:.0} B (when warm, and what the lists added) | {:.2} |",
        status.bytes as f64 / status.entries.max(1) as f64,
        status.entries,
        status.bytes >> 20,
        rss as f64 / count as f64,
        rss as f64 / count as f64 / row_bytes
    );
    println!(
        "| publish-ack to served by both replicas, {updates} updates | | p50 {:.1?}, p99 {:.1?}, max {:.1?} | |",
        freshness.percentile(0.50),
        freshness.percentile(0.99),
        freshness.percentile(1.0)
    );
    println!();
    println!("command: cargo bench --bench read_model (BENCH_PRODUCTS={count})");
    other.shutdown().await?;
    app.shutdown().await?;
    Ok(())
}

/// `count` products written straight into Postgres (ids 1..=count).
async fn fill(db: &DatabaseConnection, count: i64) -> anyhow::Result<()> {
    db.execute_unprepared(&format!(
        "INSERT INTO products (id, name, price, manufacturer, description, attributes, stream, stream_seq) \
         SELECT g, 'product ' || g, g % 100000, 'maker ' || (g % 1000), \
                'a product of the read-model benchmark', \
                jsonb_build_object('color', 'red', 'size', g % 10), 'bench', g \
         FROM generate_series(1, {count}) AS g; \
         SELECT setval('products_id_seq', {count}); ANALYZE products;"
    ))
    .await
    .context("cannot fill the products")?;
    Ok(())
}

async fn average_row_bytes(db: &DatabaseConnection) -> anyhow::Result<f64> {
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT avg(pg_column_size(p.*))::float8 AS bytes FROM products p",
        ))
        .await?
        .context("no row")?;
    Ok(row.try_get("", "bytes")?)
}

async fn cache_status(app: &App) -> anyhow::Result<CacheStatus> {
    Ok(actors::cache::peer(app.names())
        .ask(|reply| CacheMsg::Status { reply }, Duration::from_secs(30))
        .await?)
}

/// The baselines: a bare salvo server with the same products in a moka map
/// (`/products/{id}`), and the list page read from Postgres (`/page?after=`).
struct BareServer {
    base: String,
    _server: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct Bare {
    products: Moka<i64, Arc<Product>>,
    db: DatabaseConnection,
}

impl BareServer {
    async fn start(db: &DatabaseConnection, count: i64) -> anyhow::Result<Self> {
        let products = Moka::builder().max_capacity(count as u64).build();
        let mut after = 0;
        loop {
            let page = rows::Entity::find()
                .filter(rows::Column::Id.gt(after))
                .order_by_asc(rows::Column::Id)
                .limit(10_000)
                .all(db)
                .await?;
            let Some(last) = page.last() else { break };
            after = last.id;
            for row in page {
                let product = actors::persistence::product(row);
                products.insert(product.id, Arc::new(product)).await;
            }
        }
        let router = Router::new()
            .hoop(salvo::affix_state::inject(Bare {
                products,
                db: db.clone(),
            }))
            .push(Router::with_path("products/{id}").get(bare_product))
            .push(Router::with_path("page").get(bare_page))
            .push(Router::with_path("html-page").get(bare_html_page))
            .push(Router::with_path("search").get(bare_search));
        let acceptor = TcpListener::new("127.0.0.1:0").bind().await;
        let addr = acceptor.local_addr()?;
        let server = tokio::spawn(Server::new(acceptor).serve(router));
        Ok(Self {
            base: format!("http://{addr}"),
            _server: server,
        })
    }
}

#[handler]
async fn bare_product(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let bare = depot.get_typed::<Bare>().expect("injected");
    let id: i64 = req.param("id").unwrap_or_default();
    match bare.products.get(&id).await {
        Some(product) => res.render(Json(&*product)),
        None => res
            .status_code(StatusCode::NOT_FOUND)
            .render("no such product"),
    };
}

/// The first 100 products whose name or manufacturer holds `?q=`, searched in
/// Postgres as the service searched before its search index was in memory
/// (with the trigram indexes [`TRIGRAM_INDEXES`] makes).
#[handler]
async fn bare_search(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let bare = depot.get_typed::<Bare>().expect("injected");
    let text: String = req.query("q").unwrap_or_default();
    let found = actors::persistence::search(&bare.db, &Filter::text(text), 0, 100)
        .await
        .unwrap_or_default();
    res.render(Json(found));
}

/// The trigram indexes the service's search used before it moved to memory
/// (migrations 4 and 9), for the search's baseline.
const TRIGRAM_INDEXES: &str = "\
    CREATE INDEX products_name_trgm ON products USING gin (lower(name) gin_trgm_ops); \
    CREATE INDEX products_manufacturer_trgm ON products USING gin (lower(manufacturer) gin_trgm_ops); \
    ANALYZE products;";

/// The 100 products after `?after=`, read from Postgres with SeaORM.
async fn bare_page_read(req: &Request, depot: &Depot) -> (i64, Vec<Product>) {
    let bare = depot.get_typed::<Bare>().expect("injected");
    let after: i64 = req.query("after").unwrap_or_default();
    let page = rows::Entity::find()
        .filter(rows::Column::Id.gt(after))
        .order_by_asc(rows::Column::Id)
        .limit(100)
        .all(&bare.db)
        .await
        .unwrap_or_default();
    (
        after,
        page.into_iter().map(actors::persistence::product).collect(),
    )
}

#[handler]
async fn bare_page(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let (_, page) = bare_page_read(req, depot).await;
    res.render(Json(page));
}

/// The HTML list as the service rendered it before its lists came from
/// memory: the page from Postgres, then the `index` template.
#[handler]
async fn bare_html_page(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let (after, page) = bare_page_read(req, depot).await;
    let next = page
        .last()
        .map(|last| format!("/?after={}&limit=100", last.id));
    // The rows as the service renders them (`product_row`, each product
    // once), joined into the page: the same HTML the service answers.
    let mut rows = String::new();
    for product in &page {
        let row = serde_json::json!({
            "id": product.id, "name": product.name,
            "price": product.price, "manufacturer": product.manufacturer,
        });
        match actors::http::views::render("product_row", row) {
            Ok(html) => rows.push_str(&html),
            Err(e) => {
                return res
                    .status_code(StatusCode::INTERNAL_SERVER_ERROR)
                    .render(e.to_string());
            }
        }
    }
    let data = serde_json::json!({
        "products": page,
        "rows": rows,
        "next": next,
        "previous": format!("/?after={after}&limit=100"),
        "first_page": after == 0,
        "count": null,
        "q": "",
        "searching": false,
        "revision": 0,
        "after": after,
        "until": null,
        "manage": true,
    });
    match actors::http::views::render("index", data) {
        Ok(html) => res.render(Text::Html(html)),
        Err(e) => res
            .status_code(StatusCode::INTERNAL_SERVER_ERROR)
            .render(e.to_string()),
    };
}

/// Requests a second and the 99th percentile latency of one load.
struct Load {
    requests: u64,
    took: Duration,
    p99: Duration,
}

impl Load {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.took.as_secs_f64()
    }
}

struct Latencies(Vec<Duration>);

impl Latencies {
    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0.get(index).copied().unwrap_or_default()
    }
}

fn row(what: &str, baseline: &Load, load: &Load) -> String {
    format!(
        "| {what} | {:.0} /s, p99 {:.1?} | {:.0} /s, p99 {:.1?} | {:.2} |",
        baseline.per_second(),
        baseline.p99,
        load.per_second(),
        load.p99,
        load.per_second() / baseline.per_second()
    )
}

/// `wrk`'s script: each request asks for `path` followed by a number drawn
/// at random from `lo..=hi`, each thread with a seed of its own.
const WRK_SCRIPT: &str = r#"
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("seed", threads)
end
function init(args)
  math.randomseed(seed * 7919 + os.time())
  path, lo, hi = args[1], tonumber(args[2]), tonumber(args[3])
end
function request()
  return wrk.format("GET", path .. math.random(lo, hi))
end
"#;

/// `wrk`, [`HTTP_CLIENTS`] connections on two threads for `length`, asking
/// `base` for `path` followed by a random number of `numbers`; every answer
/// must be a 2xx (`wrk` counts the others).
async fn http_load(
    base: &str,
    length: Duration,
    path: &str,
    numbers: RangeInclusive<i64>,
) -> anyhow::Result<Load> {
    let script = std::env::temp_dir().join(format!("read_model_{}.lua", std::process::id()));
    std::fs::write(&script, WRK_SCRIPT)?;
    let output = tokio::process::Command::new("wrk")
        .args(["-t2", &format!("-c{HTTP_CLIENTS}")])
        .arg(format!("-d{}s", length.as_secs().max(1)))
        .arg("--latency")
        .arg("-s")
        .arg(&script)
        .arg(base)
        .args(["--", path])
        .arg(numbers.start().to_string())
        .arg(numbers.end().to_string())
        .output()
        .await;
    let output = match output {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!("the load generator `wrk` is missing: apt-get install wrk")
        }
        Err(error) => return Err(error).context("cannot run wrk"),
    };
    let report = String::from_utf8_lossy(&output.stdout);
    anyhow::ensure!(output.status.success(), "wrk failed: {report}");
    let line = |prefix: &str| {
        report
            .lines()
            .map(str::trim)
            .find(|line| line.starts_with(prefix))
    };
    anyhow::ensure!(
        line("Non-2xx or 3xx responses").is_none() && line("Socket errors").is_none(),
        "{path}: not every request was answered with a 2xx:\n{report}"
    );
    // "12345 requests in 5.00s, 12.34MB read"
    let (requests, took) = report
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let (requests, rest) = line.split_once(" requests in ")?;
            let took = rest.split(',').next()?;
            Some((requests.parse::<u64>().ok()?, wrk_duration(took)?))
        })
        .next()
        .with_context(|| format!("no request count in wrk's report:\n{report}"))?;
    let p99 = line("99%")
        .and_then(|line| wrk_duration(line.split_whitespace().nth(1)?))
        .with_context(|| format!("no 99th percentile in wrk's report:\n{report}"))?;
    Ok(Load {
        requests,
        took,
        p99,
    })
}

/// A duration as `wrk` prints it: `812.00us`, `3.21ms`, `5.00s`, `1.02m`.
fn wrk_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let seconds = match unit {
        "us" => number / 1e6,
        "ms" => number / 1e3,
        "s" => number,
        "m" => number * 60.0,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

/// For each update: publish (wait for JetStream's ack), then the time until
/// every base serves the new price.
async fn freshness(
    settings: &Settings,
    bases: &[&str],
    updates: usize,
) -> anyhow::Result<Latencies> {
    let client = async_nats::connect(settings.nats.url.expose()).await?;
    let js = jetstream::new(client);
    let http = reqwest::Client::new();
    let mut latencies = Vec::with_capacity(updates);
    for n in 0..updates {
        let id = rand::rng().random_range(1..=1000);
        let price = 1_000_000 + n as i64;
        let body = serde_json::json!({"id": id, "name": format!("product {id}"), "price": price, "manufacturer": "m"});
        js.publish(settings.nats.subject.clone(), body.to_string().into())
            .await?
            .await?;
        let acked = Instant::now();
        for base in bases {
            let url = format!("{base}/products/{id}");
            wait_for(|| async {
                match http.get(&url).send().await {
                    Ok(response) => response
                        .json::<serde_json::Value>()
                        .await
                        .is_ok_and(|p| p["price"] == price),
                    Err(_) => false,
                }
            })
            .await;
        }
        latencies.push(acked.elapsed());
    }
    latencies.sort();
    Ok(Latencies(latencies))
}

/// Waits until `base` answers `/readyz` with 200 (its cache rebuilt).
async fn wait_ready(http: &reqwest::Client, base: &str) {
    wait_for(|| async {
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
    })
    .await;
}

/// Polls `check` until it holds (a minute at most).
async fn wait_for<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(Instant::now() < until, "timed out");
        tokio::task::yield_now().await;
    }
}

/// This process's resident memory, from /proc (0 where there is none).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmRSS:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn chrono_now() -> String {
    std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn bench_settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut settings = Settings::defaults();
    settings.database.url =
        format!("postgres://postgres@127.0.0.1:5432/products_bench_{id}").into();
    settings.nats.url = "nats://127.0.0.1:4222".into();
    settings.http.addr = "127.0.0.1:0".parse().unwrap();
    settings.nats.stream = format!("BENCH_{id}");
    settings.nats.stream_subjects = vec![format!("bench_{id}.>")];
    settings.nats.subject = format!("bench_{id}.products");
    settings.nats.durable = format!("bench_{id}");
    settings.cache.invalidate_every = Duration::from_secs(3600);
    // CACHE_MAX_BYTES as a user gets it (512 MiB).
    settings
}

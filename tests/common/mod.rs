//! Test support: an app started against the real Postgres and NATS, in its own
//! database and with its own stream, subject and durable names, removed again
//! when the test ends (even when it fails).

pub mod browser;
pub mod persistence;
pub mod process;
pub mod servers;

use actors::changes::{ChangeSignal, Commits};
use actors::names::Names;
use actors::persistence::{Persistence, PersistenceArgs, PersistenceRef};
use actors::secret::SecretUrl;
use actors::supervisor::RestartBudget;
use async_nats::jetstream::context::PublishErrorKind;
use async_nats::jetstream::{self, consumer::PullConsumer};
use bytes::Bytes;
use catalogue::batch::{Batch, Incoming};
use catalogue::product::{ProductUpdate, Upsert};
use products::App;
use products::settings::Settings;
use ractor::Actor;
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, Statement,
    TransactionTrait,
};
use std::future::Future;
use std::sync::Once;
use std::time::Duration;
use tokio::time::{Instant, sleep};

/// How long a test waits for something that should happen "within a moment".
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The operators every test app knows (`MANAGE_USERS_FILE`), their
/// passwords below; the hashes written by `products hash-password`.
const OPERATORS: &str = "\
alice:$argon2id$v=19$m=19456,t=2,p=1$z0Ptna8zbMGwl8KFFlpLbQ$ZdHZB4cHuYkPEVJ+Ed6YRuo7qAZndhwluehNXxuLuz0
bob:$argon2id$v=19$m=19456,t=2,p=1$onk+4jKqdKy7uFIwvhA/6g$MKPcim2QFPPBQcxg5Ue5MFJDjgn5TEGMYd+quCX7Juc
";
pub const ALICE: (&str, &str) = ("alice", "alice-password-1");
pub const BOB: (&str, &str) = ("bob", "bob-password-2");
/// The session key of every test app (sessions hold across its restarts).
pub const SESSION_KEY: &str = "test-session-key-0123456789abcdef-0123456789";

/// The users file with [`OPERATORS`], written once (atomically: tests run in
/// processes of their own, at once) under the target directory.
pub fn operators_file() -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("operators.txt");
    if std::fs::read_to_string(&path).ok().as_deref() != Some(OPERATORS) {
        let partial = path.with_extension(format!("{}.tmp", std::process::id()));
        std::fs::write(&partial, OPERATORS).expect("the target directory is writable");
        std::fs::rename(&partial, &path).expect("the users file is in place");
    }
    path
}

/// Settings with names no other test uses, on a random port, with the
/// operators [`ALICE`] and [`BOB`].
pub fn unique_settings() -> Settings {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
    let mut settings = Settings::defaults();
    settings.database.url = format!("postgres://postgres@127.0.0.1:5432/products_test_{id}").into();
    settings.nats.url = "nats://127.0.0.1:4222".into();
    settings.http.addr = "127.0.0.1:0".parse().unwrap();
    settings.nats.stream = format!("TEST_{id}");
    settings.nats.stream_subjects = vec![format!("test_{id}.>")];
    settings.nats.subject = format!("test_{id}.products");
    settings.nats.durable = format!("durable_{id}");
    // Messages delivered to an actor that a test killed come back quickly.
    settings.nats.ack_wait = Duration::from_secs(3);
    settings.manage.users_file = Some(operators_file());
    settings.manage.session_key = Some(SESSION_KEY.into());
    settings
}

/// A client that does not follow redirects (to see where a form sends).
pub fn no_redirect() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Logs go to the test's output, shown when a test fails.
pub fn init_logs() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| "info,sqlx=warn".into()),
            )
            .with_test_writer()
            .try_init();
    });
}

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    pub app: Option<App>,
    pub settings: Settings,
    pub base: String,
    pub http: reqwest::Client,
    pub js: jetstream::Context,
    _cleanup: Cleanup,
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(unique_settings(), RestartBudget::default()).await
    }

    pub async fn spawn_with(settings: Settings, budget: RestartBudget) -> TestApp {
        let cleanup = Cleanup::new(&settings);
        Self::spawn_full(settings, budget, cleanup).await
    }

    /// With a cleanup of its own (for a test whose app reaches Postgres through
    /// a proxy, which must not be needed to drop the database).
    pub async fn spawn_full(
        settings: Settings,
        budget: RestartBudget,
        cleanup: Cleanup,
    ) -> TestApp {
        init_logs();
        let app = App::start(&settings, &instance_name(&settings), budget)
            .await
            .expect("the app starts");
        let base = format!("http://{}", app.http_addr());
        let client = async_nats::connect(settings.nats.url.expose())
            .await
            .expect("NATS is running on 127.0.0.1:4222");
        let js = jetstream::new(client);
        // The stream exists before the first publish, whatever ingest is
        // doing. Ingest creates it at the same time: a create that races
        // another of the same stream can be refused ("subjects overlap with
        // an existing stream", seen once under the full suite's load), and
        // the next look finds it.
        let until = Instant::now() + DEADLINE;
        while let Err(error) = js.get_or_create_stream(settings.stream().config()).await {
            assert!(
                Instant::now() < until,
                "the test stream can be created: {error}"
            );
            sleep(Duration::from_millis(50)).await;
        }
        TestApp {
            app: Some(app),
            settings,
            base,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            js,
            _cleanup: cleanup,
        }
    }

    pub fn app(&self) -> &App {
        self.app.as_ref().expect("the app is running")
    }

    /// Stops the app gracefully; the database and stream stay for a restart.
    pub async fn stop(&mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await.expect("a graceful shutdown");
        }
    }

    /// Starts the app again with the same settings (and so the same data).
    pub async fn restart(&mut self) {
        self.stop().await;
        let app = App::start(
            &self.settings,
            &instance_name(&self.settings),
            RestartBudget::default(),
        )
        .await
        .expect("the app starts again");
        self.base = format!("http://{}", app.http_addr());
        self.app = Some(app);
    }

    /// Publishes on a new connection, retrying until it is acked (for NATS that
    /// is coming back).
    pub async fn publish_when_nats_is_back(&self, payload: &'static str) {
        wait_until("a publish is acked", || async {
            let Ok(client) = async_nats::connect(self.settings.nats.url.expose()).await else {
                return false;
            };
            let js = jetstream::new(client);
            match js
                .publish(self.settings.nats.subject.clone(), payload.into())
                .await
            {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }

    /// `/readyz`'s body once it says what `ready` expects of `part`.
    pub async fn wait_for_readiness(&self, part: &str, ready: bool) -> serde_json::Value {
        wait_until(&format!("/readyz says {part} ready = {ready}"), || async {
            let (_, body) = self.get_json("/readyz").await;
            body[part]["ready"] == ready
        })
        .await;
        self.get_json("/readyz").await.1
    }

    /// Publishes one message and waits for JetStream's ack; returns its sequence.
    /// A publish that no stream answered ("no responders": nothing was
    /// stored) is sent again until [`DEADLINE`]: seen once under the full
    /// suite's load, right after the test's stream was created.
    pub async fn publish(&self, payload: impl Into<Bytes>) -> u64 {
        let payload = payload.into();
        let until = Instant::now() + DEADLINE;
        loop {
            let acked = self
                .js
                .publish(self.settings.nats.subject.clone(), payload.clone())
                .await
                .expect("publish sent")
                .await;
            match acked {
                Ok(ack) => return ack.sequence,
                Err(e)
                    if e.kind() == PublishErrorKind::StreamNotFound && Instant::now() < until =>
                {
                    sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("publish acked: {e}"),
            }
        }
    }

    /// Signs `operator` in; the session cookie (`name=value`) to send along.
    pub async fn sign_in(&self, (name, password): (&str, &str)) -> String {
        let response = no_redirect()
            .post(format!("{}/signin", self.base))
            .form(&[("name", name), ("password", password), ("next", "/")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{name} signs in");
        let cookie = response.headers()["set-cookie"].to_str().unwrap();
        cookie.split(';').next().unwrap().to_owned()
    }

    /// Tries to sign `operator` in where that must fail; a cookie as a
    /// signed-in browser of another deployment would send it.
    pub async fn sign_in_refused(&self, (name, password): (&str, &str)) -> String {
        let response = no_redirect()
            .post(format!("{}/signin", self.base))
            .form(&[("name", name), ("password", password)])
            .send()
            .await
            .unwrap();
        assert_ne!(response.status(), 303, "{name} is not signed in");
        assert!(response.headers().get("set-cookie").is_none());
        let session = actors::http::session::Session::open(name, "any");
        let key = actors::http::session::SessionKey::new(SESSION_KEY.into()).unwrap();
        format!("products-session={}", session.seal(&key))
    }

    /// The page at `path` as seen in the session `cookie`.
    pub async fn get_signed_in(&self, cookie: &str, path: &str) -> (u16, String) {
        let response = no_redirect()
            .get(format!("{}{path}", self.base))
            .header("Cookie", cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The CSRF token of the form at `path` (default `/manage/new`), in the
    /// session `cookie`.
    pub async fn form_token(&self, cookie: &str) -> String {
        let (status, page) = self.get_signed_in(cookie, "/manage/new").await;
        assert_eq!(status, 200, "{page}");
        let needle = "name=\"csrf\" value=\"";
        let start = page.find(needle).expect("the form has a token") + needle.len();
        page[start..start + page[start..].find('"').unwrap()].to_owned()
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the server answers")
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.text().await.unwrap())
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self.get(path).await;
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    /// Waits until `/products/{id}` answers 200, and returns the product.
    pub async fn wait_for_product(&self, id: i64) -> serde_json::Value {
        let path = format!("/products/{id}");
        wait_until(&format!("product {id} is served"), || async {
            self.get(&path).await.status() == 200
        })
        .await;
        self.get_json(&path).await.1
    }

    /// Waits until the JSON list holds `count` products, and returns it.
    pub async fn wait_for_list_len(&self, count: usize) -> Vec<serde_json::Value> {
        wait_until(&format!("{count} products are listed"), || async {
            let (_, list) = self.get_json("/products?limit=1000").await;
            list.as_array().is_some_and(|l| l.len() == count)
        })
        .await;
        let (_, list) = self.get_json("/products?limit=1000").await;
        list.as_array().unwrap().clone()
    }

    pub async fn db(&self) -> DatabaseConnection {
        connect(&self.settings.database.url).await
    }

    /// Runs SQL on the test's database (as the superuser).
    pub async fn sql(&self, sql: &str) {
        self.db()
            .await
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs SQL on the server's `postgres` database, e.g. to change the test's
    /// database while it refuses writes.
    pub async fn admin_sql(&self, sql: &str) {
        let url = self
            .settings
            .database
            .url
            .expose()
            .replace(&format!("/{}", self.database_name()), "/postgres");
        connect(&url.into())
            .await
            .execute_unprepared(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// The test database's name.
    pub fn database_name(&self) -> &str {
        self.settings
            .database
            .url
            .expose()
            .rsplit('/')
            .next()
            .unwrap()
    }

    /// From now on every row written to `products` takes `seconds` (as with a
    /// lock held by a migration, or an overloaded disk).
    pub async fn slow_inserts(&self, seconds: u32) {
        self.sql(&format!(
            "CREATE FUNCTION slow_insert() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN PERFORM pg_sleep({seconds}); RETURN NEW; END $$; \
             CREATE TRIGGER slow_insert BEFORE INSERT ON products \
             FOR EACH ROW EXECUTE FUNCTION slow_insert();"
        ))
        .await;
    }

    /// Ends every session on the test's database but the caller's, so that a
    /// setting changed with `ALTER DATABASE` applies to every new one.
    pub async fn end_sessions(&self) {
        self.sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{}' AND pid <> pg_backend_pid()",
            self.database_name()
        ))
        .await;
    }

    /// How many messages were set aside.
    pub async fn rejected_count(&self) -> u64 {
        use sea_orm::{EntityTrait, PaginatorTrait};
        entity::rejected_messages::Entity::find()
            .count(&self.db().await)
            .await
            .unwrap()
    }

    pub async fn consumer_info(&self) -> jetstream::consumer::Info {
        self.consumer().await.info().await.unwrap().clone()
    }

    /// The durable consumer, once ingest has created it (in the background
    /// after a start: a test may ask before it has).
    pub async fn consumer(&self) -> PullConsumer {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let found = match self.js.get_stream(&self.settings.nats.stream).await {
                Ok(stream) => stream.get_consumer(&self.settings.nats.durable).await.ok(),
                Err(_) => None,
            };
            if let Some(consumer) = found {
                return consumer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the durable consumer exists within {DEADLINE:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub fn instance_name(settings: &Settings) -> String {
    format!("app-{}", settings.nats.durable)
}

/// Creates and migrates the database `settings` name; it is dropped when the
/// returned guard drops.
pub async fn prepared_database(settings: &Settings) -> Cleanup {
    init_logs();
    let cleanup = Cleanup::new(settings);
    products::database::prepare(&settings.database.url)
        .await
        .expect("the test database is created");
    cleanup
}

/// A JetStream context on the test's NATS, and the test's stream.
pub async fn jetstream_with_stream(
    settings: &Settings,
) -> (jetstream::Context, jetstream::stream::Stream) {
    let client = async_nats::connect(settings.nats.url.expose())
        .await
        .expect("NATS is running");
    let js = jetstream::new(client);
    let stream = js
        .get_or_create_stream(settings.stream().config())
        .await
        .expect("the test stream can be created");
    (js, stream)
}

/// A valid message for the product `id` (or a new one), as persistence gets it.
pub fn product_message(stream_seq: u64, id: Option<i64>, name: &str, price: i64) -> Incoming {
    let update = ProductUpdate::Upsert(Upsert {
        id,
        name: name.into(),
        price,
        manufacturer: "acme".into(),
        description: None,
        attributes: Default::default(),
    });
    Incoming {
        stream_seq,
        subject: "test.products".into(),
        payload: Bytes::from(format!("{update:?}")),
        decoded: Ok(update),
        operator: None,
        last_delivery: false,
    }
}

/// A batch of `messages` from the stream `stream`.
pub fn batch(stream: &str, messages: Vec<Incoming>) -> Batch {
    Batch {
        stream: stream.into(),
        messages,
    }
}

/// A persistence actor over the database of `settings`, registered as
/// `names`'s persistence when a name is given.
pub async fn spawn_persistence(
    names: Option<&Names>,
    settings: &Settings,
    changes: &ChangeSignal,
) -> PersistenceRef {
    let args = PersistenceArgs {
        names: names
            .cloned()
            .unwrap_or_else(|| Names::new(uuid::Uuid::new_v4().to_string())),
        database_url: settings.database.url.clone(),
        max_connections: 3,
        changes: changes.clone(),
        // No cache takes them: the writer answers without waiting.
        commits: Commits::default(),
        retention: settings.http.changes_retention,
    };
    let name = names.map(|names| names.of(actors::names::Child::Persistence));
    Actor::spawn(name, Persistence, args)
        .await
        .expect("the persistence actor starts")
        .0
}

/// Asks `persistence` and waits (10 s at most) for its answer, which must be
/// `Ok`: for tests that drive the actor directly.
pub async fn ask_persistence<T: Send + 'static, E: std::fmt::Debug + Send + 'static>(
    persistence: &PersistenceRef,
    build: impl FnOnce(ractor::RpcReplyPort<Result<T, E>>) -> actors::persistence::PersistenceMsg,
) -> T {
    persistence
        .call(build, Some(Duration::from_secs(10)))
        .await
        .expect("persistence is running")
        .expect("persistence answers in time")
        .expect("persistence answers without an error")
}

pub async fn connect(database_url: &SecretUrl) -> DatabaseConnection {
    let mut options = ConnectOptions::new(database_url.expose());
    options.max_connections(2).sqlx_logging(false);
    Database::connect(options)
        .await
        .expect("Postgres is running")
}

/// Holds an exclusive lock on `products` until the returned transaction
/// ends: every read and write of the table waits, as on a hung Postgres, and
/// each waiting statement shows in [`statements_waiting_on_locks`].
pub async fn lock_products(db: &DatabaseConnection) -> DatabaseTransaction {
    let lock = db.begin().await.unwrap();
    lock.execute_unprepared("LOCK TABLE products IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    lock
}

/// Statements of the database `db` is connected to that wait on a lock.
pub async fn statements_waiting_on_locks(db: &DatabaseConnection) -> i64 {
    db.query_one_raw(Statement::from_string(
        db.get_database_backend(),
        "SELECT count(*) AS n FROM pg_stat_activity \
         WHERE datname = current_database() AND wait_event_type = 'Lock'",
    ))
    .await
    .unwrap()
    .unwrap()
    .try_get::<i64>("", "n")
    .unwrap()
}

/// Polls `check` until it holds, failing the test after [`DEADLINE`].
pub async fn wait_until<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_until_within(what, DEADLINE, check).await;
}

/// Polls `check` until it holds, failing the test after `limit`.
pub async fn wait_until_within<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting until {what}"
        );
        sleep(Duration::from_millis(25)).await;
    }
}

/// Drops the test's database and stream when the test ends, pass or fail.
pub struct Cleanup {
    database_url: SecretUrl,
    nats_url: SecretUrl,
    stream: String,
}

impl Cleanup {
    pub fn new(settings: &Settings) -> Self {
        Self {
            database_url: settings.database.url.clone(),
            nats_url: settings.nats.url.clone(),
            stream: settings.nats.stream.clone(),
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let database_url = self.database_url.clone();
        let nats_url = self.nats_url.clone();
        let stream = self.stream.clone();
        // Drop runs inside the test's runtime, which cannot block: clean up on a
        // thread with a runtime of its own.
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Err(e) = products::database::drop_database(&database_url).await {
                    eprintln!("cleanup: cannot drop {database_url}: {e:#}");
                }
                if let Ok(client) = async_nats::connect(nats_url.expose()).await {
                    let _ = jetstream::new(client).delete_stream(&stream).await;
                }
            });
        })
        .join();
        if cleaned.is_err() {
            eprintln!("cleanup panicked");
        }
    }
}

/// A stored version of a product (`p{id}`, price `id`) at `revision`, as
/// the cache is given it.
pub fn product(id: i64, revision: i64) -> std::sync::Arc<catalogue::product::Product> {
    std::sync::Arc::new(catalogue::product::Product {
        id,
        name: format!("p{id}"),
        price: id,
        manufacturer: "m".into(),
        description: None,
        attributes: Default::default(),
        revision,
        stream_seq: revision,
        updated_at: String::new(),
        changed_by: None,
    })
}

/// Takes `updated_at` out of a served product (a time of this run, which no
/// expected value can know), checked to be RFC 3339 in UTC.
pub fn take_updated_at(product: &mut serde_json::Value) -> String {
    let time = product
        .as_object_mut()
        .and_then(|product| product.remove("updated_at"))
        .and_then(|time| time.as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("{product} has no updated_at"));
    assert!(
        time.ends_with('Z') && humantime::parse_rfc3339(&time).is_ok(),
        "updated_at {time} is not RFC 3339 in UTC"
    );
    time
}

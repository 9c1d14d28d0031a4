//! The settings' declaration, one group per part of the system: each
//! setting's flag, environment variable, default and allowed range (its
//! parser, from [`super::parse`]) are declared here, once. `products --help`,
//! the checks of [`super::Settings::validate`], `products config` and the
//! configuration page's table (docs/CONFIGURATION.md) all follow from this (the tests check the last two).

use super::UiManage;
use super::parse::*;
use actors::secret::{Secret, SecretUrl};
use clap::Args;
use ipnet::IpNet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Postgres: where, and how many connections.
#[derive(Args, Clone, Debug)]
pub struct DatabaseSettings {
    /// Postgres database (postgres:// or postgresql://, naming the database); it
    /// is created if it is missing. Its credentials are never printed.
    #[arg(
        id = "database_url",
        value_name = "DATABASE_URL",
        long = "database-url",
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        default_value = "postgres://postgres@localhost:5432/products"
    )]
    pub url: SecretUrl,

    /// Most connections to Postgres (2 to 1000).
    #[arg(id = "database_max_connections",
        value_name = "DATABASE_MAX_CONNECTIONS", long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS", global = true, default_value_t = 10,
          value_parser = number_in(bounds::DATABASE_MAX_CONNECTIONS))]
    pub max_connections: u32,

    /// A file holding DATABASE_URL (replaces it if both are set).
    #[arg(
        id = "database_url_file",
        value_name = "DATABASE_URL_FILE",
        long = "database-url-file",
        env = "DATABASE_URL_FILE",
        global = true
    )]
    pub url_file: Option<PathBuf>,
}

/// NATS and JetStream: where, the stream, the subject and the durable consumer.
#[derive(Args, Clone, Debug)]
pub struct NatsSettings {
    /// NATS server with JetStream, or several servers of one cluster,
    /// comma-separated (nats://, tls://, ws:// or wss://; user and password or
    /// a token may be given in it). Its credentials are never printed.
    #[arg(
        id = "nats_url",
        value_name = "NATS_URL",
        long = "nats-url",
        env = "NATS_URL",
        global = true,
        hide_env_values = true,
        default_value = "nats://localhost:4222"
    )]
    pub url: SecretUrl,

    /// A file holding NATS_URL (replaces it if both are set).
    #[arg(
        id = "nats_url_file",
        value_name = "NATS_URL_FILE",
        long = "nats-url-file",
        env = "NATS_URL_FILE",
        global = true
    )]
    pub url_file: Option<PathBuf>,

    /// JetStream stream; created if it is missing (1 to 255 characters, no
    /// spaces, '.', '*', '>', '/' or '\').
    #[arg(id = "nats_stream",
        value_name = "NATS_STREAM", long = "nats-stream", env = "NATS_STREAM", global = true, default_value = "EVENTS",
          value_parser = nats_name)]
    pub stream: String,

    /// Subjects the stream takes when this service creates it (comma-separated;
    /// wildcards '*' and '>' as whole tokens).
    #[arg(
        id = "nats_stream_subjects",
        value_name = "NATS_STREAM_SUBJECTS", long = "nats-stream-subjects",
        env = "NATS_STREAM_SUBJECTS",
        global = true,
        default_value = "events.>",
        value_delimiter = ',',
        value_parser = stream_subject
    )]
    pub stream_subjects: Vec<String>,

    /// Subject the product messages are published on and read from (no
    /// wildcards; one of the stream's subjects must take it).
    #[arg(id = "nats_subject",
        value_name = "NATS_SUBJECT", long = "nats-subject", env = "NATS_SUBJECT", global = true, default_value = "events.products",
          value_parser = publish_subject)]
    pub subject: String,

    /// Durable pull consumer that remembers what has been read (a name like
    /// the stream's).
    #[arg(id = "nats_durable",
        value_name = "NATS_DURABLE", long = "nats-durable", env = "NATS_DURABLE", global = true, default_value = "event-processor",
          value_parser = nats_name)]
    pub durable: String,

    /// How long JetStream waits for an ack before it redelivers a message (1s to 1h).
    #[arg(id = "nats_ack_wait",
        value_name = "NATS_ACK_WAIT", long = "nats-ack-wait", env = "NATS_ACK_WAIT", global = true, default_value = "30s",
          value_parser = duration_in(bounds::NATS_ACK_WAIT))]
    pub ack_wait: Duration,

    /// Delete and create again an existing durable consumer whose configuration
    /// JetStream cannot change to the one this service needs (another filter
    /// subject or ack policy). Without it, such a consumer stops the service
    /// with an error that names the difference.
    #[arg(id = "nats_recreate_consumer",
        value_name = "NATS_RECREATE_CONSUMER", long = "nats-recreate-consumer", env = "NATS_RECREATE_CONSUMER", global = true, default_value_t = false,
          action = clap::ArgAction::Set)]
    pub recreate_consumer: bool,

    /// How long JetStream drops a second publish with the same Nats-Msg-Id
    /// (set when this service creates the stream; 1s to 1day).
    #[arg(id = "nats_duplicate_window",
        value_name = "NATS_DUPLICATE_WINDOW", long = "nats-duplicate-window", env = "NATS_DUPLICATE_WINDOW", global = true, default_value = "2m",
          value_parser = duration_in(bounds::NATS_DUPLICATE_WINDOW))]
    pub duplicate_window: Duration,
}

/// How ingest stores what it reads.
#[derive(Args, Clone, Debug)]
pub struct IngestSettings {
    /// Most messages stored in one transaction (1 to 1000).
    #[arg(id = "ingest_batch_size",
        value_name = "INGEST_BATCH_SIZE", long = "ingest-batch-size", env = "INGEST_BATCH_SIZE", global = true, default_value_t = 500,
          value_parser = number_in(bounds::INGEST_BATCH_SIZE))]
    pub batch_size: u16,

    /// Deliveries of a message that Postgres refuses for a rule of the
    /// database (a constraint) before it is set aside in rejected_messages
    /// with Postgres's reason (1 to 100).
    #[arg(id = "ingest_max_deliveries",
        value_name = "INGEST_MAX_DELIVERIES", long = "ingest-max-deliveries", env = "INGEST_MAX_DELIVERIES", global = true, default_value_t = 5,
          value_parser = number_in(bounds::INGEST_MAX_DELIVERIES))]
    pub max_deliveries: u32,

    /// How long such a refused message waits before it comes again, doubling
    /// with each delivery up to a minute (100ms to 1m).
    #[arg(id = "ingest_retry_delay",
        value_name = "INGEST_RETRY_DELAY", long = "ingest-retry-delay", env = "INGEST_RETRY_DELAY", global = true, default_value = "1s",
          value_parser = duration_in(bounds::INGEST_RETRY_DELAY))]
    pub retry_delay: Duration,
}

/// The cache: its budget, its timer and its catch-ups.
#[derive(Args, Clone, Debug)]
pub struct CacheSettings {
    /// How often the cache is invalidated (1s to 1day).
    #[arg(id = "cache_invalidate_every",
        value_name = "CACHE_INVALIDATE_EVERY", long = "cache-invalidate-every", env = "CACHE_INVALIDATE_EVERY", global = true, default_value = "15s",
          value_parser = duration_in(bounds::CACHE_INVALIDATE_EVERY))]
    pub invalidate_every: Duration,

    /// Changed rows one catch-up of the change feed reads at most (100 to
    /// 1000000); past it, the blocks that hold them are read again whole.
    #[arg(id = "cache_catch_up_max_rows",
        value_name = "CACHE_CATCH_UP_MAX_ROWS", long = "cache-catch-up-max-rows", env = "CACHE_CATCH_UP_MAX_ROWS", global = true, default_value_t = 10_000,
          value_parser = number_in(bounds::CACHE_CATCH_UP_MAX_ROWS))]
    pub catch_up_max_rows: u64,

    /// The cache's memory budget in bytes (1048576 to 68719476736): products
    /// past it are evicted, least used first, and read from Postgres again.
    #[arg(id = "cache_max_bytes",
        value_name = "CACHE_MAX_BYTES", long = "cache-max-bytes", env = "CACHE_MAX_BYTES", global = true, default_value_t = 512 << 20,
          value_parser = number_in(bounds::CACHE_MAX_BYTES))]
    pub max_bytes: u64,
}

/// The web UI and the JSON API: where they listen, and what readiness and the change streams allow.
#[derive(Args, Clone, Debug)]
pub struct HttpSettings {
    /// Address the web UI and JSON API listen on.
    #[arg(
        id = "http_addr",
        value_name = "HTTP_ADDR",
        long = "http-addr",
        env = "HTTP_ADDR",
        global = true,
        default_value = "0.0.0.0:8000"
    )]
    pub addr: SocketAddr,

    /// The service is reached over HTTPS through a proxy that terminates TLS:
    /// cookies get `Secure` and the `__Host-` prefix.
    #[arg(id = "http_behind_tls",
        value_name = "HTTP_BEHIND_TLS", long = "http-behind-tls", env = "HTTP_BEHIND_TLS", global = true, default_value_t = false,
          action = clap::ArgAction::Set)]
    pub behind_tls: bool,

    /// Change streams (GET /products/changes, the live pages' included) and
    /// snapshots (GET /products.ndjson) open at once (1 to 100000); one more is
    /// answered 503 with Retry-After.
    #[arg(id = "events_max_followers",
        value_name = "EVENTS_MAX_FOLLOWERS", long = "events-max-followers", env = "EVENTS_MAX_FOLLOWERS", global = true, default_value_t = 1000,
          value_parser = number_in(bounds::EVENTS_MAX_FOLLOWERS))]
    pub events_max_followers: usize,

    /// How long the change stream (GET /products/changes) keeps a deletion
    /// (1s to 30days): a client may resume from any younger position; one
    /// from an older one is answered 410 and starts again from a snapshot.
    #[arg(id = "changes_retention",
        value_name = "CHANGES_RETENTION", long = "changes-retention", env = "CHANGES_RETENTION", global = true, default_value = "7days",
          value_parser = duration_in(bounds::CHANGES_RETENTION))]
    pub changes_retention: Duration,

    /// If set, a replica whose change feed has not caught up for longer than
    /// this answers /readyz with 503 (1s to 1day; off by default: an old
    /// answer is better than none).
    #[arg(id = "ready_max_lag",
        value_name = "READY_MAX_LAG", long = "ready-max-lag", env = "READY_MAX_LAG", global = true,
          value_parser = duration_in(bounds::READY_MAX_LAG))]
    pub ready_max_lag: Option<Duration>,

    /// Origins a browser may read the JSON API and the pages from (CORS),
    /// comma-separated (`https://shop.example`), or `*` for any; none by
    /// default. GET and HEAD only, never with cookies.
    #[arg(
        id = "http_cors_origins",
        value_name = "HTTP_CORS_ORIGINS",
        long = "http-cors-origins",
        env = "HTTP_CORS_ORIGINS",
        global = true,
        value_delimiter = ',',
        value_parser = cors_origin
    )]
    pub cors_origins: Vec<String>,
}

/// A graceful shutdown: its budget and its drain.
#[derive(Args, Clone, Debug)]
pub struct ShutdownSettings {
    /// How long a graceful shutdown may take in all, from the signal to the
    /// exit (1s to 10m).
    #[arg(id = "shutdown_timeout",
        value_name = "SHUTDOWN_TIMEOUT", long = "shutdown-timeout", env = "SHUTDOWN_TIMEOUT", global = true, default_value = "25s",
          value_parser = duration_in(bounds::SHUTDOWN_TIMEOUT))]
    pub timeout: Duration,

    /// On SIGTERM or Ctrl-C, how long /readyz answers 503 while requests
    /// are still served, before the listener closes (0s to 5m, less than
    /// SHUTDOWN_TIMEOUT, whose budget it is part of). A second signal exits
    /// at once.
    #[arg(id = "shutdown_drain",
        value_name = "SHUTDOWN_DRAIN", long = "shutdown-drain", env = "SHUTDOWN_DRAIN", global = true, default_value = "5s",
          value_parser = duration_in(bounds::SHUTDOWN_DRAIN))]
    pub drain: Duration,
}

/// Who may change products through the forms (docs/SECURITY.md).
#[derive(Args, Clone, Debug)]
pub struct ManageSettings {
    /// Whether the web UI offers signed-in operators forms to add, edit and
    /// delete products (each publishes a message to NATS_SUBJECT): `auto`
    /// when operators are configured (MANAGE_USERS_FILE or
    /// MANAGE_TRUSTED_PROXIES), `true` to refuse to start without them,
    /// `false` for a read-only deployment.
    #[arg(
        id = "ui_manage",
        value_name = "UI_MANAGE",
        long = "ui-manage",
        env = "UI_MANAGE",
        global = true,
        default_value = "auto"
    )]
    pub ui: UiManage,

    /// Operators who sign in at /signin: a file of `name:hash` lines, each
    /// hash written by `products hash-password` (argon2id).
    #[arg(
        id = "manage_users_file",
        value_name = "MANAGE_USERS_FILE",
        long = "manage-users-file",
        env = "MANAGE_USERS_FILE",
        global = true
    )]
    pub users_file: Option<PathBuf>,

    /// Addresses of an authenticating proxy (IPs or CIDRs, comma-separated)
    /// whose MANAGE_USER_HEADER names the operator; the header is ignored
    /// from any other address.
    #[arg(id = "manage_trusted_proxies",
        value_name = "MANAGE_TRUSTED_PROXIES", long = "manage-trusted-proxies", env = "MANAGE_TRUSTED_PROXIES", global = true, value_delimiter = ',',
          value_parser = proxy_net)]
    pub trusted_proxies: Vec<IpNet>,

    /// The header in which a trusted proxy names the operator.
    #[arg(id = "manage_user_header",
        value_name = "MANAGE_USER_HEADER", long = "manage-user-header", env = "MANAGE_USER_HEADER", global = true, default_value = "X-Forwarded-User",
          value_parser = header_name)]
    pub user_header: String,

    /// The key that signs operators' sessions and forms' tokens (at least 32
    /// bytes; the same on every replica). Without one, a random key is made
    /// at start: sessions then end with a restart and hold on one replica only.
    #[arg(
        id = "manage_session_key",
        value_name = "MANAGE_SESSION_KEY",
        long = "manage-session-key",
        env = "MANAGE_SESSION_KEY",
        global = true,
        hide_env_values = true
    )]
    pub session_key: Option<Secret>,

    /// A file holding MANAGE_SESSION_KEY (replaces it if both are set).
    #[arg(
        id = "manage_session_key_file",
        value_name = "MANAGE_SESSION_KEY_FILE",
        long = "manage-session-key-file",
        env = "MANAGE_SESSION_KEY_FILE",
        global = true
    )]
    pub session_key_file: Option<PathBuf>,

    /// An operator's session ends after this long unused (1m to 1day).
    #[arg(id = "manage_session_idle",
        value_name = "MANAGE_SESSION_IDLE", long = "manage-session-idle", env = "MANAGE_SESSION_IDLE", global = true, default_value = "30m",
          value_parser = duration_in(bounds::MANAGE_SESSION_IDLE))]
    pub session_idle: Duration,

    /// An operator's session ends this long after signing in, however it is
    /// used (1m to 30days).
    #[arg(id = "manage_session_max",
        value_name = "MANAGE_SESSION_MAX", long = "manage-session-max", env = "MANAGE_SESSION_MAX", global = true, default_value = "12h",
          value_parser = duration_in(bounds::MANAGE_SESSION_MAX))]
    pub session_max: Duration,
}

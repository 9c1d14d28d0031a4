//! Every setting of the service, in one typed place: a flag each, with its
//! environment variable, its default and its allowed range (`products --help`
//! lists them). A value out of range is refused when it is parsed, with the
//! setting, the value and the range; [`Settings::validate`] checks the same
//! ranges again (for settings built in code) and the rules between settings.
//! URLs that may carry credentials are [`SecretUrl`]s, and keys [`Secret`]s:
//! they print redacted. Every secret can also come from a file
//! (`DATABASE_URL_FILE`, `NATS_URL_FILE`, `MANAGE_SESSION_KEY_FILE`), read by
//! [`Settings::with_secret_files`].

use actors::http::access::{self, Access};
use actors::http::publisher::PublishTo;
use actors::http::session::{Lifetimes, SessionKey};
use actors::ingest::IngestConfig;
use actors::jetstream::StreamSpec;
use actors::secret::{Secret, SecretUrl};
use clap::{Args, ValueEnum};
use ipnet::IpNet;
use std::collections::HashMap;
use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

/// The range of each bounded setting: the parsers, [`Settings::validate`] and
/// the tests read them from here (`--help` and the README state them in words).
pub mod bounds {
    use std::ops::RangeInclusive;
    use std::time::Duration;

    /// At least two: one for the writer's transaction, one for reads (pages,
    /// the readiness probe, the cache rebuild), which would otherwise wait for it.
    pub const DATABASE_MAX_CONNECTIONS: RangeInclusive<u32> = 2..=1000;
    /// At most 1000 rows per transaction (and 4 × this many unacked messages).
    pub const INGEST_BATCH_SIZE: RangeInclusive<u16> = 1..=1000;
    pub const INGEST_MAX_DELIVERIES: RangeInclusive<u32> = 1..=100;
    /// Doubled with each delivery, up to a minute.
    pub const INGEST_RETRY_DELAY: RangeInclusive<Duration> = millis(100)..=secs(60);
    /// Up to ten million products (a few GB of memory).
    /// 1 MiB to 64 GiB.
    pub const CACHE_MAX_BYTES: RangeInclusive<u64> = (1 << 20)..=(64 << 30);
    pub const NATS_ACK_WAIT: RangeInclusive<Duration> = secs(1)..=secs(3600);
    pub const NATS_DUPLICATE_WINDOW: RangeInclusive<Duration> = secs(1)..=secs(86_400);
    /// Rows one catch-up of the change feed reads at most.
    pub const CACHE_CATCH_UP_MAX_ROWS: RangeInclusive<u64> = 100..=1_000_000;
    /// The timer panics on zero; more often than once a second only thrashes.
    pub const CACHE_INVALIDATE_EVERY: RangeInclusive<Duration> = secs(1)..=secs(86_400);
    pub const SHUTDOWN_TIMEOUT: RangeInclusive<Duration> = secs(1)..=secs(600);
    /// Less than `SHUTDOWN_TIMEOUT`, whose budget it is part of.
    pub const SHUTDOWN_DRAIN: RangeInclusive<Duration> = secs(0)..=secs(300);
    pub const READY_MAX_LAG: RangeInclusive<Duration> = secs(1)..=secs(86_400);
    /// JetStream's longest stream or consumer name.
    pub const NATS_NAME_LEN: RangeInclusive<usize> = 1..=255;
    /// Each open feed holds a connection and a receiver of the broadcast.
    pub const EVENTS_MAX_FOLLOWERS: RangeInclusive<usize> = 1..=100_000;
    pub const MANAGE_SESSION_IDLE: RangeInclusive<Duration> = secs(60)..=secs(86_400);
    pub const MANAGE_SESSION_MAX: RangeInclusive<Duration> = secs(60)..=secs(30 * 86_400);

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    const fn millis(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }
}

#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Postgres database (postgres:// or postgresql://, naming the database); it
    /// is created if it is missing. Its credentials are never printed.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        hide_env_values = true,
        default_value = "postgres://postgres@localhost:5432/products"
    )]
    pub database_url: SecretUrl,

    /// Most connections to Postgres (2 to 1000).
    #[arg(long, env = "DATABASE_MAX_CONNECTIONS", global = true, default_value_t = 10,
          value_parser = number_in(bounds::DATABASE_MAX_CONNECTIONS))]
    pub database_max_connections: u32,

    /// NATS server with JetStream, or several servers of one cluster,
    /// comma-separated (nats://, tls://, ws:// or wss://; user and password or
    /// a token may be given in it). Its credentials are never printed.
    #[arg(
        long,
        env = "NATS_URL",
        global = true,
        hide_env_values = true,
        default_value = "nats://localhost:4222"
    )]
    pub nats_url: SecretUrl,

    /// Address the web UI and JSON API listen on.
    #[arg(long, env = "HTTP_ADDR", global = true, default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,

    /// JetStream stream; created if it is missing (1 to 255 characters, no
    /// spaces, '.', '*', '>', '/' or '\').
    #[arg(long, env = "NATS_STREAM", global = true, default_value = "EVENTS",
          value_parser = nats_name)]
    pub nats_stream: String,

    /// Subjects the stream takes when this service creates it (comma-separated;
    /// wildcards '*' and '>' as whole tokens).
    #[arg(
        long,
        env = "NATS_STREAM_SUBJECTS",
        global = true,
        default_value = "events.>",
        value_delimiter = ',',
        value_parser = stream_subject
    )]
    pub nats_stream_subjects: Vec<String>,

    /// Subject the product messages are published on and read from (no
    /// wildcards; one of the stream's subjects must take it).
    #[arg(long, env = "NATS_SUBJECT", global = true, default_value = "events.products",
          value_parser = publish_subject)]
    pub nats_subject: String,

    /// Durable pull consumer that remembers what has been read (a name like
    /// the stream's).
    #[arg(long, env = "NATS_DURABLE", global = true, default_value = "event-processor",
          value_parser = nats_name)]
    pub nats_durable: String,

    /// How long JetStream waits for an ack before it redelivers a message (1s to 1h).
    #[arg(long, env = "NATS_ACK_WAIT", global = true, default_value = "30s",
          value_parser = duration_in(bounds::NATS_ACK_WAIT))]
    pub nats_ack_wait: Duration,

    /// Delete and create again an existing durable consumer whose configuration
    /// JetStream cannot change to the one this service needs (another filter
    /// subject or ack policy). Without it, such a consumer stops the service
    /// with an error that names the difference.
    #[arg(long, env = "NATS_RECREATE_CONSUMER", global = true, default_value_t = false,
          action = clap::ArgAction::Set)]
    pub nats_recreate_consumer: bool,

    /// How long JetStream drops a second publish with the same Nats-Msg-Id
    /// (set when this service creates the stream; 1s to 1day).
    #[arg(long, env = "NATS_DUPLICATE_WINDOW", global = true, default_value = "2m",
          value_parser = duration_in(bounds::NATS_DUPLICATE_WINDOW))]
    pub nats_duplicate_window: Duration,

    /// Most messages stored in one transaction (1 to 1000).
    #[arg(long, env = "INGEST_BATCH_SIZE", global = true, default_value_t = 500,
          value_parser = number_in(bounds::INGEST_BATCH_SIZE))]
    pub ingest_batch_size: u16,

    /// Deliveries of a message that Postgres refuses for a rule of the
    /// database (a constraint) before it is set aside in rejected_messages
    /// with Postgres's reason (1 to 100).
    #[arg(long, env = "INGEST_MAX_DELIVERIES", global = true, default_value_t = 5,
          value_parser = number_in(bounds::INGEST_MAX_DELIVERIES))]
    pub ingest_max_deliveries: u32,

    /// How long such a refused message waits before it comes again, doubling
    /// with each delivery up to a minute (100ms to 1m).
    #[arg(long, env = "INGEST_RETRY_DELAY", global = true, default_value = "1s",
          value_parser = duration_in(bounds::INGEST_RETRY_DELAY))]
    pub ingest_retry_delay: Duration,

    /// How often the cache is invalidated (1s to 1day).
    #[arg(long, env = "CACHE_INVALIDATE_EVERY", global = true, default_value = "15s",
          value_parser = duration_in(bounds::CACHE_INVALIDATE_EVERY))]
    pub cache_invalidate_every: Duration,

    /// Changed rows one catch-up of the change feed reads at most (100 to
    /// 1000000); past it, the blocks that hold them are read again whole.
    #[arg(long, env = "CACHE_CATCH_UP_MAX_ROWS", global = true, default_value_t = 10_000,
          value_parser = number_in(bounds::CACHE_CATCH_UP_MAX_ROWS))]
    pub cache_catch_up_max_rows: u64,

    /// The cache's memory budget in bytes (1048576 to 68719476736): products
    /// past it are evicted, least used first, and read from Postgres again.
    #[arg(long, env = "CACHE_MAX_BYTES", global = true, default_value_t = 512 << 20,
          value_parser = number_in(bounds::CACHE_MAX_BYTES))]
    pub cache_max_bytes: u64,

    /// How long a graceful shutdown may take in all, from the signal to the
    /// exit (1s to 10m).
    #[arg(long, env = "SHUTDOWN_TIMEOUT", global = true, default_value = "25s",
          value_parser = duration_in(bounds::SHUTDOWN_TIMEOUT))]
    pub shutdown_timeout: Duration,

    /// On SIGTERM or Ctrl-C, how long /readyz answers 503 while requests
    /// are still served, before the listener closes (0s to 5m, less than
    /// SHUTDOWN_TIMEOUT, whose budget it is part of). A second signal exits
    /// at once.
    #[arg(long, env = "SHUTDOWN_DRAIN", global = true, default_value = "5s",
          value_parser = duration_in(bounds::SHUTDOWN_DRAIN))]
    pub shutdown_drain: Duration,

    /// If set, a replica whose change feed has not caught up for longer than
    /// this answers /readyz with 503 (1s to 1day; off by default: an old
    /// answer is better than none).
    #[arg(long, env = "READY_MAX_LAG", global = true,
          value_parser = duration_in(bounds::READY_MAX_LAG))]
    pub ready_max_lag: Option<Duration>,

    /// Whether the web UI offers signed-in operators forms to add, edit and
    /// delete products (each publishes a message to NATS_SUBJECT): `auto`
    /// when operators are configured (MANAGE_USERS_FILE or
    /// MANAGE_TRUSTED_PROXIES), `true` to refuse to start without them,
    /// `false` for a read-only deployment.
    #[arg(long, env = "UI_MANAGE", global = true, default_value = "auto")]
    pub ui_manage: UiManage,

    /// Operators who sign in at /signin: a file of `name:hash` lines, each
    /// hash written by `products hash-password` (argon2id).
    #[arg(long, env = "MANAGE_USERS_FILE", global = true)]
    pub manage_users_file: Option<PathBuf>,

    /// Addresses of an authenticating proxy (IPs or CIDRs, comma-separated)
    /// whose MANAGE_USER_HEADER names the operator; the header is ignored
    /// from any other address.
    #[arg(long, env = "MANAGE_TRUSTED_PROXIES", global = true, value_delimiter = ',',
          value_parser = proxy_net)]
    pub manage_trusted_proxies: Vec<IpNet>,

    /// The header in which a trusted proxy names the operator.
    #[arg(long, env = "MANAGE_USER_HEADER", global = true, default_value = "X-Forwarded-User",
          value_parser = header_name)]
    pub manage_user_header: String,

    /// The key that signs operators' sessions and forms' tokens (at least 32
    /// bytes; the same on every replica). Without one, a random key is made
    /// at start: sessions then end with a restart and hold on one replica only.
    #[arg(
        long,
        env = "MANAGE_SESSION_KEY",
        global = true,
        hide_env_values = true
    )]
    pub manage_session_key: Option<Secret>,

    /// A file holding MANAGE_SESSION_KEY (replaces it if both are set).
    #[arg(long, env = "MANAGE_SESSION_KEY_FILE", global = true)]
    pub manage_session_key_file: Option<PathBuf>,

    /// An operator's session ends after this long unused (1m to 1day).
    #[arg(long, env = "MANAGE_SESSION_IDLE", global = true, default_value = "30m",
          value_parser = duration_in(bounds::MANAGE_SESSION_IDLE))]
    pub manage_session_idle: Duration,

    /// An operator's session ends this long after signing in, however it is
    /// used (1m to 30days).
    #[arg(long, env = "MANAGE_SESSION_MAX", global = true, default_value = "12h",
          value_parser = duration_in(bounds::MANAGE_SESSION_MAX))]
    pub manage_session_max: Duration,

    /// The service is reached over HTTPS through a proxy that terminates TLS:
    /// cookies get `Secure` and the `__Host-` prefix.
    #[arg(long, env = "HTTP_BEHIND_TLS", global = true, default_value_t = false,
          action = clap::ArgAction::Set)]
    pub http_behind_tls: bool,

    /// Live feeds (GET /events) open at once (1 to 100000); one more is
    /// answered 503 with Retry-After.
    #[arg(long, env = "EVENTS_MAX_FOLLOWERS", global = true, default_value_t = 1000,
          value_parser = number_in(bounds::EVENTS_MAX_FOLLOWERS))]
    pub events_max_followers: usize,

    /// A file holding DATABASE_URL (replaces it if both are set).
    #[arg(long, env = "DATABASE_URL_FILE", global = true)]
    pub database_url_file: Option<PathBuf>,

    /// A file holding NATS_URL (replaces it if both are set).
    #[arg(long, env = "NATS_URL_FILE", global = true)]
    pub nats_url_file: Option<PathBuf>,

    /// Log format: `pretty` for people, `json` for log collectors.
    /// Levels come from RUST_LOG [default: info].
    #[arg(long, env = "LOG_FORMAT", global = true, default_value = "pretty")]
    pub log_format: LogFormat,
}

/// Whether the manage forms are on (see `UI_MANAGE`).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum UiManage {
    /// On when operators are configured.
    Auto,
    /// On; refused at start without operators.
    True,
    /// Off.
    False,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// A setting refused at start: which (its environment variable), the value
/// (redacted if it is a URL) and the rule it breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value} is refused: {rule}")]
pub struct InvalidSetting {
    pub var: &'static str,
    pub value: String,
    pub rule: String,
}

impl Settings {
    /// The settings as `products` sees them with no flag: the defaults, or the
    /// environment variables where set (tests start from here and set their own).
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Only {
            #[command(flatten)]
            settings: Settings,
        }
        Only::parse_from(["products"]).settings
    }

    /// The settings with each secret given as a file (`*_FILE`) read into
    /// its setting (a file's trailing line break is not part of the secret).
    pub fn with_secret_files(mut self) -> Result<Settings, InvalidSetting> {
        if let Some(path) = &self.database_url_file {
            self.database_url = read_secret("DATABASE_URL_FILE", path)?.into();
        }
        if let Some(path) = &self.nats_url_file {
            self.nats_url = read_secret("NATS_URL_FILE", path)?.into();
        }
        if let Some(path) = &self.manage_session_key_file {
            self.manage_session_key = Some(
                read_secret("MANAGE_SESSION_KEY_FILE", path)?
                    .as_str()
                    .into(),
            );
        }
        Ok(self)
    }

    /// Checks every setting against its range and the rules between settings.
    /// The parsers refuse most of this already; this also covers settings
    /// built in code, and the rules no single value can break.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        use bounds::*;
        in_range(
            "DATABASE_MAX_CONNECTIONS",
            self.database_max_connections,
            DATABASE_MAX_CONNECTIONS,
            |v| v.to_string(),
        )?;
        in_range(
            "INGEST_BATCH_SIZE",
            self.ingest_batch_size,
            INGEST_BATCH_SIZE,
            |v| v.to_string(),
        )?;
        in_range(
            "CACHE_MAX_BYTES",
            self.cache_max_bytes,
            CACHE_MAX_BYTES,
            |v| v.to_string(),
        )?;
        in_range(
            "INGEST_MAX_DELIVERIES",
            self.ingest_max_deliveries,
            INGEST_MAX_DELIVERIES,
            |v| v.to_string(),
        )?;
        in_range(
            "CACHE_CATCH_UP_MAX_ROWS",
            self.cache_catch_up_max_rows,
            CACHE_CATCH_UP_MAX_ROWS,
            |v| v.to_string(),
        )?;
        in_range(
            "EVENTS_MAX_FOLLOWERS",
            self.events_max_followers,
            EVENTS_MAX_FOLLOWERS,
            |v| v.to_string(),
        )?;
        for (var, value, range) in [
            ("NATS_ACK_WAIT", self.nats_ack_wait, NATS_ACK_WAIT),
            (
                "NATS_DUPLICATE_WINDOW",
                self.nats_duplicate_window,
                NATS_DUPLICATE_WINDOW,
            ),
            (
                "CACHE_INVALIDATE_EVERY",
                self.cache_invalidate_every,
                CACHE_INVALIDATE_EVERY,
            ),
            ("SHUTDOWN_TIMEOUT", self.shutdown_timeout, SHUTDOWN_TIMEOUT),
            ("SHUTDOWN_DRAIN", self.shutdown_drain, SHUTDOWN_DRAIN),
            (
                "INGEST_RETRY_DELAY",
                self.ingest_retry_delay,
                INGEST_RETRY_DELAY,
            ),
            (
                "MANAGE_SESSION_IDLE",
                self.manage_session_idle,
                MANAGE_SESSION_IDLE,
            ),
            (
                "MANAGE_SESSION_MAX",
                self.manage_session_max,
                MANAGE_SESSION_MAX,
            ),
        ] {
            in_range(var, value, range, |d| show_duration(*d))?;
        }
        refuse("DATABASE_URL", &self.database_url, check_database_url)?;
        refuse("NATS_URL", &self.nats_url, check_nats_url)?;
        refuse("NATS_STREAM", self.nats_stream.as_str(), nats_name)?;
        refuse("NATS_DURABLE", self.nats_durable.as_str(), nats_name)?;
        refuse("NATS_SUBJECT", self.nats_subject.as_str(), publish_subject)?;
        let subjects = self.nats_stream_subjects.join(",");
        if self.nats_stream_subjects.is_empty() {
            return Err(invalid(
                "NATS_STREAM_SUBJECTS",
                &subjects,
                "names no subject",
            ));
        }
        for subject in &self.nats_stream_subjects {
            stream_subject(subject).map_err(|rule| {
                invalid(
                    "NATS_STREAM_SUBJECTS",
                    &subjects,
                    format!("{subject:?} {rule}"),
                )
            })?;
        }
        if !self
            .nats_stream_subjects
            .iter()
            .any(|pattern| subject_matches(pattern, &self.nats_subject))
        {
            return Err(invalid(
                "NATS_SUBJECT",
                &self.nats_subject,
                format!(
                    "none of the stream's subjects (NATS_STREAM_SUBJECTS={subjects}) takes it, \
                     so the stream this service creates would never hold the products"
                ),
            ));
        }
        if let Some(lag) = self.ready_max_lag {
            in_range("READY_MAX_LAG", lag, READY_MAX_LAG, |d| show_duration(*d))?;
        }
        if self.shutdown_drain >= self.shutdown_timeout {
            return Err(invalid(
                "SHUTDOWN_DRAIN",
                &show_duration(self.shutdown_drain),
                format!(
                    "must be less than SHUTDOWN_TIMEOUT={}, whose budget it is part of",
                    show_duration(self.shutdown_timeout)
                ),
            ));
        }
        self.check_manage()
    }

    /// The rules of managing: forms asked for need operators, the users file
    /// must read, the key must be long enough.
    fn check_manage(&self) -> Result<(), InvalidSetting> {
        let users = self.users()?;
        if self.ui_manage == UiManage::True
            && users.is_empty()
            && self.manage_trusted_proxies.is_empty()
        {
            return Err(invalid(
                "UI_MANAGE",
                "true",
                "the forms need operators: set MANAGE_USERS_FILE (with lines written by \
                 `products hash-password`) or MANAGE_TRUSTED_PROXIES (an authenticating proxy); \
                 see docs/SECURITY.md",
            ));
        }
        if let Some(key) = &self.manage_session_key {
            SessionKey::new(key.expose().as_bytes().to_vec())
                .map_err(|rule| invalid("MANAGE_SESSION_KEY", "***", rule))?;
        }
        Ok(())
    }

    /// The operators of `MANAGE_USERS_FILE` (none without one).
    fn users(&self) -> Result<HashMap<String, String>, InvalidSetting> {
        let Some(path) = &self.manage_users_file else {
            return Ok(HashMap::new());
        };
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| invalid("MANAGE_USERS_FILE", &shown, format!("cannot be read: {e}")))?;
        access::parse_users(&text).map_err(|rule| invalid("MANAGE_USERS_FILE", &shown, rule))
    }

    /// Each setting as `VAR=value`, the URLs redacted: what `products config` prints.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DATABASE_URL", self.database_url.to_string()),
            (
                "DATABASE_MAX_CONNECTIONS",
                self.database_max_connections.to_string(),
            ),
            ("NATS_URL", self.nats_url.to_string()),
            ("HTTP_ADDR", self.http_addr.to_string()),
            ("NATS_STREAM", self.nats_stream.clone()),
            ("NATS_STREAM_SUBJECTS", self.nats_stream_subjects.join(",")),
            ("NATS_SUBJECT", self.nats_subject.clone()),
            ("NATS_DURABLE", self.nats_durable.clone()),
            (
                "NATS_RECREATE_CONSUMER",
                self.nats_recreate_consumer.to_string(),
            ),
            ("NATS_ACK_WAIT", show_duration(self.nats_ack_wait)),
            (
                "NATS_DUPLICATE_WINDOW",
                show_duration(self.nats_duplicate_window),
            ),
            ("INGEST_BATCH_SIZE", self.ingest_batch_size.to_string()),
            (
                "INGEST_MAX_DELIVERIES",
                self.ingest_max_deliveries.to_string(),
            ),
            ("INGEST_RETRY_DELAY", show_duration(self.ingest_retry_delay)),
            (
                "CACHE_INVALIDATE_EVERY",
                show_duration(self.cache_invalidate_every),
            ),
            ("CACHE_MAX_BYTES", self.cache_max_bytes.to_string()),
            (
                "CACHE_CATCH_UP_MAX_ROWS",
                self.cache_catch_up_max_rows.to_string(),
            ),
            ("SHUTDOWN_TIMEOUT", show_duration(self.shutdown_timeout)),
            ("SHUTDOWN_DRAIN", show_duration(self.shutdown_drain)),
            (
                "READY_MAX_LAG",
                self.ready_max_lag.map(show_duration).unwrap_or_default(),
            ),
            ("UI_MANAGE", value_name(self.ui_manage)),
            (
                "MANAGE_USERS_FILE",
                show_path(self.manage_users_file.as_deref()),
            ),
            (
                "MANAGE_TRUSTED_PROXIES",
                self.manage_trusted_proxies
                    .iter()
                    .map(IpNet::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            ("MANAGE_USER_HEADER", self.manage_user_header.clone()),
            (
                "MANAGE_SESSION_KEY",
                self.manage_session_key
                    .as_ref()
                    .map(Secret::to_string)
                    .unwrap_or_default(),
            ),
            (
                "MANAGE_SESSION_KEY_FILE",
                show_path(self.manage_session_key_file.as_deref()),
            ),
            (
                "MANAGE_SESSION_IDLE",
                show_duration(self.manage_session_idle),
            ),
            ("MANAGE_SESSION_MAX", show_duration(self.manage_session_max)),
            ("HTTP_BEHIND_TLS", self.http_behind_tls.to_string()),
            (
                "EVENTS_MAX_FOLLOWERS",
                self.events_max_followers.to_string(),
            ),
            (
                "DATABASE_URL_FILE",
                show_path(self.database_url_file.as_deref()),
            ),
            ("NATS_URL_FILE", show_path(self.nats_url_file.as_deref())),
            ("LOG_FORMAT", value_name(self.log_format)),
        ]
    }

    /// The database URL with its credentials masked, for logs (the same as
    /// `database_url`'s `Display`).
    pub fn database_url_redacted(&self) -> String {
        self.database_url.redacted()
    }

    /// Who may manage products and where the forms publish, if managing is
    /// on (see `UI_MANAGE`). Without a session key, a random one is made (and
    /// a warning says what that means).
    pub fn manage(&self) -> Result<Option<actors::http::ManageArgs>, InvalidSetting> {
        self.check_manage()?;
        let users = self.users()?;
        let operators = !users.is_empty() || !self.manage_trusted_proxies.is_empty();
        if self.ui_manage == UiManage::False || !operators {
            return Ok(None);
        }
        let key = match &self.manage_session_key {
            Some(key) => SessionKey::new(key.expose().as_bytes().to_vec())
                .map_err(|rule| invalid("MANAGE_SESSION_KEY", "***", rule))?,
            None => {
                tracing::warn!(
                    "MANAGE_SESSION_KEY is not set: a random key signs the sessions, so operators \
                     sign in again after a restart, and a session holds on this replica only"
                );
                SessionKey::random()
            }
        };
        Ok(Some(actors::http::ManageArgs {
            access: Access {
                users: Arc::new(users),
                trusted_proxies: self.manage_trusted_proxies.clone(),
                user_header: self.manage_user_header.clone(),
                key,
                lifetimes: Lifetimes {
                    idle: self.manage_session_idle,
                    max: self.manage_session_max,
                },
                secure_cookies: self.http_behind_tls,
            },
            publish: PublishTo {
                nats_url: self.nats_url.clone(),
                subject: self.nats_subject.clone(),
                stream: self.nats_stream.clone(),
            },
        }))
    }

    /// The stream, as ingest, `produce` and `smoke` create it when it is missing.
    pub fn stream(&self) -> StreamSpec {
        StreamSpec {
            name: self.nats_stream.clone(),
            subjects: self.nats_stream_subjects.clone(),
            duplicate_window: self.nats_duplicate_window,
        }
    }

    pub fn ingest(&self) -> IngestConfig {
        IngestConfig {
            nats_url: self.nats_url.clone(),
            stream: self.stream(),
            subject: self.nats_subject.clone(),
            durable: self.nats_durable.clone(),
            batch_size: usize::from(self.ingest_batch_size),
            ack_wait: self.nats_ack_wait,
            recreate_consumer: self.nats_recreate_consumer,
            max_deliveries: self.ingest_max_deliveries,
            retry_delay: self.ingest_retry_delay,
        }
    }
}

fn invalid(var: &'static str, value: &str, rule: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        var,
        value: value.to_owned(),
        rule: rule.into(),
    }
}

fn refuse<V: Display + ?Sized, T>(
    var: &'static str,
    value: &V,
    check: impl Fn(&V) -> Result<T, String>,
) -> Result<(), InvalidSetting> {
    check(value)
        .map(drop)
        .map_err(|rule| invalid(var, &value.to_string(), rule))
}

fn in_range<T: PartialOrd>(
    var: &'static str,
    value: T,
    range: RangeInclusive<T>,
    show: impl Fn(&T) -> String,
) -> Result<(), InvalidSetting> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(invalid(var, &show(&value), range_rule(&range, show)))
    }
}

fn range_rule<T>(range: &RangeInclusive<T>, show: impl Fn(&T) -> String) -> String {
    format!(
        "must be from {} to {}",
        show(range.start()),
        show(range.end())
    )
}

/// The secret in the file at `path`, without its trailing line break.
fn read_secret(var: &'static str, path: &Path) -> Result<String, InvalidSetting> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(
            var,
            &path.display().to_string(),
            format!("cannot be read: {e}"),
        )
    })?;
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

fn show_path(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

/// A value's name as clap takes it.
fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .map(|v| v.get_name().to_owned())
        .unwrap_or_default()
}

/// A trusted proxy: an address (`10.0.0.7`) or a network (`10.0.0.0/8`).
fn proxy_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| "expected an IP address or a network such as 10.0.0.0/8".to_owned())
}

/// A header name as HTTP takes it.
fn header_name(text: &str) -> Result<String, String> {
    let ok = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if ok {
        Ok(text.to_ascii_lowercase())
    } else {
        Err("is not a header name (letters, digits and - only, e.g. X-Forwarded-User)".into())
    }
}

/// `30s`, `2m`, `1h 30m`, as humantime reads and writes them.
pub fn show_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// A clap parser for a number within `range`.
fn number_in<T>(
    range: RangeInclusive<T>,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static
where
    T: FromStr + PartialOrd + Display + Clone + Send + Sync + 'static,
    T::Err: Display,
{
    move |text| {
        let value: T = text.trim().parse().map_err(|e| format!("{e}"))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(range_rule(&range, T::to_string))
        }
    }
}

/// A clap parser for a duration (`15s`, `2m`, `1h 30m`) within `range`.
fn duration_in(
    range: RangeInclusive<Duration>,
) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let value = humantime::parse_duration(text.trim())
            .map_err(|e| format!("{e} (expected e.g. 15s, 2m or 1h)"))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(range_rule(&range, |d| show_duration(*d)))
        }
    }
}

/// A stream or consumer name as JetStream takes it.
fn nats_name(name: &str) -> Result<String, String> {
    let len = name.chars().count();
    if !bounds::NATS_NAME_LEN.contains(&len) {
        return Err(format!(
            "must be from {} to {} characters long",
            bounds::NATS_NAME_LEN.start(),
            bounds::NATS_NAME_LEN.end()
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "must not contain {c:?} (no spaces, '.', '*', '>', '/' or '\\')"
        ));
    }
    Ok(name.to_owned())
}

/// A subject a stream may take: tokens separated by dots, `*` and `>` as
/// whole tokens, `>` only at the end.
fn stream_subject(subject: &str) -> Result<String, String> {
    if subject.is_empty() {
        return Err("is empty".into());
    }
    if let Some(c) = subject
        .chars()
        .find(|c| c.is_whitespace() || c.is_control())
    {
        return Err(format!("must not contain {c:?} (no spaces)"));
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (i, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("has an empty token (a dot at either end, or two dots)".into());
        }
        if token.contains(['*', '>']) && *token != "*" && *token != ">" {
            return Err("has a wildcard ('*' or '>') that is not a whole token".into());
        }
        if *token == ">" && i + 1 != tokens.len() {
            return Err("has '>' before its last token".into());
        }
    }
    Ok(subject.to_owned())
}

/// A subject messages are published on: a stream subject without wildcards.
fn publish_subject(subject: &str) -> Result<String, String> {
    let subject = stream_subject(subject)?;
    if subject.split('.').any(|t| t == "*" || t == ">") {
        return Err(
            "must not contain a wildcard ('*' or '>'): products are published on it".into(),
        );
    }
    Ok(subject)
}

/// Whether the stream subject `pattern` takes messages published on `subject`.
fn subject_matches(pattern: &str, subject: &str) -> bool {
    let mut subject = subject.split('.');
    for token in pattern.split('.') {
        match (token, subject.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (token, Some(s)) if token == s => {}
            _ => return false,
        }
    }
    subject.next().is_none()
}

fn check_database_url(url: &SecretUrl) -> Result<(), String> {
    let parsed = url::Url::parse(url.expose()).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(format!(
            "the scheme is {:?}; expected postgres:// or postgresql://",
            parsed.scheme()
        ));
    }
    if parsed.path().trim_start_matches('/').is_empty() {
        return Err("names no database (expected e.g. postgres://host/products)".into());
    }
    Ok(())
}

fn check_nats_url(url: &SecretUrl) -> Result<(), String> {
    let servers: Vec<&str> = url.expose().split(',').map(str::trim).collect();
    if servers.iter().any(|server| server.is_empty()) {
        return Err("an empty server in the list".into());
    }
    // async-nats's own parser: what it refuses, connecting would refuse later.
    for server in servers {
        server
            .parse::<async_nats::ServerAddr>()
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        Settings::defaults()
    }

    #[test]
    fn the_defaults_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn a_zero_invalidation_period_is_refused_with_the_range() {
        let mut settings = valid();
        settings.cache_invalidate_every = Duration::ZERO;
        let error = settings.validate().unwrap_err();
        assert_eq!(error.var, "CACHE_INVALIDATE_EVERY");
        assert_eq!(
            error.to_string(),
            "CACHE_INVALIDATE_EVERY=0s is refused: must be from 1s to 1day"
        );
    }

    #[test]
    fn each_bounded_setting_is_refused_just_outside_its_range_and_taken_at_its_ends() {
        type Set = fn(&mut Settings, bool);
        // (variable, set it to just outside (true) or to the end of its range (false))
        let cases: [(&str, Set); 8] = [
            ("DATABASE_MAX_CONNECTIONS", |s, out| {
                s.database_max_connections = if out { 1 } else { 2 }
            }),
            ("INGEST_BATCH_SIZE", |s, out| {
                s.ingest_batch_size = if out { 1001 } else { 1000 }
            }),
            ("CACHE_MAX_BYTES", |s, out| {
                s.cache_max_bytes = if out { (1 << 20) - 1 } else { 1 << 20 }
            }),
            ("NATS_ACK_WAIT", |s, out| {
                s.nats_ack_wait = Duration::from_secs(if out { 3601 } else { 3600 })
            }),
            ("NATS_DUPLICATE_WINDOW", |s, out| {
                s.nats_duplicate_window = Duration::from_millis(if out { 999 } else { 1000 })
            }),
            ("CACHE_INVALIDATE_EVERY", |s, out| {
                s.cache_invalidate_every = Duration::from_secs(if out { 86_401 } else { 86_400 })
            }),
            ("SHUTDOWN_TIMEOUT", |s, out| {
                s.shutdown_timeout = Duration::from_secs(if out { 0 } else { 600 })
            }),
            ("NATS_STREAM", |s, out| {
                s.nats_stream = if out {
                    "x".repeat(256)
                } else {
                    "x".repeat(255)
                }
            }),
        ];
        for (var, set) in cases {
            let mut settings = valid();
            set(&mut settings, false);
            assert_eq!(settings.validate(), Ok(()), "{var} at the end of its range");
            set(&mut settings, true);
            let error = settings.validate().unwrap_err();
            assert_eq!(error.var, var, "{error}");
            assert!(error.rule.starts_with("must be from"), "{error}");
        }
    }

    #[test]
    fn names_with_spaces_dots_or_wildcards_are_refused() {
        for name in ["", "a b", "a.b", "a*", "a>", "a/b", "a\\b", "a\tb"] {
            assert!(nats_name(name).is_err(), "{name:?}");
        }
        for name in ["EVENTS", "event-processor", "durable_1"] {
            assert_eq!(nats_name(name).as_deref(), Ok(name));
        }
        let mut settings = valid();
        settings.nats_durable = "event processor".into();
        assert_eq!(settings.validate().unwrap_err().var, "NATS_DURABLE");
    }

    #[test]
    fn subjects_follow_the_nats_rules() {
        for subject in ["", "a..b", ".a", "a.", "a b", "a.b*", "a.>.b", "a.>x"] {
            assert!(stream_subject(subject).is_err(), "{subject:?}");
        }
        for subject in ["a", "a.b", "a.*.c", "a.>", ">", "*"] {
            assert!(stream_subject(subject).is_ok(), "{subject:?}");
        }
        assert!(publish_subject("events.*").is_err());
        assert!(publish_subject("events.>").is_err());
        assert!(publish_subject("events.products").is_ok());
    }

    #[test]
    fn the_subject_must_be_taken_by_one_of_the_stream_subjects() {
        assert!(subject_matches("events.>", "events.products"));
        assert!(subject_matches("events.*", "events.products"));
        assert!(subject_matches("events.products", "events.products"));
        assert!(!subject_matches("events.>", "events"));
        assert!(!subject_matches("events.*", "events.products.x"));
        assert!(!subject_matches("other.>", "events.products"));
        assert!(!subject_matches("events.products.x", "events.products"));

        let mut settings = valid();
        settings.nats_stream_subjects = vec!["other.>".into(), "more.*".into()];
        let error = settings.validate().unwrap_err();
        assert_eq!(error.var, "NATS_SUBJECT");
        assert!(
            error.rule.contains("NATS_STREAM_SUBJECTS=other.>,more.*"),
            "{error}"
        );
        settings.nats_stream_subjects.push("events.*".into());
        assert_eq!(settings.validate(), Ok(()));
    }

    #[test]
    fn urls_are_checked_and_shown_redacted_when_refused() {
        let mut settings = valid();
        settings.database_url = "mysql://app:s3cret@db/products".into();
        let error = settings.validate().unwrap_err();
        assert_eq!(error.var, "DATABASE_URL");
        assert!(!error.to_string().contains("s3cret"), "{error}");

        settings.database_url = "postgres://app:s3cret@db/".into();
        let error = settings.validate().unwrap_err();
        assert!(error.rule.contains("names no database"), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");

        let mut settings = valid();
        for url in [
            "http://app:s3cret@localhost:4222",
            "nats://app:s3cret@n1:4222,,nats://app:s3cret@n2:4222",
        ] {
            settings.nats_url = url.into();
            let error = settings.validate().unwrap_err();
            assert_eq!(error.var, "NATS_URL");
            assert!(!error.to_string().contains("s3cret"), "{error}");
        }
        for url in [
            "nats://s3cret@localhost:4222",
            "localhost:4222",
            "tls://a:b@h",
            "nats://a:b@n1:4222,nats://a:b@n2:4222",
        ] {
            settings.nats_url = url.into();
            assert_eq!(settings.validate(), Ok(()), "{url}");
        }
    }

    #[test]
    fn settings_print_redacted_in_debug_and_in_their_env_form() {
        let mut settings = valid();
        settings.database_url = "postgres://app:s3cret@db/products".into();
        settings.nats_url = "nats://t0ken@localhost:4222".into();
        let debug = format!("{settings:?}");
        let env = format!("{:?}", settings.to_env());
        for shown in [debug, env] {
            assert!(
                !shown.contains("s3cret") && !shown.contains("t0ken"),
                "{shown}"
            );
        }
    }
}

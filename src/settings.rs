//! Every setting of the service, in one typed place: a flag each, with its
//! environment variable and its default (`products --help` lists them).

use actors::ingest::IngestConfig;
use clap::{Args, ValueEnum};
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Args, Clone, Debug)]
pub struct Settings {
    /// Postgres database; it is created if it is missing.
    #[arg(
        long,
        env = "DATABASE_URL",
        global = true,
        default_value = "postgres://postgres@localhost:5432/products"
    )]
    pub database_url: String,

    /// Most connections to Postgres.
    #[arg(
        long,
        env = "DATABASE_MAX_CONNECTIONS",
        global = true,
        default_value_t = 10
    )]
    pub database_max_connections: u32,

    /// NATS server with JetStream.
    #[arg(
        long,
        env = "NATS_URL",
        global = true,
        default_value = "nats://localhost:4222"
    )]
    pub nats_url: String,

    /// Address the web UI and JSON API listen on.
    #[arg(long, env = "HTTP_ADDR", global = true, default_value = "0.0.0.0:8000")]
    pub http_addr: SocketAddr,

    /// JetStream stream; created if it is missing.
    #[arg(long, env = "NATS_STREAM", global = true, default_value = "EVENTS")]
    pub nats_stream: String,

    /// Subjects the stream takes when this service creates it (comma-separated).
    #[arg(
        long,
        env = "NATS_STREAM_SUBJECTS",
        global = true,
        default_value = "events.>",
        value_delimiter = ','
    )]
    pub nats_stream_subjects: Vec<String>,

    /// Subject the product messages are published on and read from.
    #[arg(
        long,
        env = "NATS_SUBJECT",
        global = true,
        default_value = "events.products"
    )]
    pub nats_subject: String,

    /// Durable pull consumer that remembers what has been read.
    #[arg(
        long,
        env = "NATS_DURABLE",
        global = true,
        default_value = "event-processor"
    )]
    pub nats_durable: String,

    /// How long JetStream waits for an ack before it redelivers a message.
    #[arg(long, env = "NATS_ACK_WAIT", global = true, default_value = "30s",
          value_parser = humantime::parse_duration)]
    pub nats_ack_wait: Duration,

    /// Delete and create again an existing durable consumer whose configuration
    /// JetStream cannot change to the one this service needs (another filter
    /// subject or ack policy). Without it, such a consumer stops the service
    /// with an error that names the difference.
    #[arg(long, env = "NATS_RECREATE_CONSUMER", global = true, default_value_t = false,
          action = clap::ArgAction::Set)]
    pub nats_recreate_consumer: bool,

    /// How long JetStream drops a second publish with the same Nats-Msg-Id
    /// (set when this service creates the stream).
    #[arg(long, env = "NATS_DUPLICATE_WINDOW", global = true, default_value = "2m",
          value_parser = humantime::parse_duration)]
    pub nats_duplicate_window: Duration,

    /// Most messages stored in one transaction.
    #[arg(long, env = "INGEST_BATCH_SIZE", global = true, default_value_t = 500,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub ingest_batch_size: u16,

    /// How often the cache is invalidated.
    #[arg(long, env = "CACHE_INVALIDATE_EVERY", global = true, default_value = "15s",
          value_parser = humantime::parse_duration)]
    pub cache_invalidate_every: Duration,

    /// Most products kept in the cache.
    #[arg(long, env = "CACHE_CAPACITY", global = true, default_value_t = 100_000)]
    pub cache_capacity: u64,

    /// Log format: `pretty` for people, `json` for log collectors.
    /// Levels come from RUST_LOG [default: info].
    #[arg(long, env = "LOG_FORMAT", global = true, default_value = "pretty")]
    pub log_format: LogFormat,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
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

    pub fn ingest(&self) -> IngestConfig {
        IngestConfig {
            nats_url: self.nats_url.clone(),
            stream: self.nats_stream.clone(),
            stream_subjects: self.nats_stream_subjects.clone(),
            subject: self.nats_subject.clone(),
            durable: self.nats_durable.clone(),
            batch_size: usize::from(self.ingest_batch_size),
            ack_wait: self.nats_ack_wait,
            duplicate_window: self.nats_duplicate_window,
            recreate_consumer: self.nats_recreate_consumer,
        }
    }

    /// The database URL with any password masked, for logs.
    pub fn database_url_redacted(&self) -> String {
        match url::Url::parse(&self.database_url) {
            Ok(mut url) if url.password().is_some() => {
                let _ = url.set_password(Some("*****"));
                url.to_string()
            }
            Ok(url) => url.to_string(),
            Err(_) => "(unparsable URL)".into(),
        }
    }
}

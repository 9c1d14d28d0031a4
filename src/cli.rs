//! The command line: `products [serve]`, `products produce`, `products smoke`,
//! `products rejected replay`, `products migrate`, `products hash-password`,
//! `products healthcheck`, `products config`.

use crate::settings::Settings;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "products",
    version,
    about = "Product catalogue: reads product messages from a NATS JetStream stream, \
             stores them in Postgres, caches them in memory and serves them as HTML and JSON.",
    after_help = "Every flag can also be set by its environment variable. \
                  Log levels come from RUST_LOG (default: info)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Subcommand, Debug, Clone)]
pub enum Command {
    /// Run the service (the default): consume, store, cache and serve.
    Serve,
    /// Publish product messages to the stream: the two samples, a file, or generated ones.
    Produce {
        /// A JSON file holding an array of product objects, each published as one message.
        #[arg(long, conflicts_with = "count")]
        file: Option<PathBuf>,
        /// Publish this many generated products (for load).
        #[arg(long)]
        count: Option<u64>,
    },
    /// Check a running service end to end: publish one product named
    /// `smoke-<uuid>` (with a random id from 2^52) through JetStream, wait until
    /// the service at --url serves it as JSON and in its HTML list, and print how
    /// long that took. Exits non-zero if it is not served within --timeout. The
    /// product stays (delete it with `{"id": ID, "deleted": true}`).
    Smoke {
        /// The service's address (http://).
        #[arg(long, env = "PRODUCTS_URL", default_value = "http://localhost:8000")]
        url: String,
        /// How long to wait for the product to be served, from its publish.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// The messages set aside (rejected): `products rejected replay --id N`.
    Rejected {
        #[command(subcommand)]
        action: RejectedAction,
    },
    /// Create the database if it is missing and apply the migrations, then exit.
    Migrate,
    /// Write an operator's line for MANAGE_USERS_FILE: reads a password
    /// (from a terminal, asked twice without echo; else the first line of
    /// standard input) and prints `NAME:HASH` (argon2id). The password is
    /// never taken from a flag, where other users of the machine could read it.
    HashPassword {
        /// The operator's name (1 to 64 characters, no ':').
        name: String,
    },
    /// Ask the service on HTTP_ADDR (0.0.0.0 and :: as the loopback) whether
    /// it is alive (`GET /healthz`): exit 0 if it answers 200 within 2 s, 1
    /// otherwise. For container health checks: the image needs no curl, and
    /// the port follows the setting.
    Healthcheck,
    /// Check the settings and print them as `VAR=value` lines (credentials
    /// redacted), then exit: what `serve` would run with.
    Config,
}

#[derive(Subcommand, Debug, Clone)]
pub enum RejectedAction {
    /// Publish a rejected message again, once its cause is fixed: the
    /// original, read whole from the stream by its sequence, to its subject
    /// with a new Nats-Msg-Id; then say what became of it (stored, set aside
    /// again with the reason, or not yet). Exits non-zero unless it is stored.
    Replay {
        /// The rejected message's id (the `id` of /rejected.json).
        #[arg(long)]
        id: i64,
        /// How long to wait for the service to store it or set it aside.
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        wait: Duration,
    },
}

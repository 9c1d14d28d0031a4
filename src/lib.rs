//! The `products` service: a product catalogue fed by a NATS JetStream stream,
//! stored in Postgres, cached in memory and served as HTML and JSON.
//!
//! A map of the repository:
//! - `src/` (this crate): the binary's edge: [`cli`], [`settings`],
//!   [`telemetry`], start-up work on the database ([`database`]), the sample
//!   publisher ([`produce`]), the end-to-end check of a deployment ([`smoke`]),
//!   and [`App`], which wires the actors together.
//! - `actors/`: the supervisor and its four actors (ingest, persistence, cache,
//!   http) with their typed messages, and the doors they share (JetStream,
//!   secrets). Its `lib.rs` tells the life of a message.
//! - `catalogue/`: the pure core (the product and its decoder, the batch and
//!   change-feed contracts, the cache's blocks and index), with no framework.
//! - `entity/`, `migration/`: the SeaORM entities and the schema migrations.
//! - `views/`: handlebars templates and the stylesheet, embedded at build time.
//! - `deployments/`: docker-compose and the Dockerfile.
//! - `tests/`: integration tests against real Postgres and NATS.
//! - `docs/ARCHITECTURE.md`: the same picture, in words.

pub mod cli;
pub mod database;
pub mod operators;
pub mod produce;
pub mod replay;
pub mod settings;
pub mod smoke;
pub mod telemetry;

use actors::cache::{CacheArgs, ProductCache};
use actors::changes::{ChangeSignal, Commits};
use actors::health::Health;
use actors::http::HttpArgs;
use actors::ingest::IngestArgs;
use actors::names::Names;
use actors::persistence::PersistenceArgs;
use actors::supervisor::{RestartBudget, Supervisor, SupervisorArgs, SupervisorMsg, SupervisorRef};
use anyhow::{Context, anyhow};
use ractor::Actor;
use settings::Settings;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tracing::info;

/// Runs the service until SIGTERM or Ctrl-C: then `/readyz` answers 503 at
/// once, requests are served for `SHUTDOWN_DRAIN` (so that load balancers
/// stop sending them), and the service stops gracefully. A second signal
/// exits at once, with a non-zero code, after saying so.
pub async fn serve(settings: &Settings) -> anyhow::Result<()> {
    let app = App::start(settings, "products", RestartBudget::default()).await?;
    let health = app.health().clone();
    let drain = settings.shutdown.drain;
    let stop = async move {
        shutdown_signal().await;
        health.set_shutting_down();
        info!(drain = ?drain, "stopping: /readyz answers 503, serving for the drain delay first");
        tokio::spawn(async {
            shutdown_signal().await;
            tracing::error!("a second stop signal: exiting at once");
            std::process::exit(130);
        });
        tokio::time::sleep(drain).await;
    };
    app.run_until(stop).await
}

/// The running service: the supervisor and the address it serves on.
pub struct App {
    supervisor: SupervisorRef,
    stopped: JoinHandle<()>,
    http_addr: SocketAddr,
    names: Names,
    health: Health,
    shutdown_budget: Duration,
}

impl App {
    /// Validates the settings, prepares the database, binds the HTTP address
    /// and starts the supervised actors. `instance` prefixes the actors' names, so that several apps can
    /// run in one process.
    pub async fn start(
        settings: &Settings,
        instance: &str,
        restart_budget: RestartBudget,
    ) -> anyhow::Result<App> {
        let settings = &settings.clone().with_secret_files()?;
        settings.validate()?;
        // Both URLs print redacted (`SecretUrl`): no credentials in the log.
        info!(
            database = %settings.database.url,
            nats = %settings.nats.url,
            stream = %settings.nats.stream,
            subject = %settings.nats.subject,
            "starting"
        );
        database::prepare(&settings.database.url).await?;
        let listener = std::net::TcpListener::bind(settings.http.addr)
            .with_context(|| format!("cannot listen on {}", settings.http.addr))?;
        let http_addr = listener.local_addr()?;

        let names = Names::new(instance);
        let health = Health::new();
        let changes = ChangeSignal::default();
        let commits = Commits::default();
        let products = ProductCache::new(&names, settings.cache.max_bytes);
        // The drain (see `serve`) is part of the shutdown's budget.
        let shutdown_budget = settings
            .shutdown
            .timeout
            .saturating_sub(settings.shutdown.drain);
        let args = SupervisorArgs {
            names: names.clone(),
            persistence: PersistenceArgs {
                names: names.clone(),
                database_url: settings.database.url.clone(),
                max_connections: settings.database.max_connections,
                changes: changes.clone(),
                commits: commits.clone(),
                retention: settings.http.changes_retention,
            },
            cache: CacheArgs {
                names: names.clone(),
                health: health.clone(),
                products: products.clone(),
                changes,
                commits,
                invalidate_every: settings.cache.invalidate_every,
                catch_up_max_rows: settings.cache.catch_up_max_rows,
            },
            http: HttpArgs {
                names: names.clone(),
                health: health.clone(),
                products,
                listener: Arc::new(listener),
                manage: settings.manage_args()?,
                max_followers: settings.http.events_max_followers,
                ready_max_lag: settings.http.ready_max_lag,
                cors_origins: settings.http.cors_origins.clone(),
            },
            ingest: IngestArgs {
                names: names.clone(),
                config: settings.ingest_config(),
                health: health.clone(),
            },
            restart_budget,
            shutdown_budget,
        };
        let (supervisor, stopped) = Actor::spawn(Some(names.supervisor()), Supervisor, args)
            .await
            .map_err(|e| anyhow!("cannot start the service: {e}"))?;
        info!(addr = %http_addr, "products is up");
        Ok(App {
            supervisor,
            stopped,
            http_addr,
            names,
            health,
            shutdown_budget,
        })
    }

    /// Where the web UI and JSON API are served.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The registered names of this app's actors.
    pub fn names(&self) -> &Names {
        &self.names
    }

    /// What the parts report about themselves (what `/readyz` reads).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// Runs until `shutdown` completes, then stops gracefully. Returns an error
    /// if the service cannot go on: a part reported a configuration that cannot
    /// work (it is stopped, and the error says why), or the supervisor stopped
    /// on its own (too many restarts).
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let health = self.health.clone();
        tokio::select! {
            () = shutdown => self.shutdown().await,
            reason = health.fatal_reported() => {
                if let Err(error) = self.shutdown().await {
                    tracing::warn!(error = %format!("{error:#}"), "stopping after a fatal error");
                }
                Err(anyhow!(reason))
            }
            _ = &mut self.stopped => Err(anyhow!(
                "the supervisor stopped: too many actor restarts (the log says which and why)"
            )),
        }
    }

    /// Stops the actors in order (ingest first, finishing its batch in flight,
    /// then http gracefully, then cache and persistence) and waits for them,
    /// within the shutdown budget.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        info!(budget = ?self.shutdown_budget, "shutting down");
        // The supervisor keeps to the budget; the margin covers its own stop.
        let limit = self.shutdown_budget + Duration::from_secs(1);
        let stop = async {
            let _ = self
                .supervisor
                .call(|reply| SupervisorMsg::Shutdown { reply }, Some(limit))
                .await;
            self.stopped.await
        };
        tokio::time::timeout(limit, stop)
            .await
            .with_context(|| format!("shutdown took longer than {limit:?}"))?
            .context("the supervisor panicked")?;
        info!("stopped");
        Ok(())
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

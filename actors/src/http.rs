//! The http actor: owns the salvo server's lifecycle.
//!
//! The listening socket is bound once by the binary and handed in, so that a
//! restarted http actor serves on the same address (port 0 included, as in the
//! tests). Stopping the actor stops the server gracefully: requests in flight
//! finish, new connections are refused.
//!
//! The routes live in `http/routes.rs`; the pages and the JSON API beside it
//! (the list and the detail page written from their templates taken apart,
//! in `http/page_parts.rs`),
//! and the API's OpenAPI description (`/openapi.json`) in `http/openapi.rs`;
//! the change stream and the snapshot in `http/changes.rs` (its shared
//! reader in `http/tail.rs`), the manage forms in `http/manage.rs`;
//! request ids, request metrics and `/metrics` in `http/observe.rs`.
//! When the server stops, the change streams end first, so that a graceful stop
//! does not wait on browsers that keep them open.

pub mod access;
mod api;
mod changes;
mod forms;
mod manage;
mod observe;
mod openapi;
mod page_parts;
mod pages;
mod params;
mod product_form;
pub mod publisher;
mod respond;
mod routes;
mod rows;
pub mod session;
mod signin;
mod state;
mod tail;
mod throttle;
pub mod views;

pub use routes::router;

use crate::cache::ProductCache;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::names::Names;
use crate::timeouts::HTTP_GRACE;
use ractor::{Actor, ActorProcessingErr, ActorRef};
use salvo::Server;
use salvo::conn::tcp::TcpAcceptor;
use salvo::fuse::FuseConfig;
use salvo::server::ServerHandle;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

pub type HttpRef = ActorRef<HttpMsg>;

/// A client that has not sent its request head by then is cut off (slowloris).
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request for this long is closed.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A client that stops reading the response for this long is cut off.
const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Connections served at once; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 10_000;

pub enum HttpMsg {
    /// From the server task: the server stopped on its own (the actor fails, and
    /// the supervisor restarts it).
    ServerExited { error: Option<String> },
}

/// What managing products needs: who may, and where the forms publish.
#[derive(Clone)]
pub struct ManageArgs {
    pub access: access::Access,
    pub publish: publisher::PublishTo,
}

#[derive(Clone)]
pub struct HttpArgs {
    pub names: Names,
    pub health: Health,
    /// The cached products, read directly by the handlers.
    pub products: ProductCache,
    /// The bound socket; each (re)start serves a clone of it.
    pub listener: Arc<TcpListener>,
    /// Where the manage forms publish; `None` switches managing off
    /// (`UI_MANAGE=false`).
    pub manage: Option<ManageArgs>,
    /// Change streams and snapshots open at once, at most (`EVENTS_MAX_FOLLOWERS`).
    pub max_followers: usize,
    /// A change feed further behind makes `/readyz` 503 (`READY_MAX_LAG`).
    pub ready_max_lag: Option<Duration>,
    /// Origins a browser may read the JSON API from (`HTTP_CORS_ORIGINS`;
    /// none: no CORS headers, the browser's same-origin rule stands).
    pub cors_origins: Vec<String>,
}

pub struct Http;

pub struct HttpState {
    server: RunningServer,
    /// Tells the change streams to end when the server stops.
    closing: watch::Sender<bool>,
}

/// The server task, stopped at once if the actor goes away without `post_stop`
/// (a panic), so that a restarted actor is the only one serving.
struct RunningServer {
    handle: ServerHandle,
    task: Option<JoinHandle<()>>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.handle.stop_forceful();
    }
}

impl Actor for Http {
    type Msg = HttpMsg;
    type State = HttpState;
    type Arguments = HttpArgs;

    async fn pre_start(
        &self,
        myself: HttpRef,
        args: HttpArgs,
    ) -> Result<HttpState, ActorProcessingErr> {
        let listener = args.listener.try_clone()?;
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let server = Server::new(TcpAcceptor::try_from(listener)?)
            .max_connections(MAX_CONNECTIONS)
            .fuse_config(
                FuseConfig::default()
                    .with_http1_header_timeout(HEADER_TIMEOUT)
                    .with_connection_idle_timeout(IDLE_TIMEOUT)
                    .with_write_stall_timeout(WRITE_STALL_TIMEOUT),
            );
        let handle = server.handle();
        let manage = match args.manage {
            Some(manage) => Some(Arc::new(state::Managing {
                publisher: publisher::Publisher::connect(&manage.publish).await?,
                access: manage.access,
            })),
            None => None,
        };
        let metrics = Metrics::new(&args.names);
        let (closing, closing_now) = watch::channel(false);
        let app = state::AppState {
            names: args.names.clone(),
            health: args.health,
            rows: rows::RowsCache::new(args.products.capacity()),
            products: args.products,
            manage,
            sign_in_failures: throttle::Failures::default(),
            followers: state::Followers::new(args.max_followers, metrics.clone()),
            metrics,
            ready_max_lag: args.ready_max_lag,
            closing: closing_now,
            tail: tail::Tail::default(),
        };
        app.tail
            .spawn(app.names.clone(), app.products.moved(), app.closing.clone());
        let service = routes::service(app, &args.cors_origins);
        let task = tokio::spawn(async move {
            let error = server.try_serve(service).await.err().map(|e| e.to_string());
            let _ = myself.cast(HttpMsg::ServerExited { error });
        });
        info!(%addr, "serving http");
        Ok(HttpState {
            server: RunningServer {
                handle,
                task: Some(task),
            },
            closing,
        })
    }

    async fn handle(
        &self,
        _myself: HttpRef,
        msg: HttpMsg,
        _state: &mut HttpState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HttpMsg::ServerExited { error } => Err(format!(
                "the HTTP server stopped: {}",
                error.as_deref().unwrap_or("no error given")
            )
            .into()),
        }
    }

    async fn post_stop(
        &self,
        _myself: HttpRef,
        state: &mut HttpState,
    ) -> Result<(), ActorProcessingErr> {
        state.closing.send_replace(true);
        state.server.handle.stop_graceful(HTTP_GRACE);
        if let Some(task) = state.server.task.take()
            && tokio::time::timeout(HTTP_GRACE + Duration::from_secs(1), task)
                .await
                .is_err()
        {
            warn!("the HTTP server did not stop in time");
        }
        Ok(())
    }
}

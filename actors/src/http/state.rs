//! What the handlers ask of the other actors, each call with a deadline, and
//! what they read of the others' health without asking.

use super::access::{Access, Operator};
use super::publisher::Publisher;
use super::rows::RowsCache;
use super::tail::Tail;
use super::throttle::Failures;
use crate::cache::{CacheError, Cached, Page, ProductCache};
use crate::call::CallError;
use crate::health::{Health, IngestHealth};
use crate::metrics::Metrics;
use crate::names::Names;
use crate::persistence::history::History;
use crate::persistence::{self, MessageOutcome, PersistenceMsg, ReadError, RejectedMessage};
use crate::timeouts::{PERSISTENCE_TIMEOUT, PROBE_TIMEOUT};
use catalogue::filter::Filter;
use catalogue::history::Position;
use catalogue::product::Product;
use salvo::{Depot, Request, Response};
use serde::Serialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Shared by every handler (injected into the depot by the router).
#[derive(Clone)]
pub struct AppState {
    pub names: Names,
    pub health: Health,
    /// The cached products, read here directly, not through the cache actor.
    pub products: ProductCache,
    /// The list page's rows, rendered once per block version.
    pub rows: RowsCache,
    /// What the manage forms need; `None` when managing is switched off.
    pub manage: Option<Arc<Managing>>,
    /// Recent failed sign-ins, per name and per address.
    pub sign_in_failures: Failures,
    /// The open change streams, and how many more may open.
    pub followers: Followers,
    /// The newest history, read once for every open change stream.
    pub tail: Tail,
    pub metrics: Metrics,
    /// `READY_MAX_LAG`: a change feed further behind makes `/readyz` 503.
    pub ready_max_lag: Option<std::time::Duration>,
    /// Becomes `true` when the server stops: the change streams end, so that a
    /// graceful stop does not wait for them.
    pub closing: watch::Receiver<bool>,
}

/// Managing products: who may, and where their changes are published.
pub struct Managing {
    pub access: Access,
    pub publisher: Publisher,
}

/// The open change streams and snapshots: a permit each, at most `EVENTS_MAX_FOLLOWERS`.
#[derive(Clone)]
pub struct Followers {
    permits: Arc<Semaphore>,
    metrics: Metrics,
}

impl Followers {
    pub fn new(max: usize, metrics: Metrics) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max)),
            metrics,
        }
    }

    /// A place for one more follower, if there is one (kept until the
    /// [`Follower`] is dropped).
    pub fn admit(&self) -> Option<Follower> {
        let Ok(permit) = Arc::clone(&self.permits).try_acquire_owned() else {
            self.metrics.live_refused.increment(1);
            return None;
        };
        self.metrics.live_followers.increment(1.0);
        Some(Follower {
            _permit: permit,
            metrics: self.metrics.clone(),
        })
    }
}

/// One open feed's place, given back when it is dropped.
pub struct Follower {
    _permit: OwnedSemaphorePermit,
    metrics: Metrics,
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.metrics.live_followers.decrement(1.0);
    }
}

/// The service cannot answer now (a dependency is away); not the client's
/// fault. Every kind is answered 503, in one place (`respond::unavailable_page`
/// and `respond::unavailable_json`), with the kind in the log.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The cache could not read it through from Postgres.
    #[error(transparent)]
    Cache(#[from] CacheError),
    /// Persistence did not answer (not running, or too slow).
    #[error(transparent)]
    Call(#[from] CallError),
    /// Postgres could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
}

/// Why a search found nothing to show.
#[derive(Debug)]
pub enum SearchError {
    /// Other searches hold every connection searches may use.
    Busy,
    Unavailable(Unavailable),
}

impl AppState {
    /// Who is asking, for a page: the operator, if signed in (with what
    /// managing needs), and the header's data (`who`: the operator and their
    /// sign-out token, or `sign_in` where operators could sign in).
    pub fn who(
        &self,
        req: &Request,
        res: &mut Response,
    ) -> (Option<(Arc<Managing>, Operator)>, Value) {
        let Some(managing) = self.manage.clone() else {
            return (None, json!({}));
        };
        match managing.access.operator(req, res) {
            Some(operator) => {
                let who = json!({
                    "operator": operator.name,
                    "csrf": managing.access.csrf_token(&operator),
                });
                (Some((managing, operator)), who)
            }
            None => (None, json!({"sign_in": true})),
        }
    }

    /// The signed-in operator's name and the token their forms carry, if
    /// an operator is signed in (as [`AppState::who`] finds them).
    pub fn signed_in(&self, req: &Request, res: &mut Response) -> Option<(String, String)> {
        let managing = self.manage.as_ref()?;
        let operator = managing.access.operator(req, res)?;
        let csrf = managing.access.csrf_token(&operator);
        Some((operator.name, csrf))
    }

    /// One product by id, as cached (its JSON), from the cache (which reads
    /// through on a miss).
    pub async fn cached(&self, id: i64) -> Result<Option<Cached>, Unavailable> {
        self.products.get(id).await.map_err(Unavailable::from)
    }

    /// One product by id, read back from the cache.
    pub async fn product(&self, id: i64) -> Result<Option<Product>, Unavailable> {
        Ok(self.cached(id).await?.map(|cached| cached.product()))
    }

    /// One page of the list in id order, from the cache's index (from
    /// Postgres until the cache is rebuilt).
    pub async fn page(&self, after: i64, limit: u64) -> Result<Page, Unavailable> {
        self.products
            .page(after, limit)
            .await
            .map_err(Unavailable::from)
    }

    /// Up to `limit` products after `after` that `filter` asks for: from
    /// the cache's search index, or from Postgres until a rebuild has
    /// filled it.
    pub async fn search(
        &self,
        filter: &Filter,
        after: i64,
        limit: u64,
    ) -> Result<Vec<Product>, SearchError> {
        if let Some(found) = self.products.search(filter, after, limit).await {
            return found.map_err(|e| SearchError::Unavailable(e.into()));
        }
        let filter = filter.clone();
        let asked = persistence::peer(&self.names)
            .ask(
                |reply| PersistenceMsg::Search {
                    filter,
                    after,
                    limit,
                    reply,
                },
                PERSISTENCE_TIMEOUT,
            )
            .await;
        match asked {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(ReadError::SearchesBusy)) => Err(SearchError::Busy),
            Ok(Err(e)) => Err(SearchError::Unavailable(e.into())),
            Err(e) => Err(SearchError::Unavailable(e.into())),
        }
    }

    /// The pages' notice while updates are paused: since when (RFC 3339)
    /// and why, in words for anyone (no internal detail); `null` while they
    /// flow.
    pub fn paused(&self) -> Value {
        let ingest = self.health.ingest();
        match (ingest.paused(), ingest.paused_since) {
            (Some(why), Some(since)) => json!({
                "since": humantime::format_rfc3339_seconds(since).to_string(),
                "why": why,
            }),
            _ => Value::Null,
        }
    }

    /// Up to `limit` changes after `after`, from Postgres.
    pub async fn history(&self, after: Position, limit: u64) -> Result<History, Unavailable> {
        self.persistence(|reply| PersistenceMsg::History {
            after,
            limit,
            reply,
        })
        .await
    }

    /// Where the history served now ends.
    pub async fn served_through(&self) -> Result<Position, Unavailable> {
        self.persistence(|reply| PersistenceMsg::ServedThrough { reply })
            .await
    }

    /// A page of the snapshot at `through`: up to `limit` products after the
    /// id `after` whose latest change is at or before it.
    pub async fn snapshot_page(
        &self,
        through: Position,
        after: i64,
        limit: u64,
    ) -> Result<Vec<Product>, Unavailable> {
        self.persistence(|reply| PersistenceMsg::SnapshotPage {
            through,
            after,
            limit,
            reply,
        })
        .await
    }

    /// The newest rejected messages older than `before`, from Postgres.
    pub async fn rejected(
        &self,
        before: Option<i64>,
        limit: u64,
    ) -> Result<Vec<RejectedMessage>, Unavailable> {
        self.persistence(|reply| PersistenceMsg::Rejected {
            before,
            limit,
            reply,
        })
        .await
    }

    /// The rejected message with the row id `id`, from Postgres.
    pub async fn rejected_one(&self, id: i64) -> Result<Option<RejectedMessage>, Unavailable> {
        self.persistence(|reply| PersistenceMsg::RejectedOne { id, reply })
            .await
    }

    /// What became of a message a form published.
    pub async fn outcome(
        &self,
        stream: String,
        seq: i64,
        id: Option<i64>,
    ) -> Result<MessageOutcome, Unavailable> {
        self.persistence(|reply| PersistenceMsg::Outcome {
            stream,
            seq,
            id,
            reply,
        })
        .await
    }

    async fn persistence<T: Send + 'static>(
        &self,
        message: impl FnOnce(ractor::RpcReplyPort<Result<T, ReadError>>) -> PersistenceMsg,
    ) -> Result<T, Unavailable> {
        match persistence::peer(&self.names)
            .ask(message, PERSISTENCE_TIMEOUT)
            .await
        {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(e.into()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether each part can do its job now. Postgres is pinged (reads); the
    /// rest is read from what the parts report ([`Health`]), so a busy actor
    /// never makes the answer wrong or slow.
    pub async fn readiness(&self) -> Readiness {
        let ping = persistence::peer(&self.names)
            .ask(|reply| PersistenceMsg::Ping { reply }, PROBE_TIMEOUT)
            .await;
        let IngestHealth {
            nats_connected,
            consumer_problem,
            store_problem,
            ..
        } = self.health.ingest();
        Readiness {
            postgres: match (ping, store_problem) {
                (Ok(Ok(())), None) => Check::ok(),
                (Ok(Ok(())), Some(problem)) => Check::down(problem),
                (Ok(Err(e)), _) => Check::down(format!("cannot read: {e}")),
                (Err(e), _) => Check::down(e.to_string()),
            },
            nats: match (nats_connected, consumer_problem) {
                (true, None) => Check::ok(),
                (false, _) => Check::down("not connected to NATS".into()),
                (true, Some(problem)) => Check::down(problem),
            },
            cache: if self.health.cache_rebuilt() {
                Check::ok()
            } else {
                Check::down("not yet rebuilt from Postgres".into())
            },
            change_feed: {
                let feed = self.health.feed();
                let behind = feed
                    .caught_up_at
                    .and_then(|at| at.elapsed().ok())
                    .map(|d| d.as_secs());
                let caught_up = feed.problem.is_none();
                FeedCheck {
                    caught_up,
                    error: feed.problem,
                    seconds_since_caught_up: if caught_up { None } else { behind },
                }
            },
            shutting_down: self.health.shutting_down(),
            max_lag: self.ready_max_lag,
        }
    }
}

/// What `/readyz` answers. Whether this replica should get traffic: its
/// cache is built, it is not shutting down, and (with `READY_MAX_LAG`) its
/// change feed is not further behind than that. Postgres and NATS are shared
/// by every replica: their state is said (and gauged), but does not take
/// this replica out of its load balancer, since the catalogue is served from
/// memory while they are away.
#[derive(Debug, Serialize)]
pub struct Readiness {
    pub postgres: Check,
    pub nats: Check,
    pub cache: Check,
    /// How current the cache is.
    pub change_feed: FeedCheck,
    /// Asked to stop: draining before the listener closes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub shutting_down: bool,
    #[serde(skip)]
    max_lag: Option<std::time::Duration>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        let lagging = self.max_lag.is_some_and(|max| {
            !self.change_feed.caught_up
                && self
                    .change_feed
                    .seconds_since_caught_up
                    .is_none_or(|behind| behind > max.as_secs())
        });
        self.cache.ready && !self.shutting_down && !lagging
    }
}

#[derive(Debug, Serialize)]
pub struct FeedCheck {
    pub caught_up: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// While not caught up: since the last catch-up that succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seconds_since_caught_up: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct Check {
    pub ready: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    fn ok() -> Self {
        Self {
            ready: true,
            error: None,
        }
    }

    fn down(error: String) -> Self {
        Self {
            ready: false,
            error: Some(error),
        }
    }
}

/// The state, from the depot the router fills.
pub fn app_state(depot: &Depot) -> &AppState {
    depot
        .get_typed::<Arc<AppState>>()
        .expect("the router injects AppState before every handler")
}

//! What the handlers ask of the other actors, each call with a deadline, and
//! what they read of the others' health without asking.

use crate::cache::{self, CacheMsg};
use crate::health::{Health, IngestHealth};
use crate::names::Names;
use crate::persistence::{self, PersistenceMsg};
use crate::product::Product;
use crate::timeouts::{CALL_TIMEOUT, PROBE_TIMEOUT};
use serde::Serialize;
use std::sync::Arc;

/// Shared by every handler (injected into the depot by the router).
#[derive(Clone)]
pub struct AppState {
    pub names: Names,
    pub health: Health,
}

/// The service cannot answer now (a dependency is away); not the client's fault.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl AppState {
    /// One product by id, from the cache (which reads through on a miss).
    pub async fn product(&self, id: i64) -> Result<Option<Arc<Product>>, Unavailable> {
        cache::peer(&self.names)
            .ask(|reply| CacheMsg::Get { id, reply }, CALL_TIMEOUT)
            .await
            .map_err(|e| Unavailable(e.to_string()))?
            .map_err(|e| Unavailable(e.to_string()))
    }

    /// One page of the list, from Postgres in id order.
    pub async fn page(&self, after: i64, limit: u64) -> Result<Vec<Product>, Unavailable> {
        persistence::peer(&self.names)
            .ask(
                |reply| PersistenceMsg::Page {
                    after,
                    limit,
                    reply,
                },
                CALL_TIMEOUT,
            )
            .await
            .map_err(|e| Unavailable(e.to_string()))?
            .map_err(|e| Unavailable(e.to_string()))
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
        }
    }
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub postgres: Check,
    pub nats: Check,
    pub cache: Check,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.postgres.ready && self.nats.ready && self.cache.ready
    }
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

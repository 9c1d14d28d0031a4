//! What the handlers ask of the other actors, each call with a deadline.

use crate::cache::{CacheMsg, CacheStatus};
use crate::call::ask;
use crate::ingest::{IngestMsg, IngestStatus};
use crate::names::{Child, Names};
use crate::persistence::PersistenceMsg;
use crate::product::Product;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

/// How long a request waits on another actor before it answers 503.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a readiness probe waits on each part (ingest answers between two
/// pulls, and an idle pull waits up to 1 s).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Shared by every handler (injected into the depot by the router).
#[derive(Clone)]
pub struct AppState {
    pub names: Names,
}

/// The service cannot answer now (a dependency is away); not the client's fault.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl AppState {
    /// One product by id, from the cache (which reads through on a miss).
    pub async fn product(&self, id: i64) -> Result<Option<Arc<Product>>, Unavailable> {
        ask(
            self.names.cache(),
            Child::Cache,
            |reply| CacheMsg::Get { id, reply },
            CALL_TIMEOUT,
        )
        .await
        .map_err(|e| Unavailable(e.to_string()))?
        .map_err(|e| Unavailable(e.to_string()))
    }

    /// One page of the list, from Postgres in id order.
    pub async fn page(&self, after: i64, limit: u64) -> Result<Vec<Product>, Unavailable> {
        ask(
            self.names.persistence(),
            Child::Persistence,
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

    /// Asks each part whether it is ready, all at once.
    pub async fn readiness(&self) -> Readiness {
        let postgres = ask(
            self.names.persistence(),
            Child::Persistence,
            |reply| PersistenceMsg::Ping { reply },
            PROBE_TIMEOUT,
        );
        let nats = ask(
            self.names.ingest(),
            Child::Ingest,
            |reply| IngestMsg::Status { reply },
            PROBE_TIMEOUT,
        );
        let cache = ask(
            self.names.cache(),
            Child::Cache,
            |reply| CacheMsg::Status { reply },
            PROBE_TIMEOUT,
        );
        let (postgres, nats, cache) = tokio::join!(postgres, nats, cache);
        Readiness {
            postgres: match postgres {
                Ok(Ok(())) => Check::ok(),
                Ok(Err(e)) => Check::down(e.to_string()),
                Err(e) => Check::down(e.to_string()),
            },
            nats: match nats {
                Ok(IngestStatus {
                    nats_connected: true,
                    consuming: true,
                }) => Check::ok(),
                Ok(IngestStatus {
                    nats_connected: false,
                    ..
                }) => Check::down("not connected to NATS".into()),
                Ok(IngestStatus { .. }) => {
                    Check::down("connected, but the stream or consumer is not set up yet".into())
                }
                Err(e) => Check::down(e.to_string()),
            },
            cache: match cache {
                Ok(CacheStatus { rebuilt: true, .. }) => Check::ok(),
                Ok(CacheStatus { rebuilt: false, .. }) => {
                    Check::down("not yet rebuilt from Postgres".into())
                }
                Err(e) => Check::down(e.to_string()),
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

//! Shipments: what one replica commits, sent to the other replicas over NATS
//! (`catalogue::feed::Shipment`), so that they serve it at once and their
//! change feeds need not read it back from Postgres.
//!
//! - The cache's task that serves this replica's commits ships each one
//!   after serving it ([`Dock::ship`]), with its transaction and how many
//!   products it wrote.
//! - Every replica's cache receives the shipments of the others
//!   ([`receive`]), applies their versions (revisions decide, as for every
//!   write) and adds their transactions to its [`Applied`] set, which its
//!   change feed leaves out.
//! - A shipment only saves work: one that is lost, late, too large to send,
//!   or from another database leaves its write to the change feed, which
//!   reads it from Postgres as it reads writes made by hand.
//!
//! The subject is core NATS (not a stream), one per stream of products:
//! [`subject`]. Every replica hears its own shipments too, and drops them
//! (the `Products-Replica` header says who sent one). If a stream keeps
//! that subject (one taking `>`, say), nothing is shipped: shipments must
//! not fill a stream (checked once, at the cache's start).

use super::ProductCache;
use crate::backoff::Backoff;
use crate::call::Peer;
use crate::changes::Applied;
use crate::jetstream::{self, Start};
use crate::metrics::Metrics;
use crate::persistence::PersistenceMsg;
use crate::secret::SecretUrl;
use crate::timeouts::PERSISTENCE_TIMEOUT;
use async_nats::HeaderMap;
use async_nats::jetstream::context::GetStreamByNameErrorKind;
use catalogue::feed::{Shipment, Version, Written};
use futures::StreamExt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};
use tracing::{debug, info, warn};

/// Which header says which replica sent a shipment.
const REPLICA_HEADER: &str = "Products-Replica";

/// Where a replica's cache ships its commits and hears the others'.
#[derive(Clone, Debug)]
pub struct Shipping {
    /// NATS, as ingest reaches it.
    pub url: SecretUrl,
    /// The stream of products (its name makes the subject).
    pub stream: String,
}

/// The subject the replicas of the stream `stream` ship on: outside any
/// stream's subjects that this service creates, so that no stream keeps it.
pub fn subject(stream: &str) -> String {
    format!("_products.committed.{stream}")
}

/// This replica's end of the shipments: ships nothing until it is connected
/// and knows its database. Clones share it.
#[derive(Clone, Default)]
pub struct Dock(Arc<OnceLock<Shipper>>);

struct Shipper {
    client: async_nats::Client,
    subject: String,
    database: String,
    replica: String,
}

impl Dock {
    /// Sends `versions` (committed by `written`) to the other replicas, if
    /// this end is ready. Never waits for them; a failure only costs them a
    /// read.
    pub async fn ship(&self, versions: &[Version], written: Option<Written>) {
        let Some(shipper) = self.0.get() else {
            return;
        };
        let payload = Shipment::encode(&shipper.database, written, versions);
        let max = shipper.client.server_info().max_payload;
        if payload.len() > max {
            debug!(
                bytes = payload.len(),
                max, "a shipment too large for NATS: the other replicas read it"
            );
            return;
        }
        let mut headers = HeaderMap::new();
        headers.insert(REPLICA_HEADER, shipper.replica.as_str());
        if let Err(error) = shipper
            .client
            .publish_with_headers(shipper.subject.clone(), headers, payload.into())
            .await
        {
            debug!(%error, "a shipment was not sent: the other replicas read it");
        }
    }
}

/// What [`receive`] needs.
pub struct Receiving {
    pub shipping: Shipping,
    /// Names the NATS connection.
    pub instance: String,
    pub persistence: Peer<PersistenceMsg>,
    pub products: ProductCache,
    pub applied: Applied,
    pub metrics: Metrics,
}

/// Connects, learns the database, readies `dock`, then applies every other
/// replica's shipment as it comes, for as long as the cache runs.
pub async fn receive(receiving: Receiving, dock: Dock) {
    let Receiving {
        shipping,
        instance,
        persistence,
        products,
        applied,
        metrics,
    } = receiving;
    let name = format!("products-shipments-{instance}");
    let client = match jetstream::connect(&shipping.url, &name, Start::InBackground).await {
        Ok(client) => client,
        Err(error) => {
            warn!(%error, "cannot connect for shipments: every write is read from Postgres");
            return;
        }
    };
    let database = database(&persistence).await;
    let subject = subject(&shipping.stream);
    if let Some(stream) = kept_by(&client, &subject).await {
        warn!(
            %stream, %subject,
            "a stream keeps the shipments' subject: not shipping (every write is read from Postgres)"
        );
        return;
    }
    let mut shipments = loop {
        match client.subscribe(subject.clone()).await {
            Ok(subscriber) => break subscriber,
            Err(error) => {
                warn!(%error, "cannot subscribe to shipments; trying again");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    };
    let replica = format!(
        "{:016x}",
        std::hash::RandomState::new().build_hasher().finish()
    );
    let _ = dock.0.set(Shipper {
        client,
        subject,
        database: database.clone(),
        replica: replica.clone(),
    });
    info!("shipping commits to the other replicas, and applying theirs");
    while let Some(message) = shipments.next().await {
        let sender = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(REPLICA_HEADER))
            .map(|value| value.as_str());
        if sender == Some(replica.as_str()) {
            continue;
        }
        let shipment = match Shipment::decode(&message.payload) {
            Ok(shipment) => shipment,
            Err(error) => {
                warn!(%error, "a shipment that is not one; ignored");
                continue;
            }
        };
        if shipment.database != database {
            warn!(
                theirs = %shipment.database,
                ours = %database,
                "a shipment from another database on this stream's subject; ignored"
            );
            continue;
        }
        let written = shipment.written;
        let versions: Vec<Version> = shipment.versions().collect();
        metrics
            .shipped_versions_applied
            .increment(versions.len() as u64);
        products.apply(versions).await;
        if let Some(written) = written {
            applied.add(written);
        }
    }
}

/// The stream that would keep what is published on `subject`, if one does
/// (asked until JetStream answers): shipments must not fill a stream.
async fn kept_by(client: &async_nats::Client, subject: &str) -> Option<String> {
    let js = async_nats::jetstream::new(client.clone());
    let mut backoff = Backoff::default();
    loop {
        match js.stream_by_subject(subject).await {
            Ok(stream) => return Some(stream),
            Err(error) if error.kind() == GetStreamByNameErrorKind::NotFound => return None,
            Err(error) => {
                debug!(%error, "cannot ask JetStream which stream keeps the shipments yet")
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// The database's identity, asked of persistence until it answers.
async fn database(persistence: &Peer<PersistenceMsg>) -> String {
    let mut backoff = Backoff::default();
    loop {
        match persistence
            .ask(
                |reply| PersistenceMsg::Database { reply },
                PERSISTENCE_TIMEOUT,
            )
            .await
        {
            Ok(Ok(database)) => return database,
            Ok(Err(error)) => debug!(%error, "cannot tell which database this is yet"),
            Err(error) => debug!(%error, "cannot tell which database this is yet"),
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

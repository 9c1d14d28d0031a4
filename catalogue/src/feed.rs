//! The change feed's contract: what Postgres answers when asked what changed
//! since a snapshot, one version of one id (stored or deleted) as a read or
//! a write gives it, and what one replica's write sends the others
//! ([`Shipment`]). Persistence fills these in; the cache and the live pages
//! apply them.

use crate::product::Product;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

/// What changed in `products` since a snapshot (see `PersistenceMsg::ChangesSince`).
#[derive(Debug, Clone, Default)]
pub struct Changes {
    /// Where the next catch-up starts: Postgres's snapshot of this read.
    pub snapshot: String,
    /// The current version of every product written since.
    pub products: Vec<Product>,
    /// The products deleted since.
    pub deleted: Vec<Deleted>,
    /// How long before this read (by Postgres's clock) the newest of these
    /// changes was written (its `updated_at`, or `deleted_at`); `None` when
    /// there are none. For the change feed's lag.
    pub age: Option<Duration>,
    /// More changes than one read takes (`max_rows`): `products` and
    /// `deleted` are empty, and these are the blocks (of 64 ids) that
    /// changed, for the reader to read again whole (none listed when not
    /// asked for).
    pub too_many: Option<TooMany>,
}

/// Changes too many for one read, by block.
#[derive(Debug, Clone, Default)]
pub struct TooMany {
    /// How many rows changed (products and tombstones).
    pub rows: u64,
    /// The keys (`id >> 6`) of the blocks they are in, in order.
    pub blocks: Vec<i64>,
}

/// A deleted product: `id` is `None` when the whole table was truncated, or
/// when tombstones the reader had not seen were pruned (either way it reads
/// everything again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deleted {
    pub id: Option<i64>,
    pub revision: i64,
}

/// One version of one id, as Postgres or a write gives it.
#[derive(Clone, Debug)]
pub enum Version {
    Stored(Arc<Product>),
    /// Deleted by the write with this revision.
    Deleted {
        id: i64,
        revision: i64,
    },
}

impl Version {
    pub fn id(&self) -> i64 {
        match self {
            Version::Stored(product) => product.id,
            Version::Deleted { id, .. } => *id,
        }
    }

    pub fn revision(&self) -> i64 {
        match self {
            Version::Stored(product) => product.revision,
            Version::Deleted { revision, .. } => *revision,
        }
    }
}

/// A transaction that wrote products, and how many rows of `products` it
/// wrote: whoever holds that many of its versions holds everything it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Written {
    /// Its id (Postgres's `xid8`, what the rows' `changed_by` says).
    pub xid: u64,
    pub rows: u64,
}

/// What one transaction committed, as the replica that wrote it sends it to
/// the other replicas, so that they serve it without reading it back from
/// Postgres. A shipment only ever saves a read: a replica that never gets it
/// reads the write from Postgres, as it reads writes made by hand.
#[derive(Debug, Clone, Deserialize)]
pub struct Shipment {
    /// Which database it was committed to (a replica applies only its own's).
    pub database: String,
    /// The transaction, when `stored` and `deleted` hold every row it wrote.
    pub written: Option<Written>,
    /// Each product with its revision (a product's JSON does not carry it).
    pub stored: Vec<(i64, Product)>,
    /// Each deleted id with the revision of its deletion.
    pub deleted: Vec<(i64, i64)>,
}

/// A [`Shipment`] as it is written, borrowing the versions.
#[derive(Serialize)]
struct ShipmentOut<'a> {
    database: &'a str,
    written: Option<Written>,
    stored: Vec<(i64, &'a Product)>,
    deleted: Vec<(i64, i64)>,
}

impl Shipment {
    /// The bytes of the shipment of `versions`, committed to `database` by `written`.
    pub fn encode(database: &str, written: Option<Written>, versions: &[Version]) -> Vec<u8> {
        let mut out = ShipmentOut {
            database,
            written,
            stored: Vec::with_capacity(versions.len()),
            deleted: Vec::new(),
        };
        for version in versions {
            match version {
                Version::Stored(product) => out.stored.push((product.revision, product)),
                Version::Deleted { id, revision } => out.deleted.push((*id, *revision)),
            }
        }
        // A product's JSON cannot fail to encode (string keys, no floats
        // that JSON refuses: attribute values come from JSON).
        serde_json::to_vec(&out).unwrap_or_default()
    }

    pub fn decode(bytes: &[u8]) -> Result<Shipment, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The versions it carries, each with its revision.
    pub fn versions(self) -> impl Iterator<Item = Version> {
        let stored = self.stored.into_iter().map(|(revision, mut product)| {
            product.revision = revision;
            Version::Stored(Arc::new(product))
        });
        let deleted = self
            .deleted
            .into_iter()
            .map(|(id, revision)| Version::Deleted { id, revision });
        stored.chain(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: i64, revision: i64) -> Product {
        Product {
            id,
            name: format!("pen \"{id}\" \u{e9}"),
            price: 10,
            manufacturer: "bic".into(),
            description: Some("blue".into()),
            attributes: serde_json::json!({"colour": "blue", "size": 3})
                .as_object()
                .cloned()
                .unwrap_or_default(),
            revision,
            stream_seq: 7,
            updated_at: "2026-12-06T00:00:00.123456Z".into(),
            changed_by: Some("ops".into()),
        }
    }

    #[test]
    fn a_shipment_carries_every_version_with_its_revision() {
        let versions = vec![
            Version::Stored(Arc::new(product(1, 41))),
            Version::Deleted {
                id: 2,
                revision: 42,
            },
            Version::Stored(Arc::new(product(3, 43))),
        ];
        let written = Some(Written { xid: 900, rows: 3 });
        let bytes = Shipment::encode("db", written, &versions);
        let shipment = Shipment::decode(&bytes).unwrap();
        assert_eq!(shipment.database, "db");
        assert_eq!(shipment.written, written);
        let back: Vec<Version> = shipment.versions().collect();
        assert_eq!(back.len(), 3);
        for version in &back {
            let sent = versions.iter().find(|v| v.id() == version.id()).unwrap();
            assert_eq!(version.revision(), sent.revision());
            match (version, sent) {
                (Version::Stored(got), Version::Stored(sent)) => assert_eq!(got, sent),
                (Version::Deleted { .. }, Version::Deleted { .. }) => {}
                _ => panic!("a stored version came back deleted, or the other way"),
            }
        }
    }

    #[test]
    fn a_shipment_of_something_else_is_refused() {
        assert!(Shipment::decode(b"{\"id\": 1}").is_err());
        assert!(Shipment::decode(b"not json").is_err());
    }
}

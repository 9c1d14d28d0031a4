//! The change feed's contract: what Postgres answers when asked what changed
//! since a snapshot, and one version of one id (stored or deleted) as a read
//! or a write gives it. Persistence fills these in; the cache and the live
//! pages apply them.

use crate::product::Product;
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

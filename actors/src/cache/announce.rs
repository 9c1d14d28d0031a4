//! What the cache announces to the live pages: each change a write brought
//! ([`LiveEvent`]), broadcast once and encoded once for every follower
//! ([`Announced`]).

use catalogue::feed::Version;
use catalogue::product::Product;
use std::sync::{Arc, OnceLock};

/// Changes kept for each live follower that has not read them yet: a
/// follower further behind loses them and is told so (it reloads), so a slow
/// browser costs at most this many events' worth of memory.
pub const LIVE_BUFFER: usize = 256;

/// A change to the products, as the live pages are told of it.
#[derive(Clone, Debug)]
pub enum LiveEvent {
    /// Created or changed: the new version.
    Changed(Arc<Product>),
    /// Deleted, by the write with this revision.
    Deleted { id: i64, revision: i64 },
    /// Changes were applied without an event each (the cache was cleared, or
    /// the change feed read whole blocks again): a page must reload.
    Reload,
    /// Every change committed before this position (a Postgres snapshot)
    /// has been announced: a follower that has read this far and comes back
    /// from here misses nothing.
    Position(Arc<str>),
}

impl LiveEvent {
    /// The revision of the change (0 for a reload).
    pub fn revision(&self) -> i64 {
        match self {
            LiveEvent::Changed(product) => product.revision,
            LiveEvent::Deleted { revision, .. } => *revision,
            LiveEvent::Reload | LiveEvent::Position(_) => 0,
        }
    }
}

impl From<Version> for LiveEvent {
    fn from(version: Version) -> Self {
        match version {
            Version::Stored(product) => LiveEvent::Changed(product),
            Version::Deleted { id, revision } => LiveEvent::Deleted { id, revision },
        }
    }
}

/// A change as it is broadcast to the live followers: the event, and its
/// encoding for the wire, made by the first follower that sends it and
/// shared by all the others (an event is encoded once, however many follow).
#[derive(Debug)]
pub struct Announced {
    pub event: LiveEvent,
    encoded: OnceLock<String>,
}

impl Announced {
    pub(super) fn new(event: LiveEvent) -> Arc<Self> {
        Arc::new(Self {
            event,
            encoded: OnceLock::new(),
        })
    }

    /// The event encoded by `encode`, the first time it is asked for; the
    /// same text every later time.
    pub fn encoded(&self, encode: impl FnOnce(&LiveEvent) -> String) -> &str {
        self.encoded.get_or_init(|| encode(&self.event))
    }
}

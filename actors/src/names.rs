//! Where actors find each other.
//!
//! Actors never keep an `ActorRef` of a sibling, since a restarted sibling is a
//! new actor: they look it up by its registered name each time they need it.
//! The names carry a prefix so that several apps can run in one process (the
//! tests do), each with its own actors.

use crate::cache::CacheMsg;
use crate::ingest::IngestMsg;
use crate::persistence::PersistenceMsg;
use ractor::ActorRef;

#[derive(Clone, Debug)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(prefix: impl Into<String>) -> Self {
        Self {
            prefix: prefix.into(),
        }
    }

    pub fn supervisor(&self) -> String {
        format!("{}.supervisor", self.prefix)
    }

    pub fn of(&self, child: Child) -> String {
        format!("{}.{}", self.prefix, child.as_str())
    }

    /// The persistence actor, if it is running now.
    pub fn persistence(&self) -> Option<ActorRef<PersistenceMsg>> {
        ActorRef::where_is(self.of(Child::Persistence))
    }

    /// The cache actor, if it is running now.
    pub fn cache(&self) -> Option<ActorRef<CacheMsg>> {
        ActorRef::where_is(self.of(Child::Cache))
    }

    /// The ingest actor, if it is running now.
    pub fn ingest(&self) -> Option<ActorRef<IngestMsg>> {
        ActorRef::where_is(self.of(Child::Ingest))
    }
}

/// The supervisor's children.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Child {
    Persistence,
    Cache,
    Http,
    Ingest,
}

impl Child {
    /// In start order; they stop in the reverse order, ingest first.
    pub const ALL: [Child; 4] = [Child::Persistence, Child::Cache, Child::Http, Child::Ingest];

    pub fn as_str(self) -> &'static str {
        match self {
            Child::Persistence => "persistence",
            Child::Cache => "cache",
            Child::Http => "http",
            Child::Ingest => "ingest",
        }
    }
}

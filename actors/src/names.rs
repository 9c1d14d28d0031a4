//! Where actors find each other.
//!
//! Actors never keep an `ActorRef` of a sibling, since a restarted sibling is a
//! new actor: they look it up by its registered name each time they need it.
//! The names carry a prefix so that several apps can run in one process (the
//! tests do), each with its own actors. Each actor's module offers a typed
//! [`crate::call::Peer`] on its name (`cache::peer(&names)`).

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

    /// The app's instance name, the prefix of every name (and the `app`
    /// label of its metrics).
    pub fn instance(&self) -> &str {
        &self.prefix
    }

    pub fn supervisor(&self) -> String {
        format!("{}.supervisor", self.prefix)
    }

    pub fn of(&self, child: Child) -> String {
        format!("{}.{}", self.prefix, child.as_str())
    }

    /// Persistence's own child, the writer.
    pub fn writer(&self) -> String {
        format!("{}.persistence.writer", self.prefix)
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

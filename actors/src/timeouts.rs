//! Every deadline that must respect another, in one place, with the rules
//! between them checked when the crate compiles.
//!
//! The chain of a write: a statement is cut off by Postgres after
//! [`STATEMENT_TIMEOUT`]; a whole batch is cancelled (rolled back) by the
//! writer after [`WRITE_DEADLINE`]; ingest waits for the writer's answer up to
//! [`STORE_REPLY_WAIT`], telling JetStream meanwhile that the messages are in
//! progress, so that a slow store is awaited, never abandoned while it commits.
//!
//! The chain of a read: the cache waits on Postgres up to
//! [`PERSISTENCE_TIMEOUT`] (http reads the cache directly, with no call), and
//! a whole request is answered within [`REQUEST_TIMEOUT`].

use std::time::Duration;

/// The longest any one SQL statement may run (Postgres's `statement_timeout`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(8);
/// The longest one batch's transaction may take before the writer cancels it.
pub const WRITE_DEADLINE: Duration = Duration::from_secs(20);
/// How long ingest waits for a store's answer: the writer always answers
/// before (after the batch's deadline and the cache's [`PUT_TIMEOUT`]),
/// unless it died (then the answer is dropped at once).
pub const STORE_REPLY_WAIT: Duration = Duration::from_secs(25);
/// How long an idle pull waits for a message before it yields to a stop request.
pub const IDLE_WAIT: Duration = Duration::from_secs(1);
/// How long one pull (an idle wait included) may take before the consumer is
/// set up again.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(5);
/// How long setting up the stream and the consumer may take before it is retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the writer waits for the cache to serve a batch's new versions
/// before it answers without.
pub const PUT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long the cache waits on persistence before it serves a stale entry or
/// gives up.
pub const PERSISTENCE_TIMEOUT: Duration = Duration::from_secs(3);
/// The longest a request may take before it is answered 503.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a read with `?min_seq=` waits for this replica to apply that
/// sequence unless it says (`?wait=`), and the longest it may ask for.
pub const FRESHNESS_WAIT: Duration = Duration::from_secs(2);
pub const MAX_FRESHNESS_WAIT: Duration = Duration::from_secs(5);
/// How long a readiness probe waits on Postgres.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long opening one Postgres connection may take (the pools' connect and
/// acquire timeouts).
pub const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a graceful stop of http waits for requests in flight.
pub const HTTP_GRACE: Duration = Duration::from_secs(5);

const fn shorter(a: Duration, b: Duration) -> bool {
    a.as_millis() < b.as_millis()
}

// A statement times out inside its batch's deadline, so a hung statement
// fails the batch before the writer has to cancel it.
const _: () = assert!(shorter(STATEMENT_TIMEOUT, WRITE_DEADLINE));
// The writer answers (stored, failed or cancelled; the new versions served
// or given up on) before ingest stops waiting.
const _: () = assert!(shorter(
    WRITE_DEADLINE.saturating_add(PUT_TIMEOUT),
    STORE_REPLY_WAIT
));
// An idle pull ends before the pull is taken for hung.
const _: () = assert!(shorter(IDLE_WAIT, PULL_TIMEOUT));
// A stale entry can still be served to the request that found Postgres hung.
const _: () = assert!(shorter(PERSISTENCE_TIMEOUT, REQUEST_TIMEOUT));
const _: () = assert!(shorter(PROBE_TIMEOUT, REQUEST_TIMEOUT));
// A read that waited its longest for its sequence still has time to answer.
const _: () = assert!(shorter(FRESHNESS_WAIT, MAX_FRESHNESS_WAIT));
const _: () = assert!(shorter(
    MAX_FRESHNESS_WAIT.saturating_add(PERSISTENCE_TIMEOUT),
    REQUEST_TIMEOUT
));

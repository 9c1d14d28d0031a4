//! The contract between ingest and persistence: one batch of messages pulled
//! from the stream, and what storing it did to each message.
//!
//! Ingest decodes every message and hands the batch over whole, valid and
//! invalid messages alike. Persistence stores the valid ones and sets the
//! others aside in one transaction, and answers for each message what ingest
//! must tell JetStream: ack it, terminate it, or have it redelivered later.

use crate::product::{DecodeError, Product, ProductUpdate};
use bytes::Bytes;
use std::fmt;

/// Messages of one stream, in stream order, to be stored in one transaction.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The stream's identity (name and creation time): a stream sequence only
    /// orders the messages of one stream, and a recreated stream starts again at 1.
    pub stream: String,
    pub messages: Vec<Incoming>,
}

/// One message as it came from the stream.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub stream_seq: u64,
    pub subject: String,
    pub payload: Bytes,
    /// The product it carries, or the decoder's reason why it carries none.
    pub decoded: Result<ProductUpdate, DecodeError>,
    /// The operator who sent it from the web UI's forms (its
    /// `Products-Operator` header), if one did.
    pub operator: Option<String>,
    /// This is its last delivery (`INGEST_MAX_DELIVERIES`): if Postgres
    /// refuses it again, even for a rule of the database, it is set aside
    /// rather than redelivered, so refused messages never stall the consumer.
    pub last_delivery: bool,
}

/// What storing a batch did.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The current version of every product the batch names (changed by it or
    /// not), for the cache.
    pub current: Vec<Product>,
    /// One per message, in the batch's order.
    pub outcomes: Vec<Outcome>,
}

/// What became of one message, and so what JetStream is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored, or found stored already (a redelivery): ack it.
    Stored,
    /// Kept in `rejected_messages` with its reason: terminate it, never redeliver.
    SetAside(Rejection),
    /// Not stored, through no fault of its own (a rule of the database, such
    /// as a constraint added by a deployment): redeliver it later, up to its
    /// last delivery.
    Retry { reason: String },
}

/// Why a message was set aside, and who refused it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// Not a valid product (see [`crate::product::decode`]).
    Invalid(DecodeError),
    /// Valid, but Postgres refused it: its data is something Postgres cannot
    /// hold (a data exception), or it broke a rule of the database on its last
    /// delivery.
    RefusedByPostgres(String),
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Invalid(error) => error.fmt(f),
            Rejection::RefusedByPostgres(reason) => write!(f, "Postgres refused it: {reason}"),
        }
    }
}

/// How much of a set-aside payload is kept for a person to look at.
pub const KEPT_PAYLOAD_BYTES: usize = 4096;

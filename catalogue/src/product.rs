//! The product: the type the service stores and serves, what a message asks
//! for ([`ProductUpdate`]), and the limits on its fields.
//!
//! The wire format that publishers send is decoded in [`decode`] (the object
//! and its keys) and [`rules`] (each field's rules).

mod decode;
mod error;
mod rules;

pub use decode::{FIELDS, check_fields, decode};
pub use error::{DecodeError, FieldProblem};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

/// The largest payload the decoder reads; larger ones are rejected unread.
pub const MAX_PAYLOAD_BYTES: usize = 64 * 1024;
/// The longest `name` or `manufacturer`, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 256;
/// The longest `description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 4096;
/// The most keys `attributes` may have.
pub const MAX_ATTRIBUTES: usize = 64;
/// The longest attribute key, in characters.
pub const MAX_ATTRIBUTE_KEY_CHARS: usize = 128;
/// The longest attribute string value, in characters.
pub const MAX_ATTRIBUTE_VALUE_CHARS: usize = 1024;
/// The highest price: 2^53, the largest integer a JSON number carries exactly everywhere.
pub const MAX_PRICE: u64 = 1 << 53;
/// The highest id a message may give: 2^53 too, so that ids survive a round
/// trip through any JSON client, and the ids the service assigns above the
/// ones publishers chose can never run out.
pub const MAX_ID: i64 = 1 << 53;

/// The message header that names the operator who sent a change from the
/// web UI's forms (set by the service from the session, never from a field).
pub const OPERATOR_HEADER: &str = "Products-Operator";
/// The longest operator name.
pub const MAX_OPERATOR_CHARS: usize = 64;

/// An operator's name, wherever it comes from (the users file, the sign-in
/// form, a proxy's header, a message's [`OPERATOR_HEADER`]): 1 to
/// [`MAX_OPERATOR_CHARS`] characters, no control characters, no `:`, no
/// space at either end.
pub fn check_operator(name: &str) -> Result<&str, String> {
    let len = name.chars().count();
    if len == 0 || len > MAX_OPERATOR_CHARS {
        return Err(format!("must be 1 to {MAX_OPERATOR_CHARS} characters"));
    }
    if name.chars().any(|c| c.is_control() || c == ':') || name.trim() != name {
        return Err(
            "must not contain control characters or ':', nor start or end with a space".into(),
        );
    }
    Ok(name)
}

/// A product as stored and served (its schema in `/openapi.json` is written
/// beside the API, in actors' `http/openapi.rs`, and checked against this
/// type's JSON there).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: i64,
    pub name: String,
    /// Whole currency units, as in the old service.
    pub price: i64,
    pub manufacturer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub attributes: Map<String, Value>,
    /// Which stored version this is: Postgres stamps a higher revision on
    /// every later version of a row. Not served.
    #[serde(skip)]
    pub revision: i64,
    /// The stream sequence of the message that set this version: a client
    /// that published it knows it from the JetStream ack.
    pub stream_seq: i64,
    /// When this version was stored, by Postgres's clock, as RFC 3339 in UTC
    /// (`2026-11-26T00:12:03.123456Z`).
    pub updated_at: String,
    /// The operator who last changed it through the web UI's forms; absent
    /// when its last message came from another publisher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub changed_by: Option<String>,
}

/// A decoded, valid message: what it asks the service to do.
#[derive(Clone, Debug, PartialEq)]
pub enum ProductUpdate {
    /// Create or replace a product.
    Upsert(Upsert),
    /// Delete the product `id` (`{"id": N, "deleted": true}`; the message's
    /// other fields are not read).
    Delete { id: i64 },
}

impl ProductUpdate {
    /// The id the message names; `None` asks for a new product with the
    /// next free id.
    pub fn id(&self) -> Option<i64> {
        match self {
            ProductUpdate::Upsert(upsert) => upsert.id,
            ProductUpdate::Delete { id } => Some(*id),
        }
    }
}

/// A product to create or replace, as a message gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Upsert {
    /// `None` asks the service to assign the next id; `Some(id)` creates or replaces `id`.
    pub id: Option<i64>,
    pub name: String,
    pub price: i64,
    pub manufacturer: String,
    pub description: Option<String>,
    pub attributes: Map<String, Value>,
}

impl fmt::Display for Product {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{} {} by {} for {}",
            self.id, self.name, self.manufacturer, self.price
        )
    }
}

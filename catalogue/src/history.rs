//! The change stream's contract: where a change is in the history of the
//! catalogue ([`Position`]), what it did ([`Change`]), and one read of the
//! history ([`HistoryPage`]). Persistence fills these in from Postgres; http
//! serves them (`GET /products/changes`) and the live pages apply them.
//!
//! A position is `XID.ID`: the writing transaction's id, then the product's
//! id (0 for a `TRUNCATE`, which comes first in its transaction). Positions
//! are served only once every transaction with a lower id has ended, so the
//! history up to a served position never changes: a change committed later
//! always lands after every position already served. A product changed again
//! moves to its new position (the history keeps each product's latest
//! change, as a compacted log does). `XID` alone means "the end of `XID`":
//! every change of that transaction and of those before it, which is what a
//! snapshot (`GET /products.ndjson`) and a caught-up stream report; `0` is
//! the start.

use crate::product::Product;
use serde::Serialize;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// A place in the history: changes are served in this order, and a client
/// that saw the change at a position resumes after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The writing transaction's id (`xid8`).
    pub xid: u64,
    /// The product's id in that transaction; [`Position::END`] for "all of it".
    pub slot: i64,
}

impl Position {
    /// Before every change.
    pub const START: Position = Position { xid: 0, slot: END };

    /// After every change of the transaction `xid` and those before it.
    pub fn end_of(xid: u64) -> Position {
        Position { xid, slot: END }
    }

    /// A position every change before which a reader of the Postgres
    /// snapshot `snapshot` (`xmin:xmax:xip,…`) has seen: the end of the
    /// transactions below its `xmin`, which had all ended. (It may have seen
    /// some changes after it too: a page rendered from it and following the
    /// stream from here may get a change it shows again, never miss one.)
    pub fn seen_by(snapshot: &str) -> Option<Position> {
        let xmin: u64 = snapshot.split(':').next()?.parse().ok()?;
        Some(Position::end_of(xmin.checked_sub(1)?))
    }
}

/// The slot of [`Position::end_of`]: above every id.
const END: i64 = i64::MAX;

/// The longest position text read: two 20-digit numbers and a dot.
const MAX_POSITION_LEN: usize = 41;

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.slot {
            END => write!(f, "{}", self.xid),
            slot => write!(f, "{}.{slot}", self.xid),
        }
    }
}

/// A position given by a client that is not one this service writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a position is `XID` or `XID.ID` (whole numbers, as the stream gives them), not “{0}”")]
pub struct BadPosition(pub String);

impl FromStr for Position {
    type Err = BadPosition;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            let shown: String = text.chars().take(MAX_POSITION_LEN).collect();
            BadPosition(shown)
        };
        if text.len() > MAX_POSITION_LEN {
            return Err(bad());
        }
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        match text.split_once('.') {
            None if digits(text) => Ok(Position::end_of(text.parse().map_err(|_| bad())?)),
            Some((xid, slot)) if digits(xid) && digits(slot) => {
                let slot: i64 = slot.parse().map_err(|_| bad())?;
                if slot == END {
                    return Err(bad());
                }
                Ok(Position {
                    xid: xid.parse().map_err(|_| bad())?,
                    slot,
                })
            }
            _ => Err(bad()),
        }
    }
}

/// What one change did.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// The product as it is now (created or changed).
    Upsert(Arc<Product>),
    /// The product `id` was deleted.
    Delete { id: i64 },
    /// Every product was deleted (a `TRUNCATE`).
    Clear,
}

/// One change at its position, as the stream serves it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub position: Position,
    pub change: Change,
}

impl Event {
    /// Its JSON (one line of the stream):
    /// `{"position":"P","op":"upsert","product":{…}}`,
    /// `{"position":"P","op":"delete","id":N}` or `{"position":"P","op":"clear"}`.
    pub fn to_json(&self) -> String {
        let (op, product, id) = match &self.change {
            Change::Upsert(product) => ("upsert", Some(&**product), None),
            Change::Delete { id } => ("delete", None, Some(*id)),
            Change::Clear => ("clear", None, None),
        };
        let line = Line {
            position: self.position.to_string(),
            op,
            product,
            id,
        };
        serde_json::to_string(&line).expect("an event always serializes to JSON")
    }
}

/// An event as it is written: its fields in this order.
#[derive(Serialize)]
struct Line<'a> {
    position: String,
    op: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    product: Option<&'a Product>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<i64>,
}

/// One read of the history after a position.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HistoryPage {
    /// The changes, in position order.
    pub events: Vec<Event>,
    /// Every change up to here has been read: the last event's position, or,
    /// when the read found every change there is ([`HistoryPage::complete`]),
    /// the end of the served history.
    pub through: Option<Position>,
    /// Whether the read reached the end of the served history.
    pub complete: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_reads_back_as_it_is_written() {
        for position in [
            Position::START,
            Position::end_of(812),
            Position { xid: 812, slot: 0 },
            Position { xid: 812, slot: 7 },
            Position {
                xid: u64::MAX,
                slot: i64::MAX - 1,
            },
        ] {
            assert_eq!(position.to_string().parse(), Ok(position), "{position}");
        }
        assert_eq!(Position::START.to_string(), "0");
        assert_eq!("812.7".parse(), Ok(Position { xid: 812, slot: 7 }));
    }

    #[test]
    fn a_snapshot_has_seen_everything_below_its_xmin() {
        assert_eq!(
            Position::seen_by("812:820:814,815"),
            Some(Position::end_of(811))
        );
        assert_eq!(Position::seen_by("812:812:"), Some(Position::end_of(811)));
        assert_eq!(Position::seen_by("0:0:"), None);
        assert_eq!(Position::seen_by("nonsense"), None);
    }

    #[test]
    fn positions_order_by_transaction_then_id_and_the_end_of_one_is_after_its_ids() {
        let clear = Position { xid: 9, slot: 0 };
        let first = Position { xid: 9, slot: 1 };
        let later = Position {
            xid: 9,
            slot: 1 << 53,
        };
        assert!(Position::end_of(8) < clear);
        assert!(clear < first && first < later);
        assert!(later < Position::end_of(9));
        assert!(Position::end_of(9) < Position { xid: 10, slot: 0 });
    }

    #[test]
    fn anything_else_is_refused_with_what_was_given() {
        for text in [
            "",
            ".",
            "1.",
            ".1",
            "1.2.3",
            "-1",
            "1.-2",
            "1e3",
            " 1",
            "18446744073709551616",
            "1.9223372036854775807",
            "1.9223372036854775808",
            "xmin:xmax:",
            &"9".repeat(100),
        ] {
            let refused = text.parse::<Position>();
            assert!(refused.is_err(), "{text:?} was taken");
            assert!(refused.unwrap_err().0.len() <= MAX_POSITION_LEN, "{text:?}");
        }
    }

    #[test]
    fn an_event_is_one_line_of_json_with_its_position_and_operation() {
        let product = Product {
            id: 7,
            name: "pen\nred".into(),
            price: 10,
            manufacturer: "bic".into(),
            description: None,
            attributes: serde_json::Map::new(),
            revision: 3,
            stream_seq: 4,
            updated_at: "2026-12-04T00:00:00.000000Z".into(),
            changed_by: None,
        };
        let upsert = Event {
            position: Position { xid: 812, slot: 7 },
            change: Change::Upsert(Arc::new(product)),
        };
        let line = upsert.to_json();
        assert!(!line.contains('\n'), "{line}");
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&line).unwrap(),
            serde_json::json!({"position": "812.7", "op": "upsert", "product": {
                "id": 7, "name": "pen\nred", "price": 10, "manufacturer": "bic",
                "stream_seq": 4, "updated_at": "2026-12-04T00:00:00.000000Z"}})
        );
        let delete = Event {
            position: Position { xid: 813, slot: 7 },
            change: Change::Delete { id: 7 },
        };
        assert_eq!(
            delete.to_json(),
            r#"{"position":"813.7","op":"delete","id":7}"#
        );
    }
}

//! Query parameters, parsed with messages a person can act on.

use crate::timeouts::{FRESHNESS_WAIT, MAX_FRESHNESS_WAIT};
use catalogue::filter::{Filter, MAX_TEXT_CHARS, MIN_TEXT_CHARS};
use catalogue::product::{MAX_NAME_CHARS, MAX_PRICE};
use salvo::Request;
use std::time::Duration;

/// What a client is told to wait when every search connection is busy.
pub const SEARCH_RETRY_AFTER_SECS: u32 = 2;
/// The most products one list request returns.
pub const MAX_LIMIT: u64 = 1000;
/// How many products a list request returns when it does not say.
pub const DEFAULT_LIMIT: u64 = 100;

/// `?id=` of the detail page and `/products/{id}`: `Ok(None)` when absent.
pub fn product_id(raw: Option<&str>) -> Result<Option<i64>, String> {
    let Some(raw) = raw else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("The id is empty: give a positive whole number, for example ?id=1.".into());
    }
    match trimmed.parse::<i64>() {
        Ok(id) if id > 0 => Ok(Some(id)),
        Ok(_) => Err(format!(
            "The id must be a positive whole number, not {}.",
            quote(raw)
        )),
        Err(e) if *e.kind() == std::num::IntErrorKind::PosOverflow => Err(format!(
            "The id {} is too large: ids go up to {}.",
            quote(raw),
            i64::MAX
        )),
        Err(_) => Err(format!(
            "The id must be a positive whole number, not {}.",
            quote(raw)
        )),
    }
}

/// `?min_seq=` and `?wait=` of the JSON reads: answer only once this replica
/// has applied the stream up to `min_seq`, waiting at most `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    pub min_seq: u64,
    pub wait: Duration,
}

impl Freshness {
    /// `Ok(None)` when the request does not ask (`min_seq` absent).
    pub fn from_request(req: &Request) -> Result<Option<Self>, String> {
        let Some(raw) = req.queries().get("min_seq") else {
            if req.queries().get("wait").is_some() {
                return Err("`wait` needs `min_seq`: the stream sequence to wait for.".into());
            }
            return Ok(None);
        };
        let min_seq = raw.trim().parse::<u64>().map_err(|_| {
            format!(
                "`min_seq` must be a stream sequence (a whole number, 0 or more), not {}.",
                quote(raw)
            )
        })?;
        let wait = match req.queries().get("wait") {
            None => FRESHNESS_WAIT,
            Some(raw) => parse_wait(raw).ok_or_else(|| {
                format!(
                    "`wait` must be a duration from 0s to {}s (for example 500ms or 2s), not {}.",
                    MAX_FRESHNESS_WAIT.as_secs(),
                    quote(raw)
                )
            })?,
        };
        Ok(Some(Self { min_seq, wait }))
    }
}

/// `2s`, `500ms`, or a number of seconds (`1.5`), up to the cap.
fn parse_wait(raw: &str) -> Option<Duration> {
    let raw = raw.trim();
    let wait = match raw.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::try_from_secs_f64(seconds).ok()?
        }
        Ok(_) => return None,
        Err(_) => humantime::parse_duration(raw).ok()?,
    };
    (wait <= MAX_FRESHNESS_WAIT).then_some(wait)
}

/// `?q=`, `?manufacturer=`, `?min_price=` and `?max_price=` of the lists
/// (the pages and the JSON API alike): what to search for, or an empty
/// filter for every product.
pub fn filter(req: &Request) -> Result<Filter, String> {
    let text: Option<String> = req
        .queries()
        .get("q")
        .map(|q| q.trim().chars().take(MAX_TEXT_CHARS).collect::<String>())
        .filter(|q| !q.is_empty());
    if text
        .as_ref()
        .is_some_and(|q| q.chars().count() < MIN_TEXT_CHARS)
    {
        return Err(format!(
            "A search needs at least {MIN_TEXT_CHARS} characters: it finds the products whose name or manufacturer contains them."
        ));
    }
    let manufacturer = req
        .queries()
        .get("manufacturer")
        .map(|m| m.trim().chars().take(MAX_NAME_CHARS).collect::<String>())
        .filter(|m| !m.is_empty());
    let price = |name: &str| -> Result<Option<i64>, String> {
        let Some(raw) = req.queries().get(name) else {
            return Ok(None);
        };
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|price| *price <= MAX_PRICE)
            .map(|price| Some(price as i64))
            .ok_or_else(|| {
                format!(
                    "`{name}` must be a price (a whole number from 0 to {MAX_PRICE}), not {}.",
                    quote(raw)
                )
            })
    };
    let (min_price, max_price) = (price("min_price")?, price("max_price")?);
    if let (Some(min), Some(max)) = (min_price, max_price)
        && min > max
    {
        return Err(format!(
            "`min_price` ({min}) must not be more than `max_price` ({max})."
        ));
    }
    Ok(Filter {
        text,
        manufacturer,
        min_price,
        max_price,
    })
}

/// `?before=` of the rejected messages' pages (the page and the JSON): the
/// last row seen, or `None` for the newest.
pub fn before(req: &Request) -> Result<Option<i64>, String> {
    match req.queries().get("before") {
        None => Ok(None),
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(before) if before > 0 => Ok(Some(before)),
            _ => Err(format!(
                "`before` must be the last row seen (a positive whole number), not {}.",
                quote(raw)
            )),
        },
    }
}

/// `?after=` and `?limit=` of the lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    /// Products with an id greater than this one.
    pub after: i64,
    pub limit: u64,
}

impl Paging {
    pub fn from_request(req: &Request) -> Result<Self, String> {
        let after = match req.queries().get("after") {
            None => 0,
            Some(raw) => raw
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|after| *after >= 0)
                .ok_or_else(|| {
                    format!(
                        "`after` must be the last id seen (a whole number, 0 or more), not {}.",
                        quote(raw)
                    )
                })?,
        };
        let limit = match req.queries().get("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|limit| *limit > 0)
                .ok_or_else(|| {
                    format!(
                        "`limit` must be a whole number from 1 to {MAX_LIMIT}, not {}.",
                        quote(raw)
                    )
                })?
                .min(MAX_LIMIT),
        };
        Ok(Self { after, limit })
    }

    /// The query string of the page after one that ended with `last_id`.
    pub fn next_query(&self, last_id: i64) -> String {
        format!("after={last_id}&limit={}", self.limit)
    }
}

/// Echoes a client's value back in a message, cut to a sane length.
fn quote(raw: &str) -> String {
    const MAX: usize = 40;
    let mut shown: String = raw.chars().take(MAX).collect();
    if raw.chars().count() > MAX {
        shown.push('…');
    }
    format!("“{shown}”")
}

/// The query string of the next page, if this one (of `len` products, the
/// last with the id `last`) was full.
pub fn next_page(len: usize, last: Option<i64>, paging: &Paging) -> Option<String> {
    let last = last?;
    (len as u64 == paging.limit).then(|| paging.next_query(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_positive_64_bit_integers() {
        assert_eq!(product_id(None), Ok(None));
        assert_eq!(product_id(Some("42")), Ok(Some(42)));
        assert_eq!(product_id(Some(" 7 ")), Ok(Some(7)));
        for bad in ["", "0", "-1", "abc", "1.5", "9223372036854775808", "1e3"] {
            assert!(product_id(Some(bad)).is_err(), "{bad:?} should be refused");
        }
        assert!(
            product_id(Some("9223372036854775808"))
                .unwrap_err()
                .contains("too large")
        );
    }
}

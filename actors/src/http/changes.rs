//! The change stream and the snapshot it starts from, for programs and the
//! live pages (positions and events: `catalogue::history`).
//!
//! - `GET /products/changes?after=POS` streams every change after `POS`
//!   (upserts and deletions, each with its position), read from Postgres,
//!   then each new one as it is committed ([`super::tail`]); as
//!   newline-delimited JSON, or as Server-Sent Events when the client accepts
//!   `text/event-stream` (each event's id is its position, so a browser's
//!   `Last-Event-ID` resumes it). An `up_to_date` line or event says where
//!   the stream is when it has sent everything (and every [`HEARTBEAT`]), so
//!   that a client that saw no change still moves on. A position older than
//!   the retention is answered 410: the client starts again from a snapshot.
//! - `GET /products.ndjson` streams the catalogue in id order as of the
//!   position in its `Products-Position` header, a page at a time: it and the
//!   changes after that position make the catalogue.
//!
//! Both are long answers: at most `EVENTS_MAX_FOLLOWERS` are open at once,
//! one more is answered 503 with `Retry-After`.

use super::openapi::{ChangesQuery, ChangesResponses, SnapshotResponses};
use super::respond::{json_error, problem, unavailable_json};
use super::state::{AppState, Follower, app_state};
use super::tail::{Batch, PAGE};
use crate::persistence::history::History;
use bytes::Bytes;
use catalogue::history::{HistoryPage, Position};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use salvo::http::StatusCode;
use salvo::http::header::{self, HeaderValue};
use salvo::oapi::endpoint;
use salvo::prelude::*;
use salvo::sse::{SseEvent, SseKeepAlive};
use serde_json::{Map, json};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;

/// The header that gives a snapshot's position.
pub const POSITION: &str = "products-position";
/// An `up_to_date` is sent after this long without one, so that proxies see a
/// live connection and a client's position moves on.
const HEARTBEAT: Duration = Duration::from_secs(15);
/// How long a browser waits before it reconnects.
const RETRY: Duration = Duration::from_secs(2);
/// What a stream refused for want of room is told to wait, in seconds.
const FULL_RETRY_AFTER_SECS: u32 = 5;
/// Products per read of a snapshot.
const SNAPSHOT_PAGE: u64 = 1_000;

/// `GET /products/changes`: every change after `?after=` (or the browser's
/// `Last-Event-ID`), then each new one; absent, only those from now on.
#[endpoint(
    tags("products"),
    parameters(ChangesQuery),
    responses(ChangesResponses)
)]
pub async fn changes(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let given = req
        .header::<String>("last-event-id")
        .filter(|id| !id.is_empty())
        .or_else(|| req.query::<String>("after"));
    let after = match given.as_deref().map(str::parse::<Position>).transpose() {
        Ok(after) => after,
        Err(error) => {
            return json_error(res, StatusCode::BAD_REQUEST, &format!("`after`: {error}."));
        }
    };
    let state = app_state(depot);
    let Some(follower) = admit(state, res) else {
        return;
    };
    // Subscribed before the first read: no batch falls between the two.
    let batches = state.tail.subscribe();
    let first = match after {
        Some(after) => match state.history(after, PAGE).await {
            Ok(History::Page(page)) => Catching::Read(page, after),
            Ok(History::Gone { horizon }) => return gone(res, after, horizon),
            Err(error) => return unavailable_json(res, &error),
        },
        None => match state.served_through().await {
            Ok(now) => Catching::From(now),
            Err(error) => return unavailable_json(res, &error),
        },
    };
    let following = Following {
        app: state.clone(),
        batches,
        closing: state.closing.clone(),
        position: Position::START,
        first: Some(first),
        behind: false,
        _follower: follower,
    };
    let closing = *state.closing.borrow();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if wants_events(req) {
        let count = state.products.clone();
        let events = following.items().map(move |item| {
            Ok::<_, Infallible>(match item {
                Item::Change(position, json) => SseEvent::default()
                    .name("change")
                    .id(position.to_string())
                    .text(&*json),
                Item::UpToDate(position) => SseEvent::default()
                    .name("up_to_date")
                    .id(position.to_string())
                    .retry(RETRY)
                    .text(
                        json!({"position": position.to_string(), "count": count.count()})
                            .to_string(),
                    ),
            })
        });
        let events: BoxStream<'static, Result<SseEvent, Infallible>> = match closing {
            true => stream::empty().boxed(),
            false => events.boxed(),
        };
        SseKeepAlive::new(events)
            .max_interval(HEARTBEAT)
            .stream(res);
    } else {
        let lines = following.items().map(|item| {
            let mut line = match item {
                Item::Change(_, json) => json.to_string(),
                Item::UpToDate(position) => {
                    format!(r#"{{"position":"{position}","op":"up_to_date"}}"#)
                }
            };
            line.push('\n');
            Ok::<_, Infallible>(Bytes::from(line))
        });
        let _ = res.add_header(header::CONTENT_TYPE, "application/x-ndjson", true);
        match closing {
            true => res.stream(stream::empty::<Result<Bytes, Infallible>>()),
            false => res.stream(lines),
        }
    }
}

/// `GET /products.ndjson`: every product, one JSON object a line, in id
/// order, as of the position in the `Products-Position` header.
#[endpoint(tags("products"), responses(SnapshotResponses))]
pub async fn snapshot(depot: &mut Depot, res: &mut Response) {
    let state = app_state(depot);
    let Some(follower) = admit(state, res) else {
        return;
    };
    let through = match state.served_through().await {
        Ok(through) => through,
        Err(error) => return unavailable_json(res, &error),
    };
    let app = state.clone();
    // Pages read one after another as the client takes them; a failed read
    // ends the answer with an error, so the client sees it cut short.
    let pages = stream::try_unfold(Some(0), move |after| {
        let app = app.clone();
        async move {
            let Some(after) = after else {
                return Ok(None);
            };
            let products = app.snapshot_page(through, after, SNAPSHOT_PAGE).await?;
            let next = match products.len() as u64 == SNAPSHOT_PAGE {
                true => products.last().map(|product| product.id),
                false => None,
            };
            let mut lines = Vec::with_capacity(products.len() * 200);
            for product in &products {
                serde_json::to_writer(&mut lines, product)
                    .expect("a Product always serializes to JSON");
                lines.push(b'\n');
            }
            Ok::<_, super::state::Unavailable>(Some((Bytes::from(lines), next)))
        }
    });
    let pages = pages.map(move |page| {
        let _open = &follower;
        page.map_err(|error| {
            tracing::warn!(%error, "a snapshot was cut short");
            error
        })
    });
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(POSITION, through.to_string().parse().expect("digits"));
    let _ = res.add_header(header::CONTENT_TYPE, "application/x-ndjson", true);
    res.stream(pages);
}

/// A place for one more long answer, or a 503 that says to come back.
fn admit(state: &AppState, res: &mut Response) -> Option<Follower> {
    let follower = state.followers.admit();
    if follower.is_none() {
        res.headers_mut()
            .insert(header::RETRY_AFTER, FULL_RETRY_AFTER_SECS.into());
        json_error(
            res,
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many change streams are open on this server right now; try again in a moment.",
        );
    }
    follower
}

/// 410: the history after `after` was pruned in part.
fn gone(res: &mut Response, after: Position, horizon: Position) {
    let mut extra = Map::new();
    extra.insert("horizon".into(), horizon.to_string().into());
    extra.insert("snapshot".into(), "/products.ndjson".into());
    problem(
        res,
        StatusCode::GONE,
        &format!(
            "The changes after {after} are no longer kept (kept after {horizon}): take a \
             snapshot from /products.ndjson and follow the changes after its \
             Products-Position."
        ),
        extra,
    );
}

/// Whether the client asked for Server-Sent Events.
fn wants_events(req: &Request) -> bool {
    req.headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|accept| accept.contains("text/event-stream"))
}

/// What a stream sends.
enum Item {
    Change(Position, Arc<str>),
    /// Every change up to here has been sent.
    UpToDate(Position),
}

/// Where a stream starts.
enum Catching {
    /// The first page, read before answering (so that a 410 could be).
    Read(HistoryPage, Position),
    /// Nothing to send from before: the history ends here.
    From(Position),
}

/// One open stream.
struct Following {
    app: AppState,
    batches: broadcast::Receiver<Arc<Batch>>,
    closing: watch::Receiver<bool>,
    /// Every change up to here has been sent.
    position: Position,
    first: Option<Catching>,
    /// Batches were missed: read from Postgres until up to date.
    behind: bool,
    _follower: Follower,
}

impl Following {
    fn items(self) -> impl futures::Stream<Item = Item> + Send + 'static {
        stream::unfold(self, |mut following| async move {
            let items = following.next().await?;
            Some((stream::iter(items), following))
        })
        .flatten()
    }

    /// The next items; `None` once the stream ends.
    async fn next(&mut self) -> Option<Vec<Item>> {
        match self.first.take() {
            Some(Catching::Read(page, after)) => {
                self.position = after;
                return Some(self.apply(page));
            }
            Some(Catching::From(now)) => {
                self.position = now;
                return Some(vec![Item::UpToDate(now)]);
            }
            None => {}
        }
        if self.behind {
            return match self.app.history(self.position, PAGE).await {
                Ok(History::Page(page)) => Some(self.apply(page)),
                // Pruned past it, or Postgres away: the client comes back
                // from its position (and is told 410 if it must).
                Ok(History::Gone { .. }) | Err(_) => None,
            };
        }
        tokio::select! {
            received = self.batches.recv() => match received {
                // Nothing this stream has not sent (the tail's start, or it
                // is ahead of the tail).
                Ok(batch) if batch.from <= self.position && batch.to <= self.position => {
                    Some(Vec::new())
                }
                Ok(batch) if batch.from <= self.position => {
                    let mut items: Vec<Item> = batch
                        .events
                        .iter()
                        .filter(|(position, _)| *position > self.position)
                        .map(|(position, json)| Item::Change(*position, Arc::clone(json)))
                        .collect();
                    self.position = self.position.max(batch.to);
                    items.push(Item::UpToDate(self.position));
                    Some(items)
                }
                Ok(_) | Err(RecvError::Lagged(_)) => {
                    self.behind = true;
                    Some(Vec::new())
                }
                Err(RecvError::Closed) => None,
            },
            _ = self.closing.wait_for(|closing| *closing) => None,
            _ = tokio::time::sleep(HEARTBEAT) => Some(vec![Item::UpToDate(self.position)]),
        }
    }

    /// A page read from Postgres: its changes, and `up_to_date` if it was the last.
    fn apply(&mut self, page: HistoryPage) -> Vec<Item> {
        let mut items: Vec<Item> = page
            .events
            .iter()
            .map(|event| Item::Change(event.position, Arc::from(event.to_json())))
            .collect();
        if let Some(through) = page.through {
            self.position = self.position.max(through);
        }
        self.behind = !page.complete;
        if page.complete {
            items.push(Item::UpToDate(self.position));
        }
        items
    }
}

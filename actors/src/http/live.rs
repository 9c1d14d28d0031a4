//! `GET /events`: the live feed of the pages (Server-Sent Events), read by
//! `views/static/live.js`.
//!
//! Each event is a change the cache applied ([`LiveEvent`]): on every replica,
//! for every committed write, whoever stored it. An event's SSE id is the
//! follower's position: a Postgres snapshot before which it has been sent
//! every change (the change feed's position, [`ProductCache::position`]).
//! Positions order commits, not writes, and mean the same on every replica:
//! a follower that comes back (the page's own position in `?since=`, or the
//! browser's `Last-Event-ID` on a reconnect, to this replica or another) is
//! sent every change committed after its position, read from Postgres, then
//! follows live. Only one that cannot be brought up to date (further behind
//! than [`REPLAY_MAX_ROWS`] changes, an unreadable position, Postgres away)
//! is told `reload`, never left with a hole. A follower that falls
//! [`LIVE_BUFFER`] events behind is brought up to date the same way, so a
//! slow browser costs no more memory than that.
//!
//! Events: `product` with `{"id", "name", "price", "manufacturer",
//! "description", "stream_seq", "updated_at", "changed_by", "revision",
//! "count"}` or `{"id", "deleted": true, "revision", "count"}` (`count`: how
//! many products there are now, `null` until the cache is rebuilt; a page
//! ignores an event whose revision is not above the one it shows), `position`
//! (no data: the follower's position moved), `hello` (the follower is up to
//! date: it comes first, or after the changes it was brought) and `reload`.
//!
//! Each event is encoded once, by the first follower that sends it, and the
//! others send the same text ([`Announced`]). At most `EVENTS_MAX_FOLLOWERS`
//! feeds are open at once; one more is answered 503 with `Retry-After`, and
//! `products_live_followers` says how many are open.

use super::state::{AppState, Follower, app_state};
use crate::cache::{Announced, LiveEvent};
#[cfg(doc)]
use crate::cache::{LIVE_BUFFER, ProductCache};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use salvo::prelude::*;
use salvo::sse::{SseEvent, SseKeepAlive};
use serde_json::json;
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, watch};

/// How long a browser waits before it reconnects.
const RETRY: Duration = Duration::from_secs(2);
/// What a follower refused for want of room is told to wait, in seconds.
const FULL_RETRY_AFTER_SECS: u32 = 5;
/// The most changes a follower is brought up to date with from Postgres;
/// one further behind reloads its page.
const REPLAY_MAX_ROWS: u64 = 1_000;
/// The longest position taken from a client.
const MAX_POSITION_LEN: usize = 4096;
/// A comment is sent when nothing else was for this long, so that proxies and
/// the server's own write-stall timeout see a live connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[handler]
pub async fn events(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let state = app_state(depot);
    let Some(follower) = state.followers.admit() else {
        res.headers_mut().insert(
            salvo::http::header::RETRY_AFTER,
            FULL_RETRY_AFTER_SECS.into(),
        );
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
        res.render(Text::Plain(
            "Too many live pages are open on this server right now; this page will try again.",
        ));
        return;
    };
    let since = req
        .header::<String>("last-event-id")
        .or_else(|| req.query::<String>("since"))
        .filter(|since| !since.is_empty());
    // Subscribed before anything is read: no change falls between the two.
    let receiver = state.products.follow();
    let app = state.clone();
    let closing = state.closing.clone();
    let already_closing = *closing.borrow();
    let following = Following {
        app,
        receiver,
        closing,
        position: None,
        replayed: HashMap::new(),
        _follower: follower,
    };
    let feed = stream::unfold(
        (following, Some(since)),
        |(mut following, start)| async move {
            let sent = match start {
                Some(since) => following.start(since).await,
                None => following.next().await?,
            };
            Some((sent, (following, None)))
        },
    )
    .flat_map(|sent| stream::iter(sent.into_iter().map(Ok::<_, Infallible>)));
    let feed: BoxStream<'static, Result<SseEvent, Infallible>> = if already_closing {
        stream::empty().boxed()
    } else {
        feed.boxed()
    };
    res.headers_mut().insert(
        salvo::http::header::CACHE_CONTROL,
        salvo::http::HeaderValue::from_static("no-store"),
    );
    SseKeepAlive::new(feed).max_interval(KEEP_ALIVE).stream(res);
}

/// One open feed.
struct Following {
    app: AppState,
    receiver: broadcast::Receiver<Arc<Announced>>,
    closing: watch::Receiver<bool>,
    /// Every change committed before this has been sent (`None`: the cache
    /// has no position yet).
    position: Option<Arc<str>>,
    /// The revision of each id sent by a replay: a live event not newer is
    /// not sent again.
    replayed: HashMap<i64, i64>,
    _follower: Follower,
}

impl Following {
    /// The first events: from `since` to now, or `hello`. A follower at the
    /// cache's own position is brought up to date from Postgres all the same:
    /// ingest announces a write before the change feed moves the position
    /// past it, and announces it once.
    async fn start(&mut self, since: Option<String>) -> Vec<SseEvent> {
        self.position = self.app.products.position();
        // No position given: from the cache's (what ingest announced before
        // this follower came is read again).
        match since.or_else(|| self.position.as_deref().map(str::to_owned)) {
            Some(since) => self.replay(since).await,
            None => vec![self.event("hello").retry(RETRY).text("{}")],
        }
    }

    /// The next events, live; `None` once the feed ends.
    async fn next(&mut self) -> Option<Vec<SseEvent>> {
        let received = tokio::select! {
            received = self.receiver.recv() => received,
            _ = self.closing.wait_for(|closing| *closing) => return None,
        };
        let announced = match received {
            Ok(announced) => announced,
            Err(RecvError::Lagged(_)) => {
                // Events were dropped for this follower: bring it up to date.
                let since = self.position.as_deref().unwrap_or_default().to_owned();
                return Some(self.replay(since).await);
            }
            Err(RecvError::Closed) => return None,
        };
        Some(match &announced.event {
            LiveEvent::Position(position) => {
                self.position = Some(Arc::clone(position));
                self.replayed.clear();
                vec![self.event("position").text("{}")]
            }
            LiveEvent::Reload => vec![self.reload()],
            event => {
                let replayed = self.replayed.get(&event_id(event));
                if replayed.is_some_and(|&revision| revision >= event.revision()) {
                    return Some(Vec::new());
                }
                let products = &self.app.products;
                let data = announced.encoded(|event| encode(event, products.count()));
                vec![self.event("product").text(data)]
            }
        })
    }

    /// Every change committed after `since`, from Postgres, then `hello` with
    /// the read's position as its id (up to date); `reload` if that cannot
    /// be done.
    async fn replay(&mut self, since: String) -> Vec<SseEvent> {
        if !well_formed(&since) {
            return vec![self.reload()];
        }
        let changes = match self.app.changes_since(since.clone(), REPLAY_MAX_ROWS).await {
            Ok(changes)
                if changes.too_many.is_none() && changes.deleted.iter().all(|d| d.id.is_some()) =>
            {
                changes
            }
            _ => return vec![self.reload()],
        };
        let count = self.app.products.count();
        let mut changed: Vec<LiveEvent> = changes
            .products
            .into_iter()
            .map(|product| LiveEvent::Changed(Arc::new(product)))
            .collect();
        changed.extend(changes.deleted.into_iter().filter_map(|deleted| {
            Some(LiveEvent::Deleted {
                id: deleted.id?,
                revision: deleted.revision,
            })
        }));
        changed.sort_by_key(LiveEvent::revision);
        self.replayed = changed
            .iter()
            .map(|e| (event_id(e), e.revision()))
            .collect();
        // Until `hello` says it is up to date, a reconnect starts from
        // `since` again.
        let since: Arc<str> = Arc::from(since);
        let mut sent: Vec<SseEvent> = changed
            .iter()
            .map(|event| {
                SseEvent::default()
                    .name("product")
                    .id(since.to_string())
                    .text(encode(event, count))
            })
            .collect();
        self.position = Some(Arc::from(changes.snapshot.as_str()));
        sent.push(self.event("hello").retry(RETRY).text("{}"));
        sent
    }

    /// An event named `name` with the follower's position as its id.
    fn event(&self, name: &str) -> SseEvent {
        SseEvent::default()
            .name(name)
            .id(self.position.as_deref().unwrap_or_default().to_owned())
    }

    fn reload(&self) -> SseEvent {
        self.event("reload").retry(RETRY).text("{}")
    }
}

/// A position as Postgres writes a snapshot (`xmin:xmax:xip,…`), of a
/// sensible length: anything else is not asked of Postgres.
fn well_formed(position: &str) -> bool {
    position.len() <= MAX_POSITION_LEN
        && position.split(':').count() == 3
        && position
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b':' || b == b',')
}

fn event_id(event: &LiveEvent) -> i64 {
    match event {
        LiveEvent::Changed(product) => product.id,
        LiveEvent::Deleted { id, .. } => *id,
        LiveEvent::Reload | LiveEvent::Position(_) => 0,
    }
}

fn encode(event: &LiveEvent, count: Option<u64>) -> String {
    let data = match event {
        LiveEvent::Changed(product) => json!({
            "id": product.id,
            "name": product.name,
            "price": product.price,
            "manufacturer": product.manufacturer,
            "description": product.description,
            "stream_seq": product.stream_seq,
            "updated_at": product.updated_at,
            "changed_by": product.changed_by,
            "revision": product.revision,
            "count": count,
        }),
        LiveEvent::Deleted { id, revision } => json!({
            "id": id,
            "deleted": true,
            "revision": revision,
            "count": count,
        }),
        LiveEvent::Reload | LiveEvent::Position(_) => json!({}),
    };
    data.to_string()
}

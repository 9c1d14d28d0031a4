//! `GET /events`: the live feed of the pages (Server-Sent Events), read by
//! `views/static/live.js`.
//!
//! Each event is a change the cache applied ([`LiveEvent`]): on every replica,
//! for every committed write, whoever stored it. An event's SSE id is its
//! revision. A follower starts from a revision (the page's, `?since=`, or on
//! a reconnect the browser's `Last-Event-ID`); if the cache has announced
//! anything newer, the changes in between are not kept, so the follower is
//! told `reload` once rather than shown a page with a hole in it. A follower
//! that falls [`LIVE_BUFFER`] events behind is told `reload` the same way: its
//! buffer is bounded, so a slow browser costs no more memory than that.
//!
//! Events: `product` with `{"id", "name", "price", "manufacturer",
//! "description", "stream_seq", "updated_at", "changed_by", "revision",
//! "count"}` or
//! `{"id", "deleted": true, "revision", "count"}` (`count`: how many products
//! there are now, `null` until the cache is rebuilt), and `reload` with
//! `{"revision"}`.
//!
//! Each event is encoded once, by the first follower that sends it, and the
//! others send the same text ([`Announced`]). At most `EVENTS_MAX_FOLLOWERS`
//! feeds are open at once; one more is answered 503 with `Retry-After`, and
//! `products_live_followers` says how many are open.

use super::state::app_state;
use crate::cache::{Announced, LiveEvent};
use futures::StreamExt;
use futures::stream::{self, BoxStream};
use salvo::prelude::*;
use salvo::sse::{SseEvent, SseKeepAlive};
use serde_json::json;
use std::convert::Infallible;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;

/// How long a browser waits before it reconnects.
const RETRY: Duration = Duration::from_secs(2);
/// What a follower refused for want of room is told to wait, in seconds.
const FULL_RETRY_AFTER_SECS: u32 = 5;
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
        .and_then(|since| since.trim().parse::<i64>().ok());
    let (receiver, latest) = state.products.follow();
    let products = state.products.clone();
    let closing = state.closing.clone();
    let already_closing = *closing.borrow();
    let first = match since {
        Some(since) if since < latest => reload(latest),
        _ => SseEvent::default()
            .name("hello")
            .id(latest.max(since.unwrap_or(0)).to_string())
            .retry(RETRY)
            .text("{}"),
    };
    let follow = stream::unfold(Some((receiver, follower)), move |following| {
        let products = products.clone();
        let mut closing = closing.clone();
        async move {
            let (mut receiver, follower) = following?;
            let event = tokio::select! {
                event = receiver.recv() => event,
                _ = closing.wait_for(|closing| *closing) => return None,
            };
            let sent = match event {
                Ok(announced) if matches!(announced.event, LiveEvent::Reload) => {
                    reload(products.latest_revision())
                }
                Ok(announced) => product_event(&announced, || products.count()),
                Err(RecvError::Lagged(_)) => reload(products.latest_revision()),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(sent), Some((receiver, follower))))
        }
    });
    let feed: BoxStream<'static, Result<SseEvent, Infallible>> = if already_closing {
        stream::empty().boxed()
    } else {
        stream::once(async move { Ok(first) }).chain(follow).boxed()
    };
    res.headers_mut().insert(
        salvo::http::header::CACHE_CONTROL,
        salvo::http::HeaderValue::from_static("no-store"),
    );
    SseKeepAlive::new(feed).max_interval(KEEP_ALIVE).stream(res);
}

/// The `product` event of `announced`, its data encoded once for every
/// follower (with the count of products when the first one sends it).
fn product_event(announced: &Announced, count: impl FnOnce() -> Option<u64>) -> SseEvent {
    let data = announced.encoded(|event| encode(event, count()));
    SseEvent::default()
        .name("product")
        .id(announced.event.revision().to_string())
        .text(data)
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
        LiveEvent::Reload => json!({}),
    };
    data.to_string()
}

fn reload(latest: i64) -> SseEvent {
    SseEvent::default()
        .name("reload")
        .id(latest.to_string())
        .retry(RETRY)
        .text(json!({ "revision": latest }).to_string())
}

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
//! "description", "stream_seq", "updated_at", "revision", "count"}` or
//! `{"id", "deleted": true, "revision", "count"}` (`count`: how many products
//! there are now, `null` until the cache is rebuilt), and `reload` with
//! `{"revision"}`.

use super::pages::app_state;
use crate::cache::LiveEvent;
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
/// A comment is sent when nothing else was for this long, so that proxies and
/// the server's own write-stall timeout see a live connection.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[handler]
pub async fn events(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let state = app_state(depot);
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
    let follow = stream::unfold(Some(receiver), move |receiver| {
        let products = products.clone();
        let mut closing = closing.clone();
        async move {
            let mut receiver = receiver?;
            let event = tokio::select! {
                event = receiver.recv() => event,
                _ = closing.wait_for(|closing| *closing) => return None,
            };
            let sent = match event {
                Ok(event) => product_event(&event, products.count()),
                Err(RecvError::Lagged(_)) => reload(products.latest_revision()),
                Err(RecvError::Closed) => return None,
            };
            Some((Ok::<_, Infallible>(sent), Some(receiver)))
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

fn product_event(event: &LiveEvent, count: Option<u64>) -> SseEvent {
    let data = match event {
        LiveEvent::Changed(product) => json!({
            "id": product.id,
            "name": product.name,
            "price": product.price,
            "manufacturer": product.manufacturer,
            "description": product.description,
            "stream_seq": product.stream_seq,
            "updated_at": product.updated_at,
            "revision": product.revision,
            "count": count,
        }),
        LiveEvent::Deleted { id, revision } => json!({
            "id": id,
            "deleted": true,
            "revision": revision,
            "count": count,
        }),
    };
    SseEvent::default()
        .name("product")
        .id(event.revision().to_string())
        .text(data.to_string())
}

fn reload(latest: i64) -> SseEvent {
    SseEvent::default()
        .name("reload")
        .id(latest.to_string())
        .retry(RETRY)
        .text(json!({ "revision": latest }).to_string())
}

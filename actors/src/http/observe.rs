//! What an operator sees of http: a request id on every request (its log
//! lines and its response), the request counted and timed by route, and
//! `GET /metrics`.
//!
//! - The request id is the client's `x-request-id` when it is well formed (1
//!   to [`MAX_REQUEST_ID`] characters of `A-Z a-z 0-9 - _ . :`, so it cannot
//!   forge log lines), else a new UUID; it is sent back in `x-request-id`.
//! - Every log line of the request is in its span (`request`, with the id,
//!   the method, the route and the path); one DEBUG line says how it ended.
//! - Metrics are labelled by the route's pattern (`/products/{id}`), never by
//!   the raw path, so that the series stay as few as the routes; a path no
//!   route serves counts as `unmatched`, and a method that is not a standard
//!   one as `other`.
//! - Every answer says how fresh it is: `Products-Applied-Seq`, the last
//!   stream sequence this replica had applied when the request came.
//! - A handler that panics is answered with a 500 (the error page, or JSON on
//!   the API's paths), logged at ERROR in the request's span (so with its
//!   request id) and counted (`products_http_panics_total`): the client gets
//!   an answer, never a dropped connection.

use super::respond::set_applied_seq;
use super::state::app_state;
use crate::freshness::Freshness;
use crate::metrics::{self, Metrics};
use crate::names::Names;
use futures::FutureExt;
use salvo::http::ResBody;
use salvo::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use salvo::prelude::*;
use std::time::Instant;
use tracing::{Instrument, debug, error, info_span};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// The hoop that wraps every request (the first one: it sees the final status,
/// a timeout's and a catcher's included).
pub struct Observe {
    metrics: Metrics,
    freshness: Freshness,
}

impl Observe {
    pub fn new(names: &Names, freshness: Freshness) -> Self {
        Self {
            metrics: Metrics::new(names),
            freshness,
        }
    }
}

#[async_trait]
impl Handler for Observe {
    async fn handle(
        &self,
        req: &mut Request,
        depot: &mut Depot,
        res: &mut Response,
        ctrl: &mut FlowCtrl,
    ) {
        let started = Instant::now();
        let id = request_id(req);
        let route = route(req);
        let method = method(req);
        let span = info_span!("request", request_id = %id, method = %req.method(), %route, path = %req.uri().path());
        if let Ok(value) = HeaderValue::from_str(&id) {
            res.headers_mut().insert(REQUEST_ID, value);
        }
        // Read before the answer is: it is at least this fresh.
        set_applied_seq(res, self.freshness.applied());
        let handled = std::panic::AssertUnwindSafe(ctrl.call_next(req, depot, res))
            .catch_unwind()
            .instrument(span.clone())
            .await;
        if let Err(panic) = handled {
            let message = panic
                .downcast_ref::<&str>()
                .map(|m| (*m).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            span.in_scope(|| error!(panic = %message, "a handler panicked; answered 500"));
            self.metrics.http_panics.increment(1);
            // Whatever the handler had written is dropped; the catcher writes
            // the error page (or JSON) for the 500.
            res.body(ResBody::None);
            res.headers_mut().remove(CONTENT_TYPE);
            res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
        }
        let status = res.status_code.unwrap_or(StatusCode::OK).as_u16();
        let took = started.elapsed();
        span.in_scope(|| debug!(status, took_ms = took.as_secs_f64() * 1000.0, "request"));
        self.metrics.http_request(route, method, status, took);
    }
}

/// The request's method for a label: one of the standard ones, or `other`
/// (a client may send any token as a method).
fn method(req: &Request) -> &'static str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    STANDARD
        .into_iter()
        .find(|m| *m == req.method().as_str())
        .unwrap_or("other")
}

/// The client's request id if it is well formed, else a new one.
fn request_id(req: &Request) -> String {
    req.headers()
        .get(REQUEST_ID)
        .and_then(|value| value.to_str().ok())
        .filter(|id| well_formed(id))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

fn well_formed(id: &str) -> bool {
    (1..=MAX_REQUEST_ID).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// The pattern of the route that serves the request: `/products/{id}`, or
/// `unmatched`. (The root's pattern is empty, as is that of a path no route
/// serves: only `/` is the root.)
fn route(req: &Request) -> String {
    match req.matched_path() {
        "" if req.uri().path() == "/" => "/".to_owned(),
        "" => "unmatched".to_owned(),
        pattern => format!("/{pattern}"),
    }
}

/// `GET /metrics`: every metric of the process in Prometheus's text format
/// (the cache's size is read at the scrape).
#[handler]
pub async fn serve(depot: &mut Depot, res: &mut Response) {
    let state = app_state(depot);
    let (entries, bytes) = state.products.size().await;
    let metrics = &state.metrics;
    metrics.cache_entries.set(entries as f64);
    metrics.cache_bytes.set(bytes as f64);
    // What the parts report of themselves (no question to Postgres here:
    // a scrape stays quick while Postgres hangs).
    let ingest = state.health.ingest();
    metrics.part_ready("postgres", ingest.store_problem.is_none());
    metrics.part_ready(
        "nats",
        ingest.nats_connected && ingest.consumer_problem.is_none(),
    );
    metrics.part_ready("cache", state.health.cache_rebuilt());
    metrics.part_ready("change_feed", state.health.feed().problem.is_none());
    metrics.shutting_down(state.health.shutting_down());
    let _ = res.add_header(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        true,
    );
    let _ = res.write_body(metrics::handle().render());
}

#[cfg(test)]
mod tests {
    use super::*;
    use salvo::catcher::Catcher;
    use salvo::test::{ResponseExt, TestClient};

    #[handler]
    async fn panics() {
        panic!("a bug in a handler");
    }

    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500_and_counted() {
        let names = Names::new(uuid::Uuid::new_v4().to_string());
        let service = Service::new(Router::with_path("boom").get(panics))
            .hoop(Observe::new(&names, Freshness::default()))
            .catcher(Catcher::default());
        let mut response = TestClient::get("http://127.0.0.1/boom")
            .send(&service)
            .await;
        assert_eq!(
            response.status_code,
            Some(StatusCode::INTERNAL_SERVER_ERROR)
        );
        assert!(response.headers().contains_key(REQUEST_ID));
        assert!(!response.take_string().await.unwrap().is_empty(), "a body");
        let counted = format!("{}{{app=\"{}\"}} 1", metrics::HTTP_PANICS, names.instance());
        assert!(metrics::handle().render().contains(&counted), "{counted}");
    }

    #[test]
    fn a_request_id_is_taken_only_when_it_cannot_forge_a_log_line() {
        assert!(well_formed("4f1c2d3e-aaaa-bbbb-cccc-0123456789ab"));
        assert!(well_formed("trace.01:abc_DEF"));
        assert!(!well_formed(""));
        assert!(!well_formed("a b"));
        assert!(!well_formed("a\nlevel=ERROR"));
        assert!(!well_formed("\"quoted\""));
        assert!(!well_formed(&"a".repeat(129)));
    }
}

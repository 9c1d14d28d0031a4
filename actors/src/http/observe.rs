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

use super::pages::app_state;
use crate::metrics::{self, Metrics};
use crate::names::Names;
use salvo::http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use salvo::prelude::*;
use std::time::Instant;
use tracing::{Instrument, debug, info_span};

pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// The longest request id taken from a client.
pub const MAX_REQUEST_ID: usize = 128;

/// The hoop that wraps every request (the first one: it sees the final status,
/// a timeout's and a catcher's included).
pub struct Observe {
    metrics: Metrics,
}

impl Observe {
    pub fn new(names: &Names) -> Self {
        Self {
            metrics: Metrics::new(names),
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
        ctrl.call_next(req, depot, res)
            .instrument(span.clone())
            .await;
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
    let metrics = Metrics::new(&state.names);
    metrics.cache_entries.set(entries as f64);
    metrics.cache_bytes.set(bytes as f64);
    let _ = res.add_header(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        true,
    );
    let _ = res.write_body(metrics::handle().render());
}

#[cfg(test)]
mod tests {
    use super::well_formed;

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

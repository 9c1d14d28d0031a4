//! The JSON API and the health checks.

use super::openapi::{
    FilterQuery, FreshnessQuery, HealthResponses, ListResponses, OneResponses, PagingQuery,
    ProductIdPath, ReadinessResponses, RejectedQuery, RejectedResponses,
};
use super::params::{self, Freshness, Paging, SEARCH_RETRY_AFTER_SECS, next_page};
use super::respond::{json_error, problem, set_applied_seq, unavailable_json as unavailable};
use super::state::{AppState, SearchError, app_state};
use catalogue::filter::Filter;
use salvo::http::StatusCode;
use salvo::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, LINK, RETRY_AFTER};
use salvo::oapi::endpoint;
use salvo::prelude::*;
use serde_json::json;

/// `GET /products`: one page of the list as a JSON array; a `Link: <…>; rel="next"`
/// header points at the next page when this one is full. With a filter
/// (`?q=`, `?manufacturer=`, `?min_price=`, `?max_price=`), a page of the
/// products it asks for, searched as the pages search.
#[endpoint(
    tags("products"),
    parameters(PagingQuery, FilterQuery, FreshnessQuery),
    responses(ListResponses)
)]
pub async fn list(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let paging = match Paging::from_request(req) {
        Ok(paging) => paging,
        Err(message) => return json_error(res, StatusCode::BAD_REQUEST, &message),
    };
    let filter = match params::filter(req) {
        Ok(filter) => filter,
        Err(message) => return json_error(res, StatusCode::BAD_REQUEST, &message),
    };
    let state = app_state(depot);
    if !fresh_enough(req, state, res).await {
        return;
    }
    if !filter.is_empty() {
        return search(state, &filter, &paging, res).await;
    }
    match state.page(paging.after, paging.limit).await {
        Ok(page) => {
            let products = page.products;
            let last = products.last().map(|p| p.id);
            if let Some(query) = next_page(products.len(), last, &paging) {
                let link = format!("</products?{query}>; rel=\"next\"");
                let _ = res.add_header(LINK, link, true);
            }
            // Each product's JSON as cached, joined: nothing is serialized again.
            let mut body =
                Vec::with_capacity(products.iter().map(|p| p.json().len() + 1).sum::<usize>() + 2);
            body.push(b'[');
            for (i, product) in products.iter().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(product.json());
            }
            body.push(b']');
            json_body(res, body);
        }
        Err(error) => unavailable(res, &error),
    }
}

/// The products `filter` asks for, from the search index (the same search as the
/// pages'), paged as the list is, the `Link` to the next page keeping the
/// filter.
async fn search(state: &AppState, filter: &Filter, paging: &Paging, res: &mut Response) {
    match state.search(filter, paging.after, paging.limit).await {
        Ok(products) => {
            let last = products.last().map(|p| p.id);
            if let Some(query) = next_page(products.len(), last, paging) {
                let mut query = query;
                for (name, value) in filter.query() {
                    let value = percent_encoding::utf8_percent_encode(
                        &value,
                        percent_encoding::NON_ALPHANUMERIC,
                    );
                    query.push_str(&format!("&{name}={value}"));
                }
                let _ = res.add_header(LINK, format!("</products?{query}>; rel=\"next\""), true);
            }
            match serde_json::to_vec(&products) {
                Ok(body) => json_body(res, body),
                Err(_) => render_failed_json(res),
            }
        }
        Err(SearchError::Busy) => {
            let _ = res.add_header(RETRY_AFTER, SEARCH_RETRY_AFTER_SECS, true);
            json_error(
                res,
                StatusCode::SERVICE_UNAVAILABLE,
                "Many searches are running right now; try again in a moment.",
            );
        }
        Err(SearchError::Unavailable(error)) => unavailable(res, &error),
    }
}

/// A product list that could not be encoded (never for the service's own
/// products): the service's fault.
fn render_failed_json(res: &mut Response) {
    json_error(
        res,
        StatusCode::INTERNAL_SERVER_ERROR,
        "The answer could not be encoded.",
    );
}

/// `GET /products/{id}`: one product as JSON.
#[endpoint(
    tags("products"),
    parameters(ProductIdPath, FreshnessQuery),
    responses(OneResponses)
)]
pub async fn one(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let raw = req.param::<String>("id");
    let id = match params::product_id(raw.as_deref()) {
        Ok(Some(id)) => id,
        Ok(None) => return json_error(res, StatusCode::BAD_REQUEST, "An id is needed."),
        Err(message) => return json_error(res, StatusCode::BAD_REQUEST, &message),
    };
    let state = app_state(depot);
    if !fresh_enough(req, state, res).await {
        return;
    }
    match state.cached(id).await {
        Ok(Some(product)) => {
            // Strong: a revision is one version's bytes.
            let etag = format!("\"{}-{}\"", product.id, product.revision);
            let _ = res.add_header(ETAG, etag, true);
            json_body(res, product.json().clone());
        }
        Ok(None) => json_error(
            res,
            StatusCode::NOT_FOUND,
            &format!("There is no product with id {id}."),
        ),
        Err(error) => unavailable(res, &error),
    }
}

/// `GET /rejected.json`: the messages set aside, newest first, with their
/// reasons and the start of their payloads, `limit` a page (50 unless told,
/// 1000 at most); a full page has a `Link` to the next, older one
/// (`?before=` its last row).
#[endpoint(
    tags("rejected"),
    parameters(RejectedQuery),
    responses(RejectedResponses)
)]
pub async fn rejected(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let before = match params::before(req) {
        Ok(before) => before,
        Err(message) => return json_error(res, StatusCode::BAD_REQUEST, &message),
    };
    let limit = match params::Paging::from_request(req) {
        Ok(paging) if req.queries().get("limit").is_some() => paging.limit,
        Ok(_) => REJECTED_DEFAULT_LIMIT,
        Err(message) => return json_error(res, StatusCode::BAD_REQUEST, &message),
    };
    match app_state(depot).rejected(before, limit).await {
        Ok(messages) => {
            if messages.len() as u64 == limit
                && let Some(last) = messages.last()
            {
                let link = format!(
                    "</rejected.json?before={}&limit={limit}>; rel=\"next\"",
                    last.id
                );
                let _ = res.add_header(LINK, link, true);
            }
            match serde_json::to_vec(&messages) {
                Ok(body) => json_body(res, body),
                Err(_) => render_failed_json(res),
            }
        }
        Err(error) => unavailable(res, &error),
    }
}

/// Rejected messages a JSON page holds unless `?limit=` says.
const REJECTED_DEFAULT_LIMIT: u64 = 50;

/// `GET /healthz`: the process is up and answering.
#[endpoint(tags("health"), responses(HealthResponses))]
pub async fn healthz(res: &mut Response) {
    res.render(Json(json!({"status": "ok"})));
}

/// `GET /readyz`: 200 when this replica should get traffic (its cache is
/// rebuilt, it is not shutting down, its change feed is within
/// `READY_MAX_LAG` if set); 503 otherwise. Either way the body names each
/// part's state and why (Postgres and NATS are said, not counted: every
/// replica shares them).
#[endpoint(tags("health"), responses(ReadinessResponses))]
pub async fn readyz(depot: &mut Depot, res: &mut Response) {
    let readiness = app_state(depot).readiness().await;
    if !readiness.is_ready() {
        res.status_code(StatusCode::SERVICE_UNAVAILABLE);
    }
    res.render(Json(readiness));
}

/// With `?min_seq=N`, waits until this replica has applied the stream up to
/// N (at most `?wait=`, 2 s unless told, 5 s at most). `false` when the
/// answer is written: a 400 for a malformed query, or a 503 with
/// `Retry-After` and how far the replica got.
async fn fresh_enough(req: &Request, state: &AppState, res: &mut Response) -> bool {
    let asked = match Freshness::from_request(req) {
        Ok(Some(asked)) => asked,
        Ok(None) => return true,
        Err(message) => {
            json_error(res, StatusCode::BAD_REQUEST, &message);
            return false;
        }
    };
    let freshness = state.health.freshness();
    match freshness.wait_for(asked.min_seq, asked.wait).await {
        Ok(applied) => {
            // The answer is at least this fresh (the header was set before
            // the wait).
            set_applied_seq(res, applied);
            true
        }
        Err(reached) => {
            set_applied_seq(res, reached);
            let _ = res.add_header(RETRY_AFTER, "1", true);
            let detail = format!(
                "This replica has applied the stream up to sequence {reached}, not yet {}; \
                 try again in a moment.",
                asked.min_seq
            );
            let extra = json!({"applied_seq": reached, "min_seq": asked.min_seq});
            let extra = extra.as_object().cloned().unwrap_or_default();
            problem(res, StatusCode::SERVICE_UNAVAILABLE, &detail, extra);
            false
        }
    }
}

/// A JSON body, as salvo's `Json` would send it, which a client may keep
/// but must revalidate (its `ETag`) before it uses it again.
fn json_body(res: &mut Response, body: impl Into<bytes::Bytes>) {
    let _ = res.add_header(CONTENT_TYPE, "application/json; charset=utf-8", true);
    let _ = res.add_header(CACHE_CONTROL, "no-cache", true);
    let _ = res.write_body(body);
}

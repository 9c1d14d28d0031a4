//! The HTML pages: the product list (and search), a product's detail, the
//! rejected messages, and the error pages. The manage forms are in `manage.rs`.

use super::manage;
use super::params::{self, Paging};
use super::state::{AppState, Unavailable};
use super::views;
use crate::cache::Cached;
use crate::product::Product;
use salvo::http::StatusCode;
use salvo::prelude::*;
use serde::Serialize;
use serde_json::{Value, json};
use std::borrow::Cow;

/// The longest search text taken, in characters.
const MAX_SEARCH_CHARS: usize = 256;
/// Rejected messages a page shows.
const REJECTED_PAGE: u64 = 50;

/// `GET /`: one page of the list, in id order, each id a link to its detail
/// page; with `?q=`, the products whose name or manufacturer contains it.
#[handler]
pub async fn index(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let paging = match Paging::from_request(req) {
        Ok(paging) => paging,
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let search: String = req
        .queries()
        .get("q")
        .map(|q| q.trim().chars().take(MAX_SEARCH_CHARS).collect())
        .unwrap_or_default();
    let state = app_state(depot);
    let revision = state.products.latest_revision();
    let found = if search.is_empty() {
        state
            .page(paging.after, paging.limit)
            .await
            .map(Found::Page)
    } else {
        state
            .search(&search, paging.after, paging.limit)
            .await
            .map(Found::Search)
    };
    let found = match found {
        Ok(found) => found,
        Err(Unavailable(reason)) => return unavailable(res, &reason),
    };
    let products: Vec<ListRow> = match &found {
        Found::Page(page) => page.iter().map(ListRow::from_cached).collect(),
        Found::Search(found) => found.iter().map(ListRow::from_product).collect(),
    };
    let query = |paging: &str| {
        if search.is_empty() {
            format!("/?{paging}")
        } else {
            format!("/?q={}&{paging}", encode(&search))
        }
    };
    let last = products.last().map(|p| p.id);
    let next = next_page(products.len(), last, &paging).map(|paging| query(&paging));
    let previous = if paging.after == 0 || !search.is_empty() {
        None
    } else {
        let before = products
            .first()
            .map_or(paging.after.saturating_add(1), |p| p.id);
        state
            .products
            .previous_after(before, paging.limit)
            .map(|after| query(&format!("after={after}&limit={}", paging.limit)))
    };
    let data = json!({
        "products": products,
        "next": next,
        "previous": previous,
        "first_page": paging.after == 0,
        "count": if search.is_empty() { state.products.count() } else { None },
        "q": search,
        "searching": !search.is_empty(),
        "revision": revision,
        "after": paging.after,
        // The page shows every id up to the end when it is not full: new
        // products may appear at its end.
        "until": next.as_ref().and(products.last().map(|p| p.id)),
        "manage": state.publisher.is_some(),
    });
    render(res, StatusCode::OK, "index", data);
}

/// `GET /product?id=N`: one product. No id: a page that explains how to give one.
#[handler]
pub async fn product_page(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let id = match params::product_id(req.queries().get("id").map(String::as_str)) {
        Ok(Some(id)) => id,
        Ok(None) => return render(res, StatusCode::OK, "missing_id", json!({})),
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let state = app_state(depot);
    let revision = state.products.latest_revision();
    match state.product(id).await {
        Ok(Some(product)) => {
            let manage = state.publisher.is_some();
            let csrf = manage.then(|| manage::csrf_token(req, res));
            let data = json!({
                "product": &product,
                "stream_seq": product.stream_seq,
                "updated_at": product.updated_at,
                "attributes": attribute_rows(&product),
                "revision": revision.max(product.revision),
                "manage": manage,
                "csrf": csrf,
                "message_id": manage::new_message_id(),
            });
            render(res, StatusCode::OK, "product", data);
        }
        Ok(None) => error_page(
            res,
            StatusCode::NOT_FOUND,
            &format!("There is no product with id {id}."),
        ),
        Err(Unavailable(reason)) => unavailable(res, &reason),
    }
}

/// `GET /rejected`: the newest messages set aside, with their reasons, 50 a
/// page (`?before=` the last row seen).
#[handler]
pub async fn rejected(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let before = match req.queries().get("before") {
        None => None,
        Some(raw) => match raw.trim().parse::<i64>() {
            Ok(before) if before > 0 => Some(before),
            _ => {
                return error_page(
                    res,
                    StatusCode::BAD_REQUEST,
                    "`before` must be the last row seen (a positive whole number).",
                );
            }
        },
    };
    let state = app_state(depot);
    match state.rejected(before, REJECTED_PAGE).await {
        Ok(messages) => {
            let next = (messages.len() as u64 == REJECTED_PAGE)
                .then(|| {
                    messages
                        .last()
                        .map(|m| format!("/rejected?before={}", m.id))
                })
                .flatten();
            let data = json!({
                "messages": messages,
                "next": next,
                "first_page": before.is_none(),
                "manage": state.publisher.is_some(),
            });
            render(res, StatusCode::OK, "rejected", data);
        }
        Err(Unavailable(reason)) => unavailable(res, &reason),
    }
}

/// `text` as a query string value.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The query string of the next page, if this one (of `len` products, the
/// last with the id `last`) was full.
pub fn next_page(len: usize, last: Option<i64>, paging: &Paging) -> Option<String> {
    let last = last?;
    (len as u64 == paging.limit).then(|| paging.next_query(last))
}

/// A page of the list, or of a search's results.
enum Found {
    Page(Vec<Cached>),
    Search(Vec<Product>),
}

/// What a row of the list shows of a product.
#[derive(Serialize, serde::Deserialize)]
struct ListRow<'a> {
    id: i64,
    #[serde(borrow)]
    name: Cow<'a, str>,
    price: i64,
    #[serde(borrow)]
    manufacturer: Cow<'a, str>,
}

impl<'a> ListRow<'a> {
    /// Read from the product's cached JSON (its other fields are skipped).
    fn from_cached(cached: &'a Cached) -> Self {
        serde_json::from_slice(cached.json())
            .expect("a block holds JSON written from a Product by serde_json")
    }

    fn from_product(product: &'a Product) -> Self {
        ListRow {
            id: product.id,
            name: Cow::Borrowed(&product.name),
            price: product.price,
            manufacturer: Cow::Borrowed(&product.manufacturer),
        }
    }
}

/// Renders the error page with the status's name and a message for a person.
pub fn error_page(res: &mut Response, status: StatusCode, message: &str) {
    let data = json!({
        "status": status.as_u16(),
        "title": status.canonical_reason().unwrap_or("Error"),
        "message": message,
    });
    render(res, status, "error", data);
}

fn unavailable(res: &mut Response, reason: &str) {
    tracing::warn!(reason, "page unavailable");
    error_page(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "The catalogue cannot be read right now. Please try again in a moment.",
    );
}

pub fn render(res: &mut Response, status: StatusCode, template: &str, data: Value) {
    match views::render(template, data) {
        Ok(html) => {
            res.status_code(status);
            res.render(Text::Html(html));
        }
        Err(_) => {
            res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
            res.render(Text::Plain("This page could not be rendered."));
        }
    }
}

#[derive(Serialize)]
struct AttributeRow<'a> {
    name: &'a str,
    value: String,
}

fn attribute_rows(product: &Product) -> Vec<AttributeRow<'_>> {
    product
        .attributes
        .iter()
        .map(|(name, value)| AttributeRow {
            name,
            value: match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        })
        .collect()
}

pub fn app_state(depot: &Depot) -> &AppState {
    depot
        .get_typed::<AppState>()
        .expect("the router injects AppState before every handler")
}

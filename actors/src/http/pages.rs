//! The HTML pages: the product list (and search), a product's detail, the
//! rejected messages, and the error pages. The manage forms are in `manage.rs`.

use super::forms::new_message_id;
use super::page_parts::detail::{self, Around};
use super::page_parts::list::{self, List};
use super::page_parts::{Head, Visitor};
use super::params::{self, Paging, SEARCH_RETRY_AFTER_SECS, next_page};
use super::respond::{error_page, render, render_failed, unavailable_page as unavailable};
use super::state::{AppState, SearchError, app_state};
use crate::cache::Page;
use catalogue::filter::Filter;
use catalogue::history::Position;
use catalogue::product::Product;
use salvo::http::StatusCode;
use salvo::prelude::*;
use serde_json::{Value, json};

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
    // The pages search by text (the box); the JSON API takes the other
    // filters too, with the same rules.
    let search = match params::filter(req) {
        Ok(filter) => filter.text.unwrap_or_default(),
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let state = app_state(depot);
    let operator = state.signed_in(req, res);
    // Read before the page: what is committed after it reaches the page live.
    let position = live_position(state);
    let found = if search.is_empty() {
        state
            .page(paging.after, paging.limit)
            .await
            .map(Found::Page)
    } else {
        match state
            .search(&Filter::text(search.as_str()), paging.after, paging.limit)
            .await
        {
            Ok(found) => Ok(Found::Search(found)),
            Err(SearchError::Unavailable(unavailable)) => Err(unavailable),
            Err(SearchError::Busy) => {
                res.headers_mut().insert(
                    salvo::http::header::RETRY_AFTER,
                    SEARCH_RETRY_AFTER_SECS.into(),
                );
                return error_page(
                    res,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Many searches are running right now. Please try again in a moment.",
                );
            }
        }
    };
    let found = match found {
        Ok(found) => found,
        Err(error) => return unavailable(res, &error),
    };
    // The ids of the first and the last product, and how many.
    let (first, last, len, rows) = match &found {
        Found::Page(page) => (
            page.products.first().map(|p| p.id),
            page.products.last().map(|p| p.id),
            page.products.len(),
            state.rows.page(page).await,
        ),
        Found::Search(found) => (
            found.first().map(|p| p.id),
            found.last().map(|p| p.id),
            found.len(),
            state.rows.products(found),
        ),
    };
    let Ok(rows) = rows else {
        return render_failed(res);
    };
    let query = |paging: &str| {
        if search.is_empty() {
            format!("/?{paging}")
        } else {
            format!("/?q={}&{paging}", encode(&search))
        }
    };
    let next = next_page(len, last, &paging).map(|paging| query(&paging));
    let previous = if paging.after == 0 || !search.is_empty() {
        None
    } else {
        let before = first.unwrap_or(paging.after.saturating_add(1));
        state
            .products
            .previous_after(before, paging.limit)
            .map(|after| query(&format!("after={after}&limit={}", paging.limit)))
    };
    let first = if search.is_empty() {
        "/".to_owned()
    } else {
        format!("/?q={}", encode(&search))
    };
    let paused = state.paused();
    let list = List {
        head: head(state, position.as_deref(), operator.as_ref(), &paused),
        q: &search,
        count: if search.is_empty() {
            state.products.count()
        } else {
            None
        },
        after: paging.after,
        // The page shows every id up to the end when it is not full: new
        // products may appear at its end.
        until: next.as_ref().and(last),
        rows: &rows,
        previous: previous.as_deref(),
        next: next.as_deref(),
        first: &first,
    };
    match list::render(&list) {
        Ok(html) => {
            res.status_code(StatusCode::OK);
            res.render(Text::Html(html));
        }
        Err(_) => render_failed(res),
    }
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
    let position = live_position(state);
    match state.cached(id).await {
        Ok(Some(cached)) => {
            let signed_in = state.signed_in(req, res);
            let message_id = signed_in.as_ref().map(|_| new_message_id());
            let paused = state.paused();
            let around = Around {
                head: head(state, position.as_deref(), signed_in.as_ref(), &paused),
                message_id: message_id.as_deref().unwrap_or_default(),
            };
            match detail::render(cached.json(), &around) {
                Some(Ok(html)) => {
                    res.status_code(StatusCode::OK);
                    res.render(Text::Html(html));
                }
                Some(Err(_)) => render_failed(res),
                None => {
                    tracing::error!(id, "the cached JSON is not a product's");
                    render_failed(res);
                }
            }
        }
        Ok(None) => error_page(
            res,
            StatusCode::NOT_FOUND,
            &format!("There is no product with id {id}."),
        ),
        Err(error) => unavailable(res, &error),
    }
}

/// `GET /rejected`: the newest messages set aside, with their reasons, 50 a
/// page (`?before=` the last row seen).
#[handler]
pub async fn rejected(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let before = match params::before(req) {
        Ok(before) => before,
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let state = app_state(depot);
    let (operator, who) = state.who(req, res);
    // A signed-in operator may publish each one again (a form each, with
    // its own message id).
    let csrf = operator.map(|(managing, operator)| managing.access.csrf_token(&operator));
    match state.rejected(before, REJECTED_PAGE).await {
        Ok(messages) => {
            let rows: Vec<Value> = messages
                .iter()
                .map(|message| {
                    let mut row = json!(message);
                    row["message_id"] = json!(new_message_id());
                    row
                })
                .collect();
            let next = (messages.len() as u64 == REJECTED_PAGE)
                .then(|| {
                    messages
                        .last()
                        .map(|m| format!("/rejected?before={}", m.id))
                })
                .flatten();
            let data = json!({
                "messages": rows,
                "next": next,
                "first_page": before.is_none(),
                "who": who,
                "csrf": csrf,
            });
            render(res, StatusCode::OK, "rejected", data);
        }
        Err(error) => unavailable(res, &error),
    }
}

/// `text` as a query string value.
fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// A page of the list, or of a search's results.
enum Found {
    Page(Page),
    Search(Vec<Product>),
}

/// The head of a live page: where its updates start, who is looking (a
/// signed-in operator's name and token), whether ingest is paused (from
/// [`AppState::paused`]).
fn head<'a>(
    state: &AppState,
    position: Option<&'a str>,
    operator: Option<&'a (String, String)>,
    paused: &'a Value,
) -> Head<'a> {
    Head {
        position: position.unwrap_or_default(),
        visitor: match operator {
            Some((name, csrf)) => Visitor::Operator { name, csrf },
            None if state.manage.is_some() => Visitor::MaySignIn,
            None => Visitor::Reader,
        },
        paused: paused["since"].as_str().zip(paused["why"].as_str()),
    }
}

/// Where the page's live updates start (`views/static/live.js` follows the
/// change stream from here): a position the cache had applied everything
/// before when the page was read. `None` until the cache is rebuilt (the
/// page then follows from the time it opens the stream).
fn live_position(state: &AppState) -> Option<String> {
    let snapshot = state.products.position()?;
    Position::seen_by(&snapshot).map(|position| position.to_string())
}

//! How every handler answers: a page rendered from a template, the error
//! page, and the JSON error of the API. Handlers use these; none renders on
//! its own.

use super::state::Unavailable;
use super::views;
use salvo::http::StatusCode;
use salvo::prelude::*;
use serde_json::{Map, Value, json};

/// Renders `template` with `data`, with `status`.
pub fn render(res: &mut Response, status: StatusCode, template: &str, data: Value) {
    match views::render(template, data) {
        Ok(html) => {
            res.status_code(status);
            res.render(Text::Html(html));
        }
        Err(_) => render_failed(res),
    }
}

/// A template failed (logged by `views::render`): the service's fault.
pub fn render_failed(res: &mut Response) {
    res.status_code(StatusCode::INTERNAL_SERVER_ERROR);
    res.render(Text::Plain("This page could not be rendered."));
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

/// The page for a read that a dependency could not answer (logged).
pub fn unavailable_page(res: &mut Response, error: &Unavailable) {
    tracing::warn!(reason = %error, "page unavailable");
    error_page(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "The catalogue cannot be read right now. Please try again in a moment.",
    );
}

/// An API error as RFC 9457 problem details (`application/problem+json`).
pub fn json_error(res: &mut Response, status: StatusCode, message: &str) {
    problem(res, status, message, Map::new());
}

/// Problem details: `type` (`about:blank`: the status says what kind),
/// `title` (the status's name), `status`, `detail` (what went wrong, for a
/// person), `request_id` (the `x-request-id` of the answer), `error` (the
/// same as `detail`, for the clients of the first versions of this API),
/// and `extra` members.
pub fn problem(res: &mut Response, status: StatusCode, detail: &str, extra: Map<String, Value>) {
    let mut body = Map::new();
    body.insert("type".into(), "about:blank".into());
    body.insert(
        "title".into(),
        status.canonical_reason().unwrap_or("Error").into(),
    );
    body.insert("status".into(), status.as_u16().into());
    body.insert("detail".into(), detail.into());
    if let Some(id) = res
        .headers()
        .get("x-request-id")
        .and_then(|id| id.to_str().ok())
    {
        body.insert("request_id".into(), id.into());
    }
    body.insert("error".into(), detail.into());
    body.extend(extra);
    res.status_code(status);
    let _ = res.add_header(salvo::http::header::CONTENT_TYPE, PROBLEM_JSON, true);
    let _ = res.write_body(Value::Object(body).to_string());
}

/// The media type of [`problem`]'s answers.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The JSON answer for a read that a dependency could not answer (logged).
pub fn unavailable_json(res: &mut Response, error: &Unavailable) {
    tracing::warn!(reason = %error, "request unavailable");
    json_error(
        res,
        StatusCode::SERVICE_UNAVAILABLE,
        "The catalogue cannot be read right now; try again in a moment.",
    );
}

/// The header that says how fresh an answer is: the last stream sequence
/// this replica had applied when it read the answer (see `freshness.rs`).
pub const APPLIED_SEQ: &str = "products-applied-seq";

/// Sets [`APPLIED_SEQ`] to `seq`.
pub fn set_applied_seq(res: &mut Response, seq: u64) {
    res.headers_mut().insert(APPLIED_SEQ, seq.into());
}

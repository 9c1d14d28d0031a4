//! How every handler answers: a page rendered from a template, the error
//! page, and the JSON error of the API. Handlers use these; none renders on
//! its own.

use super::state::Unavailable;
use super::views;
use salvo::http::StatusCode;
use salvo::prelude::*;
use serde_json::{Value, json};

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

/// A JSON error: `{"error": "..."}`.
pub fn json_error(res: &mut Response, status: StatusCode, message: &str) {
    res.status_code(status);
    res.render(Json(json!({ "error": message })));
}

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

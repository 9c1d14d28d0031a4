//! The manage pages: forms to add, edit and delete a product.
//!
//! A form never writes to Postgres: it publishes a message to the stream,
//! with a `Nats-Msg-Id` (the form's own and a hash of what it sends, so a
//! form sent twice is stored once, and one changed after going back is not
//! taken for the first), and the change comes back through ingest like any other. The page
//! then shows "sent, waiting to be stored" and, once Postgres has it, the
//! stored result (or why it was set aside). The fields are checked with the
//! decoder's own rules ([`product::check_fields`]) before anything is sent,
//! and each problem is shown next to its field.
//!
//! Only a signed-in operator ([`super::access`]) gets the forms; each form
//! posted goes through [`forms::checked`] (this site's page, no control
//! characters, the operator's CSRF token), and the message names the
//! operator in a header, set here from the session, never from a field.

use super::access::Operator;
use super::forms::{self, Fields};
use super::params;
use super::product_form::{FormValues, render_form};
use super::publisher::Publisher;
use super::respond::{error_page, render};
use super::state::{Managing, app_state};
use crate::jetstream::ReplayError;
use crate::persistence::MessageOutcome;
use bytes::Bytes;
use salvo::http::StatusCode;
use salvo::prelude::*;
use serde_json::{Value, json};
use std::sync::Arc;

/// The fields that may hold line breaks (text areas).
const MULTILINE: &[&str] = &["description", "attributes"];
/// The longest `Nats-Msg-Id` a form may carry.
const MAX_MESSAGE_ID: usize = 64;

/// `GET /manage/new`: an empty form.
#[handler]
pub async fn new_form(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some((managing, operator)) = signed_in(req, depot, res) else {
        return;
    };
    let form = FormValues::default();
    render_form(res, StatusCode::OK, &form, &[], &managing, &operator, None);
}

/// `GET /manage/edit?id=N`: the form, filled with the product as it is.
#[handler]
pub async fn edit_form(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some((managing, operator)) = signed_in(req, depot, res) else {
        return;
    };
    let id = match params::product_id(req.queries().get("id").map(String::as_str)) {
        Ok(Some(id)) => id,
        Ok(None) => {
            return error_page(res, StatusCode::BAD_REQUEST, "Which product? Give ?id=N.");
        }
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let product = match app_state(depot).product(id).await {
        Ok(Some(product)) => product,
        Ok(None) => {
            return error_page(
                res,
                StatusCode::NOT_FOUND,
                &format!("There is no product with id {id}."),
            );
        }
        Err(_) => {
            return error_page(
                res,
                StatusCode::SERVICE_UNAVAILABLE,
                "The catalogue cannot be read right now. Please try again in a moment.",
            );
        }
    };
    let form = FormValues {
        id: product.id.to_string(),
        name: product.name.clone(),
        price: product.price.to_string(),
        manufacturer: product.manufacturer.clone(),
        description: product.description.clone().unwrap_or_default(),
        attributes: if product.attributes.is_empty() {
            String::new()
        } else {
            serde_json::to_string_pretty(&product.attributes).unwrap_or_default()
        },
        message_id: forms::new_message_id(),
    };
    render_form(
        res,
        StatusCode::OK,
        &form,
        &[],
        &managing,
        &operator,
        Some(product.id),
    );
}

/// `POST /manage/save`: checks the fields, publishes the product, and sends
/// the browser to the page that waits for it to be stored.
#[handler]
pub async fn save(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some((managing, operator)) = signed_in(req, depot, res) else {
        return;
    };
    let Some(fields) = forms::checked(req, res, &managing.access, &operator, MULTILINE).await
    else {
        return;
    };
    let Some(message_id) = message_id(&fields, res) else {
        return;
    };
    let form = FormValues::from_fields(&fields, message_id);
    let editing = fields.get("editing").parse::<i64>().ok();
    let update = match form.check() {
        Ok(update) => update,
        Err(problems) => {
            return render_form(
                res,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &problems,
                &managing,
                &operator,
                editing,
            );
        }
    };
    let payload = json!({
        "id": update.id,
        "name": update.name,
        "price": update.price,
        "manufacturer": update.manufacturer,
        "description": update.description,
        "attributes": update.attributes,
    });
    publish_and_wait(
        res,
        &managing.publisher,
        payload,
        &form.message_id,
        &operator,
        update.id,
    )
    .await;
}

/// `POST /manage/delete`: publishes the deletion of a product.
#[handler]
pub async fn delete(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some((managing, operator)) = signed_in(req, depot, res) else {
        return;
    };
    let Some(fields) = forms::checked(req, res, &managing.access, &operator, &[]).await else {
        return;
    };
    let id = match params::product_id(Some(fields.get("id")).filter(|id| !id.is_empty())) {
        Ok(Some(id)) => id,
        Ok(None) => return error_page(res, StatusCode::BAD_REQUEST, "Which product? No id given."),
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let Some(message_id) = message_id(&fields, res) else {
        return;
    };
    let payload = json!({"id": id, "deleted": true});
    publish_and_wait(
        res,
        &managing.publisher,
        payload,
        &message_id,
        &operator,
        Some(id),
    )
    .await;
}

/// `POST /manage/replay`: publishes a rejected message again (once its cause
/// is fixed), read whole from the stream by its sequence, with the form's
/// new `Nats-Msg-Id`, then shows what became of it.
#[handler]
pub async fn replay(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some((managing, operator)) = signed_in(req, depot, res) else {
        return;
    };
    let Some(fields) = forms::checked(req, res, &managing.access, &operator, &[]).await else {
        return;
    };
    let row = match params::product_id(Some(fields.get("id")).filter(|id| !id.is_empty())) {
        Ok(Some(row)) => row,
        Ok(None) => {
            return error_page(res, StatusCode::BAD_REQUEST, "Which message? No id given.");
        }
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let Some(message_id) = message_id(&fields, res) else {
        return;
    };
    let rejected = match app_state(depot).rejected_one(row).await {
        Ok(Some(rejected)) => rejected,
        Ok(None) => {
            let message = format!("There is no rejected message {row}.");
            return error_page(res, StatusCode::NOT_FOUND, &message);
        }
        Err(error) => return super::respond::unavailable_page(res, &error),
    };
    let seq = u64::try_from(rejected.stream_seq).unwrap_or_default();
    match managing
        .publisher
        .republish(&rejected.stream, seq, &message_id, &operator.name)
        .await
    {
        Ok(republished) => {
            tracing::info!(operator = %operator.name, rejected = row, original_seq = seq,
                stream = %republished.stream, seq = republished.seq, "a rejected message was published again");
            let id = catalogue::product::decode(&republished.payload)
                .ok()
                .and_then(|update| update.id());
            let mut query = url_query(&[
                ("stream", republished.stream.as_str()),
                ("seq", &republished.seq.to_string()),
            ]);
            if let Some(id) = id {
                query.push_str(&format!("&id={id}"));
            }
            res.render(Redirect::other(format!("/manage/sent?{query}")));
        }
        Err(error @ (ReplayError::StreamChanged { .. } | ReplayError::NotInStream(_))) => {
            error_page(
                res,
                StatusCode::GONE,
                &format!("This message cannot be published again: {error}."),
            );
        }
        Err(error) => {
            let reason = chain(&error);
            tracing::warn!(operator = %operator.name, %reason, "a rejected message could not be published again");
            error_page(
                res,
                StatusCode::SERVICE_UNAVAILABLE,
                "The message could not be published again right now. Please go back and try again.",
            );
        }
    }
}

/// The form's `Nats-Msg-Id` (a new one if it has none); a malformed one is
/// answered with a 400 that names the field.
fn message_id(fields: &Fields, res: &mut Response) -> Option<String> {
    let id = fields.get("message_id");
    if id.is_empty() {
        return Some(forms::new_message_id());
    }
    let well_formed = id.len() <= MAX_MESSAGE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    if !well_formed {
        error_page(
            res,
            StatusCode::BAD_REQUEST,
            &format!(
                "The field “message_id” must be 1 to {MAX_MESSAGE_ID} letters, digits or - _ . : (the page sets it: open the form again)."
            ),
        );
        return None;
    }
    Some(id.to_owned())
}

/// `GET /manage/sent?stream=S&seq=N[&id=ID]`: what became of a message a
/// form sent. While it waits to be stored, the page reloads itself each
/// second (a meta refresh: no script needed).
#[handler]
pub async fn sent(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let stream = req.query::<String>("stream").unwrap_or_default();
    let Some(seq) = req.query::<i64>("seq").filter(|seq| *seq > 0) else {
        return error_page(res, StatusCode::BAD_REQUEST, "Which message? Give ?seq=N.");
    };
    let id = req.query::<i64>("id").filter(|id| *id > 0);
    let (_, who) = app_state(depot).who(req, res);
    let outcome = match app_state(depot).outcome(stream, seq, id).await {
        Ok(outcome) => outcome,
        Err(_) => MessageOutcome::Waiting,
    };
    let data = match &outcome {
        MessageOutcome::Waiting => json!({"waiting": true, "seq": seq, "refresh_here": 1}),
        MessageOutcome::Stored { id, deleted } => {
            // The version served now (this message's, or a newer one).
            let product = match deleted {
                false => app_state(depot).product(*id).await.ok().flatten(),
                true => None,
            };
            json!({"stored": true, "id": id, "deleted": deleted, "seq": seq, "product": product})
        }
        MessageOutcome::Rejected { reason } => json!({"rejected": reason, "seq": seq}),
    };
    let mut data = data;
    data["who"] = who;
    render(res, StatusCode::OK, "manage_sent", data);
}

async fn publish_and_wait(
    res: &mut Response,
    publisher: &Publisher,
    payload: Value,
    message_id: &str,
    operator: &Operator,
    id: Option<i64>,
) {
    let payload = payload.to_string();
    // The form's id and what it sends: the same form sent twice is one
    // message, but one sent again with other content (after going back) is not.
    let message_id = {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::hash::DefaultHasher::new();
        payload.hash(&mut hasher);
        format!("{message_id}-{:016x}", hasher.finish())
    };
    match publisher
        .publish(Bytes::from(payload), &message_id, &operator.name)
        .await
    {
        Ok((stream, seq)) => {
            tracing::info!(operator = %operator.name, product = ?id, %stream, seq, "a form published a change");
            let mut query = url_query(&[("stream", stream.as_str()), ("seq", &seq.to_string())]);
            if let Some(id) = id {
                query.push_str(&format!("&id={id}"));
            }
            res.render(Redirect::other(format!("/manage/sent?{query}")));
        }
        Err(error) => {
            let reason = chain(&error);
            tracing::warn!(operator = %operator.name, %reason, "a form could not be published");
            error_page(
                res,
                StatusCode::SERVICE_UNAVAILABLE,
                "The change could not be sent to the stream right now. Please go back and try again.",
            );
        }
    }
}

/// An error and its causes, `: `-separated, for a log line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(next) = cause {
        text.push_str(": ");
        text.push_str(&next.to_string());
        cause = next.source();
    }
    text
}

/// The operator a manage request comes from, and what managing needs; else
/// the answer is written: 404 where managing is off; for a page, a redirect
/// to sign in; for a form posted, a 403.
fn signed_in(
    req: &Request,
    depot: &Depot,
    res: &mut Response,
) -> Option<(Arc<Managing>, Operator)> {
    let Some(managing) = app_state(depot).manage.clone() else {
        forms::managing_is_off(res);
        return None;
    };
    if let Some(operator) = managing.access.operator(req, res) {
        return Some((managing, operator));
    }
    if req.method() == salvo::http::Method::GET {
        let here = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        let next = percent_encoding::utf8_percent_encode(&here, percent_encoding::NON_ALPHANUMERIC);
        res.render(Redirect::other(format!("/signin?next={next}")));
    } else {
        error_page(
            res,
            StatusCode::FORBIDDEN,
            "Only a signed-in operator may change products. Sign in, open the form again and send it from there.",
        );
    }
    None
}

fn url_query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| {
            format!(
                "{key}={}",
                percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
            )
        })
        .collect::<Vec<_>>()
        .join("&")
}

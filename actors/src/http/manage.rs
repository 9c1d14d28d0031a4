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
//! Cross-site request forgery: every form carries a token that must equal
//! the `csrf` cookie (double submit). The cookie is random per browser,
//! `SameSite=Strict` and `HttpOnly`: another site can neither read it (to
//! copy it into a forged form) nor make the browser send it along with a
//! cross-site POST. A request whose `Origin` names another host is refused as
//! well. This needs no server-side session, so every replica accepts a form
//! another replica served.

use super::pages::{app_state, error_page, render};
use super::params;
use crate::ingest::source::stream_identity;
use crate::persistence::MessageOutcome;
use crate::product::{self, FieldProblem, ProductUpdate};
use async_nats::jetstream::{self, message::PublishMessage};
use bytes::Bytes;
use salvo::http::StatusCode;
use salvo::http::header::{self, HeaderValue};
use salvo::prelude::*;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::time::Duration;

/// The cookie and form field that carry the CSRF token.
const CSRF: &str = "csrf";
/// How long a publish may take before the form says it failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where and how the forms publish (present only when managing is on).
#[derive(Clone)]
pub struct Publisher {
    js: jetstream::Context,
    subject: String,
    stream: String,
}

/// What the http actor needs to publish: the NATS URL (credentials in it, as
/// for ingest), the subject and the stream.
#[derive(Clone)]
pub struct ManageArgs {
    pub nats_url: String,
    pub subject: String,
    pub stream: String,
}

impl Publisher {
    /// Connects in the background: returns at once, even while NATS is away
    /// (a form sent meanwhile says it could not be sent).
    pub async fn connect(args: &ManageArgs) -> Result<Self, async_nats::ConnectError> {
        let (options, servers) = crate::nats_auth::connect_options(&args.nats_url);
        let client = options
            .name("products-ui")
            .retry_on_initial_connect()
            .connect(servers)
            .await?;
        Ok(Self {
            js: jetstream::new(client),
            subject: args.subject.clone(),
            stream: args.stream.clone(),
        })
    }

    /// Publishes `payload` with the id `message_id`, and says where it landed
    /// (the stream's identity and the sequence).
    async fn publish(&self, payload: Bytes, message_id: &str) -> Result<(String, u64), String> {
        let message = PublishMessage::build()
            .payload(payload)
            .message_id(message_id);
        let work = async {
            let ack = self
                .js
                .send_publish(self.subject.clone(), message)
                .await
                .map_err(|e| e.to_string())?
                .await
                .map_err(|e| e.to_string())?;
            let stream = self
                .js
                .get_stream(&self.stream)
                .await
                .map_err(|e| e.to_string())?;
            let identity = stream_identity(&stream).await.map_err(|e| e.to_string())?;
            Ok((identity, ack.sequence))
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, work)
            .await
            .map_err(|_| format!("NATS did not answer within {PUBLISH_TIMEOUT:?}"))?
    }
}

/// `GET /manage/new`: an empty form.
#[handler]
pub async fn new_form(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    if !managing(depot, res) {
        return;
    }
    let token = csrf_token(req, res);
    let form = FormValues::default();
    render_form(res, StatusCode::OK, &form, &[], &token, None);
}

/// `GET /manage/edit?id=N`: the form, filled with the product as it is.
#[handler]
pub async fn edit_form(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    if !managing(depot, res) {
        return;
    }
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
        message_id: new_message_id(),
    };
    let token = csrf_token(req, res);
    render_form(res, StatusCode::OK, &form, &[], &token, Some(product.id));
}

/// `POST /manage/save`: checks the fields, publishes the product, and sends
/// the browser to the page that waits for it to be stored.
#[handler]
pub async fn save(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(publisher) = publisher(depot, res) else {
        return;
    };
    let Some(fields) = checked_form(req, res).await else {
        return;
    };
    let form = FormValues::from_fields(&fields);
    let editing = fields.get("editing").and_then(|id| id.parse::<i64>().ok());
    let update = match form.check() {
        Ok(update) => update,
        Err(problems) => {
            let token = fields.get(CSRF).cloned().unwrap_or_default();
            return render_form(
                res,
                StatusCode::UNPROCESSABLE_ENTITY,
                &form,
                &problems,
                &token,
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
    publish_and_wait(res, &publisher, payload, &form.message_id, update.id).await;
}

/// `POST /manage/delete`: publishes the deletion of a product.
#[handler]
pub async fn delete(req: &mut Request, depot: &mut Depot, res: &mut Response) {
    let Some(publisher) = publisher(depot, res) else {
        return;
    };
    let Some(fields) = checked_form(req, res).await else {
        return;
    };
    let id = match params::product_id(fields.get("id").map(String::as_str)) {
        Ok(Some(id)) => id,
        Ok(None) => return error_page(res, StatusCode::BAD_REQUEST, "Which product? No id given."),
        Err(message) => return error_page(res, StatusCode::BAD_REQUEST, &message),
    };
    let message_id = fields
        .get("message_id")
        .filter(|id| !id.is_empty())
        .cloned()
        .unwrap_or_else(new_message_id);
    let payload = json!({"id": id, "deleted": true});
    publish_and_wait(res, &publisher, payload, &message_id, Some(id)).await;
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
    render(res, StatusCode::OK, "manage_sent", data);
}

async fn publish_and_wait(
    res: &mut Response,
    publisher: &Publisher,
    payload: Value,
    message_id: &str,
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
    match publisher.publish(Bytes::from(payload), &message_id).await {
        Ok((stream, seq)) => {
            let mut query = url_query(&[("stream", stream.as_str()), ("seq", &seq.to_string())]);
            if let Some(id) = id {
                query.push_str(&format!("&id={id}"));
            }
            res.render(Redirect::other(format!("/manage/sent?{query}")));
        }
        Err(reason) => {
            tracing::warn!(%reason, "a form could not be published");
            error_page(
                res,
                StatusCode::SERVICE_UNAVAILABLE,
                "The change could not be sent to the stream right now. Please go back and try again.",
            );
        }
    }
}

/// The form's fields as typed, shown again when they need fixing.
#[derive(Default, serde::Serialize)]
struct FormValues {
    id: String,
    name: String,
    price: String,
    manufacturer: String,
    description: String,
    attributes: String,
    /// The `Nats-Msg-Id` this form publishes with: sending it twice stores
    /// it once (within the stream's duplicate window).
    message_id: String,
}

impl FormValues {
    fn from_fields(fields: &HashMap<String, String>) -> Self {
        let field = |name: &str| fields.get(name).cloned().unwrap_or_default();
        Self {
            id: field("id"),
            name: field("name"),
            price: field("price"),
            manufacturer: field("manufacturer"),
            description: field("description"),
            attributes: field("attributes"),
            message_id: Some(field("message_id"))
                .filter(|id| !id.is_empty() && id.len() <= 64)
                .unwrap_or_else(new_message_id),
        }
    }

    /// The fields as a message would carry them, checked by the decoder's
    /// rules. A number field holds what the text is as JSON (a number, or
    /// else a string, which the decoder refuses with its own words).
    fn check(&self) -> Result<ProductUpdate, Vec<FieldProblem>> {
        let mut fields = Map::new();
        let mut problems = Vec::new();
        let number = |text: &str| {
            let text = text.trim();
            match serde_json::from_str::<Value>(text) {
                Ok(Value::Number(n)) => Value::Number(n),
                _ => Value::String(text.to_owned()),
            }
        };
        if !self.id.trim().is_empty() {
            fields.insert("id".into(), number(&self.id));
        }
        fields.insert("name".into(), Value::String(self.name.clone()));
        if !self.price.trim().is_empty() {
            fields.insert("price".into(), number(&self.price));
        }
        fields.insert(
            "manufacturer".into(),
            Value::String(self.manufacturer.clone()),
        );
        if !self.description.trim().is_empty() {
            fields.insert(
                "description".into(),
                Value::String(self.description.clone()),
            );
        }
        if !self.attributes.trim().is_empty() {
            match serde_json::from_str::<Value>(&self.attributes) {
                Ok(attributes) => {
                    fields.insert("attributes".into(), attributes);
                }
                Err(e) => problems.push(FieldProblem {
                    field: "attributes",
                    problem: format!(
                        "must be a JSON object such as {{\"colour\": \"blue\"}} ({e})"
                    ),
                }),
            }
        }
        match product::check_fields(&fields) {
            Ok(update) if problems.is_empty() => Ok(update),
            Ok(_) => Err(problems),
            Err(mut found) => {
                found.extend(problems);
                Err(found)
            }
        }
    }
}

fn render_form(
    res: &mut Response,
    status: StatusCode,
    form: &FormValues,
    problems: &[FieldProblem],
    token: &str,
    editing: Option<i64>,
) {
    let problem = |field: &str| {
        problems
            .iter()
            .find(|p| p.field == field)
            .map(|p| p.problem.clone())
    };
    let errors: Map<String, Value> = product::FIELDS
        .iter()
        .filter_map(|field| problem(field).map(|p| ((*field).to_owned(), Value::String(p))))
        .collect();
    let data = json!({
        "title": if editing.is_some() { "Edit product" } else { "Add a product" },
        "form": form,
        "errors": errors,
        "has_errors": !problems.is_empty(),
        "csrf": token,
        "editing": editing,
        "limits": {
            "name": product::MAX_NAME_CHARS,
            "description": product::MAX_DESCRIPTION_CHARS,
        },
    });
    render(res, status, "manage_form", data);
}

/// Managing is on; else a 404 page that says it is off.
fn managing(depot: &Depot, res: &mut Response) -> bool {
    publisher(depot, res).is_some()
}

fn publisher(depot: &Depot, res: &mut Response) -> Option<Publisher> {
    let publisher = app_state(depot).publisher.clone();
    if publisher.is_none() {
        error_page(
            res,
            StatusCode::NOT_FOUND,
            "Managing products is switched off on this deployment (UI_MANAGE=false): products come from the stream only.",
        );
    }
    publisher
}

/// The posted form's fields, once the request is shown to come from this
/// site (same-origin `Origin` if any, and the CSRF token matching the cookie).
async fn checked_form(req: &mut Request, res: &mut Response) -> Option<HashMap<String, String>> {
    // Under `Referrer-Policy: no-referrer` a browser sends `Origin: null`
    // with a form: that says nothing, and the token decides.
    let origin = req.header::<String>("origin").filter(|o| o != "null");
    let cross_site = match (origin, req.header::<String>("host")) {
        (Some(origin), Some(host)) => {
            let origin_host = origin.split_once("://").map(|(_, rest)| rest);
            origin_host != Some(host.as_str())
        }
        (Some(_), None) => true,
        _ => false,
    };
    let fields: HashMap<String, String> = match req.form_data().await {
        Ok(data) => data
            .fields
            .iter_all()
            .filter_map(|(key, values)| Some((key.clone(), values.first()?.clone())))
            .collect(),
        Err(_) => HashMap::new(),
    };
    let cookie = cookie(req, CSRF);
    let token_matches = match (cookie.as_deref(), fields.get(CSRF)) {
        (Some(cookie), Some(field)) => !cookie.is_empty() && same(cookie, field),
        _ => false,
    };
    if cross_site || !token_matches {
        error_page(
            res,
            StatusCode::FORBIDDEN,
            "This form could not be accepted: it did not come from this site's own page (or cookies are off). Open the form again and send it from there.",
        );
        return None;
    }
    Some(fields)
}

/// The browser's CSRF token, or a new one (set as its cookie).
pub(super) fn csrf_token(req: &Request, res: &mut Response) -> String {
    if let Some(token) = cookie(req, CSRF).filter(|t| t.len() == 32) {
        return token;
    }
    let token = uuid::Uuid::new_v4().simple().to_string();
    let cookie = format!("{CSRF}={token}; Path=/; SameSite=Strict; HttpOnly");
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        res.headers_mut().append(header::SET_COOKIE, value);
    }
    token
}

fn cookie(req: &Request, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Compares in time independent of where the two differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |diff, (x, y)| diff | (x ^ y))
            == 0
}

pub(super) fn new_message_id() -> String {
    format!("ui-{}", uuid::Uuid::new_v4())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_csrf_comparison_needs_equal_tokens() {
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "ab"));
    }

    #[test]
    fn a_form_with_text_for_a_number_gets_the_decoders_message_next_to_it() {
        let form = FormValues {
            name: "pen".into(),
            price: "ten".into(),
            manufacturer: "".into(),
            attributes: "{not json".into(),
            ..FormValues::default()
        };
        let problems = form.check().unwrap_err();
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["price", "manufacturer", "attributes"]);
        assert_eq!(problems[0].problem, "must be a number, found a string");
    }
}

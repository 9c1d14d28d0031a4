//! The product form: its fields as typed, checked with the decoder's own
//! rules, and rendered with each problem next to its field. The manage
//! handlers (`manage.rs`) use it.

use super::access::Operator;
use super::forms::Fields;
use super::respond::render;
use super::state::Managing;
use catalogue::product::{self, FieldProblem, Upsert};
use salvo::http::StatusCode;
use salvo::prelude::*;
use serde_json::{Map, Value, json};

/// The form's fields as typed, shown again when they need fixing.
#[derive(Default, serde::Serialize)]
pub struct FormValues {
    pub id: String,
    pub name: String,
    pub price: String,
    pub manufacturer: String,
    pub description: String,
    pub attributes: String,
    /// The `Nats-Msg-Id` this form publishes with: sending it twice stores
    /// it once (within the stream's duplicate window).
    pub message_id: String,
}

impl FormValues {
    pub fn from_fields(fields: &Fields, message_id: String) -> Self {
        let field = |name: &str| fields.get(name).to_owned();
        Self {
            id: field("id"),
            name: field("name"),
            price: field("price"),
            manufacturer: field("manufacturer"),
            description: field("description"),
            attributes: field("attributes"),
            message_id,
        }
    }

    /// The fields as a message would carry them, checked by the decoder's
    /// rules. A number field holds what the text is as JSON (a number, or
    /// else a string, which the decoder refuses with its own words).
    pub fn check(&self) -> Result<Upsert, Vec<FieldProblem>> {
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

pub fn render_form(
    res: &mut Response,
    status: StatusCode,
    form: &FormValues,
    problems: &[FieldProblem],
    managing: &Managing,
    operator: &Operator,
    editing: Option<i64>,
) {
    let token = managing.access.csrf_token(operator);
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
        "who": {"operator": operator.name, "csrf": token},
        "editing": editing,
        "limits": {
            "name": product::MAX_NAME_CHARS,
            "description": product::MAX_DESCRIPTION_CHARS,
        },
    });
    render(res, status, "manage_form", data);
}

#[cfg(test)]
mod tests {
    use super::*;

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

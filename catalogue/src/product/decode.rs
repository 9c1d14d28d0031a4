//! The wire format: a JSON object whose keys match case-insensitively (as Go's
//! `encoding/json` does, the format of the Go service this replaces), so both
//! `{"ID":0,"Name":"pen","Price":10,"Manufacturer":"bic"}` and
//! `{"name":"pen","price":10,"manufacturer":"bic"}` are the same product.
//! Unknown keys are ignored, as Go ignores them; a key given twice is refused
//! (serde_json would keep the last). Each field's own rules are in
//! [`super::rules`].

use super::error::{DecodeError, FieldProblem};
use super::rules::{
    decode_attributes, decode_deleted, decode_description, decode_id, decode_name, decode_price,
};
use super::{MAX_PAYLOAD_BYTES, ProductUpdate, Upsert};
use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::fmt;

/// The fields of the wire format, by their lower-case name.
pub const FIELDS: [&str; 7] = [
    "id",
    "name",
    "price",
    "manufacturer",
    "description",
    "attributes",
    "deleted",
];

/// Decodes one message payload into a product update, or says why it is not one.
pub fn decode(payload: &[u8]) -> Result<ProductUpdate, DecodeError> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(DecodeError::TooLarge { len: payload.len() });
    }
    let text = std::str::from_utf8(payload).map_err(|e| DecodeError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    if text.trim().is_empty() {
        return Err(DecodeError::Empty);
    }
    let wire: Wire = serde_json::from_str(text).map_err(|e| DecodeError::NotJson(e.to_string()))?;
    let fields = match wire {
        Wire::Object(fields) => fields,
        Wire::NotAnObject(kind) => return Err(DecodeError::NotAnObject(kind)),
    };
    if let Some(repeat) = fields.repeat {
        return Err(DecodeError::Duplicate {
            field: FIELDS[repeat.slot],
            first: repeat.first,
            second: repeat.second,
        });
    }
    decode_fields(fields.values).map_err(|mut errors| errors.swap_remove(0))
}

/// Checks the fields of a product as a form gives them (keys in lower case,
/// values as they would be in a message), with the decoder's own rules, and
/// says what is wrong with each field, not only the first. A form makes
/// products: a `deleted` field is not read.
pub fn check_fields(fields: &Map<String, Value>) -> Result<Upsert, Vec<FieldProblem>> {
    let (product, _deleted) = split_deleted(FIELDS.map(|field| fields.get(field).cloned()));
    decode_upsert(product).map_err(|errors| {
        errors
            .iter()
            .filter_map(DecodeError::field_problem)
            .collect()
    })
}

/// The fields' values in the order of [`FIELDS`] into an update; every
/// problem found, in that order.
fn decode_fields(values: [Option<Value>; FIELDS.len()]) -> Result<ProductUpdate, Vec<DecodeError>> {
    let (product, deleted) = split_deleted(values);
    let deleted = decode_deleted(deleted);
    if deleted == Ok(true) {
        let [id, ..] = product;
        return match decode_id(id) {
            Ok(Some(id)) => Ok(ProductUpdate::Delete { id }),
            Ok(None) => Err(vec![DecodeError::Invalid {
                field: "id",
                problem: "is required to delete a product".to_owned(),
            }]),
            Err(error) => Err(vec![error]),
        };
    }
    let upsert = decode_upsert(product);
    // `deleted` comes last, after the fields the Go service knew.
    match (upsert, deleted) {
        (Ok(upsert), Ok(_)) => Ok(ProductUpdate::Upsert(upsert)),
        (Ok(_), Err(error)) => Err(vec![error]),
        (Err(mut errors), Err(error)) => {
            errors.push(error);
            Err(errors)
        }
        (Err(errors), Ok(_)) => Err(errors),
    }
}

/// The values of [`FIELDS`]: the product's (all but the last) and `deleted`.
fn split_deleted(values: [Option<Value>; FIELDS.len()]) -> ([Option<Value>; 6], Option<Value>) {
    let [
        id,
        name,
        price,
        manufacturer,
        description,
        attributes,
        deleted,
    ] = values;
    (
        [id, name, price, manufacturer, description, attributes],
        deleted,
    )
}

/// The fields of a product (all of [`FIELDS`] but `deleted`, in that order);
/// every problem found, in that order.
fn decode_upsert(values: [Option<Value>; 6]) -> Result<Upsert, Vec<DecodeError>> {
    let [id, name, price, manufacturer, description, attributes] = values;
    fn keep<T>(errors: &mut Vec<DecodeError>, result: Result<T, DecodeError>) -> Option<T> {
        result.map_err(|e| errors.push(e)).ok()
    }
    let mut errors = Vec::new();
    let upsert = (
        keep(&mut errors, decode_id(id)),
        keep(&mut errors, decode_name("name", name)),
        keep(&mut errors, decode_price(price)),
        keep(&mut errors, decode_name("manufacturer", manufacturer)),
        keep(&mut errors, decode_description(description)),
        keep(&mut errors, decode_attributes(attributes)),
    );
    match upsert {
        (
            Some(id),
            Some(name),
            Some(price),
            Some(manufacturer),
            Some(description),
            Some(attributes),
        ) if errors.is_empty() => Ok(Upsert {
            id,
            name,
            price,
            manufacturer,
            description,
            attributes,
        }),
        _ => Err(errors),
    }
}

/// A payload as the decoder reads it. serde_json's `Value` keeps only the last
/// of two equal keys, so `{"name":"a","name":"b"}` would silently be `b`: this
/// reads the object key by key instead, and remembers a field given twice.
enum Wire {
    Object(Box<Fields>),
    NotAnObject(&'static str),
}

/// The product's fields as found in the object (unknown keys are skipped).
#[derive(Default)]
struct Fields {
    values: [Option<Value>; FIELDS.len()],
    /// The spellings of each field as first given.
    keys: [Option<String>; FIELDS.len()],
    /// The first field given twice, if any.
    repeat: Option<Repeat>,
}

struct Repeat {
    slot: usize,
    first: String,
    second: String,
}

impl<'de> Deserialize<'de> for Wire {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(WireVisitor)
    }
}

struct WireVisitor;

impl<'de> Visitor<'de> for WireVisitor {
    type Value = Wire;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Wire, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<String>()? {
            let Some(slot) = FIELDS.iter().position(|f| f.eq_ignore_ascii_case(&key)) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value::<Value>()?;
            match &fields.keys[slot] {
                Some(first) => {
                    // The whole payload is still read, so that broken JSON
                    // after the repeat is reported as broken JSON.
                    fields.repeat.get_or_insert_with(|| Repeat {
                        slot,
                        first: first.clone(),
                        second: key,
                    });
                }
                None => {
                    fields.keys[slot] = Some(key);
                    fields.values[slot] = Some(value);
                }
            }
        }
        Ok(Wire::Object(Box::new(fields)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Wire, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Wire::NotAnObject("an array"))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Wire, E> {
        Ok(Wire::NotAnObject("null"))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Wire, E> {
        Ok(Wire::NotAnObject("a boolean"))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Wire, E> {
        Ok(Wire::NotAnObject("a number"))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Wire, E> {
        Ok(Wire::NotAnObject("a number"))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Wire, E> {
        Ok(Wire::NotAnObject("a number"))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<Wire, E> {
        Ok(Wire::NotAnObject("a string"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::product::{MAX_NAME_CHARS, MAX_PRICE};
    use serde_json::json;

    fn reason(payload: &[u8]) -> String {
        decode(payload).unwrap_err().to_string()
    }

    /// The product a valid message that is not a deletion gives.
    fn upsert(payload: &[u8]) -> Upsert {
        match decode(payload).unwrap() {
            ProductUpdate::Upsert(upsert) => upsert,
            other => panic!("expected a product, got {other:?}"),
        }
    }

    fn checked(fields: &Value) -> Upsert {
        check_fields(fields.as_object().unwrap()).unwrap()
    }

    #[test]
    fn the_go_services_bytes_decode_to_a_new_product() {
        let update = decode(br#"{"ID":0,"Name":"pen","Price":10,"Manufacturer":"bic"}"#).unwrap();
        assert_eq!(
            update,
            ProductUpdate::Upsert(Upsert {
                id: None,
                name: "pen".into(),
                price: 10,
                manufacturer: "bic".into(),
                description: None,
                attributes: Map::new(),
            })
        );
    }

    #[test]
    fn lower_case_keys_and_a_positive_id_replace_that_product() {
        let update = upsert(br#"{"id":7,"name":" toy ","price":100,"manufacturer":"lego"}"#);
        assert_eq!(update.id, Some(7));
        assert_eq!(update.name, "toy");
    }

    #[test]
    fn optional_detail_is_kept_and_unknown_keys_are_ignored() {
        let payload = json!({
            "name": "pen", "price": 1, "manufacturer": "bic",
            "description": "blue ink", "attributes": {"colour": "blue", "refillable": true, "mm": 0.7},
            "extra": [1, 2, 3]
        });
        let update = upsert(payload.to_string().as_bytes());
        assert_eq!(update.description.as_deref(), Some("blue ink"));
        assert_eq!(update.attributes.len(), 3);
    }

    #[test]
    fn the_largest_price_is_accepted_and_one_more_is_not() {
        let ok = format!(r#"{{"name":"a","price":{MAX_PRICE},"manufacturer":"b"}}"#);
        assert_eq!(upsert(ok.as_bytes()).price, MAX_PRICE as i64);
        let over = format!(
            r#"{{"name":"a","price":{},"manufacturer":"b"}}"#,
            MAX_PRICE + 1
        );
        assert!(reason(over.as_bytes()).contains("must be at most"));
    }

    #[test]
    fn invalid_messages_say_what_is_wrong() {
        let cases: &[(&[u8], &str)] = &[
            (b"", "empty"),
            (b"not json", "not valid JSON"),
            (b"null", "expected a JSON object, found null"),
            (b"[1,2]", "found an array"),
            (br#"{"name":"pen","price":10"#, "not valid JSON"),
            (br#"{"price":10,"manufacturer":"bic"}"#, "`name` is missing"),
            (
                br#"{"name":"pen","manufacturer":"bic"}"#,
                "`price` is missing",
            ),
            (
                br#"{"name":"pen","price":"10","manufacturer":"bic"}"#,
                "must be a number, found a string",
            ),
            (
                br#"{"name":"pen","price":-1,"manufacturer":"bic"}"#,
                "must not be negative",
            ),
            (
                br#"{"name":"pen","price":1.5,"manufacturer":"bic"}"#,
                "whole number",
            ),
            (
                br#"{"name":"pen","price":1e400,"manufacturer":"bic"}"#,
                "not valid JSON",
            ),
            (
                br#"{"name":"  ","price":1,"manufacturer":"bic"}"#,
                "`name` must not be empty",
            ),
            (
                br#"{"name":"pen","price":1,"manufacturer":7}"#,
                "`manufacturer` must be a string",
            ),
            (
                br#"{"id":-3,"name":"pen","price":1,"manufacturer":"bic"}"#,
                "`id` must not be negative",
            ),
            (
                br#"{"id":"3","name":"pen","price":1,"manufacturer":"bic"}"#,
                "`id` must be a whole number",
            ),
            (
                br#"{"Name":"a","name":"b","price":1,"manufacturer":"bic"}"#,
                "more than once",
            ),
            (
                br#"{"name":"a\u0000","price":1,"manufacturer":"bic"}"#,
                "control characters",
            ),
            (
                br#"{"name":"a","price":1,"manufacturer":"b","attributes":[1]}"#,
                "must be an object",
            ),
            (
                br#"{"name":"a","price":1,"manufacturer":"b","attributes":{"k":{}}}"#,
                "`k` must be a string, number or boolean",
            ),
            (
                b"{\"name\":\"\xff\",\"price\":1,\"manufacturer\":\"b\"}",
                "not UTF-8",
            ),
        ];
        for (payload, expected) in cases {
            let got = reason(payload);
            assert!(
                got.contains(expected),
                "{:?}: expected {expected:?} in {got:?}",
                String::from_utf8_lossy(payload)
            );
        }
    }

    #[test]
    fn a_field_given_twice_is_rejected_whatever_the_case() {
        for (payload, first, second) in [
            (
                r#"{"id":5,"name":"a","name":"b","price":1,"manufacturer":"m"}"#,
                "name",
                "name",
            ),
            (
                r#"{"id":5,"name":"a","price":1,"manufacturer":"m","NAME":"b"}"#,
                "name",
                "NAME",
            ),
            (
                r#"{"Price":1,"name":"a","price":2,"manufacturer":"m"}"#,
                "Price",
                "price",
            ),
            (
                r#"{"id":1,"id":1,"name":"a","price":1,"manufacturer":"m"}"#,
                "id",
                "id",
            ),
        ] {
            let error = decode(payload.as_bytes()).unwrap_err();
            let field = first.to_ascii_lowercase();
            assert_eq!(
                error.to_string(),
                format!(
                    "the field `{field}` is given more than once, as {first:?} and {second:?} \
                     (keys match case-insensitively, and each field may appear once)"
                ),
                "{payload}"
            );
        }
    }

    #[test]
    fn a_deletion_names_an_id_and_needs_nothing_else() {
        let update = decode(br#"{"id":7,"deleted":true}"#).unwrap();
        assert_eq!(update, ProductUpdate::Delete { id: 7 });
        assert_eq!(update.id(), Some(7));
        // The other fields are not needed, and not read.
        assert_eq!(
            decode(br#"{"ID":7,"Deleted":true,"price":"x"}"#).unwrap(),
            ProductUpdate::Delete { id: 7 }
        );
        // `false` is an ordinary update, with every rule.
        assert_eq!(
            upsert(br#"{"id":7,"deleted":false,"name":"a","price":1,"manufacturer":"m"}"#).id,
            Some(7)
        );
        assert!(reason(br#"{"deleted":true}"#).contains("`id` is required to delete"));
        assert!(reason(br#"{"id":0,"deleted":true}"#).contains("`id` is required to delete"));
        assert!(reason(br#"{"id":-1,"deleted":true}"#).contains("must not be negative"));
        assert!(
            reason(br#"{"id":1,"deleted":"yes","name":"a","price":1,"manufacturer":"m"}"#)
                .contains("`deleted` must be true or false, found a string")
        );
    }

    #[test]
    fn a_form_learns_every_field_at_fault_with_the_decoders_words() {
        let fields = json!({"name": " ", "price": "ten", "manufacturer": "bic"});
        let problems = check_fields(fields.as_object().unwrap()).unwrap_err();
        assert_eq!(
            problems,
            vec![
                FieldProblem {
                    field: "name",
                    problem: "must not be empty".into()
                },
                FieldProblem {
                    field: "price",
                    problem: "must be a number, found a string".into()
                },
            ]
        );
        let fields = json!({"name": "pen", "price": 10, "manufacturer": "bic"});
        assert_eq!(checked(&fields).name, "pen");
    }

    #[test]
    fn unknown_keys_are_ignored_even_when_repeated() {
        let update = upsert(br#"{"x":1,"name":"a","x":[2],"price":1,"manufacturer":"m","X":{}}"#);
        assert_eq!(update.name, "a");
    }

    #[test]
    fn broken_json_after_a_repeated_field_is_reported_as_broken_json() {
        assert!(reason(br#"{"name":"a","name":"b","price":1,"#).contains("not valid JSON"));
    }

    #[test]
    fn oversized_and_deeply_nested_payloads_are_rejected() {
        let long_name = "x".repeat(MAX_NAME_CHARS + 1);
        let payload = json!({"name": long_name, "price": 1, "manufacturer": "b"}).to_string();
        assert!(reason(payload.as_bytes()).contains("more than the 256 allowed"));

        let huge = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert!(reason(&huge).contains("more than the"));

        // Skipped without recursion: rejected for what it is, not read deeply.
        let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(reason(deep.as_bytes()).contains("found an array"));
        let nest = |key: &str| {
            format!(
                r#"{{"{key}":{}{},"name":"a","price":1,"manufacturer":"b"}}"#,
                "[".repeat(10_000),
                "]".repeat(10_000)
            )
        };
        // A field the decoder reads stops at serde_json's depth limit.
        assert!(reason(nest("description").as_bytes()).contains("not valid JSON"));
        // An unknown key's value is skipped, however deep.
        assert!(decode(nest("extra").as_bytes()).is_ok());
    }
}

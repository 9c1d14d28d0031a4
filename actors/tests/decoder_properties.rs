//! Properties of the message decoder: it never panics, whatever the bytes;
//! every well-formed product decodes to exactly what was sent, whatever the
//! case of its keys; and one bad field is enough to reject a message.

use actors::product::{
    DecodeError, MAX_ATTRIBUTES, MAX_DESCRIPTION_CHARS, MAX_ID, MAX_NAME_CHARS, MAX_PRICE, decode,
};
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A key in any mix of upper and lower case, as Go's decoder accepts.
fn any_case(key: &'static str) -> impl Strategy<Value = String> {
    vec(any::<bool>(), key.len()).prop_map(move |upper| {
        key.chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// A valid name: printable, not blank, within the limit once trimmed.
fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9äöüß€<>&\"'][a-zA-Z0-9 äöüß€<>&\"'.-]{0,60}"
}

/// Any JSON, with the product's keys (in any case) among the object keys.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
    ];
    let key = prop_oneof![
        any_case("id"),
        any_case("name"),
        any_case("price"),
        any_case("manufacturer"),
        any_case("description"),
        any_case("attributes"),
        ".{0,8}",
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Value::Array),
            btree_map(key.clone(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
struct Valid {
    id: Option<i64>,
    name: String,
    price: u64,
    manufacturer: String,
    description: Option<String>,
    attributes: Map<String, Value>,
    keys: [String; 6],
}

fn valid() -> impl Strategy<Value = Valid> {
    let attributes = btree_map(
        "[a-z][a-z0-9_]{0,10}",
        prop_oneof![
            "[a-z ]{0,20}".prop_map(Value::from),
            any::<i32>().prop_map(Value::from),
            any::<bool>().prop_map(Value::from)
        ],
        0..5,
    )
    .prop_map(|m| m.into_iter().collect::<Map<_, _>>());
    let keys = (
        any_case("id"),
        any_case("name"),
        any_case("price"),
        any_case("manufacturer"),
        any_case("description"),
        any_case("attributes"),
    )
        .prop_map(|(a, b, c, d, e, f)| [a, b, c, d, e, f]);
    (
        option::of(0..=MAX_ID),
        name(),
        0..=MAX_PRICE,
        name(),
        option::of("[a-zA-Z0-9 \n.,<>]{1,200}"),
        attributes,
        keys,
    )
        .prop_map(
            |(id, name, price, manufacturer, description, attributes, keys)| Valid {
                id,
                name,
                price,
                manufacturer,
                description,
                attributes,
                keys,
            },
        )
}

impl Valid {
    fn to_json(&self) -> Map<String, Value> {
        let mut object = Map::new();
        let [id, name, price, manufacturer, description, attributes] = &self.keys;
        if let Some(value) = self.id {
            object.insert(id.clone(), json!(value));
        }
        object.insert(name.clone(), json!(self.name));
        object.insert(price.clone(), json!(self.price));
        object.insert(manufacturer.clone(), json!(self.manufacturer));
        if let Some(value) = &self.description {
            object.insert(description.clone(), json!(value));
        }
        if !self.attributes.is_empty() {
            object.insert(attributes.clone(), Value::Object(self.attributes.clone()));
        }
        object
    }
}

/// One way to spoil a valid message.
#[derive(Debug, Clone)]
enum Spoil {
    NegativePrice(i64),
    FractionalPrice(f64),
    PriceAsString,
    PriceTooHigh(u64),
    BlankName(String),
    LongName,
    NameNotAString(i64),
    MissingName,
    MissingPrice,
    MissingManufacturer,
    NegativeId(i64),
    IdTooHigh(i64),
    IdAsString,
    LongDescription,
    AttributesNotAnObject,
    AttributeValueNested,
    TooManyAttributes,
    NulInName,
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        (i64::MIN..0).prop_map(Spoil::NegativePrice),
        (0.01f64..1e6)
            .prop_filter("not whole", |f| f.fract() != 0.0)
            .prop_map(Spoil::FractionalPrice),
        Just(Spoil::PriceAsString),
        (MAX_PRICE + 1..=u64::MAX).prop_map(Spoil::PriceTooHigh),
        "[ \t]{0,5}".prop_map(Spoil::BlankName),
        Just(Spoil::LongName),
        any::<i64>().prop_map(Spoil::NameNotAString),
        Just(Spoil::MissingName),
        Just(Spoil::MissingPrice),
        Just(Spoil::MissingManufacturer),
        (i64::MIN..0).prop_map(Spoil::NegativeId),
        (MAX_ID + 1..=i64::MAX).prop_map(Spoil::IdTooHigh),
        Just(Spoil::IdAsString),
        Just(Spoil::LongDescription),
        Just(Spoil::AttributesNotAnObject),
        Just(Spoil::AttributeValueNested),
        Just(Spoil::TooManyAttributes),
        Just(Spoil::NulInName),
    ]
}

fn apply(spoil: &Spoil, message: &Valid, object: &mut Map<String, Value>) {
    let [id, name, price, manufacturer, description, attributes] = &message.keys;
    match spoil {
        Spoil::NegativePrice(p) => drop(object.insert(price.clone(), json!(p))),
        Spoil::FractionalPrice(p) => drop(object.insert(price.clone(), json!(p))),
        Spoil::PriceAsString => {
            drop(object.insert(price.clone(), json!(message.price.to_string())))
        }
        Spoil::PriceTooHigh(p) => drop(object.insert(price.clone(), json!(p))),
        Spoil::BlankName(blank) => drop(object.insert(name.clone(), json!(blank))),
        Spoil::LongName => drop(object.insert(name.clone(), json!("n".repeat(MAX_NAME_CHARS + 1)))),
        Spoil::NameNotAString(n) => drop(object.insert(name.clone(), json!(n))),
        Spoil::MissingName => drop(object.remove(name)),
        Spoil::MissingPrice => drop(object.remove(price)),
        Spoil::MissingManufacturer => drop(object.remove(manufacturer)),
        Spoil::NegativeId(i) => drop(object.insert(id.clone(), json!(i))),
        Spoil::IdTooHigh(i) => drop(object.insert(id.clone(), json!(i))),
        Spoil::IdAsString => drop(object.insert(id.clone(), json!("7"))),
        Spoil::LongDescription => drop(object.insert(
            description.clone(),
            json!("d".repeat(MAX_DESCRIPTION_CHARS + 1)),
        )),
        Spoil::AttributesNotAnObject => drop(object.insert(attributes.clone(), json!([1, 2]))),
        Spoil::AttributeValueNested => {
            drop(object.insert(attributes.clone(), json!({"k": {"x": 1}})))
        }
        Spoil::TooManyAttributes => {
            let many: Map<String, Value> = (0..=MAX_ATTRIBUTES)
                .map(|i| (format!("k{i}"), json!(i)))
                .collect();
            drop(object.insert(attributes.clone(), Value::Object(many)));
        }
        Spoil::NulInName => drop(object.insert(name.clone(), json!("a\u{0}b"))),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_or_fail_without_panicking(bytes in vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn whatever_json_is_accepted_is_a_valid_product(value in any_json()) {
        if let Ok(update) = decode(value.to_string().as_bytes()) {
            prop_assert!(update.id.is_none_or(|id| (1..=MAX_ID).contains(&id)));
            for text in [&update.name, &update.manufacturer] {
                prop_assert!(!text.is_empty() && text.trim() == text.as_str());
                prop_assert!(text.chars().count() <= MAX_NAME_CHARS);
            }
            prop_assert!((0..=MAX_PRICE as i64).contains(&update.price));
            prop_assert!(update.attributes.len() <= MAX_ATTRIBUTES);
        }
    }

    #[test]
    fn every_valid_message_decodes_to_what_was_sent(message in valid()) {
        let payload = Value::Object(message.to_json()).to_string();
        let update = decode(payload.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(update.id, message.id.filter(|id| *id > 0));
        prop_assert_eq!(&update.name, message.name.trim());
        prop_assert_eq!(update.price, message.price as i64);
        prop_assert_eq!(&update.manufacturer, message.manufacturer.trim());
        prop_assert_eq!(update.description.as_deref(), message.description.as_deref().map(str::trim).filter(|d| !d.is_empty()));
        prop_assert_eq!(&update.attributes, &message.attributes);
    }

    #[test]
    fn one_bad_field_rejects_the_message(message in valid(), spoil in spoil()) {
        let mut object = message.to_json();
        apply(&spoil, &message, &mut object);
        let result = decode(Value::Object(object).to_string().as_bytes());
        prop_assert!(
            matches!(result, Err(DecodeError::Missing { .. } | DecodeError::Invalid { .. }) ),
            "{:?} was accepted: {:?}", spoil, result
        );
    }
}

//! Properties of the message decoder: it never panics, whatever the bytes;
//! every well-formed product decodes to exactly what was sent, whatever the
//! case of its keys; one bad field (or one field given twice) is enough to
//! reject a message; and for messages built on purpose at the contract's
//! edges, the decoder accepts exactly what the README's contract allows.
//!
//! The last property counts what its generator produced and fails if the
//! interesting cases became rare (see [`Coverage`]), so that a change to the
//! generator cannot quietly turn it into a test that checks nothing.

mod edges;

use catalogue::product::{
    DecodeError, MAX_ATTRIBUTES, MAX_DESCRIPTION_CHARS, MAX_ID, MAX_NAME_CHARS, MAX_PRICE, decode,
};
use catalogue::product::{MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTE_VALUE_CHARS, ProductUpdate};
use edges::Refusal;
use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use std::cell::RefCell;
use std::collections::BTreeMap;

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
    /// A field given a second time, in the same case as the first.
    RepeatedSameCase(usize),
    /// A field given a second time, in another case.
    RepeatedOtherCase(usize),
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
        (0..6usize).prop_map(Spoil::RepeatedSameCase),
        (0..6usize).prop_map(Spoil::RepeatedOtherCase),
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
        // Repeats are added to the text (see `spoiled_text`): a map cannot hold them.
        Spoil::RepeatedSameCase(_) | Spoil::RepeatedOtherCase(_) => {}
    }
}

/// The spoiled message as text: a repeated field goes in front of the others,
/// under the key the message uses for it, or that key in another case.
fn spoiled_text(spoil: &Spoil, message: &Valid, object: Map<String, Value>) -> String {
    let repeat = match spoil {
        Spoil::RepeatedSameCase(field) => Some(message.keys[*field].clone()),
        Spoil::RepeatedOtherCase(field) => Some(flip_case(&message.keys[*field])),
        _ => None,
    };
    let text = Value::Object(object).to_string();
    match repeat {
        // A value that is valid on its own, so that only the repeat is at fault.
        Some(key) => format!("{{{}:1,{}", json!(key), &text[1..]),
        None => text,
    }
}

fn flip_case(key: &str) -> String {
    key.chars()
        .map(|c| {
            if c.is_ascii_uppercase() {
                c.to_ascii_lowercase()
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_bytes_decode_or_fail_without_panicking(bytes in vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    /// Random JSON is nearly always refused: this one guards against panics
    /// and odd shapes; the edge property below is the one that checks accepted
    /// messages in number.
    #[test]
    fn any_json_is_decoded_or_refused_without_panicking(value in any_json()) {
        if let Ok(update) = decode(value.to_string().as_bytes()) {
            satisfies_the_contract(&update)?;
        }
    }

    #[test]
    fn every_valid_message_decodes_to_what_was_sent(message in valid()) {
        let payload = Value::Object(message.to_json()).to_string();
        let update = decode(payload.as_bytes()).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let ProductUpdate::Upsert(update) = update else {
            return Err(TestCaseError::fail(format!("a product was read as {update:?}")));
        };
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
        // A repeat of a field the message leaves out is no repeat: add it.
        if let Spoil::RepeatedSameCase(field) | Spoil::RepeatedOtherCase(field) = spoil {
            object.entry(message.keys[field].clone()).or_insert(Value::Null);
        }
        let text = spoiled_text(&spoil, &message, object);
        let result = decode(text.as_bytes());
        match spoil {
            Spoil::RepeatedSameCase(_) | Spoil::RepeatedOtherCase(_) => prop_assert!(
                matches!(result, Err(DecodeError::Duplicate { .. })),
                "{:?} was not refused as a repeat: {:?} ({})", spoil, result, text
            ),
            _ => prop_assert!(
                matches!(result, Err(DecodeError::Missing { .. } | DecodeError::Invalid { .. })),
                "{:?} was accepted: {:?}", spoil, result
            ),
        }
    }
}

/// The number of messages the edge property decodes.
const EDGE_CASES: u32 = 1000;

#[test]
fn messages_at_the_contracts_edges_get_exactly_the_contracts_verdict() {
    let coverage = RefCell::new(Coverage::default());
    let mut runner = TestRunner::new(ProptestConfig::with_cases(EDGE_CASES));
    let result = runner.run(&edges::edged(), |message| {
        let got = decode(message.text.as_bytes());
        match (&message.expect, &got) {
            (Ok(expected), Ok(update)) => {
                prop_assert_eq!(expected, update, "{}", message.text);
                satisfies_the_contract(update)?;
            }
            (Err(Refusal::Repeated(field)), Err(DecodeError::Duplicate { field: got, .. }))
            | (Err(Refusal::Field(field)), Err(DecodeError::Missing { field: got }))
            | (Err(Refusal::Field(field)), Err(DecodeError::Invalid { field: got, .. })) => {
                prop_assert_eq!(field, got, "{}", message.text);
            }
            (expected, got) => {
                prop_assert!(
                    false,
                    "expected {:?}, got {:?}: {}",
                    expected,
                    got,
                    message.text
                );
            }
        }
        coverage.borrow_mut().count(&message, &got);
        Ok(())
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    coverage.into_inner().assert_enough(EDGE_CASES as usize);
}

/// What the contract says of every accepted message, checked on its own.
fn satisfies_the_contract(update: &ProductUpdate) -> Result<(), TestCaseError> {
    let update = match update {
        ProductUpdate::Delete { id } => {
            prop_assert!((1..=MAX_ID).contains(id));
            return Ok(());
        }
        ProductUpdate::Upsert(update) => update,
    };
    prop_assert!(update.id.is_none_or(|id| (1..=MAX_ID).contains(&id)));
    for text in [&update.name, &update.manufacturer] {
        prop_assert!(!text.is_empty() && text.trim() == text.as_str());
        prop_assert!(text.chars().count() <= MAX_NAME_CHARS);
        prop_assert!(!text.chars().any(char::is_control));
    }
    prop_assert!((0..=MAX_PRICE as i64).contains(&update.price));
    if let Some(description) = &update.description {
        prop_assert!(!description.is_empty() && description.trim() == description.as_str());
        prop_assert!(description.chars().count() <= MAX_DESCRIPTION_CHARS);
        prop_assert!(!description.contains('\0'));
    }
    prop_assert!(update.attributes.len() <= MAX_ATTRIBUTES);
    for (key, value) in &update.attributes {
        prop_assert!(!key.trim().is_empty() && key.chars().count() <= MAX_ATTRIBUTE_KEY_CHARS);
        match value {
            Value::String(s) => prop_assert!(s.chars().count() <= MAX_ATTRIBUTE_VALUE_CHARS),
            Value::Number(_) | Value::Bool(_) => {}
            other => prop_assert!(false, "attribute {} is {}", key, other),
        }
    }
    Ok(())
}

/// What the edge property's generator produced over a run. Without it, a
/// change to a weight or a range could leave the property checking almost
/// nothing (as uniform prices once did: nearly all of them above 2^53).
#[derive(Default, Debug)]
struct Coverage {
    accepted: usize,
    refused_field: BTreeMap<&'static str, usize>,
    repeated_same_case: usize,
    repeated_other_case: usize,
    accepted_max_price: usize,
    refused_price_over_max: usize,
    accepted_max_id: usize,
    accepted_longest_name: usize,
}

impl Coverage {
    fn count(&mut self, message: &edges::Edged, got: &Result<ProductUpdate, DecodeError>) {
        match got {
            Ok(ProductUpdate::Delete { .. }) => self.accepted += 1,
            Ok(ProductUpdate::Upsert(update)) => {
                self.accepted += 1;
                self.accepted_max_price += usize::from(update.price == MAX_PRICE as i64);
                self.accepted_max_id += usize::from(update.id == Some(MAX_ID));
                self.accepted_longest_name +=
                    usize::from(update.name.chars().count() == MAX_NAME_CHARS);
            }
            Err(DecodeError::Missing { field } | DecodeError::Invalid { field, .. }) => {
                *self.refused_field.entry(field).or_default() += 1;
                let over = format!("{}", MAX_PRICE + 1);
                self.refused_price_over_max += usize::from(
                    *field == "price" && message.price.json.as_deref() == Some(over.as_str()),
                );
            }
            Err(DecodeError::Duplicate { .. }) => {
                let repeat = message.repeat.as_ref().expect("a repeat was generated");
                if edges::FIELDS.contains(&repeat.key.as_str()) {
                    self.repeated_same_case += 1;
                } else {
                    self.repeated_other_case += 1;
                }
            }
            Err(_) => {}
        }
    }

    /// Fails unless each interesting case came up often enough. The minimums
    /// are far below what the weights give (about half the messages are
    /// accepted), so that a run never fails by chance.
    fn assert_enough(&self, cases: usize) {
        let at_least = |what: &str, count: usize, minimum: usize| {
            assert!(
                count >= minimum,
                "the generator produced {what} {count} times in {cases} cases, \
                 fewer than {minimum}: {self:#?}"
            );
        };
        at_least("accepted messages", self.accepted, cases / 4);
        at_least("refused messages", cases - self.accepted, cases / 4);
        for field in edges::FIELDS {
            let refused = self.refused_field.get(field).copied().unwrap_or(0);
            at_least(
                &format!("messages refused for `{field}`"),
                refused,
                cases / 100,
            );
        }
        at_least(
            "a field repeated in the same case",
            self.repeated_same_case,
            cases / 100,
        );
        at_least(
            "a field repeated in another case",
            self.repeated_other_case,
            cases / 100,
        );
        at_least("an accepted price of 2^53", self.accepted_max_price, 3);
        at_least(
            "a refused price of 2^53 + 1",
            self.refused_price_over_max,
            1,
        );
        at_least("an accepted id of 2^53", self.accepted_max_id, 3);
        at_least(
            "an accepted name of 256 characters",
            self.accepted_longest_name,
            3,
        );
    }
}

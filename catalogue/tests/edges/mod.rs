//! Messages built field by field at the edges of the README's contract, each
//! field with the verdict the contract gives it, so that a property can say
//! exactly what the decoder must answer.
//!
//! Messages are kept as text, key by key, so that a key can be given twice
//! (a JSON object in serde_json cannot hold that) and a number can be written
//! as `1.0` or `-0`.

use catalogue::product::{
    MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTE_VALUE_CHARS, MAX_ATTRIBUTES, MAX_DESCRIPTION_CHARS,
    MAX_ID, MAX_NAME_CHARS, MAX_PRICE, ProductUpdate, Upsert,
};
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

/// One field as sent: its JSON text (`None`: the key is left out) and what the
/// contract makes of it (`Err(())`: the field makes the message invalid).
#[derive(Clone, Debug)]
pub struct Part<T> {
    pub json: Option<String>,
    pub expect: Result<T, ()>,
}

fn valid<T>(json: impl Into<String>, value: T) -> Part<T> {
    Part {
        json: Some(json.into()),
        expect: Ok(value),
    }
}

fn invalid<T>(json: impl Into<String>) -> Part<T> {
    Part {
        json: Some(json.into()),
        expect: Err(()),
    }
}

fn absent<T>(expect: Result<T, ()>) -> Part<T> {
    Part { json: None, expect }
}

/// Numbers the contract refuses for both id and price whatever their value:
/// serde_json reads them as floats (a fraction, an exponent, or `-0`).
const NOT_INTEGERS: [&str; 10] = [
    "0.5",
    "1.0",
    "-0",
    "-0.0",
    "0.0",
    "1e3",
    "1E2",
    "-1.5",
    "9007199254740992.0",
    "9007199254740993.5",
];
/// Not numbers at all.
const NOT_NUMBERS: [&str; 6] = [r#""10""#, r#""""#, "true", "false", "[]", "{}"];

/// How often a field is made valid, against invalid, in every generator
/// below: with six fields, about half the messages are valid.
const VALID: u32 = 92;
const INVALID: u32 = 8;

/// `price`: whole units from 0 to 2^53; weighted towards the edges.
pub fn price() -> impl Strategy<Value = Part<i64>> {
    let whole = |p: u64| Part {
        json: Some(p.to_string()),
        expect: if p <= MAX_PRICE {
            Ok(p as i64)
        } else {
            Err(())
        },
    };
    let good = prop_oneof![
        5 => (0..=MAX_PRICE).prop_map(whole),
        3 => select(vec![0, 1, 2, MAX_PRICE - 1, MAX_PRICE]).prop_map(whole),
        1 => (MAX_PRICE - 3..=MAX_PRICE).prop_map(whole),
    ];
    let bad = prop_oneof![
        3 => Just(whole(MAX_PRICE + 1)),
        1 => (MAX_PRICE + 2..=MAX_PRICE + 3).prop_map(whole),
        1 => select(vec![i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX]).prop_map(whole),
        1 => (i64::MIN..0).prop_map(|p| invalid(p.to_string())),
        1 => select(vec![-1i64, -2, i64::MIN]).prop_map(|p| invalid(p.to_string())),
        1 => select(NOT_INTEGERS.to_vec()).prop_map(invalid),
        1 => select(NOT_NUMBERS.to_vec()).prop_map(invalid),
        1 => Just(invalid("null")),
        1 => Just(absent(Err(()))),
    ];
    prop_oneof![VALID => good, INVALID => bad]
}

/// `id`: absent, `null` or 0 for a new product, 1 to 2^53 for that product.
pub fn id() -> impl Strategy<Value = Part<Option<i64>>> {
    let whole = |i: i64| Part {
        json: Some(i.to_string()),
        expect: match i {
            0 => Ok(None),
            1..=MAX_ID => Ok(Some(i)),
            _ => Err(()),
        },
    };
    let good = prop_oneof![
        4 => (1..=MAX_ID).prop_map(whole),
        3 => select(vec![0, 1, 2, MAX_ID - 1, MAX_ID]).prop_map(whole),
        1 => (MAX_ID - 3..=MAX_ID).prop_map(whole),
        2 => Just(absent(Ok(None))),
        1 => Just(valid("null", None)),
    ];
    let bad = prop_oneof![
        3 => Just(whole(MAX_ID + 1)),
        1 => select(vec![MAX_ID + 2, i64::MAX, -1, -2, i64::MIN]).prop_map(whole),
        1 => select(vec!["9223372036854775808", "18446744073709551615"]).prop_map(invalid),
        1 => select(NOT_INTEGERS.to_vec()).prop_map(invalid),
        1 => select(NOT_NUMBERS.to_vec()).prop_map(invalid),
    ];
    prop_oneof![VALID => good, INVALID => bad]
}

/// Characters a name may hold: one, two, three and four bytes long.
const PRINTABLE: [char; 8] = ['a', 'Z', '7', '<', '&', 'ä', '€', '😀'];

/// `chars` printable characters, with spaces inside but not at the ends.
fn text_of(chars: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec((select(PRINTABLE.to_vec()), any::<bool>()), chars).prop_map(|cs| {
        let last = cs.len().saturating_sub(1);
        cs.into_iter()
            .enumerate()
            .map(|(i, (c, space))| if space && i > 0 && i < last { ' ' } else { c })
            .collect()
    })
}

/// Whitespace that trimming removes (a newline at the ends included).
fn padding() -> impl Strategy<Value = String> {
    prop_oneof![3 => Just(String::new()), 1 => "[ \t\n]{1,3}"]
}

/// A length in characters, weighted towards 1 and the limit.
fn length_up_to(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 1..=max.min(40),
        2 => select(vec![1, 2, max - 1, max]),
        1 => 1..=max,
    ]
}

/// `name` and `manufacturer`: a trimmed string of 1 to 256 characters, no
/// control characters.
pub fn name() -> impl Strategy<Value = Part<String>> {
    let good = (length_up_to(MAX_NAME_CHARS), padding(), padding()).prop_flat_map(
        |(chars, before, after)| {
            text_of(chars).prop_map(move |core| {
                valid(json!(format!("{before}{core}{after}")).to_string(), core)
            })
        },
    );
    let too_long = (MAX_NAME_CHARS + 1..=MAX_NAME_CHARS + 2)
        .prop_flat_map(text_of)
        .prop_map(|s| invalid(json!(s).to_string()));
    let control = (
        text_of(3),
        select(vec!['\u{0}', '\u{7}', '\u{1b}', '\u{7f}', '\u{9f}']),
    )
        .prop_map(|(s, c)| {
            let mut chars: Vec<char> = s.chars().collect();
            chars.insert(1, c);
            invalid(json!(chars.into_iter().collect::<String>()).to_string())
        });
    let bad = prop_oneof![
        3 => too_long,
        2 => control,
        1 => select(vec![r#""""#, r#""   ""#, r#""\t\n""#]).prop_map(invalid),
        1 => select(vec!["7", "true", "[]", r#"{"a":1}"#]).prop_map(invalid),
        1 => Just(invalid("null")),
        1 => Just(absent(Err(()))),
    ];
    prop_oneof![VALID => good, INVALID => bad]
}

/// `description`: optional, at most 4096 characters once trimmed, no NUL.
pub fn description() -> impl Strategy<Value = Part<Option<String>>> {
    let text = (length_up_to(MAX_DESCRIPTION_CHARS), padding()).prop_flat_map(|(chars, pad)| {
        text_of(chars)
            .prop_map(move |core| valid(json!(format!("{pad}{core}{pad}")).to_string(), Some(core)))
    });
    let good = prop_oneof![
        4 => Just(absent(Ok(None))),
        4 => text,
        1 => Just(valid("null", None)),
        1 => select(vec![r#""""#, r#""  \n ""#]).prop_map(|blank| valid(blank, None)),
        // A control character other than NUL is allowed in a description.
        1 => Just(valid(r#""line\u0007two""#, Some("line\u{7}two".to_owned()))),
    ];
    let too_long = (MAX_DESCRIPTION_CHARS + 1..=MAX_DESCRIPTION_CHARS + 2)
        .prop_flat_map(text_of)
        .prop_map(|s| invalid(json!(s).to_string()));
    let bad = prop_oneof![
        2 => too_long,
        1 => Just(invalid(r#""a\u0000b""#)),
        1 => select(vec!["7", "false", "[]", "{}"]).prop_map(invalid),
    ];
    prop_oneof![VALID => good, INVALID => bad]
}

/// An attribute key the contract allows, unique by its index.
fn good_key(index: usize) -> impl Strategy<Value = String> {
    let key = format!("k{index}");
    select(vec![1, 1, 1, MAX_ATTRIBUTE_KEY_CHARS]).prop_map(move |n| format!("{key:x<n$}"))
}

/// One that it does not.
fn bad_key(index: usize) -> impl Strategy<Value = String> {
    let key = format!("k{index}");
    prop_oneof![
        Just(format!("{key:x<n$}", n = MAX_ATTRIBUTE_KEY_CHARS + 1)),
        Just(format!("{key}\u{0}")),
        Just(" ".repeat(index + 1)),
    ]
}

fn good_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-z ]{0,12}".prop_map(Value::from),
        2 => any::<i64>().prop_map(Value::from),
        1 => any::<bool>().prop_map(Value::from),
        // Quarters, which every parser reads back exactly: serde_json without
        // its `float_roundtrip` feature can change the last digit of others.
        1 => (-4_000_000i64..4_000_000).prop_map(|q| Value::from(q as f64 / 4.0)),
        1 => Just(Value::from("v".repeat(MAX_ATTRIBUTE_VALUE_CHARS))),
    ]
}

fn bad_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::from("v".repeat(MAX_ATTRIBUTE_VALUE_CHARS + 1))),
        Just(Value::from("a\u{0}")),
        select(vec![json!(null), json!([]), json!({"x": 1})]),
    ]
}

/// `count` good attributes.
fn good_attributes(count: usize) -> impl Strategy<Value = Map<String, Value>> {
    (0..count)
        .map(|i| (good_key(i), good_value()))
        .collect::<Vec<_>>()
        .prop_map(|entries| entries.into_iter().collect())
}

/// `attributes`: optional, at most 64 keys of 1 to 128 characters, values
/// strings of at most 1024 characters, numbers or booleans.
pub fn attributes() -> impl Strategy<Value = Part<Map<String, Value>>> {
    let object = |map: Map<String, Value>| Value::Object(map).to_string();
    let good = prop_oneof![
        3 => Just(absent(Ok(Map::new()))),
        1 => Just(valid("null", Map::new())),
        5 => (0..=4usize).prop_flat_map(good_attributes).prop_map(move |m| valid(object(m.clone()), m)),
        1 => good_attributes(MAX_ATTRIBUTES).prop_map(move |m| valid(object(m.clone()), m)),
    ];
    let one_bad_entry = (0..=3usize, any::<bool>()).prop_flat_map(move |(count, bad_key_too)| {
        let entry = if bad_key_too {
            (bad_key(count).boxed(), good_value().boxed())
        } else {
            (good_key(count).boxed(), bad_value().boxed())
        };
        (good_attributes(count), entry).prop_map(move |(mut map, (k, v))| {
            map.insert(k, v);
            invalid(object(map))
        })
    });
    let bad = prop_oneof![
        3 => one_bad_entry,
        1 => good_attributes(MAX_ATTRIBUTES + 1).prop_map(move |m| invalid(object(m))),
        1 => select(vec!["[]", r#""k""#, "1"]).prop_map(invalid),
    ];
    prop_oneof![VALID => good, INVALID => bad]
}

/// A key in any mix of upper and lower case.
pub fn any_case(key: &'static str) -> impl Strategy<Value = String> {
    proptest::collection::vec(any::<bool>(), key.len()).prop_map(move |upper| {
        key.chars()
            .zip(upper)
            .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

/// The fields in the decoder's order (the one its errors follow).
pub const FIELDS: [&str; 6] = [
    "id",
    "name",
    "price",
    "manufacturer",
    "description",
    "attributes",
];

/// A field given a second time: which one, and the key it is given as.
#[derive(Clone, Debug)]
pub struct Repeat {
    pub field: usize,
    pub key: String,
    /// Where in the message the repeat goes (modulo its length).
    pub at: usize,
}

/// A message and the contract's verdict on it.
#[derive(Clone, Debug)]
pub struct Edged {
    pub text: String,
    /// What `decode` must return when it accepts.
    pub expect: Result<ProductUpdate, Refusal>,
    pub repeat: Option<Repeat>,
    /// Kept for the coverage counts.
    pub price: Part<i64>,
}

/// Why the contract refuses a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    /// This field (the first bad one, in the decoder's order) is bad.
    Field(&'static str),
    /// This field is given twice.
    Repeated(&'static str),
}

pub fn edged() -> impl Strategy<Value = Edged> {
    let keys = (
        any_case("id"),
        any_case("name"),
        any_case("price"),
        any_case("manufacturer"),
        any_case("description"),
        any_case("attributes"),
    );
    let repeat = prop_oneof![
        20 => Just(None),
        1 => (0..FIELDS.len(), any::<usize>()).prop_map(|(field, at)| Some(Repeat {
            field,
            key: FIELDS[field].to_owned(),
            at,
        })),
        1 => (0..FIELDS.len(), any::<usize>(), any::<u64>()).prop_map(|(field, at, bits)| {
            // The same name in another case: at least one letter flipped.
            let key: String = FIELDS[field]
                .chars()
                .enumerate()
                .map(|(i, c)| if i == 0 || bits >> i & 1 == 1 { c.to_ascii_uppercase() } else { c })
                .collect();
            Some(Repeat { field, key, at })
        }),
    ];
    let unknown = proptest::collection::vec(
        (
            select(vec!["extra", "Extra", "idx", "names", "prices", ""]),
            select(vec!["1", r#""x""#, "null", "[1,{}]", r#"{"name":"b"}"#]),
        ),
        0..3,
    );
    (
        (id(), name(), price(), name(), description(), attributes()),
        keys,
        repeat,
        unknown,
    )
        .prop_map(
            |((id, name, price, manufacturer, description, attributes), keys, repeat, unknown)| {
                let texts = [
                    &id.json,
                    &name.json,
                    &price.json,
                    &manufacturer.json,
                    &description.json,
                    &attributes.json,
                ];
                let (k_id, k_name, k_price, k_manufacturer, k_description, k_attributes) = keys;
                let keys = [
                    k_id,
                    k_name,
                    k_price,
                    k_manufacturer,
                    k_description,
                    k_attributes,
                ];
                let mut entries: Vec<(String, String)> = keys
                    .iter()
                    .zip(texts)
                    .filter_map(|(key, text)| Some((key.clone(), text.clone()?)))
                    .collect();
                entries.extend(unknown.iter().map(|(k, v)| (k.to_string(), v.to_string())));
                // A repeat only counts when the field is there a first time.
                let repeat = repeat.filter(|r| texts[r.field].is_some());
                if let Some(r) = &repeat {
                    // Another value, valid on its own: the repeat alone is the fault.
                    let value = match r.field {
                        0 => "3",
                        2 => "4",
                        4 | 5 => "null",
                        _ => r#""again""#,
                    };
                    let at = r.at % (entries.len() + 1);
                    entries.insert(at, (r.key.clone(), value.to_owned()));
                }
                let body: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", json!(k)))
                    .collect();
                let text = format!("{{{}}}", body.join(","));

                let expect = match &repeat {
                    Some(r) => Err(Refusal::Repeated(FIELDS[r.field])),
                    None => {
                        let oks = [
                            id.expect.is_ok(),
                            name.expect.is_ok(),
                            price.expect.is_ok(),
                            manufacturer.expect.is_ok(),
                            description.expect.is_ok(),
                            attributes.expect.is_ok(),
                        ];
                        match oks.iter().position(|ok| !ok) {
                            Some(bad) => Err(Refusal::Field(FIELDS[bad])),
                            None => Ok(ProductUpdate::Upsert(Upsert {
                                id: id.expect.unwrap(),
                                name: name.expect.clone().unwrap(),
                                price: *price.expect.as_ref().unwrap(),
                                manufacturer: manufacturer.expect.clone().unwrap(),
                                description: description.expect.clone().unwrap(),
                                attributes: attributes.expect.clone().unwrap(),
                            })),
                        }
                    }
                };
                Edged {
                    text,
                    expect,
                    repeat,
                    price,
                }
            },
        )
}

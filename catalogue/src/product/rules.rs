//! Each field's rules: what a valid id, price, name, description and set of
//! attributes is, and what a person is told when one is not.

use super::error::DecodeError;
use super::{
    MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTE_VALUE_CHARS, MAX_ATTRIBUTES, MAX_DESCRIPTION_CHARS,
    MAX_ID, MAX_NAME_CHARS, MAX_PRICE,
};
use serde_json::{Map, Value};

pub(super) fn decode_id(value: Option<Value>) -> Result<Option<i64>, DecodeError> {
    let invalid = |problem: &str| DecodeError::Invalid {
        field: "id",
        problem: problem.to_owned(),
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_i64() {
            Some(0) => Ok(None),
            Some(id) if id > MAX_ID => {
                Err(invalid(&format!("must be at most {MAX_ID}, found {n}")))
            }
            Some(id) if id > 0 => Ok(Some(id)),
            Some(_) => Err(invalid(
                "must not be negative (0 or absent asks for a new id)",
            )),
            None if n.is_f64() => Err(invalid(&format!("must be a whole number, found {n}"))),
            None => Err(invalid(&format!("must be at most {}, found {n}", i64::MAX))),
        },
        Some(other) => Err(invalid(&format!(
            "must be a whole number, found {}",
            kind_of(&other)
        ))),
    }
}

pub(super) fn decode_price(value: Option<Value>) -> Result<i64, DecodeError> {
    let invalid = |problem: String| DecodeError::Invalid {
        field: "price",
        problem,
    };
    match value {
        None | Some(Value::Null) => Err(DecodeError::Missing { field: "price" }),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(price) if price <= MAX_PRICE => Ok(price as i64),
            Some(_) => Err(invalid(format!("must be at most {MAX_PRICE}, found {n}"))),
            None if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f < 0.0) => {
                Err(invalid(format!("must not be negative, found {n}")))
            }
            None => Err(invalid(format!(
                "must be a whole number of currency units, found {n}"
            ))),
        },
        Some(other) => Err(invalid(format!(
            "must be a number, found {}",
            kind_of(&other)
        ))),
    }
}

pub(super) fn decode_name(
    field: &'static str,
    value: Option<Value>,
) -> Result<String, DecodeError> {
    let invalid = |problem: String| DecodeError::Invalid { field, problem };
    match value {
        None | Some(Value::Null) => Err(DecodeError::Missing { field }),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.is_empty() {
                return Err(invalid("must not be empty".to_owned()));
            }
            check_length(s, MAX_NAME_CHARS).map_err(&invalid)?;
            if s.chars().any(char::is_control) {
                return Err(invalid("must not contain control characters".to_owned()));
            }
            Ok(s.to_owned())
        }
        Some(other) => Err(invalid(format!(
            "must be a string, found {}",
            kind_of(&other)
        ))),
    }
}

pub(super) fn decode_description(value: Option<Value>) -> Result<Option<String>, DecodeError> {
    let invalid = |problem: String| DecodeError::Invalid {
        field: "description",
        problem,
    };
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            check_length(s, MAX_DESCRIPTION_CHARS).map_err(&invalid)?;
            check_no_nul(s).map_err(&invalid)?;
            Ok((!s.is_empty()).then(|| s.to_owned()))
        }
        Some(other) => Err(invalid(format!(
            "must be a string, found {}",
            kind_of(&other)
        ))),
    }
}

pub(super) fn decode_attributes(value: Option<Value>) -> Result<Map<String, Value>, DecodeError> {
    let invalid = |problem: String| DecodeError::Invalid {
        field: "attributes",
        problem,
    };
    let attributes = match value {
        None | Some(Value::Null) => return Ok(Map::new()),
        Some(Value::Object(attributes)) => attributes,
        Some(other) => {
            return Err(invalid(format!(
                "must be an object, found {}",
                kind_of(&other)
            )));
        }
    };
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid(format!(
            "has {} keys, more than the {MAX_ATTRIBUTES} allowed",
            attributes.len()
        )));
    }
    for (key, value) in &attributes {
        if key.trim().is_empty() {
            return Err(invalid("has an empty key".to_owned()));
        }
        check_length(key, MAX_ATTRIBUTE_KEY_CHARS)
            .and_then(|()| check_no_nul(key))
            .map_err(|problem| invalid(format!("has a key that {problem}")))?;
        match value {
            Value::String(s) => check_length(s, MAX_ATTRIBUTE_VALUE_CHARS)
                .and_then(|()| check_no_nul(s))
                .map_err(|problem| invalid(format!("`{key}` {problem}")))?,
            Value::Number(_) | Value::Bool(_) => {}
            other => {
                return Err(invalid(format!(
                    "`{key}` must be a string, number or boolean, found {}",
                    kind_of(other)
                )));
            }
        }
    }
    Ok(attributes)
}

fn check_length(s: &str, max_chars: usize) -> Result<(), String> {
    let chars = s.chars().count();
    if chars > max_chars {
        return Err(format!(
            "is {chars} characters long, more than the {max_chars} allowed"
        ));
    }
    Ok(())
}

/// Postgres text cannot hold U+0000: a message with one would fail to store forever.
fn check_no_nul(s: &str) -> Result<(), String> {
    if s.contains('\0') {
        return Err("must not contain the NUL character (\\u0000)".to_owned());
    }
    Ok(())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

pub(super) fn decode_deleted(value: Option<Value>) -> Result<bool, DecodeError> {
    match value {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(deleted)) => Ok(deleted),
        Some(other) => Err(DecodeError::Invalid {
            field: "deleted",
            problem: format!("must be true or false, found {}", kind_of(&other)),
        }),
    }
}

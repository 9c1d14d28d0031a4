//! Why a message is not a product, for the log, the rejected messages and
//! the forms.

use super::{MAX_PAYLOAD_BYTES, OPERATOR_HEADER};

/// A problem with one field, for a form to show next to that field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// The field's lower-case name, as in [`super::FIELDS`].
    pub field: &'static str,
    /// What is wrong, for a person: "must not be empty".
    pub problem: String,
}

/// Why a message is not a product. Its `Display` is stored in `rejected_messages`
/// and logged, so it is written for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the payload is {len} bytes, more than the {MAX_PAYLOAD_BYTES} bytes allowed")]
    TooLarge { len: usize },
    #[error("the payload is empty")]
    Empty,
    #[error("the payload is not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("the payload is not valid JSON: {0}")]
    NotJson(String),
    #[error("expected a JSON object, found {0}")]
    NotAnObject(&'static str),
    #[error(
        "the field `{field}` is given more than once, as {first:?} and {second:?} (keys match case-insensitively, and each field may appear once)"
    )]
    Duplicate {
        field: &'static str,
        first: String,
        second: String,
    },
    #[error("the field `{field}` is missing")]
    Missing { field: &'static str },
    #[error("the field `{field}` {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
    /// The message's [`OPERATOR_HEADER`] is not an operator's name
    /// (see [`super::check_operator`]).
    #[error("the {OPERATOR_HEADER} header {problem}")]
    Operator { problem: String },
}

impl DecodeError {
    /// The field at fault and what is wrong with it, if one field is.
    pub fn field_problem(&self) -> Option<FieldProblem> {
        match self {
            DecodeError::Missing { field } => Some(FieldProblem {
                field,
                problem: "is required".to_owned(),
            }),
            DecodeError::Invalid { field, problem } => Some(FieldProblem {
                field,
                problem: problem.clone(),
            }),
            _ => None,
        }
    }
}

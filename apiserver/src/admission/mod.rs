//! Admission: what happens to an object between decoding and storage — defaulting,
//! validation, namespace lifecycle and Service IP/port allocation.

pub mod allocator;
pub mod defaults;
pub mod services;
pub mod validation;

use std::fmt;

/// One reason an object is invalid, reported as a `cause` of a 422 `Status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The field path, as upstream prints it: `spec.containers[0].image`, `metadata.labels`.
    pub field: String,
    pub kind: FieldErrorKind,
    /// Extra explanation; may be empty.
    pub detail: String,
}

/// Upstream's field error types; each maps to a `reason` of a Status cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    /// The offending value, already rendered for the message (strings quoted).
    Invalid(String),
    Duplicate(String),
    /// A reference to something that does not exist (rendered value).
    NotFound(String),
    /// The value and the supported values.
    NotSupported(String, Vec<String>),
    Forbidden,
    TooLong(usize),
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Required, detail: detail.into() }
    }
    /// An invalid string value; rendered quoted, as upstream does.
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Invalid(format!("{value:?}")), detail: detail.into() }
    }
    /// An invalid value already rendered (numbers, maps).
    pub fn invalid_raw(field: impl Into<String>, value: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Invalid(value.into()), detail: detail.into() }
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Forbidden, detail: detail.into() }
    }
    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self { field: field.into(), kind: FieldErrorKind::Duplicate(format!("{value:?}")), detail: String::new() }
    }
    pub fn not_supported(field: impl Into<String>, value: &str, valid: &[&str]) -> Self {
        Self {
            field: field.into(),
            kind: FieldErrorKind::NotSupported(format!("{value:?}"), valid.iter().map(|v| format!("{v:?}")).collect()),
            detail: String::new(),
        }
    }

    /// The `reason` of the Status cause (`FieldValueRequired`, …).
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid(_) => "FieldValueInvalid",
            FieldErrorKind::Duplicate(_) => "FieldValueDuplicate",
            FieldErrorKind::NotFound(_) => "FieldValueNotFound",
            FieldErrorKind::NotSupported(..) => "FieldValueNotSupported",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong(_) => "FieldValueTooLong",
        }
    }

    /// The cause's message without the field: `Required value`, `Invalid value: "x": detail`.
    pub fn message(&self) -> String {
        let head = match &self.kind {
            FieldErrorKind::Required => "Required value".to_string(),
            FieldErrorKind::Invalid(v) => format!("Invalid value: {v}"),
            FieldErrorKind::Duplicate(v) => format!("Duplicate value: {v}"),
            FieldErrorKind::NotFound(v) => format!("Not found: {v}"),
            FieldErrorKind::NotSupported(v, valid) => {
                format!("Unsupported value: {v}: supported values: {}", valid.join(", "))
            }
            FieldErrorKind::Forbidden => "Forbidden".to_string(),
            FieldErrorKind::TooLong(max) => format!("Too long: may not be more than {max} bytes"),
        };
        if self.detail.is_empty() { head } else { format!("{head}: {}", self.detail) }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

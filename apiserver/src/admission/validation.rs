//! Upstream-like validation of the built-in kinds: every problem becomes a [`FieldError`] with
//! the field path and message upstream prints, so `kubectl` users see familiar errors.
//!
//! [`validate`] checks the metadata every object has, then the rules of the object's kind; on
//! update it also gets the stored object and checks what may not change. Objects are decoded
//! into their k8s-openapi types; the few checks the typed form cannot answer (whether
//! `spec.selector` was sent at all) look at the JSON.
//!
//! The rules live in one file per area: [`metadata`], [`pod`] (also used for pod templates),
//! [`workloads`] (apps/v1, batch/v1 and ReplicationControllers), [`service`], [`config`]
//! (ConfigMaps and Secrets). [`render`] prints values the way Go's `%#v` does, as upstream's
//! messages show them.

mod config;
mod cron;
mod metadata;
mod pod;
mod render;
mod service;
mod workloads;

use std::collections::BTreeMap;
use std::fmt;

use api_types::k8s_openapi::api::core::v1 as core;
use api_types::names;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::{FieldError, FieldErrorKind};

/// Upstream's message for a field that may not change.
const FIELD_IMMUTABLE: &str = "field is immutable";
/// Upstream's message for a negative count.
const IS_NEGATIVE: &str = "must be greater than or equal to 0";

/// Validates `obj`, an object of the built-in `kind` in API `group` (`""` for core), as upstream
/// does on create (`old` is `None`) or update (`old` is the stored object). Returns every
/// problem found; an empty list means the object is valid.
///
/// Whether a namespaced object has a namespace is left to the caller, as are Service node-port
/// ranges (the allocator's job).
pub fn validate(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = metadata::validate_metadata(group, kind, obj, old);
    let kind_errs = match (group, kind) {
        ("", "Pod") => pod::validate_pod(obj, old),
        ("", "Service") => service::validate_service(obj, old),
        ("", "ConfigMap") => config::validate_config_map(obj, old),
        ("", "Secret") => config::validate_secret(obj, old),
        ("", "Namespace") => validate_namespace(obj),
        ("", "LimitRange") => validate_limit_range(obj),
        ("", "ReplicationController") => workloads::validate_replication_controller(obj),
        ("apps", "Deployment") => workloads::validate_deployment(obj, old),
        ("apps", "ReplicaSet") => workloads::validate_replica_set(obj, old),
        ("apps", "StatefulSet") => workloads::validate_stateful_set(obj, old),
        ("apps", "DaemonSet") => workloads::validate_daemon_set(obj, old),
        ("batch", "Job") => workloads::validate_job(obj, old),
        ("batch", "CronJob") => workloads::validate_cron_job(obj),
        _ => Vec::new(),
    };
    errs.extend(kind_errs);
    errs
}

/// A Namespace's `spec.finalizers` must be qualified names, or one of the standard ones.
fn validate_namespace(obj: &Value) -> Vec<FieldError> {
    let spec: core::NamespaceSpec = match decode(obj, "spec") {
        Ok(spec) => spec,
        Err(e) => return vec![e],
    };
    let path = Path::new("spec").child("finalizers");
    let mut errs = Vec::new();
    for finalizer in spec.finalizers.iter().flatten() {
        errs.extend(metadata::finalizer_name(&path, finalizer));
        let standard = ["kubernetes", "orphan", "foregroundDeletion"];
        if !finalizer.contains('/') && !standard.contains(&finalizer.as_str()) {
            errs.push(FieldError::invalid(
                &path,
                finalizer,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
    errs
}

/// A LimitRange's quantities must parse and not be negative (LimitRanger admission skips any
/// that do not).
fn validate_limit_range(obj: &Value) -> Vec<FieldError> {
    let items = obj.pointer("/spec/limits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let mut errs = Vec::new();
    for (i, item) in items.iter().enumerate() {
        for field in ["max", "min", "default", "defaultRequest", "maxLimitRequestRatio"] {
            let path = Path::new("spec").child("limits").index(i).child(field);
            for (name, value) in item.get(field).and_then(Value::as_object).into_iter().flatten() {
                let text = value.as_str().unwrap_or_default();
                match api_types::quantity::parse_quantity(text.trim()) {
                    Err(e) => errs.push(FieldError::invalid(path.key(name), text, e.to_string())),
                    Ok(q) if q.nanos() < 0 => {
                        errs.push(FieldError::invalid(path.key(name), &q.to_string(), IS_NEGATIVE))
                    }
                    Ok(_) => {}
                }
            }
        }
    }
    errs
}

// ---- shared plumbing ------------------------------------------------------------------------

/// A field path printed as upstream prints it: `spec.containers[0].ports[1].name`,
/// `metadata.labels[app]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Path(String);

impl Path {
    fn new(root: &str) -> Self {
        Self(root.to_string())
    }

    fn child(&self, name: &str) -> Self {
        if self.0.is_empty() { Self(name.to_string()) } else { Self(format!("{}.{name}", self.0)) }
    }

    fn index(&self, i: usize) -> Self {
        Self(format!("{}[{i}]", self.0))
    }

    fn key(&self, key: &str) -> Self {
        Self(format!("{}[{key}]", self.0))
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> Self {
        p.0.clone()
    }
}

impl From<Path> for String {
    fn from(p: Path) -> Self {
        p.0
    }
}

/// Decodes `obj[key]` (the whole object when `key` is empty; `{}` when missing or null) as `T`.
/// A part that does not decode is reported as one error at its path.
fn decode<T: DeserializeOwned>(obj: &Value, key: &str) -> Result<T, FieldError> {
    let empty = Value::Object(serde_json::Map::new());
    let part = if key.is_empty() { obj } else { obj.get(key).filter(|v| !v.is_null()).unwrap_or(&empty) };
    T::deserialize(part).map_err(|e| {
        let path = if key.is_empty() { "<root>" } else { key };
        FieldError::invalid_raw(path, "", format!("cannot be decoded: {e}"))
    })
}

/// An error rendered with an already-rendered value, e.g. a Go `%#v` string.
fn invalid_rendered(path: &Path, value: String, detail: &str) -> FieldError {
    FieldError::invalid_raw(path, value, detail)
}

/// A reference to something that does not exist (upstream's `field.NotFound`).
///
/// `FieldErrorKind` has no `NotFound` variant, so this is reported as an invalid value whose
/// detail says "not found".
fn not_found(path: &Path, value: &str) -> FieldError {
    FieldError { field: path.into(), kind: FieldErrorKind::NotFound(format!("{value:?}")), detail: String::new() }
}

fn too_long(path: &Path, max: usize) -> FieldError {
    FieldError { field: path.into(), kind: FieldErrorKind::TooLong(max), detail: String::new() }
}

fn immutable_str(path: &Path, new: &str, old: &str) -> Option<FieldError> {
    (new != old).then(|| FieldError::invalid(path, new, FIELD_IMMUTABLE))
}

fn non_negative(path: &Path, value: Option<i64>) -> Option<FieldError> {
    value.filter(|v| *v < 0).map(|v| FieldError::invalid_raw(path, v.to_string(), IS_NEGATIVE))
}

/// A required string with a fixed set of values: `Required value` when empty, else
/// `Unsupported value: ...: supported values: ...`.
fn supported_value(path: &Path, value: Option<&str>, valid: &[&str]) -> Option<FieldError> {
    match value.unwrap_or("") {
        "" => Some(FieldError::required(path, "")),
        v if valid.contains(&v) => None,
        v => Some(FieldError::not_supported(path, v, valid)),
    }
}

/// Like [`supported_value`] for optional fields: nothing to say when unset.
fn optional_supported_value(path: &Path, value: Option<&str>, valid: &[&str]) -> Option<FieldError> {
    value.filter(|v| !v.is_empty()).and_then(|v| supported_value(path, Some(v), valid))
}

/// Each message of a name check as an invalid value at `path`.
fn name_errors(path: &Path, value: &str, messages: Vec<String>) -> impl Iterator<Item = FieldError> {
    let path = path.clone();
    let value = value.to_string();
    messages.into_iter().map(move |msg| FieldError::invalid(&path, &value, msg))
}

/// Label keys must be qualified names and values valid label values; both are reported at the
/// map's path, as upstream does.
fn validate_labels(path: &Path, labels: Option<&BTreeMap<String, String>>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (key, value) in labels.into_iter().flatten() {
        errs.extend(name_errors(path, key, names::is_qualified_name(key)));
        errs.extend(name_errors(path, value, names::is_valid_label_value(value)));
    }
    errs
}

/// Port numbers: 1–65535.
fn port_number(path: &Path, port: i32) -> Option<FieldError> {
    (!(1..=65535).contains(&port))
        .then(|| FieldError::invalid_raw(path, port.to_string(), "must be between 1 and 65535, inclusive"))
}

/// Upstream's `IsValidPortName`: an IANA service name.
fn port_name_messages(name: &str) -> Vec<String> {
    let mut msgs = Vec::new();
    if name.len() > 15 {
        msgs.push("must be no more than 15 characters".to_string());
    }
    if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') || name.is_empty() {
        msgs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string());
    } else if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        msgs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.contains("--") {
        msgs.push("must not contain consecutive hyphens".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        msgs.push("must not begin or end with a hyphen".to_string());
    }
    msgs
}

/// The protocols of container and service ports.
fn port_protocol(path: &Path, protocol: Option<&str>) -> Option<FieldError> {
    supported_value(path, protocol, &["SCTP", "TCP", "UDP"])
}

#[cfg(test)]
mod tests;

//! ConfigMap and Secret rules: key format, total size, the keys each Secret type needs, and
//! that `immutable` objects (and a Secret's type) do not change.

use std::collections::BTreeMap;

use api_types::k8s_openapi::ByteString;
use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;

use super::{FIELD_IMMUTABLE, FieldError, Path, decode, too_long};

/// The most data a ConfigMap or Secret may hold.
const MAX_SIZE: usize = 1024 * 1024;
const MAX_KEY_LENGTH: usize = 253;
const KEY_MESSAGE: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
const IMMUTABLE_SET: &str = "field is immutable when `immutable` is set";
const REDACTED: &str = "<secret contents redacted>";

pub(super) fn validate_config_map(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let text = string_map(obj, "data", &mut errs);
    let binary = binary_map(obj, "binaryData", &mut errs);
    for key in text.keys() {
        errs.extend(config_key(&Path::new("data").key(key), key));
        if binary.contains_key(key) {
            errs.push(FieldError::invalid(Path::new("data").key(key), key, "duplicate of key present in binaryData"));
        }
    }
    for key in binary.keys() {
        errs.extend(config_key(&Path::new("binaryData").key(key), key));
        if text.contains_key(key) {
            errs.push(FieldError::invalid(Path::new("binaryData").key(key), key, "duplicate of key present in data"));
        }
    }
    let size: usize = text.values().map(String::len).sum::<usize>() + binary.values().map(Vec::len).sum::<usize>();
    if size > MAX_SIZE {
        errs.push(too_long(&Path::new(""), MAX_SIZE));
    }
    if let Some(old) = old {
        let mut ignored = Vec::new();
        if is_immutable(old) {
            if !is_immutable(obj) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
            }
            if text != string_map(old, "data", &mut ignored) {
                errs.push(FieldError::forbidden("data", IMMUTABLE_SET));
            }
            if binary != binary_map(old, "binaryData", &mut ignored) {
                errs.push(FieldError::forbidden("binaryData", IMMUTABLE_SET));
            }
        }
    }
    errs
}

pub(super) fn validate_secret(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let data = binary_map(obj, "data", &mut errs);
    let string_data = string_map(obj, "stringData", &mut errs);
    let data_path = Path::new("data");
    for key in data.keys() {
        errs.extend(config_key(&data_path.key(key), key));
    }
    for key in string_data.keys() {
        errs.extend(config_key(&Path::new("stringData").key(key), key));
    }
    let size: usize = data.values().map(Vec::len).sum::<usize>() + string_data.values().map(String::len).sum::<usize>();
    if size > MAX_SIZE {
        errs.push(too_long(&data_path, MAX_SIZE));
    }

    // stringData is merged into data before upstream validates, so both count as present.
    let has = |key: &str| data.contains_key(key) || string_data.contains_key(key);
    let value = |key: &str| -> Option<Vec<u8>> {
        string_data.get(key).map(|s| s.clone().into_bytes()).or_else(|| data.get(key).cloned())
    };
    match secret_type(obj).as_str() {
        "kubernetes.io/service-account-token" => {
            let meta: ObjectMeta = decode(obj, "metadata").unwrap_or_default();
            let name_key = "kubernetes.io/service-account.name";
            let named = meta.annotations.as_ref().and_then(|a| a.get(name_key)).is_some_and(|n| !n.is_empty());
            if !named {
                errs.push(FieldError::required(Path::new("metadata").child("annotations").key(name_key), ""));
            }
        }
        "kubernetes.io/dockercfg" => errs.extend(json_key(".dockercfg", value(".dockercfg"), &data_path)),
        "kubernetes.io/dockerconfigjson" => {
            errs.extend(json_key(".dockerconfigjson", value(".dockerconfigjson"), &data_path));
        }
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            errs.push(FieldError::required(data_path.key("username"), ""));
            errs.push(FieldError::required(data_path.key("password"), ""));
        }
        "kubernetes.io/ssh-auth" if value("ssh-privatekey").is_none_or(|v| v.is_empty()) => {
            errs.push(FieldError::required(data_path.key("ssh-privatekey"), ""));
        }
        "kubernetes.io/tls" => {
            for key in ["tls.crt", "tls.key"] {
                if !has(key) {
                    errs.push(FieldError::required(data_path.key(key), ""));
                }
            }
        }
        _ => {}
    }

    if let Some(old) = old {
        let (new_type, old_type) = (secret_type(obj), secret_type(old));
        if new_type != old_type {
            errs.push(FieldError::invalid("type", &new_type, FIELD_IMMUTABLE));
        }
        if is_immutable(old) {
            if !is_immutable(obj) {
                errs.push(FieldError::forbidden("immutable", IMMUTABLE_SET));
            }
            let mut ignored = Vec::new();
            if data != binary_map(old, "data", &mut ignored) {
                errs.push(FieldError::forbidden("data", IMMUTABLE_SET));
            }
        }
    }
    errs
}

/// Upstream's `IsConfigMapKey`.
fn config_key(path: &Path, key: &str) -> Vec<FieldError> {
    let mut msgs = Vec::new();
    if key.len() > MAX_KEY_LENGTH {
        msgs.push(format!("must be no more than {MAX_KEY_LENGTH} characters"));
    }
    let valid_chars = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_');
    if key.is_empty() || !key.bytes().all(valid_chars) {
        msgs.push(KEY_MESSAGE.to_string());
    }
    match key {
        "." => msgs.push("must not be '.'".to_string()),
        ".." => msgs.push("must not be '..'".to_string()),
        k if k.starts_with("..") => msgs.push("must not start with '..'".to_string()),
        _ => {}
    }
    msgs.into_iter().map(|msg| FieldError::invalid(path, key, msg)).collect()
}

/// A key that must hold JSON.
fn json_key(key: &str, value: Option<Vec<u8>>, data_path: &Path) -> Option<FieldError> {
    let path = data_path.key(key);
    match value {
        None => Some(FieldError::required(path, "")),
        Some(bytes) => {
            serde_json::from_slice::<Value>(&bytes).err().map(|e| FieldError::invalid(path, REDACTED, e.to_string()))
        }
    }
}

fn secret_type(obj: &Value) -> String {
    obj.get("type").and_then(Value::as_str).unwrap_or("").to_string()
}

fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool).unwrap_or(false)
}

/// `obj[key]` as a map of strings; values of another type are reported.
fn string_map(obj: &Value, key: &str, errs: &mut Vec<FieldError>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (k, v) in obj.get(key).and_then(Value::as_object).into_iter().flatten() {
        match v.as_str() {
            Some(s) => {
                out.insert(k.clone(), s.to_string());
            }
            None => errs.push(FieldError::invalid_raw(Path::new(key).key(k), v.to_string(), "must be a string")),
        }
    }
    out
}

/// `obj[key]` as a map of base64-decoded bytes; values that do not decode are reported.
fn binary_map(obj: &Value, key: &str, errs: &mut Vec<FieldError>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for (k, v) in obj.get(key).and_then(Value::as_object).into_iter().flatten() {
        match ByteString::deserialize(v) {
            Ok(bytes) => {
                out.insert(k.clone(), bytes.0);
            }
            Err(e) => errs.push(FieldError::invalid(Path::new(key).key(k), REDACTED, e.to_string())),
        }
    }
    out
}

#[cfg(test)]
mod tests;

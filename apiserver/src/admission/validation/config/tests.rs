//! Tests for ConfigMap and Secret rules.

use serde_json::{Value, json};

use super::super::tests::errors_after_defaults;

const KEY_ERROR: &str = "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";

fn config_map(fields: Value) -> Value {
    let mut cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "default"}});
    for (k, v) in fields.as_object().into_iter().flatten() {
        cm[k] = v.clone();
    }
    cm
}

fn secret(fields: Value) -> Value {
    let mut s = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "default"}});
    for (k, v) in fields.as_object().into_iter().flatten() {
        s[k] = v.clone();
    }
    s
}

#[test]
fn config_map_rules() {
    let big = "x".repeat(1024 * 1024);
    // (what, fields, expected messages)
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        (
            "valid",
            json!({"data": {"app.properties": "a=b", "KEY_1": "v"}, "binaryData": {"logo.png": "iVBORw0K"}}),
            vec![],
        ),
        ("keys", json!({"data": {"a b": "v"}}), vec![format!("data[a b]: Invalid value: \"a b\": {KEY_ERROR}")]),
        (
            "keys are not dot-dot",
            json!({"data": {"..data": "v"}}),
            vec!["data[..data]: Invalid value: \"..data\": must not start with '..'".into()],
        ),
        (
            "binary keys",
            json!({"binaryData": {"a/b": "AA=="}}),
            vec![format!("binaryData[a/b]: Invalid value: \"a/b\": {KEY_ERROR}")],
        ),
        (
            "keys are in one map",
            json!({"data": {"k": "v"}, "binaryData": {"k": "AA=="}}),
            vec![
                "data[k]: Invalid value: \"k\": duplicate of key present in binaryData".into(),
                "binaryData[k]: Invalid value: \"k\": duplicate of key present in data".into(),
            ],
        ),
        (
            "at most 1 MiB",
            json!({"data": {"a": big, "b": "x"}}),
            vec![": Too long: may not be more than 1048576 bytes".into()],
        ),
    ];
    for (what, fields, want) in cases {
        assert_eq!(errors_after_defaults("", "ConfigMap", &config_map(fields), None), want, "{what}");
    }
}

#[test]
fn immutable_config_maps_keep_their_data() {
    let old = config_map(json!({"immutable": true, "data": {"k": "v"}}));
    // (what, new fields, expected messages)
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "labels may change",
            json!({"immutable": true, "data": {"k": "v"}, "metadata": {"name": "c", "namespace": "default", "labels": {"a": "b"}}}),
            vec![],
        ),
        (
            "data may not",
            json!({"immutable": true, "data": {"k": "w"}}),
            vec!["data: Forbidden: field is immutable when `immutable` is set"],
        ),
        (
            "nor immutability",
            json!({"immutable": false, "data": {"k": "v"}}),
            vec!["immutable: Forbidden: field is immutable when `immutable` is set"],
        ),
    ];
    for (what, fields, want) in cases {
        assert_eq!(errors_after_defaults("", "ConfigMap", &config_map(fields), Some(&old)), want, "{what}");
    }
    let mutable = config_map(json!({"data": {"k": "v"}}));
    let changed = config_map(json!({"data": {"k": "w"}}));
    assert_eq!(errors_after_defaults("", "ConfigMap", &changed, Some(&mutable)), Vec::<String>::new());
}

#[test]
fn secret_rules() {
    // (what, fields, expected messages)
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        ("valid opaque", json!({"data": {"password": "czNjcjN0"}}), vec![]),
        ("string data counts", json!({"stringData": {"password": "s3cr3t"}}), vec![]),
        ("keys", json!({"data": {"pass word": "eA=="}}), vec![format!("data[pass word]: Invalid value: \"pass word\": {KEY_ERROR}")]),
        ("string data keys", json!({"stringData": {"a:b": "x"}}), vec![format!("stringData[a:b]: Invalid value: \"a:b\": {KEY_ERROR}")]),
        ("tls needs both halves", json!({"type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}}), vec!["data[tls.key]: Required value".into()]),
        (
            "basic auth needs a username or password",
            json!({"type": "kubernetes.io/basic-auth", "data": {}}),
            vec!["data[username]: Required value".into(), "data[password]: Required value".into()],
        ),
        ("basic auth with a password", json!({"type": "kubernetes.io/basic-auth", "stringData": {"password": "x"}}), vec![]),
        ("ssh needs a key", json!({"type": "kubernetes.io/ssh-auth"}), vec!["data[ssh-privatekey]: Required value".into()]),
        (
            "docker config is JSON",
            json!({"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{"}}),
            vec!["data[.dockerconfigjson]: Invalid value: \"<secret contents redacted>\": EOF while parsing an object at line 1 column 1".into()],
        ),
        (
            "service account tokens name their account",
            json!({"type": "kubernetes.io/service-account-token"}),
            vec!["metadata.annotations[kubernetes.io/service-account.name]: Required value".into()],
        ),
        ("at most 1 MiB", json!({"stringData": {"a": "x".repeat(1024 * 1024 + 1)}}), vec!["data: Too long: may not be more than 1048576 bytes".into()]),
    ];
    for (what, fields, want) in cases {
        assert_eq!(errors_after_defaults("", "Secret", &secret(fields), None), want, "{what}");
    }
}

#[test]
fn secret_updates() {
    // (what, old fields, new fields, expected messages)
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        ("data may change", json!({"data": {"k": "eA=="}}), json!({"data": {"k": "eQ=="}}), vec![]),
        (
            "types are fixed",
            json!({"data": {"k": "eA=="}}),
            json!({"type": "example.com/custom", "data": {"k": "eA=="}}),
            vec!["type: Invalid value: \"example.com/custom\": field is immutable"],
        ),
        (
            "immutable data is fixed",
            json!({"immutable": true, "data": {"k": "eA=="}}),
            json!({"immutable": true, "data": {"k": "eQ=="}}),
            vec!["data: Forbidden: field is immutable when `immutable` is set"],
        ),
    ];
    for (what, old, new, want) in cases {
        assert_eq!(errors_after_defaults("", "Secret", &secret(new), Some(&secret(old))), want, "{what}");
    }
}

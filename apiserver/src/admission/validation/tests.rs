//! Tests for the validation entry point, and helpers the per-area tests share.

use serde_json::{Value, json};

use super::{Path, validate};
use crate::admission::defaults::apply_defaults;

/// `obj` (and `old`) defaulted as the API server would, then validated; the errors as
/// upstream prints them (`field: message`).
pub(super) fn errors_after_defaults(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<String> {
    let default = |v: &Value| {
        let mut v = v.clone();
        apply_defaults(group, kind, &mut v).expect("test objects decode");
        v
    };
    let old = old.map(default);
    validate(group, kind, &default(obj), old.as_ref()).iter().map(ToString::to_string).collect()
}

/// `base` with `patch` merged in (objects merged key by key, `null` deleting, anything else
/// replacing), as a JSON merge patch does.
pub(super) fn merged(base: &Value, patch: &Value) -> Value {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            let mut out = b.clone();
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged_value = merged(b.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged_value);
                }
            }
            Value::Object(out)
        }
        _ => patch.clone(),
    }
}

pub(super) const DNS1123_LABEL_ERROR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

#[test]
fn paths_print_like_upstream() {
    let p = Path::new("spec").child("containers").index(0).child("resources").child("limits").key("cpu");
    assert_eq!(p.to_string(), "spec.containers[0].resources.limits[cpu]");
    assert_eq!(Path::new("").child("data").to_string(), "data");
}

#[test]
fn namespace_rules() {
    // (what, namespace, expected messages)
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        ("defaulted namespace is valid", json!({"metadata": {"name": "team-a"}}), vec![]),
        ("names are DNS labels", json!({"metadata": {"name": "Team"}}), vec![format!("metadata.name: Invalid value: \"Team\": {DNS1123_LABEL_ERROR}")]),
        ("qualified finalizers are fine", json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["example.com/x"]}}), vec![]),
        (
            "unqualified finalizers must be standard",
            json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["custom"]}}),
            vec!["spec.finalizers: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified".to_string()],
        ),
    ];
    for (what, ns, want) in cases {
        assert_eq!(errors_after_defaults("", "Namespace", &ns, None), want, "{what}");
    }
}

#[test]
fn kinds_without_rules_get_metadata_checks_only() {
    let cases = [
        ("", "Node", json!({"metadata": {"name": "node-1.example.com"}, "spec": {"podCIDR": "garbage"}}), vec![]),
        ("coordination.k8s.io", "Lease", json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "x"}}), vec![]),
        ("", "Event", json!({"metadata": {}}), vec!["metadata.name: Required value: name or generateName is required"]),
    ];
    for (group, kind, obj, want) in cases {
        assert_eq!(errors_after_defaults(group, kind, &obj, None), want, "{kind}");
    }
}

#[test]
fn undecodable_parts_are_reported_not_panicked_on() {
    let errs = validate("", "Pod", &json!({"metadata": {"name": "p"}, "spec": {"containers": 5}}), None);
    assert_eq!(errs.len(), 1);
    assert_eq!(errs[0].field, "spec");
    let errs = validate("", "ConfigMap", &json!({"metadata": {"name": 5}}), None);
    assert_eq!(errs[0].field, "metadata");
}

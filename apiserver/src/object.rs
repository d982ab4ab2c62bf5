//! Objects as the server handles them: JSON values with Kubernetes metadata, their etcd keys,
//! their stored encoding (resourceVersion left out: the etcd revision is the truth) and the
//! values field selectors look at.

use std::collections::BTreeMap;

use api_types::registry::ResourceInfo;
use serde_json::Value;

/// Where objects of `resource` live: `<prefix>/<group or core>/<plural>/`.
pub fn resource_prefix(root: &str, resource: &ResourceInfo) -> String {
    let group = if resource.group.is_empty() { "core" } else { resource.group };
    format!("{root}/{group}/{}/", resource.plural)
}

/// The prefix of a list: every object of the resource, or those of one namespace.
pub fn list_prefix(root: &str, resource: &ResourceInfo, namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if resource.namespaced => format!("{}{ns}/", resource_prefix(root, resource)),
        _ => resource_prefix(root, resource),
    }
}

/// The key of one object.
pub fn key(root: &str, resource: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
    format!("{}{name}", list_prefix(root, resource, namespace))
}

pub fn metadata(obj: &Value) -> &Value {
    &obj["metadata"]
}

pub fn str_at<'a>(obj: &'a Value, pointer: &str) -> Option<&'a str> {
    obj.pointer(pointer).and_then(Value::as_str)
}

pub fn name(obj: &Value) -> &str {
    str_at(obj, "/metadata/name").unwrap_or_default()
}

pub fn namespace(obj: &Value) -> Option<&str> {
    str_at(obj, "/metadata/namespace").filter(|ns| !ns.is_empty())
}

pub fn labels(obj: &Value) -> BTreeMap<String, String> {
    match obj.pointer("/metadata/labels") {
        Some(Value::Object(m)) => {
            m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string()))).collect()
        }
        _ => BTreeMap::new(),
    }
}

/// The object's metadata as a mutable map, created if missing.
pub fn metadata_mut(obj: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !obj["metadata"].is_object() {
        obj["metadata"] = Value::Object(Default::default());
    }
    match &mut obj["metadata"] {
        Value::Object(m) => m,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn set_resource_version(obj: &mut Value, revision: i64) {
    metadata_mut(obj).insert("resourceVersion".into(), Value::String(revision.to_string()));
}

/// The resourceVersion an object carries, if any (`""` counts as none).
pub fn resource_version(obj: &Value) -> Option<&str> {
    str_at(obj, "/metadata/resourceVersion").filter(|v| !v.is_empty())
}

/// The bytes stored in etcd: the object without its resourceVersion.
pub fn encode_for_storage(obj: &Value) -> Vec<u8> {
    if obj.pointer("/metadata/resourceVersion").is_none() {
        return serde_json::to_vec(obj).unwrap_or_default();
    }
    serde_json::to_vec(&WithoutResourceVersion(obj)).unwrap_or_default()
}

/// An object serialized without `metadata.resourceVersion`, without copying it to drop the field.
struct WithoutResourceVersion<'a>(&'a Value);

/// A JSON object serialized without one of its fields.
struct Without<'a>(&'a Value, &'a str);

impl serde::Serialize for WithoutResourceVersion<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.0 else { return self.0.serialize(s) };
        let mut map = s.serialize_map(Some(fields.len()))?;
        for (k, v) in fields {
            match k.as_str() {
                "metadata" => map.serialize_entry(k, &Without(v, "resourceVersion"))?,
                _ => map.serialize_entry(k, v)?,
            }
        }
        map.end()
    }
}

impl serde::Serialize for Without<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let Value::Object(fields) = self.0 else { return self.0.serialize(s) };
        let mut map = s.serialize_map(None)?;
        for (k, v) in fields.iter().filter(|(k, _)| *k != self.1) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Stored bytes with `"resourceVersion":"<revision>"` spliced into the top-level metadata, so a
/// reader gets the served encoding without re-serializing the object. None when the bytes have
/// no top-level `metadata` object.
pub fn with_resource_version(stored: &[u8], revision: i64) -> Option<Vec<u8>> {
    let at = top_level_object_start(stored, b"metadata")?;
    let rest = stored[at..].iter().position(|b| !b.is_ascii_whitespace()).map(|i| stored[at + i]);
    let field = format!("\"resourceVersion\":\"{revision}\"{}", if rest == Some(b'}') { "" } else { "," });
    let mut out = Vec::with_capacity(stored.len() + field.len());
    out.extend_from_slice(&stored[..at]);
    out.extend_from_slice(field.as_bytes());
    out.extend_from_slice(&stored[at..]);
    Some(out)
}

/// The index just after the `{` that opens the value of top-level key `key`, if that value is an
/// object. Tracks nesting and strings, so nested keys of the same name are not confused with it.
fn top_level_object_start(json: &[u8], key: &[u8]) -> Option<usize> {
    let (mut depth, mut i) = (0usize, 0usize);
    while i < json.len() {
        match json[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < json.len() && json[i] != b'"' {
                    i += if json[i] == b'\\' { 2 } else { 1 };
                }
                let end = i.min(json.len());
                i += 1;
                if depth == 1 && &json[start..end] == key {
                    let mut j = i;
                    while j < json.len() && json[j].is_ascii_whitespace() {
                        j += 1;
                    }
                    if json.get(j) == Some(&b':') {
                        j += 1;
                        while j < json.len() && json[j].is_ascii_whitespace() {
                            j += 1;
                        }
                        return (json.get(j) == Some(&b'{')).then_some(j + 1);
                    }
                }
                continue;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// An object read back from etcd, with its resourceVersion set from the key's mod_revision.
pub fn decode_from_storage(bytes: &[u8], mod_revision: i64) -> Result<Value, serde_json::Error> {
    let mut obj: Value = serde_json::from_slice(bytes)?;
    set_resource_version(&mut obj, mod_revision);
    Ok(obj)
}

/// The fields a field selector may name for `resource`, each with its JSON pointer.
pub fn selectable_fields(resource: &ResourceInfo) -> &'static [(&'static str, &'static str)] {
    const META: &[(&str, &str)] = &[("metadata.name", "/metadata/name"), ("metadata.namespace", "/metadata/namespace")];
    match (resource.group, resource.plural) {
        ("", "pods") => &[
            ("metadata.name", "/metadata/name"),
            ("metadata.namespace", "/metadata/namespace"),
            ("spec.nodeName", "/spec/nodeName"),
            ("spec.restartPolicy", "/spec/restartPolicy"),
            ("spec.schedulerName", "/spec/schedulerName"),
            ("spec.serviceAccountName", "/spec/serviceAccountName"),
            ("spec.hostNetwork", "/spec/hostNetwork"),
            ("status.phase", "/status/phase"),
            ("status.podIP", "/status/podIP"),
            ("status.nominatedNodeName", "/status/nominatedNodeName"),
        ],
        ("", "events") => &[
            ("metadata.name", "/metadata/name"),
            ("metadata.namespace", "/metadata/namespace"),
            ("involvedObject.kind", "/involvedObject/kind"),
            ("involvedObject.namespace", "/involvedObject/namespace"),
            ("involvedObject.name", "/involvedObject/name"),
            ("involvedObject.uid", "/involvedObject/uid"),
            ("involvedObject.apiVersion", "/involvedObject/apiVersion"),
            ("involvedObject.resourceVersion", "/involvedObject/resourceVersion"),
            ("involvedObject.fieldPath", "/involvedObject/fieldPath"),
            ("reason", "/reason"),
            ("reportingComponent", "/reportingComponent"),
            ("source", "/source/component"),
            ("type", "/type"),
        ],
        ("", "secrets") => {
            &[("metadata.name", "/metadata/name"), ("metadata.namespace", "/metadata/namespace"), ("type", "/type")]
        }
        ("", "nodes") => &[("metadata.name", "/metadata/name"), ("spec.unschedulable", "/spec/unschedulable")],
        ("", "namespaces") => &[("metadata.name", "/metadata/name"), ("status.phase", "/status/phase")],
        ("", "services") => &[
            ("metadata.name", "/metadata/name"),
            ("metadata.namespace", "/metadata/namespace"),
            ("spec.clusterIP", "/spec/clusterIP"),
            ("spec.type", "/spec/type"),
        ],
        ("", "replicationcontrollers") | ("apps", "replicasets") => &[
            ("metadata.name", "/metadata/name"),
            ("metadata.namespace", "/metadata/namespace"),
            ("status.replicas", "/status/replicas"),
        ],
        ("batch", "jobs") => &[
            ("metadata.name", "/metadata/name"),
            ("metadata.namespace", "/metadata/namespace"),
            ("status.successful", "/status/succeeded"),
        ],
        ("certificates.k8s.io", "certificatesigningrequests") => {
            &[("metadata.name", "/metadata/name"), ("spec.signerName", "/spec/signerName")]
        }
        _ => META,
    }
}

/// The value a field selector compares for `field`, as a string (`""` when absent, as
/// upstream's field sets do; booleans and numbers as they print).
pub fn field_value(resource: &ResourceInfo, obj: &Value, field: &str) -> Option<String> {
    let (_, pointer) = selectable_fields(resource).iter().find(|(f, _)| *f == field)?;
    Some(match obj.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        _ if field == "spec.unschedulable" || field == "spec.hostNetwork" => "false".into(),
        _ => String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::registry::by_plural;
    use serde_json::json;

    #[test]
    fn keys_separate_namespaces_and_groups() {
        let pods = by_plural("", "v1", "pods").expect("pods");
        let nodes = by_plural("", "v1", "nodes").expect("nodes");
        let deploys = by_plural("apps", "v1", "deployments").expect("deployments");
        assert_eq!(key("/registry", pods, Some("default"), "web"), "/registry/core/pods/default/web");
        assert_eq!(list_prefix("/registry", pods, None), "/registry/core/pods/");
        assert_eq!(key("/registry", nodes, Some("ignored"), "n1"), "/registry/core/nodes/n1");
        assert_eq!(list_prefix("/registry", deploys, Some("a")), "/registry/apps/deployments/a/");
    }

    #[test]
    fn storage_round_trip_takes_the_revision_from_etcd() {
        let obj = json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = encode_for_storage(&obj);
        assert!(!String::from_utf8_lossy(&bytes).contains("resourceVersion"));
        let back = decode_from_storage(&bytes, 42).expect("decodes");
        assert_eq!(resource_version(&back), Some("42"));
    }

    #[test]
    fn only_the_top_level_resource_version_is_left_out_of_storage() {
        let obj = json!({"kind": "Pod", "metadata": {"a": 1, "resourceVersion": "5", "z": [2]},
                         "spec": {"metadata": {"resourceVersion": "kept"}}});
        let mut want = obj.clone();
        metadata_mut(&mut want).remove("resourceVersion");
        assert_eq!(encode_for_storage(&obj), serde_json::to_vec(&want).expect("encodes"));
    }

    #[test]
    fn the_resource_version_is_spliced_into_top_level_metadata_only() {
        let cases = [
            (
                r#"{"a":{"metadata":{"x":1}},"metadata":{"name":"n"}}"#,
                Some(r#"{"a":{"metadata":{"x":1}},"metadata":{"resourceVersion":"7","name":"n"}}"#),
            ),
            (r#"{"kind":"K","metadata":{}}"#, Some(r#"{"kind":"K","metadata":{"resourceVersion":"7"}}"#)),
            (
                r#"{"s":"\"metadata\":{","metadata":{"a":"b"}}"#,
                Some(r#"{"s":"\"metadata\":{","metadata":{"resourceVersion":"7","a":"b"}}"#),
            ),
            (r#"{"metadata":null}"#, None),
            (r#"{"spec":{}}"#, None),
        ];
        for (input, want) in cases {
            let got = with_resource_version(input.as_bytes(), 7).map(|b| String::from_utf8(b).expect("utf8"));
            assert_eq!(got.as_deref(), want, "{input}");
            if let Some(g) = got {
                let v: Value = serde_json::from_str(&g).expect("still valid JSON");
                assert_eq!(resource_version(&v), Some("7"));
            }
        }
    }

    #[test]
    fn field_values_default_to_empty_and_reject_unknown_fields() {
        let pods = by_plural("", "v1", "pods").expect("pods");
        let pod = json!({"metadata": {"name": "a"}, "spec": {}, "status": {"phase": "Running"}});
        assert_eq!(field_value(pods, &pod, "status.phase").as_deref(), Some("Running"));
        assert_eq!(field_value(pods, &pod, "spec.nodeName").as_deref(), Some(""));
        assert_eq!(field_value(pods, &pod, "spec.containers"), None);
    }
}

//! The `metadata` rules every object follows: name format per kind, labels, annotations,
//! finalizers, owner references, and what may not change on update.

use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use api_types::names::{self, NameRule};
use serde_json::Value;

use super::render::go_string_slice;
use super::{FieldError, Path, decode, immutable_str, name_errors, too_long, validate_labels};

/// Upstream's limit on the total size of an object's annotations (keys plus values).
pub(super) const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;

/// Which rule a kind's `metadata.name` follows.
pub(super) fn name_rule(group: &str, kind: &str) -> NameRule {
    match (group, kind) {
        ("", "Namespace") => NameRule::Dns1123Label,
        ("", "Service") => NameRule::Dns1035Label,
        ("rbac.authorization.k8s.io", _) => NameRule::PathSegment,
        _ => NameRule::Dns1123Subdomain,
    }
}

pub(super) fn validate_metadata(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let meta: ObjectMeta = match decode(obj, "metadata") {
        Ok(meta) => meta,
        Err(e) => return vec![e],
    };
    let path = Path::new("metadata");
    let rule = name_rule(group, kind);
    let mut errs = Vec::new();

    let name = meta.name.as_deref().unwrap_or("");
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        let msgs = names::validate_generate_name(rule, generate_name);
        errs.extend(name_errors(&path.child("generateName"), generate_name, msgs));
    }
    if !name.is_empty() {
        errs.extend(name_errors(&path.child("name"), name, names::validate_object_name(rule, name)));
    } else if generate_name.is_empty() {
        errs.push(FieldError::required(path.child("name"), "name or generateName is required"));
    }

    errs.extend(validate_labels(&path.child("labels"), meta.labels.as_ref()));
    errs.extend(annotations(&path.child("annotations"), &meta));
    errs.extend(finalizers(&path.child("finalizers"), meta.finalizers.as_deref().unwrap_or_default()));
    errs.extend(owner_references(&path.child("ownerReferences"), &meta));

    if let Some(old) = old {
        match decode::<ObjectMeta>(old, "metadata") {
            Ok(old_meta) => errs.extend(update(&path, &meta, &old_meta)),
            Err(e) => errs.push(e),
        }
    }
    errs
}

/// Keys are qualified names, compared case-insensitively; keys and values together may not
/// exceed 256 KiB.
fn annotations(path: &Path, meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut total = 0;
    for (key, value) in meta.annotations.iter().flatten() {
        errs.extend(name_errors(path, key, names::is_qualified_name(&key.to_lowercase())));
        total += key.len() + value.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

/// A finalizer must be a qualified name.
pub(super) fn finalizer_name(path: &Path, finalizer: &str) -> Vec<FieldError> {
    name_errors(path, finalizer, names::is_qualified_name(finalizer)).collect()
}

fn finalizers(path: &Path, finalizers: &[String]) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = finalizers.iter().flat_map(|f| finalizer_name(path, f)).collect();
    let has = |name: &str| finalizers.iter().any(|f| f == name);
    if has("orphan") && has("foregroundDeletion") {
        errs.push(FieldError::invalid_raw(
            path,
            go_string_slice(Some(finalizers)),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

fn owner_references(path: &Path, meta: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    let refs = meta.owner_references.as_deref().unwrap_or_default();
    for r in refs {
        let version = r.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(path.child("apiVersion"), &r.api_version, "version must not be empty"));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(path.child("kind"), &r.kind, "kind must not be empty"));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(path.child("name"), &r.name, "name must not be empty"));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(path.child("uid"), &r.uid, "uid must not be empty"));
        }
        if r.controller == Some(true) {
            let this = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid_raw(
                    path,
                    serde_json::to_string(refs).unwrap_or_default(),
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"),
                )),
                None => first_controller = Some(this),
            }
        }
    }
    errs
}

/// Name, namespace and uid never change; an object being deleted gains no finalizers.
fn update(path: &Path, meta: &ObjectMeta, old: &ObjectMeta) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let field = |m: &ObjectMeta, f: fn(&ObjectMeta) -> &Option<String>| f(m).clone().unwrap_or_default();
    let name = field(meta, |m| &m.name);
    errs.extend(immutable_str(&path.child("name"), &name, &field(old, |m| &m.name)));
    let namespace = field(meta, |m| &m.namespace);
    errs.extend(immutable_str(&path.child("namespace"), &namespace, &field(old, |m| &m.namespace)));
    let uid = field(meta, |m| &m.uid);
    if !uid.is_empty() {
        errs.extend(immutable_str(&path.child("uid"), &uid, &field(old, |m| &m.uid)));
    }
    if old.deletion_timestamp.is_some() {
        let old_finalizers = old.finalizers.as_deref().unwrap_or_default();
        let mut added: Vec<String> =
            meta.finalizers.iter().flatten().filter(|f| !old_finalizers.contains(f)).cloned().collect();
        added.sort();
        added.dedup();
        if !added.is_empty() {
            errs.push(FieldError::forbidden(
                path.child("finalizers"),
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    go_string_slice(Some(&added))
                ),
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::super::validate;

    /// The metadata errors only; the kinds' own rules are tested elsewhere.
    fn messages(group: &str, kind: &str, obj: &Value, old: Option<&Value>) -> Vec<String> {
        let errs = validate(group, kind, obj, old);
        errs.iter().filter(|e| e.field.starts_with("metadata")).map(ToString::to_string).collect()
    }

    fn config_map(metadata: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata})
    }

    #[test]
    fn metadata_rules() {
        let label_key_error = "metadata.labels: Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
        // (what, group, kind, metadata, expected messages)
        let cases: Vec<(&str, &str, &str, Value, Vec<String>)> = vec![
            ("valid", "", "ConfigMap", json!({"name": "web.config", "labels": {"app": "web"}}), vec![]),
            ("name or generateName", "", "ConfigMap", json!({}), vec!["metadata.name: Required value: name or generateName is required".into()]),
            ("generateName alone is enough", "", "ConfigMap", json!({"generateName": "web-"}), vec![]),
            ("bad generateName", "", "ConfigMap", json!({"generateName": "Web-"}), vec![
                "metadata.generateName: Invalid value: \"Web-\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
            ]),
            ("subdomain names", "", "ConfigMap", json!({"name": "Bad_Name"}), vec![
                "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
            ]),
            ("namespaces are labels", "", "Namespace", json!({"name": "a.b"}), vec![
                "metadata.name: Invalid value: \"a.b\": must not contain dots".into(),
            ]),
            ("services are DNS-1035 labels", "", "Service", json!({"name": "1web"}), vec![
                "metadata.name: Invalid value: \"1web\": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')".into(),
            ]),
            ("rbac names are path segments", "rbac.authorization.k8s.io", "ClusterRole", json!({"name": "system:controller:Foo"}), vec![]),
            ("rbac names have no slash", "rbac.authorization.k8s.io", "Role", json!({"name": "a/b"}), vec![
                "metadata.name: Invalid value: \"a/b\": may not contain '/'".into(),
            ]),
            ("rbac names are not dots", "rbac.authorization.k8s.io", "RoleBinding", json!({"name": ".."}), vec![
                "metadata.name: Invalid value: \"..\": may not be '..'".into(),
            ]),
            ("label keys", "", "ConfigMap", json!({"name": "c", "labels": {"bad key!": "v"}}), vec![label_key_error.into()]),
            ("label values", "", "ConfigMap", json!({"name": "c", "labels": {"app": "-x"}}), vec![
                "metadata.labels: Invalid value: \"-x\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into(),
            ]),
            ("annotation keys ignore case", "", "ConfigMap", json!({"name": "c", "annotations": {"Example.com/Owner": "x"}}), vec![]),
            ("annotation keys", "", "ConfigMap", json!({"name": "c", "annotations": {"a/b/c": "x"}}), vec![
                "metadata.annotations: Invalid value: \"a/b/c\": a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')".into(),
            ]),
            ("annotation size", "", "ConfigMap", json!({"name": "c", "annotations": {"big": "x".repeat(256 * 1024)}}), vec![
                "metadata.annotations: Too long: may not be more than 262144 bytes".into(),
            ]),
            ("finalizers", "", "ConfigMap", json!({"name": "c", "finalizers": ["example.com/cleanup", "bad finalizer"]}), vec![
                "metadata.finalizers: Invalid value: \"bad finalizer\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into(),
            ]),
            ("orphan and foreground", "", "ConfigMap", json!({"name": "c", "finalizers": ["orphan", "foregroundDeletion"]}), vec![
                "metadata.finalizers: Invalid value: []string{\"orphan\", \"foregroundDeletion\"}: finalizer orphan and foregroundDeletion cannot be both set".into(),
            ]),
            ("owner references", "", "ConfigMap", json!({"name": "c", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "", "uid": ""}]}), vec![
                "metadata.ownerReferences.name: Invalid value: \"\": name must not be empty".into(),
                "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty".into(),
            ]),
        ];
        for (what, group, kind, metadata, want) in cases {
            let obj = json!({"metadata": metadata});
            assert_eq!(messages(group, kind, &obj, None), want, "{what}");
        }
    }

    #[test]
    fn one_controller_owner_only() {
        let owner = |name: &str| json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": "u", "controller": true});
        let obj = config_map(json!({"name": "c", "ownerReferences": [owner("a"), owner("b")]}));
        let errs = validate("", "ConfigMap", &obj, None);
        assert_eq!(errs.len(), 1);
        assert!(
            errs[0].detail.contains("Found \"true\" in references for ReplicaSet/a and ReplicaSet/b"),
            "{}",
            errs[0]
        );
    }

    #[test]
    fn metadata_updates() {
        // (what, new metadata, old metadata, expected messages)
        let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
            ("labels may change", json!({"name": "c", "labels": {"a": "b"}}), json!({"name": "c"}), vec![]),
            (
                "name is immutable",
                json!({"name": "d"}),
                json!({"name": "c"}),
                vec!["metadata.name: Invalid value: \"d\": field is immutable"],
            ),
            (
                "namespace is immutable",
                json!({"name": "c", "namespace": "b"}),
                json!({"name": "c", "namespace": "a"}),
                vec!["metadata.namespace: Invalid value: \"b\": field is immutable"],
            ),
            (
                "uid is immutable",
                json!({"name": "c", "uid": "2"}),
                json!({"name": "c", "uid": "1"}),
                vec!["metadata.uid: Invalid value: \"2\": field is immutable"],
            ),
            ("a missing uid is filled in later", json!({"name": "c"}), json!({"name": "c", "uid": "1"}), vec![]),
            (
                "finalizers may be removed while deleting",
                json!({"name": "c", "finalizers": []}),
                json!({"name": "c", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a.io/x"]}),
                vec![],
            ),
            (
                "no new finalizers while deleting",
                json!({"name": "c", "finalizers": ["a.io/x", "b.io/y"]}),
                json!({"name": "c", "deletionTimestamp": "2024-01-01T00:00:00Z", "finalizers": ["a.io/x"]}),
                vec![
                    "metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"b.io/y\"}",
                ],
            ),
        ];
        for (what, new, old, want) in cases {
            let got = messages("", "ConfigMap", &config_map(new), Some(&config_map(old)));
            assert_eq!(got, want, "{what}");
        }
    }
}

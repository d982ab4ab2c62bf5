//! Tests of the generated definitions.

use k8s_openapi::api::{
    admissionregistration::v1 as admission, apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch,
    core::v1 as core, policy::v1 as policy, storage::v1 as storage,
};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use serde_json::{Value, json};

use super::*;

/// Roots whose definitions cover every entry of the patch tables.
fn broad_roots() -> Vec<Root> {
    vec![
        Root::resource::<core::Pod>(),
        Root::resource::<core::Node>(),
        Root::resource::<core::Service>(),
        Root::resource::<core::Namespace>(),
        Root::resource::<core::PersistentVolumeClaim>(),
        Root::resource::<core::ReplicationController>(),
        Root::resource::<core::ComponentStatus>(),
        Root::resource::<core::ServiceAccount>(),
        Root::resource::<apps::Deployment>(),
        Root::resource::<apps::ReplicaSet>(),
        Root::resource::<apps::StatefulSet>(),
        Root::resource::<apps::DaemonSet>(),
        Root::resource::<batch::Job>(),
        Root::resource::<autoscaling::HorizontalPodAutoscaler>(),
        Root::resource::<policy::PodDisruptionBudget>(),
        Root::resource::<admission::MutatingWebhookConfiguration>(),
        Root::resource::<admission::ValidatingWebhookConfiguration>(),
        Root::resource::<storage::CSINode>(),
        Root::resource::<apiextensions::CustomResourceDefinition>(),
        Root::schema::<meta::Status>(),
    ]
}

fn small_defs() -> Definitions {
    Definitions::from_roots(&[
        Root::resource::<core::Pod>(),
        Root::resource::<apps::Deployment>(),
        Root::resource::<core::Service>(),
    ])
}

#[test]
fn fields_carry_upstream_patch_metadata() {
    let defs = Definitions::from_roots(&broad_roots());
    #[rustfmt::skip]
    let cases: &[(&str, &str, Option<&str>, Option<&str>)] = &[
        ("io.k8s.api.core.v1.PodSpec", "containers", Some("merge"), Some("name")),
        ("io.k8s.api.core.v1.PodSpec", "volumes", Some("merge,retainKeys"), Some("name")),
        ("io.k8s.api.core.v1.PodSpec", "tolerations", None, None),
        ("io.k8s.api.core.v1.Container", "env", Some("merge"), Some("name")),
        ("io.k8s.api.core.v1.Container", "resizePolicy", None, None),
        ("io.k8s.api.core.v1.EphemeralContainer", "volumeMounts", Some("merge"), Some("mountPath")),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "finalizers", Some("merge"), None),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "ownerReferences", Some("merge"), Some("uid")),
        ("io.k8s.api.core.v1.ServiceSpec", "ports", Some("merge"), Some("port")),
        ("io.k8s.api.apps.v1.DeploymentSpec", "strategy", Some("retainKeys"), None),
        ("io.k8s.api.core.v1.NodeSpec", "podCIDRs", Some("merge"), None),
        ("io.k8s.api.policy.v1.PodDisruptionBudgetStatus", "conditions", Some("merge"), Some("type")),
    ];
    for (definition, field, strategy, merge_key) in cases {
        let got = defs.field(definition, field).map(|f| f.patch);
        let want = PatchMeta { strategy: *strategy, merge_key: *merge_key };
        assert_eq!(got, Some(want), "{definition}.{field}");
    }
}

#[test]
fn every_patch_table_entry_names_a_generated_property() {
    let defs = Definitions::from_roots(&broad_roots());
    for (definition, field, strategy, _) in PATCH_META {
        let got = defs.field(definition, field).and_then(|f| f.patch.strategy);
        assert_eq!(got, Some(*strategy), "{definition}.{field}");
    }
    for (definition, field, list_type, _) in LIST_TYPES {
        let got = defs.field(definition, field).and_then(|f| f.schema.get(LIST_TYPE).cloned());
        assert_eq!(got, Some(json!(list_type)), "{definition}.{field}");
    }
}

#[test]
fn top_level_kinds_carry_their_group_version_kind() {
    let defs = small_defs();
    let cases = [
        ("io.k8s.api.apps.v1.Deployment", json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])),
        ("io.k8s.api.core.v1.Pod", json!([{"group": "", "kind": "Pod", "version": "v1"}])),
    ];
    for (name, want) in cases {
        let got = defs.definition(name).and_then(|d| d.get(GROUP_VERSION_KIND));
        assert_eq!(got, Some(&want), "{name}");
    }
    let spec = defs.definition("io.k8s.api.core.v1.PodSpec");
    assert!(spec.is_some_and(|s| s.get(GROUP_VERSION_KIND).is_none()));
    assert_eq!(defs.definition_name_for("apps", "v1", "Deployment"), Some("io.k8s.api.apps.v1.Deployment"));
    assert_eq!(defs.kinds_of("io.k8s.api.core.v1.Service"), vec![GroupVersionKind::new("", "v1", "Service")]);
}

#[test]
fn a_type_added_under_two_kinds_lists_both() {
    let mut builder = Definitions::builder();
    builder
        .add::<meta::DeleteOptions>(Some(("", "v1", "DeleteOptions")))
        .add::<meta::DeleteOptions>(Some(("apps", "v1", "DeleteOptions")))
        .add::<meta::DeleteOptions>(Some(("apps", "v1", "DeleteOptions")));
    let defs = builder.finish();
    let kinds = defs.kinds_of("io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions");
    assert_eq!(kinds.len(), 2);
}

#[test]
fn kinds_do_not_require_metadata() {
    let defs = small_defs();
    let pod = defs.definition("io.k8s.api.core.v1.Pod");
    assert!(pod.is_some_and(|p| p.get("required").is_none()), "{pod:?}");
}

#[test]
fn no_reference_dangles() {
    assert_eq!(small_defs().dangling_refs(), Vec::<String>::new());
    assert_eq!(Definitions::from_roots(&broad_roots()).dangling_refs(), Vec::<String>::new());
}

#[test]
fn v2_references_point_to_definitions() {
    let v2 = small_defs().to_v2_definitions();
    let affinity = &v2["io.k8s.api.core.v1.PodSpec"]["properties"]["affinity"];
    assert_eq!(affinity["$ref"], json!("#/definitions/io.k8s.api.core.v1.Affinity"));
}

#[test]
fn v3_references_point_to_components_and_wrap_siblings_in_all_of() {
    let defs = Definitions::from_roots(&broad_roots());
    let v3 = defs.to_v3_components();
    let text = v3.to_string();
    assert!(!text.contains("#/definitions/"));
    let schemas = &v3["schemas"];
    let affinity = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["affinity"];
    assert_eq!(affinity["allOf"], json!([{"$ref": "#/components/schemas/io.k8s.api.core.v1.Affinity"}]));
    assert!(affinity.get("$ref").is_none());
    assert!(affinity.get("description").is_some());
    let items = &schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]["items"];
    assert_eq!(items, &json!({"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}));
    let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
    assert_eq!(strategy[PATCH_STRATEGY], json!("retainKeys"));
    // JSONSchemaProps has a property named `$ref`, which is not a reference.
    let props = &schemas["io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"];
    assert_eq!(props["properties"]["$ref"]["type"], json!("string"));
}

#[test]
fn output_is_plain_openapi() {
    let defs = Definitions::from_roots(&broad_roots());
    fn check(path: &str, value: &Value) {
        match value {
            Value::Object(map) => {
                for key in ["$schema", "$defs", "definitions"] {
                    assert!(!map.contains_key(key) || path.ends_with(".properties"), "{key} at {path}");
                }
                for (k, v) in map {
                    check(&format!("{path}.{k}"), v);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| check(path, v)),
            _ => {}
        }
    }
    for (name, definition) in defs.iter() {
        assert!(definition.is_object(), "{name} is not a schema object");
        check(name, definition);
    }
}

#[test]
fn fields_resolve_to_their_definitions() {
    let defs = small_defs();
    #[rustfmt::skip]
    let cases: &[(&str, &str, Shape, Option<&str>)] = &[
        ("io.k8s.api.core.v1.Pod", "spec", Shape::Object, Some("io.k8s.api.core.v1.PodSpec")),
        ("io.k8s.api.core.v1.PodSpec", "containers", Shape::List, Some("io.k8s.api.core.v1.Container")),
        ("io.k8s.api.core.v1.Container", "args", Shape::List, None),
        ("io.k8s.api.core.v1.Container", "image", Shape::Scalar, None),
        ("io.k8s.api.core.v1.ResourceRequirements", "limits", Shape::Map, Some("io.k8s.apimachinery.pkg.api.resource.Quantity")),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "labels", Shape::Map, None),
        ("io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "creationTimestamp", Shape::Scalar, Some("io.k8s.apimachinery.pkg.apis.meta.v1.Time")),
        ("io.k8s.api.core.v1.ServicePort", "targetPort", Shape::Scalar, Some("io.k8s.apimachinery.pkg.util.intstr.IntOrString")),
    ];
    for (definition, field, shape, type_name) in cases {
        let got = defs.field(definition, field).map(|f| (f.shape, f.type_name));
        assert_eq!(got, Some((*shape, *type_name)), "{definition}.{field}");
    }
    assert!(defs.field("io.k8s.api.core.v1.PodSpec", "noSuchField").is_none());
    assert!(defs.field("io.k8s.api.core.v1.NoSuchType", "spec").is_none());
}

#[test]
fn ref_names_are_read_in_every_form() {
    let cases = [
        (json!({"$ref": "#/definitions/a.B"}), Some("a.B")),
        (json!({"$ref": "#/components/schemas/a.B"}), Some("a.B")),
        (json!({"allOf": [{"$ref": "#/components/schemas/a.B"}], "description": "x"}), Some("a.B")),
        (json!({"$ref": "http://elsewhere/a.B"}), None),
        (json!({"$ref": {"type": "string"}}), None),
        (json!({"type": "string"}), None),
    ];
    for (schema, want) in cases {
        assert_eq!(ref_name(&schema), want, "{schema}");
    }
}

#[test]
fn patch_strategies_are_split_on_commas() {
    let meta = PatchMeta { strategy: Some("merge,retainKeys"), merge_key: Some("name") };
    assert!(meta.merges() && meta.retains_keys() && !meta.replaces());
    let meta = PatchMeta { strategy: Some("retainKeys"), merge_key: None };
    assert!(!meta.merges() && meta.retains_keys());
    assert!(!PatchMeta::default().merges());
}

//! Table-driven tests of strategic merge patches on Deployments, Pods, Services and Nodes.

use std::sync::OnceLock;

use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
use serde_json::{Value, json};

use super::*;
use crate::schema::Root;

const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";
const POD: &str = "io.k8s.api.core.v1.Pod";
const SERVICE: &str = "io.k8s.api.core.v1.Service";

fn defs() -> &'static Definitions {
    static DEFS: OnceLock<Definitions> = OnceLock::new();
    DEFS.get_or_init(|| {
        Definitions::from_roots(&[
            Root::resource::<core::Pod>(),
            Root::resource::<core::Service>(),
            Root::resource::<core::Node>(),
            Root::resource::<apps::Deployment>(),
        ])
    })
}

/// One patch applied to one object, and the object expected back.
struct Case {
    name: &'static str,
    type_name: &'static str,
    original: Value,
    patch: Value,
    want: Value,
}

fn run(cases: Vec<Case>) {
    for case in cases {
        let got = apply(&case.original, &case.patch, defs(), case.type_name);
        assert_eq!(got, Ok(case.want), "case: {}", case.name);
    }
}

/// A Deployment whose pod template has the given containers (and nothing else).
fn deployment(containers: Value) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": containers}
            }
        }
    })
}

fn containers_patch(containers: Value) -> Value {
    json!({"spec": {"template": {"spec": {"containers": containers}}}})
}

#[test]
fn merges_containers_by_name() {
    run(vec![
        Case {
            name: "updating one container's image keeps the other container",
            type_name: DEPLOYMENT,
            original: deployment(json!([
                {"name": "app", "image": "nginx:1", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "envoy:1"}
            ])),
            patch: containers_patch(json!([{"name": "app", "image": "nginx:2"}])),
            want: deployment(json!([
                {"name": "app", "image": "nginx:2", "ports": [{"containerPort": 80}]},
                {"name": "sidecar", "image": "envoy:1"}
            ])),
        },
        Case {
            name: "a new container comes before the ones the patch does not name",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "patch-demo-ctr", "image": "nginx"}])),
            patch: containers_patch(json!([{"name": "patch-demo-ctr-2", "image": "redis"}])),
            want: deployment(json!([
                {"name": "patch-demo-ctr-2", "image": "redis"},
                {"name": "patch-demo-ctr", "image": "nginx"}
            ])),
        },
        Case {
            name: "a container is deleted with $patch: delete",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])),
            patch: containers_patch(json!([{"name": "a", "$patch": "delete"}])),
            want: deployment(json!([{"name": "b", "image": "y"}])),
        },
        Case {
            name: "$patch: replace replaces the whole list",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])),
            patch: containers_patch(json!([{"$patch": "replace"}, {"name": "c", "image": "z"}])),
            want: deployment(json!([{"name": "c", "image": "z"}])),
        },
        Case {
            name: "nulls in a new container are dropped",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a", "image": "x"}])),
            patch: containers_patch(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y", "command": null}])),
            want: deployment(json!([{"name": "a", "image": "x"}, {"name": "b", "image": "y"}])),
        },
        Case {
            name: "patch elements come in the patch's order, the others stay ahead of later ones",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            patch: containers_patch(json!([{"name": "c", "image": "3"}, {"name": "a", "image": "1"}])),
            want: deployment(json!([{"name": "b"}, {"name": "c", "image": "3"}, {"name": "a", "image": "1"}])),
        },
    ]);
}

#[test]
fn merges_env_by_name() {
    let with_env = |env: Value| deployment(json!([{"name": "app", "image": "nginx:1", "env": env}]));
    let env_patch = |env: Value| containers_patch(json!([{"name": "app", "env": env}]));
    run(vec![
        Case {
            name: "an env var is removed with $patch: delete",
            type_name: DEPLOYMENT,
            original: with_env(json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])),
            patch: env_patch(json!([{"name": "B", "$patch": "delete"}])),
            want: with_env(json!([{"name": "A", "value": "1"}])),
        },
        Case {
            name: "an env var's value is changed and its valueFrom cleared",
            type_name: DEPLOYMENT,
            original: with_env(json!([{"name": "A", "valueFrom": {"fieldRef": {"fieldPath": "x"}}}])),
            patch: env_patch(json!([{"name": "A", "value": "1", "valueFrom": null}])),
            want: with_env(json!([{"name": "A", "value": "1"}])),
        },
        Case {
            name: "deleting an env var that is not there changes nothing",
            type_name: DEPLOYMENT,
            original: with_env(json!([{"name": "A", "value": "1"}])),
            patch: env_patch(json!([{"name": "Z", "$patch": "delete"}])),
            want: with_env(json!([{"name": "A", "value": "1"}])),
        },
    ]);
}

#[test]
fn follows_set_element_order() {
    let with_env = |image: &str, env: Value| deployment(json!([{"name": "app", "image": image, "env": env}]));
    run(vec![
        Case {
            name: "kubectl apply's patch after removing env B from the file",
            type_name: DEPLOYMENT,
            original: with_env("nginx:1", json!([{"name": "A", "value": "1"}, {"name": "B", "value": "2"}])),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "app"}],
                "containers": [{
                    "$setElementOrder/env": [{"name": "A"}],
                    "env": [{"$patch": "delete", "name": "B"}],
                    "image": "nginx:2",
                    "name": "app"
                }]
            }}}}),
            want: with_env("nginx:2", json!([{"name": "A", "value": "1"}])),
        },
        Case {
            name: "the order reorders elements the patch does not change",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "c"}, {"name": "a"}, {"name": "b"}]
            }}}}),
            want: deployment(json!([{"name": "c"}, {"name": "a"}, {"name": "b"}])),
        },
        Case {
            name: "a new element takes its place in the order",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a"}, {"name": "c"}])),
            patch: json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}],
                "containers": [{"name": "b", "image": "y"}]
            }}}}),
            want: deployment(json!([{"name": "a"}, {"name": "b", "image": "y"}, {"name": "c"}])),
        },
        Case {
            name: "the order applies to elements the patch merges",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a", "image": "x", "env": [
                {"name": "X", "value": "1"}, {"name": "Y", "value": "2"}
            ]}])),
            patch: containers_patch(json!([{
                "name": "a",
                "$setElementOrder/env": [{"name": "Y"}, {"name": "X"}],
                "env": [{"name": "X", "value": "9"}]
            }])),
            want: deployment(json!([{"name": "a", "image": "x", "env": [
                {"name": "Y", "value": "2"}, {"name": "X", "value": "9"}
            ]}])),
        },
        Case {
            name: "the order applies to a list that is new",
            type_name: DEPLOYMENT,
            original: deployment(json!([{"name": "a", "image": "x"}])),
            patch: containers_patch(json!([{
                "name": "a",
                "$setElementOrder/env": [{"name": "Y"}, {"name": "X"}],
                "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]
            }])),
            want: deployment(json!([{"name": "a", "image": "x", "env": [
                {"name": "Y", "value": "2"}, {"name": "X", "value": "1"}
            ]}])),
        },
        Case {
            name: "finalizers follow the order and lose deleted values",
            type_name: POD,
            original: json!({"metadata": {"name": "p", "finalizers": ["a", "b"]}}),
            patch: json!({"metadata": {
                "$setElementOrder/finalizers": ["a", "c"],
                "$deleteFromPrimitiveList/finalizers": ["b"],
                "finalizers": ["c"]
            }}),
            want: json!({"metadata": {"name": "p", "finalizers": ["a", "c"]}}),
        },
    ]);
}

#[test]
fn merges_primitive_lists_as_sets() {
    let pod = |finalizers: Value| json!({"metadata": {"name": "p", "finalizers": finalizers}});
    run(vec![
        Case {
            name: "a new finalizer is added once, ahead of the others",
            type_name: POD,
            original: pod(json!(["a", "b"])),
            patch: json!({"metadata": {"finalizers": ["c", "a"]}}),
            want: pod(json!(["c", "a", "b"])),
        },
        Case {
            name: "a finalizer is removed with $deleteFromPrimitiveList",
            type_name: POD,
            original: pod(json!(["a", "b", "c"])),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b", "z"]}}),
            want: pod(json!(["a", "c"])),
        },
        Case {
            name: "$deleteFromPrimitiveList on an absent list does not create it",
            type_name: POD,
            original: json!({"metadata": {"name": "p"}}),
            patch: json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["b"]}}),
            want: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "a list without a strategy is replaced",
            type_name: POD,
            original: json!({"spec": {"containers": [{"name": "a", "args": ["x", "y"]}]}}),
            patch: json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
            want: json!({"spec": {"containers": [{"name": "a", "args": ["z"]}]}}),
        },
        Case {
            name: "tolerations are replaced, not merged",
            type_name: POD,
            original: json!({"spec": {"tolerations": [{"key": "a"}, {"key": "b"}]}}),
            patch: json!({"spec": {"tolerations": [{"key": "c"}]}}),
            want: json!({"spec": {"tolerations": [{"key": "c"}]}}),
        },
    ]);
}

#[test]
fn merges_maps_and_deletes_with_null() {
    let meta = |labels: Value| json!({"metadata": {"name": "p", "labels": labels}});
    run(vec![
        Case {
            name: "null deletes one label and others are kept",
            type_name: POD,
            original: meta(json!({"app": "web", "tier": "front"})),
            patch: json!({"metadata": {"labels": {"tier": null, "env": "prod"}}}),
            want: meta(json!({"app": "web", "env": "prod"})),
        },
        Case {
            name: "null deletes all labels",
            type_name: POD,
            original: meta(json!({"app": "web"})),
            patch: json!({"metadata": {"labels": null}}),
            want: json!({"metadata": {"name": "p"}}),
        },
        Case {
            name: "null for an absent key changes nothing",
            type_name: POD,
            original: meta(json!({"app": "web"})),
            patch: json!({"metadata": {"annotations": null, "labels": {"x": null}}}),
            want: meta(json!({"app": "web"})),
        },
        Case {
            name: "$patch: replace replaces a map",
            type_name: POD,
            original: meta(json!({"app": "web", "tier": "front"})),
            patch: json!({"metadata": {"labels": {"$patch": "replace", "only": "this"}}}),
            want: meta(json!({"only": "this"})),
        },
        Case {
            name: "$patch: delete empties a map",
            type_name: POD,
            original: meta(json!({"app": "web"})),
            patch: json!({"metadata": {"labels": {"$patch": "delete"}}}),
            want: meta(json!({})),
        },
        Case {
            name: "ownerReferences merge by uid",
            type_name: POD,
            original: json!({"metadata": {"ownerReferences": [{"uid": "1", "name": "a"}, {"uid": "2", "name": "b"}]}}),
            patch: json!({"metadata": {"ownerReferences": [{"uid": "2", "controller": true}]}}),
            want: json!({"metadata": {"ownerReferences": [
                {"uid": "1", "name": "a"}, {"uid": "2", "name": "b", "controller": true}
            ]}}),
        },
        Case {
            name: "a scalar replaced by an object and a map replacing a string",
            type_name: POD,
            original: json!({"spec": {"nodeName": "n1", "nodeSelector": "bogus"}}),
            patch: json!({"spec": {"nodeName": "n2", "nodeSelector": {"disk": "ssd", "x": null}}}),
            want: json!({"spec": {"nodeName": "n2", "nodeSelector": {"disk": "ssd"}}}),
        },
    ]);
}

#[test]
fn merges_service_ports_by_port() {
    let service = |ports: Value| json!({"spec": {"selector": {"app": "web"}, "ports": ports}});
    run(vec![
        Case {
            name: "a port's target is changed and the other port kept",
            type_name: SERVICE,
            original: service(json!([
                {"name": "http", "port": 80, "targetPort": 8080},
                {"name": "https", "port": 443, "targetPort": 8443}
            ])),
            patch: json!({"spec": {"ports": [{"port": 80, "targetPort": 9090}]}}),
            want: service(json!([
                {"name": "http", "port": 80, "targetPort": 9090},
                {"name": "https", "port": 443, "targetPort": 8443}
            ])),
        },
        Case {
            name: "a port is deleted",
            type_name: SERVICE,
            original: service(json!([{"port": 80}, {"port": 443}])),
            patch: json!({"spec": {"ports": [{"port": 443, "$patch": "delete"}]}}),
            want: service(json!([{"port": 80}])),
        },
    ]);
}

#[test]
fn retains_only_listed_keys() {
    let rolling = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    let with_strategy = |strategy: Value| json!({"spec": {"replicas": 1, "strategy": strategy}});
    let pod_volumes = |volumes: Value| json!({"spec": {"volumes": volumes}});
    run(vec![
        Case {
            name: "switching to Recreate with rollingUpdate: null",
            type_name: DEPLOYMENT,
            original: with_strategy(rolling.clone()),
            patch: json!({"spec": {"strategy": {"type": "Recreate", "rollingUpdate": null}}}),
            want: with_strategy(json!({"type": "Recreate"})),
        },
        Case {
            name: "switching to Recreate with $retainKeys",
            type_name: DEPLOYMENT,
            original: with_strategy(rolling.clone()),
            patch: json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
            want: with_strategy(json!({"type": "Recreate"})),
        },
        Case {
            name: "a volume switches from emptyDir to hostPath",
            type_name: POD,
            original: pod_volumes(json!([
                {"name": "data", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "c"}}
            ])),
            patch: json!({"spec": {"volumes": [
                {"$retainKeys": ["hostPath", "name"], "name": "data", "hostPath": {"path": "/d"}}
            ]}}),
            want: pod_volumes(json!([
                {"name": "data", "hostPath": {"path": "/d"}},
                {"name": "conf", "configMap": {"name": "c"}}
            ])),
        },
    ]);
}

#[test]
fn behaves_like_a_json_merge_patch_without_schema() {
    run(vec![
        Case {
            name: "an unknown type merges maps and replaces lists",
            type_name: "io.example.v1.Widget",
            original: json!({"spec": {"a": 1, "items": [{"name": "x"}], "m": {"k": "v"}}}),
            patch: json!({"spec": {"b": 2, "items": [{"name": "y"}], "m": {"k": null, "j": "w"}}}),
            want: json!({"spec": {"a": 1, "b": 2, "items": [{"name": "y"}], "m": {"j": "w"}}}),
        },
        Case {
            name: "a field the schema does not know merges as JSON",
            type_name: POD,
            original: json!({"spec": {"extra": {"a": [1, 2], "b": 1}}}),
            patch: json!({"spec": {"extra": {"a": [3], "b": null}}}),
            want: json!({"spec": {"extra": {"a": [3]}}}),
        },
        Case {
            name: "patching nothing yields the patch without directives",
            type_name: DEPLOYMENT,
            original: Value::Null,
            patch: containers_patch(json!([
                {"name": "a", "$setElementOrder/env": [{"name": "X"}], "env": [{"name": "X"}]},
                {"name": "gone", "$patch": "delete"}
            ])),
            want: containers_patch(json!([{"name": "a", "env": [{"name": "X"}]}])),
        },
    ]);
}

#[test]
fn merges_status_lists_by_their_keys() {
    run(vec![Case {
        name: "pod conditions merge by type",
        type_name: POD,
        original: json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"},
            {"type": "PodScheduled", "status": "True"}
        ]}}),
        patch: json!({"status": {"$setElementOrder/conditions": [{"type": "Ready"}, {"type": "PodScheduled"}],
            "conditions": [{"type": "Ready", "status": "True"}]}}),
        want: json!({"status": {"conditions": [
            {"type": "Ready", "status": "True"},
            {"type": "PodScheduled", "status": "True"}
        ]}}),
    }]);
}

#[test]
fn rejects_malformed_patches() {
    let original = deployment(json!([{"name": "app", "image": "nginx:1"}]));
    let cases: Vec<(&str, Value, Value, &str)> = vec![
        ("a patch that is a list", original.clone(), json!([1]), "must be a JSON object"),
        (
            "a merged element without its merge key",
            original.clone(),
            containers_patch(json!([{"image": "nginx:2"}])),
            "spec.template.spec.containers: list element {\"image\":\"nginx:2\"} does not contain the merge key \"name\"",
        ),
        (
            "a delete without the merge key",
            original.clone(),
            containers_patch(json!([{"$patch": "delete"}])),
            "does not contain the merge key \"name\"",
        ),
        (
            "an unknown $patch value on a map",
            original.clone(),
            json!({"spec": {"$patch": "frobnicate"}}),
            "spec: unknown $patch directive \"frobnicate\"",
        ),
        (
            "an unknown $patch value in a list",
            original.clone(),
            containers_patch(json!([{"name": "app", "$patch": "remove"}])),
            "unknown $patch directive \"remove\"",
        ),
        (
            "$patch: merge in a list",
            original.clone(),
            containers_patch(json!([{"$patch": "merge"}])),
            "\"$patch\": \"merge\" is not supported in a list",
        ),
        (
            "a scalar in a list merged by key",
            original.clone(),
            containers_patch(json!(["app"])),
            "list element \"app\" is not an object",
        ),
        (
            "an object in a merged list of primitives",
            json!({"metadata": {"finalizers": ["a"]}}),
            json!({"metadata": {"finalizers": [{"a": 1}]}}),
            "is not a primitive value",
        ),
        (
            "$setElementOrder that is not a list",
            original.clone(),
            json!({"spec": {"template": {"spec": {"$setElementOrder/containers": {"name": "app"}}}}}),
            "$setElementOrder/containers must be a list, not an object",
        ),
        (
            "a patch list out of the given order",
            deployment(json!([{"name": "a"}, {"name": "b"}])),
            json!({"spec": {"template": {"spec": {
                "$setElementOrder/containers": [{"name": "a"}, {"name": "b"}],
                "containers": [{"name": "b", "image": "2"}, {"name": "a", "image": "1"}]
            }}}}),
            "does not match $setElementOrder/containers",
        ),
        (
            "$retainKeys that is not a list",
            original.clone(),
            json!({"spec": {"strategy": {"$retainKeys": "type"}}}),
            "spec.strategy: $retainKeys must be a list, not a string",
        ),
        (
            "$retainKeys with a number",
            original.clone(),
            json!({"spec": {"strategy": {"$retainKeys": [1]}}}),
            "$retainKeys must list field names, found 1",
        ),
        (
            "$deleteFromPrimitiveList on a map",
            original.clone(),
            json!({"metadata": {"$deleteFromPrimitiveList/labels": ["app"]}}),
            "metadata.labels: $deleteFromPrimitiveList/labels applies to a field that is not a list",
        ),
    ];
    for (name, original, patch, want) in cases {
        let got = apply(&original, &patch, defs(), DEPLOYMENT);
        match got {
            Err(e) => assert!(e.to_string().contains(want), "case: {name}: got error {e}"),
            Ok(v) => panic!("case: {name}: expected an error, got {v}"),
        }
    }
    let got = apply(&json!("x"), &json!({}), defs(), POD);
    assert_eq!(got, Err(StrategicMergeError::OriginalNotAnObject("a string")));
}

#[test]
fn quotes_long_elements_shortly() {
    let long = json!({"image": "x".repeat(1000)});
    let quoted = quote(&long);
    assert!(quoted.len() <= MAX_QUOTED + 3 && quoted.ends_with("..."), "{quoted}");
}

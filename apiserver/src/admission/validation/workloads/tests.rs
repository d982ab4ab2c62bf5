//! Tests for workload rules.

use serde_json::{Value, json};

use super::super::tests::{errors_after_defaults, merged};

const MISMATCH: &str = "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: `selector` does not match template `labels`";

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": [{"name": "web", "image": "nginx:1.25"}]}})
}

fn apps(kind: &str, patch: Value) -> Value {
    let base = json!({
        "apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": template()}
    });
    merged(&base, &json!({"spec": patch}))
}

fn job(patch: Value) -> Value {
    let base = json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "pi", "namespace": "default"},
        "spec": {"template": merged(&template(), &json!({"spec": {"restartPolicy": "Never"}}))}
    });
    merged(&base, &json!({"spec": patch}))
}

#[test]
fn apps_rules() {
    // (what, kind, spec patch, expected messages)
    let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        ("valid deployment", "Deployment", json!({}), vec![]),
        ("valid replica set", "ReplicaSet", json!({}), vec![]),
        ("valid stateful set", "StatefulSet", json!({"serviceName": "web"}), vec![]),
        ("valid daemon set", "DaemonSet", json!({}), vec![]),
        (
            "selector is required",
            "Deployment",
            json!({"selector": null}),
            vec!["spec.selector: Required value", MISMATCH],
        ),
        (
            "daemon set selector is required",
            "DaemonSet",
            json!({"selector": null}),
            vec!["spec.selector: Required value", MISMATCH],
        ),
        ("selector must match", "Deployment", json!({"selector": {"matchLabels": {"app": "y"}}}), vec![MISMATCH]),
        (
            "stateful set selector must match",
            "StatefulSet",
            json!({"selector": {"matchLabels": {"app": "y"}}}),
            vec![MISMATCH],
        ),
        (
            "expressions may match",
            "ReplicaSet",
            json!({"selector": {"matchLabels": null, "matchExpressions": [{"key": "app", "operator": "In", "values": ["x", "y"]}]}}),
            vec![],
        ),
        (
            "selector may not be empty",
            "Deployment",
            json!({"selector": {"matchLabels": null}}),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment",
            ],
        ),
        (
            "selector operators",
            "ReplicaSet",
            json!({"selector": {"matchExpressions": [{"key": "tier", "operator": "Near"}]}}),
            vec![
                "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"tier\", Operator:\"Near\", Values:[]string(nil)}}}: invalid label selector",
            ],
        ),
        (
            "In needs values",
            "Deployment",
            json!({"selector": {"matchExpressions": [{"key": "tier", "operator": "In"}]}}),
            vec![
                "spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'",
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\"}, MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"tier\", Operator:\"In\", Values:[]string(nil)}}}: invalid label selector",
            ],
        ),
        (
            "replicas are not negative",
            "Deployment",
            json!({"replicas": -1}),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
        (
            "stateful set replicas are not negative",
            "StatefulSet",
            json!({"replicas": -2}),
            vec!["spec.replicas: Invalid value: -2: must be greater than or equal to 0"],
        ),
        (
            "pods restart Always",
            "ReplicaSet",
            json!({"template": {"spec": {"restartPolicy": "OnFailure"}}}),
            vec!["spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""],
        ),
        (
            "templates have no deadline",
            "DaemonSet",
            json!({"template": {"spec": {"activeDeadlineSeconds": 10}}}),
            vec![
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported",
            ],
        ),
        (
            "templates are pod specs",
            "Deployment",
            json!({"template": {"spec": {"containers": [{"name": "web"}]}}}),
            vec!["spec.template.spec.containers[0].image: Required value"],
        ),
        (
            "template labels are labels",
            "Deployment",
            json!({"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"bad key": "v"}}}}),
            vec![
                "spec.template.labels: Invalid value: \"bad key\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ],
        ),
        (
            "surge or unavailable",
            "Deployment",
            json!({"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}}}),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"0%\"}: may not be 0 when `maxSurge` is 0",
            ],
        ),
        (
            "percentages",
            "Deployment",
            json!({"strategy": {"rollingUpdate": {"maxSurge": "lots"}}}),
            vec![
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"lots\"}: a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            ],
        ),
        (
            "at most all unavailable",
            "Deployment",
            json!({"strategy": {"rollingUpdate": {"maxUnavailable": "150%"}}}),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: intstr.IntOrString{Type:1, IntVal:0, StrVal:\"150%\"}: must not be greater than 100%",
            ],
        ),
        (
            "recreate has no rolling update",
            "Deployment",
            json!({"strategy": {"type": "Recreate", "rollingUpdate": {"maxSurge": 1}}}),
            vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"],
        ),
        (
            "strategy types",
            "Deployment",
            json!({"strategy": {"type": "BlueGreen"}}),
            vec!["spec.strategy: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\""],
        ),
        (
            "progress deadline beyond min ready",
            "Deployment",
            json!({"minReadySeconds": 700}),
            vec!["spec.progressDeadlineSeconds: Invalid value: 600: must be greater than minReadySeconds"],
        ),
        (
            "daemon set strategy types",
            "DaemonSet",
            json!({"updateStrategy": {"type": "Recreate"}}),
            vec![
                "spec.updateStrategy: Unsupported value: \"Recreate\": supported values: \"RollingUpdate\", \"OnDelete\"",
            ],
        ),
        (
            "daemon set surge or unavailable",
            "DaemonSet",
            json!({"updateStrategy": {"rollingUpdate": {"maxSurge": 1}}}),
            vec![
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: intstr.IntOrString{Type:0, IntVal:1, StrVal:\"\"}: may not be set when maxUnavailable is non-zero",
            ],
        ),
        (
            "pod management policies",
            "StatefulSet",
            json!({"podManagementPolicy": "Random"}),
            vec!["spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"],
        ),
        (
            "stateful set strategies",
            "StatefulSet",
            json!({"updateStrategy": {"type": "Sometimes"}}),
            vec!["spec.updateStrategy: Invalid value: \"Sometimes\": must be 'RollingUpdate' or 'OnDelete'"],
        ),
    ];
    for (what, kind, patch, want) in cases {
        assert_eq!(errors_after_defaults("apps", kind, &apps(kind, patch), None), want, "{what}");
    }
}

#[test]
fn apps_updates() {
    let changed_selector = json!({
        "selector": {"matchLabels": {"app": "y"}},
        "template": {"metadata": {"labels": {"app": "y"}}}
    });
    let immutable = "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"y\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable";
    // (what, kind, patch to the stored object, expected messages)
    let cases: Vec<(&str, &str, Value, Vec<&str>)> = vec![
        ("deployments scale", "Deployment", json!({"replicas": 5}), vec![]),
        (
            "deployment templates change",
            "Deployment",
            json!({"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}),
            vec![],
        ),
        ("deployment selectors are fixed", "Deployment", changed_selector.clone(), vec![immutable]),
        ("replica set selectors are fixed", "ReplicaSet", changed_selector.clone(), vec![immutable]),
        ("daemon set selectors are fixed", "DaemonSet", changed_selector.clone(), vec![immutable]),
        ("an empty list is no change", "Deployment", json!({"selector": {"matchExpressions": []}}), vec![]),
        (
            "stateful sets scale",
            "StatefulSet",
            json!({"replicas": 3, "updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}),
            vec![],
        ),
        (
            "stateful set services are fixed",
            "StatefulSet",
            json!({"serviceName": "other"}),
            vec![
                "spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            ],
        ),
    ];
    for (what, kind, patch, want) in cases {
        let old = apps(kind, json!({}));
        let new = merged(&old, &json!({"spec": patch}));
        assert_eq!(errors_after_defaults("apps", kind, &new, Some(&old)), want, "{what}");
    }
}

#[test]
fn replication_controller_rules() {
    let rc = |spec: Value| json!({"apiVersion": "v1", "kind": "ReplicationController", "metadata": {"name": "rc"}, "spec": spec});
    // (what, spec, expected messages)
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("selector defaults from the template", json!({"template": template()}), vec![]),
        (
            "selector must match",
            json!({"selector": {"app": "y"}, "template": template()}),
            vec![
                "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"x\"}: selector does not match labels in spec.template",
            ],
        ),
        ("template is required", json!({"selector": {"app": "x"}}), vec!["spec.template: Required value"]),
        (
            "replicas are not negative",
            json!({"replicas": -1, "template": template()}),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"],
        ),
    ];
    for (what, spec, want) in cases {
        assert_eq!(errors_after_defaults("", "ReplicationController", &rc(spec), None), want, "{what}");
    }
}

#[test]
fn job_rules() {
    // (what, spec patch, expected messages)
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("valid job", json!({}), vec![]),
        (
            "pods may not restart Always",
            json!({"template": {"spec": {"restartPolicy": null}}}),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"",
            ],
        ),
        (
            "counts are not negative",
            json!({"parallelism": -1, "backoffLimit": -1}),
            vec![
                "spec.parallelism: Invalid value: -1: must be greater than or equal to 0",
                "spec.backoffLimit: Invalid value: -1: must be greater than or equal to 0",
            ],
        ),
        (
            "completion modes",
            json!({"completionMode": "Sometimes"}),
            vec![
                "spec.completionMode: Unsupported value: \"Sometimes\": supported values: \"NonIndexed\", \"Indexed\"",
            ],
        ),
        (
            "indexed jobs count completions",
            json!({"completionMode": "Indexed", "parallelism": 2}),
            vec!["spec.completions: Required value: when completion mode is Indexed"],
        ),
        ("manual selectors are required", json!({"manualSelector": true}), vec!["spec.selector: Required value"]),
        (
            "manual selectors must match",
            json!({"manualSelector": true, "selector": {"matchLabels": {"app": "y"}}}),
            vec![MISMATCH],
        ),
    ];
    for (what, patch, want) in cases {
        assert_eq!(errors_after_defaults("batch", "Job", &job(patch), None), want, "{what}");
    }
}

#[test]
fn job_updates() {
    // (what, old patch, new patch, expected messages; a trailing '*' matches any rest)
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        ("jobs may be suspended", json!({}), json!({"suspend": true}), vec![]),
        ("parallelism may change", json!({}), json!({"parallelism": 4}), vec![]),
        (
            "completions are fixed",
            json!({}),
            json!({"completions": 3}),
            vec!["spec.completions: Invalid value: 3: field is immutable"],
        ),
        (
            "templates are fixed",
            json!({}),
            json!({"template": {"spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]}}}),
            vec!["spec.template: Invalid value: *"],
        ),
        (
            "suspended jobs may move",
            json!({"suspend": true}),
            json!({"template": {"spec": {"nodeSelector": {"zone": "b"}}}}),
            vec![],
        ),
        (
            "selectors are fixed",
            json!({"selector": {"matchLabels": {"app": "x"}}}),
            json!({"selector": {"matchLabels": {"app": "x", "b": "c"}}, "template": {"metadata": {"labels": {"b": "c"}}}}),
            vec![
                "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\", \"b\":\"c\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable",
                "spec.template: Invalid value: *",
            ],
        ),
    ];
    for (what, old_patch, new_patch, want) in cases {
        // As stored: both counts defaulted to 1.
        let old = merged(&job(json!({"completions": 1, "parallelism": 1})), &json!({"spec": old_patch}));
        let new = merged(&old, &json!({"spec": new_patch}));
        let got = errors_after_defaults("batch", "Job", &new, Some(&old));
        assert_eq!(got.len(), want.len(), "{what}: {got:#?}");
        for (g, w) in got.iter().zip(&want) {
            match w.strip_suffix('*') {
                Some(prefix) => assert!(g.starts_with(prefix) && g.ends_with(": field is immutable"), "{what}: {g}"),
                None => assert_eq!(g, w, "{what}"),
            }
        }
    }
}

#[test]
fn cron_job_rules() {
    let cron = |name: &str, patch: Value| {
        let base = json!({
            "apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": merged(&template(), &json!({"spec": {"restartPolicy": "OnFailure"}}))}}}
        });
        merged(&base, &json!({"spec": patch}))
    };
    let long_name = "a".repeat(53);
    // (what, name, spec patch, expected messages)
    let cases: Vec<(&str, &str, Value, Vec<String>)> = vec![
        ("valid cron job", "backup", json!({}), vec![]),
        (
            "names leave room for job suffixes",
            &long_name,
            json!({}),
            vec![format!("metadata.name: Invalid value: \"{long_name}\": must be no more than 52 characters")],
        ),
        (
            "schedules parse",
            "backup",
            json!({"schedule": "every day"}),
            vec!["spec.schedule: Invalid value: \"every day\": expected exactly 5 fields, found 2: [every day]".into()],
        ),
        ("schedules are required", "backup", json!({"schedule": ""}), vec!["spec.schedule: Required value".into()]),
        (
            "time zones go in their field",
            "backup",
            json!({"schedule": "TZ=UTC 0 * * * *"}),
            vec!["spec.schedule: Invalid value: \"TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead".into()],
        ),
        (
            "concurrency policies",
            "backup",
            json!({"concurrencyPolicy": "Sometimes"}),
            vec!["spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"".into()],
        ),
        (
            "job templates are jobs",
            "backup",
            json!({"jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "Always"}}}}}),
            vec!["spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".into()],
        ),
    ];
    for (what, name, patch, want) in cases {
        assert_eq!(errors_after_defaults("batch", "CronJob", &cron(name, patch), None), want, "{what}");
    }
}

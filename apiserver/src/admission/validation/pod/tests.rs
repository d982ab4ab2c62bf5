//! Tests for Pod and PodSpec rules.

use serde_json::{Value, json};

use super::super::tests::{DNS1123_LABEL_ERROR, errors_after_defaults, merged};

fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "default"}, "spec": spec})
}

fn web() -> Value {
    json!({"name": "web", "image": "nginx:1.25"})
}

fn errors(spec: Value) -> Vec<String> {
    errors_after_defaults("", "Pod", &pod(spec), None)
}

#[test]
fn pod_spec_rules() {
    let container = |extra: Value| merged(&web(), &extra);
    // (what, pod spec, expected messages)
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        ("defaulted bare pod is valid", json!({"containers": [web()]}), vec![]),
        ("a container is required", json!({"containers": []}), vec!["spec.containers: Required value".into()]),
        ("a missing containers list", json!({}), vec!["spec.containers: Required value".into()]),
        ("container names are unique", json!({"containers": [container(json!({"name": "a"})), container(json!({"name": "a"}))]}), vec![
            "spec.containers[1].name: Duplicate value: \"a\"".into(),
        ]),
        ("init container names are unique among all", json!({"containers": [web()], "initContainers": [web()]}), vec![
            "spec.initContainers[0].name: Duplicate value: \"web\"".into(),
        ]),
        ("container names are DNS labels", json!({"containers": [container(json!({"name": "Web"}))]}), vec![
            format!("spec.containers[0].name: Invalid value: \"Web\": {DNS1123_LABEL_ERROR}"),
        ]),
        ("container names are required", json!({"containers": [container(json!({"name": ""}))]}), vec![
            "spec.containers[0].name: Required value".into(),
        ]),
        ("images are required", json!({"containers": [{"name": "web"}]}), vec!["spec.containers[0].image: Required value".into()]),
        ("init images are required", json!({"containers": [web()], "initContainers": [{"name": "init"}]}), vec![
            "spec.initContainers[0].image: Required value".into(),
        ]),
        ("images have no surrounding space", json!({"containers": [container(json!({"image": "nginx "}))]}), vec![
            "spec.containers[0].image: Invalid value: \"nginx \": must not have leading or trailing whitespace".into(),
        ]),
        ("container ports are in range", json!({"containers": [container(json!({"ports": [{"containerPort": 70000}]}))]}), vec![
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive".into(),
        ]),
        ("container ports are required", json!({"containers": [container(json!({"ports": [{"name": "http"}]}))]}), vec![
            "spec.containers[0].ports[0].containerPort: Required value".into(),
        ]),
        ("host ports are in range", json!({"containers": [container(json!({"ports": [{"containerPort": 80, "hostPort": -1}]}))]}), vec![
            "spec.containers[0].ports[0].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive".into(),
        ]),
        ("port protocols", json!({"containers": [container(json!({"ports": [{"containerPort": 80, "protocol": "HTTP"}]}))]}), vec![
            "spec.containers[0].ports[0].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into(),
        ]),
        ("port names", json!({"containers": [container(json!({"ports": [{"containerPort": 80, "name": "Http"}]}))]}), vec![
            "spec.containers[0].ports[0].name: Invalid value: \"Http\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into(),
        ]),
        ("port names are unique", json!({"containers": [container(json!({"ports": [{"containerPort": 80, "name": "http"}, {"containerPort": 81, "name": "http"}]}))]}), vec![
            "spec.containers[0].ports[1].name: Duplicate value: \"http\"".into(),
        ]),
        ("host ports do not conflict", json!({"containers": [
            container(json!({"ports": [{"containerPort": 80, "hostPort": 8080}]})),
            container(json!({"name": "b", "ports": [{"containerPort": 81, "hostPort": 8080}]})),
        ]}), vec!["spec.containers[1].ports[0].hostPort: Duplicate value: \"/TCP/8080\"".into()]),
        ("restart policies", json!({"containers": [web()], "restartPolicy": "Sometimes"}), vec![
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".into(),
        ]),
        ("dns policies", json!({"containers": [web()], "dnsPolicy": "Google"}), vec![
            "spec.dnsPolicy: Unsupported value: \"Google\": supported values: \"ClusterFirst\", \"ClusterFirstWithHostNet\", \"Default\", \"None\"".into(),
        ]),
        ("dns policy None needs a config", json!({"containers": [web()], "dnsPolicy": "None"}), vec![
            "spec.dnsConfig: Required value: must provide `dnsConfig` when `dnsPolicy` is None".into(),
        ]),
        ("pull policies", json!({"containers": [container(json!({"imagePullPolicy": "Sometimes"}))]}), vec![
            "spec.containers[0].imagePullPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"IfNotPresent\", \"Never\"".into(),
        ]),
        ("termination message policies", json!({"containers": [container(json!({"terminationMessagePolicy": "Stdout"}))]}), vec![
            "spec.containers[0].terminationMessagePolicy: Unsupported value: \"Stdout\": supported values: \"File\", \"FallbackToLogsOnError\"".into(),
        ]),
        ("volume names are unique", json!({"containers": [web()], "volumes": [{"name": "data"}, {"name": "data"}]}), vec![
            "spec.volumes[1].name: Duplicate value: \"data\"".into(),
        ]),
        ("volume names are DNS labels", json!({"containers": [web()], "volumes": [{"name": "Data"}]}), vec![
            format!("spec.volumes[0].name: Invalid value: \"Data\": {DNS1123_LABEL_ERROR}"),
        ]),
        ("one source per volume", json!({"containers": [web()], "volumes": [{"name": "v", "emptyDir": {}, "hostPath": {"path": "/x"}}]}), vec![
            "spec.volumes[0].hostPath: Forbidden: may not specify more than 1 volume type".into(),
        ]),
        ("secret volumes name their secret", json!({"containers": [web()], "volumes": [{"name": "s", "secret": {}}]}), vec![
            "spec.volumes[0].secret.secretName: Required value".into(),
        ]),
        ("file modes are octal permissions", json!({"containers": [web()], "volumes": [{"name": "c", "configMap": {"name": "c", "defaultMode": 1000}}]}), vec![
            "spec.volumes[0].configMap.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive".into(),
        ]),
        ("mounts name existing volumes", json!({"containers": [container(json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))]}), vec![
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\"".into(),
        ]),
        ("mounts of good volumes are fine", json!({"containers": [container(json!({"volumeMounts": [{"name": "data", "mountPath": "/data"}]}))], "volumes": [{"name": "data"}]}), vec![]),
        ("mount paths are unique", json!({"containers": [container(json!({"volumeMounts": [{"name": "d", "mountPath": "/d"}, {"name": "d", "mountPath": "/d"}]}))], "volumes": [{"name": "d"}]}), vec![
            "spec.containers[0].volumeMounts[1].mountPath: Invalid value: \"/d\": must be unique".into(),
        ]),
        ("sub paths stay below the volume", json!({"containers": [container(json!({"volumeMounts": [{"name": "d", "mountPath": "/d", "subPath": "../etc"}]}))], "volumes": [{"name": "d"}]}), vec![
            "spec.containers[0].volumeMounts[0].subPath: Invalid value: \"../etc\": must not contain '..'".into(),
        ]),
        ("requests at most limits", json!({"containers": [container(json!({"resources": {"limits": {"cpu": "1"}, "requests": {"cpu": "1500m"}}}))]}), vec![
            "spec.containers[0].resources.requests: Invalid value: \"1500m\": must be less than or equal to cpu limit of 1".into(),
        ]),
        ("requests below limits are fine", json!({"containers": [container(json!({"resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "512Mi"}}}))]}), vec![]),
        ("quantities are not negative", json!({"containers": [container(json!({"resources": {"requests": {"memory": "-1"}}}))]}), vec![
            "spec.containers[0].resources.requests[memory]: Invalid value: \"-1\": must be greater than or equal to 0".into(),
        ]),
        ("quantities parse", json!({"containers": [container(json!({"resources": {"limits": {"cpu": "lots"}}}))]}), vec![
            "spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".into(),
            // Pods request their limits by default.
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"lots\": \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'".into(),
        ]),
        ("resource names are standard", json!({"containers": [container(json!({"resources": {"requests": {"gpu": "1"}}}))]}), vec![
            "spec.containers[0].resources.requests[gpu]: Invalid value: \"gpu\": must be a standard resource for containers".into(),
        ]),
        ("extended resources need equal limits", json!({"containers": [container(json!({"resources": {"requests": {"example.com/gpu": "1"}}}))]}), vec![
            "spec.containers[0].resources.limits: Required value: Limit must be set for non overcommitable resources".into(),
        ]),
        ("probes need a handler", json!({"containers": [container(json!({"livenessProbe": {"periodSeconds": 5}}))]}), vec![
            "spec.containers[0].livenessProbe: Required value: must specify a handler type".into(),
        ]),
        ("probes have one handler", json!({"containers": [container(json!({"readinessProbe": {"exec": {"command": ["true"]}, "tcpSocket": {"port": 80}}}))]}), vec![
            "spec.containers[0].readinessProbe.tcpSocket: Forbidden: may not specify more than 1 handler type".into(),
        ]),
        ("liveness succeeds once", json!({"containers": [container(json!({"livenessProbe": {"tcpSocket": {"port": 80}, "successThreshold": 2}}))]}), vec![
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1".into(),
        ]),
        ("probe ports", json!({"containers": [container(json!({"startupProbe": {"httpGet": {"port": 0}}}))]}), vec![
            "spec.containers[0].startupProbe.httpGet.port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
        ]),
        ("init containers have no probes", json!({"containers": [web()], "initContainers": [{"name": "init", "image": "busybox", "readinessProbe": {"tcpSocket": {"port": 80}}}]}), vec![
            "spec.initContainers[0].readinessProbe: Forbidden: may not be set for init containers without restartPolicy=Always".into(),
        ]),
        ("sidecars may have probes", json!({"containers": [web()], "initContainers": [{"name": "proxy", "image": "envoy", "restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"port": 80}}}]}), vec![]),
        ("only init containers restart on their own", json!({"containers": [container(json!({"restartPolicy": "Always"}))]}), vec![
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers".into(),
        ]),
        ("env names are required", json!({"containers": [container(json!({"env": [{"value": "x"}]}))]}), vec![
            "spec.containers[0].env[0].name: Required value".into(),
        ]),
        ("env names have no equals sign", json!({"containers": [container(json!({"env": [{"name": "A=B"}]}))]}), vec![
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='".into(),
        ]),
        ("deadlines are positive", json!({"containers": [web()], "activeDeadlineSeconds": 0}), vec![
            "spec.activeDeadlineSeconds: Invalid value: 0: must be between 1 and 2147483647, inclusive".into(),
        ]),
        ("tolerations with Exists have no value", json!({"containers": [web()], "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}), vec![
            "spec.tolerations[0].operator: Invalid value: \"v\": value must be empty when `operator` is 'Exists'".into(),
        ]),
        ("toleration effects", json!({"containers": [web()], "tolerations": [{"key": "k", "value": "v", "effect": "Evict"}]}), vec![
            "spec.tolerations[0].effect: Unsupported value: \"Evict\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"".into(),
        ]),
        ("node selectors are labels", json!({"containers": [web()], "nodeSelector": {"disk": "fast ssd"}}), vec![
            "spec.nodeSelector: Invalid value: \"fast ssd\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into(),
        ]),
        ("ephemeral containers are not created with the pod", json!({"containers": [web()], "ephemeralContainers": [{"name": "debug", "image": "busybox"}]}), vec![
            "spec.ephemeralContainers: Forbidden: cannot be set on create".into(),
        ]),
    ];
    for (what, spec, want) in cases {
        assert_eq!(errors(spec), want, "{what}");
    }
}

#[test]
fn pod_updates() {
    let old = json!({"containers": [web()], "tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]});
    // (what, patch to the old spec, expected messages; a trailing `*` matches any rest)
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("nothing changed", json!({}), vec![]),
        ("images may change", json!({"containers": [{"name": "web", "image": "nginx:1.27"}]}), vec![]),
        ("deadlines may be set", json!({"activeDeadlineSeconds": 100}), vec![]),
        (
            "tolerations may be added",
            json!({"tolerations": [
                {"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
                {"key": "other", "operator": "Exists"},
            ]}),
            vec![],
        ),
        (
            "toleration seconds may change",
            json!({"tolerations": [{"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}]}),
            vec![],
        ),
        (
            "tolerations may not be removed",
            json!({"tolerations": []}),
            vec!["spec.tolerations: Forbidden: existing toleration can not be modified except its tolerationSeconds"],
        ),
        (
            "other fields may not change",
            json!({"restartPolicy": "Never"}),
            vec![
                "spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n  - restartPolicy: \"Always\"\n  + restartPolicy: \"Never\"",
            ],
        ),
        (
            "ephemeral containers may be added",
            json!({"ephemeralContainers": [{"name": "debug", "image": "busybox"}]}),
            vec![],
        ),
        (
            "ephemeral containers have unique names",
            json!({"ephemeralContainers": [{"name": "web", "image": "busybox"}]}),
            vec!["spec.ephemeralContainers[0].name: Duplicate value: \"web\""],
        ),
        (
            "ephemeral containers have no ports",
            json!({"ephemeralContainers": [{"name": "debug", "image": "busybox", "ports": [{"containerPort": 80}]}]}),
            vec!["spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container"],
        ),
        (
            "images may not be emptied",
            json!({"containers": [{"name": "web", "image": ""}]}),
            vec!["spec.containers[0].image: Required value"],
        ),
    ];
    for (what, patch, want) in cases {
        let new = merged(&old, &patch);
        let got = errors_after_defaults("", "Pod", &pod(new), Some(&pod(old.clone())));
        assert_eq!(got, want, "{what}");
    }
}

#[test]
fn deadline_updates() {
    // (old deadline, new deadline, expected messages)
    let cases: Vec<(Value, Value, Vec<&str>)> = vec![
        (json!(100), json!(50), vec![]),
        (
            json!(100),
            json!(200),
            vec!["spec.activeDeadlineSeconds: Invalid value: 200: must be less than or equal to previous value"],
        ),
        (
            json!(100),
            Value::Null,
            vec![
                "spec.activeDeadlineSeconds: Invalid value: \"null\": must not update from a positive integer to nil value",
            ],
        ),
    ];
    for (old, new, want) in cases {
        let spec = |deadline: Value| json!({"containers": [web()], "activeDeadlineSeconds": deadline});
        let got = errors_after_defaults("", "Pod", &pod(spec(new.clone())), Some(&pod(spec(old.clone()))));
        assert_eq!(got, want, "{old} -> {new}");
    }
}

#[test]
fn ephemeral_containers_stay() {
    let debug = json!({"name": "debug", "image": "busybox"});
    let spec = |ephemeral: Value| json!({"containers": [web()], "ephemeralContainers": ephemeral});
    let old = pod(spec(json!([debug])));
    // (what, new ephemeral containers, expected messages)
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        ("kept", json!([debug]), vec![]),
        ("another added", json!([debug, {"name": "debug2", "image": "busybox"}]), vec![]),
        (
            "removed",
            json!([]),
            vec!["spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debug\" may not be removed"],
        ),
        (
            "changed",
            json!([{"name": "debug", "image": "alpine"}]),
            vec!["spec.ephemeralContainers[0]: Forbidden: existing ephemeral containers \"debug\" may not be changed"],
        ),
    ];
    for (what, ephemeral, want) in cases {
        assert_eq!(errors_after_defaults("", "Pod", &pod(spec(ephemeral)), Some(&old)), want, "{what}");
    }
}

#[test]
fn a_negative_grace_period_may_become_one() {
    let spec = |grace: i64| json!({"containers": [web()], "terminationGracePeriodSeconds": grace});
    assert_eq!(errors_after_defaults("", "Pod", &pod(spec(1)), Some(&pod(spec(-1)))), Vec::<String>::new());
    let got = errors_after_defaults("", "Pod", &pod(spec(5)), Some(&pod(spec(30))));
    assert_eq!(got.len(), 1);
    assert!(got[0].starts_with("spec: Forbidden: pod updates may not change fields other than"), "{got:?}");
}

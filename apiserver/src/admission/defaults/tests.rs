//! Tests for upstream defaulting.

use serde_json::{Value, json};

use super::{apply_defaults, image_pull_policy};

fn defaulted(group: &str, kind: &str, mut obj: Value) -> Value {
    apply_defaults(group, kind, &mut obj).expect("test objects decode");
    obj
}

fn bare_pod() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}
    })
}

fn pod_template(containers: Value) -> Value {
    json!({"metadata": {"labels": {"app": "x"}}, "spec": {"containers": containers}})
}

fn workload(kind: &str, spec: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": "x"}, "spec": spec})
}

#[test]
fn bare_pod_gets_every_pod_default() {
    let got = defaulted("", "Pod", bare_pod());
    let want = json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
        "spec": {
            "containers": [{
                "name": "web", "image": "nginx",
                "imagePullPolicy": "Always",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File"
            }],
            "dnsPolicy": "ClusterFirst",
            "enableServiceLinks": true,
            "restartPolicy": "Always",
            "schedulerName": "default-scheduler",
            "securityContext": {},
            "terminationGracePeriodSeconds": 30,
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        }
    });
    assert_eq!(got, want);
}

#[test]
fn pods_that_mention_the_node_taints_keep_their_own_tolerations() {
    let mut pod = bare_pod();
    pod["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]);
    let got = defaulted("", "Pod", pod);
    let tolerations = got["spec"]["tolerations"].as_array().cloned().unwrap_or_default();
    assert_eq!(tolerations.len(), 2);
    assert_eq!(tolerations[0]["tolerationSeconds"], 5);
    assert_eq!(tolerations[1]["key"], "node.kubernetes.io/not-ready");
}

#[test]
fn image_pull_policy_follows_the_tag() {
    let cases = [
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("nginx:1.25", "IfNotPresent"),
        ("registry.local:5000/team/nginx", "Always"),
        ("registry.local:5000/team/nginx:1.25", "IfNotPresent"),
        ("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "IfNotPresent"),
        ("nginx:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "Always"),
        ("", "IfNotPresent"),
    ];
    for (image, want) in cases {
        assert_eq!(image_pull_policy(image), want, "{image}");
    }
}

#[test]
fn pod_defaults_fill_only_what_is_missing() {
    // (what, pod spec, JSON pointer into the defaulted pod, expected value)
    let cases = [
        (
            "tagged image is IfNotPresent",
            json!({"containers": [{"name": "a", "image": "nginx:1.25"}]}),
            "/spec/containers/0/imagePullPolicy",
            json!("IfNotPresent"),
        ),
        (
            "explicit pull policy is kept",
            json!({"containers": [{"name": "a", "image": "nginx", "imagePullPolicy": "Never"}]}),
            "/spec/containers/0/imagePullPolicy",
            json!("Never"),
        ),
        (
            "explicit restart policy is kept",
            json!({"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}]}),
            "/spec/restartPolicy",
            json!("Never"),
        ),
        (
            "init containers get container defaults",
            json!({"initContainers": [{"name": "i", "image": "busybox"}], "containers": [{"name": "a", "image": "i"}]}),
            "/spec/initContainers/0/terminationMessagePath",
            json!("/dev/termination-log"),
        ),
        (
            "container ports default to TCP",
            json!({"containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80}]}]}),
            "/spec/containers/0/ports/0",
            json!({"containerPort": 80, "protocol": "TCP"}),
        ),
        (
            "host network copies container ports to host ports",
            json!({"hostNetwork": true, "containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80}]}]}),
            "/spec/containers/0/ports/0",
            json!({"containerPort": 80, "hostPort": 80, "protocol": "TCP"}),
        ),
        (
            "probes get thresholds and HTTP defaults",
            json!({"containers": [{"name": "a", "image": "i", "livenessProbe": {"httpGet": {"port": 8080}}}]}),
            "/spec/containers/0/livenessProbe",
            json!({
                "httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
                "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3
            }),
        ),
        (
            "probe zero values count as unset",
            json!({"containers": [{"name": "a", "image": "i", "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 0, "timeoutSeconds": 5}}]}),
            "/spec/containers/0/readinessProbe",
            json!({
                "tcpSocket": {"port": 80},
                "timeoutSeconds": 5, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3
            }),
        ),
        (
            "grpc probes get an empty service",
            json!({"containers": [{"name": "a", "image": "i", "startupProbe": {"grpc": {"port": 9000}}}]}),
            "/spec/containers/0/startupProbe/grpc",
            json!({"port": 9000, "service": ""}),
        ),
        (
            "lifecycle HTTP hooks get a scheme and path",
            json!({"containers": [{"name": "a", "image": "i", "lifecycle": {"preStop": {"httpGet": {"port": 80}}}}]}),
            "/spec/containers/0/lifecycle/preStop/httpGet",
            json!({"path": "/", "port": 80, "scheme": "HTTP"}),
        ),
        (
            "env field refs default to v1",
            json!({"containers": [{"name": "a", "image": "i", "env": [{"name": "N", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}),
            "/spec/containers/0/env/0/valueFrom/fieldRef",
            json!({"apiVersion": "v1", "fieldPath": "metadata.name"}),
        ),
        (
            "requests default to limits on a pod",
            json!({"containers": [{"name": "a", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "500m"}}}]}),
            "/spec/containers/0/resources/requests",
            json!({"cpu": "500m", "memory": "1Gi"}),
        ),
        (
            "volumes without a source are emptyDir",
            json!({"containers": [{"name": "a", "image": "i"}], "volumes": [{"name": "scratch"}]}),
            "/spec/volumes/0",
            json!({"name": "scratch", "emptyDir": {}}),
        ),
        (
            "secret volumes get mode 0644",
            json!({"containers": [{"name": "a", "image": "i"}], "volumes": [{"name": "s", "secret": {"secretName": "s"}}]}),
            "/spec/volumes/0/secret",
            json!({"secretName": "s", "defaultMode": 420}),
        ),
        (
            "config map volumes get mode 0644",
            json!({"containers": [{"name": "a", "image": "i"}], "volumes": [{"name": "c", "configMap": {"name": "c"}}]}),
            "/spec/volumes/0/configMap",
            json!({"name": "c", "defaultMode": 420}),
        ),
        (
            "projected volumes get mode, token expiry and field ref versions",
            json!({"containers": [{"name": "a", "image": "i"}], "volumes": [{"name": "p", "projected": {"sources": [
                {"serviceAccountToken": {"path": "token"}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}
            ]}}]}),
            "/spec/volumes/0/projected",
            json!({"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3600}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
            ]}),
        ),
        (
            "host path volumes get an empty type",
            json!({"containers": [{"name": "a", "image": "i"}], "volumes": [{"name": "h", "hostPath": {"path": "/data"}}]}),
            "/spec/volumes/0/hostPath",
            json!({"path": "/data", "type": ""}),
        ),
        (
            "explicit grace period is kept",
            json!({"terminationGracePeriodSeconds": 0, "containers": [{"name": "a", "image": "i"}]}),
            "/spec/terminationGracePeriodSeconds",
            json!(0),
        ),
    ];
    for (what, spec, pointer, want) in cases {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": spec});
        let got = defaulted("", "Pod", pod);
        assert_eq!(got.pointer(pointer), Some(&want), "{what}: {got:#}");
    }
}

#[test]
fn pod_defaults_leave_priority_unset() {
    let got = defaulted("", "Pod", bare_pod());
    assert_eq!(got.pointer("/spec/priority"), None);
}

#[test]
fn templates_get_pod_spec_defaults_but_not_pod_only_ones() {
    let containers = json!([{"name": "a", "image": "i", "resources": {"limits": {"cpu": "1"}}}]);
    let got = defaulted(
        "apps",
        "Deployment",
        workload(
            "Deployment",
            json!({
                "selector": {"matchLabels": {"app": "x"}},
                "template": pod_template(containers),
            }),
        ),
    );
    let spec = &got["spec"]["template"]["spec"];
    assert_eq!(spec["restartPolicy"], "Always");
    assert_eq!(spec["dnsPolicy"], "ClusterFirst");
    assert_eq!(spec["containers"][0]["imagePullPolicy"], "Always");
    assert_eq!(spec.get("enableServiceLinks"), None);
    assert_eq!(spec["containers"][0]["resources"], json!({"limits": {"cpu": "1"}}));
}

#[test]
fn service_defaults() {
    // (what, service spec, JSON pointer into the spec, expected value)
    let cases = [
        ("type", json!({"ports": [{"port": 80}]}), "/type", json!("ClusterIP")),
        ("session affinity", json!({"ports": [{"port": 80}]}), "/sessionAffinity", json!("None")),
        ("port protocol", json!({"ports": [{"port": 80}]}), "/ports/0/protocol", json!("TCP")),
        ("target port from port", json!({"ports": [{"port": 80}]}), "/ports/0/targetPort", json!(80)),
        (
            "zero target port from port",
            json!({"ports": [{"port": 81, "targetPort": 0}]}),
            "/ports/0/targetPort",
            json!(81),
        ),
        (
            "named target port is kept",
            json!({"ports": [{"port": 80, "targetPort": "http"}]}),
            "/ports/0/targetPort",
            json!("http"),
        ),
        ("internal traffic policy", json!({"ports": [{"port": 80}]}), "/internalTrafficPolicy", json!("Cluster")),
        ("ip family policy", json!({"ports": [{"port": 80}]}), "/ipFamilyPolicy", json!("SingleStack")),
        ("ip families", json!({"ports": [{"port": 80}]}), "/ipFamilies", json!(["IPv4"])),
        ("no external policy for ClusterIP", json!({"ports": [{"port": 80}]}), "/externalTrafficPolicy", Value::Null),
        (
            "external policy for NodePort",
            json!({"type": "NodePort", "ports": [{"port": 80}]}),
            "/externalTrafficPolicy",
            json!("Cluster"),
        ),
        (
            "external policy for LoadBalancer",
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
            "/externalTrafficPolicy",
            json!("Cluster"),
        ),
        (
            "LB node ports",
            json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
            "/allocateLoadBalancerNodePorts",
            json!(true),
        ),
        (
            "client IP timeout",
            json!({"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}),
            "/sessionAffinityConfig",
            json!({"clientIP": {"timeoutSeconds": 10800}}),
        ),
        (
            "no families for ExternalName",
            json!({"type": "ExternalName", "externalName": "example.com"}),
            "/ipFamilies",
            Value::Null,
        ),
        (
            "no internal policy for ExternalName",
            json!({"type": "ExternalName", "externalName": "example.com"}),
            "/internalTrafficPolicy",
            Value::Null,
        ),
    ];
    for (what, spec, pointer, want) in cases {
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": spec});
        let got = defaulted("", "Service", svc);
        let value = got["spec"].pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(value, want, "{what}: {got:#}");
    }
}

#[test]
fn deployment_gets_strategy_and_template_defaults() {
    let got = defaulted(
        "apps",
        "Deployment",
        workload(
            "Deployment",
            json!({
                "selector": {"matchLabels": {"app": "x"}},
                "template": pod_template(json!([{"name": "a", "image": "nginx:1.25"}])),
            }),
        ),
    );
    let spec = &got["spec"];
    assert_eq!(spec["replicas"], 1);
    assert_eq!(
        spec["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    );
    assert_eq!(spec["revisionHistoryLimit"], 10);
    assert_eq!(spec["progressDeadlineSeconds"], 600);
    assert_eq!(spec["selector"], json!({"matchLabels": {"app": "x"}}));
    assert_eq!(spec["template"]["spec"]["schedulerName"], "default-scheduler");
    assert_eq!(spec["template"]["spec"]["terminationGracePeriodSeconds"], 30);
}

#[test]
fn recreate_deployment_gets_no_rolling_update() {
    let got = defaulted(
        "apps",
        "Deployment",
        workload(
            "Deployment",
            json!({
                "selector": {"matchLabels": {"app": "x"}},
                "strategy": {"type": "Recreate"},
                "template": pod_template(json!([{"name": "a", "image": "i"}])),
            }),
        ),
    );
    assert_eq!(got["spec"]["strategy"], json!({"type": "Recreate"}));
}

#[test]
fn apps_selectors_are_never_defaulted() {
    for kind in ["Deployment", "ReplicaSet", "StatefulSet", "DaemonSet"] {
        let got = defaulted(
            "apps",
            kind,
            workload(
                kind,
                json!({
                    "template": pod_template(json!([{"name": "a", "image": "i"}])),
                }),
            ),
        );
        assert_eq!(got["spec"].get("selector"), None, "{kind}");
    }
}

#[test]
fn workload_defaults() {
    // (what, group, kind, object, JSON pointer, expected value)
    let template = pod_template(json!([{"name": "a", "image": "i"}]));
    let cases = [
        (
            "rs replicas",
            "apps",
            "ReplicaSet",
            workload("ReplicaSet", json!({"template": template})),
            "/spec/replicas",
            json!(1),
        ),
        (
            "rs template",
            "apps",
            "ReplicaSet",
            workload("ReplicaSet", json!({"template": template})),
            "/spec/template/spec/restartPolicy",
            json!("Always"),
        ),
        (
            "rs keeps zero replicas",
            "apps",
            "ReplicaSet",
            workload("ReplicaSet", json!({"replicas": 0, "template": template})),
            "/spec/replicas",
            json!(0),
        ),
        (
            "sts replicas",
            "apps",
            "StatefulSet",
            workload("StatefulSet", json!({"template": template})),
            "/spec/replicas",
            json!(1),
        ),
        (
            "sts pod management",
            "apps",
            "StatefulSet",
            workload("StatefulSet", json!({"template": template})),
            "/spec/podManagementPolicy",
            json!("OrderedReady"),
        ),
        (
            "sts update strategy",
            "apps",
            "StatefulSet",
            workload("StatefulSet", json!({"template": template})),
            "/spec/updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
        ),
        (
            "sts history",
            "apps",
            "StatefulSet",
            workload("StatefulSet", json!({"template": template})),
            "/spec/revisionHistoryLimit",
            json!(10),
        ),
        (
            "sts pvc retention",
            "apps",
            "StatefulSet",
            workload("StatefulSet", json!({"template": template})),
            "/spec/persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
        ),
        (
            "sts claim templates",
            "apps",
            "StatefulSet",
            workload(
                "StatefulSet",
                json!({"template": template, "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}),
            ),
            "/spec/volumeClaimTemplates/0",
            json!({"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "volumeMode": "Filesystem"}, "status": {"phase": "Pending"}}),
        ),
        (
            "ds update strategy",
            "apps",
            "DaemonSet",
            workload("DaemonSet", json!({"template": template})),
            "/spec/updateStrategy",
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1}}),
        ),
        (
            "ds history",
            "apps",
            "DaemonSet",
            workload("DaemonSet", json!({"template": template})),
            "/spec/revisionHistoryLimit",
            json!(10),
        ),
        (
            "ds template",
            "apps",
            "DaemonSet",
            workload("DaemonSet", json!({"template": template})),
            "/spec/template/spec/dnsPolicy",
            json!("ClusterFirst"),
        ),
        (
            "rc replicas",
            "",
            "ReplicationController",
            json!({"spec": {"template": template}}),
            "/spec/replicas",
            json!(1),
        ),
        (
            "rc selector from template",
            "",
            "ReplicationController",
            json!({"spec": {"template": template}}),
            "/spec/selector",
            json!({"app": "x"}),
        ),
        (
            "rc labels from template",
            "",
            "ReplicationController",
            json!({"metadata": {"name": "x"}, "spec": {"template": template}}),
            "/metadata/labels",
            json!({"app": "x"}),
        ),
        (
            "rc template",
            "",
            "ReplicationController",
            json!({"spec": {"template": template}}),
            "/spec/template/spec/schedulerName",
            json!("default-scheduler"),
        ),
    ];
    for (what, group, kind, obj, pointer, want) in cases {
        let got = defaulted(group, kind, obj);
        assert_eq!(got.pointer(pointer), Some(&want), "{what}: {got:#}");
    }
}

#[test]
fn batch_defaults() {
    let template = json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "a", "image": "i"}]}});
    let job = |extra: Value| {
        let mut spec = json!({"template": template});
        for (k, v) in extra.as_object().into_iter().flatten() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"}, "spec": spec})
    };
    let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "c"},
        "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": template}}}});
    // (what, kind, object, JSON pointer, expected value)
    let cases = [
        ("completions", "Job", job(json!({})), "/spec/completions", json!(1)),
        ("parallelism", "Job", job(json!({})), "/spec/parallelism", json!(1)),
        (
            "completions stay unset with parallelism",
            "Job",
            job(json!({"parallelism": 3})),
            "/spec/completions",
            Value::Null,
        ),
        ("parallelism with completions", "Job", job(json!({"completions": 5})), "/spec/parallelism", json!(1)),
        ("backoff limit", "Job", job(json!({})), "/spec/backoffLimit", json!(6)),
        ("completion mode", "Job", job(json!({})), "/spec/completionMode", json!("NonIndexed")),
        ("suspend", "Job", job(json!({})), "/spec/suspend", json!(false)),
        ("replacement policy", "Job", job(json!({})), "/spec/podReplacementPolicy", json!("TerminatingOrFailed")),
        ("manual selector stays unset", "Job", job(json!({})), "/spec/manualSelector", Value::Null),
        ("restart policy as given", "Job", job(json!({})), "/spec/template/spec/restartPolicy", json!("Never")),
        ("template defaults", "Job", job(json!({})), "/spec/template/spec/dnsPolicy", json!("ClusterFirst")),
        ("concurrency", "CronJob", cron.clone(), "/spec/concurrencyPolicy", json!("Allow")),
        ("cron suspend", "CronJob", cron.clone(), "/spec/suspend", json!(false)),
        ("successful history", "CronJob", cron.clone(), "/spec/successfulJobsHistoryLimit", json!(3)),
        ("failed history", "CronJob", cron.clone(), "/spec/failedJobsHistoryLimit", json!(1)),
        (
            "job template pod defaults",
            "CronJob",
            cron.clone(),
            "/spec/jobTemplate/spec/template/spec/schedulerName",
            json!("default-scheduler"),
        ),
        ("job template is not a job", "CronJob", cron.clone(), "/spec/jobTemplate/spec/backoffLimit", Value::Null),
    ];
    for (what, kind, obj, pointer, want) in cases {
        let got = defaulted("batch", kind, obj);
        let value = got.pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(value, want, "{what}: {got:#}");
    }
}

#[test]
fn other_kind_defaults() {
    // (what, group, kind, object, JSON pointer, expected value)
    let cases = [
        (
            "namespace finalizer",
            "",
            "Namespace",
            json!({"metadata": {"name": "team"}}),
            "/spec/finalizers",
            json!(["kubernetes"]),
        ),
        (
            "namespace name label",
            "",
            "Namespace",
            json!({"metadata": {"name": "team"}}),
            "/metadata/labels",
            json!({"kubernetes.io/metadata.name": "team"}),
        ),
        ("namespace phase", "", "Namespace", json!({"metadata": {"name": "team"}}), "/status/phase", json!("Active")),
        (
            "finalized namespace stays finalized",
            "",
            "Namespace",
            json!({"metadata": {"name": "t"}, "spec": {"finalizers": []}}),
            "/spec/finalizers",
            json!([]),
        ),
        (
            "deleting namespace gets no finalizer back",
            "",
            "Namespace",
            json!({"metadata": {"name": "t", "deletionTimestamp": "2024-01-01T00:00:00Z"}, "spec": {}}),
            "/spec/finalizers",
            Value::Null,
        ),
        ("secret type", "", "Secret", json!({"metadata": {"name": "s"}}), "/type", json!("Opaque")),
        (
            "secret type kept",
            "",
            "Secret",
            json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls"}),
            "/type",
            json!("kubernetes.io/tls"),
        ),
        (
            "pv reclaim",
            "",
            "PersistentVolume",
            json!({"spec": {"capacity": {"storage": "1Gi"}}}),
            "/spec/persistentVolumeReclaimPolicy",
            json!("Retain"),
        ),
        ("pv mode", "", "PersistentVolume", json!({"spec": {}}), "/spec/volumeMode", json!("Filesystem")),
        ("pv phase", "", "PersistentVolume", json!({"spec": {}}), "/status/phase", json!("Pending")),
        (
            "pvc mode",
            "",
            "PersistentVolumeClaim",
            json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
            "/spec/volumeMode",
            json!("Filesystem"),
        ),
        (
            "endpoints port",
            "",
            "Endpoints",
            json!({"subsets": [{"ports": [{"port": 80}]}]}),
            "/subsets/0/ports/0/protocol",
            json!("TCP"),
        ),
        (
            "hpa min replicas",
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}),
            "/spec/minReplicas",
            json!(1),
        ),
        (
            "hpa cpu metric",
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "d"}}}),
            "/spec/metrics",
            json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]),
        ),
        (
            "hpa behavior completed",
            "autoscaling",
            "HorizontalPodAutoscaler",
            json!({"spec": {"maxReplicas": 5, "scaleTargetRef": {"kind": "Deployment", "name": "d"},
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 15}}}}),
            "/spec/behavior",
            json!({
                "scaleUp": {"stabilizationWindowSeconds": 0, "selectPolicy": "Max", "policies": [
                    {"type": "Pods", "value": 4, "periodSeconds": 15}, {"type": "Percent", "value": 100, "periodSeconds": 15}]},
                "scaleDown": {"stabilizationWindowSeconds": 15, "selectPolicy": "Max", "policies": [
                    {"type": "Percent", "value": 100, "periodSeconds": 15}]},
            }),
        ),
        (
            "storage class reclaim",
            "storage.k8s.io",
            "StorageClass",
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "s"}, "provisioner": "p"}),
            "/reclaimPolicy",
            json!("Delete"),
        ),
        (
            "storage class binding",
            "storage.k8s.io",
            "StorageClass",
            json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": {"name": "s"}, "provisioner": "p"}),
            "/volumeBindingMode",
            json!("Immediate"),
        ),
        (
            "netpol ingress only",
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}}}),
            "/spec/policyTypes",
            json!(["Ingress"]),
        ),
        (
            "netpol with egress",
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "egress": [{}]}}),
            "/spec/policyTypes",
            json!(["Ingress", "Egress"]),
        ),
        (
            "netpol port protocol",
            "networking.k8s.io",
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "ingress": [{"ports": [{"port": 80}]}]}}),
            "/spec/ingress/0/ports/0",
            json!({"port": 80, "protocol": "TCP"}),
        ),
        (
            "endpoint slice port",
            "discovery.k8s.io",
            "EndpointSlice",
            json!({"addressType": "IPv4", "endpoints": [], "ports": [{"port": 80}]}),
            "/ports/0",
            json!({"name": "", "port": 80, "protocol": "TCP"}),
        ),
        (
            "binding role ref group",
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "Role", "name": "r"}}),
            "/roleRef/apiGroup",
            json!("rbac.authorization.k8s.io"),
        ),
        (
            "binding user group",
            "rbac.authorization.k8s.io",
            "ClusterRoleBinding",
            json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "r"}, "subjects": [{"kind": "User", "name": "u"}]}),
            "/subjects/0/apiGroup",
            json!("rbac.authorization.k8s.io"),
        ),
        (
            "binding service account group",
            "rbac.authorization.k8s.io",
            "RoleBinding",
            json!({"metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"}, "subjects": [{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]}),
            "/subjects/0/apiGroup",
            Value::Null,
        ),
    ];
    for (what, group, kind, obj, pointer, want) in cases {
        let got = defaulted(group, kind, obj);
        let value = got.pointer(pointer).cloned().unwrap_or(Value::Null);
        assert_eq!(value, want, "{what}: {got:#}");
    }
}

#[test]
fn kinds_without_defaults_are_untouched() {
    let cases = [
        (
            "",
            "ConfigMap",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}, "extra": 1}),
        ),
        ("", "Node", json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n"}})),
        ("networking.k8s.io", "Ingress", json!({"spec": {"rules": [{"host": "a"}]}})),
        ("coordination.k8s.io", "Lease", json!({"spec": {"renewTime": "2024-01-01T00:00:00.123456Z"}})),
        ("policy", "PodDisruptionBudget", json!({"spec": {"minAvailable": 1}})),
        ("example.com", "Widget", json!({"spec": {"anything": true}})),
    ];
    for (group, kind, obj) in cases {
        assert_eq!(defaulted(group, kind, obj.clone()), obj, "{group}/{kind}");
    }
}

#[test]
fn metadata_and_status_are_not_reencoded() {
    let mut pod = bare_pod();
    pod["metadata"]["creationTimestamp"] = json!("2024-01-01T00:00:00.5Z");
    pod["status"] = json!({"conditions": [{"type": "Ready", "status": "True", "lastProbeTime": null}]});
    let got = defaulted("", "Pod", pod.clone());
    assert_eq!(got["metadata"], pod["metadata"]);
    assert_eq!(got["status"], pod["status"]);
}

#[test]
fn undecodable_specs_are_errors() {
    let mut pod = json!({"spec": {"containers": "not a list"}});
    assert!(apply_defaults("", "Pod", &mut pod).is_err());
    let mut not_an_object = json!(["a"]);
    assert!(apply_defaults("", "Service", &mut not_an_object).is_err());
}

#[test]
fn defaulting_twice_is_defaulting_once() {
    let template = pod_template(json!([{"name": "a", "image": "i", "ports": [{"containerPort": 80}],
        "livenessProbe": {"httpGet": {"port": 80}}, "resources": {"limits": {"cpu": "1"}}}]));
    let cases = [
        ("", "Pod", bare_pod()),
        (
            "",
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": template["spec"]["containers"], "volumes": [{"name": "v"}]}}),
        ),
        (
            "",
            "Service",
            json!({"spec": {"type": "LoadBalancer", "sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
        ),
        ("", "Namespace", json!({"metadata": {"name": "n"}})),
        ("", "Secret", json!({"metadata": {"name": "s"}})),
        ("", "ReplicationController", json!({"metadata": {"name": "r"}, "spec": {"template": template}})),
        (
            "apps",
            "Deployment",
            workload("Deployment", json!({"selector": {"matchLabels": {"app": "x"}}, "template": template})),
        ),
        ("apps", "StatefulSet", workload("StatefulSet", json!({"template": template}))),
        ("apps", "DaemonSet", workload("DaemonSet", json!({"template": template}))),
        ("batch", "Job", json!({"metadata": {"name": "j"}, "spec": {"template": template}})),
        ("batch", "CronJob", json!({"spec": {"schedule": "@daily", "jobTemplate": {"spec": {"template": template}}}})),
        ("networking.k8s.io", "NetworkPolicy", json!({"spec": {"egress": [{"ports": [{"port": 53}]}]}})),
    ];
    for (group, kind, obj) in cases {
        let once = defaulted(group, kind, obj);
        let twice = defaulted(group, kind, once.clone());
        assert_eq!(once, twice, "{group}/{kind}");
    }
}

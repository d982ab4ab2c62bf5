//! Tests for Service rules.

use serde_json::{Value, json};

use super::super::tests::{DNS1123_LABEL_ERROR, errors_after_defaults, merged};

fn service(patch: Value) -> Value {
    let base = json!({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}
    });
    merged(&base, &json!({"spec": patch}))
}

#[test]
fn service_rules() {
    // (what, spec patch, expected messages)
    let cases: Vec<(&str, Value, Vec<String>)> = vec![
        ("valid service", json!({}), vec![]),
        ("ports are required", json!({"ports": null}), vec!["spec.ports: Required value".into()]),
        ("headless services need no ports", json!({"ports": null, "clusterIP": "None"}), vec![]),
        ("external names need no ports", json!({"ports": null, "type": "ExternalName", "externalName": "db.example.com."}), vec![]),
        ("external names are required", json!({"ports": null, "type": "ExternalName"}), vec!["spec.externalName: Required value".into()]),
        ("external names are DNS names", json!({"ports": null, "type": "ExternalName", "externalName": "db_1"}), vec![
            "spec.externalName: Invalid value: \"db_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into(),
        ]),
        ("several ports are named", json!({"ports": [{"port": 80}, {"port": 443}]}), vec![
            "spec.ports[0].name: Required value".into(),
            "spec.ports[1].name: Required value".into(),
        ]),
        ("port names are unique", json!({"ports": [{"name": "http", "port": 80}, {"name": "http", "port": 8080}]}), vec![
            "spec.ports[1].name: Duplicate value: \"http\"".into(),
        ]),
        ("port names are DNS labels", json!({"ports": [{"name": "HTTP", "port": 80}]}), vec![
            format!("spec.ports[0].name: Invalid value: \"HTTP\": {DNS1123_LABEL_ERROR}"),
        ]),
        ("ports are in range", json!({"ports": [{"port": 0, "targetPort": 80}]}), vec![
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive".into(),
        ]),
        ("target ports are in range", json!({"ports": [{"port": 80, "targetPort": 65536}]}), vec![
            "spec.ports[0].targetPort: Invalid value: 65536: must be between 1 and 65535, inclusive".into(),
        ]),
        ("named target ports", json!({"ports": [{"port": 80, "targetPort": "web--http"}]}), vec![
            "spec.ports[0].targetPort: Invalid value: \"web--http\": must not contain consecutive hyphens".into(),
        ]),
        ("protocols", json!({"ports": [{"port": 80, "protocol": "ICMP"}]}), vec![
            "spec.ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"SCTP\", \"TCP\", \"UDP\"".into(),
        ]),
        ("port and protocol are unique", json!({"ports": [{"name": "a", "port": 80}, {"name": "b", "port": 80}]}), vec![
            "spec.ports[1]: Duplicate value: core.ServicePort{Name:\"\", Protocol:\"TCP\", AppProtocol:(*string)(nil), Port:80, TargetPort:intstr.IntOrString{Type:0, IntVal:0, StrVal:\"\"}, NodePort:0}".into(),
        ]),
        ("the same port on two protocols", json!({"ports": [{"name": "a", "port": 53}, {"name": "b", "port": 53, "protocol": "UDP"}]}), vec![]),
        ("types", json!({"type": "Internal"}), vec![
            "spec.type: Unsupported value: \"Internal\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\"".into(),
        ]),
        ("session affinities", json!({"sessionAffinity": "Sticky"}), vec![
            "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\"".into(),
        ]),
        ("client IP timeouts", json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 0}}}), vec![
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds: Invalid value: 0: must be greater than 0 and less than 86400".into(),
        ]),
        ("node ports are not for ClusterIP", json!({"ports": [{"port": 80, "nodePort": 30080}]}), vec![
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'".into(),
        ]),
        ("node ports are for NodePort", json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}), vec![]),
        ("headless is not NodePort", json!({"type": "NodePort", "clusterIP": "None"}), vec![
            "spec.clusterIP: Invalid value: \"None\": may not be set to 'None' for NodePort services".into(),
        ]),
        ("external policy is for external services", json!({"externalTrafficPolicy": "Local"}), vec![
            "spec.externalTrafficPolicy: Invalid value: \"Local\": may only be set for externally-accessible services".into(),
        ]),
        ("external policies", json!({"type": "LoadBalancer", "externalTrafficPolicy": "Nearest"}), vec![
            "spec.externalTrafficPolicy: Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\"".into(),
        ]),
        ("internal policies", json!({"internalTrafficPolicy": "Nearest"}), vec![
            "spec.internalTrafficPolicy: Unsupported value: \"Nearest\": supported values: \"Cluster\", \"Local\"".into(),
        ]),
        ("cluster IPs are IPs", json!({"clusterIP": "10.0.0.300"}), vec![
            "spec.clusterIP: Invalid value: \"10.0.0.300\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".into(),
        ]),
        ("selectors are labels", json!({"selector": {"app": "web server"}}), vec![
            "spec.selector: Invalid value: \"web server\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into(),
        ]),
        (
            "clusterIPs start with clusterIP",
            json!({"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.2"]}),
            vec![
                "spec.clusterIPs: Invalid value: []string{\"10.96.0.2\"}: first value must match `clusterIP`".into(),
            ],
        ),
    ];
    for (what, patch, want) in cases {
        assert_eq!(errors_after_defaults("", "Service", &service(patch), None), want, "{what}");
    }
}

#[test]
fn service_updates() {
    let allocated = json!({"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"]});
    // (what, old patch, new patch, expected messages)
    let cases: Vec<(&str, Value, Value, Vec<&str>)> = vec![
        ("ports may change", allocated.clone(), json!({"ports": [{"port": 8080}]}), vec![]),
        (
            "cluster IPs are fixed",
            allocated.clone(),
            json!({"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]}),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.11\"}: may not change once set"],
        ),
        (
            "an edit of clusterIP alone is a change",
            allocated.clone(),
            json!({"clusterIP": "10.96.0.12"}),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.96.0.12\"}: may not change once set"],
        ),
        ("left-out cluster IPs are kept", allocated.clone(), json!({"clusterIP": null, "clusterIPs": null}), vec![]),
        ("a second IP may be added", allocated.clone(), json!({"clusterIPs": ["10.96.0.10", "fd00::10"]}), vec![]),
        (
            "the primary IP stays first",
            allocated.clone(),
            json!({"clusterIPs": ["fd00::10", "10.96.0.10"]}),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"fd00::10\", \"10.96.0.10\"}: may not change once set"],
        ),
        (
            "a service may become an external name",
            allocated.clone(),
            json!({"type": "ExternalName", "externalName": "db.example.com", "clusterIP": null, "clusterIPs": null, "ipFamilies": null, "ipFamilyPolicy": null, "internalTrafficPolicy": null}),
            vec![],
        ),
        ("headless stays headless", json!({"clusterIP": "None", "clusterIPs": ["None"]}), json!({}), vec![]),
    ];
    for (what, old_patch, new_patch, want) in cases {
        let old = service(old_patch);
        let new = merged(&old, &json!({"spec": new_patch}));
        assert_eq!(errors_after_defaults("", "Service", &new, Some(&old)), want, "{what}");
    }
}

//! Pod rules: the PodSpec (containers, ports, probes, volumes and mounts, resources, policies),
//! pod templates, and which fields a Pod update may change.

use std::collections::{BTreeMap, BTreeSet};

use api_types::k8s_openapi::api::core::v1 as core;
use api_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api_types::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use api_types::names;
use api_types::quantity::{self, ParsedQuantity};
use serde_json::Value;

use super::{
    FieldError, IS_NEGATIVE, Path, decode, name_errors, non_negative, not_found, optional_supported_value,
    port_name_messages, port_number, port_protocol, supported_value, validate_labels,
};

/// What a Pod update may change, as upstream lists it.
const UPDATABLE_POD_SPEC_FIELDS: &[&str] = &[
    "`spec.containers[*].image`",
    "`spec.initContainers[*].image`",
    "`spec.activeDeadlineSeconds`",
    "`spec.tolerations` (only additions to existing tolerations)",
    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
];
const FILE_MODE_ERROR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const HANDLER_REQUIRED: &str = "must specify a handler type";
const ONE_HANDLER: &str = "may not specify more than 1 handler type";
const INIT_CONTAINER_FORBIDDEN: &str = "may not be set for init containers without restartPolicy=Always";

pub(super) fn validate_pod(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec: core::PodSpec = match decode(obj, "spec") {
        Ok(spec) => spec,
        Err(e) => return vec![e],
    };
    let path = Path::new("spec");
    let mut errs = validate_pod_spec(&spec, &path);
    errs.extend(pod_only(&spec, &path));
    match old.map(|old| decode::<core::PodSpec>(old, "spec")) {
        None => {
            if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
                errs.push(FieldError::forbidden(path.child("ephemeralContainers"), "cannot be set on create"));
            }
        }
        Some(Ok(old_spec)) => errs.extend(pod_update(&spec, &old_spec, &path)),
        Some(Err(e)) => errs.push(e),
    }
    errs
}

/// A pod template in a workload: its labels and annotations, and its spec as a PodSpec.
pub(super) fn validate_pod_template(template: &core::PodTemplateSpec, path: &Path) -> Vec<FieldError> {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut errs = validate_labels(&path.child("labels"), meta.labels.as_ref());
    for key in meta.annotations.iter().flatten().map(|(k, _)| k) {
        errs.extend(name_errors(&path.child("annotations"), key, names::is_qualified_name(&key.to_lowercase())));
    }
    let spec = template.spec.clone().unwrap_or_default();
    errs.extend(validate_pod_spec(&spec, &path.child("spec")));
    if spec.ephemeral_containers.as_ref().is_some_and(|e| !e.is_empty()) {
        errs.push(FieldError::forbidden(
            path.child("spec").child("ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    errs
}

/// The rules of every PodSpec, in a Pod or a template.
pub(super) fn validate_pod_spec(spec: &core::PodSpec, path: &Path) -> Vec<FieldError> {
    let (volumes, mut errs) = validate_volumes(spec.volumes.as_deref().unwrap_or_default(), &path.child("volumes"));
    errs.extend(validate_containers(spec, &volumes, path));
    errs.extend(supported_value(
        &path.child("restartPolicy"),
        spec.restart_policy.as_deref(),
        &["Always", "OnFailure", "Never"],
    ));
    let dns_policy = spec.dns_policy.as_deref();
    errs.extend(supported_value(
        &path.child("dnsPolicy"),
        dns_policy,
        &["ClusterFirst", "ClusterFirstWithHostNet", "Default", "None"],
    ));
    if dns_policy == Some("None") && spec.dns_config.is_none() {
        errs.push(FieldError::required(path.child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"));
    }
    errs.extend(validate_labels(&path.child("nodeSelector"), spec.node_selector.as_ref()));
    if let Some(name) = spec.service_account_name.as_deref().filter(|n| !n.is_empty()) {
        errs.extend(name_errors(&path.child("serviceAccountName"), name, names::is_dns1123_subdomain(name)));
    }
    if let Some(name) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        errs.extend(name_errors(&path.child("nodeName"), name, names::is_dns1123_subdomain(name)));
    }
    if let Some(seconds) = spec.active_deadline_seconds
        && !(1..=i64::from(i32::MAX)).contains(&seconds)
    {
        errs.push(FieldError::invalid_raw(
            path.child("activeDeadlineSeconds"),
            seconds.to_string(),
            "must be between 1 and 2147483647, inclusive",
        ));
    }
    for (field, value) in [("hostname", &spec.hostname), ("subdomain", &spec.subdomain)] {
        if let Some(value) = value.as_deref().filter(|v| !v.is_empty()) {
            errs.extend(name_errors(&path.child(field), value, names::is_dns1123_label(value)));
        }
    }
    errs.extend(validate_tolerations(spec.tolerations.as_deref().unwrap_or_default(), &path.child("tolerations")));
    errs.extend(validate_ephemeral_containers(spec, &volumes, &path.child("ephemeralContainers")));
    errs
}

/// Debugging containers added by `kubectl debug`: named uniquely among all containers, with
/// an image, and without ports, probes or lifecycle hooks.
fn validate_ephemeral_containers(spec: &core::PodSpec, volumes: &BTreeSet<String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let init = spec.init_containers.iter().flatten();
    let mut names: BTreeSet<&str> = spec.containers.iter().chain(init).map(|c| c.name.as_str()).collect();
    for (i, c) in spec.ephemeral_containers.iter().flatten().enumerate() {
        let p = path.index(i);
        if c.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        } else {
            errs.extend(name_errors(&p.child("name"), &c.name, names::is_dns1123_label(&c.name)));
        }
        if !names.insert(&c.name) {
            errs.push(FieldError::duplicate(p.child("name"), &c.name));
        }
        if c.image.as_deref().unwrap_or("").is_empty() {
            errs.push(FieldError::required(p.child("image"), ""));
        }
        let forbidden = [
            ("ports", c.ports.as_ref().is_some_and(|v| !v.is_empty())),
            ("lifecycle", c.lifecycle.is_some()),
            ("livenessProbe", c.liveness_probe.is_some()),
            ("readinessProbe", c.readiness_probe.is_some()),
            ("startupProbe", c.startup_probe.is_some()),
        ];
        for (field, set) in forbidden {
            if set {
                errs.push(FieldError::forbidden(p.child(field), "cannot be set for an Ephemeral Container"));
            }
        }
        errs.extend(validate_volume_mounts(
            c.volume_mounts.as_deref().unwrap_or_default(),
            volumes,
            &p.child("volumeMounts"),
        ));
    }
    errs
}

/// Checks upstream makes on Pods but not on templates.
fn pod_only(spec: &core::PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let init =
        spec.init_containers.iter().flatten().enumerate().map(|(i, c)| (path.child("initContainers").index(i), c));
    let regular = spec.containers.iter().enumerate().map(|(i, c)| (path.child("containers").index(i), c));
    for (container_path, c) in regular.chain(init) {
        let image = c.image.as_deref().unwrap_or("");
        if image.trim() != image {
            errs.push(FieldError::invalid(
                container_path.child("image"),
                image,
                "must not have leading or trailing whitespace",
            ));
        }
    }
    errs
}

// ---- containers -----------------------------------------------------------------------------

fn validate_containers(spec: &core::PodSpec, volumes: &BTreeSet<String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let containers_path = path.child("containers");
    if spec.containers.is_empty() {
        errs.push(FieldError::required(&containers_path, ""));
    }
    let mut names = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let p = containers_path.index(i);
        errs.extend(validate_container(c, volumes, &p));
        if !names.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(p.child("name"), &c.name));
        }
        errs.extend(validate_probes(c, &p));
        if c.restart_policy.is_some() {
            errs.push(FieldError::forbidden(p.child("restartPolicy"), "may not be set for non-init containers"));
        }
    }
    errs.extend(host_port_conflicts(spec.containers.iter().enumerate(), &containers_path));

    let init_path = path.child("initContainers");
    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        let p = init_path.index(i);
        errs.extend(validate_container(c, volumes, &p));
        let sidecar = c.restart_policy.as_deref() == Some("Always");
        if let Some(policy) = c.restart_policy.as_deref().filter(|_| !sidecar) {
            errs.push(FieldError::not_supported(p.child("restartPolicy"), policy, &["Always"]));
        }
        if names.contains(&c.name) {
            errs.push(FieldError::duplicate(p.child("name"), &c.name));
        } else if !c.name.is_empty() {
            names.insert(c.name.clone());
        }
        // Init containers run one at a time, so only ports within one can conflict.
        errs.extend(host_port_conflicts(std::iter::once((i, c)), &init_path));
        if sidecar {
            errs.extend(validate_probes(c, &p));
        } else {
            let forbidden = [
                ("lifecycle", c.lifecycle.is_some()),
                ("livenessProbe", c.liveness_probe.is_some()),
                ("readinessProbe", c.readiness_probe.is_some()),
                ("startupProbe", c.startup_probe.is_some()),
            ];
            for (field, set) in forbidden {
                if set {
                    errs.push(FieldError::forbidden(p.child(field), INIT_CONTAINER_FORBIDDEN));
                }
            }
        }
    }
    errs
}

/// What every container must satisfy, regular or init.
fn validate_container(c: &core::Container, volumes: &BTreeSet<String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.name.is_empty() {
        errs.push(FieldError::required(path.child("name"), ""));
    } else {
        errs.extend(name_errors(&path.child("name"), &c.name, names::is_dns1123_label(&c.name)));
    }
    if c.image.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(path.child("image"), ""));
    }
    errs.extend(supported_value(
        &path.child("terminationMessagePolicy"),
        c.termination_message_policy.as_deref(),
        &["File", "FallbackToLogsOnError"],
    ));
    errs.extend(validate_container_ports(c.ports.as_deref().unwrap_or_default(), &path.child("ports")));
    errs.extend(validate_env(c.env.as_deref().unwrap_or_default(), &path.child("env")));
    errs.extend(validate_volume_mounts(
        c.volume_mounts.as_deref().unwrap_or_default(),
        volumes,
        &path.child("volumeMounts"),
    ));
    errs.extend(supported_value(
        &path.child("imagePullPolicy"),
        c.image_pull_policy.as_deref(),
        &["Always", "IfNotPresent", "Never"],
    ));
    if let Some(resources) = &c.resources {
        errs.extend(validate_resources(resources, &path.child("resources")));
    }
    errs
}

fn validate_container_ports(ports: &[core::ContainerPort], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let p = path.index(i);
        if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
            let msgs = port_name_messages(name);
            if !msgs.is_empty() {
                errs.extend(name_errors(&p.child("name"), name, msgs));
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(p.child("name"), name));
            }
        }
        if port.container_port == 0 {
            errs.push(FieldError::required(p.child("containerPort"), ""));
        } else {
            errs.extend(port_number(&p.child("containerPort"), port.container_port));
        }
        if let Some(host_port) = port.host_port.filter(|h| *h != 0) {
            errs.extend(port_number(&p.child("hostPort"), host_port));
        }
        errs.extend(port_protocol(&p.child("protocol"), port.protocol.as_deref()));
    }
    errs
}

/// Two containers may not claim the same host IP, protocol and host port.
fn host_port_conflicts<'a>(
    containers: impl Iterator<Item = (usize, &'a core::Container)>,
    path: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = BTreeSet::new();
    for (ci, c) in containers {
        for (pi, port) in c.ports.iter().flatten().enumerate() {
            let Some(host_port) = port.host_port.filter(|h| *h != 0) else {
                continue;
            };
            let key = format!(
                "{}/{}/{host_port}",
                port.host_ip.as_deref().unwrap_or(""),
                port.protocol.as_deref().unwrap_or("")
            );
            if !seen.insert(key.clone()) {
                errs.push(FieldError::duplicate(path.index(ci).child("ports").index(pi).child("hostPort"), &key));
            }
        }
    }
    errs
}

fn validate_env(env: &[core::EnvVar], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, var) in env.iter().enumerate() {
        let p = path.index(i).child("name");
        if var.name.is_empty() {
            errs.push(FieldError::required(&p, ""));
        } else if !var.name.bytes().all(|b| (b' '..=b'~').contains(&b) && b != b'=') {
            errs.push(FieldError::invalid(
                &p,
                &var.name,
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            ));
        }
    }
    errs
}

fn validate_probes(c: &core::Container, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if let Some(lifecycle) = &c.lifecycle {
        let p = path.child("lifecycle");
        for (field, handler) in [("postStart", &lifecycle.post_start), ("preStop", &lifecycle.pre_stop)] {
            if let Some(h) = handler {
                let handlers = [
                    ("exec", h.exec.is_some()),
                    ("httpGet", h.http_get.is_some()),
                    ("tcpSocket", h.tcp_socket.is_some()),
                    ("sleep", h.sleep.is_some()),
                ];
                errs.extend(one_handler(&p.child(field), &handlers));
                if let Some(http) = &h.http_get {
                    errs.extend(validate_http_get(http, &p.child(field).child("httpGet")));
                }
            }
        }
    }
    let probes = [
        ("livenessProbe", &c.liveness_probe, true),
        ("readinessProbe", &c.readiness_probe, false),
        ("startupProbe", &c.startup_probe, true),
    ];
    for (field, probe, success_must_be_one) in probes {
        let Some(probe) = probe else { continue };
        let p = path.child(field);
        errs.extend(validate_probe(probe, &p));
        if success_must_be_one && probe.success_threshold.unwrap_or(1) != 1 {
            let value = probe.success_threshold.unwrap_or_default().to_string();
            errs.push(FieldError::invalid_raw(p.child("successThreshold"), value, "must be 1"));
        }
        if !success_must_be_one && probe.termination_grace_period_seconds.is_some() {
            let value = probe.termination_grace_period_seconds.unwrap_or_default().to_string();
            errs.push(FieldError::invalid_raw(
                p.child("terminationGracePeriodSeconds"),
                value,
                "must not be set for readinessProbes",
            ));
        }
    }
    errs
}

fn validate_probe(probe: &core::Probe, path: &Path) -> Vec<FieldError> {
    let handlers = [
        ("exec", probe.exec.is_some()),
        ("httpGet", probe.http_get.is_some()),
        ("tcpSocket", probe.tcp_socket.is_some()),
        ("grpc", probe.grpc.is_some()),
    ];
    let mut errs = one_handler(path, &handlers);
    if let Some(exec) = &probe.exec
        && exec.command.as_ref().is_none_or(Vec::is_empty)
    {
        errs.push(FieldError::required(path.child("exec").child("command"), ""));
    }
    if let Some(http) = &probe.http_get {
        errs.extend(validate_http_get(http, &path.child("httpGet")));
    }
    if let Some(tcp) = &probe.tcp_socket {
        errs.extend(port_number_or_name(&path.child("tcpSocket").child("port"), &tcp.port));
    }
    if let Some(grpc) = &probe.grpc {
        errs.extend(port_number(&path.child("grpc").child("port"), grpc.port));
    }
    let counts = [
        ("initialDelaySeconds", probe.initial_delay_seconds),
        ("timeoutSeconds", probe.timeout_seconds),
        ("periodSeconds", probe.period_seconds),
        ("successThreshold", probe.success_threshold),
        ("failureThreshold", probe.failure_threshold),
    ];
    for (field, value) in counts {
        errs.extend(non_negative(&path.child(field), value.map(i64::from)));
    }
    if let Some(seconds) = probe.termination_grace_period_seconds.filter(|s| *s <= 0) {
        errs.push(FieldError::invalid_raw(
            path.child("terminationGracePeriodSeconds"),
            seconds.to_string(),
            "must be greater than 0",
        ));
    }
    errs
}

/// Exactly one handler: none is `Required`, each extra one `Forbidden` at its own field.
fn one_handler(path: &Path, handlers: &[(&str, bool)]) -> Vec<FieldError> {
    let set: Vec<&str> = handlers.iter().filter(|(_, set)| *set).map(|(name, _)| *name).collect();
    match set.as_slice() {
        [] => vec![FieldError::required(path, HANDLER_REQUIRED)],
        [_, extra @ ..] => extra.iter().map(|name| FieldError::forbidden(path.child(name), ONE_HANDLER)).collect(),
    }
}

fn validate_http_get(http: &core::HTTPGetAction, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if http.path.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::required(path.child("path"), ""));
    }
    errs.extend(port_number_or_name(&path.child("port"), &http.port));
    let scheme = http.scheme.as_deref().unwrap_or("");
    if !matches!(scheme, "HTTP" | "HTTPS") {
        errs.push(FieldError::not_supported(path.child("scheme"), scheme, &["HTTP", "HTTPS"]));
    }
    errs
}

/// A port given as a number (1–65535) or as the name of a container port.
pub(super) fn port_number_or_name(path: &Path, port: &IntOrString) -> Vec<FieldError> {
    match port {
        IntOrString::Int(n) => port_number(path, *n).into_iter().collect(),
        IntOrString::String(name) => name_errors(path, name, port_name_messages(name)).collect(),
    }
}

// ---- volumes --------------------------------------------------------------------------------

/// Volume names are unique DNS-1123 labels and each volume has exactly one source. Returns the
/// names of the valid volumes, which mounts may refer to.
fn validate_volumes(volumes: &[core::Volume], path: &Path) -> (BTreeSet<String>, Vec<FieldError>) {
    let mut names = BTreeSet::new();
    let mut errs = Vec::new();
    for (i, volume) in volumes.iter().enumerate() {
        let p = path.index(i);
        let mut volume_errs = validate_volume_source(volume, &p);
        let name_path = p.child("name");
        if volume.name.is_empty() {
            volume_errs.push(FieldError::required(&name_path, ""));
        } else {
            volume_errs.extend(name_errors(&name_path, &volume.name, names::is_dns1123_label(&volume.name)));
        }
        if names.contains(&volume.name) {
            volume_errs.push(FieldError::duplicate(&name_path, &volume.name));
        }
        if volume_errs.is_empty() {
            names.insert(volume.name.clone());
        }
        errs.extend(volume_errs);
    }
    (names, errs)
}

fn validate_volume_source(volume: &core::Volume, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sources: Vec<String> = match serde_json::to_value(volume) {
        Ok(Value::Object(map)) => map.keys().filter(|k| k.as_str() != "name").cloned().collect(),
        _ => Vec::new(),
    };
    match sources.as_slice() {
        [] => errs.push(FieldError::required(path, "must specify a volume type")),
        [_, extra @ ..] => {
            let more =
                extra.iter().map(|s| FieldError::forbidden(path.child(s), "may not specify more than 1 volume type"));
            errs.extend(more);
        }
    }
    let required = |errs: &mut Vec<FieldError>, source: &str, field: &str, value: Option<&str>| {
        if value.unwrap_or("").is_empty() {
            errs.push(FieldError::required(path.child(source).child(field), ""));
        }
    };
    if let Some(s) = &volume.secret {
        required(&mut errs, "secret", "secretName", s.secret_name.as_deref());
        errs.extend(file_mode(&path.child("secret").child("defaultMode"), s.default_mode));
    }
    if let Some(s) = &volume.config_map {
        required(&mut errs, "configMap", "name", Some(&s.name));
        errs.extend(file_mode(&path.child("configMap").child("defaultMode"), s.default_mode));
    }
    if let Some(s) = &volume.persistent_volume_claim {
        required(&mut errs, "persistentVolumeClaim", "claimName", Some(&s.claim_name));
    }
    if let Some(s) = &volume.host_path {
        required(&mut errs, "hostPath", "path", Some(&s.path));
    }
    if let Some(s) = &volume.downward_api {
        errs.extend(file_mode(&path.child("downwardAPI").child("defaultMode"), s.default_mode));
    }
    if let Some(s) = &volume.projected {
        errs.extend(file_mode(&path.child("projected").child("defaultMode"), s.default_mode));
    }
    errs
}

fn file_mode(path: &Path, mode: Option<i32>) -> Option<FieldError> {
    mode.filter(|m| !(0..=0o777).contains(m)).map(|m| FieldError::invalid_raw(path, m.to_string(), FILE_MODE_ERROR))
}

fn validate_volume_mounts(mounts: &[core::VolumeMount], volumes: &BTreeSet<String>, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut mount_paths = BTreeSet::new();
    for (i, mount) in mounts.iter().enumerate() {
        let p = path.index(i);
        if mount.name.is_empty() {
            errs.push(FieldError::required(p.child("name"), ""));
        }
        if !volumes.contains(&mount.name) {
            errs.push(not_found(&p.child("name"), &mount.name));
        }
        if mount.mount_path.is_empty() {
            errs.push(FieldError::required(p.child("mountPath"), ""));
        }
        if !mount_paths.insert(mount.mount_path.as_str()) {
            errs.push(FieldError::invalid(p.child("mountPath"), &mount.mount_path, "must be unique"));
        }
        if let Some(sub_path) = mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            errs.extend(local_descending_path(&p.child("subPath"), sub_path));
        }
    }
    errs
}

/// A relative path that stays below its root.
fn local_descending_path(path: &Path, value: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if value.starts_with('/') {
        errs.push(FieldError::invalid(path, value, "must be a relative path"));
    }
    if value.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(path, value, "must not contain '..'"));
    }
    errs
}

// ---- resources ------------------------------------------------------------------------------

fn validate_resources(r: &core::ResourceRequirements, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let limits_path = path.child("limits");
    let requests_path = path.child("requests");
    let empty = BTreeMap::new();
    let limits = r.limits.as_ref().unwrap_or(&empty);
    let mut parsed_limits = BTreeMap::new();
    for (name, value) in limits {
        let p = limits_path.key(name);
        errs.extend(resource_name(&p, name));
        if let Some(q) = resource_quantity(&p, name, value, &mut errs) {
            parsed_limits.insert(name.as_str(), q);
        }
    }
    for (name, value) in r.requests.iter().flatten() {
        let p = requests_path.key(name);
        errs.extend(resource_name(&p, name));
        let Some(request) = resource_quantity(&p, name, value, &mut errs) else {
            continue;
        };
        match parsed_limits.get(name.as_str()) {
            Some(limit) if !overcommit_allowed(name) && request != *limit => {
                errs.push(FieldError::invalid(
                    &requests_path,
                    &request.to_string(),
                    format!("must be equal to {name} limit of {limit}"),
                ));
            }
            Some(limit) if request > *limit => {
                errs.push(FieldError::invalid(
                    &requests_path,
                    &request.to_string(),
                    format!("must be less than or equal to {name} limit of {limit}"),
                ));
            }
            None if !overcommit_allowed(name) && !limits.contains_key(name) => {
                errs.push(FieldError::required(&limits_path, "Limit must be set for non overcommitable resources"));
            }
            _ => {}
        }
    }
    errs
}

/// Parses a quantity, reporting it when malformed, negative, or fractional for an integer
/// resource.
fn resource_quantity(path: &Path, name: &str, value: &Quantity, errs: &mut Vec<FieldError>) -> Option<ParsedQuantity> {
    let q = match quantity::parse(value) {
        Ok(q) => q,
        Err(e) => {
            errs.push(FieldError::invalid(path, &value.0, e.to_string()));
            return None;
        }
    };
    if q.nanos() < 0 {
        errs.push(FieldError::invalid(path, &q.to_string(), IS_NEGATIVE));
    }
    if is_extended_resource(name) && q.to_milli() % 1000 != 0 {
        errs.push(FieldError::invalid(path, &q.to_string(), "must be an integer"));
    }
    Some(q)
}

fn resource_name(path: &Path, name: &str) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = name_errors(path, name, names::is_qualified_name(name)).collect();
    if !name.contains('/') {
        let standard = matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-");
        if !standard {
            errs.push(FieldError::invalid(path, name, "must be a standard resource for containers"));
        }
    }
    errs
}

/// Resources in `kubernetes.io` (or with no domain) are native; the rest are extended.
fn is_native_resource(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

fn is_extended_resource(name: &str) -> bool {
    !is_native_resource(name) && !name.starts_with("requests.")
}

/// Requests may be below limits only for native resources other than huge pages.
fn overcommit_allowed(name: &str) -> bool {
    is_native_resource(name) && !name.starts_with("hugepages-")
}

// ---- tolerations ----------------------------------------------------------------------------

fn validate_tolerations(tolerations: &[core::Toleration], path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, t) in tolerations.iter().enumerate() {
        let p = path.index(i);
        let key = t.key.as_deref().unwrap_or("");
        let operator = t.operator.as_deref().unwrap_or("");
        let effect = t.effect.as_deref().unwrap_or("");
        let value = t.value.as_deref().unwrap_or("");
        if !key.is_empty() {
            errs.extend(name_errors(&p.child("key"), key, names::is_qualified_name(key)));
        }
        if key.is_empty() && operator != "Exists" {
            errs.push(FieldError::invalid(
                p.child("operator"),
                operator,
                "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ));
        }
        if t.toleration_seconds.is_some() && effect != "NoExecute" {
            errs.push(FieldError::invalid(
                p.child("effect"),
                effect,
                "effect must be 'NoExecute' when `tolerationSeconds` is set",
            ));
        }
        match operator {
            "" | "Equal" => {
                let msgs = names::is_valid_label_value(value);
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(p.child("operator"), value, msgs.join(";")));
                }
            }
            "Exists" if !value.is_empty() => {
                errs.push(FieldError::invalid(
                    p.child("operator"),
                    value,
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
            "Exists" => {}
            other => errs.push(FieldError::not_supported(p.child("operator"), other, &["Equal", "Exists"])),
        }
        errs.extend(optional_supported_value(
            &p.child("effect"),
            Some(effect),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        ));
    }
    errs
}

// ---- updates --------------------------------------------------------------------------------

/// Only images, `activeDeadlineSeconds` (set or lowered), tolerations (added to), removed
/// scheduling gates and a negative grace period raised to 1 may change.
fn pod_update(new: &core::PodSpec, old: &core::PodSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let deadline_path = path.child("activeDeadlineSeconds");
    match (new.active_deadline_seconds, old.active_deadline_seconds) {
        (Some(n), _) if !(0..=i64::from(i32::MAX)).contains(&n) => {
            errs.push(FieldError::invalid_raw(
                deadline_path,
                n.to_string(),
                "must be between 0 and 2147483647, inclusive",
            ));
            return errs;
        }
        (Some(n), Some(o)) if o < n => {
            errs.push(FieldError::invalid_raw(
                deadline_path,
                n.to_string(),
                "must be less than or equal to previous value",
            ));
            return errs;
        }
        (None, Some(_)) => {
            errs.push(FieldError::invalid(
                deadline_path,
                "null",
                "must not update from a positive integer to nil value",
            ));
        }
        _ => {}
    }

    let mut munged = new.clone();
    for (c, o) in munged.containers.iter_mut().zip(&old.containers) {
        c.image.clone_from(&o.image);
    }
    for (c, o) in munged.init_containers.iter_mut().flatten().zip(old.init_containers.iter().flatten()) {
        c.image.clone_from(&o.image);
    }
    munged.active_deadline_seconds = old.active_deadline_seconds;

    let new_tolerations = new.tolerations.as_deref().unwrap_or_default();
    let kept = old.tolerations.iter().flatten().all(|o| {
        new_tolerations.iter().any(|n| core::Toleration { toleration_seconds: n.toleration_seconds, ..o.clone() } == *n)
    });
    if !kept {
        errs.push(FieldError::forbidden(
            path.child("tolerations"),
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    }
    munged.tolerations.clone_from(&old.tolerations);

    if old.termination_grace_period_seconds.is_some_and(|o| o < 0) && new.termination_grace_period_seconds == Some(1) {
        munged.termination_grace_period_seconds = old.termination_grace_period_seconds;
    }

    let old_gates = old.scheduling_gates.as_deref().unwrap_or_default();
    let added_gate = new.scheduling_gates.iter().flatten().find(|g| !old_gates.iter().any(|o| o.name == g.name));
    match added_gate {
        Some(gate) => errs.push(FieldError::forbidden(
            path.child("schedulingGates"),
            format!("only deletion is allowed, but found new scheduling gate '{}'", gate.name),
        )),
        None => munged.scheduling_gates.clone_from(&old.scheduling_gates),
    }

    // Ephemeral containers may be added (through `pods/ephemeralcontainers`), never changed or
    // removed.
    let new_ephemeral = new.ephemeral_containers.as_deref().unwrap_or_default();
    for (i, o) in old.ephemeral_containers.iter().flatten().enumerate() {
        match new_ephemeral.iter().find(|n| n.name == o.name) {
            Some(n) if n == o => {}
            Some(_) => errs.push(FieldError::forbidden(
                path.child("ephemeralContainers").index(i),
                format!("existing ephemeral containers {:?} may not be changed", o.name),
            )),
            None => errs.push(FieldError::forbidden(
                path.child("ephemeralContainers"),
                format!("existing ephemeral containers {:?} may not be removed", o.name),
            )),
        }
    }
    munged.ephemeral_containers.clone_from(&old.ephemeral_containers);

    if munged != *old {
        errs.push(FieldError::forbidden(
            path,
            format!(
                "pod updates may not change fields other than {}\n{}",
                UPDATABLE_POD_SPEC_FIELDS.join(","),
                spec_diff(old, &munged)
            ),
        ));
    }
    errs
}

/// A short account of which top-level spec fields differ, one `-`/`+` pair per field.
fn spec_diff(old: &core::PodSpec, new: &core::PodSpec) -> String {
    let as_map = |spec: &core::PodSpec| match serde_json::to_value(spec) {
        Ok(Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (as_map(old), as_map(new));
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    let mut lines = Vec::new();
    for key in keys {
        let (o, n) = (old.get(key), new.get(key));
        if o != n {
            let show = |v: Option<&Value>| v.map_or_else(|| "null".to_string(), Value::to_string);
            lines.push(format!("  - {key}: {}\n  + {key}: {}", show(o), show(n)));
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests;

//! Upstream defaulting for the built-in kinds: the fields the API server fills in, on create and
//! update, when the client left them unset.
//!
//! Each kind's defaults are one function over its k8s-openapi type. [`apply_defaults`]
//! deserializes the part of the object that has defaults (usually `spec`), applies them and
//! writes that part back, so the rest of the object is never re-encoded. Every default only
//! fills a field that is missing (or, for fields that are plain values in Go, zero), so applying
//! the defaults twice gives the same object as applying them once.

use std::collections::BTreeMap;

use api_types::k8s_openapi::api::{
    apps::v1 as apps, autoscaling::v2 as autoscaling, batch::v1 as batch, core::v1 as core, discovery::v1 as discovery,
    networking::v1 as networking, rbac::v1 as rbac, storage::v1 as storage,
};
use api_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use api_types::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

const DEFAULT_RESTART_POLICY: &str = "Always";
const DEFAULT_DNS_POLICY: &str = "ClusterFirst";
const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
const DEFAULT_TERMINATION_MESSAGE_PATH: &str = "/dev/termination-log";
const DEFAULT_TERMINATION_MESSAGE_POLICY: &str = "File";
const DEFAULT_PROTOCOL: &str = "TCP";
const DEFAULT_PROBE_TIMEOUT_SECONDS: i32 = 1;
const DEFAULT_PROBE_PERIOD_SECONDS: i32 = 10;
const DEFAULT_PROBE_SUCCESS_THRESHOLD: i32 = 1;
const DEFAULT_PROBE_FAILURE_THRESHOLD: i32 = 3;
/// 0644: the mode of files projected from Secrets, ConfigMaps and the downward API.
const DEFAULT_FILE_MODE: i32 = 0o644;
const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 60 * 60;
const DEFAULT_CLIENT_IP_TIMEOUT_SECONDS: i32 = 3 * 60 * 60;
const DEFAULT_REPLICAS: i32 = 1;
const DEFAULT_REVISION_HISTORY_LIMIT: i32 = 10;
const DEFAULT_PROGRESS_DEADLINE_SECONDS: i32 = 600;
const DEFAULT_ROLLING_UPDATE_PERCENT: &str = "25%";
const DEFAULT_JOB_BACKOFF_LIMIT: i32 = 6;
const DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT: i32 = 3;
const DEFAULT_FAILED_JOBS_HISTORY_LIMIT: i32 = 1;
const DEFAULT_HPA_CPU_UTILIZATION: i32 = 80;
const NAMESPACE_FINALIZER: &str = "kubernetes";
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Applies upstream's defaults to `obj`, an object of the built-in `kind` in API `group`
/// (`""` for the core group). Kinds without defaults are left untouched.
///
/// Fails only when the part of the object that has defaults does not decode as its type.
pub fn apply_defaults(group: &str, kind: &str, obj: &mut Value) -> Result<(), serde_json::Error> {
    match (group, kind) {
        ("", "Pod") => edit(obj, "spec", pod),
        ("", "Service") => edit(obj, "spec", service),
        ("", "ReplicationController") => replication_controller(obj),
        ("", "Namespace") => namespace(obj),
        ("", "Secret") => {
            // Secret has no spec; `type` is a top-level field.
            set_missing_str(obj, "type", "Opaque");
            Ok(())
        }
        ("", "PersistentVolume") => {
            edit(obj, "spec", persistent_volume)?;
            edit(obj, "status", |s: &mut core::PersistentVolumeStatus| {
                default_str(&mut s.phase, "Pending");
            })
        }
        ("", "PersistentVolumeClaim") => {
            edit(obj, "spec", persistent_volume_claim)?;
            edit(obj, "status", |s: &mut core::PersistentVolumeClaimStatus| {
                default_str(&mut s.phase, "Pending");
            })
        }
        ("", "Endpoints") => edit_list(obj, "subsets", endpoint_subset),
        ("apps", "Deployment") => keep_absent_selector(obj, |o| edit(o, "spec", deployment)),
        ("apps", "ReplicaSet") => keep_absent_selector(obj, |o| edit(o, "spec", replica_set)),
        ("apps", "StatefulSet") => keep_absent_selector(obj, stateful_set),
        ("apps", "DaemonSet") => keep_absent_selector(obj, |o| edit(o, "spec", daemon_set)),
        ("batch", "Job") => job(obj),
        ("batch", "CronJob") => edit(obj, "spec", cron_job),
        ("autoscaling", "HorizontalPodAutoscaler") => edit(obj, "spec", horizontal_pod_autoscaler),
        ("storage.k8s.io", "StorageClass") => edit(obj, "", storage_class),
        ("networking.k8s.io", "NetworkPolicy") => edit(obj, "spec", network_policy),
        ("discovery.k8s.io", "EndpointSlice") => edit_list(obj, "ports", endpoint_slice_port),
        ("rbac.authorization.k8s.io", "RoleBinding") => edit(obj, "", role_binding),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => edit(obj, "", cluster_role_binding),
        _ => Ok(()),
    }
}

// ---- plumbing -------------------------------------------------------------------------------

/// Decodes `obj[key]` (the whole object when `key` is empty; `{}` when missing or null) as `T`,
/// applies `f`, and writes the result back.
fn edit<T, F>(obj: &mut Value, key: &str, f: F) -> Result<(), serde_json::Error>
where
    T: DeserializeOwned + Serialize,
    F: FnOnce(&mut T),
{
    let slot = if key.is_empty() {
        obj
    } else {
        let Some(map) = obj.as_object_mut() else {
            return Err(serde::de::Error::custom("expected the object to be a JSON object"));
        };
        map.entry(key).or_insert(Value::Null)
    };
    if slot.is_null() {
        *slot = Value::Object(Map::new());
    }
    let mut typed = T::deserialize(&*slot)?;
    f(&mut typed);
    *slot = serde_json::to_value(&typed)?;
    Ok(())
}

/// Like [`edit`], but for each element of the list `obj[key]`; a missing list stays missing.
fn edit_list<T, F>(obj: &mut Value, key: &str, mut f: F) -> Result<(), serde_json::Error>
where
    T: DeserializeOwned + Serialize,
    F: FnMut(&mut T),
{
    if let Some(Value::Array(items)) = obj.get_mut(key) {
        for item in items {
            edit(item, "", &mut f)?;
        }
    }
    Ok(())
}

/// apps/v1 requires `spec.selector`, but the k8s-openapi types hold it as a plain value, so a
/// round trip would turn a missing selector into `{}`. Put the absence back so validation can
/// report it as missing.
fn keep_absent_selector(
    obj: &mut Value,
    f: impl FnOnce(&mut Value) -> Result<(), serde_json::Error>,
) -> Result<(), serde_json::Error> {
    let had_selector = obj.pointer("/spec/selector").is_some_and(|s| !s.is_null());
    f(obj)?;
    if !had_selector && let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("selector");
    }
    Ok(())
}

fn set_missing_str(obj: &mut Value, key: &str, value: &str) {
    if let Some(map) = obj.as_object_mut() {
        let unset = map.get(key).is_none_or(|v| v.is_null() || v.as_str() == Some(""));
        if unset {
            map.insert(key.to_string(), Value::String(value.to_string()));
        }
    }
}

/// A string field that is a plain `string` in Go: empty counts as unset.
fn default_str(field: &mut Option<String>, value: &str) {
    if field.as_deref().is_none_or(str::is_empty) {
        *field = Some(value.to_string());
    }
}

/// An integer field that is a plain `int32` in Go: zero counts as unset.
fn default_int(field: &mut Option<i32>, value: i32) {
    if field.is_none_or(|v| v == 0) {
        *field = Some(value);
    }
}

fn int_or_string_is_zero(v: &IntOrString) -> bool {
    match v {
        IntOrString::Int(i) => *i == 0,
        IntOrString::String(s) => s.is_empty(),
    }
}

// ---- pods -----------------------------------------------------------------------------------

/// A Pod's spec: the pod-template defaults plus those upstream applies only to real Pods.
fn pod(spec: &mut core::PodSpec) {
    pod_spec(spec);
    default_toleration_seconds(spec);
    spec.enable_service_links.get_or_insert(true);
    let init = spec.init_containers.iter_mut().flatten();
    for c in spec.containers.iter_mut().chain(init) {
        if let Some(resources) = &mut c.resources {
            requests_from_limits(resources);
        }
        if spec.host_network == Some(true) {
            host_network_ports(c.ports.iter_mut().flatten());
        }
    }
}

/// Taints the node lifecycle controller puts on a node that is not ready or stops reporting.
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
/// How long a pod stays on such a node before it is evicted, unless it says otherwise.
pub const DEFAULT_TOLERATION_SECONDS: i64 = 300;

/// Upstream's DefaultTolerationSeconds admission: a pod that does not mention the not-ready and
/// unreachable NoExecute taints tolerates each for 300 s.
fn default_toleration_seconds(spec: &mut core::PodSpec) {
    for key in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        let mentioned = spec.tolerations.iter().flatten().any(|t| {
            t.key.as_deref() == Some(key) && matches!(t.effect.as_deref(), None | Some("") | Some("NoExecute"))
        });
        if !mentioned {
            spec.tolerations.get_or_insert_with(Vec::new).push(core::Toleration {
                key: Some(key.into()),
                operator: Some("Exists".into()),
                effect: Some("NoExecute".into()),
                toleration_seconds: Some(DEFAULT_TOLERATION_SECONDS),
                value: None,
            });
        }
    }
}

/// Defaults of every PodSpec, including those inside workload templates.
fn pod_spec(spec: &mut core::PodSpec) {
    default_str(&mut spec.dns_policy, DEFAULT_DNS_POLICY);
    default_str(&mut spec.restart_policy, DEFAULT_RESTART_POLICY);
    spec.security_context.get_or_insert_with(Default::default);
    spec.termination_grace_period_seconds.get_or_insert(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS);
    default_str(&mut spec.scheduler_name, DEFAULT_SCHEDULER_NAME);
    for c in spec.containers.iter_mut().chain(spec.init_containers.iter_mut().flatten()) {
        container(c);
    }
    for c in spec.ephemeral_containers.iter_mut().flatten() {
        ephemeral_container(c);
    }
    for v in spec.volumes.iter_mut().flatten() {
        volume(v);
    }
}

/// Container and EphemeralContainer share their fields but not a type.
macro_rules! container_defaults {
    ($c:expr) => {{
        let c = $c;
        if c.image_pull_policy.as_deref().is_none_or(str::is_empty) {
            c.image_pull_policy = Some(image_pull_policy(c.image.as_deref().unwrap_or("")).to_string());
        }
        default_str(&mut c.termination_message_path, DEFAULT_TERMINATION_MESSAGE_PATH);
        default_str(&mut c.termination_message_policy, DEFAULT_TERMINATION_MESSAGE_POLICY);
        // A plain struct in Go, so it always shows as `resources: {}`.
        c.resources.get_or_insert_with(Default::default);
        for p in c.ports.iter_mut().flatten() {
            default_str(&mut p.protocol, DEFAULT_PROTOCOL);
        }
        for p in [&mut c.liveness_probe, &mut c.readiness_probe, &mut c.startup_probe] {
            if let Some(p) = p {
                probe(p);
            }
        }
        if let Some(lifecycle) = &mut c.lifecycle {
            for h in [&mut lifecycle.post_start, &mut lifecycle.pre_stop].into_iter().flatten() {
                if let Some(http) = &mut h.http_get {
                    http_get(http);
                }
            }
        }
        for e in c.env.iter_mut().flatten() {
            if let Some(source) = &mut e.value_from {
                if let Some(f) = &mut source.field_ref {
                    field_ref(f);
                }
                if let Some(r) = &mut source.resource_field_ref {
                    resource_field_ref(r);
                }
            }
        }
    }};
}

fn container(c: &mut core::Container) {
    container_defaults!(c);
}

fn ephemeral_container(c: &mut core::EphemeralContainer) {
    container_defaults!(c);
}

/// `Always` when the image names the `latest` tag, or no tag and no digest; else `IfNotPresent`.
fn image_pull_policy(image: &str) -> &'static str {
    if image_tag(image) == Some("latest") { "Always" } else { "IfNotPresent" }
}

/// The tag an image reference resolves to: its explicit tag, `latest` when it has neither tag
/// nor digest, and `None` when it has only a digest or is not a valid reference.
fn image_tag(image: &str) -> Option<&str> {
    if image.is_empty() || image.chars().any(char::is_whitespace) {
        return None;
    }
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest)),
        None => (image, None),
    };
    // A ':' after the last '/' separates the tag; one before it belongs to a registry port.
    let last_component = name.rsplit('/').next().unwrap_or(name);
    let tag = last_component.rsplit_once(':').map(|(_, tag)| tag);
    match (tag, digest) {
        (Some(tag), _) => Some(tag),
        (None, Some(_)) => None,
        (None, None) => Some("latest"),
    }
}

fn probe(p: &mut core::Probe) {
    default_int(&mut p.timeout_seconds, DEFAULT_PROBE_TIMEOUT_SECONDS);
    default_int(&mut p.period_seconds, DEFAULT_PROBE_PERIOD_SECONDS);
    default_int(&mut p.success_threshold, DEFAULT_PROBE_SUCCESS_THRESHOLD);
    default_int(&mut p.failure_threshold, DEFAULT_PROBE_FAILURE_THRESHOLD);
    if let Some(http) = &mut p.http_get {
        http_get(http);
    }
    if let Some(grpc) = &mut p.grpc {
        grpc.service.get_or_insert_with(String::new);
    }
}

fn http_get(h: &mut core::HTTPGetAction) {
    default_str(&mut h.path, "/");
    default_str(&mut h.scheme, "HTTP");
}

fn field_ref(f: &mut core::ObjectFieldSelector) {
    default_str(&mut f.api_version, "v1");
}

fn resource_field_ref(r: &mut core::ResourceFieldSelector) {
    // A plain Quantity in Go, which prints as "0" when unset.
    r.divisor.get_or_insert_with(|| Quantity("0".to_string()));
}

/// Only on Pods (not templates): each resource with a limit but no request requests its limit.
fn requests_from_limits(r: &mut core::ResourceRequirements) {
    let Some(limits) = &r.limits else { return };
    let requests = r.requests.get_or_insert_with(BTreeMap::new);
    for (name, limit) in limits {
        requests.entry(name.clone()).or_insert_with(|| limit.clone());
    }
}

/// With `hostNetwork`, a container port is also the host port.
fn host_network_ports<'a>(ports: impl Iterator<Item = &'a mut core::ContainerPort>) {
    for p in ports {
        if p.host_port.is_none_or(|h| h == 0) {
            p.host_port = Some(p.container_port);
        }
    }
}

fn volume(v: &mut core::Volume) {
    // A volume that names no source is an emptyDir.
    if *v == (core::Volume { name: v.name.clone(), ..Default::default() }) {
        v.empty_dir = Some(Default::default());
    }
    if let Some(s) = &mut v.secret {
        s.default_mode.get_or_insert(DEFAULT_FILE_MODE);
    }
    if let Some(s) = &mut v.config_map {
        s.default_mode.get_or_insert(DEFAULT_FILE_MODE);
    }
    if let Some(s) = &mut v.downward_api {
        s.default_mode.get_or_insert(DEFAULT_FILE_MODE);
        downward_api_files(s.items.iter_mut().flatten());
    }
    if let Some(s) = &mut v.projected {
        s.default_mode.get_or_insert(DEFAULT_FILE_MODE);
        for source in s.sources.iter_mut().flatten() {
            if let Some(d) = &mut source.downward_api {
                downward_api_files(d.items.iter_mut().flatten());
            }
            if let Some(t) = &mut source.service_account_token {
                t.expiration_seconds.get_or_insert(DEFAULT_TOKEN_EXPIRATION_SECONDS);
            }
        }
    }
    if let Some(s) = &mut v.host_path {
        // Upstream's "unset" host path type is the empty string, and it is printed.
        s.type_.get_or_insert_with(String::new);
    }
    if let Some(template) = v.ephemeral.as_mut().and_then(|e| e.volume_claim_template.as_mut()) {
        persistent_volume_claim(&mut template.spec);
    }
}

fn downward_api_files<'a>(files: impl Iterator<Item = &'a mut core::DownwardAPIVolumeFile>) {
    for f in files {
        if let Some(r) = &mut f.field_ref {
            field_ref(r);
        }
        if let Some(r) = &mut f.resource_field_ref {
            resource_field_ref(r);
        }
    }
}

/// A pod template: its spec always exists in Go, so defaults apply even to a missing one.
fn pod_template(t: &mut core::PodTemplateSpec) {
    pod_spec(t.spec.get_or_insert_with(Default::default));
}

// ---- core -----------------------------------------------------------------------------------

fn service(spec: &mut core::ServiceSpec) {
    default_str(&mut spec.session_affinity, "None");
    default_str(&mut spec.type_, "ClusterIP");
    let type_ = spec.type_.as_deref().unwrap_or("ClusterIP");
    for p in spec.ports.iter_mut().flatten() {
        default_str(&mut p.protocol, DEFAULT_PROTOCOL);
        if p.target_port.as_ref().is_none_or(int_or_string_is_zero) {
            p.target_port = Some(IntOrString::Int(p.port));
        }
    }
    if spec.session_affinity.as_deref() == Some("ClientIP") {
        let config = spec.session_affinity_config.get_or_insert_with(Default::default);
        let client_ip = config.client_ip.get_or_insert_with(Default::default);
        client_ip.timeout_seconds.get_or_insert(DEFAULT_CLIENT_IP_TIMEOUT_SECONDS);
    }
    if matches!(type_, "NodePort" | "LoadBalancer") {
        default_str(&mut spec.external_traffic_policy, "Cluster");
    }
    if type_ == "LoadBalancer" {
        spec.allocate_load_balancer_node_ports.get_or_insert(true);
    }
    if type_ != "ExternalName" {
        default_str(&mut spec.internal_traffic_policy, "Cluster");
        // rkube's service network is single-stack IPv4.
        default_str(&mut spec.ip_family_policy, "SingleStack");
        if spec.ip_families.as_ref().is_none_or(Vec::is_empty) {
            spec.ip_families = Some(vec!["IPv4".to_string()]);
        }
    }
}

/// core/v1 (unlike apps/v1) defaults a ReplicationController's selector, and its labels, from
/// the template's labels.
fn replication_controller(obj: &mut Value) -> Result<(), serde_json::Error> {
    let mut template_labels = None;
    edit(obj, "spec", |spec: &mut core::ReplicationControllerSpec| {
        spec.replicas.get_or_insert(DEFAULT_REPLICAS);
        if let Some(template) = &mut spec.template {
            pod_template(template);
            template_labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        }
        if spec.selector.as_ref().is_none_or(BTreeMap::is_empty) {
            spec.selector.clone_from(&template_labels);
        }
    })?;
    labels_from_template(obj, template_labels)
}

/// Sets `metadata.labels` to the template's labels when the object has none.
fn labels_from_template(
    obj: &mut Value,
    template_labels: Option<BTreeMap<String, String>>,
) -> Result<(), serde_json::Error> {
    let Some(labels) = template_labels.filter(|l| !l.is_empty()) else {
        return Ok(());
    };
    edit(obj, "metadata", |m: &mut ObjectMeta| {
        if m.labels.as_ref().is_none_or(BTreeMap::is_empty) {
            m.labels = Some(labels);
        }
    })
}

/// A Namespace is labelled with its name and, until it is being deleted, carries the
/// `kubernetes` finalizer; once deleting, the namespace controller removes that finalizer and
/// it must not come back.
fn namespace(obj: &mut Value) -> Result<(), serde_json::Error> {
    let deleting = obj.pointer("/metadata/deletionTimestamp").is_some_and(|t| !t.is_null());
    edit(obj, "metadata", |m: &mut ObjectMeta| {
        if let Some(name) = m.name.clone().filter(|n| !n.is_empty()) {
            m.labels.get_or_insert_with(BTreeMap::new).insert(NAMESPACE_NAME_LABEL.to_string(), name);
        }
    })?;
    edit(obj, "spec", |spec: &mut core::NamespaceSpec| {
        if !deleting {
            spec.finalizers.get_or_insert_with(|| vec![NAMESPACE_FINALIZER.to_string()]);
        }
    })?;
    edit(obj, "status", |s: &mut core::NamespaceStatus| default_str(&mut s.phase, "Active"))
}

fn persistent_volume(spec: &mut core::PersistentVolumeSpec) {
    default_str(&mut spec.persistent_volume_reclaim_policy, "Retain");
    default_str(&mut spec.volume_mode, "Filesystem");
    if let Some(h) = &mut spec.host_path {
        h.type_.get_or_insert_with(String::new);
    }
}

fn persistent_volume_claim(spec: &mut core::PersistentVolumeClaimSpec) {
    default_str(&mut spec.volume_mode, "Filesystem");
}

fn endpoint_subset(subset: &mut core::EndpointSubset) {
    for p in subset.ports.iter_mut().flatten() {
        default_str(&mut p.protocol, DEFAULT_PROTOCOL);
    }
}

// ---- apps -----------------------------------------------------------------------------------

fn deployment(spec: &mut apps::DeploymentSpec) {
    spec.replicas.get_or_insert(DEFAULT_REPLICAS);
    let strategy = spec.strategy.get_or_insert_with(Default::default);
    default_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        let percent = || IntOrString::String(DEFAULT_ROLLING_UPDATE_PERCENT.to_string());
        rolling.max_unavailable.get_or_insert_with(percent);
        rolling.max_surge.get_or_insert_with(percent);
    }
    spec.revision_history_limit.get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    spec.progress_deadline_seconds.get_or_insert(DEFAULT_PROGRESS_DEADLINE_SECONDS);
    pod_template(&mut spec.template);
}

fn replica_set(spec: &mut apps::ReplicaSetSpec) {
    spec.replicas.get_or_insert(DEFAULT_REPLICAS);
    pod_template(spec.template.get_or_insert_with(Default::default));
}

/// A StatefulSet. Its claim templates are whole PersistentVolumeClaims in k8s-openapi, which
/// always print `apiVersion` and `kind`; upstream keeps them only where the client sent them.
fn stateful_set(obj: &mut Value) -> Result<(), serde_json::Error> {
    let claims = obj.pointer("/spec/volumeClaimTemplates").and_then(Value::as_array);
    let had_type_meta: Vec<(bool, bool)> =
        claims.into_iter().flatten().map(|c| (c.get("apiVersion").is_some(), c.get("kind").is_some())).collect();
    edit(obj, "spec", stateful_set_spec)?;
    let claims = obj.pointer_mut("/spec/volumeClaimTemplates").and_then(Value::as_array_mut);
    for (claim, (had_api_version, had_kind)) in claims.into_iter().flatten().zip(had_type_meta) {
        if let Some(claim) = claim.as_object_mut() {
            if !had_api_version {
                claim.remove("apiVersion");
            }
            if !had_kind {
                claim.remove("kind");
            }
        }
    }
    Ok(())
}

fn stateful_set_spec(spec: &mut apps::StatefulSetSpec) {
    spec.replicas.get_or_insert(DEFAULT_REPLICAS);
    default_str(&mut spec.pod_management_policy, "OrderedReady");
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    default_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        rolling.partition.get_or_insert(0);
    }
    spec.revision_history_limit.get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    let retention = spec.persistent_volume_claim_retention_policy.get_or_insert_with(Default::default);
    default_str(&mut retention.when_deleted, "Retain");
    default_str(&mut retention.when_scaled, "Retain");
    for claim in spec.volume_claim_templates.iter_mut().flatten() {
        persistent_volume_claim(claim.spec.get_or_insert_with(Default::default));
        let status = claim.status.get_or_insert_with(Default::default);
        default_str(&mut status.phase, "Pending");
    }
    pod_template(&mut spec.template);
}

fn daemon_set(spec: &mut apps::DaemonSetSpec) {
    let strategy = spec.update_strategy.get_or_insert_with(Default::default);
    default_str(&mut strategy.type_, "RollingUpdate");
    if strategy.type_.as_deref() == Some("RollingUpdate") {
        let rolling = strategy.rolling_update.get_or_insert_with(Default::default);
        rolling.max_unavailable.get_or_insert(IntOrString::Int(1));
        rolling.max_surge.get_or_insert(IntOrString::Int(0));
    }
    spec.revision_history_limit.get_or_insert(DEFAULT_REVISION_HISTORY_LIMIT);
    pod_template(&mut spec.template);
}

// ---- batch ----------------------------------------------------------------------------------

fn job(obj: &mut Value) -> Result<(), serde_json::Error> {
    let mut template_labels = None;
    edit(obj, "spec", |spec: &mut batch::JobSpec| {
        job_spec(spec);
        template_labels = spec.template.metadata.as_ref().and_then(|m| m.labels.clone());
    })?;
    labels_from_template(obj, template_labels)
}

fn job_spec(spec: &mut batch::JobSpec) {
    // A non-parallel job may leave both unset; then both are 1.
    if spec.completions.is_none() && spec.parallelism.is_none() {
        spec.completions = Some(1);
    }
    spec.parallelism.get_or_insert(1);
    let backoff = if spec.backoff_limit_per_index.is_some() { i32::MAX } else { DEFAULT_JOB_BACKOFF_LIMIT };
    spec.backoff_limit.get_or_insert(backoff);
    default_str(&mut spec.completion_mode, "NonIndexed");
    spec.suspend.get_or_insert(false);
    let replacement = if spec.pod_failure_policy.is_some() { "Failed" } else { "TerminatingOrFailed" };
    default_str(&mut spec.pod_replacement_policy, replacement);
    for rule in spec.pod_failure_policy.iter_mut().flat_map(|p| p.rules.iter_mut()) {
        for pattern in rule.on_pod_conditions.iter_mut().flatten() {
            if pattern.status.is_empty() {
                pattern.status = "True".to_string();
            }
        }
    }
    pod_template(&mut spec.template);
}

fn cron_job(spec: &mut batch::CronJobSpec) {
    default_str(&mut spec.concurrency_policy, "Allow");
    spec.suspend.get_or_insert(false);
    spec.successful_jobs_history_limit.get_or_insert(DEFAULT_SUCCESSFUL_JOBS_HISTORY_LIMIT);
    spec.failed_jobs_history_limit.get_or_insert(DEFAULT_FAILED_JOBS_HISTORY_LIMIT);
    // A job template is not a Job: only its pod template gets defaults.
    let job = spec.job_template.spec.get_or_insert_with(Default::default);
    pod_template(&mut job.template);
}

// ---- other groups ---------------------------------------------------------------------------

fn horizontal_pod_autoscaler(spec: &mut autoscaling::HorizontalPodAutoscalerSpec) {
    spec.min_replicas.get_or_insert(1);
    // A behavior that is given is completed with upstream's rules; an absent one stays absent
    // (the controller then applies the older fixed limits). The scale-down window is left
    // unset, for the controller's --horizontal-pod-autoscaler-downscale-stabilization.
    if let Some(behavior) = &mut spec.behavior {
        let policy =
            |type_: &str, value| autoscaling::HPAScalingPolicy { type_: type_.into(), value, period_seconds: 15 };
        let up = behavior.scale_up.get_or_insert_default();
        up.stabilization_window_seconds.get_or_insert(0);
        up.select_policy.get_or_insert_with(|| "Max".into());
        up.policies.get_or_insert_with(|| vec![policy("Pods", 4), policy("Percent", 100)]);
        let down = behavior.scale_down.get_or_insert_default();
        down.select_policy.get_or_insert_with(|| "Max".into());
        down.policies.get_or_insert_with(|| vec![policy("Percent", 100)]);
    }
    if spec.metrics.as_ref().is_none_or(Vec::is_empty) {
        spec.metrics = Some(vec![autoscaling::MetricSpec {
            type_: "Resource".to_string(),
            resource: Some(autoscaling::ResourceMetricSource {
                name: "cpu".to_string(),
                target: autoscaling::MetricTarget {
                    type_: "Utilization".to_string(),
                    average_utilization: Some(DEFAULT_HPA_CPU_UTILIZATION),
                    ..Default::default()
                },
            }),
            ..Default::default()
        }]);
    }
}

fn storage_class(sc: &mut storage::StorageClass) {
    default_str(&mut sc.reclaim_policy, "Delete");
    default_str(&mut sc.volume_binding_mode, "Immediate");
}

fn network_policy(spec: &mut networking::NetworkPolicySpec) {
    let ingress_ports = spec.ingress.iter_mut().flatten().flat_map(|r| r.ports.iter_mut().flatten());
    let egress_ports = spec.egress.iter_mut().flatten().flat_map(|r| r.ports.iter_mut().flatten());
    for p in ingress_ports.chain(egress_ports) {
        default_str(&mut p.protocol, DEFAULT_PROTOCOL);
    }
    if spec.policy_types.as_ref().is_none_or(Vec::is_empty) {
        // Every policy without policyTypes is at least an ingress policy.
        let mut types = vec!["Ingress".to_string()];
        if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
            types.push("Egress".to_string());
        }
        spec.policy_types = Some(types);
    }
}

fn endpoint_slice_port(p: &mut discovery::EndpointPort) {
    p.name.get_or_insert_with(String::new);
    default_str(&mut p.protocol, DEFAULT_PROTOCOL);
}

fn role_binding(b: &mut rbac::RoleBinding) {
    rbac_binding(&mut b.role_ref, b.subjects.iter_mut().flatten());
}

fn cluster_role_binding(b: &mut rbac::ClusterRoleBinding) {
    rbac_binding(&mut b.role_ref, b.subjects.iter_mut().flatten());
}

fn rbac_binding<'a>(role_ref: &mut rbac::RoleRef, subjects: impl Iterator<Item = &'a mut rbac::Subject>) {
    if role_ref.api_group.is_empty() {
        role_ref.api_group = RBAC_GROUP.to_string();
    }
    for s in subjects {
        if s.api_group.as_deref().is_none_or(str::is_empty) && matches!(s.kind.as_str(), "User" | "Group") {
            s.api_group = Some(RBAC_GROUP.to_string());
        }
    }
}

#[cfg(test)]
mod tests;

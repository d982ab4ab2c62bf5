//! Workload rules: Deployments, ReplicaSets, StatefulSets, DaemonSets (apps/v1), Jobs and
//! CronJobs (batch/v1) and ReplicationControllers — selectors, their match with the pod
//! template, the template itself, counts and update strategies, and what may not change.

use std::collections::BTreeMap;

use api_types::k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use api_types::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use api_types::labels;
use api_types::names;
use serde_json::Value;

use super::cron::schedule_error;
use super::pod::validate_pod_template;
use super::render::{go_int_or_string, go_label_selector, go_string_map};
use super::{
    FIELD_IMMUTABLE, FieldError, Path, decode, invalid_rendered, name_errors, non_negative, optional_supported_value,
    supported_value, validate_labels,
};

const SELECTOR_MISMATCH: &str = "`selector` does not match template `labels`";
/// CronJob names leave room for the 11 characters its Jobs' names append.
const MAX_CRON_JOB_NAME_LENGTH: usize = 52;
const STATEFUL_SET_UPDATABLE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

/// Decodes `spec` as `T`, or returns the decoding error from the enclosing function.
macro_rules! decode_or_return {
    ($obj:expr, $key:expr) => {
        match decode($obj, $key) {
            Ok(value) => value,
            Err(e) => return vec![e],
        }
    };
}

pub(super) fn validate_deployment(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec: apps::DeploymentSpec = decode_or_return!(obj, "spec");
    let p = Path::new("spec");
    let mut errs = counts(
        &p,
        &[
            ("replicas", spec.replicas),
            ("minReadySeconds", spec.min_ready_seconds),
            ("revisionHistoryLimit", spec.revision_history_limit),
        ],
    );
    errs.extend(apps_selector_and_template(obj, &spec.selector, &spec.template, &p, "deployment", "ReplicaSet"));
    if let Some(strategy) = &spec.strategy {
        errs.extend(deployment_strategy(strategy, &p.child("strategy")));
    }
    if let Some(deadline) = spec.progress_deadline_seconds {
        errs.extend(non_negative(&p.child("progressDeadlineSeconds"), Some(i64::from(deadline))));
        if deadline <= spec.min_ready_seconds.unwrap_or(0) {
            errs.push(FieldError::invalid_raw(
                p.child("progressDeadlineSeconds"),
                deadline.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
    if let Some(old) = old {
        errs.extend(selector_unchanged::<apps::DeploymentSpec>(obj, old, &p, |s| &s.selector));
    }
    errs
}

pub(super) fn validate_replica_set(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec: apps::ReplicaSetSpec = decode_or_return!(obj, "spec");
    let p = Path::new("spec");
    let mut errs = counts(&p, &[("replicas", spec.replicas), ("minReadySeconds", spec.min_ready_seconds)]);
    match &spec.template {
        Some(template) => {
            errs.extend(apps_selector_and_template(obj, &spec.selector, template, &p, "deployment", "ReplicaSet"));
        }
        None => errs.push(FieldError::required(p.child("template"), "")),
    }
    if let Some(old) = old {
        errs.extend(selector_unchanged::<apps::ReplicaSetSpec>(obj, old, &p, |s| &s.selector));
    }
    errs
}

pub(super) fn validate_daemon_set(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec: apps::DaemonSetSpec = decode_or_return!(obj, "spec");
    let p = Path::new("spec");
    let mut errs = counts(
        &p,
        &[("minReadySeconds", spec.min_ready_seconds), ("revisionHistoryLimit", spec.revision_history_limit)],
    );
    errs.extend(apps_selector_and_template(obj, &spec.selector, &spec.template, &p, "daemonset", "DaemonSet"));
    if let Some(strategy) = &spec.update_strategy {
        let sp = p.child("updateStrategy");
        match strategy.type_.as_deref().unwrap_or("") {
            "OnDelete" => {}
            "RollingUpdate" => match &strategy.rolling_update {
                None => errs.push(FieldError::required(sp.child("rollingUpdate"), "")),
                Some(r) => {
                    let rp = sp.child("rollingUpdate");
                    errs.extend(int_or_percent(&rp.child("maxUnavailable"), r.max_unavailable.as_ref(), true));
                    errs.extend(int_or_percent(&rp.child("maxSurge"), r.max_surge.as_ref(), true));
                    let has_unavailable = int_or_percent_value(r.max_unavailable.as_ref()) != 0;
                    let has_surge = int_or_percent_value(r.max_surge.as_ref()) != 0;
                    if has_unavailable && has_surge {
                        errs.push(invalid_rendered(
                            &rp.child("maxSurge"),
                            go_int_or_string(r.max_surge.as_ref()),
                            "may not be set when maxUnavailable is non-zero",
                        ));
                    } else if !has_unavailable && !has_surge {
                        errs.push(FieldError::required(rp.child("maxUnavailable"), "cannot be 0 when maxSurge is 0"));
                    }
                }
            },
            other => errs.push(FieldError::not_supported(sp, other, &["RollingUpdate", "OnDelete"])),
        }
    }
    if let Some(old) = old {
        errs.extend(selector_unchanged::<apps::DaemonSetSpec>(obj, old, &p, |s| &s.selector));
    }
    errs
}

pub(super) fn validate_stateful_set(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec: apps::StatefulSetSpec = decode_or_return!(obj, "spec");
    let p = Path::new("spec");
    let mut errs = Vec::new();
    match spec.pod_management_policy.as_deref().unwrap_or("") {
        "OrderedReady" | "Parallel" => {}
        "" => errs.push(FieldError::required(p.child("podManagementPolicy"), "")),
        other => errs.push(FieldError::invalid(
            p.child("podManagementPolicy"),
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let sp = p.child("updateStrategy");
    match strategy.type_.as_deref().unwrap_or("") {
        "" => errs.push(FieldError::required(&sp, "")),
        "OnDelete" if strategy.rolling_update.is_some() => errs.push(FieldError::invalid(
            sp.child("rollingUpdate"),
            "OnDelete",
            "only allowed for updateStrategy 'RollingUpdate'",
        )),
        "OnDelete" => {}
        "RollingUpdate" => {
            let partition = strategy.rolling_update.as_ref().and_then(|r| r.partition);
            errs.extend(non_negative(&sp.child("rollingUpdate").child("partition"), partition.map(i64::from)));
        }
        other => errs.push(FieldError::invalid(sp, other, "must be 'RollingUpdate' or 'OnDelete'")),
    }
    errs.extend(counts(
        &p,
        &[
            ("revisionHistoryLimit", spec.revision_history_limit),
            ("replicas", spec.replicas),
            ("minReadySeconds", spec.min_ready_seconds),
        ],
    ));
    let start = spec.ordinals.as_ref().and_then(|o| o.start);
    errs.extend(non_negative(&p.child("ordinals").child("start"), start.map(i64::from)));
    // Containers may mount the claims of volumeClaimTemplates: their pods get those volumes.
    let mut template = spec.template.clone();
    if let Some(pod) = template.spec.as_mut() {
        let volumes = pod.volumes.get_or_insert_with(Vec::new);
        for claim in spec.volume_claim_templates.iter().flatten() {
            let name = claim.metadata.name.clone().unwrap_or_default();
            if !volumes.iter().any(|v| v.name == name) {
                volumes.push(core::Volume {
                    name: name.clone(),
                    persistent_volume_claim: Some(core::PersistentVolumeClaimVolumeSource {
                        claim_name: name,
                        read_only: None,
                    }),
                    ..Default::default()
                });
            }
        }
    }
    errs.extend(apps_selector_and_template(obj, &spec.selector, &template, &p, "statefulset", "StatefulSet"));
    if let Some(old) = old {
        match decode::<apps::StatefulSetSpec>(old, "spec") {
            Ok(old_spec) => {
                let mut frozen = spec.clone();
                frozen.replicas = old_spec.replicas;
                frozen.template = old_spec.template.clone();
                frozen.update_strategy.clone_from(&old_spec.update_strategy);
                frozen.min_ready_seconds = old_spec.min_ready_seconds;
                frozen.ordinals.clone_from(&old_spec.ordinals);
                frozen.revision_history_limit = old_spec.revision_history_limit;
                frozen
                    .persistent_volume_claim_retention_policy
                    .clone_from(&old_spec.persistent_volume_claim_retention_policy);
                if frozen != old_spec {
                    errs.push(FieldError::forbidden(&p, STATEFUL_SET_UPDATABLE));
                }
            }
            Err(e) => errs.push(e),
        }
    }
    errs
}

/// core/v1 ReplicationControllers select with a plain label map.
pub(super) fn validate_replication_controller(obj: &Value) -> Vec<FieldError> {
    let spec: core::ReplicationControllerSpec = decode_or_return!(obj, "spec");
    let p = Path::new("spec");
    let mut errs = counts(&p, &[("minReadySeconds", spec.min_ready_seconds)]);
    let selector = spec.selector.clone().unwrap_or_default();
    if selector.is_empty() {
        errs.push(FieldError::required(p.child("selector"), ""));
    }
    errs.extend(validate_labels(&p.child("selector"), Some(&selector)));
    errs.extend(counts(&p, &[("replicas", spec.replicas)]));
    let tp = p.child("template");
    let Some(template) = &spec.template else {
        errs.push(FieldError::required(&tp, ""));
        return errs;
    };
    let template_labels = template_labels(template);
    let matches = selector.iter().all(|(k, v)| template_labels.as_ref().and_then(|l| l.get(k)) == Some(v));
    if !selector.is_empty() && !matches {
        errs.push(invalid_rendered(
            &tp.child("metadata").child("labels"),
            go_string_map(template_labels.as_ref()),
            &format!("selector does not match labels in {tp}"),
        ));
    }
    errs.extend(validate_pod_template(template, &tp));
    errs.extend(restart_always_template(template, &tp, "ReplicationController"));
    errs
}

pub(super) fn validate_job(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec: batch::JobSpec = decode_or_return!(obj, "spec");
    let p = Path::new("spec");
    let mut errs = job_spec(&spec, &p);
    if let Some(old) = old {
        match decode::<batch::JobSpec>(old, "spec") {
            Ok(old_spec) => errs.extend(job_update(&spec, &old_spec, old, &p)),
            Err(e) => errs.push(e),
        }
    }
    errs
}

pub(super) fn validate_cron_job(obj: &Value) -> Vec<FieldError> {
    let spec: batch::CronJobSpec = decode_or_return!(obj, "spec");
    let meta: ObjectMeta = decode_or_return!(obj, "metadata");
    let p = Path::new("spec");
    let mut errs = Vec::new();
    let name = meta.name.as_deref().unwrap_or("");
    if name.len() > MAX_CRON_JOB_NAME_LENGTH {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be no more than {MAX_CRON_JOB_NAME_LENGTH} characters"),
        ));
    }
    let schedule_path = p.child("schedule");
    if spec.schedule.is_empty() {
        errs.push(FieldError::required(&schedule_path, ""));
    } else {
        if let Some(msg) = schedule_error(&spec.schedule) {
            errs.push(FieldError::invalid(&schedule_path, &spec.schedule, msg));
        }
        if spec.schedule.contains("TZ") {
            errs.push(FieldError::invalid(
                &schedule_path,
                &spec.schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    errs.extend(non_negative(&p.child("startingDeadlineSeconds"), spec.starting_deadline_seconds));
    errs.extend(supported_value(
        &p.child("concurrencyPolicy"),
        spec.concurrency_policy.as_deref(),
        &["Allow", "Forbid", "Replace"],
    ));
    errs.extend(counts(
        &p,
        &[
            ("successfulJobsHistoryLimit", spec.successful_jobs_history_limit),
            ("failedJobsHistoryLimit", spec.failed_jobs_history_limit),
        ],
    ));
    let job = spec.job_template.spec.clone().unwrap_or_default();
    errs.extend(job_spec(&job, &p.child("jobTemplate").child("spec")));
    errs
}

// ---- shared rules ---------------------------------------------------------------------------

fn counts(path: &Path, fields: &[(&str, Option<i32>)]) -> Vec<FieldError> {
    fields.iter().filter_map(|(name, value)| non_negative(&path.child(name), value.map(i64::from))).collect()
}

/// apps/v1: a required, valid, non-empty selector that matches the template's labels, and a
/// template whose pods restart `Always`.
fn apps_selector_and_template(
    obj: &Value,
    selector: &LabelSelector,
    template: &core::PodTemplateSpec,
    path: &Path,
    kind_word: &str,
    template_kind: &str,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let sp = path.child("selector");
    // The typed spec turns a missing selector into an empty one; the JSON knows.
    let has_selector = obj.pointer("/spec/selector").is_some_and(|s| !s.is_null());
    if has_selector {
        errs.extend(validate_label_selector(selector, &sp));
        if selector_is_empty(selector) {
            errs.push(invalid_rendered(
                &sp,
                go_label_selector(Some(selector)),
                &format!("empty selector is invalid for {kind_word}"),
            ));
        }
    } else {
        errs.push(FieldError::required(&sp, ""));
    }
    let tp = path.child("template");
    let template_labels = template_labels(template);
    let parsed = if has_selector { Some(labels::LabelSelector::from_label_selector(selector)) } else { None };
    match parsed {
        Some(Err(_)) => {
            errs.push(invalid_rendered(&sp, go_label_selector(Some(selector)), "invalid label selector"));
        }
        // A missing selector selects nothing, so it matches no template either.
        Some(Ok(sel)) if sel.is_empty() || sel.matches(template_labels.as_ref().unwrap_or(&BTreeMap::new())) => {}
        _ => errs.push(invalid_rendered(
            &tp.child("metadata").child("labels"),
            go_string_map(template_labels.as_ref()),
            SELECTOR_MISMATCH,
        )),
    }
    errs.extend(validate_pod_template(template, &tp));
    errs.extend(restart_always_template(template, &tp, template_kind));
    errs
}

/// Pods of long-running workloads must restart `Always` and have no deadline.
fn restart_always_template(template: &core::PodTemplateSpec, path: &Path, kind: &str) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = template.spec.clone().unwrap_or_default();
    let restart_policy = spec.restart_policy.as_deref().unwrap_or("");
    if restart_policy != "Always" {
        errs.push(FieldError::not_supported(path.child("spec").child("restartPolicy"), restart_policy, &["Always"]));
    }
    if spec.active_deadline_seconds.is_some() {
        errs.push(FieldError::forbidden(
            path.child("spec").child("activeDeadlineSeconds"),
            format!("activeDeadlineSeconds in {kind} is not Supported"),
        ));
    }
    errs
}

fn template_labels(template: &core::PodTemplateSpec) -> Option<BTreeMap<String, String>> {
    template.metadata.as_ref().and_then(|m| m.labels.clone())
}

fn selector_is_empty(selector: &LabelSelector) -> bool {
    selector.match_labels.as_ref().is_none_or(BTreeMap::is_empty)
        && selector.match_expressions.as_ref().is_none_or(Vec::is_empty)
}

/// Upstream compares selectors treating empty and absent lists and maps alike.
fn normalized(selector: &LabelSelector) -> LabelSelector {
    LabelSelector {
        match_labels: selector.match_labels.clone().filter(|m| !m.is_empty()),
        match_expressions: selector.match_expressions.clone().filter(|e| !e.is_empty()).map(|exprs| {
            exprs
                .into_iter()
                .map(|mut e| {
                    e.values = e.values.filter(|v| !v.is_empty());
                    e
                })
                .collect()
        }),
    }
}

/// apps/v1 selectors may not change.
fn selector_unchanged<T: serde::de::DeserializeOwned>(
    obj: &Value,
    old: &Value,
    path: &Path,
    selector: fn(&T) -> &LabelSelector,
) -> Option<FieldError> {
    let new_spec = decode::<T>(obj, "spec").ok()?;
    let old_spec = match decode::<T>(old, "spec") {
        Ok(spec) => spec,
        Err(e) => return Some(e),
    };
    let (new, old) = (selector(&new_spec), selector(&old_spec));
    (normalized(new) != normalized(old))
        .then(|| invalid_rendered(&path.child("selector"), go_label_selector(Some(new)), FIELD_IMMUTABLE))
}

/// `metav1.LabelSelector`: operators with the right number of values, qualified keys, valid
/// values.
pub(super) fn validate_label_selector(selector: &LabelSelector, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or_default();
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs
                .push(FieldError::required(p.child("values"), "must be specified when `operator` is 'In' or 'NotIn'")),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(p.child("operator"), other, "not a valid selector operator")),
        }
        errs.extend(name_errors(&p.child("key"), &expr.key, names::is_qualified_name(&expr.key)));
        for (j, value) in values.iter().enumerate() {
            errs.extend(name_errors(&p.child("values").index(j), value, names::is_valid_label_value(value)));
        }
    }
    errs.extend(validate_labels(&path.child("matchLabels"), selector.match_labels.as_ref()));
    errs
}

// ---- deployments ----------------------------------------------------------------------------

fn deployment_strategy(strategy: &apps::DeploymentStrategy, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match strategy.type_.as_deref().unwrap_or("") {
        "Recreate" if strategy.rolling_update.is_some() => errs.push(FieldError::forbidden(
            path.child("rollingUpdate"),
            "may not be specified when strategy `type` is 'Recreate'",
        )),
        "Recreate" => {}
        "RollingUpdate" => match &strategy.rolling_update {
            None => errs
                .push(FieldError::required(path.child("rollingUpdate"), "this should be defaulted and never be nil")),
            Some(r) => {
                let rp = path.child("rollingUpdate");
                errs.extend(int_or_percent(&rp.child("maxUnavailable"), r.max_unavailable.as_ref(), true));
                errs.extend(int_or_percent(&rp.child("maxSurge"), r.max_surge.as_ref(), false));
                if int_or_percent_value(r.max_unavailable.as_ref()) == 0
                    && int_or_percent_value(r.max_surge.as_ref()) == 0
                {
                    errs.push(invalid_rendered(
                        &rp.child("maxUnavailable"),
                        go_int_or_string(r.max_unavailable.as_ref()),
                        "may not be 0 when `maxSurge` is 0",
                    ));
                }
            }
        },
        other => errs.push(FieldError::not_supported(path, other, &["Recreate", "RollingUpdate"])),
    }
    errs
}

/// A non-negative count or a percentage (`25%`), which may have to be at most 100%.
fn int_or_percent(path: &Path, value: Option<&IntOrString>, at_most_100: bool) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match value {
        None => {}
        Some(IntOrString::Int(n)) => errs.extend(non_negative(path, Some(i64::from(*n)))),
        Some(IntOrString::String(s)) => match percent(s) {
            None => errs.push(invalid_rendered(
                path,
                go_int_or_string(value),
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )),
            Some(p) if p > 100 && at_most_100 => {
                errs.push(invalid_rendered(path, go_int_or_string(value), "must not be greater than 100%"));
            }
            Some(_) => {}
        },
    }
    errs
}

fn percent(s: &str) -> Option<u64> {
    let digits = s.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The number in a count or percentage; malformed values count as zero, as upstream does.
fn int_or_percent_value(value: Option<&IntOrString>) -> i64 {
    match value {
        None => 0,
        Some(IntOrString::Int(n)) => i64::from(*n),
        Some(IntOrString::String(s)) => percent(s).and_then(|p| i64::try_from(p).ok()).unwrap_or(0),
    }
}

// ---- jobs -----------------------------------------------------------------------------------

fn job_spec(spec: &batch::JobSpec, path: &Path) -> Vec<FieldError> {
    let mut errs = counts(
        path,
        &[
            ("parallelism", spec.parallelism),
            ("completions", spec.completions),
            ("backoffLimit", spec.backoff_limit),
            ("ttlSecondsAfterFinished", spec.ttl_seconds_after_finished),
        ],
    );
    errs.extend(non_negative(&path.child("activeDeadlineSeconds"), spec.active_deadline_seconds));
    let mode = spec.completion_mode.as_deref();
    errs.extend(optional_supported_value(&path.child("completionMode"), mode, &["NonIndexed", "Indexed"]));
    if mode == Some("Indexed") && spec.completions.is_none() {
        errs.push(FieldError::required(path.child("completions"), "when completion mode is Indexed"));
    }
    errs.extend(optional_supported_value(
        &path.child("podReplacementPolicy"),
        spec.pod_replacement_policy.as_deref(),
        &["TerminatingOrFailed", "Failed"],
    ));
    let sp = path.child("selector");
    let tp = path.child("template");
    let template_labels = template_labels(&spec.template);
    match &spec.selector {
        None if spec.manual_selector == Some(true) => errs.push(FieldError::required(&sp, "")),
        None => {}
        Some(selector) => {
            errs.extend(validate_label_selector(selector, &sp));
            match labels::LabelSelector::from_label_selector(selector) {
                Err(_) => errs.push(invalid_rendered(&sp, go_label_selector(Some(selector)), "invalid label selector")),
                Ok(sel) if sel.is_empty() || sel.matches(template_labels.as_ref().unwrap_or(&BTreeMap::new())) => {}
                Ok(_) => errs.push(invalid_rendered(
                    &tp.child("metadata").child("labels"),
                    go_string_map(template_labels.as_ref()),
                    SELECTOR_MISMATCH,
                )),
            }
        }
    }
    errs.extend(validate_pod_template(&spec.template, &tp));
    let restart_policy = spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("");
    if !matches!(restart_policy, "OnFailure" | "Never") {
        errs.push(FieldError::not_supported(
            tp.child("spec").child("restartPolicy"),
            restart_policy,
            &["OnFailure", "Never"],
        ));
    }
    errs
}

/// The selector, completion mode, completions (unless an indexed job is scaled elastically)
/// and template are fixed; a suspended job that never started may still change its pods'
/// scheduling directives, labels and annotations.
fn job_update(new: &batch::JobSpec, old: &batch::JobSpec, old_obj: &Value, path: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let (new_sel, old_sel) = (new.selector.as_ref().map(normalized), old.selector.as_ref().map(normalized));
    if new_sel != old_sel {
        errs.push(invalid_rendered(&path.child("selector"), go_label_selector(new.selector.as_ref()), FIELD_IMMUTABLE));
    }
    if new.completion_mode != old.completion_mode {
        let mode = new.completion_mode.as_deref().unwrap_or("");
        errs.push(FieldError::invalid(path.child("completionMode"), mode, FIELD_IMMUTABLE));
    }
    let elastic = new.completion_mode.as_deref() == Some("Indexed") && new.completions == new.parallelism;
    if new.completions != old.completions && !elastic {
        let value = new.completions.map_or_else(|| "null".to_string(), |c| c.to_string());
        errs.push(FieldError::invalid_raw(path.child("completions"), value, FIELD_IMMUTABLE));
    }
    let mut template = new.template.clone();
    let never_started = old_obj.pointer("/status/startTime").is_none_or(Value::is_null);
    if old.suspend == Some(true) && never_started {
        let (new_meta, old_meta) =
            (template.metadata.get_or_insert_with(Default::default), old.template.metadata.clone().unwrap_or_default());
        new_meta.labels = old_meta.labels;
        new_meta.annotations = old_meta.annotations;
        if let (Some(spec), Some(old_spec)) = (template.spec.as_mut(), old.template.spec.as_ref()) {
            spec.node_selector.clone_from(&old_spec.node_selector);
            spec.affinity.clone_from(&old_spec.affinity);
            spec.tolerations.clone_from(&old_spec.tolerations);
            spec.scheduling_gates.clone_from(&old_spec.scheduling_gates);
        }
        if template.metadata == Some(ObjectMeta::default()) && old.template.metadata.is_none() {
            template.metadata = None;
        }
    }
    if template != old.template {
        let rendered = serde_json::to_string(&new.template).unwrap_or_default();
        errs.push(invalid_rendered(&path.child("template"), rendered, FIELD_IMMUTABLE));
    }
    errs
}

#[cfg(test)]
mod tests;

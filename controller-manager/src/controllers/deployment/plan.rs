//! The Deployment controller's decisions, pure, after upstream's `pkg/controller/deployment`:
//! which ReplicaSets a Deployment claims and which of them is the new one, what a new set is
//! called and carries (template hash, revision, replica annotations), how far one step of a
//! rolling update or a Recreate may go, how a resized Deployment shares its replicas among its
//! sets, which old sets history keeps, and the status and conditions that follow.

use std::cmp::Ordering;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::labels::LabelSelector;
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentCondition, DeploymentSpec, DeploymentStatus, ReplicaSet, ReplicaSetSpec,
};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::controllers::replicaset::plan::Claim;
use crate::pods;

/// The label (and selector term) that tells a Deployment's sets apart.
pub const POD_TEMPLATE_HASH: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
/// Revisions a set had before it became the new set again (a rollback).
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
/// The Deployment's replicas when the set was last sized.
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
/// The Deployment's replicas plus maxSurge when the set was last sized.
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Annotations of a Deployment that are not copied to its new set.
const NOT_COPIED: [&str; 6] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];
/// Upstream's bound on the revision-history annotation.
const MAX_REVISION_HISTORY_CHARS: usize = 2000;
/// Upstream's rand.SafeEncodeString alphabet: no vowels, no look-alikes.
const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

pub const AVAILABLE: &str = "Available";
pub const PROGRESSING: &str = "Progressing";
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const MINIMUM_REPLICAS_AVAILABLE: &str = "MinimumReplicasAvailable";
pub const MINIMUM_REPLICAS_UNAVAILABLE: &str = "MinimumReplicasUnavailable";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const FAILED_RS_CREATE: &str = "ReplicaSetCreateError";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// How a Deployment replaces its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Every old pod goes before any new one is made.
    Recreate,
    /// The resolved fenceposts: pods allowed over `replicas`, and under it, during an update.
    RollingUpdate { max_surge: i32, max_unavailable: i32 },
}

/// What a sync needs of the Deployment's spec, resolved once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rollout {
    pub replicas: i32,
    pub strategy: Strategy,
}

impl Rollout {
    /// Resolves the spec; fails on a maxSurge or maxUnavailable that is neither a number nor a
    /// percentage.
    pub fn of(spec: &DeploymentSpec) -> Result<Self, String> {
        let replicas = spec.replicas.unwrap_or(1);
        let strategy = spec.strategy.clone().unwrap_or_default();
        let strategy = if strategy.type_.as_deref() == Some("Recreate") {
            Strategy::Recreate
        } else {
            let rolling = strategy.rolling_update.unwrap_or_default();
            let (max_surge, max_unavailable) =
                resolve_fenceposts(rolling.max_surge.as_ref(), rolling.max_unavailable.as_ref(), replicas)?;
            Strategy::RollingUpdate { max_surge, max_unavailable }
        };
        Ok(Rollout { replicas, strategy })
    }

    /// Upstream's MaxSurge: none for Recreate.
    pub fn max_surge(&self) -> i32 {
        match self.strategy {
            Strategy::Recreate => 0,
            Strategy::RollingUpdate { max_surge, .. } => max_surge,
        }
    }

    /// Upstream's MaxUnavailable: none for Recreate or no replicas, and at most `replicas`.
    pub fn max_unavailable(&self) -> i32 {
        match self.strategy {
            Strategy::RollingUpdate { max_unavailable, .. } if self.replicas > 0 => max_unavailable.min(self.replicas),
            _ => 0,
        }
    }

    /// The `max-replicas` annotation: pods the Deployment may have at most.
    pub fn max_replicas(&self) -> i32 {
        self.replicas.saturating_add(self.max_surge())
    }
}

/// A number, or a percentage of `total` rounded up or down (upstream's
/// GetScaledValueFromIntOrPercent).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> Result<i32, String> {
    match value {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let Some(number) = s.strip_suffix('%') else {
                return Err(format!("invalid value {s:?}: string is not a percentage"));
            };
            let percent: i64 = number.parse().map_err(|e| format!("invalid value {s:?}: {e}"))?;
            let scaled = percent * i64::from(total);
            let value = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
            i32::try_from(value).map_err(|_| format!("invalid value {s:?}: out of range"))
        }
    }
}

/// Upstream's ResolveFenceposts: maxSurge rounds up, maxUnavailable down, and when both come to
/// zero one pod may be unavailable (else no update could ever start).
pub fn resolve_fenceposts(
    max_surge: Option<&IntOrString>,
    max_unavailable: Option<&IntOrString>,
    desired: i32,
) -> Result<(i32, i32), String> {
    let zero = IntOrString::Int(0);
    let surge = scaled_value(max_surge.unwrap_or(&zero), desired, true)?;
    let unavailable = scaled_value(max_unavailable.unwrap_or(&zero), desired, false)?;
    Ok(if surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) })
}

// ---- sets --------------------------------------------------------------------------------------

pub fn spec_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map(|s| s.replicas).unwrap_or(0)
}

fn ready_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.ready_replicas).unwrap_or(0)
}

fn available_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().and_then(|s| s.available_replicas).unwrap_or(0)
}

/// Pods a set may have right now: its size, or more while it has yet to delete some.
pub fn pods_of(rs: &ReplicaSet) -> i32 {
    spec_replicas(rs).max(status_replicas(rs))
}

/// Available pods a set keeps once it is down to its size (it deletes unavailable pods first).
fn kept_available(rs: &ReplicaSet) -> i32 {
    available_replicas(rs).min(spec_replicas(rs))
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(&rs.metadata, key)?.parse().ok()
}

/// The set's revision; 0 when it has none (or an unreadable one).
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(&rs.metadata, REVISION).and_then(|r| r.parse().ok()).unwrap_or(0)
}

pub fn max_revision(sets: &[Arc<ReplicaSet>]) -> i64 {
    sets.iter().map(|rs| revision(rs)).max().unwrap_or(0)
}

fn name(rs: &ReplicaSet) -> &str {
    rs.metadata.name.as_deref().unwrap_or("")
}

/// Older first, then by name (upstream's ReplicaSetsByCreationTimestamp).
fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> Ordering {
    let created = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    created(a).cmp(&created(b)).then_with(|| name(a).cmp(name(b)))
}

/// Upstream's ClaimObject for a set: owned while it matches (kept while the Deployment is being
/// deleted), released otherwise; a matching orphan not being deleted is adopted.
pub fn claim(owner_uid: &str, owner_deleting: bool, selector: &LabelSelector, meta: &ObjectMeta) -> Claim {
    let empty = Default::default();
    let matches = !selector.is_empty() && selector.matches(meta.labels.as_ref().unwrap_or(&empty));
    match pods::controller_of(meta) {
        Some(r) if r.uid == owner_uid => {
            if matches || owner_deleting {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !owner_deleting && meta.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

// ---- the new set -------------------------------------------------------------------------------

fn fnv32a(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The `pod-template-hash` of a template: fnv32a of the serialized template and, after a name
/// clash, the collision count, written in upstream's consonants-and-digits alphabet.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut hash = fnv32a(0x811c_9dc5, &serde_json::to_vec(template).unwrap_or_default());
    if let Some(count) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&count.to_le_bytes());
        hash = fnv32a(hash, &bytes);
    }
    hash.to_string().bytes().map(|b| char::from(HASH_ALPHABET[usize::from(b) % HASH_ALPHABET.len()])).collect()
}

/// Fields of a pod template that are pointers in Go: for these an explicit zero (`false`, `0`)
/// means something else than leaving the field out (`automountServiceAccountToken: false`,
/// `runAsUser: 0`).
const POINTER_FIELDS: [&str; 21] = [
    "activeDeadlineSeconds",
    "allowPrivilegeEscalation",
    "automountServiceAccountToken",
    "defaultMode",
    "deletionGracePeriodSeconds",
    "enableServiceLinks",
    "fsGroup",
    "hostUsers",
    "minDomains",
    "mode",
    "optional",
    "priority",
    "privileged",
    "readOnlyRootFilesystem",
    "runAsGroup",
    "runAsNonRoot",
    "runAsUser",
    "setHostnameAsFQDN",
    "shareProcessNamespace",
    "terminationGracePeriodSeconds",
    "tolerationSeconds",
];
/// Maps of user data, whose empty values are values.
const USER_MAPS: [&str; 4] = ["labels", "annotations", "nodeSelector", "matchLabels"];

/// A template value as Go sees it: a field left out is its zero value (`false`, `0`, `""`,
/// empty), so zero values are dropped except in [`POINTER_FIELDS`] and [`USER_MAPS`]. (Clients
/// that send protobuf, as kubectl does, get the zero values of Go's non-pointer fields stored;
/// JSON clients leave them out.)
fn semantic(value: serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value;
    match value {
        Value::Null | Value::Bool(false) => None,
        Value::Number(n) if n.as_f64() == Some(0.0) => None,
        Value::String(s) if s.is_empty() => None,
        Value::Array(items) if items.is_empty() => None,
        // Elements keep their places: only objects in a list are reduced.
        Value::Array(items) => Some(Value::Array(
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(_) => semantic(item).unwrap_or_else(|| Value::Object(Default::default())),
                    other => other,
                })
                .collect(),
        )),
        Value::Object(fields) => {
            let fields: serde_json::Map<String, Value> = fields
                .into_iter()
                .filter_map(|(k, v)| {
                    let v = if POINTER_FIELDS.contains(&k.as_str()) {
                        (!v.is_null()).then_some(v)
                    } else if USER_MAPS.contains(&k.as_str()) {
                        v.as_object().is_some_and(|m| !m.is_empty()).then_some(v)
                    } else {
                        semantic(v)
                    };
                    v.map(|v| (k, v))
                })
                .collect();
            (!fields.is_empty()).then_some(Value::Object(fields))
        }
        other => Some(other),
    }
}

/// The template without its `pod-template-hash` label, as [`semantic`] sees it.
fn without_hash(template: &PodTemplateSpec) -> Option<serde_json::Value> {
    let mut template = template.clone();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(POD_TEMPLATE_HASH);
    }
    semantic(serde_json::to_value(template).ok()?)
}

/// Whether two templates are the same but for the `pod-template-hash` label (upstream's
/// EqualIgnoreHash, which compares Go structs: a field left out equals its zero value).
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

/// The new set (the oldest whose template is the Deployment's, as upstream's
/// FindNewReplicaSet) and the old ones, oldest first.
pub fn split(template: &PodTemplateSpec, sets: &[Arc<ReplicaSet>]) -> (Option<Arc<ReplicaSet>>, Vec<Arc<ReplicaSet>>) {
    let mut sorted = sets.to_vec();
    sorted.sort_by(|a, b| by_creation(a, b));
    let new = sorted
        .iter()
        .position(|rs| {
            rs.spec.as_ref().and_then(|s| s.template.as_ref()).is_some_and(|t| equal_ignore_hash(t, template))
        })
        .map(|i| sorted.remove(i));
    (new, sorted)
}

/// Appends `old` to a revision history, dropping the oldest entries to stay within
/// [`MAX_REVISION_HISTORY_CHARS`].
fn append_history(history: Option<&str>, old: &str) -> Option<String> {
    let mut entries: Vec<&str> = history.filter(|h| !h.is_empty()).map(|h| h.split(',').collect()).unwrap_or_default();
    entries.push(old);
    while entries.join(",").len() > MAX_REVISION_HISTORY_CHARS && entries.len() > 1 {
        entries.remove(0);
    }
    let joined = entries.join(",");
    (joined.len() <= MAX_REVISION_HISTORY_CHARS).then_some(joined)
}

/// Upstream's SetNewReplicaSetAnnotations: the new set's annotations with the Deployment's
/// copied in and its revision raised to `revision` (never lowered); a set that had a revision
/// keeps the one it replaced in its revision history (it is being rolled back to).
pub fn new_set_annotations(
    deployment: Option<&BTreeMap<String, String>>,
    current: Option<&BTreeMap<String, String>>,
    revision: i64,
) -> BTreeMap<String, String> {
    let mut annotations = current.cloned().unwrap_or_default();
    for (k, v) in deployment.into_iter().flatten() {
        if !NOT_COPIED.contains(&k.as_str()) {
            annotations.insert(k.clone(), v.clone());
        }
    }
    let old = annotations.get(REVISION).cloned();
    let old_revision = match old.as_deref() {
        None | Some("") => Some(0),
        Some(r) => r.parse::<i64>().ok(),
    };
    if let Some(old_revision) = old_revision
        && old_revision < revision
    {
        annotations.insert(REVISION.into(), revision.to_string());
        if let Some(old) = old.filter(|o| !o.is_empty())
            && let Some(history) = append_history(annotations.get(REVISION_HISTORY).map(String::as_str), &old)
        {
            annotations.insert(REVISION_HISTORY.into(), history);
        }
    }
    annotations
}

/// Whether the set's replica annotations are the Deployment's current ones.
pub fn replica_annotations_current(rs: &ReplicaSet, rollout: &Rollout) -> bool {
    annotation(&rs.metadata, DESIRED_REPLICAS) == Some(rollout.replicas.to_string().as_str())
        && annotation(&rs.metadata, MAX_REPLICAS) == Some(rollout.max_replicas().to_string().as_str())
}

/// The set to create for the Deployment's template: `<deployment>-<hash>`, the hash added to
/// its labels, selector and template labels, controlled by the Deployment.
pub fn new_replica_set(
    deployment: &Deployment,
    rollout: &Rollout,
    hash: &str,
    replicas: i32,
    revision: i64,
) -> ReplicaSet {
    let spec = deployment.spec.clone().unwrap_or_default();
    let mut template = spec.template;
    let labels = {
        let meta = template.metadata.get_or_insert_default();
        let labels = meta.labels.get_or_insert_default();
        labels.insert(POD_TEMPLATE_HASH.into(), hash.into());
        labels.clone()
    };
    let mut selector = spec.selector;
    selector.match_labels.get_or_insert_default().insert(POD_TEMPLATE_HASH.into(), hash.into());
    let mut annotations = new_set_annotations(deployment.metadata.annotations.as_ref(), None, revision);
    annotations.insert(DESIRED_REPLICAS.into(), rollout.replicas.to_string());
    annotations.insert(MAX_REPLICAS.into(), rollout.max_replicas().to_string());
    ReplicaSet {
        metadata: ObjectMeta {
            name: Some(format!("{}-{hash}", deployment.metadata.name.as_deref().unwrap_or(""))),
            namespace: deployment.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![pods::controller_reference(deployment)]),
            ..Default::default()
        },
        spec: Some(ReplicaSetSpec {
            replicas: Some(replicas),
            min_ready_seconds: spec.min_ready_seconds,
            selector,
            template: Some(template),
        }),
        status: None,
    }
}

// ---- scaling -----------------------------------------------------------------------------------

/// Upstream's isScalingEvent: an active set was sized for another replica count.
pub fn is_scaling_event(replicas: i32, sets: &[Arc<ReplicaSet>]) -> bool {
    sets.iter()
        .filter(|rs| spec_replicas(rs) > 0)
        .any(|rs| int_annotation(rs, DESIRED_REPLICAS).is_some_and(|desired| desired != replicas))
}

/// Upstream's FindActiveOrLatest: the only set with replicas, or the newest when none has any.
fn active_or_latest(new: Option<&Arc<ReplicaSet>>, olds: &[Arc<ReplicaSet>]) -> Option<Arc<ReplicaSet>> {
    let active: Vec<&Arc<ReplicaSet>> = olds.iter().chain(new).filter(|rs| spec_replicas(rs) > 0).collect();
    match active.as_slice() {
        [] => new.cloned().or_else(|| olds.iter().max_by(|a, b| by_creation(a, b)).cloned()),
        [only] => Some((*only).clone()),
        _ => None,
    }
}

/// The new set runs the Deployment's replica count, all available.
fn is_saturated(replicas: i32, rs: &ReplicaSet) -> bool {
    spec_replicas(rs) == replicas
        && int_annotation(rs, DESIRED_REPLICAS) == Some(replicas)
        && available_replicas(rs) == replicas
}

/// The share of `to_add` replicas a set of `size` gets: its size scaled from the max-replicas
/// it was sized for (the Deployment's old status when unknown) to the current one, rounded.
fn fraction(rs: &ReplicaSet, rollout: &Rollout, status_replicas: i32) -> i32 {
    let size = i64::from(spec_replicas(rs));
    if rollout.replicas == 0 {
        return i32::try_from(-size).unwrap_or(0);
    }
    let max = i64::from(rollout.max_replicas());
    let annotated = i64::from(int_annotation(rs, MAX_REPLICAS).unwrap_or(status_replicas));
    if annotated <= 0 {
        return 0;
    }
    // round(size * max / annotated), halves up, in integers.
    let scaled = (2 * size * max + annotated).div_euclid(2 * annotated);
    i32::try_from(scaled - size).unwrap_or(0)
}

/// Upstream's getProportion: the set's fraction, capped by what is left to add (or remove).
fn proportion(rs: &ReplicaSet, rollout: &Rollout, status_replicas: i32, to_add: i32, added: i32) -> i32 {
    if spec_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = fraction(rs, rollout, status_replicas);
    let allowed = to_add - added;
    if to_add > 0 { fraction.min(allowed) } else { fraction.max(allowed) }
}

/// Upstream's `scale`, for a Deployment resized (or paused): the sizes its sets should have.
/// A lone active set (or the newest when none is active) takes the whole count; a saturated new
/// set makes the old ones go; during a rolling update the change is shared in proportion to the
/// sets' sizes, the rounding left-over to the biggest. May list a set at its current size whose
/// replica annotations are to be refreshed.
pub fn scale(
    rollout: &Rollout,
    status_replicas: i32,
    new: Option<&Arc<ReplicaSet>>,
    olds: &[Arc<ReplicaSet>],
) -> Vec<(Arc<ReplicaSet>, i32)> {
    if let Some(rs) = active_or_latest(new, olds) {
        return vec![(rs, rollout.replicas)];
    }
    if new.is_some_and(|n| is_saturated(rollout.replicas, n)) {
        return olds.iter().filter(|rs| spec_replicas(rs) > 0).map(|rs| (rs.clone(), 0)).collect();
    }
    if rollout.strategy == Strategy::Recreate {
        return Vec::new();
    }
    let mut active: Vec<Arc<ReplicaSet>> = olds.iter().chain(new).filter(|rs| spec_replicas(rs) > 0).cloned().collect();
    let current: i32 = active.iter().map(|rs| spec_replicas(rs)).sum();
    let allowed = if rollout.replicas > 0 { rollout.max_replicas() } else { 0 };
    let to_add = allowed - current;
    // Biggest first; among equals, newer first when growing and older first when shrinking.
    match to_add.cmp(&0) {
        Ordering::Greater => {
            active.sort_by(|a, b| spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(b, a)))
        }
        Ordering::Less => {
            active.sort_by(|a, b| spec_replicas(b).cmp(&spec_replicas(a)).then_with(|| by_creation(a, b)))
        }
        Ordering::Equal => {}
    }
    let mut added = 0;
    let mut sizes: Vec<i32> = Vec::with_capacity(active.len());
    for rs in &active {
        let share = proportion(rs, rollout, status_replicas, to_add, added);
        sizes.push(spec_replicas(rs) + share);
        added += share;
    }
    if added != to_add
        && let Some(first) = sizes.first_mut()
    {
        *first = (*first + to_add - added).max(0);
    }
    active.into_iter().zip(sizes).collect()
}

/// Upstream's NewRSNewReplicas: the new set's size after one step, with `pods` the pods every
/// set may have now. Recreate takes the whole count at once; a rolling update grows within the
/// surge and never past `replicas`.
pub fn new_set_replicas(rollout: &Rollout, pods: i32, new_replicas: i32) -> i32 {
    match rollout.strategy {
        Strategy::Recreate => rollout.replicas,
        Strategy::RollingUpdate { max_surge, .. } => {
            let max_pods = rollout.replicas.saturating_add(max_surge);
            if pods >= max_pods {
                return new_replicas;
            }
            new_replicas + (max_pods - pods).min(rollout.replicas - new_replicas)
        }
    }
}

/// One change a sync makes to the sets.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Resize the new set.
    ScaleNew(i32),
    /// Resize old sets: (set, size).
    ScaleOld(Vec<(Arc<ReplicaSet>, i32)>),
    /// Nothing can change until pods become available (or are gone).
    Wait,
}

/// One step of a rolling update (upstream's rolloutRolling): grow the new set within the
/// surge; else shrink old sets, first by their unavailable pods (upstream's
/// cleanupUnhealthyReplicas), then as far as the available pods allow.
///
/// Two guards go beyond upstream, for caches that lag the pods: a set's pods count as the more
/// of its size and its status (a set shrunk has yet to delete pods), and a set's available
/// pods count at most up to its size (it deletes unavailable pods first).
pub fn rolling_step(rollout: &Rollout, new: &ReplicaSet, olds: &[Arc<ReplicaSet>]) -> Step {
    let size = spec_replicas(new);
    if size > rollout.replicas {
        return Step::ScaleNew(rollout.replicas);
    }
    if size < rollout.replicas {
        let pods = pods_of(new) + olds.iter().map(|rs| pods_of(rs)).sum::<i32>();
        let grown = new_set_replicas(rollout, pods, size);
        if grown > size {
            return Step::ScaleNew(grown);
        }
    }
    let shrunk = scale_down_old(rollout, new, olds);
    if shrunk.is_empty() { Step::Wait } else { Step::ScaleOld(shrunk) }
}

/// Upstream's reconcileOldReplicaSets: the old sets' new sizes, oldest shrunk first.
fn scale_down_old(rollout: &Rollout, new: &ReplicaSet, olds: &[Arc<ReplicaSet>]) -> Vec<(Arc<ReplicaSet>, i32)> {
    let Strategy::RollingUpdate { max_unavailable, .. } = rollout.strategy else { return Vec::new() };
    let mut sizes: Vec<(Arc<ReplicaSet>, i32)> =
        olds.iter().filter(|rs| spec_replicas(rs) > 0).map(|rs| (rs.clone(), spec_replicas(rs))).collect();
    sizes.sort_by(|a, b| by_creation(&a.0, &b.0));
    let old_pods: i32 = sizes.iter().map(|(_, n)| n).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods = old_pods + spec_replicas(new);
    let new_unavailable = spec_replicas(new) - kept_available(new);
    // Shrinking may not take away availability the new set has yet to make up.
    let max_scaled_down = all_pods - (rollout.replicas - max_unavailable) - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut cleaned = 0;
    for (rs, size) in &mut sizes {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = *size - kept_available(rs);
        if unhealthy <= 0 {
            continue;
        }
        let n = unhealthy.min(max_scaled_down - cleaned);
        *size -= n;
        cleaned += n;
    }
    let min_available = rollout.replicas - rollout.max_unavailable();
    let available = kept_available(new) + sizes.iter().map(|(rs, size)| available_replicas(rs).min(*size)).sum::<i32>();
    let mut budget = available - min_available;
    for (_, size) in &mut sizes {
        if budget <= 0 {
            break;
        }
        let n = (*size).min(budget);
        *size -= n;
        budget -= n;
    }
    sizes.into_iter().filter(|(rs, size)| *size != spec_replicas(rs)).collect()
}

/// One step of a Recreate (upstream's rolloutRecreate).
#[derive(Debug, Clone, PartialEq)]
pub enum RecreateStep {
    /// Scale these old sets to zero.
    ScaleDownOld(Vec<Arc<ReplicaSet>>),
    /// Old pods still run (or are still going).
    WaitForOldPods,
    /// Create the new set if need be and give it every replica.
    ScaleUpNew,
}

pub fn recreate_step(olds: &[Arc<ReplicaSet>], pods: &[Arc<Pod>]) -> RecreateStep {
    let active: Vec<Arc<ReplicaSet>> = olds.iter().filter(|rs| spec_replicas(rs) > 0).cloned().collect();
    if !active.is_empty() {
        RecreateStep::ScaleDownOld(active)
    } else if old_pods_running(olds, pods) {
        RecreateStep::WaitForOldPods
    } else {
        RecreateStep::ScaleUpNew
    }
}

/// Upstream's oldPodsRunning: an old set still reports pods, or a pod of one has not finished
/// (a pod being deleted still runs until it is gone).
pub fn old_pods_running(olds: &[Arc<ReplicaSet>], pods: &[Arc<Pod>]) -> bool {
    if olds.iter().map(|rs| status_replicas(rs)).sum::<i32>() > 0 {
        return true;
    }
    let uids: HashSet<&str> = olds.iter().filter_map(|rs| rs.metadata.uid.as_deref()).collect();
    pods.iter().any(|p| {
        let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
        pods::controller_of(&p.metadata).is_some_and(|r| uids.contains(r.uid.as_str()))
            && !matches!(phase, Some("Succeeded" | "Failed"))
    })
}

/// Upstream's cleanupDeployment: of the old sets beyond `limit`, lowest revision first, the
/// ones that are empty and settled (no replicas, no pods, status current) go.
pub fn history_to_delete(limit: Option<i32>, olds: &[Arc<ReplicaSet>]) -> Vec<Arc<ReplicaSet>> {
    let Some(limit) = limit else { return Vec::new() };
    let mut cleanable: Vec<Arc<ReplicaSet>> =
        olds.iter().filter(|rs| rs.metadata.deletion_timestamp.is_none()).cloned().collect();
    let excess = usize::try_from(i64::try_from(cleanable.len()).unwrap_or(i64::MAX) - i64::from(limit)).unwrap_or(0);
    cleanable.sort_by(|a, b| revision(a).cmp(&revision(b)).then_with(|| by_creation(a, b)));
    cleanable
        .into_iter()
        .take(excess)
        .filter(|rs| {
            let observed = rs.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            spec_replicas(rs) == 0 && status_replicas(rs) == 0 && rs.metadata.generation.unwrap_or(0) <= observed
        })
        .collect()
}

// ---- status ------------------------------------------------------------------------------------

/// The progress deadline, unless there is none (unset, or upstream's "never" of i32::MAX).
pub fn progress_deadline(spec: &DeploymentSpec) -> Option<i32> {
    spec.progress_deadline_seconds.filter(|s| *s != i32::MAX)
}

pub fn condition(type_: &str, status: &str, reason: &str, message: String, now: Timestamp) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

pub fn get_condition<'a>(status: &'a DeploymentStatus, type_: &str) -> Option<&'a DeploymentCondition> {
    status.conditions.as_ref()?.iter().find(|c| c.type_ == type_)
}

/// Upstream's SetDeploymentCondition: a condition of the same status and reason stays as it is;
/// one of the same status keeps its transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut condition: DeploymentCondition) {
    if let Some(current) = get_condition(status, &condition.type_) {
        if current.status == condition.status && current.reason == condition.reason {
            return;
        }
        if current.status == condition.status {
            condition.last_transition_time = current.last_transition_time.clone();
        }
    }
    remove_condition(status, &condition.type_);
    status.conditions.get_or_insert_default().push(condition);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conditions) = status.conditions.as_mut() {
        conditions.retain(|c| c.type_ != type_);
        if conditions.is_empty() {
            status.conditions = None;
        }
    }
}

/// Upstream's checkPausedConditions: the Progressing condition pausing or resuming sets (so a
/// pause never counts against the deadline), unless progress already timed out.
pub fn pause_condition(deployment: &Deployment, now: Timestamp) -> Option<DeploymentCondition> {
    let spec = deployment.spec.as_ref()?;
    progress_deadline(spec)?;
    let status = deployment.status.clone().unwrap_or_default();
    let current = get_condition(&status, PROGRESSING);
    if current.is_some_and(|c| c.reason.as_deref() == Some(TIMED_OUT)) {
        return None;
    }
    let paused_noted = current.is_some_and(|c| c.reason.as_deref() == Some(PAUSED));
    match (spec.paused.unwrap_or(false), paused_noted) {
        (true, false) => Some(condition(PROGRESSING, "Unknown", PAUSED, "Deployment is paused".into(), now)),
        (false, true) => Some(condition(PROGRESSING, "Unknown", RESUMED, "Deployment is resumed".into(), now)),
        _ => None,
    }
}

fn nonzero(n: i32) -> Option<i32> {
    (n != 0).then_some(n)
}

fn count(n: Option<i32>) -> i32 {
    n.unwrap_or(0)
}

/// Upstream's calculateStatus: the counts over the sets, and the Available condition (at least
/// `replicas - maxUnavailable` available); other conditions are kept.
pub fn status(
    deployment: &Deployment,
    rollout: &Rollout,
    sets: &[Arc<ReplicaSet>],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let previous = deployment.status.clone().unwrap_or_default();
    let sum = |f: fn(&ReplicaSet) -> i32| sets.iter().map(|rs| f(rs)).sum::<i32>();
    let available = sum(available_replicas);
    let unavailable = (sum(spec_replicas) - available).max(0);
    let mut status = DeploymentStatus {
        observed_generation: deployment.metadata.generation,
        replicas: nonzero(sum(status_replicas)),
        updated_replicas: nonzero(new.map(status_replicas).unwrap_or(0)),
        ready_replicas: nonzero(sum(ready_replicas)),
        available_replicas: nonzero(available),
        unavailable_replicas: nonzero(unavailable),
        collision_count: previous.collision_count,
        conditions: previous.conditions,
        terminating_replicas: None,
    };
    let available_condition = if available >= rollout.replicas - rollout.max_unavailable() {
        condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE, "Deployment has minimum availability.".into(), now)
    } else {
        let message = "Deployment does not have minimum availability.".into();
        condition(AVAILABLE, "False", MINIMUM_REPLICAS_UNAVAILABLE, message, now)
    };
    set_condition(&mut status, available_condition);
    status
}

/// Upstream's DeploymentComplete: every replica updated and available, and the spec observed.
pub fn complete(replicas: i32, generation: Option<i64>, status: &DeploymentStatus) -> bool {
    count(status.updated_replicas) == replicas
        && count(status.replicas) == replicas
        && count(status.available_replicas) == replicas
        && status.observed_generation.unwrap_or(0) >= generation.unwrap_or(0)
}

/// Upstream's DeploymentProgressing: more pods updated, fewer old ones, or more ready or
/// available than before.
fn progressing(old: &DeploymentStatus, new: &DeploymentStatus) -> bool {
    let old_old = count(old.replicas) - count(old.updated_replicas);
    let new_old = count(new.replicas) - count(new.updated_replicas);
    count(new.updated_replicas) > count(old.updated_replicas)
        || new_old < old_old
        || count(new.ready_replicas) > count(old.ready_replicas)
        || count(new.available_replicas) > count(old.available_replicas)
}

/// Upstream's DeploymentTimedOut: no progress noted for longer than the deadline.
fn timed_out(deadline: i32, status: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(current) = get_condition(status, PROGRESSING) else { return false };
    match current.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => current
            .last_update_time
            .as_ref()
            .is_some_and(|t| t.0 + SignedDuration::from_secs(i64::from(deadline)) < now),
    }
}

/// Upstream's syncRolloutStatus: [`status`], the Progressing condition (complete, progressing,
/// or timed out against the deadline) and the first ReplicaFailure of the sets.
pub fn rollout_status(
    deployment: &Deployment,
    rollout: &Rollout,
    sets: &[Arc<ReplicaSet>],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let mut next = status(deployment, rollout, sets, new, now);
    let deadline = deployment.spec.as_ref().and_then(progress_deadline);
    let previous = deployment.status.clone().unwrap_or_default();
    let current = get_condition(&previous, PROGRESSING);
    let already_complete = next.replicas == next.updated_replicas
        && current.is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE));
    match deadline {
        None => remove_condition(&mut next, PROGRESSING),
        Some(deadline) if !already_complete => {
            let subject = match new {
                Some(rs) => format!("ReplicaSet {:?}", name(rs)),
                None => format!("Deployment {:?}", deployment.metadata.name.as_deref().unwrap_or("")),
            };
            if complete(rollout.replicas, deployment.metadata.generation, &next) {
                let message = format!("{subject} has successfully progressed.");
                set_condition(&mut next, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, message, now));
            } else if progressing(&previous, &next) {
                // Progress moves lastUpdateTime on, even with the same reason.
                let mut c = condition(PROGRESSING, "True", RS_UPDATED, format!("{subject} is progressing."), now);
                if let Some(current) = current.filter(|c| c.status == "True") {
                    c.last_transition_time = current.last_transition_time.clone();
                }
                remove_condition(&mut next, PROGRESSING);
                set_condition(&mut next, c);
            } else if timed_out(deadline, &next, now) {
                let message = format!("{subject} has timed out progressing.");
                set_condition(&mut next, condition(PROGRESSING, "False", TIMED_OUT, message, now));
            }
        }
        Some(_) => {}
    }
    match replica_failure(sets, new) {
        Some(failure) => set_condition(&mut next, failure),
        None => remove_condition(&mut next, REPLICA_FAILURE),
    }
    next
}

/// The first ReplicaFailure condition of the new set, else of any set.
fn replica_failure(sets: &[Arc<ReplicaSet>], new: Option<&ReplicaSet>) -> Option<DeploymentCondition> {
    let failures = |rs: &ReplicaSet| {
        rs.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == REPLICA_FAILURE).cloned())
    };
    let c = new.and_then(failures).or_else(|| sets.iter().find_map(|rs| failures(rs)))?;
    Some(DeploymentCondition {
        type_: c.type_,
        status: c.status,
        reason: c.reason,
        message: c.message,
        last_update_time: c.last_transition_time.clone(),
        last_transition_time: c.last_transition_time,
    })
}

/// Upstream's requeueStuckDeployment: when to look again so a stalled rollout is seen to pass
/// its deadline (a second after it), unless it is complete or already timed out.
pub fn progress_check_after(
    deployment: &Deployment,
    rollout: &Rollout,
    status: &DeploymentStatus,
    now: Timestamp,
) -> Option<Duration> {
    let deadline = deployment.spec.as_ref().and_then(progress_deadline)?;
    let current = get_condition(status, PROGRESSING)?;
    if complete(rollout.replicas, deployment.metadata.generation, status)
        || current.reason.as_deref() == Some(TIMED_OUT)
    {
        return None;
    }
    let due = current.last_update_time.as_ref()?.0 + SignedDuration::from_secs(i64::from(deadline));
    let after = Duration::try_from(due.duration_since(now)).unwrap_or(Duration::ZERO);
    Some(after + Duration::from_secs(1))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::apps::v1::{
        DeploymentStrategy, ReplicaSetCondition, ReplicaSetStatus, RollingUpdateDeployment,
    };
    use k8s_openapi::api::core::v1::{Container, PodSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector as MetaSelector, OwnerReference};

    use serde_json::json;

    use super::*;
    use crate::pods::testing::pod;

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn rolling(replicas: i32, max_surge: i32, max_unavailable: i32) -> Rollout {
        Rollout { replicas, strategy: Strategy::RollingUpdate { max_surge, max_unavailable } }
    }

    fn template(image: &str) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                containers: vec![Container { name: "c".into(), image: Some(image.into()), ..Default::default() }],
                ..Default::default()
            }),
        }
    }

    /// A set `name` created at second `created`, of `size`, with `pods` pods of which
    /// `available` are available, at `revision`.
    fn rs(name: &str, created: i64, size: i32, pods: i32, available: i32, revision: i64) -> Arc<ReplicaSet> {
        Arc::new(ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                creation_timestamp: Some(Time(at(created))),
                generation: Some(1),
                annotations: Some([(REVISION.to_string(), revision.to_string())].into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec { replicas: Some(size), template: Some(template(name)), ..Default::default() }),
            status: Some(ReplicaSetStatus {
                replicas: pods,
                ready_replicas: Some(available),
                available_replicas: Some(available),
                observed_generation: Some(1),
                ..Default::default()
            }),
        })
    }

    fn annotated(set: Arc<ReplicaSet>, desired: i32, max: i32) -> Arc<ReplicaSet> {
        let mut set = (*set).clone();
        let annotations = set.metadata.annotations.get_or_insert_default();
        annotations.insert(DESIRED_REPLICAS.into(), desired.to_string());
        annotations.insert(MAX_REPLICAS.into(), max.to_string());
        Arc::new(set)
    }

    fn sizes(targets: &[(Arc<ReplicaSet>, i32)]) -> Vec<(&str, i32)> {
        targets.iter().map(|(rs, n)| (name(rs), *n)).collect()
    }

    fn deployment(replicas: i32, status: Option<DeploymentStatus>) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("web".into()),
                namespace: Some("ns".into()),
                uid: Some("d-uid".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                progress_deadline_seconds: Some(600),
                template: template("v2"),
                ..Default::default()
            }),
            status,
        }
    }

    #[test]
    fn fenceposts_resolve_like_upstream() {
        let int = IntOrString::Int;
        let pct = |s: &str| IntOrString::String(s.into());
        let cases = [
            (Some(pct("25%")), Some(pct("25%")), 10, Ok((3, 2))),
            (Some(pct("25%")), Some(pct("25%")), 3, Ok((1, 0))),
            (Some(pct("25%")), Some(pct("25%")), 1, Ok((1, 0))),
            (Some(int(1)), Some(int(1)), 4, Ok((1, 1))),
            (Some(int(0)), Some(pct("10%")), 5, Ok((0, 1))),
            (Some(pct("0%")), Some(pct("0%")), 5, Ok((0, 1))),
            (None, None, 5, Ok((0, 1))),
            (Some(pct("100%")), Some(int(0)), 7, Ok((7, 0))),
            (Some(pct("50%")), Some(pct("50%")), 0, Ok((0, 1))),
            (Some(pct("a%")), None, 5, Err(())),
            (Some(pct("3")), None, 5, Err(())),
        ];
        for (surge, unavailable, desired, want) in cases {
            let got = resolve_fenceposts(surge.as_ref(), unavailable.as_ref(), desired).map_err(|_| ());
            assert_eq!(got, want, "{surge:?} {unavailable:?} of {desired}");
        }
    }

    #[test]
    fn a_rollout_resolves_strategy_and_clamps_max_unavailable() {
        let spec = |type_: &str, surge: IntOrString, unavailable: IntOrString, replicas: i32| DeploymentSpec {
            replicas: Some(replicas),
            strategy: Some(DeploymentStrategy {
                type_: Some(type_.into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(surge),
                    max_unavailable: Some(unavailable),
                }),
            }),
            ..Default::default()
        };
        let r = Rollout::of(&spec("RollingUpdate", IntOrString::Int(2), IntOrString::Int(9), 4))
            .unwrap_or(rolling(0, 0, 0));
        assert_eq!(r, rolling(4, 2, 9));
        assert_eq!((r.max_surge(), r.max_unavailable(), r.max_replicas()), (2, 4, 6));
        let r = Rollout::of(&spec("Recreate", IntOrString::Int(2), IntOrString::Int(1), 4)).unwrap_or(rolling(0, 0, 0));
        assert_eq!(r, Rollout { replicas: 4, strategy: Strategy::Recreate });
        assert_eq!((r.max_surge(), r.max_unavailable(), r.max_replicas()), (0, 0, 4));
        let none = Rollout::of(&spec("RollingUpdate", IntOrString::Int(1), IntOrString::Int(1), 0))
            .unwrap_or(rolling(9, 9, 9));
        assert_eq!(none.max_unavailable(), 0, "nothing can be unavailable of nothing");
    }

    #[test]
    fn the_template_hash_is_stable_and_changes_with_template_and_collisions() {
        let v1 = pod_template_hash(&template("v1"), None);
        assert_eq!(v1, pod_template_hash(&template("v1"), None));
        assert!(!v1.is_empty() && v1.len() <= 10, "{v1}");
        assert!(v1.bytes().all(|b| HASH_ALPHABET.contains(&b)), "{v1}");
        assert_ne!(v1, pod_template_hash(&template("v2"), None));
        assert_ne!(v1, pod_template_hash(&template("v1"), Some(1)));
        assert_ne!(pod_template_hash(&template("v1"), Some(1)), pod_template_hash(&template("v1"), Some(2)));
    }

    #[test]
    fn the_new_set_is_the_oldest_with_the_deployments_template_ignoring_the_hash() {
        let with_hash = |set: Arc<ReplicaSet>, image: &str, hash: &str| {
            let mut set = (*set).clone();
            let mut t = template(image);
            t.metadata
                .get_or_insert_default()
                .labels
                .get_or_insert_default()
                .insert(POD_TEMPLATE_HASH.into(), hash.into());
            set.spec.get_or_insert_default().template = Some(t);
            Arc::new(set)
        };
        let sets = vec![
            with_hash(rs("c", 30, 1, 1, 1, 3), "v2", "h3"),
            with_hash(rs("a", 10, 1, 1, 1, 1), "v1", "h1"),
            with_hash(rs("b", 20, 1, 1, 1, 2), "v2", "h2"),
        ];
        let (new, olds) = split(&template("v2"), &sets);
        assert_eq!(new.as_deref().map(name), Some("b"));
        assert_eq!(olds.iter().map(|rs| name(rs)).collect::<Vec<_>>(), ["a", "c"], "oldest first");
        let (new, olds) = split(&template("v3"), &sets);
        assert!(new.is_none());
        assert_eq!(olds.len(), 3);
    }

    #[test]
    fn templates_compare_as_go_sees_them_ignoring_the_hash() {
        let parse = |v: serde_json::Value| serde_json::from_value::<PodTemplateSpec>(v).unwrap_or_default();
        let base = json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "v1", "args": ["", "x"]}]},
        });
        let with = |patch: serde_json::Value| {
            let mut v = base.clone();
            json_merge(&mut v, patch);
            parse(v)
        };
        let cases = [
            (json!({"metadata": {"labels": {POD_TEMPLATE_HASH: "abc"}}}), true),
            // What a protobuf client leaves in, and a JSON client out.
            (json!({"metadata": {"generation": 0, "creationTimestamp": null}}), true),
            (json!({"spec": {"hostPID": false, "hostNetwork": false, "securityContext": {}}}), true),
            (
                json!({"spec": {"containers": [{"name": "c", "image": "v1", "args": ["", "x"], "stdin": false, "tty": false, "resources": {}}]}}),
                true,
            ),
            // Real changes.
            (json!({"spec": {"containers": [{"name": "c", "image": "v2", "args": ["", "x"]}]}}), false),
            (json!({"spec": {"containers": [{"name": "c", "image": "v1", "args": ["x"]}]}}), false),
            (json!({"spec": {"automountServiceAccountToken": false}}), false),
            (json!({"spec": {"securityContext": {"runAsUser": 0}}}), false),
            (json!({"spec": {"hostPID": true}}), false),
            (json!({"metadata": {"labels": {"tier": ""}}}), false),
            (json!({"metadata": {"annotations": {"restartedAt": "now"}}}), false),
        ];
        for (i, (patch, want)) in cases.into_iter().enumerate() {
            assert_eq!(equal_ignore_hash(&parse(base.clone()), &with(patch)), want, "case {i}");
        }
    }

    /// `patch` merged into `target`: objects key by key, anything else replaced.
    fn json_merge(target: &mut serde_json::Value, patch: serde_json::Value) {
        match (target, patch) {
            (serde_json::Value::Object(t), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    json_merge(t.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (t, p) => *t = p,
        }
    }

    #[test]
    fn a_new_set_carries_the_hash_the_revision_and_the_replica_annotations() {
        let mut d = deployment(3, None);
        d.metadata.annotations = Some(
            [
                ("team".to_string(), "a".to_string()),
                (REVISION.to_string(), "7".to_string()),
                ("kubectl.kubernetes.io/last-applied-configuration".to_string(), "{}".to_string()),
            ]
            .into(),
        );
        if let Some(spec) = d.spec.as_mut() {
            spec.selector = MetaSelector {
                match_labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            };
            spec.min_ready_seconds = Some(5);
        }
        let set = new_replica_set(&d, &rolling(3, 1, 0), "abc", 2, 4);
        assert_eq!(set.metadata.name.as_deref(), Some("web-abc"));
        let want_labels: BTreeMap<String, String> =
            [("app".to_string(), "web".to_string()), (POD_TEMPLATE_HASH.to_string(), "abc".to_string())].into();
        assert_eq!(set.metadata.labels.as_ref(), Some(&want_labels));
        let spec = set.spec.clone().unwrap_or_default();
        assert_eq!(spec.selector.match_labels.as_ref(), Some(&want_labels));
        assert_eq!(spec.template.and_then(|t| t.metadata).and_then(|m| m.labels).as_ref(), Some(&want_labels));
        assert_eq!((spec.replicas, spec.min_ready_seconds), (Some(2), Some(5)));
        let want_annotations: BTreeMap<String, String> = [
            ("team".to_string(), "a".to_string()),
            (REVISION.to_string(), "4".to_string()),
            (DESIRED_REPLICAS.to_string(), "3".to_string()),
            (MAX_REPLICAS.to_string(), "4".to_string()),
        ]
        .into();
        assert_eq!(set.metadata.annotations.as_ref(), Some(&want_annotations));
        let owner: OwnerReference = set.metadata.owner_references.into_iter().flatten().next().unwrap_or_default();
        assert_eq!((owner.kind.as_str(), owner.uid.as_str(), owner.controller), ("Deployment", "d-uid", Some(true)));
    }

    #[test]
    fn revisions_only_rise_and_a_rollback_keeps_the_old_revision_in_history() {
        let with = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let cases = [
            // (set's annotations, new revision, want)
            (with(&[]), 1, with(&[(REVISION, "1")])),
            (with(&[(REVISION, "2")]), 2, with(&[(REVISION, "2")])),
            (with(&[(REVISION, "5")]), 3, with(&[(REVISION, "5")])),
            (with(&[(REVISION, "1")]), 3, with(&[(REVISION, "3"), (REVISION_HISTORY, "1")])),
            (with(&[(REVISION, "3"), (REVISION_HISTORY, "1")]), 5, with(&[(REVISION, "5"), (REVISION_HISTORY, "1,3")])),
            (with(&[(REVISION, "x")]), 3, with(&[(REVISION, "x")])),
        ];
        for (current, revision, want) in cases {
            assert_eq!(new_set_annotations(None, Some(&current), revision), want, "{current:?} → {revision}");
        }
        let long = (0..600).map(|i| i.to_string()).collect::<Vec<_>>().join(",");
        let got = new_set_annotations(None, Some(&with(&[(REVISION, "900"), (REVISION_HISTORY, &long)])), 901);
        let history = got.get(REVISION_HISTORY).cloned().unwrap_or_default();
        assert!(history.len() <= MAX_REVISION_HISTORY_CHARS && history.ends_with(",599,900"), "{history}");
        let deployment_annotations = with(&[("team", "a"), (REVISION, "9"), (DESIRED_REPLICAS, "9")]);
        let got = new_set_annotations(Some(&deployment_annotations), Some(&with(&[(REVISION, "2")])), 2);
        assert_eq!(got, with(&[("team", "a"), (REVISION, "2")]), "the Deployment's own revision is not copied");
    }

    #[test]
    fn a_set_sized_for_another_count_is_a_scaling_event() {
        let sets = |desired: i32, size: i32| vec![annotated(rs("a", 1, size, size, size, 1), desired, desired + 1)];
        assert!(!is_scaling_event(3, &sets(3, 3)));
        assert!(is_scaling_event(10, &sets(3, 3)));
        assert!(!is_scaling_event(10, &sets(3, 0)), "inactive sets do not count");
        assert!(!is_scaling_event(10, &[rs("a", 1, 3, 3, 3, 1)]), "no annotation, no event");
    }

    #[test]
    fn a_lone_or_latest_set_takes_the_whole_count() {
        let r = rolling(10, 3, 2);
        let only = annotated(rs("a", 1, 3, 3, 3, 1), 3, 4);
        assert_eq!(sizes(&scale(&r, 3, Some(&only), &[])), [("a", 10)]);
        let olds = [rs("old", 1, 0, 0, 0, 1), rs("older", 0, 0, 0, 0, 1)];
        assert_eq!(sizes(&scale(&r, 0, None, &olds)), [("old", 10)], "no set active: the newest");
        let new = rs("new", 2, 0, 0, 0, 2);
        assert_eq!(sizes(&scale(&r, 0, Some(&new), &olds)), [("new", 10)], "no set active: the new one");
        let active_old = rs("old", 1, 3, 3, 3, 1);
        assert_eq!(sizes(&scale(&r, 3, Some(&new), &[active_old])), [("old", 10)]);
    }

    #[test]
    fn a_saturated_new_set_makes_the_old_ones_go() {
        let r = rolling(3, 1, 0);
        let new = annotated(rs("new", 2, 3, 3, 3, 2), 3, 4);
        let olds = [rs("a", 1, 1, 1, 1, 1), rs("b", 0, 0, 0, 0, 1)];
        assert_eq!(sizes(&scale(&r, 4, Some(&new), &olds)), [("a", 0)]);
    }

    #[test]
    fn a_resize_mid_rollout_is_shared_in_proportion() {
        // (replicas, surge, deployment status replicas, [(name, created, size, max-replicas)], want)
        type Case<'a> = (i32, i32, i32, &'a [(&'a str, i64, i32, i32)], &'a [(&'a str, i32)]);
        let cases: [Case; 5] = [
            // 10 → 20 with 5 + 6 pods (surge 1, max 11 → 21): each scaled by 21/11.
            (20, 1, 11, &[("old", 1, 5, 11), ("new", 2, 6, 11)], &[("new", 11), ("old", 10)]),
            // 10 → 5 (max 6): each scaled by 6/11.
            (5, 1, 11, &[("old", 1, 5, 11), ("new", 2, 6, 11)], &[("new", 3), ("old", 3)]),
            // 3 + 3 of max 7, to max 11: 4.7 → 5 each, and the left-over one to the newer.
            (10, 1, 7, &[("old", 1, 3, 7), ("new", 2, 3, 7)], &[("new", 6), ("old", 5)]),
            // Scale to zero: everything goes.
            (0, 1, 11, &[("old", 1, 5, 11), ("new", 2, 6, 11)], &[("new", 0), ("old", 0)]),
            // No max-replicas annotation: the Deployment's status replicas stand in.
            (20, 0, 10, &[("old", 1, 4, 0), ("new", 2, 6, 0)], &[("new", 12), ("old", 8)]),
        ];
        for (i, (replicas, surge, status_replicas, sets, want)) in cases.into_iter().enumerate() {
            let r = rolling(replicas, surge, 1);
            let made: Vec<Arc<ReplicaSet>> = sets
                .iter()
                .map(|(n, created, size, max)| {
                    let set = rs(n, *created, *size, *size, *size, 1);
                    if *max > 0 { annotated(set, 10, *max) } else { set }
                })
                .collect();
            let (new, olds) = (made.last(), &made[..made.len() - 1]);
            let got = scale(&r, status_replicas, new, olds);
            let mut got = sizes(&got);
            got.sort();
            assert_eq!(got, want, "case {i}");
            let total: i32 = got.iter().map(|(_, n)| n).sum();
            assert!(total <= r.max_replicas().max(0), "case {i}: {total} over {}", r.max_replicas());
        }
    }

    #[test]
    fn recreate_shares_nothing_while_two_sets_are_active() {
        let r = Rollout { replicas: 5, strategy: Strategy::Recreate };
        let new = rs("new", 2, 2, 2, 2, 2);
        assert!(scale(&r, 4, Some(&new), &[rs("old", 1, 2, 2, 2, 1)]).is_empty());
    }

    #[test]
    fn the_new_set_grows_within_the_surge() {
        // (replicas, surge, pods of every set now, new set's size, want)
        let cases = [
            (4, 1, 4, 0, 1),
            (4, 1, 5, 1, 1),
            (4, 1, 4, 1, 2),
            (4, 1, 3, 3, 4),
            (3, 0, 0, 0, 3),
            (10, 3, 10, 0, 3),
            (10, 3, 0, 0, 10),
            (4, 2, 7, 2, 2),
        ];
        for (replicas, surge, pods, size, want) in cases {
            assert_eq!(new_set_replicas(&rolling(replicas, surge, 1), pods, size), want, "{pods} pods, new at {size}");
        }
        assert_eq!(new_set_replicas(&Rollout { replicas: 4, strategy: Strategy::Recreate }, 9, 0), 4);
    }

    #[test]
    fn a_rolling_update_steps_within_surge_and_availability() {
        let r = rolling(4, 1, 1);
        // (new: size, pods, available; olds: (size, pods, available)...; want)
        type Case<'a> = ((i32, i32, i32), &'a [(i32, i32, i32)], Step);
        let old_sizes = |sizes: &[i32]| sizes.to_vec();
        let cases: Vec<(Case, Option<Vec<i32>>)> = vec![
            // Start: the surge lets the new set grow by one.
            (((0, 0, 0), &[(4, 4, 4)], Step::ScaleNew(1)), None),
            // Five pods: no growth; one old pod may go (4 available, 3 needed).
            (((1, 1, 0), &[(4, 4, 4)], Step::Wait), Some(old_sizes(&[3]))),
            // The old set shrank but its pod is not gone yet: no room to grow, nothing to shrink.
            (((1, 1, 0), &[(3, 4, 4)], Step::Wait), None),
            // Gone, and the new pod is available: grow.
            (((1, 1, 1), &[(3, 3, 3)], Step::ScaleNew(2)), None),
            // 3 old + 2 new available of 5: two old may go.
            (((2, 2, 2), &[(3, 3, 3)], Step::Wait), Some(old_sizes(&[1]))),
            // New pods unavailable: nothing may go.
            (((2, 2, 0), &[(3, 3, 3)], Step::Wait), None),
            // Unavailable old pods go first, even when nothing available may.
            (((1, 1, 0), &[(4, 4, 2)], Step::Wait), Some(old_sizes(&[3]))),
            // A status showing more available than the set's size counts only its size.
            (((2, 2, 2), &[(2, 3, 3)], Step::Wait), Some(old_sizes(&[1]))),
            // Done.
            (((4, 4, 4), &[(0, 0, 0)], Step::Wait), None),
            // Too big: shrink to the count.
            (((6, 6, 6), &[], Step::ScaleNew(4)), None),
        ];
        for (i, (((size, pods, available), olds, want), old_want)) in cases.into_iter().enumerate() {
            let new = rs("new", 10, size, pods, available, 2);
            let olds: Vec<Arc<ReplicaSet>> = olds
                .iter()
                .enumerate()
                .map(|(j, (s, p, a))| rs(&format!("old{j}"), i64::try_from(j).unwrap_or(0), *s, *p, *a, 1))
                .collect();
            let got = rolling_step(&r, &new, &olds);
            match old_want {
                None => assert_eq!(got, want, "case {i}"),
                Some(sizes_wanted) => {
                    let Step::ScaleOld(targets) = got else { panic!("case {i}: {got:?}") };
                    assert_eq!(targets.iter().map(|(_, n)| *n).collect::<Vec<_>>(), sizes_wanted, "case {i}");
                }
            }
        }
    }

    #[test]
    fn old_sets_shrink_oldest_first() {
        let r = rolling(6, 0, 3);
        let new = rs("new", 10, 2, 2, 2, 3);
        let olds = vec![rs("b", 2, 2, 2, 2, 2), rs("a", 1, 2, 2, 2, 1)];
        let Step::ScaleOld(targets) = rolling_step(&r, &new, &olds) else { panic!("expected old sets to shrink") };
        assert_eq!(sizes(&targets), [("a", 0), ("b", 1)]);
    }

    #[test]
    fn a_rolling_update_never_exceeds_its_bounds_until_done() {
        // Drive the steps, the sets' pods following their sizes at once and every pod available.
        for (replicas, surge, unavailable) in [(4, 1, 1), (10, 3, 2), (3, 0, 1), (5, 2, 0), (1, 1, 0)] {
            let r = rolling(replicas, surge, unavailable);
            let mut new = rs("new", 10, 0, 0, 0, 2);
            let mut old = rs("old", 1, replicas, replicas, replicas, 1);
            for round in 0.. {
                assert!(round < 100, "{r:?} does not finish");
                let resize = |set: &Arc<ReplicaSet>, n: i32| rs(name(set), 0, n, n, n, 1);
                match rolling_step(&r, &new, std::slice::from_ref(&old)) {
                    Step::ScaleNew(n) => new = resize(&new, n),
                    Step::ScaleOld(targets) => old = resize(&old, targets[0].1),
                    Step::Wait => break,
                }
                let (pods, available) = (pods_of(&new) + pods_of(&old), kept_available(&new) + kept_available(&old));
                assert!(pods <= replicas + surge, "{r:?}: {pods} pods");
                assert!(available >= replicas - r.max_unavailable(), "{r:?}: {available} available");
            }
            assert_eq!((spec_replicas(&new), spec_replicas(&old)), (replicas, 0), "{r:?}");
        }
    }

    #[test]
    fn recreate_scales_old_sets_down_then_waits_for_their_pods() {
        let old = rs("old", 1, 2, 2, 2, 1);
        let RecreateStep::ScaleDownOld(down) = recreate_step(&[old, rs("older", 0, 0, 0, 0, 1)], &[]) else {
            panic!("expected a scale-down")
        };
        assert_eq!(down.iter().map(|rs| name(rs)).collect::<Vec<_>>(), ["old"]);
        assert_eq!(recreate_step(&[rs("old", 1, 0, 1, 0, 1)], &[]), RecreateStep::WaitForOldPods, "status has pods");
        let owned = |phase: &str, deleting: bool| {
            let mut p = pod("p", 0, phase, Some("n"), None);
            if let Some(r) = p.metadata.owner_references.as_mut().and_then(|r| r.first_mut()) {
                r.uid = "uid-old".into();
            }
            if deleting {
                p.metadata.deletion_timestamp = Some(Time(at(5)));
            }
            Arc::new(p)
        };
        let empty_old = [rs("old", 1, 0, 0, 0, 1)];
        assert_eq!(recreate_step(&empty_old, &[owned("Running", true)]), RecreateStep::WaitForOldPods);
        assert_eq!(recreate_step(&empty_old, &[owned("Pending", false)]), RecreateStep::WaitForOldPods);
        assert_eq!(recreate_step(&empty_old, &[owned("Succeeded", false)]), RecreateStep::ScaleUpNew);
        assert_eq!(recreate_step(&empty_old, &[owned("Failed", true)]), RecreateStep::ScaleUpNew);
        let others = Arc::new(pod("q", 0, "Running", Some("n"), None));
        assert_eq!(recreate_step(&empty_old, &[others]), RecreateStep::ScaleUpNew, "not an old set's pod");
    }

    #[test]
    fn history_keeps_the_newest_revisions_and_only_deletes_empty_settled_sets() {
        let mut busy = (*rs("r2", 2, 0, 1, 0, 2)).clone();
        busy.metadata.name = Some("busy".into());
        let mut unobserved = (*rs("r3", 3, 0, 0, 0, 3)).clone();
        unobserved.metadata.generation = Some(2);
        let olds = vec![
            rs("r5", 5, 0, 0, 0, 5),
            rs("r1", 1, 0, 0, 0, 1),
            Arc::new(busy),
            Arc::new(unobserved),
            rs("r4", 4, 1, 1, 1, 4),
        ];
        let names = |sets: Vec<Arc<ReplicaSet>>| sets.iter().map(|rs| name(rs).to_string()).collect::<Vec<_>>();
        assert_eq!(names(history_to_delete(Some(1), &olds)), ["r1"], "the rest are busy, unobserved or active");
        assert_eq!(names(history_to_delete(Some(0), &olds)), ["r1", "r5"]);
        assert_eq!(names(history_to_delete(Some(4), &olds)), ["r1"]);
        assert!(history_to_delete(Some(5), &olds).is_empty());
        assert!(history_to_delete(None, &olds).is_empty(), "no limit keeps everything");
        let mut deleting = (*rs("r0", 0, 0, 0, 0, 0)).clone();
        deleting.metadata.deletion_timestamp = Some(Time(at(9)));
        assert!(history_to_delete(Some(0), &[Arc::new(deleting)]).is_empty());
    }

    #[test]
    fn status_counts_the_sets_and_says_whether_enough_are_available() {
        let d = deployment(4, None);
        let new = rs("new", 2, 2, 2, 1, 2);
        let sets = vec![rs("old", 1, 3, 3, 3, 1), new.clone()];
        let s = status(&d, &rolling(4, 1, 1), &sets, Some(&new), at(100));
        assert_eq!(
            (s.replicas, s.updated_replicas, s.ready_replicas, s.available_replicas, s.unavailable_replicas),
            (Some(5), Some(2), Some(4), Some(4), Some(1))
        );
        assert_eq!(s.observed_generation, Some(2));
        let available = get_condition(&s, AVAILABLE).cloned().unwrap_or_default();
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref(), available.message.as_deref()),
            ("True", Some(MINIMUM_REPLICAS_AVAILABLE), Some("Deployment has minimum availability."))
        );
        let short = status(&deployment(5, None), &rolling(5, 1, 0), &sets, Some(&new), at(100));
        let available = get_condition(&short, AVAILABLE).cloned().unwrap_or_default();
        assert_eq!(
            (available.status.as_str(), available.reason.as_deref()),
            ("False", Some(MINIMUM_REPLICAS_UNAVAILABLE))
        );
        let recreate = status(&d, &Rollout { replicas: 4, strategy: Strategy::Recreate }, &sets, Some(&new), at(100));
        assert_eq!(get_condition(&recreate, AVAILABLE).map(|c| c.status.as_str()), Some("True"), "4 of 4");
        let empty = status(&deployment(0, None), &rolling(0, 1, 1), &[], None, at(100));
        assert_eq!((empty.replicas, empty.available_replicas), (None, None), "zeros are left out as upstream");
    }

    #[test]
    fn conditions_keep_their_times_unless_they_change() {
        let mut s = DeploymentStatus::default();
        set_condition(&mut s, condition(PROGRESSING, "True", RS_UPDATED, "a".into(), at(1)));
        set_condition(&mut s, condition(PROGRESSING, "True", RS_UPDATED, "b".into(), at(2)));
        let c = get_condition(&s, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(
            (c.message.as_deref(), c.last_update_time),
            (Some("a"), Some(Time(at(1)))),
            "same reason: unchanged"
        );
        set_condition(&mut s, condition(PROGRESSING, "True", NEW_RS_AVAILABLE, "c".into(), at(3)));
        let c = get_condition(&s, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!((c.last_update_time, c.last_transition_time), (Some(Time(at(3))), Some(Time(at(1)))));
        set_condition(&mut s, condition(PROGRESSING, "False", TIMED_OUT, "d".into(), at(4)));
        let c = get_condition(&s, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!(c.last_transition_time, Some(Time(at(4))));
        remove_condition(&mut s, PROGRESSING);
        assert_eq!(s.conditions, None);
    }

    fn progressing_condition(status: &DeploymentStatus) -> (String, String, String) {
        let c = get_condition(status, PROGRESSING).cloned().unwrap_or_default();
        (c.status, c.reason.unwrap_or_default(), c.message.unwrap_or_default())
    }

    #[test]
    fn the_progressing_condition_follows_the_rollout() {
        let r = rolling(2, 1, 0);
        let started = DeploymentStatus {
            observed_generation: Some(2),
            replicas: Some(2),
            available_replicas: Some(2),
            ready_replicas: Some(2),
            conditions: Some(vec![condition(PROGRESSING, "True", NEW_RS_CREATED, "Created".into(), at(100))]),
            ..Default::default()
        };
        let d = deployment(2, Some(started));
        let old = rs("web-old", 1, 2, 2, 2, 1);
        let new = rs("web-new", 2, 1, 0, 0, 2);
        // Nothing moved yet: the condition stays.
        let s = rollout_status(&d, &r, &[old.clone(), new.clone()], Some(&new), at(200));
        assert_eq!(progressing_condition(&s).1, NEW_RS_CREATED);
        assert_eq!(progress_check_after(&d, &r, &s, at(200)), Some(Duration::from_secs(501)));
        // A new pod: progressing.
        let new = rs("web-new", 2, 1, 1, 0, 2);
        let s = rollout_status(&d, &r, &[old.clone(), new.clone()], Some(&new), at(200));
        assert_eq!(
            progressing_condition(&s),
            ("True".into(), RS_UPDATED.into(), "ReplicaSet \"web-new\" is progressing.".into())
        );
        let c = get_condition(&s, PROGRESSING).cloned().unwrap_or_default();
        assert_eq!((c.last_update_time, c.last_transition_time), (Some(Time(at(200))), Some(Time(at(100)))));
        // No progress past the deadline: timed out, and no more checks.
        let stalled = rs("web-new", 2, 1, 0, 0, 2);
        let s = rollout_status(&d, &r, &[old.clone(), stalled.clone()], Some(&stalled), at(701));
        assert_eq!(
            progressing_condition(&s),
            ("False".into(), TIMED_OUT.into(), "ReplicaSet \"web-new\" has timed out progressing.".into())
        );
        let timed_out = deployment(2, Some(s.clone()));
        assert_eq!(progress_check_after(&timed_out, &r, &s, at(701)), None);
        // Every pod updated and available: complete.
        let done = rs("web-new", 2, 2, 2, 2, 2);
        let s = rollout_status(&d, &r, &[rs("web-old", 1, 0, 0, 0, 1), done.clone()], Some(&done), at(300));
        assert_eq!(
            progressing_condition(&s),
            ("True".into(), NEW_RS_AVAILABLE.into(), "ReplicaSet \"web-new\" has successfully progressed.".into())
        );
        assert_eq!(progress_check_after(&d, &r, &s, at(300)), None);
        // Without a deadline there is no Progressing condition.
        let mut no_deadline = d.clone();
        if let Some(spec) = no_deadline.spec.as_mut() {
            spec.progress_deadline_seconds = Some(i32::MAX);
        }
        let s = rollout_status(&no_deadline, &r, std::slice::from_ref(&done), Some(&done), at(300));
        assert!(get_condition(&s, PROGRESSING).is_none());
    }

    #[test]
    fn a_replica_failure_of_the_new_set_comes_first() {
        let failing = |set: Arc<ReplicaSet>, message: &str| {
            let mut set = (*set).clone();
            set.status.get_or_insert_default().conditions = Some(vec![ReplicaSetCondition {
                type_: REPLICA_FAILURE.into(),
                status: "True".into(),
                reason: Some("FailedCreate".into()),
                message: Some(message.into()),
                last_transition_time: Some(Time(at(7))),
            }]);
            Arc::new(set)
        };
        let old = failing(rs("old", 1, 1, 1, 1, 1), "old quota");
        let new = failing(rs("new", 2, 1, 0, 0, 2), "new quota");
        let d = deployment(2, None);
        let s = rollout_status(&d, &rolling(2, 1, 0), &[old.clone(), new.clone()], Some(&new), at(10));
        assert_eq!(get_condition(&s, REPLICA_FAILURE).and_then(|c| c.message.as_deref()), Some("new quota"));
        let healthy = rs("new", 2, 1, 0, 0, 2);
        let s = rollout_status(&d, &rolling(2, 1, 0), &[old, healthy.clone()], Some(&healthy), at(10));
        assert_eq!(get_condition(&s, REPLICA_FAILURE).and_then(|c| c.message.as_deref()), Some("old quota"));
    }

    #[test]
    fn pausing_and_resuming_note_it_in_the_progressing_condition() {
        let with = |paused: bool, reason: Option<&str>| {
            let status = reason.map(|r| DeploymentStatus {
                conditions: Some(vec![condition(PROGRESSING, "True", r, String::new(), at(1))]),
                ..Default::default()
            });
            let mut d = deployment(1, status);
            if let Some(spec) = d.spec.as_mut() {
                spec.paused = Some(paused);
            }
            d
        };
        let reason = |d: &Deployment| pause_condition(d, at(5)).and_then(|c| c.reason);
        assert_eq!(reason(&with(true, None)).as_deref(), Some(PAUSED));
        assert_eq!(reason(&with(true, Some(RS_UPDATED))).as_deref(), Some(PAUSED));
        assert_eq!(reason(&with(true, Some(PAUSED))), None, "already noted");
        assert_eq!(reason(&with(false, Some(PAUSED))).as_deref(), Some(RESUMED));
        assert_eq!(reason(&with(false, Some(RS_UPDATED))), None);
        assert_eq!(reason(&with(true, Some(TIMED_OUT))), None, "a timeout is not overwritten");
        let c = pause_condition(&with(true, None), at(5)).unwrap_or_default();
        assert_eq!((c.status.as_str(), c.message.as_deref()), ("Unknown", Some("Deployment is paused")));
    }

    #[test]
    fn claims_follow_the_selector_and_the_controller_reference() {
        let selector = LabelSelector::parse("app=web").unwrap_or_else(|_| LabelSelector::new(vec![]));
        let meta = |labels: &str, owner: Option<&str>| ObjectMeta {
            labels: Some([("app".to_string(), labels.to_string())].into()),
            owner_references: owner
                .map(|uid| vec![OwnerReference { uid: uid.into(), controller: Some(true), ..Default::default() }]),
            ..Default::default()
        };
        let cases = [
            (meta("web", Some("d-uid")), false, Claim::Owned),
            (meta("db", Some("d-uid")), false, Claim::Release),
            (meta("db", Some("d-uid")), true, Claim::Owned),
            (meta("web", None), false, Claim::Adopt),
            (meta("web", None), true, Claim::Ignore),
            (meta("web", Some("other")), false, Claim::Ignore),
            (meta("db", None), false, Claim::Ignore),
        ];
        for (i, (m, deleting, want)) in cases.into_iter().enumerate() {
            assert_eq!(claim("d-uid", deleting, &selector, &m), want, "case {i}");
        }
    }
}

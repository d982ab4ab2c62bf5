//! The StatefulSet controller's decisions, pure: pod and claim names, the pod of an ordinal at a
//! revision, the ControllerRevision of a template, which revision is the update revision, the
//! next pods to create or delete (OrderedReady or Parallel, scale, rolling update down to the
//! partition), which old revisions to drop, and the status that follows.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodSpec, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

use crate::controllers::daemonset::plan::{CONTROLLER_REVISION_HASH, hash};
use crate::pods;

pub const POD_NAME: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX: &str = "apps.kubernetes.io/pod-index";
/// The label of a ControllerRevision carrying its hash.
pub const REVISION_HASH: &str = "controller.kubernetes.io/hash";

/// `<set>-<ordinal>`.
pub fn pod_name(set: &str, ordinal: i32) -> String {
    format!("{set}-{ordinal}")
}

/// The ordinal of a pod named `<set>-<ordinal>`, if it is one of the set's.
pub fn ordinal(set: &str, pod: &str) -> Option<i32> {
    let digits = pod.strip_prefix(set)?.strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

/// `<claim template>-<set>-<ordinal>`.
pub fn claim_name(template: &str, set: &str, ordinal: i32) -> String {
    format!("{template}-{set}-{ordinal}")
}

/// The claims of one ordinal: each volumeClaimTemplate, named for the ordinal and labelled with
/// the set's `matchLabels`. They have no owner, so they outlive pods and scale-downs.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else { return Vec::new() };
    let name = set.metadata.name.as_deref().unwrap_or("");
    let match_labels = spec.selector.match_labels.clone().unwrap_or_default();
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|template| {
            let template_name = template.metadata.name.as_deref().unwrap_or("");
            let mut labels = template.metadata.labels.clone().unwrap_or_default();
            labels.extend(match_labels.clone());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(claim_name(template_name, name, ordinal)),
                    namespace: set.metadata.namespace.clone(),
                    labels: (!labels.is_empty()).then_some(labels),
                    annotations: template.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: template.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The pod of `ordinal` from `template` (the set's, or an older revision's), labelled with
/// `revision`: its stable name, `hostname` and `subdomain` (the governing Service), the pod
/// name and index labels, and a volume per claim template referring to the ordinal's claim
/// (replacing a template volume of the same name).
pub fn stateful_pod(
    set: &StatefulSet,
    template: &PodTemplateSpec,
    revision: &str,
    ordinal: i32,
    owner: OwnerReference,
) -> Pod {
    let set_name = set.metadata.name.as_deref().unwrap_or("");
    let name = pod_name(set_name, ordinal);
    let ns = set.metadata.namespace.as_deref().unwrap_or("");
    let mut pod = pods::from_template(template, ns, "", owner);
    pod.metadata.generate_name = None;
    pod.metadata.name = Some(name.clone());
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME.into(), name.clone());
    labels.insert(POD_INDEX.into(), ordinal.to_string());
    labels.insert(CONTROLLER_REVISION_HASH.into(), revision.into());
    let service = set.spec.as_ref().map(|s| s.service_name.clone()).unwrap_or_default();
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    spec.hostname = Some(name);
    if let Some(service) = service.filter(|s| !s.is_empty()) {
        spec.subdomain = Some(service);
    }
    let claims: Vec<(String, String)> = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .into_iter()
        .flatten()
        .map(|t| {
            let template_name = t.metadata.name.clone().unwrap_or_default();
            let claim = claim_name(&template_name, set_name, ordinal);
            (template_name, claim)
        })
        .collect();
    if !claims.is_empty() {
        let others = spec.volumes.take().unwrap_or_default();
        let mut volumes: Vec<Volume> = claims
            .iter()
            .map(|(volume, claim)| Volume {
                name: volume.clone(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: None,
                }),
                ..Default::default()
            })
            .collect();
        volumes.extend(others.into_iter().filter(|v| !claims.iter().any(|(name, _)| *name == v.name)));
        spec.volumes = Some(volumes);
    }
    pod
}

/// A revision's data, as upstream: the template as a strategic merge patch replacing the set's.
pub fn revision_data(template: &PodTemplateSpec) -> Value {
    let mut template = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(object) = template.as_object_mut() {
        object.insert("$patch".into(), "replace".into());
    }
    json!({"spec": {"template": template}})
}

/// The template a revision holds.
pub fn revision_template(revision: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut template = revision.data.as_ref()?.0.get("spec")?.get("template")?.clone();
    template.as_object_mut()?.remove("$patch");
    serde_json::from_value(template).ok()
}

/// The revision `number` of `set` for `data`, named `<set>-<hash>`.
pub fn new_revision(set: &StatefulSet, data: Value, number: i64, collision_count: Option<i32>) -> ControllerRevision {
    let set_name = set.metadata.name.as_deref().unwrap_or("");
    let digest = hash(&serde_json::to_vec(&data).unwrap_or_default(), collision_count);
    let mut labels =
        set.spec.as_ref().and_then(|s| s.template.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(REVISION_HASH.into(), digest.clone());
    ControllerRevision {
        metadata: ObjectMeta {
            name: Some(format!("{set_name}-{digest}")),
            namespace: set.metadata.namespace.clone(),
            labels: Some(labels),
            owner_references: Some(vec![pods::controller_reference(set)]),
            ..Default::default()
        },
        data: Some(RawExtension(data)),
        revision: number,
    }
}

/// Sorts revisions oldest first (by number, then name).
pub fn sort_revisions(revisions: &mut [Arc<ControllerRevision>]) {
    revisions.sort_by(|a, b| a.revision.cmp(&b.revision).then_with(|| a.metadata.name.cmp(&b.metadata.name)));
}

/// Where the update revision comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateRevision {
    /// The newest revision already holds the template.
    Existing(String),
    /// An older revision holds it (a rollback): it becomes the newest with this number.
    Renumber { name: String, revision: i64 },
    /// No revision holds it: a new one with this number.
    Create { revision: i64 },
}

/// Upstream's getStatefulSetRevisions, given the set's revisions oldest first and the data of
/// its template.
pub fn update_revision(revisions: &[Arc<ControllerRevision>], data: &Value) -> UpdateRevision {
    let next = revisions.last().map_or(1, |r| r.revision + 1);
    let equal = revisions.iter().rev().find(|r| r.data.as_ref().map(|d| &d.0) == Some(data));
    let name = |r: &ControllerRevision| r.metadata.name.clone().unwrap_or_default();
    match equal {
        Some(e) if revisions.last().is_some_and(|last| last.metadata.name == e.metadata.name) => {
            UpdateRevision::Existing(name(e))
        }
        Some(e) => UpdateRevision::Renumber { name: name(e), revision: next },
        None => UpdateRevision::Create { revision: next },
    }
}

/// The revisions to delete beyond `limit`: the oldest of those neither current, update, nor
/// worn by a pod (upstream's truncateHistory). `revisions` are oldest first.
pub fn history_to_delete(
    revisions: &[Arc<ControllerRevision>],
    pods: &[Arc<Pod>],
    current: &str,
    update: &str,
    limit: i32,
) -> Vec<String> {
    let mut live: HashSet<&str> = [current, update].into();
    live.extend(pods.iter().filter_map(|p| revision_of(p)));
    let historic: Vec<String> =
        revisions.iter().filter_map(|r| r.metadata.name.clone()).filter(|name| !live.contains(name.as_str())).collect();
    let excess = historic.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
    historic.into_iter().take(excess).collect()
}

/// The revision a pod was made from.
pub fn revision_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(CONTROLLER_REVISION_HASH).map(String::as_str)
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && pods::is_ready(pod)
}

/// What the sync knows beyond the pods.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    pub set_name: &'a str,
    pub replicas: i32,
    /// `podManagementPolicy: Parallel`: no waiting for predecessors.
    pub parallel: bool,
    /// `Some(partition)` for RollingUpdate, `None` for OnDelete.
    pub partition: Option<i32>,
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    pub min_ready_seconds: i32,
    pub now: Timestamp,
}

/// Why a pod goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It failed (or finished); it is recreated with the same name.
    Failed,
    /// Its ordinal is at or above `replicas`.
    ScaledDown,
    /// It is of an old revision, at or above the partition.
    Update,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Create the pod of `ordinal` (its claims first) at `revision`.
    Create {
        ordinal: i32,
        revision: String,
    },
    Delete {
        pod: Arc<Pod>,
        why: Why,
    },
}

impl<'a> Input<'a> {
    /// The revision a new pod of `ordinal` gets: below the partition, the current one.
    pub fn revision_for(&self, ordinal: i32) -> &'a str {
        if self.partition.is_some_and(|p| ordinal < p) { self.current_revision } else { self.update_revision }
    }
}

/// Upstream's updateStatefulSet over the set's pods: create missing ordinals below `replicas`
/// (OrderedReady: the lowest, and only once every lower one is Running and Ready, one per pass);
/// delete failed pods to be recreated; delete ordinals at or above `replicas` from the highest
/// (OrderedReady: one at a time, waiting for it to be gone, and only while the others are
/// healthy); then, for RollingUpdate, delete the highest pod at or above the partition that is
/// not of the update revision, once the pods above it are healthy.
pub fn plan(input: &Input, pods: &[Arc<Pod>]) -> Vec<Action> {
    let monotonic = !input.parallel;
    let available = |p: &Pod| pods::is_available(p, input.min_ready_seconds, input.now);
    let healthy = |p: &Pod| running_and_ready(p) && available(p) && !terminating(p);
    let count = usize::try_from(input.replicas).unwrap_or(0);
    let mut replicas: Vec<Option<Arc<Pod>>> = vec![None; count];
    let mut condemned: Vec<(i32, Arc<Pod>)> = Vec::new();
    for pod in pods {
        let Some(ord) = ordinal(input.set_name, pod.metadata.name.as_deref().unwrap_or("")) else { continue };
        match replicas.get_mut(usize::try_from(ord).unwrap_or(usize::MAX)) {
            Some(slot) => *slot = Some(pod.clone()),
            None => condemned.push((ord, pod.clone())),
        }
    }
    condemned.sort_by_key(|(ord, _)| *ord);
    let first_unhealthy: Option<i32> = replicas
        .iter()
        .zip(0..)
        .find(|(slot, _)| slot.as_deref().is_none_or(|p| !healthy(p)))
        .map(|(_, ord)| ord)
        .or_else(|| condemned.iter().find(|(_, p)| !healthy(p)).map(|(ord, _)| *ord));

    let mut actions = Vec::new();
    for (slot, ord) in replicas.iter().zip(0..) {
        match slot {
            None => {
                actions.push(Action::Create { ordinal: ord, revision: input.revision_for(ord).to_string() });
                if monotonic {
                    return actions;
                }
            }
            Some(pod) if matches!(phase(pod), "Failed" | "Succeeded") && !terminating(pod) => {
                actions.push(Action::Delete { pod: pod.clone(), why: Why::Failed });
                if monotonic {
                    return actions;
                }
            }
            Some(pod) => {
                if monotonic && (terminating(pod) || !running_and_ready(pod) || !available(pod)) {
                    return actions;
                }
            }
        }
    }
    for (ord, pod) in condemned.iter().rev() {
        if terminating(pod) {
            if monotonic {
                return actions;
            }
            continue;
        }
        if monotonic && !healthy(pod) && first_unhealthy != Some(*ord) {
            return actions;
        }
        actions.push(Action::Delete { pod: pod.clone(), why: Why::ScaledDown });
        if monotonic {
            return actions;
        }
    }
    let Some(partition) = input.partition else { return actions };
    let floor = usize::try_from(partition).unwrap_or(0);
    for slot in replicas.iter().skip(floor).rev() {
        // A missing or failed pod is being replaced: wait for it.
        let Some(pod) = slot.as_ref().filter(|p| !matches!(phase(p), "Failed" | "Succeeded")) else {
            return actions;
        };
        if revision_of(pod) != Some(input.update_revision) && !terminating(pod) {
            actions.push(Action::Delete { pod: pod.clone(), why: Why::Update });
            return actions;
        }
        if !healthy(pod) {
            return actions;
        }
    }
    actions
}

/// The set's status from its pods (upstream's computeReplicaStatus): pods created, ready,
/// available, and (not terminating) of the current and the update revision; once a rolling
/// update has every pod updated and ready, the update revision becomes the current one.
pub fn status(
    set: &StatefulSet,
    pods: &[Arc<Pod>],
    current_revision: &str,
    update_revision: &str,
    collision_count: Option<i32>,
    now: Timestamp,
) -> StatefulSetStatus {
    let spec = set.spec.clone().unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for pod in pods.iter().filter(|p| {
        ordinal(set.metadata.name.as_deref().unwrap_or(""), p.metadata.name.as_deref().unwrap_or("")).is_some()
    }) {
        let created = !phase(pod).is_empty();
        if created {
            replicas += 1;
        }
        if running_and_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready, now) {
                available += 1;
            }
        }
        if created && !terminating(pod) {
            if revision_of(pod) == Some(current_revision) {
                current += 1;
            }
            if revision_of(pod) == Some(update_revision) {
                updated += 1;
            }
        }
    }
    let rolling =
        spec.update_strategy.as_ref().and_then(|s| s.type_.as_deref()).unwrap_or("RollingUpdate") == "RollingUpdate";
    let mut current_revision = current_revision.to_string();
    if rolling && updated == replicas && ready == replicas {
        current = updated;
        current_revision = update_revision.to_string();
    }
    StatefulSetStatus {
        replicas,
        ready_replicas: Some(ready),
        available_replicas: Some(available),
        current_replicas: Some(current),
        updated_replicas: Some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(update_revision.to_string()),
        observed_generation: set.metadata.generation,
        collision_count,
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn web(ordinal: i32, revision: &str, state: &str) -> Arc<Pod> {
        let (phase, ready) = match state {
            "ready" => ("Running", Some(1)),
            "running" => ("Running", None),
            "pending" => ("Pending", None),
            "failed" | "terminating" => (if state == "failed" { "Failed" } else { "Running" }, Some(1)),
            _ => ("", None),
        };
        let mut p = pod(&pod_name("web", ordinal), 1, phase, None, ready);
        p.metadata.labels.get_or_insert_with(BTreeMap::new).insert(CONTROLLER_REVISION_HASH.into(), revision.into());
        if state == "terminating" {
            p.metadata.deletion_timestamp = p.metadata.creation_timestamp.clone();
        }
        Arc::new(p)
    }

    fn input(replicas: i32, parallel: bool, partition: Option<i32>) -> Input<'static> {
        Input {
            set_name: "web",
            replicas,
            parallel,
            partition,
            current_revision: "web-old",
            update_revision: "web-new",
            min_ready_seconds: 0,
            now: at(100),
        }
    }

    /// Actions as text: `create 2@web-new`, `delete web-3 (ScaledDown)`.
    fn describe(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .map(|a| match a {
                Action::Create { ordinal, revision } => format!("create {ordinal}@{revision}"),
                Action::Delete { pod, why } => {
                    format!("delete {} ({why:?})", pod.metadata.name.as_deref().unwrap_or(""))
                }
            })
            .collect()
    }

    #[test]
    fn names_and_ordinals_round_trip() {
        assert_eq!(pod_name("web", 3), "web-3");
        assert_eq!(claim_name("www", "web", 0), "www-web-0");
        let cases = [
            ("web-0", Some(0)),
            ("web-12", Some(12)),
            ("web-", None),
            ("web-x", None),
            ("web-01", None),
            ("web-1-2", None),
            ("webby-1", None),
            ("other-1", None),
        ];
        for (name, want) in cases {
            assert_eq!(ordinal("web", name), want, "{name}");
        }
        assert_eq!(ordinal("web-1", "web-1-2"), Some(2), "a set whose name ends in a number");
    }

    #[test]
    fn ordered_ready_creates_and_deletes_one_pod_at_a_time_in_order() {
        type Case = (&'static str, i32, Vec<Arc<Pod>>, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            ("first pod", 3, vec![], vec!["create 0@web-new"]),
            ("wait for web-0 to be ready", 3, vec![web(0, "web-new", "running")], vec![]),
            ("pending is not ready", 3, vec![web(0, "web-new", "pending")], vec![]),
            ("web-0 ready: web-1", 3, vec![web(0, "web-new", "ready")], vec!["create 1@web-new"]),
            (
                "a gap is filled first",
                3,
                vec![web(0, "web-new", "ready"), web(2, "web-new", "ready")],
                vec!["create 1@web-new"],
            ),
            (
                "a failed pod is deleted to be recreated",
                3,
                vec![web(0, "web-new", "ready"), web(1, "web-new", "failed")],
                vec!["delete web-1 (Failed)"],
            ),
            (
                "scale down from the highest",
                1,
                vec![web(0, "web-new", "ready"), web(1, "web-new", "ready"), web(2, "web-new", "ready")],
                vec!["delete web-2 (ScaledDown)"],
            ),
            (
                "wait for the deleted one to be gone",
                1,
                vec![web(0, "web-new", "ready"), web(1, "web-new", "ready"), web(2, "web-new", "terminating")],
                vec![],
            ),
            (
                "no scale down while a remaining pod is unhealthy",
                1,
                vec![web(0, "web-new", "running"), web(1, "web-new", "ready")],
                vec![],
            ),
            (
                "the first unhealthy condemned pod may go",
                1,
                vec![web(0, "web-new", "ready"), web(1, "web-new", "ready"), web(2, "web-new", "running")],
                vec!["delete web-2 (ScaledDown)"],
            ),
        ];
        for (what, replicas, pods, want) in cases {
            assert_eq!(describe(&plan(&input(replicas, false, Some(0)), &pods)), want, "{what}");
        }
    }

    #[test]
    fn parallel_creates_and_deletes_all_at_once() {
        let created = plan(&input(3, true, Some(0)), &[web(1, "web-new", "pending")]);
        assert_eq!(describe(&created), ["create 0@web-new", "create 2@web-new"]);
        let pods = [
            web(0, "web-new", "running"),
            web(1, "web-new", "ready"),
            web(2, "web-new", "terminating"),
            web(3, "web-new", "pending"),
        ];
        assert_eq!(
            describe(&plan(&input(1, true, Some(0)), &pods)),
            ["delete web-3 (ScaledDown)", "delete web-1 (ScaledDown)"]
        );
    }

    #[test]
    fn a_rolling_update_goes_from_the_highest_ordinal_down_to_the_partition() {
        type Case = (&'static str, Option<i32>, Vec<Arc<Pod>>, Vec<&'static str>);
        let old = |o| web(o, "web-old", "ready");
        let new = |o| web(o, "web-new", "ready");
        let cases: Vec<Case> = vec![
            ("highest first", Some(0), vec![old(0), old(1), old(2)], vec!["delete web-2 (Update)"]),
            ("then the next", Some(0), vec![old(0), old(1), new(2)], vec!["delete web-1 (Update)"]),
            (
                "wait while an updated pod is not ready",
                Some(0),
                vec![old(0), old(1), web(2, "web-new", "running")],
                vec![],
            ),
            ("the partition stops it", Some(1), vec![old(0), new(1), new(2)], vec![]),
            ("above the partition", Some(1), vec![old(0), old(1), new(2)], vec!["delete web-1 (Update)"]),
            ("OnDelete leaves old pods", None, vec![old(0), old(1), old(2)], vec![]),
            (
                "a recreated pod below the partition gets the current revision",
                Some(2),
                vec![new(2), old(1)],
                vec!["create 0@web-old"],
            ),
            ("OnDelete recreates at the update revision", None, vec![old(1), old(2)], vec!["create 0@web-new"]),
        ];
        for (what, partition, pods, want) in cases {
            assert_eq!(describe(&plan(&input(3, false, partition), &pods)), want, "{what}");
        }
        let parallel = plan(&input(3, true, Some(0)), &[old(0), old(1), web(2, "web-new", "pending")]);
        assert_eq!(describe(&parallel), Vec::<String>::new(), "one at a time even in parallel");
    }

    fn set(value: Value) -> StatefulSet {
        serde_json::from_value(value).unwrap_or_default()
    }

    fn web_set() -> StatefulSet {
        set(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid", "generation": 2},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}], "volumes": [
                        {"name": "www", "emptyDir": {}}, {"name": "config", "emptyDir": {}},
                    ]},
                },
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}],
            },
        }))
    }

    #[test]
    fn a_stateful_pod_has_its_identity_and_its_claims() {
        let s = web_set();
        let template = s.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let p = stateful_pod(&s, &template, "web-abc", 2, pods::controller_reference(&s));
        assert_eq!(p.metadata.name.as_deref(), Some("web-2"));
        assert_eq!(p.metadata.generate_name, None);
        let labels = p.metadata.labels.clone().unwrap_or_default();
        for (k, v) in [(POD_NAME, "web-2"), (POD_INDEX, "2"), (CONTROLLER_REVISION_HASH, "web-abc"), ("app", "nginx")] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        let spec = p.spec.unwrap_or_default();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some("web-2"), Some("nginx")));
        let volumes: Vec<(String, Option<String>)> = spec
            .volumes
            .unwrap_or_default()
            .into_iter()
            .map(|v| (v.name, v.persistent_volume_claim.map(|c| c.claim_name)))
            .collect();
        assert_eq!(volumes, [("www".to_string(), Some("www-web-2".to_string())), ("config".to_string(), None)]);

        let claims = claims(&s, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].metadata.name.as_deref(), Some("www-web-2"));
        assert_eq!(claims[0].metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(claims[0].metadata.owner_references, None, "claims outlive their pods");
        assert_eq!(claims[0].metadata.labels.as_ref().and_then(|l| l.get("app")).map(String::as_str), Some("nginx"));
    }

    fn revision(name: &str, number: i64, data: &Value) -> Arc<ControllerRevision> {
        Arc::new(ControllerRevision {
            metadata: ObjectMeta { name: Some(name.into()), ..Default::default() },
            data: Some(RawExtension(data.clone())),
            revision: number,
        })
    }

    #[test]
    fn the_update_revision_is_reused_renumbered_or_created() {
        let a = revision_data(
            &serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "a"}]}})).unwrap_or_default(),
        );
        let b = revision_data(
            &serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "b"}]}})).unwrap_or_default(),
        );
        let c = revision_data(
            &serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "c"}]}})).unwrap_or_default(),
        );
        assert_eq!(a["spec"]["template"]["$patch"], "replace");
        let history = [revision("web-a", 1, &a), revision("web-b", 2, &b)];
        assert_eq!(update_revision(&history, &b), UpdateRevision::Existing("web-b".into()));
        assert_eq!(update_revision(&history, &a), UpdateRevision::Renumber { name: "web-a".into(), revision: 3 });
        assert_eq!(update_revision(&history, &c), UpdateRevision::Create { revision: 3 });
        assert_eq!(update_revision(&[], &c), UpdateRevision::Create { revision: 1 });
        let template = revision_template(&history[0]).unwrap_or_default();
        assert_eq!(revision_data(&template), a, "a revision gives its template back");
    }

    #[test]
    fn a_revision_is_named_for_the_hash_of_its_data() {
        let s = web_set();
        let template = s.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
        let r = new_revision(&s, revision_data(&template), 4, None);
        let name = r.metadata.name.clone().unwrap_or_default();
        let digest = r.metadata.labels.as_ref().and_then(|l| l.get(REVISION_HASH)).cloned().unwrap_or_default();
        assert_eq!(name, format!("web-{digest}"));
        assert_eq!(r.revision, 4);
        let collided = new_revision(&s, revision_data(&template), 4, Some(1));
        assert_ne!(collided.metadata.name, r.metadata.name);
        assert_eq!(
            r.metadata.owner_references.and_then(|o| o.first().map(|o| o.kind.clone())).as_deref(),
            Some("StatefulSet")
        );
    }

    #[test]
    fn history_keeps_live_revisions_and_the_newest_within_the_limit() {
        let d = json!({});
        let history: Vec<_> = (1..=6).map(|i| revision(&format!("web-{i}"), i, &d)).collect();
        let worn = [web(0, "web-2", "ready")];
        assert_eq!(history_to_delete(&history, &worn, "web-5", "web-6", 2), ["web-1"]);
        assert_eq!(history_to_delete(&history, &worn, "web-5", "web-6", 0), ["web-1", "web-3", "web-4"]);
        assert!(history_to_delete(&history, &worn, "web-5", "web-6", 10).is_empty());
    }

    #[test]
    fn status_counts_revisions_and_completes_a_rolling_update() {
        let s = web_set();
        let midway = [web(0, "web-old", "ready"), web(1, "web-new", "ready"), web(2, "web-new", "running")];
        let st = status(&s, &midway, "web-old", "web-new", None, at(100));
        assert_eq!(
            (st.replicas, st.ready_replicas, st.current_replicas, st.updated_replicas),
            (3, Some(2), Some(1), Some(2))
        );
        assert_eq!((st.current_revision.as_deref(), st.update_revision.as_deref()), (Some("web-old"), Some("web-new")));
        assert_eq!(st.observed_generation, Some(2));
        let done = [web(0, "web-new", "ready"), web(1, "web-new", "ready")];
        let st = status(&s, &done, "web-old", "web-new", Some(1), at(100));
        assert_eq!((st.current_revision.as_deref(), st.current_replicas), (Some("web-new"), Some(2)));
        assert_eq!(st.collision_count, Some(1));
    }
}

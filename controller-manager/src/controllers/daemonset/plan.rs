//! The DaemonSet controller's decisions, pure: which nodes should run a daemon pod (node
//! selector, required node affinity, taints against tolerations), the pod for a node, which pods
//! to create or delete to get one per eligible node, which old pods a rolling update replaces
//! next, and the status that follows.

use api_types::node_selector::term_matches;
use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, PodTemplateSpec, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;

use crate::pods;

/// The label carrying the hash of the template a pod was made from.
pub const CONTROLLER_REVISION_HASH: &str = "controller-revision-hash";
/// The label carrying the DaemonSet's template generation a pod was made from.
pub const POD_TEMPLATE_GENERATION: &str = "pod-template-generation";
/// The annotation upstream's API server keeps with the template generation (we fall back to
/// `metadata.generation` when it is missing).
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

const HASH_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn fnv32a(mut hash: u32, bytes: &[u8]) -> u32 {
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Upstream's ComputeHash: fnv32a of `bytes` and, after a name collision, the collision count,
/// written as its decimal digits mapped onto an alphabet without vowels (so no words appear).
pub fn hash(bytes: &[u8], collision_count: Option<i32>) -> String {
    let mut h = fnv32a(0x811c_9dc5, bytes);
    if let Some(count) = collision_count {
        h = fnv32a(h, &count.to_le_bytes());
    }
    h.to_string().bytes().map(|b| char::from(HASH_ALPHABET[usize::from(b) % HASH_ALPHABET.len()])).collect()
}

/// The `controller-revision-hash` of a DaemonSet's template.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    hash(&serde_json::to_vec(template).unwrap_or_default(), collision_count)
}

/// The template generation pods are labelled with.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    let annotated = ds.metadata.annotations.as_ref().and_then(|a| a.get(TEMPLATE_GENERATION_ANNOTATION));
    annotated.and_then(|g| g.parse().ok()).or(ds.metadata.generation)
}

/// Upstream's ToleratesTaint: the effect and key match when set, and the value matches unless
/// the operator is `Exists`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect_ok = toleration.effect.as_deref().is_none_or(|e| e.is_empty() || e == taint.effect);
    let key_ok = toleration.key.as_deref().is_none_or(|k| k.is_empty() || k == taint.key);
    let value_ok = match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    };
    effect_ok && key_ok && value_ok
}

/// Adds the tolerations every daemon pod gets (upstream's AddOrUpdateDaemonPodTolerations):
/// not-ready and unreachable NoExecute for ever, the pressure conditions and unschedulable
/// NoSchedule, and network-unavailable for host-network pods. One the template already has with
/// the same key, operator, value and effect is replaced.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted = vec![
        (NOT_READY, "NoExecute"),
        (UNREACHABLE, "NoExecute"),
        (DISK_PRESSURE, "NoSchedule"),
        (MEMORY_PRESSURE, "NoSchedule"),
        (PID_PRESSURE, "NoSchedule"),
        (UNSCHEDULABLE, "NoSchedule"),
    ];
    if spec.host_network == Some(true) {
        wanted.push((NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let toleration = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            value: None,
            toleration_seconds: None,
        };
        let same = |t: &Toleration| {
            t.key.as_deref() == Some(key)
                && t.operator.as_deref() == Some("Exists")
                && t.value.as_deref().unwrap_or("").is_empty()
                && t.effect.as_deref() == Some(effect)
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(existing) => *existing = toleration,
            None => tolerations.push(toleration),
        }
    }
}

/// Whether a node should run the daemon pod, and whether one already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    /// The node matches and every NoSchedule and NoExecute taint is tolerated.
    pub should_run: bool,
    /// The node matches and every NoExecute taint is tolerated: a pod there is not evicted.
    pub should_continue_running: bool,
}

/// Upstream's NodeShouldRunDaemonPod for a pod spec that already has the daemon tolerations
/// (see [`add_daemon_tolerations`]): the spec's `nodeName` (if any), `nodeSelector` and required
/// node affinity must match the node; then NoSchedule and NoExecute taints decide whether a new
/// pod should go there, NoExecute taints alone whether one already there may stay.
pub fn fit(spec: &PodSpec, node: &Node) -> Fit {
    let never = Fit { should_run: false, should_continue_running: false };
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if spec.node_name.as_deref().is_some_and(|n| !n.is_empty() && n != node_name) {
        return never;
    }
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let selector_ok = spec.node_selector.iter().flatten().all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref());
    let affinity_ok = required.is_none_or(|r| r.node_selector_terms.iter().any(|t| term_matches(t, labels, node_name)));
    if !selector_ok || !affinity_ok {
        return never;
    }
    let tolerations = spec.tolerations.as_deref().unwrap_or_default();
    let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref()).unwrap_or_default();
    let tolerated = |effects: &[&str]| {
        taints
            .iter()
            .filter(|t| effects.contains(&t.effect.as_str()))
            .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)))
    };
    Fit { should_run: tolerated(&["NoSchedule", "NoExecute"]), should_continue_running: tolerated(&["NoExecute"]) }
}

/// The daemon pod for `node`: the template with its labels plus the revision hash and template
/// generation, the daemon tolerations, named `<ds>-<random>` by the API server.
///
/// The pod is bound by setting `spec.nodeName` directly, as upstream did before 1.12, rather than
/// through a required node affinity `matchFields metadata.name In [node]` left for the scheduler
/// to bind: a daemon pod then runs even where no scheduler does (and before one does).
pub fn daemon_pod(ds: &DaemonSet, node: &str, hash: &str, owner: OwnerReference) -> Pod {
    let ns = ds.metadata.namespace.as_deref().unwrap_or("");
    let prefix = format!("{}-", ds.metadata.name.as_deref().unwrap_or(""));
    let template = ds.spec.as_ref().map(|s| s.template.clone()).unwrap_or_default();
    let mut pod = pods::from_template(&template, ns, &prefix, owner);
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(CONTROLLER_REVISION_HASH.into(), hash.into());
    if let Some(generation) = template_generation(ds) {
        labels.insert(POD_TEMPLATE_GENERATION.into(), generation.to_string());
    }
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    add_daemon_tolerations(spec);
    spec.node_name = Some(node.into());
    pod
}

/// One node as the plan sees it: its fit and the daemon pods bound to it (terminating ones too).
#[derive(Debug, Clone)]
pub struct NodePods {
    pub name: String,
    pub fit: Fit,
    pub pods: Vec<Arc<Pod>>,
}

/// What to write: nodes that get a new pod, pods to delete.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Actions {
    pub create_on: Vec<String>,
    pub delete: Vec<Arc<Pod>>,
}

impl Actions {
    pub fn is_empty(&self) -> bool {
        self.create_on.is_empty() && self.delete.is_empty()
    }
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

fn hash_of(pod: &Pod) -> Option<&str> {
    pod.metadata.labels.as_ref()?.get(CONTROLLER_REVISION_HASH).map(String::as_str)
}

/// Oldest first (scheduled first, then by creation time, then name), as upstream's
/// podByCreationTimestampAndPhase.
fn sort_oldest_first(pods: &mut [Arc<Pod>]) {
    let key = |p: &Pod| {
        (
            p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("").is_empty(),
            p.metadata.creation_timestamp.as_ref().map(|t| t.0),
            p.metadata.name.clone(),
        )
    };
    pods.sort_by_key(|p| key(p));
}

/// Upstream's podsShouldBeOnNode over every node: a node that should run a pod and has none
/// gets one; on a node whose pod may stay, failed and succeeded pods are deleted, and extra
/// pods beyond the oldest (or, with `surge`, beyond the oldest new and old pods while the old
/// one is still needed); a node whose pod may not stay loses them all. Nodes holding a
/// terminating pod get their new pod once it is gone.
pub fn manage(nodes: &[NodePods], surge: bool, hash: &str, min_ready_seconds: i32, now: Timestamp) -> Actions {
    let mut actions = Actions::default();
    for node in nodes {
        let exists = !node.pods.is_empty();
        if node.fit.should_run && !exists {
            actions.create_on.push(node.name.clone());
        } else if node.fit.should_continue_running {
            let mut running = Vec::new();
            for pod in node.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
                if matches!(phase(pod), "Failed" | "Succeeded") {
                    actions.delete.push(pod.clone());
                } else {
                    running.push(pod.clone());
                }
            }
            sort_oldest_first(&mut running);
            if !surge {
                actions.delete.extend(running.into_iter().skip(1));
                continue;
            }
            if running.len() <= 1 {
                if running.is_empty() && node.fit.should_run {
                    actions.create_on.push(node.name.clone());
                }
                continue;
            }
            let (mut oldest_new, mut oldest_old) = (None, None);
            for pod in running {
                let slot = if hash_of(&pod) == Some(hash) { &mut oldest_new } else { &mut oldest_old };
                if slot.is_none() {
                    *slot = Some(pod);
                } else {
                    actions.delete.push(pod);
                }
            }
            if let (Some(new), Some(old)) = (oldest_new, oldest_old)
                && (!pods::is_ready(&old) || pods::is_available(&new, min_ready_seconds, now))
            {
                actions.delete.push(old);
            }
        } else {
            actions.delete.extend(node.pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).cloned());
        }
    }
    actions
}

/// `value` (a count or a percentage) of `total`, percentages rounded up; `None` if malformed.
pub fn scaled(value: &IntOrString, total: usize) -> Option<usize> {
    match value {
        IntOrString::Int(n) => usize::try_from(*n).ok(),
        IntOrString::String(s) => {
            let percent: usize = s.strip_suffix('%')?.trim().parse().ok()?;
            Some((percent * total).div_ceil(100))
        }
    }
}

/// The rolling update's limits: (maxSurge, maxUnavailable) of the desired node count, with
/// upstream's fallback to maxUnavailable 1 when both come out 0.
pub fn limits(ds: &DaemonSet, desired: usize) -> (usize, usize) {
    let rolling = ds.spec.as_ref().and_then(|s| s.update_strategy.as_ref()).and_then(|s| s.rolling_update.as_ref());
    let surge = rolling.and_then(|r| r.max_surge.as_ref()).and_then(|v| scaled(v, desired)).unwrap_or(0);
    let unavailable = rolling.and_then(|r| r.max_unavailable.as_ref()).map_or(Some(1), |v| scaled(v, desired));
    let unavailable = unavailable.unwrap_or(1);
    if desired > 0 && surge == 0 && unavailable == 0 { (0, 1) } else { (surge, unavailable) }
}

/// A node's pod of the update hash and its pod of an older one, each if any.
type NewAndOld = (Option<Arc<Pod>>, Option<Arc<Pod>>);

/// The one new and one old pod of a node (terminating ones left out); `None` when there are
/// two of either, which [`manage`] sorts out first.
fn updated_and_old(pods: &[Arc<Pod>], hash: &str) -> Option<NewAndOld> {
    let (mut new, mut old) = (None, None);
    for pod in pods.iter().filter(|p| p.metadata.deletion_timestamp.is_none()) {
        let slot = if hash_of(pod) == Some(hash) { &mut new } else { &mut old };
        if slot.replace(pod.clone()).is_some() {
            return None;
        }
    }
    Some((new, old))
}

/// Upstream's rollingUpdate, nodes in name order. Without surge: old pods are deleted (and
/// [`manage`] recreates them) while fewer than `max_unavailable` nodes are without an available
/// pod; an old pod that is not available anyway is always replaced. With surge: a new pod is
/// created beside old ones, up to `max_surge` at a time (at once where the old one is not
/// available), and an old pod goes once the new one beside it is available.
pub fn rolling_update(
    nodes: &[NodePods],
    hash: &str,
    max_surge: usize,
    max_unavailable: usize,
    min_ready_seconds: i32,
    now: Timestamp,
) -> Actions {
    let available = |p: &Pod| pods::is_available(p, min_ready_seconds, now);
    let mut actions = Actions::default();
    let mut nodes: Vec<&NodePods> = nodes.iter().filter(|n| n.fit.should_run || !n.pods.is_empty()).collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for node in nodes {
            match updated_and_old(&node.pods, hash) {
                None | Some((None, None) | (Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => {
                    if !available(&new) {
                        unavailable += 1;
                    }
                }
                Some((None, Some(old))) => {
                    if !available(&old) {
                        actions.delete.push(old);
                    } else if unavailable < max_unavailable {
                        candidates.push(old);
                    }
                }
            }
        }
        let room = max_unavailable.saturating_sub(unavailable).min(candidates.len());
        actions.delete.extend(candidates.into_iter().take(room));
        return actions;
    }
    let mut surging = 0;
    let mut candidates = Vec::new();
    let mut not_fitting = Vec::new();
    for node in nodes {
        match updated_and_old(&node.pods, hash) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !node.fit.should_run {
                    if available(&old) {
                        not_fitting.push(old);
                    } else {
                        actions.delete.push(old);
                    }
                } else if !available(&old) {
                    actions.create_on.push(node.name.clone());
                } else if surging < max_surge {
                    candidates.push(node.name.clone());
                }
            }
            Some((Some(new), Some(old))) => {
                if available(&new) {
                    actions.delete.push(old);
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = max_surge.saturating_sub(surging).min(candidates.len());
    actions.create_on.extend(candidates.into_iter().take(room));
    // Old pods on nodes that should no longer run one go as the unavailability budget allows.
    let unavailable_budget = max_unavailable.min(not_fitting.len());
    actions.delete.extend(not_fitting.into_iter().take(unavailable_budget));
    actions
}

/// The status for `nodes`: desired (should run), current (should run and has a pod),
/// misscheduled (has a pod but should not run one), and of the oldest pod on each desired node
/// whether it is ready, available and updated (`hash`); `observed_generation` only when the
/// controller acted on this generation.
pub fn status(
    previous: Option<&DaemonSetStatus>,
    nodes: &[NodePods],
    hash: &str,
    min_ready_seconds: i32,
    observed_generation: Option<i64>,
    now: Timestamp,
) -> DaemonSetStatus {
    let (mut desired, mut current, mut misscheduled, mut ready, mut available, mut updated) = (0, 0, 0, 0, 0, 0);
    for node in nodes {
        let mut on_node: Vec<Arc<Pod>> = node
            .pods
            .iter()
            .filter(|p| !(matches!(phase(p), "Failed" | "Succeeded") && p.metadata.deletion_timestamp.is_some()))
            .cloned()
            .collect();
        if !node.fit.should_run {
            if !on_node.is_empty() {
                misscheduled += 1;
            }
            continue;
        }
        desired += 1;
        sort_oldest_first(&mut on_node);
        let Some(pod) = on_node.first() else { continue };
        current += 1;
        if pods::is_ready(pod) {
            ready += 1;
            if pods::is_available(pod, min_ready_seconds, now) {
                available += 1;
            }
        }
        if hash_of(pod) == Some(hash) {
            updated += 1;
        }
    }
    let previous = previous.cloned().unwrap_or_default();
    DaemonSetStatus {
        desired_number_scheduled: desired,
        current_number_scheduled: current,
        number_misscheduled: misscheduled,
        number_ready: ready,
        number_available: Some(available),
        number_unavailable: Some(desired - available),
        updated_number_scheduled: Some(updated),
        observed_generation: observed_generation.or(previous.observed_generation),
        ..previous
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pods::testing::pod;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}))
            .unwrap_or_default()
    }

    fn spec(value: serde_json::Value) -> PodSpec {
        let mut spec: PodSpec = serde_json::from_value(value).unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        spec
    }

    const RUN: Fit = Fit { should_run: true, should_continue_running: true };
    const STAY: Fit = Fit { should_run: false, should_continue_running: true };
    const NEVER: Fit = Fit { should_run: false, should_continue_running: false };

    #[test]
    fn eligibility_follows_selector_affinity_and_taints() {
        let plain = spec(json!({"containers": []}));
        let ssd = spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}}));
        let affinity = spec(json!({"containers": [], "affinity": {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["special"]}]},
        ]}}}}));
        let tolerant = spec(json!({"containers": [], "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"},
            {"key": "evict", "operator": "Exists"},
        ]}));
        let pinned = spec(json!({"containers": [], "nodeName": "other"}));
        let no_schedule = json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]);
        let no_execute = json!([{"key": "evict", "effect": "NoExecute"}]);
        let prefer = json!([{"key": "x", "effect": "PreferNoSchedule"}]);
        let not_ready =
            json!([{"key": NOT_READY, "effect": "NoExecute"}, {"key": UNSCHEDULABLE, "effect": "NoSchedule"}]);
        let not_ready_no_schedule = json!([{"key": NOT_READY, "effect": "NoSchedule"}]);
        let cases = [
            ("plain node", &plain, node("n", json!({}), json!([])), RUN),
            ("selector matches", &ssd, node("n", json!({"disk": "ssd"}), json!([])), RUN),
            ("selector differs", &ssd, node("n", json!({"disk": "hdd"}), json!([])), NEVER),
            ("selector label missing", &ssd, node("n", json!({}), json!([])), NEVER),
            ("affinity expression", &affinity, node("n", json!({"zone": "b"}), json!([])), RUN),
            ("affinity field", &affinity, node("special", json!({}), json!([])), RUN),
            ("affinity neither", &affinity, node("n", json!({"zone": "c"}), json!([])), NEVER),
            ("untolerated NoSchedule", &plain, node("n", json!({}), no_schedule.clone()), STAY),
            ("tolerated NoSchedule", &tolerant, node("n", json!({}), no_schedule), RUN),
            ("untolerated NoExecute", &plain, node("n", json!({}), no_execute.clone()), NEVER),
            ("tolerated NoExecute", &tolerant, node("n", json!({}), no_execute), RUN),
            ("PreferNoSchedule ignored", &plain, node("n", json!({}), prefer), RUN),
            ("daemon tolerations", &plain, node("n", json!({}), not_ready), RUN),
            ("not-ready NoSchedule is not tolerated", &plain, node("n", json!({}), not_ready_no_schedule), STAY),
            ("template nodeName elsewhere", &pinned, node("n", json!({}), json!([])), NEVER),
            ("template nodeName here", &pinned, node("other", json!({}), json!([])), RUN),
        ];
        for (what, spec, node, want) in cases {
            assert_eq!(fit(spec, &node), want, "{what}");
        }
    }

    #[test]
    fn toleration_matching_follows_key_operator_value_and_effect() {
        let taint = Taint { key: "k".into(), value: Some("v".into()), effect: "NoSchedule".into(), time_added: None };
        let t = |v: serde_json::Value| -> Toleration { serde_json::from_value(v).unwrap_or_default() };
        let cases = [
            (t(json!({"key": "k", "value": "v"})), true),
            (t(json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"})), true),
            (t(json!({"key": "k", "value": "w"})), false),
            (t(json!({"key": "k", "operator": "Exists"})), true),
            (t(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})), false),
            (t(json!({"operator": "Exists"})), true),
            (t(json!({"key": "j", "operator": "Exists"})), false),
        ];
        for (i, (toleration, want)) in cases.into_iter().enumerate() {
            assert_eq!(tolerates(&toleration, &taint), want, "case {i}");
        }
    }

    #[test]
    fn daemon_tolerations_are_added_once_and_replace_equal_ones() {
        let mut s: PodSpec = serde_json::from_value(json!({"containers": [], "tolerations": [
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "mine", "operator": "Exists"},
        ]}))
        .unwrap_or_default();
        add_daemon_tolerations(&mut s);
        add_daemon_tolerations(&mut s);
        let tolerations = s.tolerations.unwrap_or_default();
        let keys: Vec<&str> = tolerations.iter().filter_map(|t| t.key.as_deref()).collect();
        assert_eq!(keys, [NOT_READY, "mine", UNREACHABLE, DISK_PRESSURE, MEMORY_PRESSURE, PID_PRESSURE, UNSCHEDULABLE]);
        assert_eq!(tolerations[0].toleration_seconds, None, "tolerated for ever");
        let mut host: PodSpec =
            serde_json::from_value(json!({"containers": [], "hostNetwork": true})).unwrap_or_default();
        add_daemon_tolerations(&mut host);
        assert!(host.tolerations.iter().flatten().any(|t| t.key.as_deref() == Some(NETWORK_UNAVAILABLE)));
    }

    fn daemon(name: &str, node: &str, hash: &str, created: i64, phase: &str, ready: Option<i64>) -> Arc<Pod> {
        let mut p = pod(name, created, phase, Some(node), ready);
        p.metadata.labels.get_or_insert_with(BTreeMap::new).insert(CONTROLLER_REVISION_HASH.into(), hash.into());
        Arc::new(p)
    }

    fn deleting(p: Arc<Pod>) -> Arc<Pod> {
        let mut p = (*p).clone();
        p.metadata.deletion_timestamp = p.metadata.creation_timestamp.clone();
        Arc::new(p)
    }

    fn on(name: &str, fit: Fit, pods: Vec<Arc<Pod>>) -> NodePods {
        NodePods { name: name.into(), fit, pods }
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap_or("")).collect()
    }

    #[test]
    fn one_pod_goes_to_each_eligible_node_and_leaves_the_others() {
        let nodes = [
            on("empty", RUN, vec![]),
            on("fine", RUN, vec![daemon("a", "fine", "h", 1, "Running", Some(1))]),
            on(
                "two",
                RUN,
                vec![daemon("new", "two", "h", 5, "Running", None), daemon("old", "two", "h", 1, "Running", None)],
            ),
            on("failed", RUN, vec![daemon("f", "failed", "h", 1, "Failed", None)]),
            on("terminating", RUN, vec![deleting(daemon("t", "terminating", "h", 1, "Running", None))]),
            on("tainted", STAY, vec![daemon("s", "tainted", "h", 1, "Running", None)]),
            on("tainted-empty", STAY, vec![]),
            on("unselected", NEVER, vec![daemon("u", "unselected", "h", 1, "Running", None)]),
            on("unselected-empty", NEVER, vec![]),
        ];
        let actions = manage(&nodes, false, "h", 0, at(100));
        assert_eq!(actions.create_on, ["empty"]);
        assert_eq!(names(&actions.delete), ["new", "f", "u"]);
    }

    #[test]
    fn with_surge_a_node_keeps_an_old_pod_until_the_new_one_is_available() {
        let old = || daemon("old", "n", "old", 1, "Running", Some(1));
        let cases = [
            ("new not ready yet", vec![old(), daemon("new", "n", "h", 5, "Running", None)], vec![]),
            ("new available", vec![old(), daemon("new", "n", "h", 5, "Running", Some(6))], vec!["old"]),
            (
                "old not ready",
                vec![daemon("old", "n", "old", 1, "Running", None), daemon("new", "n", "h", 5, "Running", None)],
                vec!["old"],
            ),
            (
                "a second new pod",
                vec![old(), daemon("new", "n", "h", 5, "Running", None), daemon("newer", "n", "h", 6, "Running", None)],
                vec!["newer"],
            ),
        ];
        for (what, pods, want) in cases {
            let actions = manage(&[on("n", RUN, pods)], true, "h", 0, at(100));
            assert_eq!(names(&actions.delete), want, "{what}");
            assert!(actions.create_on.is_empty(), "{what}");
        }
    }

    #[test]
    fn limits_scale_percentages_up_and_never_stall() {
        let ds = |rolling: serde_json::Value| -> DaemonSet {
            serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
                "selector": {}, "template": {},
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            }}))
            .unwrap_or_default()
        };
        let cases = [
            (json!({}), 10, (0, 1)),
            (json!({"maxUnavailable": 3}), 10, (0, 3)),
            (json!({"maxUnavailable": "25%"}), 10, (0, 3)),
            (json!({"maxUnavailable": "10%"}), 3, (0, 1)),
            (json!({"maxUnavailable": 0, "maxSurge": "50%"}), 5, (3, 0)),
            (json!({"maxUnavailable": 0, "maxSurge": 0}), 5, (0, 1)),
            (json!({"maxUnavailable": "0%"}), 0, (0, 0)),
        ];
        for (rolling, desired, want) in cases {
            assert_eq!(limits(&ds(rolling.clone()), desired), want, "{rolling} of {desired}");
        }
    }

    #[test]
    fn a_rolling_update_replaces_old_pods_within_max_unavailable() {
        let old = |n: &str| daemon(&format!("old-{n}"), n, "old", 1, "Running", Some(1));
        let new_ready = |n: &str| daemon(&format!("new-{n}"), n, "h", 5, "Running", Some(6));
        let new_unready = |n: &str| daemon(&format!("new-{n}"), n, "h", 5, "Running", None);
        type Case = (&'static str, Vec<NodePods>, usize, Vec<&'static str>);
        let cases: Vec<Case> = vec![
            (
                "all old, one at a time",
                vec![on("a", RUN, vec![old("a")]), on("b", RUN, vec![old("b")])],
                1,
                vec!["old-a"],
            ),
            (
                "all old, two at a time",
                vec![on("a", RUN, vec![old("a")]), on("b", RUN, vec![old("b")]), on("c", RUN, vec![old("c")])],
                2,
                vec!["old-a", "old-b"],
            ),
            (
                "a new pod not yet ready uses the budget",
                vec![on("a", RUN, vec![new_unready("a")]), on("b", RUN, vec![old("b")])],
                1,
                vec![],
            ),
            (
                "a node waiting for its pod uses the budget",
                vec![
                    on("a", RUN, vec![deleting(old("a"))]),
                    on("b", RUN, vec![old("b")]),
                    on("c", RUN, vec![old("c")]),
                ],
                2,
                vec!["old-b"],
            ),
            (
                "an available new pod frees the budget",
                vec![on("a", RUN, vec![new_ready("a")]), on("b", RUN, vec![old("b")])],
                1,
                vec!["old-b"],
            ),
            (
                "an unavailable old pod is replaced regardless",
                vec![
                    on("a", RUN, vec![new_unready("a")]),
                    on("b", RUN, vec![daemon("old-b", "b", "old", 1, "Running", None)]),
                    on("c", RUN, vec![old("c")]),
                ],
                1,
                vec!["old-b"],
            ),
            ("nothing old", vec![on("a", RUN, vec![new_ready("a")])], 1, vec![]),
        ];
        for (what, nodes, max_unavailable, want) in cases {
            let actions = rolling_update(&nodes, "h", 0, max_unavailable, 0, at(100));
            assert_eq!(names(&actions.delete), want, "{what}");
            assert!(actions.create_on.is_empty(), "{what}");
        }
    }

    #[test]
    fn a_surging_rolling_update_creates_beside_old_pods_within_max_surge() {
        let old = |n: &str| daemon(&format!("old-{n}"), n, "old", 1, "Running", Some(1));
        let nodes = vec![
            on("a", RUN, vec![old("a"), daemon("new-a", "a", "h", 5, "Running", Some(6))]),
            on("b", RUN, vec![old("b"), daemon("new-b", "b", "h", 5, "Running", None)]),
            on("c", RUN, vec![old("c")]),
            on("d", RUN, vec![old("d")]),
            on("e", RUN, vec![daemon("old-e", "e", "old", 1, "Running", None)]),
        ];
        let actions = rolling_update(&nodes, "h", 2, 0, 0, at(100));
        assert_eq!(names(&actions.delete), ["old-a"]);
        assert_eq!(actions.create_on, ["e", "c"], "e at once; b is still surging, so one more");
    }

    #[test]
    fn status_counts_the_oldest_pod_of_each_node() {
        let nodes = [
            on("ready", RUN, vec![daemon("a", "ready", "h", 1, "Running", Some(10))]),
            on("recent", RUN, vec![daemon("b", "recent", "old", 1, "Running", Some(95))]),
            on("unready", RUN, vec![daemon("c", "unready", "h", 1, "Pending", None)]),
            on("empty", RUN, vec![]),
            on("wrong", NEVER, vec![daemon("d", "wrong", "h", 1, "Running", Some(10))]),
            on("tainted", STAY, vec![]),
        ];
        let s = status(None, &nodes, "h", 10, Some(3), at(100));
        assert_eq!(
            (s.desired_number_scheduled, s.current_number_scheduled, s.number_misscheduled, s.number_ready),
            (4, 3, 1, 2)
        );
        assert_eq!((s.number_available, s.number_unavailable, s.updated_number_scheduled), (Some(1), Some(3), Some(2)));
        assert_eq!(s.observed_generation, Some(3));
        let unobserved = status(Some(&s), &nodes, "h", 10, None, at(100));
        assert_eq!(unobserved.observed_generation, Some(3), "kept from before");
    }

    #[test]
    fn a_daemon_pod_is_bound_labelled_and_tolerant() {
        let ds: DaemonSet = serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "kube-system", "generation": 4},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {
                "metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            }},
        }))
        .unwrap_or_default();
        let p = daemon_pod(&ds, "node-1", "abc", OwnerReference::default());
        assert_eq!(p.metadata.generate_name.as_deref(), Some("agent-"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("kube-system"));
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get(CONTROLLER_REVISION_HASH).map(String::as_str), Some("abc"));
        assert_eq!(labels.get(POD_TEMPLATE_GENERATION).map(String::as_str), Some("4"));
        assert_eq!(labels.get("app").map(String::as_str), Some("agent"));
        let spec = p.spec.unwrap_or_default();
        assert_eq!(spec.node_name.as_deref(), Some("node-1"));
        assert_eq!(spec.tolerations.map(|t| t.len()), Some(6));
    }

    #[test]
    fn the_hash_changes_with_the_template_and_the_collision_count() {
        let a: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "a"}]}})).unwrap_or_default();
        let b: PodTemplateSpec =
            serde_json::from_value(json!({"spec": {"containers": [{"name": "c", "image": "b"}]}})).unwrap_or_default();
        assert_eq!(template_hash(&a, None), template_hash(&a, None));
        assert_ne!(template_hash(&a, None), template_hash(&b, None));
        assert_ne!(template_hash(&a, None), template_hash(&a, Some(1)));
        assert!(template_hash(&a, None).bytes().all(|c| HASH_ALPHABET.contains(&c)));
    }
}

//! The ReplicaSet controller's decisions, pure: which pods it claims, how many to create or
//! which to delete, in what batches, and the status that follows.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use api_types::labels::LabelSelector;
use k8s_openapi::api::apps::v1::{ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::pods;

/// Pods created or deleted in one reconcile at most (upstream's burstReplicas).
pub const BURST: usize = 500;

/// What a ReplicaSet does with one pod of its namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Its own, and it still matches.
    Owned,
    /// An orphan that matches: take it.
    Adopt,
    /// Its own, but no longer matches: let go.
    Release,
    /// Not its business.
    Ignore,
}

/// Upstream's ClaimPods: a pod controlled by `owner_uid` is kept while it matches and released
/// otherwise; a matching orphan is adopted unless the owner is being deleted; pods being deleted
/// are not adopted.
pub fn claim(owner_uid: &str, owner_deleting: bool, selector: &LabelSelector, pod: &Pod) -> Claim {
    let empty = Default::default();
    let matches = !selector.is_empty() && selector.matches(pod.metadata.labels.as_ref().unwrap_or(&empty));
    match pods::controller_of(&pod.metadata) {
        Some(r) if r.uid == owner_uid => {
            if matches || owner_deleting {
                Claim::Owned
            } else {
                Claim::Release
            }
        }
        Some(_) => Claim::Ignore,
        None if matches && !owner_deleting && pod.metadata.deletion_timestamp.is_none() => Claim::Adopt,
        None => Claim::Ignore,
    }
}

/// What to change about the number of pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Scale {
    Create(usize),
    /// The pods to delete, least valuable first.
    Delete(Vec<Arc<Pod>>),
    Steady,
}

/// `active` pods against `replicas`, at most [`BURST`] changes at a time.
pub fn scale(replicas: i32, active: &[Arc<Pod>]) -> Scale {
    let want = usize::try_from(replicas).unwrap_or(0);
    match active.len().cmp(&want) {
        Ordering::Less => Scale::Create((want - active.len()).min(BURST)),
        Ordering::Greater => {
            let mut ranked = active.to_vec();
            rank_for_deletion(&mut ranked);
            ranked.truncate((active.len() - want).min(BURST));
            Scale::Delete(ranked)
        }
        Ordering::Equal => Scale::Steady,
    }
}

/// Sorts pods so the least valuable come first, as upstream's ActivePodsWithRanks: unscheduled
/// before scheduled; Pending before Unknown before Running; not ready before ready; more pods
/// of the set on the same node before fewer; ready for less time before longer; more restarts
/// before fewer; newer before older.
pub fn rank_for_deletion(pods: &mut [Arc<Pod>]) {
    let node = |p: &Pod| p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for p in pods.iter() {
        *per_node.entry(node(p)).or_default() += 1;
    }
    let phase_rank = |p: &Pod| match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Running") => 2,
        Some("Unknown") => 1,
        _ => 0,
    };
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map(|cs| cs.iter().map(|c| c.restart_count).sum())
            .unwrap_or(0)
    };
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    pods.sort_by(|a, b| {
        let (na, nb) = (node(a), node(b));
        na.is_empty()
            .cmp(&nb.is_empty())
            .reverse()
            .then(phase_rank(a).cmp(&phase_rank(b)))
            .then(pods::is_ready(a).cmp(&pods::is_ready(b)))
            .then(per_node.get(&nb).cmp(&per_node.get(&na)))
            .then(pods::ready_since(b).cmp(&pods::ready_since(a)))
            .then(restarts(b).cmp(&restarts(a)))
            .then(created(b).cmp(&created(a)))
    });
}

/// Upstream's slow start: batches of 1, 2, 4… so a set that cannot create pods (a quota, a bad
/// template) fails after one attempt rather than hundreds.
pub fn slow_start_batches(total: usize) -> Vec<usize> {
    let mut batches = Vec::new();
    let (mut size, mut left) = (1, total);
    while left > 0 {
        let batch = size.min(left);
        batches.push(batch);
        left -= batch;
        size *= 2;
    }
    batches
}

/// Why the last reconcile could not create or delete pods (the ReplicaFailure condition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: &'static str,
    pub message: String,
}

/// The status the set should show: counts of its `owned` pods, `observed_generation`, and the
/// ReplicaFailure condition while creating or deleting fails.
pub fn status(
    generation: Option<i64>,
    template_labels: Option<&std::collections::BTreeMap<String, String>>,
    min_ready_seconds: i32,
    previous: Option<&ReplicaSetStatus>,
    owned: &[Arc<Pod>],
    failure: Option<&Failure>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let active: Vec<&Arc<Pod>> = owned.iter().filter(|p| pods::is_active(p)).collect();
    let count = |f: &dyn Fn(&Pod) -> bool| i32::try_from(active.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX);
    let empty = Default::default();
    let template_labels = template_labels.unwrap_or(&empty);
    let fully_labeled = count(&|p| {
        let labels = p.metadata.labels.as_ref().unwrap_or(&empty);
        template_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
    });
    let nonzero = |n: i32| (n > 0).then_some(n);
    let previous_conditions = previous.and_then(|s| s.conditions.clone()).unwrap_or_default();
    let mut conditions: Vec<ReplicaSetCondition> =
        previous_conditions.iter().filter(|c| c.type_ != "ReplicaFailure").cloned().collect();
    if let Some(f) = failure {
        let same = previous_conditions.iter().find(|c| {
            c.type_ == "ReplicaFailure"
                && c.reason.as_deref() == Some(f.reason)
                && c.message.as_ref() == Some(&f.message)
        });
        conditions.push(same.cloned().unwrap_or_else(|| ReplicaSetCondition {
            type_: "ReplicaFailure".into(),
            status: "True".into(),
            reason: Some(f.reason.into()),
            message: Some(f.message.clone()),
            last_transition_time: Some(Time(now)),
        }));
    }
    ReplicaSetStatus {
        replicas: i32::try_from(active.len()).unwrap_or(i32::MAX),
        fully_labeled_replicas: nonzero(fully_labeled),
        ready_replicas: nonzero(count(&|p| pods::is_ready(p))),
        available_replicas: nonzero(count(&|p| pods::is_available(p, min_ready_seconds, now))),
        observed_generation: generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        ..previous.cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pods::testing::pod;

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter().map(|p| p.metadata.name.as_deref().unwrap_or("")).collect()
    }

    #[test]
    fn scales_to_the_replica_count_within_the_burst() {
        let three: Vec<Arc<Pod>> =
            (0..3).map(|i| Arc::new(pod(&format!("p{i}"), i, "Running", Some("n"), Some(i)))).collect();
        assert_eq!(scale(5, &three), Scale::Create(2));
        assert_eq!(scale(3, &three), Scale::Steady);
        assert_eq!(scale(10_000, &three), Scale::Create(BURST));
        assert_eq!(scale(0, &[]), Scale::Steady);
        let Scale::Delete(victims) = scale(1, &three) else { panic!("expected deletes") };
        assert_eq!(names(&victims), ["p2", "p1"], "newest ready first");
    }

    #[test]
    fn the_least_valuable_pods_are_deleted_first() {
        let mut pods: Vec<Arc<Pod>> = vec![
            Arc::new(pod("running-ready-old", 1, "Running", Some("a"), Some(10))),
            Arc::new(pod("running-ready-recent", 2, "Running", Some("b"), Some(50))),
            Arc::new(pod("running-unready", 3, "Running", Some("c"), None)),
            Arc::new(pod("pending-scheduled", 4, "Pending", Some("d"), None)),
            Arc::new(pod("unscheduled", 5, "Pending", None, None)),
            Arc::new(pod("unknown", 6, "Unknown", Some("e"), None)),
        ];
        rank_for_deletion(&mut pods);
        assert_eq!(
            names(&pods),
            [
                "unscheduled",
                "pending-scheduled",
                "unknown",
                "running-unready",
                "running-ready-recent",
                "running-ready-old"
            ]
        );
    }

    #[test]
    fn crowded_nodes_lose_pods_first() {
        let mut pods: Vec<Arc<Pod>> = vec![
            Arc::new(pod("alone", 1, "Running", Some("a"), Some(10))),
            Arc::new(pod("crowded-1", 1, "Running", Some("b"), Some(10))),
            Arc::new(pod("crowded-2", 1, "Running", Some("b"), Some(10))),
        ];
        rank_for_deletion(&mut pods);
        assert_eq!(names(&pods)[2], "alone");
    }

    #[test]
    fn slow_start_doubles() {
        let cases: [(usize, &[usize]); 4] = [(0, &[]), (1, &[1]), (7, &[1, 2, 4]), (10, &[1, 2, 4, 3])];
        for (total, want) in cases {
            assert_eq!(slow_start_batches(total), want, "{total}");
        }
    }

    #[test]
    fn claims_follow_the_selector_and_the_controller_reference() {
        let selector = LabelSelector::parse("app=web").unwrap_or_else(|_| LabelSelector::new(vec![]));
        let mine = pod("p", 0, "Running", None, None);
        let mut orphan = mine.clone();
        orphan.metadata.owner_references = None;
        let mut others = mine.clone();
        if let Some(r) = others.metadata.owner_references.as_mut().and_then(|r| r.first_mut()) {
            r.uid = "other".into();
        }
        let mut relabelled = mine.clone();
        relabelled.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let mut deleting_orphan = orphan.clone();
        deleting_orphan.metadata.deletion_timestamp = deleting_orphan.metadata.creation_timestamp.clone();
        let cases = [
            (&mine, false, Claim::Owned),
            (&orphan, false, Claim::Adopt),
            (&orphan, true, Claim::Ignore),
            (&others, false, Claim::Ignore),
            (&relabelled, false, Claim::Release),
            (&relabelled, true, Claim::Owned),
            (&deleting_orphan, false, Claim::Ignore),
        ];
        for (i, (p, deleting, want)) in cases.into_iter().enumerate() {
            assert_eq!(claim("rs-uid", deleting, &selector, p), want, "case {i}");
        }
    }

    #[test]
    fn status_counts_ready_available_and_fully_labeled_pods() {
        let now = Timestamp::from_second(100).unwrap_or(Timestamp::UNIX_EPOCH);
        let mut other_labels = pod("d", 0, "Running", Some("n"), Some(50));
        other_labels.metadata.labels = Some([("app".to_string(), "web".to_string())].into());
        let owned: Vec<Arc<Pod>> = vec![
            Arc::new(pod("a", 0, "Running", Some("n"), Some(50))),
            Arc::new(pod("b", 0, "Running", Some("n"), Some(95))),
            Arc::new(pod("c", 0, "Pending", None, None)),
            Arc::new(pod("done", 0, "Succeeded", Some("n"), None)),
        ];
        let template: std::collections::BTreeMap<String, String> =
            [("app".to_string(), "web".to_string()), ("tier".to_string(), "front".to_string())].into();
        let s = status(Some(4), Some(&template), 10, None, &owned, None, now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert_eq!(s.fully_labeled_replicas, None, "no pod has tier=front");
        assert_eq!(s.observed_generation, Some(4));
        assert_eq!(s.conditions, None);

        let failure = Failure { reason: "FailedCreate", message: "quota".into() };
        let failed = status(Some(4), None, 0, None, &owned, Some(&failure), now);
        let condition = failed.conditions.as_ref().and_then(|c| c.first()).cloned().unwrap_or_default();
        assert_eq!((condition.type_.as_str(), condition.reason.as_deref()), ("ReplicaFailure", Some("FailedCreate")));
        assert_eq!(failed.fully_labeled_replicas, Some(3), "an empty template matches every pod");
        let later = Timestamp::from_second(200).unwrap_or(now);
        let again = status(Some(4), None, 0, Some(&failed), &owned, Some(&failure), later);
        assert_eq!(again.conditions, failed.conditions, "an unchanged failure keeps its transition time");
        let healed = status(Some(4), None, 0, Some(&failed), &owned, None, later);
        assert_eq!(healed.conditions, None);
    }
}

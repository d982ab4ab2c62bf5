//! The Job controller's decisions, pure: what the Job's pods add up to, whether the Job is done
//! (complete, or failed by backoffLimit, activeDeadlineSeconds or its podFailurePolicy), which
//! pods to start next (completion indexes for Indexed Jobs), and the back-off after failures.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec, PodFailurePolicyRule};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

use crate::pods;

pub const INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// First delay before replacing a failed pod; doubles per failure up to [`MAX_BACKOFF`].
pub const BASE_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(360);

/// What the Job's pods add up to.
#[derive(Debug, Default)]
pub struct Counts {
    /// Running or pending, not being deleted.
    pub active: Vec<Arc<Pod>>,
    pub ready: i32,
    pub succeeded: i32,
    /// Failures that count against backoffLimit (a podFailurePolicy may ignore some).
    pub failed: i32,
    pub last_failure: Option<Timestamp>,
    /// Indexes with a succeeded pod (Indexed Jobs).
    pub completed: BTreeSet<i32>,
    /// A podFailurePolicy `FailJob` rule matched: the message.
    pub fail_job: Option<String>,
    pub terminating: i32,
}

pub fn is_indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

pub fn index_of(pod: &Pod) -> Option<i32> {
    pod.metadata.annotations.as_ref()?.get(INDEX_ANNOTATION)?.parse().ok()
}

fn phase(pod: &Pod) -> &str {
    pod.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

/// When a failed pod failed: its containers' last finish, else its creation.
fn failed_at(pod: &Pod) -> Option<Timestamp> {
    let finished = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref().map(|t| t.0))
        .max();
    finished.or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// The podFailurePolicy rule that matches a failed pod, with its index.
pub fn matching_rule<'a>(spec: &'a JobSpec, pod: &Pod) -> Option<(usize, &'a PodFailurePolicyRule, String)> {
    let rules = &spec.pod_failure_policy.as_ref()?.rules;
    let status = pod.status.as_ref()?;
    let pod_name =
        format!("{}/{}", pod.metadata.namespace.as_deref().unwrap_or(""), pod.metadata.name.as_deref().unwrap_or(""));
    rules.iter().enumerate().find_map(|(i, rule)| {
        if let Some(codes) = &rule.on_exit_codes {
            let containers = status.container_statuses.iter().flatten().chain(status.init_container_statuses.iter().flatten());
            return containers
                .filter(|c| codes.container_name.as_deref().is_none_or(|n| n == c.name))
                .find_map(|c| {
                    let code = c.state.as_ref()?.terminated.as_ref()?.exit_code;
                    let listed = codes.values.contains(&code);
                    let hit = code != 0 && if codes.operator == "In" { listed } else { !listed };
                    hit.then(|| {
                        (i, rule, format!(
                            "Container {} for pod {pod_name} failed with exit code {code} matching {} rule at index {i}",
                            c.name, rule.action
                        ))
                    })
                });
        }
        let conditions = status.conditions.as_deref().unwrap_or_default();
        let hit = rule.on_pod_conditions.iter().flatten().any(|p| {
            conditions.iter().any(|c| c.type_ == p.type_ && c.status == p.status)
        });
        hit.then(|| (i, rule, format!("Pod {pod_name} has condition matching {} rule at index {i}", rule.action)))
    })
}

/// Adds up `pods` (the Job's own). Counts never go below what `job.status` already says, so
/// finished pods deleted by someone still count.
pub fn count(job: &Job, pods: &[Arc<Pod>]) -> Counts {
    let spec = job.spec.clone().unwrap_or_default();
    let status = job.status.clone().unwrap_or_default();
    let mut c = Counts::default();
    let mut succeeded = 0;
    let mut failed = 0;
    for pod in pods {
        if pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed") {
            c.terminating += 1;
            continue;
        }
        match phase(pod) {
            "Succeeded" => {
                succeeded += 1;
                c.completed.extend(index_of(pod));
            }
            "Failed" => {
                let rule = matching_rule(&spec, pod);
                match rule.as_ref().map(|(_, r, _)| r.action.as_str()) {
                    Some("Ignore") => continue,
                    Some("FailJob") => c.fail_job = rule.map(|(_, _, m)| m),
                    _ => {}
                }
                failed += 1;
                c.last_failure = c.last_failure.max(failed_at(pod));
            }
            _ => {
                if pods::is_ready(pod) {
                    c.ready += 1;
                }
                // With restartPolicy OnFailure, restarts in place are the failures.
                if spec.template.spec.as_ref().and_then(|s| s.restart_policy.as_deref()) == Some("OnFailure") {
                    let restarts: i32 = pod
                        .status
                        .as_ref()
                        .and_then(|s| s.container_statuses.as_ref())
                        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
                        .unwrap_or(0);
                    failed += restarts;
                }
                c.active.push(pod.clone());
            }
        }
    }
    c.completed.extend(parse_indexes(status.completed_indexes.as_deref().unwrap_or("")));
    c.succeeded = succeeded.max(status.succeeded.unwrap_or(0));
    if is_indexed(&spec) {
        c.succeeded = c.succeeded.max(i32::try_from(c.completed.len()).unwrap_or(i32::MAX));
    }
    c.failed = failed.max(status.failed.unwrap_or(0));
    c
}

/// Where the Job stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Running,
    Complete,
    Failed { reason: &'static str, message: String },
}

/// Upstream's order: a FailJob rule, then backoffLimit, then activeDeadlineSeconds, then
/// completion.
pub fn verdict(job: &Job, counts: &Counts, now: Timestamp) -> Verdict {
    let spec = job.spec.clone().unwrap_or_default();
    if let Some(message) = &counts.fail_job {
        return Verdict::Failed { reason: "PodFailurePolicy", message: message.clone() };
    }
    if counts.failed > spec.backoff_limit.unwrap_or(6) {
        return Verdict::Failed {
            reason: "BackoffLimitExceeded",
            message: "Job has reached the specified backoff limit".into(),
        };
    }
    let started = job.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
    if let (Some(deadline), Some(started)) = (spec.active_deadline_seconds, started)
        && started + SignedDuration::from_secs(deadline) <= now
    {
        return Verdict::Failed {
            reason: "DeadlineExceeded",
            message: "Job was active longer than specified deadline".into(),
        };
    }
    let done = match (spec.completions, is_indexed(&spec)) {
        (Some(n), true) => (0..n).all(|i| counts.completed.contains(&i)),
        (Some(n), false) => counts.succeeded >= n,
        (None, _) => counts.succeeded > 0 && counts.active.is_empty(),
    };
    if done { Verdict::Complete } else { Verdict::Running }
}

/// Pods to start now: `None` each for a NonIndexed Job, the completion index for an Indexed one.
pub fn to_create(spec: &JobSpec, counts: &Counts) -> Vec<Option<i32>> {
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1)).unwrap_or(0);
    let room = parallelism.saturating_sub(counts.active.len());
    if is_indexed(spec) {
        let n = spec.completions.unwrap_or(0);
        let running: BTreeSet<i32> = counts.active.iter().filter_map(|p| index_of(p)).collect();
        return (0..n).filter(|i| !counts.completed.contains(i) && !running.contains(i)).take(room).map(Some).collect();
    }
    let wanted = match spec.completions {
        Some(n) => usize::try_from(n.saturating_sub(counts.succeeded)).unwrap_or(0).min(parallelism),
        // A work queue: once one pod succeeded, no new ones start.
        None if counts.succeeded > 0 => 0,
        None => parallelism,
    };
    vec![None; wanted.saturating_sub(counts.active.len()).min(room)]
}

/// The wait before replacing a pod after `failures` failures: 10 s doubling, up to 6 minutes.
pub fn backoff(failures: i32) -> Duration {
    if failures <= 0 {
        return Duration::ZERO;
    }
    let doublings = u32::try_from(failures - 1).unwrap_or(0).min(16);
    BASE_BACKOFF.saturating_mul(1 << doublings).min(MAX_BACKOFF)
}

/// `0-2,4,6-7`, upstream's rendering of a set of indexes.
pub fn format_indexes(indexes: &BTreeSet<i32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(i32, i32)> = None;
    for &i in indexes {
        run = match run {
            Some((a, b)) if i == b + 1 => Some((a, i)),
            Some((a, b)) => {
                out.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
                Some((i, i))
            }
            None => Some((i, i)),
        };
    }
    if let Some((a, b)) = run {
        out.push(if a == b { a.to_string() } else { format!("{a}-{b}") });
    }
    out.join(",")
}

pub fn parse_indexes(s: &str) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i32>(), b.parse::<i32>()) {
                    set.extend(a..=b);
                }
            }
            None => set.extend(part.parse::<i32>().ok()),
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn job(spec: serde_json::Value) -> Job {
        let mut full = json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c"}]}}, "backoffLimit": 2, "parallelism": 2});
        if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
            f.extend(s.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "j", "namespace": "ns"}, "spec": full})).unwrap_or_default()
    }

    fn pod(name: &str, phase: &str, index: Option<i32>, exit: Option<i32>) -> Arc<Pod> {
        let annotations = index.map(|i| json!({INDEX_ANNOTATION: i.to_string()})).unwrap_or(json!({}));
        let statuses = exit
            .map(|code| {
                json!([{"name": "c", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
            "state": {"terminated": {"exitCode": code, "finishedAt": "2026-11-22T10:00:00Z"}}}])
            })
            .unwrap_or(json!([]));
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
                "status": {"phase": phase, "containerStatuses": statuses},
            }))
            .unwrap_or_default(),
        )
    }

    fn now() -> Timestamp {
        Timestamp::from_second(2_000_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn completions_and_parallelism_decide_what_starts() {
        let j = job(json!({"completions": 3}));
        let spec = j.spec.clone().unwrap_or_default();
        let cases = [
            (vec![], 2, Verdict::Running),
            (vec![pod("a", "Running", None, None)], 1, Verdict::Running),
            (vec![pod("a", "Succeeded", None, None), pod("b", "Succeeded", None, None)], 1, Verdict::Running),
            (
                vec![
                    pod("a", "Succeeded", None, None),
                    pod("b", "Succeeded", None, None),
                    pod("c", "Running", None, None),
                ],
                0,
                Verdict::Running,
            ),
            (
                vec![
                    pod("a", "Succeeded", None, None),
                    pod("b", "Succeeded", None, None),
                    pod("c", "Succeeded", None, None),
                ],
                0,
                Verdict::Complete,
            ),
        ];
        for (i, (pods, create, want)) in cases.into_iter().enumerate() {
            let counts = count(&j, &pods);
            assert_eq!(to_create(&spec, &counts).len(), create, "case {i}");
            assert_eq!(verdict(&j, &counts, now()), want, "case {i}");
        }
    }

    #[test]
    fn a_work_queue_job_stops_starting_pods_after_the_first_success() {
        let j = job(json!({"completions": null, "parallelism": 3}));
        let spec = j.spec.clone().unwrap_or_default();
        let counts = count(&j, &[pod("a", "Succeeded", None, None), pod("b", "Running", None, None)]);
        assert!(to_create(&spec, &counts).is_empty());
        assert_eq!(verdict(&j, &counts, now()), Verdict::Running);
        let done = count(&j, &[pod("a", "Succeeded", None, None)]);
        assert_eq!(verdict(&j, &done, now()), Verdict::Complete);
    }

    #[test]
    fn failures_past_the_backoff_limit_fail_the_job() {
        let j = job(json!({"completions": 1}));
        let two = count(&j, &[pod("a", "Failed", None, Some(1)), pod("b", "Failed", None, Some(1))]);
        assert_eq!(verdict(&j, &two, now()), Verdict::Running);
        assert!(two.last_failure.is_some());
        let three = count(
            &j,
            &[pod("a", "Failed", None, Some(1)), pod("b", "Failed", None, Some(1)), pod("c", "Failed", None, Some(1))],
        );
        assert!(matches!(verdict(&j, &three, now()), Verdict::Failed { reason: "BackoffLimitExceeded", .. }));
        assert_eq!(
            (backoff(0), backoff(1), backoff(2), backoff(9)),
            (Duration::ZERO, BASE_BACKOFF, BASE_BACKOFF * 2, MAX_BACKOFF)
        );
    }

    #[test]
    fn the_pod_failure_policy_ignores_counts_or_fails() {
        let j = job(json!({"completions": 1, "podFailurePolicy": {"rules": [
            {"action": "Ignore", "onExitCodes": {"operator": "In", "values": [42]}},
            {"action": "FailJob", "onExitCodes": {"containerName": "c", "operator": "In", "values": [3]}},
        ]}}));
        let ignored = count(
            &j,
            &[
                pod("a", "Failed", None, Some(42)),
                pod("b", "Failed", None, Some(42)),
                pod("c", "Failed", None, Some(42)),
            ],
        );
        assert_eq!((ignored.failed, verdict(&j, &ignored, now())), (0, Verdict::Running));
        let fatal = count(&j, &[pod("a", "Failed", None, Some(3))]);
        let Verdict::Failed { reason, message } = verdict(&j, &fatal, now()) else { panic!("expected a failure") };
        assert_eq!(reason, "PodFailurePolicy");
        assert_eq!(message, "Container c for pod ns/a failed with exit code 3 matching FailJob rule at index 1");
        let counted = count(&j, &[pod("a", "Failed", None, Some(1))]);
        assert_eq!(counted.failed, 1);
    }

    #[test]
    fn an_indexed_job_runs_each_index_once() {
        let j = job(json!({"completions": 4, "parallelism": 2, "completionMode": "Indexed"}));
        let spec = j.spec.clone().unwrap_or_default();
        let counts = count(
            &j,
            &[
                pod("a", "Succeeded", Some(0), None),
                pod("b", "Running", Some(1), None),
                pod("c", "Failed", Some(2), Some(1)),
            ],
        );
        assert_eq!(to_create(&spec, &counts), [Some(2)]);
        let all = count(&j, &(0..4).map(|i| pod(&format!("p{i}"), "Succeeded", Some(i), None)).collect::<Vec<_>>());
        assert_eq!(verdict(&j, &all, now()), Verdict::Complete);
        assert_eq!(format_indexes(&all.completed), "0-3");
    }

    #[test]
    fn the_deadline_fails_a_running_job() {
        let mut j = job(json!({"completions": 1, "activeDeadlineSeconds": 30}));
        j.status = Some(serde_json::from_value(json!({"startTime": "2033-05-18T03:32:00Z"})).unwrap_or_default());
        let counts = count(&j, &[pod("a", "Running", None, None)]);
        assert!(matches!(verdict(&j, &counts, now()), Verdict::Failed { reason: "DeadlineExceeded", .. }));
    }

    #[test]
    fn indexes_render_as_ranges() {
        let cases: [(&[i32], &str); 4] = [(&[], ""), (&[0], "0"), (&[0, 1, 2, 4, 6, 7], "0-2,4,6-7"), (&[3, 5], "3,5")];
        for (set, text) in cases {
            let set: BTreeSet<i32> = set.iter().copied().collect();
            assert_eq!(format_indexes(&set), text);
            assert_eq!(parse_indexes(text), set);
        }
    }
}

//! What to do next for one pod, from the pod and what Docker has: a pure function, run again on
//! every pass (level-triggered), so each pass only takes the next step.

use k8s_openapi::api::core::v1::{Container, Pod};

use crate::docker::{Kind, Observed, SANDBOX, State};

/// Exited containers kept per pod container beyond the latest (for `logs --previous`).
pub const KEEP_PREVIOUS: usize = 1;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create and start the sandbox (a new attempt), after which containers start in it.
    CreateSandbox {
        attempt: u32,
    },
    /// Create and start a container of the pod.
    Start {
        name: String,
        kind: Kind,
        attempt: u32,
    },
    /// Restart an exited container as `attempt`, once its back-off allows.
    Restart {
        name: String,
        kind: Kind,
        attempt: u32,
    },
    /// Stop a running container (SIGTERM, then SIGKILL after `grace` seconds).
    Stop {
        id: String,
        grace: i64,
    },
    Remove {
        id: String,
    },
    /// Every container is gone: complete the API deletion.
    FinishDeletion,
}

/// Whether an exited container with this exit code runs again under the pod's restartPolicy.
pub fn restarts(policy: &str, exit_code: i64) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.restart_policy.as_deref()).unwrap_or("Always")
}

/// The latest attempt of each name in `observed`.
pub fn latest<'a>(observed: &'a [Observed], name: &str) -> Option<&'a Observed> {
    observed.iter().filter(|o| o.name == name).max_by_key(|o| o.attempt)
}

/// A stable hash of what a container was created from, so a changed spec is noticed.
pub fn container_hash(c: &Container) -> String {
    let bytes = serde_json::to_vec(c).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The pod's grace period for stopping: deletionGracePeriodSeconds while deleting, otherwise the
/// spec's terminationGracePeriodSeconds (30 by default).
pub fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| pod.spec.as_ref().and_then(|s| s.termination_grace_period_seconds))
        .unwrap_or(30)
        .max(0)
}

/// The next steps for `pod`, given its containers in Docker.
pub fn plan(pod: &Pod, observed: &[Observed]) -> Vec<Action> {
    let running = |o: &&Observed| o.state == Some(State::Running);
    if pod.metadata.deletion_timestamp.is_some() {
        return plan_deletion(pod, observed);
    }
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = restart_policy(pod);
    let mut actions = garbage(observed);
    let sandbox = latest(observed, SANDBOX);
    let finished = pod_finished(pod, observed);
    match sandbox {
        // A finished pod gives up its sandbox, as upstream's does.
        Some(s) if s.state == Some(State::Running) && finished => {
            actions.push(Action::Stop { id: s.id.clone(), grace: 0 });
            return actions;
        }
        Some(s) if s.state == Some(State::Running) => {}
        _ if finished => return actions,
        _ => {
            // A new sandbox means a new network namespace: nothing of the old one survives.
            for o in observed.iter().filter(running).filter(|o| o.name != SANDBOX) {
                actions.push(Action::Stop { id: o.id.clone(), grace: 0 });
            }
            let attempt = sandbox.map_or(0, |s| s.attempt + 1);
            actions.push(Action::CreateSandbox { attempt });
            return actions;
        }
    }
    // Init containers, one at a time, each to success.
    for c in spec.init_containers.iter().flatten() {
        match latest(observed, &c.name) {
            None => {
                actions.push(Action::Start { name: c.name.clone(), kind: Kind::Init, attempt: 0 });
                return actions;
            }
            Some(o) => match o.state {
                Some(State::Running) => return actions,
                Some(State::Exited) if o.exit_code == Some(0) => continue,
                Some(State::Exited) => {
                    if policy != "Never" {
                        actions.push(Action::Restart {
                            name: c.name.clone(),
                            kind: Kind::Init,
                            attempt: o.attempt + 1,
                        });
                    }
                    return actions;
                }
                _ => {
                    actions.push(Action::Remove { id: o.id.clone() });
                    return actions;
                }
            },
        }
    }
    for c in &spec.containers {
        match latest(observed, &c.name) {
            None => actions.push(Action::Start { name: c.name.clone(), kind: Kind::App, attempt: 0 }),
            Some(o) => match o.state {
                Some(State::Running) if o.hash != container_hash(c) => {
                    actions.push(Action::Stop { id: o.id.clone(), grace: grace_seconds(pod) });
                }
                Some(State::Running) => {}
                Some(State::Exited) => {
                    let changed = o.hash != container_hash(c);
                    if changed || restarts(policy, o.exit_code.unwrap_or(-1)) {
                        actions.push(Action::Restart { name: c.name.clone(), kind: Kind::App, attempt: o.attempt + 1 });
                    }
                }
                // Created but never started (the kubelet died between the two): start afresh.
                _ => actions.push(Action::Remove { id: o.id.clone() }),
            },
        }
    }
    actions
}

/// Whether the pod has run to its end: every app container exited and none will restart, or an
/// init container failed under restartPolicy Never.
pub fn pod_finished(pod: &Pod, observed: &[Observed]) -> bool {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = restart_policy(pod);
    let init_failed = policy == "Never"
        && spec.init_containers.iter().flatten().any(|c| {
            latest(observed, &c.name).is_some_and(|o| o.state == Some(State::Exited) && o.exit_code != Some(0))
        });
    if init_failed {
        return true;
    }
    !spec.containers.is_empty()
        && spec.containers.iter().all(|c| {
            latest(observed, &c.name).is_some_and(|o| {
                o.state == Some(State::Exited)
                    && !restarts(policy, o.exit_code.unwrap_or(-1))
                    && o.hash == container_hash(c)
            })
        })
}

/// Deleting: stop the app containers with the grace period, then the sandbox, then remove all of
/// them and finish the deletion in the API.
fn plan_deletion(pod: &Pod, observed: &[Observed]) -> Vec<Action> {
    let running: Vec<&Observed> = observed.iter().filter(|o| o.state == Some(State::Running)).collect();
    let apps: Vec<Action> = running
        .iter()
        .filter(|o| o.name != SANDBOX)
        .map(|o| Action::Stop { id: o.id.clone(), grace: grace_seconds(pod) })
        .collect();
    if !apps.is_empty() {
        return apps;
    }
    if !running.is_empty() {
        return running.iter().map(|o| Action::Stop { id: o.id.clone(), grace: 0 }).collect();
    }
    let mut actions: Vec<Action> = observed.iter().map(|o| Action::Remove { id: o.id.clone() }).collect();
    actions.push(Action::FinishDeletion);
    actions
}

/// Exited containers older than the latest attempt plus [`KEEP_PREVIOUS`] of each name.
fn garbage(observed: &[Observed]) -> Vec<Action> {
    let mut names: Vec<&str> = observed.iter().map(|o| o.name.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let mut actions = Vec::new();
    for name in names {
        let mut attempts: Vec<&Observed> = observed.iter().filter(|o| o.name == name).collect();
        attempts.sort_by_key(|o| std::cmp::Reverse(o.attempt));
        for o in attempts.into_iter().skip(1 + KEEP_PREVIOUS) {
            if o.state != Some(State::Running) {
                actions.push(Action::Remove { id: o.id.clone() });
            }
        }
    }
    actions
}

#[cfg(test)]
mod tests;

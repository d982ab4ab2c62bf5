//! A pod's status from its spec, what Docker has and what the kubelet knows (back-offs, pull
//! errors): a pure function, written through `pods/status` only when it differs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP,
    Pod, PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use super::plan::{container_hash, latest, pod_finished, restart_policy, restarts};
use crate::docker::{Observed, SANDBOX, State};

/// Why a container is waiting, when it is not just being created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// What the status is computed from besides the pod and its containers.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub host_ip: String,
    pub now: Option<Timestamp>,
    /// Waiting reasons by container name (CrashLoopBackOff, ErrImagePull, ImagePullBackOff…).
    pub waiting: BTreeMap<String, Waiting>,
    /// Running containers whose readiness (or startup) probe is not passing.
    pub unready: BTreeSet<String>,
    /// Running containers whose startup probe has not yet passed.
    pub unstarted: BTreeSet<String>,
}

fn time(s: &Option<String>) -> Option<Time> {
    s.as_deref().and_then(|t| t.parse::<Timestamp>().ok()).map(Time)
}

fn terminated(o: &Observed) -> ContainerStateTerminated {
    let code = o.exit_code.unwrap_or(-1) as i32;
    let reason = if o.oom_killed {
        "OOMKilled"
    } else if code == 0 {
        "Completed"
    } else {
        "Error"
    };
    ContainerStateTerminated {
        exit_code: code,
        reason: Some(reason.into()),
        message: o.error.clone(),
        started_at: time(&o.started_at),
        finished_at: time(&o.finished_at),
        container_id: Some(format!("docker://{}", o.id)),
        signal: None,
    }
}

fn container_status(
    name: &str,
    image: &str,
    observed: &[Observed],
    ctx: &Context,
    waiting_reason: &str,
    is_init: bool,
) -> ContainerStatus {
    let current = latest(observed, name);
    let previous = current
        .and_then(|c| observed.iter().filter(|o| o.name == name && o.attempt < c.attempt).max_by_key(|o| o.attempt));
    let waiting = |reason: &str, message: Option<String>| ContainerState {
        waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message }),
        ..Default::default()
    };
    let state = match (ctx.waiting.get(name), current) {
        (Some(w), _) => waiting(&w.reason, Some(w.message.clone())),
        (None, Some(o)) if o.state == Some(State::Running) => ContainerState {
            running: Some(ContainerStateRunning { started_at: time(&o.started_at) }),
            ..Default::default()
        },
        (None, Some(o)) if o.state == Some(State::Exited) => {
            ContainerState { terminated: Some(terminated(o)), ..Default::default() }
        }
        _ => waiting(waiting_reason, None),
    };
    let running = state.running.is_some();
    // While waiting to run again the latest attempt is the last state; otherwise the one before.
    let last = if ctx.waiting.contains_key(name) { current } else { previous };
    let last_state = last
        .filter(|o| o.state == Some(State::Exited))
        .map(|o| ContainerState { terminated: Some(terminated(o)), ..Default::default() });
    ContainerStatus {
        name: name.to_string(),
        image: image.to_string(),
        image_id: current.map(|o| o.image_id.clone()).unwrap_or_default(),
        container_id: current.map(|o| format!("docker://{}", o.id)),
        ready: running && !is_init && !ctx.unready.contains(name)
            || is_init && state.terminated.as_ref().is_some_and(|t| t.exit_code == 0),
        started: Some(running && !ctx.unstarted.contains(name)),
        restart_count: current.map_or(0, |o| o.attempt as i32),
        state: Some(state),
        last_state,
        ..Default::default()
    }
}

/// The status the pod should have now.
pub fn pod_status(pod: &Pod, observed: &[Observed], ctx: &Context) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    let old = pod.status.clone().unwrap_or_default();
    let now = ctx.now.unwrap_or_else(Timestamp::now);
    let policy = restart_policy(pod);
    let host_network = spec.host_network.unwrap_or(false);

    let inits: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            container_status(&c.name, c.image.as_deref().unwrap_or_default(), observed, ctx, "PodInitializing", true)
        })
        .collect();
    let initialized =
        spec.init_containers.iter().flatten().all(|c| {
            latest(observed, &c.name).is_some_and(|o| o.state == Some(State::Exited) && o.exit_code == Some(0))
        });
    let apps: Vec<ContainerStatus> = spec
        .containers
        .iter()
        .map(|c| {
            let reason = if initialized { "ContainerCreating" } else { "PodInitializing" };
            let mut s = container_status(&c.name, c.image.as_deref().unwrap_or_default(), observed, ctx, reason, false);
            // A container whose spec changed is about to be replaced.
            if latest(observed, &c.name).is_some_and(|o| o.hash != container_hash(c)) {
                s.ready = false;
            }
            s
        })
        .collect();
    let all_ready = !apps.is_empty() && apps.iter().all(|s| s.ready);

    let phase = if pod_finished(pod, observed) {
        let init_failed = inits
            .iter()
            .any(|s| s.state.as_ref().and_then(|st| st.terminated.as_ref()).is_some_and(|t| t.exit_code != 0));
        let app_failed =
            spec.containers.iter().any(|c| latest(observed, &c.name).is_some_and(|o| o.exit_code != Some(0)));
        if init_failed || app_failed { "Failed" } else { "Succeeded" }
    } else if initialized
        && spec.containers.iter().all(|c| latest(observed, &c.name).is_some())
        && spec.containers.iter().any(|c| {
            latest(observed, &c.name).is_some_and(|o| {
                o.state == Some(State::Running)
                    || o.state == Some(State::Exited) && restarts(policy, o.exit_code.unwrap_or(-1))
            })
        })
    {
        "Running"
    } else {
        "Pending"
    };

    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let transition = old
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == type_ && c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        PodCondition {
            type_: type_.into(),
            status: status.into(),
            reason: if ok { None } else { reason.map(str::to_string) },
            last_transition_time: Some(transition),
            ..Default::default()
        }
    };
    let finished = phase == "Succeeded" || phase == "Failed";
    let not_ready_reason = if finished { "PodCompleted" } else { "ContainersNotReady" };
    let mut conditions: Vec<PodCondition> =
        old.conditions.iter().flatten().filter(|c| c.type_ == "PodScheduled").cloned().collect();
    if conditions.is_empty() {
        conditions.push(condition("PodScheduled", true, None));
    }
    conditions.push(condition("Initialized", initialized, Some("ContainersNotInitialized")));
    conditions.push(condition("ContainersReady", all_ready, Some(not_ready_reason)));
    conditions.push(condition("Ready", all_ready, Some(not_ready_reason)));

    let pod_ip = if host_network {
        Some(ctx.host_ip.clone())
    } else {
        let running = latest(observed, SANDBOX).filter(|s| s.state == Some(State::Running));
        running.and_then(|s| s.ip.clone()).or(old.pod_ip.clone())
    }
    .filter(|ip| !ip.is_empty());
    PodStatus {
        phase: Some(phase.into()),
        conditions: Some(conditions),
        host_ip: Some(ctx.host_ip.clone()),
        host_ips: Some(vec![HostIP { ip: ctx.host_ip.clone() }]),
        pod_ips: pod_ip.clone().map(|ip| vec![PodIP { ip }]),
        pod_ip,
        start_time: old.start_time.clone().or(Some(Time(now))),
        qos_class: old.qos_class.clone(),
        init_container_statuses: (!inits.is_empty()).then_some(inits),
        container_statuses: Some(apps),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;

//! Pods: READY, STATUS and RESTARTS as `kubectl get pods` shows them.
//!
//! STATUS is upstream's one-word summary: the phase (or `status.reason`), overridden by the
//! first init container that has not finished (`Init:1/2`, `Init:CrashLoopBackOff`), then, once
//! initialised, by the first app container that is waiting or terminated (`ContainerCreating`,
//! `Completed`, `ExitCode:1`), and finally by `Terminating` while the pod is being deleted.

use api_types::k8s_openapi::api::core::v1::{
    ContainerStateTerminated, ContainerStatus, Pod, PodCondition, PodSpec, PodStatus,
};
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, NONE};
use super::{AGE, Column, NAME, Printer, decode};

pub(super) static PRINTER: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Ready", "Ready containers out of all containers, sidecars included."),
        Column::string("Status", "A one-word summary of where the pod is in its lifecycle."),
        Column::string("Restarts", "Container restarts in total, and how long ago the latest was."),
        AGE,
        Column::string("IP", "The pod's first IP address.").wide(),
        Column::string("Node", "The node the pod is bound to.").wide(),
        Column::string("Nominated Node", "The node preemption made room on for this pod.").wide(),
        Column::string("Readiness Gates", "Readiness gates whose condition is True, of all.").wide(),
    ],
    cells,
};

fn cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let pod: Pod = decode(object)?;
    let spec = pod.spec.unwrap_or_default();
    let status = pod.status.unwrap_or_default();
    let summary = summarize(&spec, &status, pod.metadata.deletion_timestamp.is_some());
    let restarts = match summary.restarts.latest {
        Some(at) if summary.restarts.count != 0 => {
            format!("{} ({} ago)", summary.restarts.count, format::elapsed(at, now))
        }
        _ => summary.restarts.count.to_string(),
    };
    let ip = status.pod_ips.as_ref().and_then(|ips| ips.first()).map(|ip| ip.ip.as_str()).or(status.pod_ip.as_deref());
    Ok(vec![
        format::name(&pod.metadata).into(),
        format!("{}/{}", summary.ready, summary.total).into(),
        summary.reason.into(),
        restarts.into(),
        format::age(&pod.metadata, now).into(),
        format::or(ip, NONE).into(),
        format::or(spec.node_name.as_deref(), NONE).into(),
        format::or(status.nominated_node_name.as_deref(), NONE).into(),
        readiness_gates(&spec, &status).into(),
    ])
}

/// What the READY, STATUS and RESTARTS columns say about a pod.
#[derive(Debug, PartialEq, Eq)]
struct Summary {
    ready: usize,
    total: usize,
    reason: String,
    restarts: Restarts,
}

/// Restarts counted so far, and when the latest of them ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Restarts {
    count: i64,
    latest: Option<Timestamp>,
}

impl Restarts {
    fn add(&mut self, container: &ContainerStatus) {
        self.count += i64::from(container.restart_count);
        let finished = container
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .and_then(|t| t.finished_at.as_ref())
            .map(|t| t.0);
        if let Some(at) = finished
            && self.latest.is_none_or(|latest| latest < at)
        {
            self.latest = Some(at);
        }
    }
}

fn summarize(spec: &PodSpec, status: &PodStatus, deleting: bool) -> Summary {
    let phase = status.phase.as_deref().unwrap_or_default();
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let mut reason = format::or(status.reason.as_deref(), phase);
    if conditions.iter().any(|c| c.type_ == "PodScheduled" && c.reason.as_deref() == Some("SchedulingGated")) {
        reason = "SchedulingGated".to_string();
    }

    let init = init_containers(spec, status);
    let mut ready = init.ready;
    let mut restarts = init.restarts;
    if let Some(blocked) = &init.blocked {
        reason.clone_from(blocked);
    }
    if init.blocked.is_none() || condition_true(conditions, "Initialized") {
        restarts = init.sidecar_restarts;
        let statuses = status.container_statuses.as_deref().unwrap_or_default();
        let mut running = false;
        for container in statuses {
            restarts.add(container);
            if container_reason(container).is_none()
                && container.ready
                && container.state.as_ref().is_some_and(|s| s.running.is_some())
            {
                running = true;
                ready += 1;
            }
        }
        // The first container that is waiting or has terminated speaks for the pod.
        if let Some(first) = statuses.iter().find_map(container_reason) {
            reason = first;
        }
        if reason == "Completed" && running {
            reason = if condition_true(conditions, "Ready") { "Running" } else { "NotReady" }.to_string();
        }
    }

    if deleting && status.reason.as_deref() == Some("NodeLost") {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    Summary { ready, total: spec.containers.len() + sidecar_count(spec), reason, restarts }
}

/// What the init containers contribute: ready sidecars, restarts (of all of them and of the
/// sidecars alone), and the STATUS of the first one that has not finished, if any.
#[derive(Debug, Default)]
struct InitSummary {
    ready: usize,
    restarts: Restarts,
    sidecar_restarts: Restarts,
    blocked: Option<String>,
}

fn init_containers(spec: &PodSpec, status: &PodStatus) -> InitSummary {
    let specs = spec.init_containers.as_deref().unwrap_or_default();
    let is_sidecar = |name: &str| specs.iter().any(|c| c.name == name && c.restart_policy.as_deref() == Some("Always"));
    let mut out = InitSummary::default();
    for (i, container) in status.init_container_statuses.iter().flatten().enumerate() {
        out.restarts.add(container);
        let sidecar = is_sidecar(&container.name);
        if sidecar {
            out.sidecar_restarts.add(container);
        }
        let state = container.state.as_ref();
        let terminated = state.and_then(|s| s.terminated.as_ref());
        let waiting = state
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.as_deref())
            .filter(|r| !r.is_empty() && *r != "PodInitializing");
        if terminated.is_some_and(|t| t.exit_code == 0) {
            continue;
        }
        if sidecar && container.started == Some(true) {
            if container.ready {
                out.ready += 1;
            }
            continue;
        }
        out.blocked = Some(match (terminated, waiting) {
            (Some(t), _) => format!("Init:{}", termination_reason(t)),
            (None, Some(r)) => format!("Init:{r}"),
            (None, None) => format!("Init:{i}/{}", specs.len()),
        });
        break;
    }
    out
}

/// The STATUS an app container imposes on its pod: its waiting reason, or how it terminated.
fn container_reason(container: &ContainerStatus) -> Option<String> {
    let state = container.state.as_ref()?;
    let waiting = state.waiting.as_ref().and_then(|w| w.reason.as_deref()).filter(|r| !r.is_empty());
    match (waiting, &state.terminated) {
        (Some(r), _) => Some(r.to_string()),
        (None, Some(t)) => Some(termination_reason(t)),
        (None, None) => None,
    }
}

/// The reason a container terminated, else `Signal:N`, else `ExitCode:N`.
fn termination_reason(t: &ContainerStateTerminated) -> String {
    match (t.reason.as_deref(), t.signal) {
        (Some(r), _) if !r.is_empty() => r.to_string(),
        (_, Some(signal)) if signal != 0 => format!("Signal:{signal}"),
        _ => format!("ExitCode:{}", t.exit_code),
    }
}

/// Init containers with `restartPolicy: Always`, which count as containers of the pod.
fn sidecar_count(spec: &PodSpec) -> usize {
    spec.init_containers.iter().flatten().filter(|c| c.restart_policy.as_deref() == Some("Always")).count()
}

fn condition_true(conditions: &[PodCondition], type_: &str) -> bool {
    conditions.iter().any(|c| c.type_ == type_ && c.status == "True")
}

/// `true/all` readiness gates, `<none>` when the pod has none.
fn readiness_gates(spec: &PodSpec, status: &PodStatus) -> String {
    let gates = spec.readiness_gates.as_deref().unwrap_or_default();
    if gates.is_empty() {
        return NONE.to_string();
    }
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let passed = gates
        .iter()
        .filter(|gate| conditions.iter().find(|c| c.type_ == gate.condition_type).is_some_and(|c| c.status == "True"))
        .count();
    format!("{passed}/{}", gates.len())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    fn pod(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "namespace": "default", "creationTimestamp": ago(3 * 3600 + 240)},
            "spec": spec,
            "status": status,
        })
    }

    fn two_containers() -> Value {
        json!({"nodeName": "n1", "containers": [{"name": "app", "image": "app:1"}, {"name": "log", "image": "log:1"}]})
    }

    fn running(name: &str, ready: bool, restarts: i32) -> Value {
        json!({"name": name, "ready": ready, "restartCount": restarts, "image": "x", "imageID": "",
               "state": {"running": {"startedAt": ago(600)}}})
    }

    fn waiting(name: &str, reason: &str) -> Value {
        json!({"name": name, "ready": false, "restartCount": 0, "image": "x", "imageID": "",
               "state": {"waiting": {"reason": reason}}})
    }

    fn terminated(name: &str, exit_code: i32, reason: Option<&str>, signal: Option<i32>) -> Value {
        json!({"name": name, "ready": false, "restartCount": 0, "image": "x", "imageID": "",
               "state": {"terminated": {"exitCode": exit_code, "reason": reason, "signal": signal}}})
    }

    /// The READY, STATUS and RESTARTS cells.
    fn summary_cells(object: &Value) -> [String; 3] {
        let row = cells(&PRINTER, object);
        [1, 2, 3].map(|i| row[i].as_str().expect("a string cell").to_string())
    }

    #[test]
    fn has_upstream_columns() {
        assert_eq!(
            headers(&PRINTER),
            ["Name", "Ready", "Status", "Restarts", "Age", "+IP", "+Node", "+Nominated Node", "+Readiness Gates"]
        );
    }

    #[test]
    fn prints_a_running_pod_with_one_container_not_ready_and_restarts() {
        let mut restarted = running("log", false, 3);
        restarted["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error",
                                                       "finishedAt": ago(5 * 60 + 10)}});
        let object = pod(
            two_containers(),
            json!({
                "phase": "Running",
                "podIP": "10.244.1.7",
                "podIPs": [{"ip": "10.244.1.7"}],
                "conditions": [{"type": "Ready", "status": "False"}],
                "containerStatuses": [running("app", true, 2), restarted],
            }),
        );
        assert_eq!(
            cells(&PRINTER, &object),
            [
                json!("web-0"),
                json!("1/2"),
                json!("Running"),
                json!("5 (5m10s ago)"),
                json!("3h4m"),
                json!("10.244.1.7"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn prints_a_pending_pod_whose_containers_are_being_created() {
        let object = pod(
            two_containers(),
            json!({
                "phase": "Pending",
                "containerStatuses": [waiting("app", "ContainerCreating"), waiting("log", "ContainerCreating")],
            }),
        );
        let row = cells(&PRINTER, &object);
        assert_eq!(row[1..4], [json!("0/2"), json!("ContainerCreating"), json!("0")]);
        assert_eq!(row[5], "<none>");
    }

    #[test]
    fn prints_terminating_while_a_live_pod_is_being_deleted() {
        let mut object = pod(
            two_containers(),
            json!({"phase": "Running", "containerStatuses": [running("app", true, 0), running("log", true, 0)]}),
        );
        object["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(summary_cells(&object), ["2/2", "Terminating", "0"]);
    }

    #[test]
    fn prints_unknown_for_a_deleted_pod_on_a_lost_node() {
        let mut object = pod(two_containers(), json!({"phase": "Running", "reason": "NodeLost"}));
        object["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(summary_cells(&object)[1], "Unknown");
    }

    #[test]
    fn a_finished_pod_being_deleted_keeps_its_status() {
        let mut object = pod(
            json!({"containers": [{"name": "app"}]}),
            json!({"phase": "Succeeded", "containerStatuses": [terminated("app", 0, Some("Completed"), None)]}),
        );
        object["metadata"]["deletionTimestamp"] = json!(ago(10));
        assert_eq!(summary_cells(&object)[1], "Completed");
    }

    /// A status with a phase and the states of init and app containers.
    fn status(phase: &str, init: &[Value], app: &[Value]) -> Value {
        json!({"phase": phase, "initContainerStatuses": init, "containerStatuses": app})
    }

    fn completed(name: &str) -> Value {
        terminated(name, 0, Some("Completed"), None)
    }

    fn with_condition(mut status: Value, type_: &str, reason: Option<&str>) -> Value {
        status["conditions"] = json!([{"type": type_, "status": "True", "reason": reason}]);
        status
    }

    #[test]
    fn summarizes_pod_status_like_upstream() {
        let one = json!({"containers": [{"name": "app"}]});
        let with_init = json!({"initContainers": [{"name": "a"}, {"name": "b"}], "containers": [{"name": "app"}]});
        let two = two_containers();
        let initializing = waiting("b", "PodInitializing");
        let cases: Vec<(&str, &Value, Value, &str)> = vec![
            ("phase only", &one, status("Pending", &[], &[]), "Pending"),
            ("status reason beats phase", &one, json!({"phase": "Failed", "reason": "Evicted"}), "Evicted"),
            (
                "scheduling gated",
                &one,
                with_condition(status("Pending", &[], &[]), "PodScheduled", Some("SchedulingGated")),
                "SchedulingGated",
            ),
            ("crash loop", &one, status("Running", &[], &[waiting("app", "CrashLoopBackOff")]), "CrashLoopBackOff"),
            ("image pull", &one, status("Pending", &[], &[waiting("app", "ImagePullBackOff")]), "ImagePullBackOff"),
            ("completed", &one, status("Succeeded", &[], &[completed("app")]), "Completed"),
            ("killed by signal", &one, status("Failed", &[], &[terminated("app", 137, None, Some(9))]), "Signal:9"),
            ("exit code", &one, status("Failed", &[], &[terminated("app", 2, Some(""), None)]), "ExitCode:2"),
            (
                "first init container running",
                &with_init,
                status("Pending", &[running("a", false, 0), initializing.clone()], &[]),
                "Init:0/2",
            ),
            (
                "second init container pending",
                &with_init,
                status("Pending", &[completed("a"), initializing.clone()], &[]),
                "Init:1/2",
            ),
            (
                "init container crash looping",
                &with_init,
                status("Pending", &[waiting("a", "CrashLoopBackOff"), initializing.clone()], &[]),
                "Init:CrashLoopBackOff",
            ),
            (
                "init container failed",
                &with_init,
                status("Pending", &[terminated("a", 1, Some("Error"), None), initializing.clone()], &[]),
                "Init:Error",
            ),
            (
                "init container failed without reason",
                &with_init,
                status("Pending", &[terminated("a", 3, None, None), initializing.clone()], &[]),
                "Init:ExitCode:3",
            ),
            (
                "init container killed",
                &with_init,
                status("Pending", &[terminated("a", 137, None, Some(9)), initializing.clone()], &[]),
                "Init:Signal:9",
            ),
            (
                "initialised pod reports its app containers",
                &with_init,
                with_condition(
                    status("Running", &[completed("a"), completed("b")], &[running("app", true, 0)]),
                    "Initialized",
                    None,
                ),
                "Running",
            ),
            (
                "first waiting container wins",
                &two,
                status("Running", &[], &[waiting("app", "CrashLoopBackOff"), waiting("log", "ErrImagePull")]),
                "CrashLoopBackOff",
            ),
            (
                "completed container beside a running one",
                &two,
                with_condition(status("Running", &[], &[completed("app"), running("log", true, 0)]), "Ready", None),
                "Running",
            ),
            (
                "completed container beside a running one, pod not ready",
                &two,
                status("Running", &[], &[completed("app"), running("log", true, 0)]),
                "NotReady",
            ),
        ];
        for (case, spec, status, want) in cases {
            assert_eq!(summary_cells(&pod(spec.clone(), status))[1], want, "{case}");
        }
    }

    #[test]
    fn counts_started_sidecars_as_containers() {
        let spec = json!({
            "initContainers": [{"name": "init"}, {"name": "proxy", "restartPolicy": "Always"}],
            "containers": [{"name": "app"}],
        });
        let mut proxy = running("proxy", true, 1);
        proxy["started"] = json!(true);
        proxy["lastState"] = json!({"terminated": {"exitCode": 1, "finishedAt": ago(90)}});
        let mut init = terminated("init", 0, Some("Completed"), None);
        init["restartCount"] = json!(4);
        let status = json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [init, proxy],
            "containerStatuses": [running("app", true, 0)],
        });
        // Restarts of ordinary init containers stop counting once the pod is initialised.
        assert_eq!(summary_cells(&pod(spec, status)), ["2/2", "Running", "1 (90s ago)"]);
    }

    #[test]
    fn counts_init_restarts_while_initialising() {
        let spec = json!({"initContainers": [{"name": "a"}], "containers": [{"name": "app"}]});
        let mut a = waiting("a", "CrashLoopBackOff");
        a["restartCount"] = json!(6);
        a["lastState"] = json!({"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(40)}});
        let status = json!({"phase": "Pending", "initContainerStatuses": [a]});
        assert_eq!(summary_cells(&pod(spec, status)), ["0/1", "Init:CrashLoopBackOff", "6 (40s ago)"]);
    }

    #[test]
    fn restarts_without_a_finish_time_have_no_suffix() {
        let status = json!({"phase": "Running", "containerStatuses": [running("app", true, 2)]});
        assert_eq!(summary_cells(&pod(json!({"containers": [{"name": "app"}]}), status))[2], "2");
    }

    #[test]
    fn counts_readiness_gates_whose_condition_is_true() {
        let spec = json!({"containers": [{"name": "app"}],
                          "readinessGates": [{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]});
        let status = json!({"phase": "Running", "conditions": [{"type": "example.com/lb", "status": "True"},
                                                              {"type": "example.com/dns", "status": "False"}]});
        assert_eq!(cells(&PRINTER, &pod(spec, status))[8], "1/2");
    }

    #[test]
    fn shows_the_nominated_node() {
        let status = json!({"phase": "Pending", "nominatedNodeName": "n2"});
        assert_eq!(cells(&PRINTER, &pod(json!({"containers": [{"name": "app"}]}), status))[7], "n2");
    }
}

use k8s_openapi::api::core::v1::{Container, PodSpec};

use super::*;
use crate::docker::Observed;

fn pod(policy: &str, apps: &[&str]) -> Pod {
    Pod {
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            containers: apps
                .iter()
                .map(|n| Container { name: n.to_string(), image: Some("busybox".into()), ..Default::default() })
                .collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn seen(pod: &Pod, name: &str, attempt: u32, state: State, exit: Option<i64>) -> Observed {
    let hash = pod.spec.as_ref().and_then(|s| s.containers.iter().find(|c| c.name == name)).map(container_hash);
    Observed {
        id: format!("{name}{attempt}"),
        name: name.into(),
        attempt,
        state: Some(state),
        exit_code: exit,
        hash: hash.unwrap_or_default(),
        started_at: Some("2026-01-01T00:00:00Z".into()),
        finished_at: (state == State::Exited).then(|| "2026-01-01T00:01:00Z".into()),
        ip: (name == SANDBOX).then(|| "10.244.0.5".into()),
        ..Default::default()
    }
}

fn ctx() -> Context {
    Context { host_ip: "192.168.1.10".into(), now: Some(Timestamp::UNIX_EPOCH), ..Default::default() }
}

fn condition<'a>(s: &'a PodStatus, t: &str) -> &'a str {
    s.conditions.iter().flatten().find(|c| c.type_ == t).map_or("", |c| c.status.as_str())
}

#[test]
fn nothing_yet_is_pending_and_creating() {
    let p = pod("Always", &["web"]);
    let s = pod_status(&p, &[], &ctx());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    let web = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(
        web.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref()),
        Some("ContainerCreating")
    );
    assert_eq!(s.pod_ip, None);
    assert_eq!((condition(&s, "PodScheduled"), condition(&s, "Ready")), ("True", "False"));
}

#[test]
fn running_pod_is_ready_with_the_sandbox_ip() {
    let p = pod("Always", &["web", "side"]);
    let observed = [
        seen(&p, SANDBOX, 0, State::Running, None),
        seen(&p, "web", 0, State::Running, None),
        seen(&p, "side", 0, State::Running, None),
    ];
    let s = pod_status(&p, &observed, &ctx());
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.5"));
    assert_eq!(s.host_ip.as_deref(), Some("192.168.1.10"));
    assert_eq!(
        (condition(&s, "Initialized"), condition(&s, "ContainersReady"), condition(&s, "Ready")),
        ("True", "True", "True")
    );
    let web = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(web.container_id.as_deref(), Some("docker://web0"));
    assert!(web.ready && web.started == Some(true));
}

#[test]
fn crash_loop_shows_waiting_with_the_last_termination() {
    let p = pod("Always", &["web"]);
    let observed = [seen(&p, SANDBOX, 0, State::Running, None), seen(&p, "web", 3, State::Exited, Some(2))];
    let mut c = ctx();
    c.waiting.insert("web".into(), Waiting { reason: "CrashLoopBackOff".into(), message: "back-off 40s".into() });
    let s = pod_status(&p, &observed, &c);
    assert_eq!(s.phase.as_deref(), Some("Running"));
    let web = &s.container_statuses.as_ref().expect("statuses")[0];
    assert_eq!(web.restart_count, 3);
    assert_eq!(
        web.state.as_ref().and_then(|s| s.waiting.as_ref()).and_then(|w| w.reason.as_deref()),
        Some("CrashLoopBackOff")
    );
    let last = web.last_state.as_ref().and_then(|s| s.terminated.as_ref()).expect("last state");
    assert_eq!((last.exit_code, last.reason.as_deref()), (2, Some("Error")));
    assert_eq!(condition(&s, "Ready"), "False");
}

#[test]
fn finished_pods_succeed_or_fail_by_exit_code() {
    for (policy, exit, phase) in [("Never", 0, "Succeeded"), ("Never", 1, "Failed"), ("OnFailure", 0, "Succeeded")] {
        let p = pod(policy, &["job"]);
        let observed = [seen(&p, SANDBOX, 0, State::Exited, Some(137)), seen(&p, "job", 0, State::Exited, Some(exit))];
        let mut old = p.clone();
        old.status = Some(PodStatus { pod_ip: Some("10.244.0.9".into()), ..Default::default() });
        let s = pod_status(&old, &observed, &ctx());
        assert_eq!(s.phase.as_deref(), Some(phase), "{policy} {exit}");
        assert_eq!(s.pod_ip.as_deref(), Some("10.244.0.9"), "a finished pod keeps its IP");
        let job = &s.container_statuses.as_ref().expect("statuses")[0];
        let t = job.state.as_ref().and_then(|s| s.terminated.as_ref()).expect("terminated");
        assert_eq!(t.exit_code as i64, exit);
        assert_eq!(
            s.conditions.iter().flatten().find(|c| c.type_ == "Ready").and_then(|c| c.reason.as_deref()),
            Some("PodCompleted")
        );
    }
}

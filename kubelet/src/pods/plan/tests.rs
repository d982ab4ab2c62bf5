use k8s_openapi::api::core::v1::PodSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use super::*;

fn pod(policy: &str, init: &[&str], apps: &[&str]) -> Pod {
    let container = |n: &&str| Container { name: n.to_string(), image: Some("busybox".into()), ..Default::default() };
    Pod {
        spec: Some(PodSpec {
            restart_policy: Some(policy.into()),
            init_containers: (!init.is_empty()).then(|| init.iter().map(container).collect()),
            containers: apps.iter().map(container).collect(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hash_of(pod: &Pod, name: &str) -> String {
    let spec = pod.spec.as_ref().expect("spec");
    let c = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name);
    c.map(container_hash).unwrap_or_default()
}

fn seen(pod: &Pod, name: &str, attempt: u32, state: State, exit: Option<i64>) -> Observed {
    Observed {
        id: format!("{name}-{attempt}"),
        name: name.into(),
        attempt,
        state: Some(state),
        exit_code: exit,
        hash: hash_of(pod, name),
        ..Default::default()
    }
}

fn sandbox(pod: &Pod) -> Observed {
    seen(pod, SANDBOX, 0, State::Running, None)
}

fn start(name: &str, kind: Kind, attempt: u32) -> Action {
    Action::Start { name: name.into(), kind, attempt }
}

fn restart(name: &str, kind: Kind, attempt: u32) -> Action {
    Action::Restart { name: name.into(), kind, attempt }
}

#[test]
fn a_new_pod_gets_a_sandbox_first() {
    let p = pod("Always", &[], &["web"]);
    assert_eq!(plan(&p, &[]), vec![Action::CreateSandbox { attempt: 0 }]);
}

#[test]
fn a_dead_sandbox_is_replaced_and_its_containers_stopped() {
    let p = pod("Always", &[], &["web"]);
    let dead = seen(&p, SANDBOX, 2, State::Exited, Some(137));
    let web = seen(&p, "web", 0, State::Running, None);
    assert_eq!(
        plan(&p, &[dead, web]),
        vec![Action::Stop { id: "web-0".into(), grace: 0 }, Action::CreateSandbox { attempt: 3 }]
    );
}

#[test]
fn init_containers_run_in_order_to_success() {
    let p = pod("Always", &["a", "b"], &["web"]);
    let s = sandbox(&p);
    assert_eq!(plan(&p, std::slice::from_ref(&s)), vec![start("a", Kind::Init, 0)]);
    let a_running = seen(&p, "a", 0, State::Running, None);
    assert_eq!(plan(&p, &[s.clone(), a_running]), vec![]);
    let a_done = seen(&p, "a", 0, State::Exited, Some(0));
    assert_eq!(plan(&p, &[s.clone(), a_done.clone()]), vec![start("b", Kind::Init, 0)]);
    let a_failed = seen(&p, "a", 0, State::Exited, Some(1));
    assert_eq!(plan(&p, &[s.clone(), a_failed]), vec![restart("a", Kind::Init, 1)]);
    let b_done = seen(&p, "b", 0, State::Exited, Some(0));
    assert_eq!(plan(&p, &[s, a_done, b_done]), vec![start("web", Kind::App, 0)]);
    let never = pod("Never", &["a"], &["web"]);
    let failed = seen(&never, "a", 0, State::Exited, Some(1));
    assert!(pod_finished(&never, &[sandbox(&never), failed.clone()]));
    assert_eq!(plan(&never, &[sandbox(&never), failed]), vec![Action::Stop { id: "POD-0".into(), grace: 0 }]);
}

#[test]
fn restart_policies_against_exit_codes() {
    for (policy, exit, restarted) in [
        ("Always", 0, true),
        ("Always", 1, true),
        ("OnFailure", 0, false),
        ("OnFailure", 1, true),
        ("Never", 0, false),
        ("Never", 1, false),
    ] {
        let p = pod(policy, &[], &["job"]);
        let exited = seen(&p, "job", 3, State::Exited, Some(exit));
        let actions = plan(&p, &[sandbox(&p), exited.clone()]);
        let wants = actions.contains(&restart("job", Kind::App, 4));
        assert_eq!(wants, restarted, "{policy} exit {exit}: {actions:?}");
        assert_eq!(pod_finished(&p, &[sandbox(&p), exited]), !restarted, "{policy} exit {exit}");
    }
}

#[test]
fn a_changed_container_is_stopped_then_restarted() {
    let p = pod("Always", &[], &["web"]);
    let mut old = seen(&p, "web", 0, State::Running, None);
    old.hash = "something-else".into();
    assert_eq!(plan(&p, &[sandbox(&p), old]), vec![Action::Stop { id: "web-0".into(), grace: 30 }]);
}

#[test]
fn old_attempts_are_collected_but_the_previous_one_kept() {
    let p = pod("Always", &[], &["web"]);
    let mut observed = vec![sandbox(&p)];
    observed.extend((0..4).map(|a| seen(&p, "web", a, State::Exited, Some(1))));
    observed.push(seen(&p, "web", 4, State::Running, None));
    let actions = plan(&p, &observed);
    let removed: Vec<&Action> = actions.iter().filter(|a| matches!(a, Action::Remove { .. })).collect();
    assert_eq!(
        removed,
        vec![
            &Action::Remove { id: "web-2".into() },
            &Action::Remove { id: "web-1".into() },
            &Action::Remove { id: "web-0".into() }
        ]
    );
}

#[test]
fn deletion_stops_apps_with_grace_then_the_sandbox_then_finishes() {
    let mut p = pod("Always", &[], &["web"]);
    p.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
    p.metadata.deletion_grace_period_seconds = Some(5);
    let s = sandbox(&p);
    let web = seen(&p, "web", 0, State::Running, None);
    assert_eq!(plan(&p, &[s.clone(), web]), vec![Action::Stop { id: "web-0".into(), grace: 5 }]);
    let web_done = seen(&p, "web", 0, State::Exited, Some(143));
    assert_eq!(plan(&p, &[s, web_done.clone()]), vec![Action::Stop { id: "POD-0".into(), grace: 0 }]);
    let s_done = seen(&p, SANDBOX, 0, State::Exited, Some(137));
    assert_eq!(
        plan(&p, &[s_done, web_done]),
        vec![Action::Remove { id: "POD-0".into() }, Action::Remove { id: "web-0".into() }, Action::FinishDeletion]
    );
    assert_eq!(plan(&p, &[]), vec![Action::FinishDeletion]);
}

//! rk-scheduler against a real API server on real etcd, with Node objects and no kubelets.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Result, bail};
use integration_tests::{Cluster, Scheduler};
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

async fn create_node(
    nodes: &Api<Node>,
    name: &str,
    cpu: &str,
    labels: serde_json::Value,
    taints: serde_json::Value,
) -> Result<()> {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"allocatable": {"cpu": cpu, "memory": "8Gi", "pods": "110"}, "capacity": {"cpu": cpu, "memory": "8Gi", "pods": "110"}},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    Ok(())
}

fn pod(name: &str, cpu: &str, labels: serde_json::Value, extra: serde_json::Value) -> Result<Pod> {
    let mut spec = json!({"containers": [{"name": "c", "image": "busybox", "resources": {"requests": {"cpu": cpu, "memory": "64Mi"}}}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    Ok(serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}, "spec": spec}))?)
}

/// Polls until every listed pod has a node; returns them.
async fn all_bound(pods: &Api<Pod>, want: usize, secs: u64) -> Result<Vec<Pod>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let list = pods.list(&ListParams::default()).await?.items;
        let bound = list.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some()).count();
        if bound == want && list.len() == want {
            return Ok(list);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{bound} of {} pods bound after {secs}s", list.len());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn node_of(p: &Pod) -> &str {
    p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_pods_over_ten_nodes_respect_resources_selectors_taints_and_anti_affinity() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..10 {
        let mut labels = json!({"kubernetes.io/hostname": format!("n{i}"), "zone": format!("z{}", i % 5)});
        if i < 4 {
            labels["disk"] = json!("ssd");
        }
        let gpu = i >= 8;
        if gpu {
            labels["dedicated"] = json!("gpu");
        }
        let taints =
            if gpu { json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]) } else { json!([]) };
        create_node(&nodes, &format!("n{i}"), "4", labels, taints).await?;
    }
    let _scheduler = Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let gpu_toleration = json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    let web_anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]}});
    let mut wanted = Vec::new();
    for i in 0..100 {
        wanted.push(pod(&format!("plain-{i}"), "100m", json!({"app": "plain"}), json!({}))?);
    }
    for i in 0..50 {
        wanted.push(pod(
            &format!("fast-{i}"),
            "100m",
            json!({"app": "fast"}),
            json!({"nodeSelector": {"disk": "ssd"}}),
        )?);
    }
    for i in 0..20 {
        let extra = json!({"nodeSelector": {"dedicated": "gpu"}, "tolerations": gpu_toleration});
        wanted.push(pod(&format!("gpu-{i}"), "100m", json!({"app": "gpu"}), extra)?);
    }
    for i in 0..8 {
        wanted.push(pod(&format!("web-{i}"), "100m", json!({"app": "web"}), json!({"affinity": web_anti}))?);
    }
    for i in 0..22 {
        wanted.push(pod(&format!("big-{i}"), "500m", json!({"app": "big"}), json!({}))?);
    }
    let params = PostParams::default();
    let created = futures::future::join_all(wanted.iter().map(|p| pods.create(&params, p))).await;
    for r in created {
        r?;
    }
    let placed = all_bound(&pods, 200, 60).await?;

    let mut used: HashMap<&str, i64> = HashMap::new();
    for p in &placed {
        let cpu = if p.metadata.name.as_deref().is_some_and(|n| n.starts_with("big-")) { 500 } else { 100 };
        *used.entry(node_of(p)).or_default() += cpu;
    }
    assert!(used.values().all(|m| *m <= 4000), "overcommitted: {used:?}");
    let app = |p: &Pod| p.metadata.labels.as_ref().and_then(|l| l.get("app")).cloned().unwrap_or_default();
    let index = |p: &Pod| node_of(p).trim_start_matches('n').parse::<usize>().unwrap_or(99);
    for p in &placed {
        match app(p).as_str() {
            "fast" => {
                assert!(index(p) < 4, "{} on {} has no ssd", p.metadata.name.as_deref().unwrap_or_default(), node_of(p))
            }
            "gpu" => assert!(index(p) >= 8, "gpu pod on {}", node_of(p)),
            _ => assert!(index(p) < 8, "{} landed on tainted {}", app(p), node_of(p)),
        }
    }
    let mut web_nodes: Vec<&str> = placed.iter().filter(|p| app(p) == "web").map(node_of).collect();
    web_nodes.sort_unstable();
    web_nodes.dedup();
    assert_eq!(web_nodes.len(), 8, "anti-affinity: one web pod per node");

    // The story in events.
    let events: Api<Event> = Api::namespaced(client, "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let scheduled = events.list(&ListParams::default().fields("involvedObject.name=web-0")).await?.items;
        if let Some(e) = scheduled.iter().find(|e| e.reason.as_deref() == Some("Scheduled")) {
            let want = format!(
                "Successfully assigned default/web-0 to {}",
                node_of(placed.iter().find(|p| p.metadata.name.as_deref() == Some("web-0")).expect("web-0"))
            );
            assert_eq!(e.message.as_deref(), Some(want.as_str()));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no Scheduled event for web-0");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unschedulable_pod_says_why_and_fits_once_a_node_is_added() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    create_node(&nodes, "small", "1", json!({}), json!([])).await?;
    create_node(&nodes, "gpu", "8", json!({}), json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]))
        .await?;
    let _scheduler = Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &pod("hungry", "2", json!({}), json!({}))?).await?;
    let want = "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint {dedicated: gpu}.";
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let p = pods.get("hungry").await?;
        let cond = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
            .cloned();
        if let Some(c) = cond {
            assert_eq!(
                (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
                ("False", Some("Unschedulable"), Some(want))
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no PodScheduled condition");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed = events.list(&ListParams::default().fields("involvedObject.name=hungry")).await?.items;
    assert!(
        failed.iter().any(|e| e.reason.as_deref() == Some("FailedScheduling") && e.message.as_deref() == Some(want)),
        "{failed:?}"
    );

    create_node(&nodes, "big", "4", json!({}), json!([])).await?;
    let bound = all_bound(&pods, 1, 15).await?;
    assert_eq!(node_of(&bound[0]), "big");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_hands_over_without_binding_any_pod_twice() -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..3 {
        create_node(&nodes, &format!("n{i}"), "100", json!({}), json!([])).await?;
    }
    let elected = |identity: &str| {
        let mut config = scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone());
        config.leader_election = Some(daemon::leader::Config {
            lease_duration: Duration::from_secs(3),
            renew_deadline: Duration::from_secs(2),
            retry_period: Duration::from_millis(300),
            ..daemon::leader::Config::new("kube-system", "rk-scheduler", identity)
        });
        config
    };
    let mut schedulers: BTreeMap<&str, Scheduler> =
        [("a", Scheduler::start(elected("a"))), ("b", Scheduler::start(elected("b")))].into_iter().collect();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let holder = || async {
        leases.get_opt("rk-scheduler").await.ok().flatten().and_then(|l| l.spec?.holder_identity).unwrap_or_default()
    };
    for i in 0..30 {
        pods.create(&PostParams::default(), &pod(&format!("before-{i}"), "10m", json!({}), json!({}))?).await?;
    }
    all_bound(&pods, 30, 30).await?;
    let leader = holder().await;
    let standby = if leader == "a" { "b" } else { "a" };
    // Pods keep arriving while the leader dies mid-stream.
    let creating = {
        let pods = pods.clone();
        tokio::spawn(async move {
            for i in 0..60 {
                let p = pod(&format!("during-{i}"), "10m", json!({}), json!({})).expect("pod");
                pods.create(&PostParams::default(), &p).await.expect("create");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(600)).await;
    schedulers.get_mut(leader.as_str()).expect("leader").kill();
    let killed_at = tokio::time::Instant::now();
    while holder().await != standby {
        assert!(killed_at.elapsed() < Duration::from_secs(10), "the standby did not take over");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = killed_at.elapsed();
    creating.await?;
    let placed = all_bound(&pods, 90, 40).await?;
    assert!(schedulers[standby].is_running());
    // Each pod was bound once: one Scheduled event each, never two.
    let events: Api<Event> = Api::namespaced(client, "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let mut per_pod: HashMap<String, usize> = HashMap::new();
        for e in events.list(&ListParams::default()).await?.items {
            if e.reason.as_deref() == Some("Scheduled") {
                *per_pod.entry(e.involved_object.name.unwrap_or_default()).or_default() +=
                    e.count.unwrap_or(1) as usize;
            }
        }
        assert!(per_pod.values().all(|n| *n == 1), "a pod was bound twice: {per_pod:?}");
        // A killed leader may have bound a pod without writing its event: bound is what counts.
        if per_pod.len() + 5 >= placed.len() || tokio::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert!(took < Duration::from_secs(3) + Duration::from_secs(4), "handover took {took:?}");
    Ok(())
}

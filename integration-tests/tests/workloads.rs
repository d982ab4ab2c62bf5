//! The DaemonSet and StatefulSet controllers against a real API server on real etcd. No
//! kubelets and no scheduler: tests create Node objects themselves, mark pods Running and Ready
//! through the API, and finish terminating pods (delete with grace 0) as a kubelet would.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use integration_tests::{Cluster, ControllerManager, eventually};
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, StatefulSet};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolumeClaim, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// A controller manager running only `controllers` (so the node lifecycle controller does not
/// taint the tests' silent nodes).
fn manager(c: &Cluster, controllers: &[&'static str]) -> ControllerManager {
    let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    config.controllers = controllers.iter().copied().collect();
    ControllerManager::start(config)
}

/// Marks a pod Running and Ready, the way its kubelet would.
async fn mark_ready(pods: &Api<Pod>, name: &str) -> Result<()> {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

/// A Ready node with `labels` and `taints`.
async fn node(client: &kube::Client, name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}});
    nodes.create(&PostParams::default(), &serde_json::from_value(node)?).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn name_of(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn node_of(pod: &Pod) -> &str {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or_default()
}

fn label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Background work the tests' missing kubelets would do; stops when dropped.
struct Kubelet(tokio::task::JoinHandle<()>);

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Finishes every terminating pod at once (with `ready`, also marks every other pod Ready).
fn kubelet(pods: Api<Pod>, ready: bool) -> Kubelet {
    Kubelet(tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in &list.items {
                    // A pod deleted meanwhile is no error.
                    if is_terminating(p) {
                        let _ = pods
                            .delete(name_of(p), &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
                            .await;
                    } else if ready && !is_ready(p) {
                        let _ = mark_ready(&pods, name_of(p)).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }))
}

fn daemon_set(
    name: &str,
    image: &str,
    node_selector: serde_json::Value,
    strategy: serde_json::Value,
) -> Result<DaemonSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"nodeSelector": node_selector, "containers": [{"name": "c", "image": image}]},
            },
        },
    }))?)
}

/// The set's pods that are not terminating, by node, once that is exactly `want` nodes (each
/// with one pod) and the status agrees.
async fn daemon_pods_on(
    pods: &Api<Pod>,
    sets: &Api<DaemonSet>,
    name: &str,
    want: &[&str],
) -> Result<BTreeMap<String, Pod>> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(30, &format!("daemonset {name} on {want:?}"), || async {
        let set = sets.get(name).await?;
        let status = set.status.clone().unwrap_or_default();
        let list = pods.list(&ListParams::default().labels(&format!("app={name}"))).await?.items;
        let active: Vec<Pod> = list.into_iter().filter(|p| !is_terminating(p)).collect();
        let by_node: BTreeMap<String, Pod> = active.iter().map(|p| (node_of(p).to_string(), p.clone())).collect();
        let nodes: BTreeSet<String> = by_node.keys().cloned().collect();
        let done = nodes == want
            && active.len() == want.len()
            && usize::try_from(status.desired_number_scheduled).ok() == Some(want.len())
            && usize::try_from(status.current_number_scheduled).ok() == Some(want.len())
            && status.number_misscheduled == 0
            && status.observed_generation == set.metadata.generation;
        Ok(done.then_some(by_node))
    })
    .await
}

async fn reasons(client: &kube::Client, kind: &str) -> Result<BTreeSet<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some(kind))
        .filter_map(|e| e.reason)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_follows_nodes_their_labels_and_taints() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm =
        manager(&c, &[controller_manager::controllers::daemonset::NAME, controller_manager::controllers::podgc::NAME]);
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let nodes: Api<Node> = Api::all(client.clone());
    let _kubelet = kubelet(pods.clone(), false);
    for name in ["n1", "n2", "n3"] {
        node(&client, name, json!({"role": "worker"}), json!([])).await?;
    }
    node(&client, "control", json!({"role": "control"}), json!([])).await?;

    sets.create(&PostParams::default(), &daemon_set("agent", "busybox", json!({"role": "worker"}), json!({}))?).await?;
    let three = daemon_pods_on(&pods, &sets, "agent", &["n1", "n2", "n3"]).await?;
    for p in three.values() {
        assert!(name_of(p).starts_with("agent-"), "{}", name_of(p));
        let owner = p.metadata.owner_references.iter().flatten().next().cloned().unwrap_or_default();
        assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("DaemonSet", "agent", Some(true)));
        assert!(label(p, "controller-revision-hash").is_some_and(|h| !h.is_empty()));
        assert_eq!(label(p, "pod-template-generation"), Some("1"));
        let tolerations = p.spec.as_ref().and_then(|s| s.tolerations.clone()).unwrap_or_default();
        let unreachable = tolerations.iter().find(|t| t.key.as_deref() == Some("node.kubernetes.io/unreachable"));
        assert_eq!(unreachable.map(|t| (t.effect.as_deref(), t.toleration_seconds)), Some((Some("NoExecute"), None)));
    }

    // A new node gets one.
    node(&client, "n4", json!({"role": "worker"}), json!([])).await?;
    daemon_pods_on(&pods, &sets, "agent", &["n1", "n2", "n3", "n4"]).await?;

    // A node labelled out of the selector loses its pod.
    nodes
        .patch("n2", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"role": "storage"}}})))
        .await?;
    daemon_pods_on(&pods, &sets, "agent", &["n1", "n3", "n4"]).await?;

    // A tainted node without a toleration gets none; one added with it (and no taint) does.
    let taint = json!([{"key": "dedicated", "value": "infra", "effect": "NoSchedule"}]);
    node(&client, "tainted", json!({"role": "worker"}), taint).await?;
    node(&client, "n5", json!({"role": "worker"}), json!([])).await?;
    let now = daemon_pods_on(&pods, &sets, "agent", &["n1", "n3", "n4", "n5"]).await?;
    assert!(!now.contains_key("tainted"));

    // A deleted node's pod goes (the pod garbage collector's work); a failed pod is replaced.
    nodes.delete("n4", &DeleteParams::default()).await?;
    let now = daemon_pods_on(&pods, &sets, "agent", &["n1", "n3", "n5"]).await?;
    let failed = now.get("n1").map(|p| name_of(p).to_string()).unwrap_or_default();
    pods.patch_status(&failed, &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Failed"}}))).await?;
    let replaced = eventually(30, "the failed pod replaced", || async {
        let now = daemon_pods_on(&pods, &sets, "agent", &["n1", "n3", "n5"]).await?;
        Ok(now.get("n1").filter(|p| name_of(p) != failed).cloned())
    })
    .await?;
    assert!(pods.get_opt(&failed).await?.is_none(), "the failed pod was deleted");
    assert_eq!(node_of(&replaced), "n1");

    let reasons = reasons(&client, "DaemonSet").await?;
    assert!(reasons.contains("SuccessfulCreate") && reasons.contains("SuccessfulDelete"), "{reasons:?}");
    Ok(())
}

/// Counts, at every state a watch of the set's pods goes through, the nodes without a Ready pod
/// that is not terminating; returns the most seen.
async fn watch_unavailable(
    pods: Api<Pod>,
    app: &str,
    nodes: usize,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<usize> {
    use kube::runtime::watcher::{self, Event as Watched};
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let unavailable = |current: &BTreeMap<String, Pod>| {
            let served: BTreeSet<&str> =
                current.values().filter(|p| !is_terminating(p) && is_ready(p)).map(node_of).collect();
            nodes.saturating_sub(served.len())
        };
        let mut most = 0;
        let mut current = BTreeMap::new();
        let mut listing = BTreeMap::new();
        let mut listed_tx = Some(listed_tx);
        let mut events = std::pin::pin!(watcher::watcher(pods, config));
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = stop.cancelled() => return most,
            };
            match event {
                None => return most,
                Some(Err(_)) => continue,
                Some(Ok(Watched::Init)) => {
                    listing.clear();
                    continue;
                }
                Some(Ok(Watched::InitApply(p))) => {
                    listing.insert(name_of(&p).to_string(), p);
                    continue;
                }
                Some(Ok(Watched::InitDone)) => {
                    current = std::mem::take(&mut listing);
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Some(Ok(Watched::Apply(p))) => {
                    current.insert(name_of(&p).to_string(), p);
                }
                Some(Ok(Watched::Delete(p))) => {
                    current.remove(name_of(&p));
                }
            }
            most = most.max(unavailable(&current));
        }
    });
    let _ = listed.await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemonset_rolling_update_replaces_pods_within_max_unavailable() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = manager(&c, &[controller_manager::controllers::daemonset::NAME]);
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let workers = ["w1", "w2", "w3", "w4", "w5"];
    for name in workers {
        node(&client, name, json!({}), json!([])).await?;
    }
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 2}});
    sets.create(&PostParams::default(), &daemon_set("web", "nginx:1", json!({}), strategy)?).await?;
    let first = daemon_pods_on(&pods, &sets, "web", &workers).await?;
    for p in first.values() {
        mark_ready(&pods, name_of(p)).await?;
    }
    eventually(30, "5 available", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        Ok((s.number_ready == 5 && s.number_available == Some(5)).then_some(()))
    })
    .await?;
    let old_hash =
        first.values().next().and_then(|p| label(p, "controller-revision-hash")).unwrap_or_default().to_string();

    // A kubelet finishes terminating pods but leaves readiness to the test.
    let stop = tokio_util::sync::CancellationToken::new();
    let watching = watch_unavailable(pods.clone(), "web", workers.len(), stop.clone()).await;
    let _kubelet = kubelet(pods.clone(), false);
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&image)).await?;

    let mut updated = BTreeSet::new();
    while updated.len() < workers.len() {
        // New pods appear on at most two nodes at a time; the rest keep their old, ready pods.
        let (new, old) = eventually(30, "the next new pods", || async {
            let list = pods.list(&ListParams::default().labels("app=web")).await?.items;
            let active: Vec<Pod> = list.into_iter().filter(|p| !is_terminating(p)).collect();
            let (new, old): (Vec<Pod>, Vec<Pod>) =
                active.into_iter().partition(|p| label(p, "controller-revision-hash") != Some(old_hash.as_str()));
            let fresh = new.iter().filter(|p| !is_ready(p)).count();
            let want = 2.min(workers.len() - updated.len());
            Ok((fresh == want && new.len() + old.len() == workers.len()).then_some((new, old)))
        })
        .await?;
        assert!(old.iter().all(is_ready), "old pods still serving");
        for p in new.iter().filter(|p| !is_ready(p)) {
            assert!(updated.insert(node_of(p).to_string()), "one new pod per node");
            mark_ready(&pods, name_of(p)).await?;
        }
    }
    eventually(30, "all updated and available", || async {
        let set = sets.get("web").await?;
        let s = set.status.unwrap_or_default();
        let done = s.updated_number_scheduled == Some(5)
            && s.number_available == Some(5)
            && s.number_unavailable == Some(0)
            && s.observed_generation == set.metadata.generation;
        Ok(done.then_some(()))
    })
    .await?;
    stop.cancel();
    let most = watching.await?;
    assert!(most <= 2, "at most maxUnavailable nodes without a ready pod; saw {most}");
    assert!(most >= 1, "the update went through unavailable nodes");
    Ok(())
}

fn stateful_set(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Result<StatefulSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "serviceName": "nginx",
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image, "volumeMounts": [{"name": "www", "mountPath": "/data"}]}]},
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "www"},
                "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
            }],
        },
    }))?)
}

/// The names of the set's pods, once exactly `want` exist (none terminating) and the status
/// has seen them all.
async fn stateful_pods(
    pods: &Api<Pod>,
    sets: &Api<StatefulSet>,
    name: &str,
    want: &[&str],
) -> Result<BTreeMap<String, Pod>> {
    let want: BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    eventually(30, &format!("statefulset {name} with {want:?}"), || async {
        let set = sets.get(name).await?;
        let status = set.status.clone().unwrap_or_default();
        let list = pods.list(&ListParams::default().labels(&format!("app={name}"))).await?.items;
        let by_name: BTreeMap<String, Pod> = list.into_iter().map(|p| (name_of(&p).to_string(), p)).collect();
        let names: BTreeSet<String> = by_name.keys().cloned().collect();
        let done = names == want
            && by_name.values().all(|p| !is_terminating(p))
            && usize::try_from(status.replicas).ok() == Some(want.len())
            && status.observed_generation == set.metadata.generation;
        Ok(done.then_some(by_name))
    })
    .await
}

/// Records the names of the pods labelled `app` as the watch sees them deleted, in order.
async fn record_deletions(
    pods: Api<Pod>,
    app: &str,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Vec<String>> {
    use kube::runtime::watcher::{self, Event as Watched};
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut deleted = Vec::new();
        let mut listed_tx = Some(listed_tx);
        let mut events = std::pin::pin!(watcher::watcher(pods, config));
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = stop.cancelled() => return deleted,
            };
            match event {
                None => return deleted,
                Some(Ok(Watched::InitDone)) => {
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Some(Ok(Watched::Delete(p))) => deleted.push(name_of(&p).to_string()),
                Some(_) => {}
            }
        }
    });
    let _ = listed.await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_creates_pods_in_order_and_keeps_their_claims_across_scaling() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = manager(&c, &[controller_manager::controllers::statefulset::NAME]);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &stateful_set("web", 3, "nginx:1", json!({}))?).await?;

    // Each pod only once its predecessor is Ready.
    let mut want = Vec::new();
    for ordinal in 0..3 {
        let name = format!("web-{ordinal}");
        want.push(name.clone());
        let wanted: Vec<&str> = want.iter().map(String::as_str).collect();
        let now = stateful_pods(&pods, &sets, "web", &wanted).await?;
        let pod = now.get(&name).cloned().unwrap_or_default();
        assert_eq!(label(&pod, "statefulset.kubernetes.io/pod-name"), Some(name.as_str()));
        assert_eq!(label(&pod, "apps.kubernetes.io/pod-index"), Some(ordinal.to_string().as_str()));
        let spec = pod.spec.clone().unwrap_or_default();
        assert_eq!((spec.hostname.as_deref(), spec.subdomain.as_deref()), (Some(name.as_str()), Some("nginx")));
        let claim =
            spec.volumes.iter().flatten().find(|v| v.name == "www").and_then(|v| v.persistent_volume_claim.clone());
        assert_eq!(claim.map(|c| c.claim_name), Some(format!("www-web-{ordinal}")));
        assert!(claims.get_opt(&format!("www-web-{ordinal}")).await?.is_some(), "the claim comes before the pod");
        mark_ready(&pods, &name).await?;
    }
    eventually(30, "3 ready", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        Ok((s.ready_replicas == Some(3) && s.available_replicas == Some(3)).then_some(()))
    })
    .await?;
    let claim_uids = |names: &'static [&'static str]| {
        let claims = claims.clone();
        async move {
            let mut uids = Vec::new();
            for name in names {
                uids.push(claims.get(name).await?.metadata.uid.unwrap_or_default());
            }
            anyhow::Ok(uids)
        }
    };
    let before = claim_uids(&["www-web-0", "www-web-1", "www-web-2"]).await?;

    // Down to 1, from the highest ordinal; the claims stay.
    let stop = tokio_util::sync::CancellationToken::new();
    let deletions = record_deletions(pods.clone(), "web", stop.clone()).await;
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 1}}))).await?;
    stateful_pods(&pods, &sets, "web", &["web-0"]).await?;
    stop.cancel();
    assert_eq!(deletions.await?, ["web-2", "web-1"]);
    assert_eq!(claim_uids(&["www-web-0", "www-web-1", "www-web-2"]).await?, before, "claims kept");

    // Back up to 3: the same claims are used again.
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await?;
    stateful_pods(&pods, &sets, "web", &["web-0", "web-1"]).await?;
    mark_ready(&pods, "web-1").await?;
    let now = stateful_pods(&pods, &sets, "web", &["web-0", "web-1", "web-2"]).await?;
    let claim = now
        .get("web-2")
        .and_then(|p| p.spec.as_ref()?.volumes.as_ref()?.iter().find_map(|v| v.persistent_volume_claim.clone()));
    assert_eq!(claim.map(|c| c.claim_name).as_deref(), Some("www-web-2"));
    assert_eq!(claim_uids(&["www-web-0", "www-web-1", "www-web-2"]).await?, before, "claims reused");

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let messages: BTreeSet<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("StatefulSet"))
        .filter_map(|e| e.message)
        .collect();
    assert!(messages.contains("create Pod web-0 in StatefulSet web successful"), "{messages:?}");
    assert!(messages.contains("delete Pod web-2 in StatefulSet web successful"), "{messages:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_rolling_update_with_a_partition_updates_only_the_ordinals_above_it() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = manager(&c, &[controller_manager::controllers::statefulset::NAME]);
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), "default");
    let _kubelet = kubelet(pods.clone(), true);
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
    sets.create(&PostParams::default(), &stateful_set("web", 3, "nginx:1", strategy)?).await?;
    let first = stateful_pods(&pods, &sets, "web", &["web-0", "web-1", "web-2"]).await?;
    let old = eventually(30, "3 ready at one revision", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        let done =
            s.ready_replicas == Some(3) && s.current_revision.is_some() && s.current_revision == s.update_revision;
        Ok(done.then(|| s.current_revision.unwrap_or_default()))
    })
    .await?;
    assert!(first.values().all(|p| label(p, "controller-revision-hash") == Some(old.as_str())));

    let stop = tokio_util::sync::CancellationToken::new();
    let deletions = record_deletions(pods.clone(), "web", stop.clone()).await;
    let image = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "nginx:2"}]}}}});
    sets.patch("web", &PatchParams::default(), &Patch::Merge(&image)).await?;
    let new = eventually(30, "web-2 and web-1 updated", || async {
        let set = sets.get("web").await?;
        let s = set.status.unwrap_or_default();
        let done = s.updated_replicas == Some(2)
            && s.ready_replicas == Some(3)
            && s.current_replicas == Some(1)
            && s.observed_generation == set.metadata.generation;
        Ok(done.then(|| s.update_revision.unwrap_or_default()))
    })
    .await?;
    assert_ne!(new, old);
    let now = stateful_pods(&pods, &sets, "web", &["web-0", "web-1", "web-2"]).await?;
    let revision = |name: &str| now.get(name).and_then(|p| label(p, "controller-revision-hash")).unwrap_or_default();
    assert_eq!((revision("web-0"), revision("web-1"), revision("web-2")), (old.as_str(), new.as_str(), new.as_str()));
    assert_eq!(
        now.get("web-0").and_then(|p| p.metadata.uid.clone()),
        first.get("web-0").and_then(|p| p.metadata.uid.clone()),
        "web-0 untouched"
    );
    let status = sets.get("web").await?.status.unwrap_or_default();
    assert_eq!(status.current_revision.as_deref(), Some(old.as_str()), "still current below the partition");
    stop.cancel();
    assert_eq!(deletions.await?, ["web-2", "web-1"], "highest ordinal first");

    let mut history: Vec<(String, i64)> = revisions
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .map(|r| (r.metadata.name.unwrap_or_default(), r.revision))
        .collect();
    history.sort_by_key(|(_, n)| *n);
    assert_eq!(history, [(old.clone(), 1), (new.clone(), 2)]);

    // Below the partition, a deleted pod comes back at the current revision.
    pods.delete("web-0", &DeleteParams::default()).await?;
    let again = eventually(30, "web-0 recreated", || async {
        let p = pods.get_opt("web-0").await?;
        Ok(p.filter(|p| p.metadata.uid != first.get("web-0").and_then(|f| f.metadata.uid.clone()) && is_ready(p)))
    })
    .await?;
    assert_eq!(label(&again, "controller-revision-hash"), Some(old.as_str()));

    // Partition 0: web-0 follows and the update revision becomes the current one.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await?;
    eventually(30, "all at the new revision", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        let done = s.updated_replicas == Some(3)
            && s.current_replicas == Some(3)
            && s.current_revision.as_deref() == Some(new.as_str());
        Ok(done.then_some(()))
    })
    .await?;
    Ok(())
}

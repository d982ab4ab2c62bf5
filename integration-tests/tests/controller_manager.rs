//! rk-controller-manager against a real API server on real etcd. No kubelets: the tests mark
//! pods Running and Ready through the API, as a kubelet would.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use futures::StreamExt;
use integration_tests::{Cluster, ControllerManager, eventually};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ReplicationController, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn replica_set(name: &str, replicas: i32, app: &str) -> Result<ReplicaSet> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": app}},
            "template": {
                "metadata": {"labels": {"app": app}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            },
        },
    }))?)
}

fn controlled_by<'a>(pods: &'a [Pod], owner_uid: &str) -> Vec<&'a Pod> {
    pods.iter()
        .filter(|p| {
            p.metadata.owner_references.iter().flatten().any(|r| r.uid == owner_uid && r.controller == Some(true))
        })
        .collect()
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

/// Waits until the set owns exactly `want` pods and its status says so; returns the pods.
async fn settled(pods: &Api<Pod>, sets: &Api<ReplicaSet>, name: &str, want: usize) -> Result<Vec<Pod>> {
    eventually(30, &format!("replicaset {name} at {want} pods"), || async {
        let set = sets.get(name).await?;
        let uid = set.metadata.uid.clone().unwrap_or_default();
        let all = pods.list(&ListParams::default()).await?.items;
        let owned: Vec<Pod> = controlled_by(&all, &uid).into_iter().cloned().collect();
        let status = set.status.unwrap_or_default();
        let done = owned.len() == want
            && usize::try_from(status.replicas).ok() == Some(want)
            && status.observed_generation == set.metadata.generation;
        Ok(done.then_some(owned))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replicaset_scales_adopts_releases_and_replaces_its_pods() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    sets.create(&PostParams::default(), &replica_set("web", 3, "web")?).await?;
    let three = settled(&pods, &sets, "web", 3).await?;
    for p in &three {
        assert!(p.metadata.name.as_deref().is_some_and(|n| n.starts_with("web-")), "{:?}", p.metadata.name);
        let owner = p.metadata.owner_references.iter().flatten().next().cloned().unwrap_or_default();
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.block_owner_deletion),
            ("ReplicaSet", "web", Some(true))
        );
        mark_ready(&pods, p.metadata.name.as_deref().unwrap_or_default()).await?;
    }
    eventually(30, "3 ready and available", || async {
        let s = sets.get("web").await?.status.unwrap_or_default();
        Ok((s.ready_replicas == Some(3) && s.available_replicas == Some(3) && s.fully_labeled_replicas == Some(3))
            .then_some(()))
    })
    .await?;

    // 3 → 10 → 2: the seven unready newcomers go first, then one of the ready ones.
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 10}}))).await?;
    settled(&pods, &sets, "web", 10).await?;
    sets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 2}}))).await?;
    let two = settled(&pods, &sets, "web", 2).await?;
    let first_names: BTreeSet<String> = three.iter().filter_map(|p| p.metadata.name.clone()).collect();
    assert!(two.iter().all(|p| p.metadata.name.as_ref().is_some_and(|n| first_names.contains(n))), "ready pods kept");

    // A deleted pod is replaced.
    let victim = two[0].metadata.name.clone().unwrap_or_default();
    pods.delete(&victim, &DeleteParams::default()).await?;
    let replaced = settled(&pods, &sets, "web", 2).await?;
    assert!(replaced.iter().all(|p| p.metadata.name.as_deref() != Some(victim.as_str())));

    // A matching orphan is adopted; the set, now one over, deletes one of its unready pods
    // (the orphan or the replacement: they tie but for their creation second).
    let orphan: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }))?;
    pods.create(&PostParams::default(), &orphan).await?;
    let set_uid = sets.get("web").await?.metadata.uid.unwrap_or_default();
    eventually(30, "the orphan adopted (and kept or deleted)", || async {
        let stray = pods.get_opt("stray").await?;
        Ok(stray.is_none_or(|p| !controlled_by(std::slice::from_ref(&p), &set_uid).is_empty()).then_some(()))
    })
    .await?;
    let current = settled(&pods, &sets, "web", 2).await?;

    // A pod relabelled out of the selector is released and replaced.
    let runaway = current[0].metadata.name.clone().unwrap_or_default();
    pods.patch(&runaway, &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})))
        .await?;
    settled(&pods, &sets, "web", 2).await?;
    let released = eventually(30, "the relabelled pod released", || async {
        let p = pods.get(&runaway).await?;
        Ok(p.metadata.owner_references.as_ref().is_none_or(Vec::is_empty).then_some(p))
    })
    .await?;
    assert_eq!(released.metadata.labels.and_then(|l| l.get("app").cloned()).as_deref(), Some("other"));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: BTreeSet<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("ReplicaSet"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(reasons.contains("SuccessfulCreate") && reasons.contains("SuccessfulDelete"), "{reasons:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_replicaset_gets_exactly_its_pods_across_a_controller_manager_crash() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    let mut first = ControllerManager::start(config.clone());
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // Every pod that ever exists, seen through a watch: an over-create would be deleted again
    // and leave the final count right, but not this one.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeSet::new()));
    let watching = {
        let (seen, pods) = (seen.clone(), pods.clone());
        tokio::spawn(async move {
            let mut events = std::pin::pin!(kube::runtime::watcher(pods, Default::default()));
            while let Some(event) = events.next().await {
                if let Ok(kube::runtime::watcher::Event::Apply(p) | kube::runtime::watcher::Event::InitApply(p)) = event
                    && let (Some(name), Ok(mut seen)) = (p.metadata.name, seen.lock())
                {
                    seen.insert(name);
                }
            }
        })
    };
    sets.create(&PostParams::default(), &replica_set("big", 300, "big")?).await?;
    eventually(30, "some pods created", || async {
        Ok((pods.list(&ListParams::default().limit(1)).await?.items.len() == 1).then_some(()))
    })
    .await?;
    first.kill();
    let _second = ControllerManager::start(config);
    settled(&pods, &sets, "big", 300).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    watching.abort();
    assert_eq!(pods.list(&ListParams::default()).await?.items.len(), 300);
    let ever = seen.lock().map(|s| s.len()).unwrap_or_default();
    assert_eq!(ever, 300, "pods that ever existed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replication_controller_keeps_its_pods_like_a_replica_set_and_kubectl_scales_it() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let rcs: Api<ReplicationController> = Api::namespaced(client.clone(), "default");
    // No selector: core/v1 defaults it from the template's labels.
    let rc: ReplicationController = serde_json::from_value(json!({
        "metadata": {"name": "legacy"},
        "spec": {"replicas": 3, "template": {
            "metadata": {"labels": {"app": "legacy"}},
            "spec": {"containers": [{"name": "app", "image": "rkube/pause:1"}]},
        }},
    }))?;
    let rc = rcs.create(&PostParams::default(), &rc).await?;
    let uid = rc.metadata.uid.clone().unwrap_or_default();
    let owned =
        |n: usize| {
            let (pods, uid) = (&pods, &uid);
            async move {
                let list = pods.list(&ListParams::default().labels("app=legacy")).await?.items;
                let mine: Vec<Pod> =
                    list.into_iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                        .filter(|p| {
                            p.metadata.owner_references.iter().flatten().any(|r| {
                                r.uid == *uid && r.kind == "ReplicationController" && r.controller == Some(true)
                            })
                        })
                        .collect();
                Ok((mine.len() == n).then_some(mine))
            }
        };
    let three = eventually(30, "3 pods of rc/legacy", || owned(3)).await?;
    for p in &three {
        mark_ready(&pods, p.metadata.name.as_deref().unwrap_or_default()).await?;
    }
    eventually(30, "status 3 ready", || async {
        let status = rcs.get("legacy").await?.status.unwrap_or_default();
        Ok((status.replicas == 3 && status.ready_replicas == Some(3) && status.available_replicas == Some(3))
            .then_some(()))
    })
    .await?;
    // A pod deleted by hand is replaced.
    let victim = three[0].metadata.name.clone().unwrap_or_default();
    pods.delete(&victim, &DeleteParams::default()).await?;
    eventually(30, "a replacement", || async {
        Ok(owned(3).await?.filter(|ps| ps.iter().all(|p| p.metadata.name.as_deref() != Some(victim.as_str()))))
    })
    .await?;
    let out = kubectl(&c.api.kubeconfig, &["scale", "rc", "legacy", "--replicas=1"])?;
    assert!(out.contains("replicationcontroller/legacy scaled"), "{out}");
    eventually(30, "1 pod of rc/legacy", || owned(1)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_namespace_gets_a_default_service_account_and_controllers_can_be_left_out() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    config.controllers = controller_manager::config::select_controllers(
        &["*".to_string(), "-replicaset".to_string()],
        &controller_manager::controllers::REGISTRY.iter().map(|e| e.name).collect::<Vec<_>>(),
        &controller_manager::controllers::defaults().collect::<Vec<_>>(),
    )?;
    let _cm = ControllerManager::start(config);
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "team"}}))?).await?;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let first = eventually(30, "team/default", || async { Ok(accounts.get_opt("default").await?) }).await?;
    accounts.delete("default", &DeleteParams::default()).await?;
    let again = eventually(30, "team/default again", || async {
        Ok(accounts.get_opt("default").await?.filter(|a| a.metadata.uid != first.metadata.uid))
    })
    .await?;
    assert_eq!(again.metadata.name.as_deref(), Some("default"));
    let system: Api<ServiceAccount> = Api::namespaced(client.clone(), "kube-system");
    eventually(30, "kube-system/default", || async { Ok(system.get_opt("default").await?) }).await?;

    // The ReplicaSet controller was left out: a set gets no pods.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "team");
    sets.create(&PostParams::default(), &replica_set("idle", 2, "idle")?).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "team");
    assert!(pods.list(&ListParams::default()).await?.items.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_acts_and_a_standby_takes_over() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let elected = |identity: &str| {
        let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
        let mut lease = daemon::leader::Config::new("kube-system", "rk-controller-manager", identity);
        lease.lease_duration = Duration::from_secs(4);
        lease.renew_deadline = Duration::from_secs(3);
        lease.retry_period = Duration::from_millis(500);
        config.leader_election = Some(lease);
        config
    };
    let mut managers = [("a", ControllerManager::start(elected("a"))), ("b", ControllerManager::start(elected("b")))];
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), "kube-system");
    let leader = eventually(30, "a leader", || async {
        Ok(leases.get_opt("rk-controller-manager").await?.and_then(|l| l.spec?.holder_identity))
    })
    .await?;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replica_set("ha", 5, "ha")?).await?;
    settled(&pods, &sets, "ha", 5).await?;

    for (name, manager) in &mut managers {
        if *name == leader {
            manager.kill();
        }
    }
    sets.patch("ha", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 8}}))).await?;
    settled(&pods, &sets, "ha", 8).await?;
    let now = leases.get("rk-controller-manager").await?.spec.and_then(|s| s.holder_identity);
    assert!(now.is_some_and(|n| n != leader), "the standby took the lease");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(pods.list(&ListParams::default()).await?.items.len(), 8);
    Ok(())
}

fn config_map(
    name: &str,
    owners: serde_json::Value,
    finalizers: serde_json::Value,
) -> Result<k8s_openapi::api::core::v1::ConfigMap> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name, "ownerReferences": owners, "finalizers": finalizers},
    }))?)
}

fn owned_by(cm: &k8s_openapi::api::core::v1::ConfigMap, block: bool) -> serde_json::Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "name": cm.metadata.name, "uid": cm.metadata.uid, "blockOwnerDeletion": block,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_garbage_collector_follows_background_foreground_and_orphan_deletion() -> Result<()> {
    use k8s_openapi::api::core::v1::ConfigMap;
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let gone = |name: &'static str| {
        let cms = cms.clone();
        async move {
            eventually(30, &format!("{name} gone"), || async { Ok(cms.get_opt(name).await?.is_none().then_some(())) })
                .await
        }
    };

    // Background (the default): the owner goes at once, its dependents after it.
    let owner = cms.create(&pp, &config_map("bg", json!([]), json!([]))?).await?;
    for name in ["bg-1", "bg-2"] {
        cms.create(&pp, &config_map(name, json!([owned_by(&owner, true)]), json!([]))?).await?;
    }
    // Two owners, one of them lasting: only the reference goes.
    let lasting = cms.create(&pp, &config_map("lasting", json!([]), json!([]))?).await?;
    cms.create(&pp, &config_map("shared", json!([owned_by(&owner, false), owned_by(&lasting, false)]), json!([]))?)
        .await?;
    cms.delete("bg", &DeleteParams::default()).await?;
    gone("bg-1").await?;
    gone("bg-2").await?;
    let shared = eventually(30, "shared keeps one owner", || async {
        let cm = cms.get("shared").await?;
        Ok((cm.metadata.owner_references.as_ref().map(Vec::len) == Some(1)).then_some(cm))
    })
    .await?;
    assert_eq!(shared.metadata.owner_references.unwrap_or_default()[0].name, "lasting");

    // An owner that never existed.
    cms.create(
        &pp,
        &config_map(
            "dangling",
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"}]),
            json!([]),
        )?,
    )
    .await?;
    gone("dangling").await?;

    // Foreground: the owner waits, marked, until its blocking dependent is gone.
    let owner = cms.create(&pp, &config_map("fg", json!([]), json!([]))?).await?;
    cms.create(&pp, &config_map("fg-child", json!([owned_by(&owner, true)]), json!(["test.rkube.io/hold"]))?).await?;
    cms.delete("fg", &DeleteParams::foreground()).await?;
    eventually(30, "fg-child marked for deletion", || async {
        Ok(cms.get("fg-child").await?.metadata.deletion_timestamp.map(|_| ()))
    })
    .await?;
    let waiting = cms.get("fg").await?;
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert_eq!(waiting.metadata.finalizers, Some(vec!["foregroundDeletion".to_string()]));
    cms.patch("fg-child", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await?;
    gone("fg-child").await?;
    gone("fg").await?;

    // Orphan: the owner goes, its dependents stay and forget it.
    let owner = cms.create(&pp, &config_map("or", json!([]), json!([]))?).await?;
    cms.create(&pp, &config_map("or-child", json!([owned_by(&owner, true)]), json!([]))?).await?;
    cms.delete("or", &DeleteParams::orphan()).await?;
    gone("or").await?;
    let child = cms.get("or-child").await?;
    assert!(child.metadata.owner_references.is_none_or(|r| r.is_empty()));

    // A deleted ReplicaSet's pods follow it.
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    sets.create(&pp, &replica_set("short", 3, "short")?).await?;
    settled(&pods, &sets, "short", 3).await?;
    sets.delete("short", &DeleteParams::default()).await?;
    eventually(30, "the set's pods gone", || async {
        Ok(pods.list(&ListParams::default()).await?.items.is_empty().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_namespace_empties_it_and_then_removes_it() -> Result<()> {
    use k8s_openapi::api::core::v1::{ConfigMap, Secret};
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "scratch"}}))?)
        .await?;
    let pp = PostParams::default();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "scratch");
    for i in 0..5 {
        cms.create(&pp, &config_map(&format!("cm-{i}"), json!([]), json!([]))?).await?;
    }
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "scratch");
    secrets.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}))?).await?;
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "scratch");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "scratch");
    sets.create(&pp, &replica_set("web", 2, "web")?).await?;
    settled(&pods, &sets, "web", 2).await?;
    // Content that takes a while to go: the namespace waits for it.
    cms.create(&pp, &config_map("held", json!([]), json!(["test.rkube.io/hold"]))?).await?;

    namespaces.delete("scratch", &DeleteParams::default()).await?;
    eventually(30, "everything but the held config map gone", || async {
        let left = cms.list(&ListParams::default()).await?.items.len();
        let pods_left = pods.list(&ListParams::default()).await?.items.len();
        let sets_left = sets.list(&ListParams::default()).await?.items.len();
        let secrets_left = secrets.list(&ListParams::default()).await?.items.len();
        Ok((left == 1 && pods_left + sets_left + secrets_left == 0).then_some(()))
    })
    .await?;
    let terminating = namespaces.get("scratch").await?;
    assert_eq!(terminating.status.and_then(|s| s.phase).as_deref(), Some("Terminating"));
    cms.patch("held", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await?;
    eventually(30, "the namespace gone", || async { Ok(namespaces.get_opt("scratch").await?.is_none().then_some(())) })
        .await?;
    Ok(())
}

/// A pod as a kubelet on `node` would report it: Running with `ip`, Ready or not.
async fn running_pod(pods: &Api<Pod>, name: &str, app: &str, ip: &str, ready: bool) -> Result<()> {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": "node-1", "containers": [{"name": "c", "image": "busybox", "ports": [{"name": "http", "containerPort": 8080}]}]},
    }))?;
    pods.create(&PostParams::default(), &pod).await?;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {
        "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
        "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }, "lastTransitionTime": now}],
    }});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_and_endpoint_slices_follow_pods_readiness_and_termination() -> Result<()> {
    use k8s_openapi::api::core::v1::{Endpoints, Service};
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    // The pods' node exists (the pod garbage collector removes pods of nodes that do not).
    live_node(&client, "node-1", Some("10.244.0.0/24")).await?;
    running_pod(&pods, "a", "web", "10.244.0.10", true).await?;
    running_pod(&pods, "b", "web", "10.244.0.11", false).await?;
    running_pod(&pods, "other", "db", "10.244.0.12", true).await?;
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
            }))?,
        )
        .await?;

    let ips = |addresses: Option<Vec<k8s_openapi::api::core::v1::EndpointAddress>>| -> Vec<String> {
        addresses.into_iter().flatten().map(|a| a.ip).collect()
    };
    let first = eventually(30, "endpoints of web", || async {
        Ok(endpoints.get_opt("web").await?.filter(|e| e.subsets.as_ref().is_some_and(|s| !s.is_empty())))
    })
    .await?;
    let subset = first.subsets.unwrap_or_default().remove(0);
    assert_eq!(subset.ports.unwrap_or_default()[0].port, 8080, "the named target port resolved");
    assert_eq!(ips(subset.addresses), ["10.244.0.10"]);
    assert_eq!(ips(subset.not_ready_addresses), ["10.244.0.11"]);

    let slice_of_web = ListParams::default().labels("kubernetes.io/service-name=web");
    let slice = eventually(30, "a slice of web with both pods", || async {
        Ok(slices.list(&slice_of_web).await?.items.into_iter().find(|s| s.endpoints.len() == 2))
    })
    .await?;
    assert_eq!(slice.metadata.owner_references.unwrap_or_default()[0].kind, "Service");
    // The change it stems from, for proxies' network-programming latency: for a new Service, its
    // creation (the pods were ready before).
    let svc_created = services.get("web").await?.metadata.creation_timestamp.map(|t| t.0.to_string());
    let trigger =
        slice.metadata.annotations.unwrap_or_default().remove("endpoints.kubernetes.io/last-change-trigger-time");
    assert_eq!(trigger, svc_created);
    let ready: Vec<(String, Option<bool>)> =
        slice.endpoints.iter().map(|e| (e.addresses[0].clone(), e.conditions.as_ref().and_then(|c| c.ready))).collect();
    assert_eq!(ready, [("10.244.0.10".to_string(), Some(true)), ("10.244.0.11".to_string(), Some(false))]);

    // Pod a stops gracefully (it is bound to a node, so it stays, marked, until its kubelet is
    // done): Endpoints drop it, the slice keeps it as terminating.
    pods.delete("a", &DeleteParams::default()).await?;
    eventually(30, "a gone from endpoints", || async {
        let e = endpoints.get("web").await?;
        let all: Vec<String> = e
            .subsets
            .unwrap_or_default()
            .into_iter()
            .flat_map(|s| ips(s.addresses).into_iter().chain(ips(s.not_ready_addresses)))
            .collect();
        Ok((all == ["10.244.0.11"]).then_some(()))
    })
    .await?;
    eventually(30, "a terminating in the slice", || async {
        let items = slices.list(&slice_of_web).await?.items;
        Ok(items
            .iter()
            .flat_map(|s| s.endpoints.iter())
            .any(|e| e.addresses[0] == "10.244.0.10" && e.conditions.as_ref().and_then(|c| c.terminating) == Some(true))
            .then_some(()))
    })
    .await?;

    // The Service goes: its Endpoints are deleted, its slices collected.
    services.delete("web", &DeleteParams::default()).await?;
    eventually(30, "endpoints and slices gone", || async {
        let e = endpoints.get_opt("web").await?;
        let s = slices.list(&slice_of_web).await?.items;
        Ok((e.is_none() && s.is_empty()).then_some(()))
    })
    .await?;
    Ok(())
}

// ---- Deployments -------------------------------------------------------------------------------

fn deployment(name: &str, replicas: i32, image: &str, strategy: serde_json::Value) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
        },
    }))?)
}

fn is_ready(pod: &Pod) -> bool {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions.is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    pod.metadata.deletion_timestamp.is_none() && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Stands in for the kubelets: marks every pod Ready soon after it appears, until dropped.
struct Kubelets(tokio::task::JoinHandle<()>);

impl Drop for Kubelets {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn keep_marking_ready(pods: Api<Pod>) -> Kubelets {
    Kubelets(tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list.items.iter().filter(|p| is_active(p) && !is_ready(p)) {
                    // A pod deleted meanwhile is no error.
                    let _ = mark_ready(&pods, p.metadata.name.as_deref().unwrap_or_default()).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }))
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn spec_replicas(set: &ReplicaSet) -> i32 {
    set.spec.as_ref().and_then(|s| s.replicas).unwrap_or_default()
}

fn image_of(set: &ReplicaSet) -> Option<String> {
    set.spec.as_ref()?.template.as_ref()?.spec.as_ref()?.containers.first()?.image.clone()
}

/// Waits until the rollout is done as `kubectl rollout status` sees it (spec observed, every
/// replica updated and available) and only one set has replicas or pods; returns the
/// Deployment and its sets, the new one first.
async fn rolled_out(
    deployments: &Api<Deployment>,
    sets: &Api<ReplicaSet>,
    name: &str,
    replicas: i32,
) -> Result<(Deployment, Vec<ReplicaSet>)> {
    eventually(60, &format!("deployment {name} rolled out at {replicas}"), || async {
        let d = deployments.get(name).await?;
        let s = d.status.clone().unwrap_or_default();
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let mut owned: Vec<ReplicaSet> = sets
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|rs| {
                rs.metadata.owner_references.iter().flatten().any(|r| r.uid == uid && r.controller == Some(true))
            })
            .collect();
        owned.sort_by_key(|rs| std::cmp::Reverse(spec_replicas(rs)));
        let busy =
            owned.iter().filter(|rs| spec_replicas(rs) > 0 || rs.status.as_ref().is_some_and(|s| s.replicas > 0));
        let n = |v: Option<i32>| v.unwrap_or_default();
        let done = s.observed_generation >= d.metadata.generation
            && n(s.updated_replicas) == replicas
            && n(s.replicas) == replicas
            && n(s.available_replicas) == replicas
            && busy.count() <= 1;
        Ok(done.then_some((d, owned)))
    })
    .await
}

/// Waits for the Deployment's ScalingReplicaSet events to include every one of `want`.
async fn scaling_events(client: &kube::Client, name: &str, want: &[String]) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(30, &format!("events {want:?}"), || async {
        let messages: Vec<String> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|e| e.involved_object.kind.as_deref() == Some("Deployment"))
            .filter(|e| e.involved_object.name.as_deref() == Some(name))
            .filter(|e| e.reason.as_deref() == Some("ScalingReplicaSet"))
            .filter_map(|e| e.message)
            .collect();
        Ok(want.iter().all(|w| messages.contains(w)).then_some(messages))
    })
    .await
}

/// Changes the Deployment with `edit`, retrying on conflicts with the controller's writes.
async fn update_deployment(deployments: &Api<Deployment>, name: &str, edit: impl Fn(&mut Deployment)) -> Result<()> {
    eventually(30, &format!("deployment {name} updated"), || async {
        let mut d = deployments.get(name).await?;
        edit(&mut d);
        match deployments.replace(name, &PostParams::default(), &d).await {
            Ok(_) => Ok(Some(())),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(None),
            Err(e) => Err(e.into()),
        }
    })
    .await
}

fn set_image(deployments: &Api<Deployment>, name: &str, image: &str) -> impl Future<Output = Result<Deployment>> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    let (deployments, name) = (deployments.clone(), name.to_string());
    async move { Ok(deployments.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_makes_one_replicaset_and_scales_it_from_3_to_10_to_2() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kubelets = keep_marking_ready(pods.clone());

    deployments.create(&PostParams::default(), &deployment("web", 3, "busybox:1", json!({}))?).await?;
    let (d, owned) = rolled_out(&deployments, &sets, "web", 3).await?;
    assert_eq!(owned.len(), 1);
    let set = &owned[0];
    let set_name = set.metadata.name.clone().unwrap_or_default();
    let hash = set.metadata.labels.as_ref().and_then(|l| l.get("pod-template-hash")).cloned().unwrap_or_default();
    assert!(!hash.is_empty() && set_name == format!("web-{hash}"), "{set_name} / {hash}");
    let spec = set.spec.clone().unwrap_or_default();
    let selected = spec.selector.match_labels.unwrap_or_default();
    assert_eq!(selected.get("pod-template-hash"), Some(&hash));
    let template_labels = spec.template.and_then(|t| t.metadata).and_then(|m| m.labels).unwrap_or_default();
    assert_eq!(template_labels.get("pod-template-hash"), Some(&hash));
    let owner = set.metadata.owner_references.iter().flatten().next().cloned().unwrap_or_default();
    assert_eq!((owner.kind.as_str(), owner.name.as_str(), owner.controller), ("Deployment", "web", Some(true)));
    assert_eq!(annotation(&set.metadata, "deployment.kubernetes.io/revision"), Some("1"));
    assert_eq!(annotation(&set.metadata, "deployment.kubernetes.io/desired-replicas"), Some("3"));
    assert_eq!(annotation(&set.metadata, "deployment.kubernetes.io/max-replicas"), Some("4"), "25% surge of 3 is 1");
    let conditions = d.status.and_then(|s| s.conditions).unwrap_or_default();
    let condition = |type_: &str| {
        let c = conditions.iter().find(|c| c.type_ == type_).cloned().unwrap_or_default();
        (c.status, c.reason.unwrap_or_default(), c.message.unwrap_or_default())
    };
    assert_eq!(
        condition("Available"),
        ("True".into(), "MinimumReplicasAvailable".into(), "Deployment has minimum availability.".into())
    );
    assert_eq!(
        condition("Progressing"),
        (
            "True".into(),
            "NewReplicaSetAvailable".into(),
            format!("ReplicaSet \"{set_name}\" has successfully progressed.")
        )
    );
    eventually(30, "the deployment's revision", || async {
        let d = deployments.get("web").await?;
        Ok((annotation(&d.metadata, "deployment.kubernetes.io/revision") == Some("1")).then_some(()))
    })
    .await?;

    for (replicas, max) in [(10, "13"), (2, "3")] {
        deployments
            .patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": replicas}})))
            .await?;
        let (_, owned) = rolled_out(&deployments, &sets, "web", replicas).await?;
        assert_eq!(owned.len(), 1, "scaling makes no new set");
        assert_eq!(owned[0].metadata.name.as_deref(), Some(set_name.as_str()));
        assert_eq!(spec_replicas(&owned[0]), replicas);
        let desired = replicas.to_string();
        assert_eq!(annotation(&owned[0].metadata, "deployment.kubernetes.io/desired-replicas"), Some(desired.as_str()));
        assert_eq!(annotation(&owned[0].metadata, "deployment.kubernetes.io/max-replicas"), Some(max));
        let want = usize::try_from(replicas)?;
        eventually(30, &format!("{replicas} pods"), || async {
            Ok((pods.list(&ListParams::default()).await?.items.len() == want).then_some(()))
        })
        .await?;
    }
    scaling_events(
        &client,
        "web",
        &[
            format!("Scaled up replica set {set_name} from 0 to 3"),
            format!("Scaled up replica set {set_name} from 3 to 10"),
            format!("Scaled down replica set {set_name} from 10 to 2"),
        ],
    )
    .await?;
    Ok(())
}

/// What a watcher of the pods saw during a rollout, state by state.
#[derive(Debug, Default)]
struct Sampled {
    states: usize,
    most_active: usize,
    fewest_ready: Option<usize>,
    /// States with active pods of more than one set.
    mixed: usize,
}

impl Sampled {
    fn record(&mut self, pods: &std::collections::BTreeMap<String, Pod>) {
        let active: Vec<&Pod> = pods.values().filter(|p| is_active(p)).collect();
        let ready = active.iter().filter(|p| is_ready(p)).count();
        let owners: BTreeSet<&str> = active
            .iter()
            .filter_map(|p| p.metadata.owner_references.as_ref()?.first().map(|r| r.name.as_str()))
            .collect();
        self.states += 1;
        self.most_active = self.most_active.max(active.len());
        self.fewest_ready = Some(self.fewest_ready.map_or(ready, |f| f.min(ready)));
        self.mixed += usize::from(owners.len() > 1);
    }
}

/// Watches the pods labelled `app` until `stop`, checking every state the API server went
/// through (a watch delivers each change in order, so nothing falls between two polls).
async fn watch_pods(
    pods: Api<Pod>,
    app: &str,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<Sampled> {
    use kube::runtime::watcher::{self, Event as Watched};
    let config = watcher::Config::default().labels(&format!("app={app}"));
    let (listed_tx, listed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let mut seen = Sampled::default();
        let mut current = std::collections::BTreeMap::new();
        let mut listing = std::collections::BTreeMap::new();
        let mut listed_tx = Some(listed_tx);
        let mut events = std::pin::pin!(watcher::watcher(pods, config));
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                () = stop.cancelled() => return seen,
            };
            match event {
                None => return seen,
                Some(Err(_)) => {}
                Some(Ok(Watched::Init)) => listing.clear(),
                Some(Ok(Watched::InitApply(p))) => {
                    listing.insert(p.metadata.name.clone().unwrap_or_default(), p);
                }
                Some(Ok(Watched::InitDone)) => {
                    current = std::mem::take(&mut listing);
                    seen.record(&current);
                    if let Some(tx) = listed_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Some(Ok(Watched::Apply(p))) => {
                    current.insert(p.metadata.name.clone().unwrap_or_default(), p);
                    seen.record(&current);
                }
                Some(Ok(Watched::Delete(p))) => {
                    current.remove(p.metadata.name.as_deref().unwrap_or_default());
                    seen.record(&current);
                }
            }
        }
    });
    // Changes start only once the watch has its first list.
    let _ = listed.await;
    task
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_update_stays_within_max_surge_and_max_unavailable() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kubelets = keep_marking_ready(pods.clone());

    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    deployments.create(&PostParams::default(), &deployment("roll", 4, "busybox:1", strategy)?).await?;
    let (_, first) = rolled_out(&deployments, &sets, "roll", 4).await?;
    let old_name = first[0].metadata.name.clone().unwrap_or_default();

    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = watch_pods(pods.clone(), "roll", stop.clone()).await;
    set_image(&deployments, "roll", "busybox:2").await?;
    let (_, owned) = rolled_out(&deployments, &sets, "roll", 4).await?;
    stop.cancel();
    let seen = sampler.await?;

    assert_eq!(owned.len(), 2);
    let (new, old) = (&owned[0], &owned[1]);
    assert_eq!(old.metadata.name.as_deref(), Some(old_name.as_str()));
    assert_eq!((spec_replicas(new), spec_replicas(old)), (4, 0));
    assert_eq!(image_of(new).as_deref(), Some("busybox:2"));
    assert!(seen.states >= 10, "{seen:?}");
    assert!(seen.most_active <= 5, "more than replicas + maxSurge pods: {seen:?}");
    assert!(seen.fewest_ready.is_some_and(|r| r >= 3), "fewer than replicas - maxUnavailable ready: {seen:?}");
    let new_name = new.metadata.name.clone().unwrap_or_default();
    let messages = scaling_events(&client, "roll", &[format!("Scaled up replica set {new_name} from 0 to 1")]).await?;
    let prefix = format!("Scaled down replica set {old_name} from ");
    eventually(30, "the old set's last scale-down event", || async {
        let messages = scaling_events(&client, "roll", &[]).await?;
        Ok(messages.iter().any(|m| m.starts_with(&prefix) && m.ends_with(" to 0")).then_some(()))
    })
    .await
    .map_err(|e| e.context(format!("{messages:?}")))?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revisions_count_up_and_copying_an_old_template_back_makes_its_set_the_newest_revision() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kubelets = keep_marking_ready(pods.clone());
    let revision_of =
        |meta: &kube::api::ObjectMeta| annotation(meta, "deployment.kubernetes.io/revision").map(str::to_string);
    let deployment_revision = |want: &'static str| {
        let deployments = deployments.clone();
        async move {
            eventually(30, &format!("the deployment at revision {want}"), || async {
                let d = deployments.get("rev").await?;
                Ok((annotation(&d.metadata, "deployment.kubernetes.io/revision") == Some(want)).then_some(()))
            })
            .await
        }
    };

    deployments.create(&PostParams::default(), &deployment("rev", 2, "busybox:1", json!({}))?).await?;
    let (_, owned) = rolled_out(&deployments, &sets, "rev", 2).await?;
    let first = owned[0].metadata.name.clone().unwrap_or_default();
    assert_eq!(revision_of(&owned[0].metadata).as_deref(), Some("1"));
    deployment_revision("1").await?;

    set_image(&deployments, "rev", "busybox:2").await?;
    let (_, owned) = rolled_out(&deployments, &sets, "rev", 2).await?;
    assert_eq!(owned.len(), 2);
    assert_eq!(owned[1].metadata.name.as_deref(), Some(first.as_str()));
    let second = owned[0].metadata.name.clone().unwrap_or_default();
    assert_eq!(
        (revision_of(&owned[0].metadata).as_deref(), revision_of(&owned[1].metadata).as_deref()),
        (Some("2"), Some("1"))
    );
    deployment_revision("2").await?;

    // What `kubectl rollout undo` does: the first set's template, without its hash, goes back
    // into the Deployment.
    let mut template = sets.get(&first).await?.spec.and_then(|s| s.template).unwrap_or_default();
    if let Some(labels) = template.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove("pod-template-hash");
    }
    update_deployment(&deployments, "rev", |d| {
        if let Some(spec) = d.spec.as_mut() {
            spec.template = template.clone();
        }
    })
    .await?;
    let (_, owned) = rolled_out(&deployments, &sets, "rev", 2).await?;
    assert_eq!(owned.len(), 2, "no third set");
    let (now_new, now_old) = (&owned[0], &owned[1]);
    assert_eq!(now_new.metadata.name.as_deref(), Some(first.as_str()));
    assert_eq!(now_old.metadata.name.as_deref(), Some(second.as_str()));
    assert_eq!(image_of(now_new).as_deref(), Some("busybox:1"));
    assert_eq!(revision_of(&now_new.metadata).as_deref(), Some("3"));
    assert_eq!(annotation(&now_new.metadata, "deployment.kubernetes.io/revision-history"), Some("1"));
    assert_eq!(revision_of(&now_old.metadata).as_deref(), Some("2"));
    deployment_revision("3").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_deployment_scales_but_rolls_out_only_once_resumed() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kubelets = keep_marking_ready(pods.clone());
    let progressing = |d: &Deployment| {
        let conditions = d.status.as_ref().and_then(|s| s.conditions.as_ref());
        conditions.and_then(|cs| cs.iter().find(|c| c.type_ == "Progressing")).and_then(|c| c.reason.clone())
    };

    deployments.create(&PostParams::default(), &deployment("paused", 2, "busybox:1", json!({}))?).await?;
    let (_, owned) = rolled_out(&deployments, &sets, "paused", 2).await?;
    let first = owned[0].metadata.name.clone().unwrap_or_default();

    let pause = |paused: bool| Patch::Merge(json!({"spec": {"paused": paused}}));
    deployments.patch("paused", &PatchParams::default(), &pause(true)).await?;
    set_image(&deployments, "paused", "busybox:2").await?;
    deployments.patch("paused", &PatchParams::default(), &Patch::Merge(json!({"spec": {"replicas": 3}}))).await?;
    // Once the last change is observed, the controller has decided on the new template too.
    let d = eventually(30, "the paused deployment observed", || async {
        let d = deployments.get("paused").await?;
        let observed = d.status.as_ref().and_then(|s| s.observed_generation) == d.metadata.generation;
        Ok((observed && progressing(&d).as_deref() == Some("DeploymentPaused")).then_some(d))
    })
    .await?;
    let condition = d.status.clone().and_then(|s| s.conditions).unwrap_or_default();
    let paused = condition.iter().find(|c| c.type_ == "Progressing").cloned().unwrap_or_default();
    assert_eq!((paused.status.as_str(), paused.message.as_deref()), ("Unknown", Some("Deployment is paused")));
    // Scaled, but no new set: the old one has all 3 pods, none of them updated.
    let status = d.status.clone().unwrap_or_default();
    assert_eq!(status.updated_replicas.unwrap_or_default(), 0);
    let all = sets.list(&ListParams::default()).await?.items;
    assert_eq!(all.len(), 1, "no rollout while paused");
    assert_eq!((all[0].metadata.name.as_deref(), spec_replicas(&all[0])), (Some(first.as_str()), 3), "scaled");
    assert_eq!(image_of(&all[0]).as_deref(), Some("busybox:1"));
    eventually(30, "3 pods of the old set available", || async {
        let s = deployments.get("paused").await?.status.unwrap_or_default();
        Ok((s.available_replicas == Some(3) && s.replicas == Some(3)).then_some(()))
    })
    .await?;

    deployments.patch("paused", &PatchParams::default(), &pause(false)).await?;
    let (_, owned) = rolled_out(&deployments, &sets, "paused", 3).await?;
    assert_eq!(owned.len(), 2);
    assert_eq!(image_of(&owned[0]).as_deref(), Some("busybox:2"));
    assert_eq!((spec_replicas(&owned[0]), spec_replicas(&owned[1])), (3, 0));
    eventually(30, "the rollout reported complete", || async {
        let d = deployments.get("paused").await?;
        Ok((progressing(&d).as_deref() == Some("NewReplicaSetAvailable")).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreate_deployment_removes_every_old_pod_before_making_new_ones() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _kubelets = keep_marking_ready(pods.clone());

    deployments
        .create(&PostParams::default(), &deployment("rec", 3, "busybox:1", json!({"type": "Recreate"}))?)
        .await?;
    let (_, owned) = rolled_out(&deployments, &sets, "rec", 3).await?;
    let old_name = owned[0].metadata.name.clone().unwrap_or_default();
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = watch_pods(pods.clone(), "rec", stop.clone()).await;
    set_image(&deployments, "rec", "busybox:2").await?;
    let (_, owned) = rolled_out(&deployments, &sets, "rec", 3).await?;
    stop.cancel();
    let seen = sampler.await?;
    assert!(seen.states >= 6 && seen.mixed == 0, "old and new pods at once: {seen:?}");
    assert!(seen.most_active <= 3, "{seen:?}");
    let new_name = owned[0].metadata.name.clone().unwrap_or_default();
    scaling_events(
        &client,
        "rec",
        &[
            format!("Scaled down replica set {old_name} from 3 to 0"),
            format!("Scaled up replica set {new_name} from 0 to 3"),
        ],
    )
    .await?;
    Ok(())
}

/// A Node as a kubelet registers it (Ready, with capacity), and its Lease.
async fn live_node(client: &kube::Client, name: &str, pod_cidr: Option<&str>) -> Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let nodes: Api<Node> = Api::all(client.clone());
    let mut node = json!({"metadata": {"name": name}, "spec": {}});
    if let Some(cidr) = pod_cidr {
        node["spec"] = json!({"podCIDR": cidr, "podCIDRs": [cidr]});
    }
    nodes.create(&PostParams::default(), &serde_json::from_value(node)?).await?;
    let status = json!({"status": {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "lastHeartbeatTime": now, "lastTransitionTime": now}],
    }});
    nodes.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    renew_lease(client, name).await
}

async fn renew_lease(client: &kube::Client, name: &str) -> Result<()> {
    use k8s_openapi::api::coordination::v1::Lease;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let lease = json!({"metadata": {"name": name}, "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now}});
    if leases.get_opt(name).await?.is_some() {
        leases.patch(name, &PatchParams::default(), &Patch::Merge(&lease)).await?;
    } else {
        leases.create(&PostParams::default(), &serde_json::from_value(lease)?).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_pod_cidrs_and_a_silent_node_is_tainted_and_emptied() -> Result<()> {
    use k8s_openapi::api::core::v1::Node;
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    config.node_monitor_grace_period = Duration::from_secs(3);
    let _cm = ControllerManager::start(config);
    let _scheduler = integration_tests::Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let nodes: Api<Node> = Api::all(client.clone());

    // IPAM: a CIDR a kubelet registered with is taken; the others get the next free ones.
    live_node(&client, "registered", Some("10.244.0.0/24")).await?;
    live_node(&client, "alive", None).await?;
    live_node(&client, "silent", None).await?;
    let mut cidrs = BTreeSet::new();
    for name in ["alive", "silent"] {
        let cidr = eventually(30, &format!("{name} has a pod CIDR"), || async {
            Ok(nodes.get(name).await?.spec.and_then(|s| s.pod_cidr))
        })
        .await?;
        cidrs.insert(cidr);
    }
    assert_eq!(cidrs, BTreeSet::from(["10.244.1.0/24".to_string(), "10.244.2.0/24".to_string()]));

    // Keep two nodes' leases fresh; "silent" falls silent.
    let renewing = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                for name in ["registered", "alive"] {
                    let _ = renew_lease(&client, name).await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    // Pods pinned to the silent node: one tolerating it for 2 s, one for the default 300 s.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, tolerations) in [
        (
            "short",
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 2}]),
        ),
        ("patient", json!([])),
    ] {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"nodeName": "silent", "tolerations": tolerations, "containers": [{"name": "c", "image": "busybox"}]},
        }))?;
        pods.create(&PostParams::default(), &pod).await?;
    }
    // And a ReplicaSet whose pods prefer the silent node and give way 1 s after it is tainted.
    let mut set = replica_set("spread", 4, "spread")?;
    if let Some(spec) = set.spec.as_mut().and_then(|s| s.template.as_mut()).and_then(|t| t.spec.as_mut()) {
        spec.tolerations = Some(serde_json::from_value(
            json!([{"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1}]),
        )?);
        spec.affinity = Some(serde_json::from_value(
            json!({"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "preference": {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["silent"]}]}},
            ]}}),
        )?);
    }
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &set).await?;
    let first: Vec<String> = eventually(30, "the set's pods on the silent node", || async {
        let list = pods.list(&ListParams::default().labels("app=spread")).await?.items;
        let on_silent =
            list.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("silent")).count();
        Ok((on_silent == 4).then(|| list.into_iter().filter_map(|p| p.metadata.name).collect()))
    })
    .await?;

    let tainted = eventually(30, "silent node Unknown and tainted", || async {
        let node = nodes.get("silent").await?;
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|c| c.iter().find(|c| c.type_ == "Ready").cloned());
        let taints = node.spec.and_then(|s| s.taints).unwrap_or_default();
        Ok((ready.is_some_and(|r| r.status == "Unknown") && taints.len() == 2).then_some(taints))
    })
    .await?;
    assert!(tainted.iter().all(|t| t.key == "node.kubernetes.io/unreachable"), "{tainted:?}");
    assert!(nodes.get("alive").await?.spec.and_then(|s| s.taints).is_none_or(|t| t.is_empty()));

    eventually(30, "the short-tolerance pod evicted", || async {
        Ok(pods.get("short").await?.metadata.deletion_timestamp.map(|_| ()))
    })
    .await?;
    assert!(pods.get("patient").await?.metadata.deletion_timestamp.is_none(), "300 s not over");
    // The set's pods on the silent node were evicted and replaced on live nodes.
    eventually(60, "the set's 4 live pods all on live nodes", || async {
        let live: Vec<Pod> = pods
            .list(&ListParams::default().labels("app=spread"))
            .await?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        let on_live =
            live.iter().filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()).is_some_and(|n| n != "silent"));
        Ok((live.len() == 4 && on_live.count() == 4).then_some(()))
    })
    .await?;
    for name in &first {
        let evicted = pods.get_opt(name).await?;
        assert!(evicted.is_none_or(|p| p.metadata.deletion_timestamp.is_some()), "{name} evicted");
    }

    // The node goes for good: its pods go with it, at once.
    nodes.delete("silent", &DeleteParams::default()).await?;
    eventually(30, "the silent node's pods deleted", || async {
        let left = pods
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some("silent"))
            .count();
        Ok((left == 0).then_some(()))
    })
    .await?;
    renewing.abort();
    Ok(())
}

/// Runs the stock kubectl (without blocking the runtime that serves the API); its stdout.
fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output()
    })?;
    if !out.status.success() {
        bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The revisions `kubectl rollout history` lists.
fn history(kubeconfig: &std::path::Path) -> Result<Vec<u32>> {
    let out = kubectl(kubeconfig, &["rollout", "history", "deployment/web"])?;
    Ok(out.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_rollout_set_image_undo_pause_resume_restart_and_cascading_deletes_work() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let _kubelets = keep_marking_ready(Api::namespaced(client.clone(), "default"));
    let config = c.api.kubeconfig.as_path();
    let rolled_out = || -> Result<()> {
        let out = kubectl(config, &["rollout", "status", "deployment/web", "--timeout=60s"])?;
        assert!(out.contains("deployment \"web\" successfully rolled out"), "{out}");
        Ok(())
    };
    let image =
        || kubectl(config, &["get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}"]);

    kubectl(config, &["create", "deployment", "web", "--image=busybox:1", "--replicas=2"])?;
    rolled_out()?;
    kubectl(config, &["set", "image", "deployment/web", "busybox=busybox:2"])?;
    rolled_out()?;
    assert_eq!(history(config)?, [1, 2]);

    let out = kubectl(config, &["rollout", "undo", "deployment/web"])?;
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    rolled_out()?;
    assert_eq!(image()?, "busybox:1");
    assert_eq!(history(config)?, [2, 3], "revision 1 came back as 3");

    let out = kubectl(config, &["rollout", "restart", "deployment/web"])?;
    assert!(out.contains("deployment.apps/web restarted"), "{out}");
    rolled_out()?;
    assert_eq!(history(config)?, [2, 3, 4]);
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let busy: Vec<ReplicaSet> =
        sets.list(&ListParams::default()).await?.items.into_iter().filter(|rs| spec_replicas(rs) > 0).collect();
    assert_eq!(busy.len(), 1, "only the restarted set has replicas");

    // Back to a named revision: revision 2 (busybox:2) becomes 5.
    let out = kubectl(config, &["rollout", "undo", "deployment/web", "--to-revision=2"])?;
    assert!(out.contains("deployment.apps/web rolled back"), "{out}");
    rolled_out()?;
    assert_eq!(image()?, "busybox:2");
    assert_eq!(history(config)?, [3, 4, 5]);

    // Paused, a template change makes no new revision until resumed.
    let out = kubectl(config, &["rollout", "pause", "deployment/web"])?;
    assert!(out.contains("deployment.apps/web paused"), "{out}");
    kubectl(config, &["set", "image", "deployment/web", "busybox=busybox:3"])?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(history(config)?, [3, 4, 5], "no rollout while paused");
    let out = kubectl(config, &["rollout", "resume", "deployment/web"])?;
    assert!(out.contains("deployment.apps/web resumed"), "{out}");
    rolled_out()?;
    assert_eq!(history(config)?, [3, 4, 5, 6]);

    // --cascade=orphan leaves the ReplicaSets and their pods, without the owner.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let before = sets.list(&ListParams::default().labels("app=web")).await?.items.len();
    kubectl(config, &["delete", "deployment", "web", "--cascade=orphan", "--wait=true"])?;
    let orphans = eventually(30, "web's sets orphaned", || async {
        let list = sets.list(&ListParams::default().labels("app=web")).await?.items;
        Ok(list.iter().all(|rs| rs.metadata.owner_references.as_ref().is_none_or(Vec::is_empty)).then_some(list))
    })
    .await?;
    assert_eq!(orphans.len(), before);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let kept = pods.list(&ListParams::default().labels("app=web")).await?.items;
    assert_eq!(kept.iter().filter(|p| p.metadata.deletion_timestamp.is_none()).count(), 2, "pods stay");

    // The default (background) deletion takes the sets and pods with it.
    kubectl(config, &["create", "deployment", "api", "--image=busybox:1", "--replicas=2"])?;
    kubectl(config, &["rollout", "status", "deployment/api", "--timeout=60s"])?;
    kubectl(config, &["delete", "deployment", "api"])?;
    eventually(30, "api's sets and pods gone", || async {
        let sets = sets.list(&ListParams::default().labels("app=api")).await?.items;
        let pods = pods.list(&ListParams::default().labels("app=api")).await?.items;
        Ok((sets.is_empty() && pods.is_empty()).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evictions_spend_a_disruption_budget_and_stop_at_its_minimum() -> Result<()> {
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    sets.create(&PostParams::default(), &replica_set("guarded", 3, "guarded")?).await?;
    for p in settled(&pods, &sets, "guarded", 3).await? {
        mark_ready(&pods, p.metadata.name.as_deref().unwrap_or_default()).await?;
    }
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "guard"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "guarded"}}},
    }))?;
    budgets.create(&PostParams::default(), &pdb).await?;
    eventually(30, "one disruption allowed", || async {
        let s = budgets.get("guard").await?.status.unwrap_or_default();
        Ok((s.disruptions_allowed == 1 && s.current_healthy == 3 && s.expected_pods == 3).then_some(()))
    })
    .await?;

    let ready: Vec<String> =
        pods.list(&ListParams::default()).await?.items.into_iter().filter_map(|p| p.metadata.name).collect();
    pods.evict(&ready[0], &kube::api::EvictParams::default()).await?;
    // The replacement is not ready: two healthy, two needed.
    eventually(30, "no disruption left", || async {
        let s = budgets.get("guard").await?.status.unwrap_or_default();
        Ok((s.disruptions_allowed == 0 && s.current_healthy == 2).then_some(()))
    })
    .await?;
    // kube-rs's default client retries a 429 with back-off; ask once.
    let kubeconfig = kube::config::Kubeconfig::read_from(&c.api.kubeconfig)?;
    let mut once = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    once.default_retry = false;
    let once: Api<Pod> = Api::namespaced(kube::Client::try_from(once)?, "default");
    let refused = once.evict(&ready[1], &kube::api::EvictParams::default()).await;
    let Err(kube::Error::Api(status)) = refused else { anyhow::bail!("expected a 429, got {refused:?}") };
    assert_eq!((status.code, status.reason.as_str()), (429, "TooManyRequests"));
    assert_eq!(status.message, "Cannot evict pod as it would violate the pod's disruption budget.");
    let cause = status.details.and_then(|d| d.causes.into_iter().next()).map(|c| c.message).unwrap_or_default();
    assert_eq!(cause, "The disruption budget guard needs 2 healthy pods and has 2 currently");
    assert!(pods.get(&ready[1]).await?.metadata.deletion_timestamp.is_none());

    // An unready pod costs the application nothing: it may always go.
    let unready = pods
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(|p| {
            !p.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .and_then(|p| p.metadata.name)
        .unwrap_or_default();
    pods.evict(&unready, &kube::api::EvictParams::default()).await?;
    Ok(())
}

/// What the nodes' kubelets would do, for every node at once: pods bound to a node turn Running
/// and Ready, and pods being deleted are removed once "stopped" (grace 0).
fn node_agents(pods: Api<Pod>) -> Kubelets {
    Kubelets(tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in &list.items {
                    let name = p.metadata.name.as_deref().unwrap_or_default();
                    let bound = p.spec.as_ref().is_some_and(|s| s.node_name.is_some());
                    // A pod deleted meanwhile is no error.
                    if p.metadata.deletion_timestamp.is_some() {
                        let _ = pods
                            .delete(name, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() })
                            .await;
                    } else if bound && !is_ready(p) {
                        let _ = mark_ready(&pods, name).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_drain_waits_for_the_disruption_budget_and_leaves_daemon_pods() -> Result<()> {
    use k8s_openapi::api::apps::v1::DaemonSet;
    use k8s_openapi::api::policy::v1::PodDisruptionBudget;
    let c = Cluster::start().await?;
    let client = c.client().await?;
    for (name, cidr) in [("n1", "10.244.1.0/24"), ("n2", "10.244.2.0/24")] {
        live_node(&client, name, Some(cidr)).await?;
    }
    let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    // No node lifecycle: these nodes have no kubelet renewing their Leases.
    config.controllers = [
        "deployment-controller",
        "replicaset-controller",
        "daemonset-controller",
        "disruption-controller",
        "garbage-collector-controller",
    ]
    .into_iter()
    .collect();
    let _cm = ControllerManager::start(config);
    let _scheduler = integration_tests::Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let _agents = node_agents(pods.clone());
    let kubeconfig = c.api.kubeconfig.as_path();

    let web = deployment("web", 4, "busybox:1", json!({"type": "RollingUpdate"}))?;
    let mut web = serde_json::to_value(web)?;
    web["spec"]["template"]["spec"]["containers"][0]["resources"] = json!({"requests": {"cpu": "100m"}});
    Api::<Deployment>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &serde_json::from_value(web)?)
        .await?;
    let agent: DaemonSet = serde_json::from_value(json!({
        "metadata": {"name": "agent"},
        "spec": {
            "selector": {"matchLabels": {"app": "agent"}},
            "template": {"metadata": {"labels": {"app": "agent"}},
                         "spec": {"containers": [{"name": "a", "image": "rkube/pause:1"}]}},
        },
    }))?;
    Api::<DaemonSet>::namespaced(client.clone(), "default").create(&PostParams::default(), &agent).await?;
    let on = |node: &'static str, app: &'static str| {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels(&format!("app={app}"))).await?.items;
            Ok::<_, anyhow::Error>(
                list.into_iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node))
                    .filter(|p| p.metadata.deletion_timestamp.is_none())
                    .collect::<Vec<_>>(),
            )
        }
    };
    eventually(60, "4 ready web pods, some on n1, and an agent on each node", || async {
        let (w1, w2) = (on("n1", "web").await?, on("n2", "web").await?);
        let ready = w1.iter().chain(&w2).filter(|p| is_ready(p)).count();
        let agents = on("n1", "agent").await?.len() + on("n2", "agent").await?.len();
        Ok((ready == 4 && !w1.is_empty() && agents == 2).then_some(()))
    })
    .await?;

    // Every web pod must stay: drain evicts nothing and gives up at its timeout.
    let budgets: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), "default");
    let pdb: PodDisruptionBudget = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 4, "selector": {"matchLabels": {"app": "web"}}},
    }))?;
    budgets.create(&PostParams::default(), &pdb).await?;
    eventually(30, "the budget counted", || async {
        let s = budgets.get("web").await?.status.unwrap_or_default();
        Ok((s.expected_pods == 4 && s.current_healthy == 4).then_some(()))
    })
    .await?;
    let drain = |timeout: &str, ignore_daemonsets: bool| {
        let mut args = vec!["drain", "n1", timeout];
        if ignore_daemonsets {
            args.push("--ignore-daemonsets");
        }
        let out = tokio::task::block_in_place(|| {
            std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(&args).output()
        });
        out.map(|o| {
            (
                o.status.success(),
                format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr)),
            )
        })
    };
    let (ok, out) = drain("--timeout=20s", false)?;
    assert!(!ok && out.contains("cannot delete DaemonSet-managed Pods"), "{out}");
    let started = std::time::Instant::now();
    let (ok, out) = drain("--timeout=12s", true)?;
    assert!(!ok && started.elapsed() < Duration::from_secs(25), "{:?} {out}", started.elapsed());
    assert!(out.contains("will retry after 5s"), "{out}");
    assert!(out.contains("Cannot evict pod as it would violate the pod's disruption budget"), "{out}");
    assert_eq!(on("n2", "web").await?.len() + on("n1", "web").await?.len(), 4, "nothing evicted: {out}");

    // One may go at a time: drain evicts, waits for the replacement on n2, and finishes.
    budgets.patch("web", &PatchParams::default(), &Patch::Merge(json!({"spec": {"minAvailable": 3}}))).await?;
    let (ok, out) = drain("--timeout=90s", true)?;
    assert!(ok, "{out}");
    assert!(out.contains("node/n1 drained") && out.contains("evicting pod default/web-"), "{out}");
    assert!(on("n1", "web").await?.is_empty());
    assert_eq!(on("n1", "agent").await?.len(), 1, "daemon pods stay");
    let n1 = Api::<k8s_openapi::api::core::v1::Node>::all(client.clone()).get("n1").await?;
    assert_eq!(n1.spec.and_then(|s| s.unschedulable), Some(true));
    eventually(60, "4 ready web pods on n2", || async {
        Ok((on("n2", "web").await?.iter().filter(|p| is_ready(p)).count() == 4).then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resource_quota_counts_usage_and_refuses_what_would_exceed_it() -> Result<()> {
    use k8s_openapi::api::core::v1::ResourceQuota;
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "q"},
        "spec": {"hard": {"pods": "2", "requests.memory": "1Gi"}},
    }))?;
    quotas.create(&PostParams::default(), &quota).await?;
    eventually(30, "the quota counted", || async {
        let used = quotas.get("q").await?.status.and_then(|s| s.used).unwrap_or_default();
        Ok((used.get("pods").map(|q| q.0.as_str()) == Some("0")).then_some(()))
    })
    .await?;
    let pod = |name: &str, memory: Option<&str>| -> Result<Pod> {
        let resources = memory.map(|m| json!({"requests": {"memory": m}})).unwrap_or(json!({}));
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"containers": [{"name": "c", "image": "busybox", "resources": resources}]},
        }))?)
    };
    let refusal = |result: kube::Result<Pod>| -> Result<String> {
        match result {
            Err(kube::Error::Api(s)) if s.code == 403 => Ok(s.message),
            other => anyhow::bail!("expected a 403, got {other:?}"),
        }
    };
    pods.create(&PostParams::default(), &pod("a", Some("256Mi"))?).await?;
    pods.create(&PostParams::default(), &pod("b", Some("256Mi"))?).await?;
    let message = refusal(pods.create(&PostParams::default(), &pod("c", Some("256Mi"))?).await)?;
    assert_eq!(message, "pods \"c\" is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2");
    let message = refusal(pods.create(&PostParams::default(), &pod("d", None)?).await)?;
    assert_eq!(message, "pods \"d\" is forbidden: failed quota: q: must specify requests.memory");

    // A pod goes; once the controller has recounted, there is room again.
    pods.delete("a", &DeleteParams::default()).await?;
    eventually(30, "the quota recounted", || async {
        let used = quotas.get("q").await?.status.and_then(|s| s.used).unwrap_or_default();
        Ok((used.get("pods").map(|q| q.0.as_str()) == Some("1")).then_some(()))
    })
    .await?;
    pods.create(&PostParams::default(), &pod("c", Some("256Mi"))?).await?;
    let used = quotas.get("q").await?.status.and_then(|s| s.used).unwrap_or_default();
    assert_eq!(used.get("requests.memory").map(|q| q.0.as_str()), Some("512Mi"));
    Ok(())
}

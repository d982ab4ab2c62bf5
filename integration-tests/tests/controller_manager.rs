//! rk-controller-manager against a real API server on real etcd. No kubelets: the tests mark
//! pods Running and Ready through the API, as a kubelet would.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use anyhow::{Result, bail};
use futures::StreamExt;
use integration_tests::{Cluster, ControllerManager};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Namespace, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// Polls `check` until it returns `Some`, for at most `secs`.
async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            bail!("not within {secs}s: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

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

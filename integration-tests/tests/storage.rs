//! Storage: the PersistentVolume binder and the local-path provisioner of rk-controller-manager,
//! rk-apiserver's DefaultStorageClass admission and rk-scheduler's VolumeBinding, against a real
//! API server on real etcd; the last test adds a real kubelet and dockerd.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use integration_tests::{Cluster, ControllerManager, Dockerd, Kubelet, Scheduler, TempDir, eventually};
use k8s_openapi::api::core::v1::{Event, Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const BINDER: &str = "persistentvolume-binder-controller";
const PVC_PROTECTION: &str = "pvc-protection-controller";
const PV_PROTECTION: &str = "pv-protection-controller";

/// A controller manager running only the binder and the protection controllers (which let
/// deleted claims and volumes go), with or without the `local-path` class.
fn binder(c: &Cluster, default_class: bool, local_path_dir: &Path) -> ControllerManager {
    let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    config.controllers = [BINDER, PVC_PROTECTION, PV_PROTECTION].into_iter().collect();
    config.default_storage_class = default_class;
    config.local_path_dir = local_path_dir.to_path_buf();
    ControllerManager::start(config)
}

fn volume(name: &str, size: &str, modes: &[&str], class: Option<&str>, policy: &str) -> Result<PersistentVolume> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class,
                 "persistentVolumeReclaimPolicy": policy, "hostPath": {"path": format!("/tmp/rk-storage-{name}")}},
    }))?)
}

fn claim(name: &str, size: &str, class: Option<&str>) -> Result<PersistentVolumeClaim> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                 "storageClassName": class},
    }))?)
}

fn claim_phase(c: &PersistentVolumeClaim) -> &str {
    c.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn volume_phase(v: &PersistentVolume) -> &str {
    v.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn annotation<'a>(meta: &'a kube::api::ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// Waits until the claim is Bound; returns its volume's name.
async fn bound(claims: &Api<PersistentVolumeClaim>, name: &str, secs: u64) -> Result<String> {
    eventually(secs, &format!("claim {name} bound"), || async {
        let c = claims.get(name).await?;
        let volume = c.spec.as_ref().and_then(|s| s.volume_name.clone());
        Ok(volume.filter(|_| claim_phase(&c) == "Bound"))
    })
    .await
}

async fn events_for(client: &kube::Client, ns: &str, name: &str) -> Result<Vec<String>> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let list = events.list(&ListParams::default().fields(&format!("involvedObject.name={name}"))).await?;
    Ok(list.items.into_iter().filter_map(|e| e.reason).collect())
}

/// A Ready node with a hostname label and room for pods.
async fn node(client: &kube::Client, name: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
                   "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"}},
    }))?;
    nodes.create(&PostParams::default(), &node).await?;
    Ok(())
}

fn pod_with_claim(name: &str, claim: &str, image: &str, script: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never", "terminationGracePeriodSeconds": 1,
            "containers": [{"name": "app", "image": image, "command": ["sh", "-c", script],
                            "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    }))?)
}

fn node_of(p: &Pod) -> Option<String> {
    p.spec.as_ref().and_then(|s| s.node_name.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_bind_to_the_smallest_fitting_static_volume() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, false, dir.path());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    for v in [
        volume("pv-1g", "1Gi", &["ReadWriteOnce"], Some("manual"), "Retain")?,
        volume("pv-5g", "5Gi", &["ReadWriteOnce"], Some("manual"), "Retain")?,
        volume("pv-3g", "3Gi", &["ReadWriteOnce"], Some("manual"), "Retain")?,
        volume("pv-2g-ro", "2Gi", &["ReadOnlyMany"], Some("manual"), "Retain")?,
        volume("pv-2g-fast", "2Gi", &["ReadWriteOnce"], Some("fast"), "Retain")?,
        volume("pv-2g-none", "2Gi", &["ReadWriteOnce"], None, "Retain")?,
    ] {
        volumes.create(&params, &v).await?;
    }
    eventually(20, "every volume Available", || async {
        let list = volumes.list(&ListParams::default()).await?.items;
        Ok(list.iter().all(|v| volume_phase(v) == "Available").then_some(()))
    })
    .await?;

    claims.create(&params, &claim("two", "2Gi", Some("manual"))?).await?;
    assert_eq!(bound(&claims, "two", 20).await?, "pv-3g", "neither the read-only nor the other class's 2Gi");
    let c2 = claims.get("two").await?;
    assert_eq!(annotation(&c2.metadata, "pv.kubernetes.io/bind-completed"), Some("yes"));
    assert_eq!(annotation(&c2.metadata, "pv.kubernetes.io/bound-by-controller"), Some("yes"));
    let status = c2.status.clone().unwrap_or_default();
    assert_eq!(status.capacity.and_then(|c| c.get("storage").map(|q| q.0.clone())).as_deref(), Some("3Gi"));
    assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".to_string()]));
    let v = volumes.get("pv-3g").await?;
    assert_eq!(volume_phase(&v), "Bound");
    let r = v.spec.as_ref().and_then(|s| s.claim_ref.clone()).unwrap_or_default();
    assert_eq!((r.namespace.as_deref(), r.name.as_deref()), (Some("default"), Some("two")));
    assert_eq!(r.uid, c2.metadata.uid);
    assert_eq!(annotation(&v.metadata, "pv.kubernetes.io/bound-by-controller"), Some("yes"));

    claims.create(&params, &claim("one", "1Gi", Some("manual"))?).await?;
    assert_eq!(bound(&claims, "one", 20).await?, "pv-1g");
    claims.create(&params, &claim("classless", "1Gi", Some(""))?).await?;
    assert_eq!(bound(&claims, "classless", 20).await?, "pv-2g-none", "\"\" takes only volumes without a class");
    claims.create(&params, &claim("huge", "10Gi", Some("manual"))?).await?;
    // Nothing fits and no StorageClass "manual" exists to provision one.
    eventually(20, "a ProvisioningFailed event for the claim nothing fits", || async {
        Ok(events_for(&client, "default", "huge").await?.iter().any(|r| r == "ProvisioningFailed").then_some(()))
    })
    .await?;
    assert_eq!(claim_phase(&claims.get("huge").await?), "Pending");

    // A claim asking for a volume by name gets that one.
    let mut named = claim("named", "1Gi", Some("manual"))?;
    named.spec.get_or_insert_default().volume_name = Some("pv-5g".into());
    claims.create(&params, &named).await?;
    assert_eq!(bound(&claims, "named", 20).await?, "pv-5g");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn released_volumes_are_retained_or_deleted_and_claims_without_volumes_are_lost() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, false, dir.path());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    volumes.create(&params, &volume("kept", "1Gi", &["ReadWriteOnce"], Some("retain"), "Retain")?).await?;
    volumes.create(&params, &volume("dropped", "1Gi", &["ReadWriteOnce"], Some("delete"), "Delete")?).await?;
    volumes.create(&params, &volume("vanishing", "1Gi", &["ReadWriteOnce"], Some("lost"), "Retain")?).await?;
    for (name, class) in [("keep", "retain"), ("drop", "delete"), ("lose", "lost")] {
        claims.create(&params, &claim(name, "1Gi", Some(class))?).await?;
    }
    for name in ["keep", "drop", "lose"] {
        bound(&claims, name, 20).await?;
    }

    claims.delete("keep", &DeleteParams::default()).await?;
    claims.delete("drop", &DeleteParams::default()).await?;
    eventually(20, "the Retain volume Released", || async {
        Ok((volume_phase(&volumes.get("kept").await?) == "Released").then_some(()))
    })
    .await?;
    let kept = volumes.get("kept").await?;
    let r = kept.spec.as_ref().and_then(|s| s.claim_ref.clone()).unwrap_or_default();
    assert_eq!(r.name.as_deref(), Some("keep"), "a released volume keeps its claimRef");
    eventually(20, "the Delete volume deleted", || async {
        Ok(volumes.get_opt("dropped").await?.is_none().then_some(()))
    })
    .await?;
    // A new claim of the same name does not get the released volume back.
    claims.create(&params, &claim("keep", "1Gi", Some("retain"))?).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(claim_phase(&claims.get("keep").await?), "Pending");
    assert_eq!(volume_phase(&volumes.get("kept").await?), "Released");

    // A bound volume is held by its pv-protection finalizer: drop it, as a lost disk would.
    volumes.delete("vanishing", &DeleteParams::default()).await?;
    let unprotect = json!({"metadata": {"finalizers": null}});
    volumes.patch("vanishing", &PatchParams::default(), &Patch::Merge(&unprotect)).await?;
    eventually(20, "the claim whose volume went Lost", || async {
        Ok((claim_phase(&claims.get("lose").await?) == "Lost").then_some(()))
    })
    .await?;
    assert!(events_for(&client, "default", "lose").await?.iter().any(|r| r == "ClaimLost"));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_without_a_class_get_the_default_one() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, true, dir.path());
    let classes: Api<StorageClass> = Api::all(client.clone());
    let made = eventually(20, "the local-path class", || async { Ok(classes.get_opt("local-path").await?) }).await?;
    assert_eq!(made.provisioner, "rkube.io/local-path");
    assert_eq!(made.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
    assert_eq!(made.reclaim_policy.as_deref(), Some("Delete"));
    assert_eq!(annotation(&made.metadata, "storageclass.kubernetes.io/is-default-class"), Some("true"));

    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    let class_of = |c: &PersistentVolumeClaim| c.spec.as_ref().and_then(|s| s.storage_class_name.clone());
    // The watch cache may lag the class by a moment.
    let given = eventually(10, "the default class given at create", || async {
        let made = claims.create(&params, &claim("plain", "1Gi", None)?).await?;
        if class_of(&made).is_none() {
            claims.delete("plain", &DeleteParams::default()).await?;
            eventually(10, "gone", || async { Ok(claims.get_opt("plain").await?.is_none().then_some(())) }).await?;
        }
        Ok(class_of(&made))
    })
    .await?;
    assert_eq!(given, "local-path");
    let empty = claims.create(&params, &claim("none", "1Gi", Some(""))?).await?;
    assert_eq!(class_of(&empty).as_deref(), Some(""), "an explicit \"\" asks for no class");

    // The newest of several defaults wins.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let newer: StorageClass = serde_json::from_value(json!({
        "metadata": {"name": "newer", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "example.com/disk",
    }))?;
    classes.create(&params, &newer).await?;
    let given = eventually(10, "the newer default given", || async {
        let name = format!("later-{}", rand_suffix());
        let made = claims.create(&params, &claim(&name, "1Gi", None)?).await?;
        Ok(class_of(&made).filter(|c| c == "newer"))
    })
    .await?;
    assert_eq!(given, "newer");
    Ok(())
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_first_consumer_provisions_on_the_scheduled_node() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, true, dir.path());
    for n in ["n1", "n2", "n3"] {
        node(&client, n).await?;
    }
    let _scheduler = Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let classes: Api<StorageClass> = Api::all(client.clone());
    eventually(20, "the local-path class", || async { Ok(classes.get_opt("local-path").await?) }).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    claims.create(&params, &claim("data", "1Gi", Some("local-path"))?).await?;
    eventually(20, "a WaitForFirstConsumer event", || async {
        Ok(events_for(&client, "default", "data").await?.iter().any(|r| r == "WaitForFirstConsumer").then_some(()))
    })
    .await?;
    assert_eq!(claim_phase(&claims.get("data").await?), "Pending");
    assert!(volumes.list(&ListParams::default()).await?.items.is_empty(), "nothing provisioned without a consumer");

    pods.create(&params, &pod_with_claim("first", "data", "busybox", "true")?).await?;
    let volume_name = bound(&claims, "data", 30).await?;
    let claimed = claims.get("data").await?;
    let selected = annotation(&claimed.metadata, "volume.kubernetes.io/selected-node").map(str::to_string);
    assert_eq!(annotation(&claimed.metadata, "volume.kubernetes.io/storage-provisioner"), Some("rkube.io/local-path"));
    let on = eventually(20, "the pod bound", || async { Ok(node_of(&pods.get("first").await?)) }).await?;
    assert_eq!(selected.as_deref(), Some(on.as_str()), "the claim names the pod's node");
    let uid = claimed.metadata.uid.clone().unwrap_or_default();
    assert_eq!(volume_name, format!("pvc-{uid}"));
    let v = volumes.get(&volume_name).await?;
    assert_eq!(annotation(&v.metadata, "pv.kubernetes.io/provisioned-by"), Some("rkube.io/local-path"));
    let spec = v.spec.clone().unwrap_or_default();
    let path = spec.host_path.as_ref().map(|h| h.path.clone()).unwrap_or_default();
    assert_eq!(path, dir.path().join(format!("default_data_{volume_name}")).display().to_string());
    assert_eq!(spec.host_path.and_then(|h| h.type_).as_deref(), Some("DirectoryOrCreate"));
    assert_eq!(spec.persistent_volume_reclaim_policy.as_deref(), Some("Delete"));
    let pinned = serde_json::to_value(&spec.node_affinity)?;
    assert_eq!(pinned["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"], json!([on]));
    let reasons = events_for(&client, "default", "data").await?;
    assert!(reasons.iter().any(|r| r == "ProvisioningSucceeded"), "{reasons:?}");

    // A second pod of the claim goes where the volume is.
    pods.create(&params, &pod_with_claim("second", "data", "busybox", "true")?).await?;
    let second = eventually(20, "the second pod bound", || async { Ok(node_of(&pods.get("second").await?)) }).await?;
    assert_eq!(second, on);
    // A claim of an immediate class with no volume keeps its pod unscheduled.
    claims.create(&params, &claim("stuck", "1Gi", Some(""))?).await?;
    pods.create(&params, &pod_with_claim("waiting", "stuck", "busybox", "true")?).await?;
    eventually(20, "the unbound-immediate reason", || async {
        let p = pods.get("waiting").await?;
        let message = p
            .status
            .and_then(|s| s.conditions)
            .and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"))
            .and_then(|c| c.message);
        Ok(message.filter(|m| m.contains("pod has unbound immediate PersistentVolumeClaims")))
    })
    .await?;

    // Deleting the claim: the volume is released and a helper pod on its node removes the
    // directory (no kubelet here, so the test finishes the helper as one would).
    for p in ["first", "second"] {
        pods.delete(p, &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
    }
    claims.delete("data", &DeleteParams::default()).await?;
    let helpers: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let helper_name = format!("local-path-delete-{volume_name}");
    let helper = eventually(20, "the helper pod", || async { Ok(helpers.get_opt(&helper_name).await?) }).await?;
    assert_eq!(volume_phase(&volumes.get(&volume_name).await?), "Released");
    let hspec = helper.spec.clone().unwrap_or_default();
    assert_eq!(hspec.node_name.as_deref(), Some(on.as_str()));
    assert_eq!(
        hspec.containers[0].command,
        Some(vec!["/bin/busybox".to_string(), "rm".into(), "-rf".into(), format!("/data/default_data_{volume_name}")])
    );
    let done = json!({"status": {"phase": "Succeeded"}});
    helpers.patch_status(&helper_name, &PatchParams::default(), &Patch::Merge(&done)).await?;
    eventually(20, "the volume and its helper deleted", || async {
        let gone = volumes.get_opt(&volume_name).await?.is_none() && helpers.get_opt(&helper_name).await?.is_none();
        Ok(gone.then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_path_volume_keeps_its_data_across_pods_and_goes_with_its_claim() -> Result<()> {
    let c = Cluster::start().await?;
    let docker = Dockerd::start().await?;
    let kubelet = Kubelet::start(&c, &docker, "node-lp", "10.231.52.0/24").await?;
    let client = c.client().await?;
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, true, dir.path());
    let _scheduler = Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let classes: Api<StorageClass> = Api::all(client.clone());
    eventually(20, "the local-path class", || async { Ok(classes.get_opt("local-path").await?) }).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(60, "the node registered", || async { Ok(nodes.get_opt(&kubelet.node).await?) }).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    // No class: the default one, local-path.
    claims.create(&params, &claim("data", "1Gi", None)?).await?;
    let phase = |p: &Pod| p.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let finished = |name: &'static str| {
        let pods = pods.clone();
        async move {
            eventually(120, &format!("pod {name} finished"), || async {
                let p = pods.get(name).await?;
                Ok(matches!(phase(&p).as_str(), "Succeeded" | "Failed").then(|| phase(&p)))
            })
            .await
        }
    };
    pods.create(&params, &pod_with_claim("writer", "data", integration_tests::BUSYBOX, "echo kept > /data/file")?)
        .await?;
    assert_eq!(finished("writer").await?, "Succeeded");
    let volume_name = bound(&claims, "data", 10).await?;
    let path = dir.path().join(format!("default_data_{volume_name}"));
    assert_eq!(std::fs::read_to_string(path.join("file"))?, "kept\n", "the write landed in the volume's directory");
    pods.delete("writer", &DeleteParams::default()).await?;
    eventually(60, "the writer gone", || async { Ok(pods.get_opt("writer").await?.is_none().then_some(())) }).await?;

    let reader = pod_with_claim("reader", "data", integration_tests::BUSYBOX, "test \"$(cat /data/file)\" = kept")?;
    pods.create(&params, &reader).await?;
    assert_eq!(finished("reader").await?, "Succeeded", "the next pod reads what the first wrote");
    pods.delete("reader", &DeleteParams::default()).await?;
    eventually(60, "the reader gone", || async { Ok(pods.get_opt("reader").await?.is_none().then_some(())) }).await?;

    claims.delete("data", &DeleteParams::default()).await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    eventually(120, "the volume deleted", || async {
        Ok(volumes.get_opt(&volume_name).await?.is_none().then_some(()))
    })
    .await?;
    assert!(!path.exists(), "the helper pod removed {}", path.display());
    assert!(dir.path().exists(), "and nothing above it");
    Ok(())
}

fn finalizers(meta: &kube::api::ObjectMeta) -> Vec<String> {
    meta.finalizers.clone().unwrap_or_default()
}

fn is_deleting(meta: &kube::api::ObjectMeta) -> bool {
    meta.deletion_timestamp.is_some()
}

/// A pod on `node` using `claim`, marked Running as its kubelet would.
async fn running_pod_with_claim(pods: &Api<Pod>, name: &str, claim: &str, node: &str) -> Result<()> {
    let mut pod = pod_with_claim(name, claim, "busybox", "sleep 3600")?;
    pod.spec.get_or_insert_default().node_name = Some(node.into());
    pods.create(&PostParams::default(), &pod).await?;
    let status = json!({"status": {"phase": "Running"}});
    pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_claims_and_volumes_carry_their_protection_finalizers() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    // From admission, before any controller runs.
    let v = volumes.create(&params, &volume("pv-a", "1Gi", &["ReadWriteOnce"], Some("manual"), "Retain")?).await?;
    assert_eq!(finalizers(&v.metadata), ["kubernetes.io/pv-protection"]);
    let made = claims.create(&params, &claim("a", "1Gi", Some("manual"))?).await?;
    assert_eq!(finalizers(&made.metadata), ["kubernetes.io/pvc-protection"]);
    let dry = PostParams { dry_run: true, ..Default::default() };
    let mut own = claim("b", "1Gi", Some("manual"))?;
    own.metadata.finalizers = Some(vec!["example.com/keep".into()]);
    let shown = claims.create(&dry, &own).await?;
    assert_eq!(finalizers(&shown.metadata), ["example.com/keep", "kubernetes.io/pvc-protection"], "dry run too");
    assert!(claims.get_opt("b").await?.is_none());

    // Objects without them (made before the plugin was on) get them from the controllers.
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, false, dir.path());
    let unprotect = json!({"metadata": {"finalizers": null}});
    claims.patch("a", &PatchParams::default(), &Patch::Merge(&unprotect)).await?;
    volumes.patch("pv-a", &PatchParams::default(), &Patch::Merge(&unprotect)).await?;
    eventually(20, "the finalizers back", || async {
        let (c, v) = (claims.get("a").await?, volumes.get("pv-a").await?);
        let back = finalizers(&c.metadata) == ["kubernetes.io/pvc-protection"]
            && finalizers(&v.metadata) == ["kubernetes.io/pv-protection"];
        Ok(back.then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_in_use_stays_until_its_pod_is_gone_and_its_delete_volume_follows() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, false, dir.path());
    node(&client, "n1").await?;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    volumes.create(&params, &volume("pv-data", "1Gi", &["ReadWriteOnce"], Some("manual"), "Delete")?).await?;
    claims.create(&params, &claim("data", "1Gi", Some("manual"))?).await?;
    assert_eq!(bound(&claims, "data", 20).await?, "pv-data");
    running_pod_with_claim(&pods, "user", "data", "n1").await?;
    // A finished pod of the claim does not hold it.
    running_pod_with_claim(&pods, "done", "data", "n1").await?;
    let finished = json!({"status": {"phase": "Succeeded"}});
    pods.patch_status("done", &PatchParams::default(), &Patch::Merge(&finished)).await?;

    claims.delete("data", &DeleteParams::default()).await?;
    let held = eventually(10, "the claim marked for deletion", || async {
        Ok(claims.get_opt("data").await?.filter(|c| is_deleting(&c.metadata)))
    })
    .await?;
    assert_eq!(finalizers(&held.metadata), ["kubernetes.io/pvc-protection"]);
    // Long enough for the controllers to have had their say.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let held = claims.get("data").await?;
    assert_eq!(claim_phase(&held), "Bound", "held while the running pod uses it");
    assert_eq!(volume_phase(&volumes.get("pv-data").await?), "Bound");

    pods.delete("user", &DeleteParams { grace_period_seconds: Some(0), ..Default::default() }).await?;
    eventually(20, "the claim gone", || async { Ok(claims.get_opt("data").await?.is_none().then_some(())) }).await?;
    eventually(20, "its Delete volume gone", || async {
        Ok(volumes.get_opt("pv-data").await?.is_none().then_some(()))
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bound_volume_deleted_stays_until_its_claim_is_gone() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let dir = TempDir::new("local-path")?;
    let _cm = binder(&c, false, dir.path());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let params = PostParams::default();
    volumes.create(&params, &volume("pv-kept", "1Gi", &["ReadWriteOnce"], Some("manual"), "Retain")?).await?;
    claims.create(&params, &claim("kept", "1Gi", Some("manual"))?).await?;
    assert_eq!(bound(&claims, "kept", 20).await?, "pv-kept");

    volumes.delete("pv-kept", &DeleteParams::default()).await?;
    let held = eventually(10, "the volume marked for deletion", || async {
        Ok(volumes.get_opt("pv-kept").await?.filter(|v| is_deleting(&v.metadata)))
    })
    .await?;
    assert_eq!(finalizers(&held.metadata), ["kubernetes.io/pv-protection"]);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(volume_phase(&volumes.get("pv-kept").await?), "Bound", "held while bound");
    assert_eq!(claim_phase(&claims.get("kept").await?), "Bound", "and its claim keeps it");

    claims.delete("kept", &DeleteParams::default()).await?;
    eventually(20, "the claim gone", || async { Ok(claims.get_opt("kept").await?.is_none().then_some(())) }).await?;
    eventually(20, "then the volume", || async { Ok(volumes.get_opt("pv-kept").await?.is_none().then_some(())) })
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubelet_does_not_start_a_pod_whose_claim_is_being_deleted() -> Result<()> {
    let c = Cluster::start().await?;
    let docker = Dockerd::start().await?;
    let kubelet = Kubelet::start(&c, &docker, "node-pd", "10.231.53.0/24").await?;
    let client = c.client().await?;
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(60, "the node registered", || async { Ok(nodes.get_opt(&kubelet.node).await?) }).await?;
    let host = TempDir::new("pv")?;
    let mut pv = volume("pv-going", "1Gi", &["ReadWriteOnce"], Some("manual"), "Retain")?;
    if let Some(h) = pv.spec.as_mut().and_then(|s| s.host_path.as_mut()) {
        h.path = host.path().join("data").display().to_string();
    }
    Api::<PersistentVolume>::all(client.clone()).create(&PostParams::default(), &pv).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let mut pvc = claim("going", "1Gi", Some("manual"))?;
    pvc.spec.get_or_insert_default().volume_name = Some("pv-going".into());
    claims.create(&PostParams::default(), &pvc).await?;
    // No controller manager: the test binds the claim, and its finalizer holds it once deleted.
    let status =
        json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}});
    claims.patch_status("going", &PatchParams::default(), &Patch::Merge(&status)).await?;
    claims.delete("going", &DeleteParams::default()).await?;

    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut pod = pod_with_claim("late", "going", integration_tests::BUSYBOX, "true")?;
    pod.spec.get_or_insert_default().node_name = Some(kubelet.node.clone());
    pods.create(&PostParams::default(), &pod).await?;
    let message = eventually(60, "the container waiting on its claim", || async {
        let p = pods.get("late").await?;
        let waiting = p
            .status
            .and_then(|s| s.container_statuses)
            .and_then(|cs| cs.into_iter().find(|c| c.name == "app"))
            .and_then(|c| c.state?.waiting?.message);
        Ok(waiting.filter(|m| m.contains("is being deleted")))
    })
    .await?;
    assert!(message.contains("persistentvolumeclaim \"going\" is being deleted"), "{message}");
    assert!(!host.path().join("data").exists(), "nothing mounted");
    Ok(())
}

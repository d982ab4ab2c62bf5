//! The built-in local-path provisioner (`rkube.io/local-path`), pure: the default `local-path`
//! StorageClass, the hostPath volume made for a claim on its selected node (pinned there by node
//! affinity), and the steps of deleting one: a short-lived helper pod on that node removes the
//! directory, then the volume goes.

use std::path::{Component, Path};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::jiff::Timestamp;

use super::plan;

pub const PROVISIONER: &str = "rkube.io/local-path";
/// The class made at start (unless `--default-storage-class=false`).
pub const CLASS: &str = "local-path";
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
/// Where helper pods run.
pub const HELPER_NAMESPACE: &str = "kube-system";
/// On a helper pod: the volume whose directory it deletes.
pub const HELPER_LABEL: &str = "rkube.io/local-path-volume";
/// Where a helper pod sees the volume directory's parent.
const HELPER_MOUNT: &str = "/data";
/// How long a failed deletion waits before a new helper tries again.
pub const RETRY_DELETE: Duration = Duration::from_secs(30);

/// The `local-path` class: WaitForFirstConsumer (a volume is made where its first pod is
/// scheduled), Delete; the default class when `default`.
pub fn storage_class(default: bool) -> StorageClass {
    let mut class: StorageClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": CLASS},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": plan::WAIT_FOR_FIRST_CONSUMER,
    }))
    .unwrap_or_default();
    if default {
        class.metadata.annotations = Some([(plan::IS_DEFAULT_CLASS.to_string(), "true".to_string())].into());
    }
    class
}

/// The volume for `claim` on `node`: `pvc-<claim uid>`, a `DirectoryOrCreate` hostPath
/// `<base>/<namespace>_<claim>_<volume>` (the kubelet makes it when a pod mounts it), the
/// request as capacity, the claim's access modes, the class's reclaim policy and mount options,
/// pre-bound to the claim and pinned to the node by its hostname label. `Err` says why not.
pub fn volume(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    node: Option<&Node>,
    base: &Path,
) -> Result<PersistentVolume, String> {
    let Some(node) = node else {
        return Err(format!(
            "{PROVISIONER} makes a volume on the node of the claim's first pod; its class needs volumeBindingMode {}",
            plan::WAIT_FOR_FIRST_CONSUMER
        ));
    };
    let spec = claim.spec.clone().unwrap_or_default();
    if spec.volume_mode.as_deref().is_some_and(|m| m != "Filesystem") {
        return Err(format!("{PROVISIONER} makes Filesystem volumes only"));
    }
    if spec.selector.is_some() {
        return Err("claim Selector is not supported".into());
    }
    let Some(size) = spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|r| r.get("storage")) else {
        return Err("the claim requests no storage".into());
    };
    let (ns, claim_name) =
        (claim.metadata.namespace.as_deref().unwrap_or(""), claim.metadata.name.as_deref().unwrap_or(""));
    let uid = claim.metadata.uid.as_deref().filter(|u| !u.is_empty()).ok_or("the claim has no uid")?;
    let name = format!("pvc-{uid}");
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    let host = node.metadata.labels.as_ref().and_then(|l| l.get(HOSTNAME_LABEL)).map_or(node_name, String::as_str);
    let path = base.join(format!("{ns}_{claim_name}_{name}"));
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name, "annotations": {plan::PROVISIONED_BY: PROVISIONER}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": spec.access_modes,
            "volumeMode": "Filesystem",
            "persistentVolumeReclaimPolicy": class.reclaim_policy.as_deref().unwrap_or("Delete"),
            "storageClassName": class.metadata.name,
            "mountOptions": class.mount_options,
            "hostPath": {"path": path.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": plan::reference(claim),
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [host]}]}]}},
        },
    }))
    .map_err(|e| e.to_string())
}

/// Whether the volume is one of this provisioner's.
pub fn is_local_path(volume: &PersistentVolume) -> bool {
    volume.metadata.annotations.as_ref().and_then(|a| a.get(plan::PROVISIONED_BY)).map(String::as_str)
        == Some(PROVISIONER)
        && volume.spec.as_ref().is_some_and(|s| s.host_path.is_some())
}

/// The hostname a volume is pinned to (its first `kubernetes.io/hostname In [..]` term).
pub fn pinned_host(volume: &PersistentVolume) -> Option<&str> {
    let required = volume.spec.as_ref()?.node_affinity.as_ref()?.required.as_ref()?;
    required
        .node_selector_terms
        .iter()
        .flat_map(|t| t.match_expressions.iter().flatten())
        .find(|r| r.key == HOSTNAME_LABEL && r.operator == "In")
        .and_then(|r| r.values.as_ref()?.first())
        .map(String::as_str)
}

/// The node whose hostname label (or, without one, name) is `host`.
pub fn node_for_host<'a>(nodes: impl IntoIterator<Item = &'a Node>, host: &str) -> Option<String> {
    nodes
        .into_iter()
        .find(|n| {
            let label = n.metadata.labels.as_ref().and_then(|l| l.get(HOSTNAME_LABEL));
            label.map_or(n.metadata.name.as_deref() == Some(host), |l| l == host)
        })
        .and_then(|n| n.metadata.name.clone())
}

pub fn helper_name(volume: &str) -> String {
    format!("local-path-delete-{volume}")
}

/// Whether a helper pod has stopped, one way or the other.
pub fn has_finished(helper: &Pod) -> bool {
    matches!(helper.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

/// Splits a volume's directory into the parent the helper mounts and the name it removes,
/// refusing anything but a plain absolute path below a directory other than `/`.
fn split(path: &str) -> Result<(&str, &str), String> {
    let p = Path::new(path);
    let plain = p.is_absolute() && p.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
    let parent = p.parent().and_then(Path::to_str).filter(|d| *d != "/");
    let name = p.file_name().and_then(|n| n.to_str());
    match (plain, parent, name) {
        (true, Some(parent), Some(name)) => Ok((parent, name)),
        _ => Err(format!("will not delete {path:?}: not a directory below one other than /")),
    }
}

/// The pod that removes the volume's directory on `node`: the parent mounted at `/data`, and
/// `rm -rf` through busybox (the kubelet's sandbox image is a static busybox, so every rkube
/// node has it without a pull).
pub fn helper_pod(volume: &PersistentVolume, node: &str, image: &str) -> Result<Pod, String> {
    let name = volume.metadata.name.as_deref().unwrap_or("");
    let path = volume.spec.as_ref().and_then(|s| s.host_path.as_ref()).map(|h| h.path.as_str()).unwrap_or("");
    let (parent, dir) = split(path)?;
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": helper_name(name), "namespace": HELPER_NAMESPACE, "labels": {HELPER_LABEL: name}},
        "spec": {
            "nodeName": node,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 0,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{
                "name": "delete", "image": image, "imagePullPolicy": "IfNotPresent",
                "command": ["/bin/busybox", "rm", "-rf", format!("{HELPER_MOUNT}/{dir}")],
                "volumeMounts": [{"name": "data", "mountPath": HELPER_MOUNT}],
            }],
            "volumes": [{"name": "data", "hostPath": {"path": parent, "type": "DirectoryOrCreate"}}],
        },
    }))
    .map_err(|e| e.to_string())
}

/// The next step of deleting a local-path volume.
#[derive(Debug, Clone, PartialEq)]
pub enum Deletion {
    /// Create this helper pod.
    Start(Box<Pod>),
    /// The helper is on its way.
    Wait,
    /// The helper removed the directory: delete the volume, then the helper.
    Finish,
    /// The node is gone, and the directory with it: delete the volume.
    NodeGone,
    /// The helper failed (or never could run): the volume is marked Failed with this message.
    Failed(String),
    /// Failed a moment ago: look again then.
    RetryAfter(Duration),
    /// Failed long enough ago: delete the failed helper so a new one tries.
    Restart,
}

fn failure(helper: &Pod) -> String {
    let terminated = helper
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref()?.terminated.clone());
    let detail = match terminated {
        Some(t) => format!("exit code {}{}", t.exit_code, t.message.map(|m| format!(": {m}")).unwrap_or_default()),
        None => helper.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_else(|| "failed".into()),
    };
    format!("helper pod {}/{} failed to remove the directory: {detail}", HELPER_NAMESPACE, helper_name_of(helper))
}

fn helper_name_of(helper: &Pod) -> &str {
    helper.metadata.name.as_deref().unwrap_or("")
}

/// When the helper stopped: its container's finish, else its creation.
fn finished_at(helper: &Pod) -> Timestamp {
    let terminated = helper
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|c| c.first())
        .and_then(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.clone());
    terminated.or_else(|| helper.metadata.creation_timestamp.clone()).map_or(Timestamp::UNIX_EPOCH, |t| t.0)
}

/// Where deleting `volume` stands, from its helper pod (if any) and the nodes (is its node still
/// there?). A failed helper is kept [`RETRY_DELETE`] after it stopped, then replaced.
pub fn deletion<'a>(
    volume: &PersistentVolume,
    helper: Option<&Pod>,
    nodes: impl IntoIterator<Item = &'a Node>,
    image: &str,
    now: Timestamp,
) -> Deletion {
    let status = volume.status.as_ref();
    let failed = status.and_then(|s| s.phase.as_deref()) == Some("Failed");
    let refuse = |why: String| if failed { Deletion::Wait } else { Deletion::Failed(why) };
    let Some(host) = pinned_host(volume) else { return refuse("the volume is pinned to no node".into()) };
    let Some(node) = node_for_host(nodes, host) else { return Deletion::NodeGone };
    let Some(helper) = helper else {
        return match helper_pod(volume, &node, image) {
            Ok(pod) => Deletion::Start(Box::new(pod)),
            Err(why) => refuse(why),
        };
    };
    match helper.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some("Succeeded") => Deletion::Finish,
        Some("Failed") => {
            let message = failure(helper);
            if !failed || status.and_then(|s| s.message.as_deref()) != Some(message.as_str()) {
                return Deletion::Failed(message);
            }
            let waited = Duration::try_from(now.duration_since(finished_at(helper))).unwrap_or_default();
            if waited < RETRY_DELETE { Deletion::RetryAfter(RETRY_DELETE - waited) } else { Deletion::Restart }
        }
        _ => Deletion::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        let mut c = json!({
            "metadata": {"name": "data", "namespace": "web", "uid": "1234", "resourceVersion": "5"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": CLASS},
        });
        if let (Some(c), Some(v)) = (c["spec"].as_object_mut(), v.as_object()) {
            for (k, x) in v {
                c.insert(k.clone(), x.clone());
            }
        }
        serde_json::from_value(c).expect("claim")
    }

    fn node(name: &str, host: Option<&str>) -> Node {
        let labels = host.map(|h| json!({HOSTNAME_LABEL: h}));
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).expect("node")
    }

    #[test]
    fn the_default_class_waits_for_the_first_consumer_and_deletes() {
        let class = storage_class(true);
        assert_eq!(class.provisioner, PROVISIONER);
        assert_eq!(class.volume_binding_mode.as_deref(), Some("WaitForFirstConsumer"));
        assert_eq!(class.reclaim_policy.as_deref(), Some("Delete"));
        assert!(plan::is_default(&class));
        assert!(!plan::is_default(&storage_class(false)));
    }

    #[test]
    fn a_volume_is_a_host_path_on_the_selected_node_pre_bound_to_its_claim() {
        let class = storage_class(true);
        let n = node("n1", Some("host-1"));
        let v = volume(&claim(json!({})), &class, Some(&n), Path::new("/var/lib/rkube/local-path")).expect("volume");
        let expected = json!({
            "apiVersion": "v1", "kind": "PersistentVolume",
            "metadata": {"name": "pvc-1234", "annotations": {"pv.kubernetes.io/provisioned-by": "rkube.io/local-path"}},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteOnce"],
                "volumeMode": "Filesystem",
                "persistentVolumeReclaimPolicy": "Delete",
                "storageClassName": "local-path",
                "hostPath": {"path": "/var/lib/rkube/local-path/web_data_pvc-1234", "type": "DirectoryOrCreate"},
                "claimRef": {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "web", "name": "data",
                             "uid": "1234", "resourceVersion": "5"},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": ["host-1"]}]}]}},
            },
        });
        assert_eq!(serde_json::to_value(&v).expect("json"), expected);
        assert!(is_local_path(&v));
        assert_eq!(pinned_host(&v), Some("host-1"));
        assert!(plan::reachable_from(&v, &n));
        assert!(!plan::reachable_from(&v, &node("n2", Some("host-2"))));
        assert_eq!(node_for_host([&node("n2", Some("host-2")), &n], "host-1").as_deref(), Some("n1"));
        assert_eq!(node_for_host([&node("bare", None)], "bare").as_deref(), Some("bare"));
    }

    #[test]
    fn claims_it_cannot_serve_are_refused() {
        let class = storage_class(true);
        let n = node("n1", Some("n1"));
        let base = Path::new("/d");
        let cases = [
            ("no node", json!({}), false),
            ("block", json!({"volumeMode": "Block"}), true),
            ("selector", json!({"selector": {"matchLabels": {"a": "b"}}}), true),
            ("no request", json!({"resources": {}}), true),
        ];
        for (what, spec, with_node) in cases {
            let got = volume(&claim(spec), &class, with_node.then_some(&n), base);
            assert!(got.is_err(), "{what}: {got:?}");
        }
        let mut retained = storage_class(false);
        retained.reclaim_policy = Some("Retain".into());
        let v = volume(&claim(json!({})), &retained, Some(&n), base).expect("volume");
        assert_eq!(v.spec.and_then(|s| s.persistent_volume_reclaim_policy).as_deref(), Some("Retain"));
    }

    fn provisioned(path: &str, phase: &str, message: Option<&str>) -> PersistentVolume {
        serde_json::from_value(json!({
            "metadata": {"name": "pvc-1", "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER}},
            "spec": {"hostPath": {"path": path}, "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": ["n1"]}]}]}}},
            "status": {"phase": phase, "message": message},
        }))
        .expect("volume")
    }

    /// A helper in `phase`; a failed one stopped at `finished` (seconds), with exit code 1.
    fn helper(phase: &str, finished: i64) -> Pod {
        let at = Timestamp::from_second(finished).expect("t").to_string();
        serde_json::from_value(json!({
            "metadata": {"name": "local-path-delete-pvc-1", "namespace": HELPER_NAMESPACE},
            "status": {"phase": phase, "containerStatuses": [{"name": "delete", "image": "i", "imageID": "", "ready": false,
                "restartCount": 0, "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]},
        }))
        .expect("pod")
    }

    #[test]
    fn the_helper_removes_the_directory_under_its_parent() {
        let v = provisioned("/var/lib/rkube/local-path/web_data_pvc-1", "Released", None);
        let pod = helper_pod(&v, "n1", "rkube/pause:1").expect("pod");
        let expected = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "local-path-delete-pvc-1", "namespace": "kube-system",
                         "labels": {"rkube.io/local-path-volume": "pvc-1"}},
            "spec": {
                "nodeName": "n1", "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
                "tolerations": [{"operator": "Exists"}],
                "containers": [{"name": "delete", "image": "rkube/pause:1", "imagePullPolicy": "IfNotPresent",
                    "command": ["/bin/busybox", "rm", "-rf", "/data/web_data_pvc-1"],
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}],
                "volumes": [{"name": "data", "hostPath": {"path": "/var/lib/rkube/local-path", "type": "DirectoryOrCreate"}}],
            },
        });
        assert_eq!(serde_json::to_value(&pod).expect("json"), expected);
        for bad in ["relative/x", "/x", "/", "/a/../b", ""] {
            assert!(helper_pod(&provisioned(bad, "Released", None), "n1", "i").is_err(), "{bad}");
        }
    }

    #[test]
    fn deletion_steps() {
        let now = Timestamp::from_second(1_000).expect("t");
        let path = "/d/web_data_pvc-1";
        let n1 = node("n1", Some("n1"));
        let step = |v: &PersistentVolume, h: Option<&Pod>, node: Option<&str>| {
            let nodes: Vec<&Node> = node.map(|_| &n1).into_iter().collect();
            deletion(v, h, nodes, "i", now)
        };
        let why = "helper pod kube-system/local-path-delete-pvc-1 failed to remove the directory: exit code 1";
        let released = provisioned(path, "Released", None);
        let failed = provisioned(path, "Failed", Some(why));
        let started = |d: Deletion| matches!(d, Deletion::Start(_));
        assert!(started(step(&released, None, Some("n1"))), "no helper yet: start one");
        assert_eq!(step(&released, Some(&helper("Pending", 0)), Some("n1")), Deletion::Wait);
        assert_eq!(step(&released, Some(&helper("Running", 0)), Some("n1")), Deletion::Wait);
        assert_eq!(step(&released, Some(&helper("Succeeded", 990)), Some("n1")), Deletion::Finish);
        assert_eq!(step(&released, None, None), Deletion::NodeGone);
        assert_eq!(step(&released, Some(&helper("Failed", 990)), Some("n1")), Deletion::Failed(why.into()));
        assert_eq!(
            step(&failed, Some(&helper("Failed", 990)), Some("n1")),
            Deletion::RetryAfter(Duration::from_secs(20)),
            "the failed helper is kept a while"
        );
        assert_eq!(step(&failed, Some(&helper("Failed", 900)), Some("n1")), Deletion::Restart);
        assert!(started(step(&failed, None, Some("n1"))), "then a new helper tries");
        let other = provisioned(path, "Failed", Some("an older failure"));
        assert_eq!(step(&other, Some(&helper("Failed", 990)), Some("n1")), Deletion::Failed(why.into()));
        assert!(matches!(step(&provisioned("/", "Released", None), None, Some("n1")), Deletion::Failed(_)));
        assert_eq!(step(&provisioned("/", "Failed", Some("x")), None, Some("n1")), Deletion::Wait, "refused once");
        let mut unpinned = released.clone();
        unpinned.spec.get_or_insert_default().node_affinity = None;
        assert!(matches!(step(&unpinned, None, Some("n1")), Deletion::Failed(_)));
    }
}

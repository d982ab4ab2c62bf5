//! The binder's decisions, pure: which volume a claim binds to (upstream's matching: the
//! smallest Available volume that fits), what a binding writes on both objects, and what a claim
//! ([`claim`]) or a volume ([`volume`]) needs next.

use std::collections::BTreeMap;
use std::sync::Arc;

use api_types::labels::LabelSelector;
use k8s_openapi::api::core::v1::{
    Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimStatus, PersistentVolumeStatus,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;

/// On a claim: the binder has finished binding it (it is then synced as a bound claim).
pub const BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume: the binder, not the user, chose the other side.
pub const BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a volume: the provisioner that made it (and so deletes it).
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// On a claim of a WaitForFirstConsumer class: the node the scheduler chose for its first pod.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// On a claim: the provisioner expected to make its volume.
pub const STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The annotation that named a class before `storageClassName`; it still wins.
pub const BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
pub const IS_DEFAULT_CLASS: &str = "storageclass.kubernetes.io/is-default-class";
pub const BETA_IS_DEFAULT_CLASS: &str = "storageclass.beta.kubernetes.io/is-default-class";
pub const WAIT_FOR_FIRST_CONSUMER: &str = "WaitForFirstConsumer";
/// The provisioner of classes whose volumes are all made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";
const YES: &str = "yes";

/// An event to record on the object synced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    fn normal(reason: &'static str, message: impl Into<String>) -> Self {
        Event { warning: false, reason, message: message.into() }
    }

    fn warning(reason: &'static str, message: impl Into<String>) -> Self {
        Event { warning: true, reason, message: message.into() }
    }
}

fn annotation<'a>(meta: &'a ObjectMeta, key: &str) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

fn set_annotation(meta: &mut ObjectMeta, key: &str, value: &str) {
    meta.annotations.get_or_insert_default().insert(key.into(), value.into());
}

/// A claim's class: the beta annotation if set, else `spec.storageClassName`, else `""`.
pub fn claim_class(claim: &PersistentVolumeClaim) -> &str {
    annotation(&claim.metadata, BETA_STORAGE_CLASS)
        .or_else(|| claim.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the claim names a class at all (`""` counts: it asks for volumes without one).
pub fn claim_has_class(claim: &PersistentVolumeClaim) -> bool {
    annotation(&claim.metadata, BETA_STORAGE_CLASS).is_some()
        || claim.spec.as_ref().is_some_and(|s| s.storage_class_name.is_some())
}

/// A volume's class, the same way.
pub fn volume_class(volume: &PersistentVolume) -> &str {
    annotation(&volume.metadata, BETA_STORAGE_CLASS)
        .or_else(|| volume.spec.as_ref()?.storage_class_name.as_deref())
        .unwrap_or("")
}

pub fn is_default(class: &StorageClass) -> bool {
    [IS_DEFAULT_CLASS, BETA_IS_DEFAULT_CLASS].iter().any(|k| annotation(&class.metadata, k) == Some("true"))
}

/// The default class: of those marked default, the newest (upstream since 1.28), ties to the
/// first name.
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<&StorageClass> {
    let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
    classes
        .iter()
        .map(Arc::as_ref)
        .filter(|c| is_default(c))
        .min_by(|a, b| created(b).cmp(&created(a)).then_with(|| a.metadata.name.cmp(&b.metadata.name)))
}

pub fn is_wait_for_first_consumer(class: &StorageClass) -> bool {
    class.volume_binding_mode.as_deref() == Some(WAIT_FOR_FIRST_CONSUMER)
}

/// A storage quantity in nano-units, or `None` when absent or not a quantity.
fn storage(resources: Option<&BTreeMap<String, Quantity>>) -> Option<i128> {
    resources?.get("storage").and_then(|q| api_types::quantity::parse(q).ok()).map(|q| q.nanos())
}

fn requested(claim: &PersistentVolumeClaim) -> i128 {
    storage(claim.spec.as_ref().and_then(|s| s.resources.as_ref()).and_then(|r| r.requests.as_ref())).unwrap_or(0)
}

fn capacity(volume: &PersistentVolume) -> Option<i128> {
    storage(volume.spec.as_ref()?.capacity.as_ref())
}

fn volume_mode(mode: Option<&String>) -> &str {
    mode.map(String::as_str).unwrap_or("Filesystem")
}

fn claim_modes(claim: &PersistentVolumeClaim) -> &[String] {
    claim.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default()
}

fn volume_modes(volume: &PersistentVolume) -> &[String] {
    volume.spec.as_ref().and_then(|s| s.access_modes.as_deref()).unwrap_or_default()
}

fn phase(volume: &PersistentVolume) -> &str {
    volume.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("Pending")
}

fn claim_ref(volume: &PersistentVolume) -> Option<&ObjectReference> {
    volume.spec.as_ref()?.claim_ref.as_ref()
}

fn volume_name(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.spec.as_ref()?.volume_name.as_deref().filter(|n| !n.is_empty())
}

/// Whether the volume's `claimRef` names this claim (and its uid, when the reference has one:
/// a reference without is a user's pre-binding by name).
pub fn is_bound_to(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
    claim_ref(volume).is_some_and(|r| {
        r.name == claim.metadata.name
            && r.namespace == claim.metadata.namespace
            && r.uid.as_deref().is_none_or(|u| u.is_empty() || Some(u) == claim.metadata.uid.as_deref())
    })
}

/// Whether the volume can be used from `node`: its required node affinity (terms ORed) holds.
pub fn reachable_from(volume: &PersistentVolume, node: &Node) -> bool {
    let Some(required) = volume.spec.as_ref().and_then(|s| s.node_affinity.as_ref()).and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let name = node.metadata.name.as_deref().unwrap_or("");
    api_types::node_selector::matches(required, labels, name)
}

/// Upstream's findMatchingVolume: a volume pre-bound to the claim wins; otherwise, of the
/// Available, unclaimed volumes of the claim's class and volume mode whose access modes include
/// the claim's, whose labels its selector matches and (with `node`) that the node can reach, the
/// one with the fewest access modes and then the least capacity that still holds the request.
/// With delayed binding and no node yet, only a pre-bound volume is taken.
pub fn find_match<'a>(
    claim: &PersistentVolumeClaim,
    volumes: &'a [Arc<PersistentVolume>],
    delay_binding: bool,
    node: Option<&Node>,
) -> Option<&'a Arc<PersistentVolume>> {
    let spec = claim.spec.as_ref();
    let selector = match spec.and_then(|s| s.selector.as_ref()).map(LabelSelector::from_label_selector) {
        Some(Ok(s)) => Some(s),
        Some(Err(_)) => return None,
        None => None,
    };
    let wanted = claim_modes(claim);
    let request = requested(claim);
    let class = claim_class(claim);
    let mode = volume_mode(spec.and_then(|s| s.volume_mode.as_ref()));
    let no_labels = BTreeMap::new();
    let mut best: Option<(&Arc<PersistentVolume>, (usize, i128))> = None;
    for volume in volumes {
        let Some(vspec) = volume.spec.as_ref() else { continue };
        if volume.metadata.deletion_timestamp.is_some() || volume_mode(vspec.volume_mode.as_ref()) != mode {
            continue;
        }
        let modes = volume_modes(volume);
        if !wanted.iter().all(|m| modes.contains(m)) {
            continue;
        }
        let reachable = node.is_none_or(|n| reachable_from(volume, n));
        if is_bound_to(volume, claim) {
            // Pre-bound to this claim, but not usable from this node: nothing else will do.
            return reachable.then_some(volume);
        }
        if node.is_none() && delay_binding {
            continue;
        }
        if phase(volume) != "Available" || vspec.claim_ref.is_some() || volume_class(volume) != class || !reachable {
            continue;
        }
        if selector.as_ref().is_some_and(|s| !s.matches(volume.metadata.labels.as_ref().unwrap_or(&no_labels))) {
            continue;
        }
        let Some(size) = capacity(volume).filter(|c| *c >= request) else { continue };
        let rank = (modes.len(), size);
        if best.as_ref().is_none_or(|(_, r)| rank < *r) {
            best = Some((volume, rank));
        }
    }
    best.map(|(v, _)| v)
}

/// Why a volume a claim asked for by name cannot be its volume (upstream's
/// checkVolumeSatisfyClaim), if it cannot.
pub fn mismatch(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Option<String> {
    if capacity(volume).unwrap_or(0) < requested(claim) {
        return Some("requested PV is too small".into());
    }
    if volume_class(volume) != claim_class(claim) {
        return Some("storageClassName does not match".into());
    }
    let claim_mode = volume_mode(claim.spec.as_ref().and_then(|s| s.volume_mode.as_ref()));
    if volume_mode(volume.spec.as_ref().and_then(|s| s.volume_mode.as_ref())) != claim_mode {
        return Some("incompatible volumeMode".into());
    }
    let modes = volume_modes(volume);
    if !claim_modes(claim).iter().all(|m| modes.contains(m)) {
        return Some("incompatible accessMode".into());
    }
    None
}

/// A reference to the claim, as a volume's `claimRef`.
pub fn reference(claim: &PersistentVolumeClaim) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("PersistentVolumeClaim".into()),
        namespace: claim.metadata.namespace.clone(),
        name: claim.metadata.name.clone(),
        uid: claim.metadata.uid.clone(),
        resource_version: claim.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// Both sides of a binding as they should be (status included; it is written separately).
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub volume: PersistentVolume,
    pub claim: PersistentVolumeClaim,
}

impl Binding {
    pub fn volume_changed(&self, current: &PersistentVolume) -> bool {
        self.volume.metadata.annotations != current.metadata.annotations || self.volume.spec != current.spec
    }

    pub fn claim_changed(&self, current: &PersistentVolumeClaim) -> bool {
        self.claim.metadata.annotations != current.metadata.annotations || self.claim.spec != current.spec
    }

    fn is_noop(&self, volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> bool {
        !self.volume_changed(volume)
            && !self.claim_changed(claim)
            && phase(volume) == "Bound"
            && self.claim.status == claim.status
    }
}

/// Upstream's bind: the volume's `claimRef` names the claim (marked bound-by-controller unless it
/// already named it), the claim's `volumeName` the volume (marked bound-by-controller when the
/// binder set it) and bind-completed; both Bound, the claim with the volume's capacity and
/// access modes.
pub fn bind(volume: &PersistentVolume, claim: &PersistentVolumeClaim) -> Binding {
    let mut v = volume.clone();
    let same_claim = claim_ref(volume).is_some_and(|r| {
        r.name == claim.metadata.name && r.namespace == claim.metadata.namespace && r.uid == claim.metadata.uid
    });
    if !same_claim {
        if !is_bound_to(volume, claim) {
            set_annotation(&mut v.metadata, BOUND_BY_CONTROLLER, YES);
        }
        v.spec.get_or_insert_default().claim_ref = Some(reference(claim));
    }
    v.status.get_or_insert_default().phase = Some("Bound".into());
    let mut c = claim.clone();
    let name = volume.metadata.name.clone().unwrap_or_default();
    let spec = c.spec.get_or_insert_default();
    if spec.volume_name.as_deref() != Some(name.as_str()) {
        spec.volume_name = Some(name);
        set_annotation(&mut c.metadata, BOUND_BY_CONTROLLER, YES);
    }
    set_annotation(&mut c.metadata, BIND_COMPLETED, YES);
    let vspec = volume.spec.as_ref();
    c.status = Some(PersistentVolumeClaimStatus {
        phase: Some("Bound".into()),
        access_modes: vspec.and_then(|s| s.access_modes.clone()),
        capacity: vspec.and_then(|s| s.capacity.clone()),
        ..claim.status.clone().unwrap_or_default()
    });
    Binding { volume: v, claim: c }
}

/// The claim with the annotations that name its provisioner, if they are missing.
pub fn with_provisioner(claim: &PersistentVolumeClaim, provisioner: &str) -> Option<PersistentVolumeClaim> {
    let has = |k| annotation(&claim.metadata, k) == Some(provisioner);
    if has(STORAGE_PROVISIONER) && has(BETA_STORAGE_PROVISIONER) {
        return None;
    }
    let mut c = claim.clone();
    set_annotation(&mut c.metadata, STORAGE_PROVISIONER, provisioner);
    set_annotation(&mut c.metadata, BETA_STORAGE_PROVISIONER, provisioner);
    Some(c)
}

/// The volume with `phase` (and a message for Failed), its transition time moved when the
/// phase changes.
pub fn with_phase(volume: &PersistentVolume, phase: &str, message: Option<String>, now: Timestamp) -> PersistentVolume {
    let mut v = volume.clone();
    let status = v.status.get_or_insert_with(PersistentVolumeStatus::default);
    if status.phase.as_deref() != Some(phase) {
        status.phase = Some(phase.into());
        status.last_phase_transition_time = Some(Time(now));
    }
    status.message = message;
    v
}

/// What a claim needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimPlan {
    Steady,
    /// `status.phase` should be this (Pending or Lost), with an event to tell why.
    Phase(&'static str, Option<Event>),
    Bind(Box<Binding>),
    /// No class and nothing fits: give it the default class (upstream's retroactive default).
    AssignClass(String),
    /// Nothing fits and the class has a provisioner: the claim names it and it makes a volume.
    Provision(String),
    /// The selected node is gone: drop the annotation so the scheduler chooses again.
    Reschedule(Event),
}

/// Upstream's syncClaim. `node` is the node named by the claim's selected-node annotation, if
/// it exists.
pub fn claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    classes: &[Arc<StorageClass>],
    node: Option<&Node>,
) -> ClaimPlan {
    if annotation(&claim.metadata, BIND_COMPLETED).is_some() {
        bound_claim(claim, volumes)
    } else if claim.metadata.deletion_timestamp.is_some() {
        // Held by its pvc-protection finalizer: not worth a volume any more.
        ClaimPlan::Steady
    } else {
        unbound_claim(claim, volumes, classes, node)
    }
}

fn unbound_claim(
    claim: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    classes: &[Arc<StorageClass>],
    node: Option<&Node>,
) -> ClaimPlan {
    let pending = |event| ClaimPlan::Phase("Pending", event);
    if let Some(name) = volume_name(claim) {
        // The user asked for this volume.
        let Some(volume) = volumes.iter().find(|v| v.metadata.name.as_deref() == Some(name)) else {
            return pending(None);
        };
        if claim_ref(volume).is_none() {
            return match mismatch(volume, claim) {
                Some(why) => pending(Some(Event::warning(
                    "VolumeMismatch",
                    format!("Cannot bind to requested volume {name:?}: {why}"),
                ))),
                None => ClaimPlan::Bind(Box::new(bind(volume, claim))),
            };
        }
        if is_bound_to(volume, claim) {
            return ClaimPlan::Bind(Box::new(bind(volume, claim)));
        }
        // Claimed by another: wait for it to be released.
        return pending(None);
    }
    let class_name = claim_class(claim);
    let class = classes.iter().find(|c| !class_name.is_empty() && c.metadata.name.as_deref() == Some(class_name));
    let delayed = class.is_some_and(|c| is_wait_for_first_consumer(c));
    let selected = annotation(&claim.metadata, SELECTED_NODE);
    if let (true, Some(wanted), None) = (delayed, selected, node) {
        return ClaimPlan::Reschedule(Event::warning(
            "ProvisioningFailed",
            format!("the selected node {wanted:?} no longer exists; the pod is to be scheduled again"),
        ));
    }
    if let Some(volume) = find_match(claim, volumes, delayed, node.filter(|_| delayed)) {
        return ClaimPlan::Bind(Box::new(bind(volume, claim)));
    }
    if !claim_has_class(claim)
        && let Some(default) = default_class(classes).and_then(|c| c.metadata.name.clone())
    {
        return ClaimPlan::AssignClass(default);
    }
    if delayed && selected.is_none() {
        return pending(Some(Event::normal(
            "WaitForFirstConsumer",
            "waiting for first consumer to be created before binding",
        )));
    }
    if class_name.is_empty() {
        return pending(Some(Event::normal(
            "FailedBinding",
            "no persistent volumes available for this claim and no storage class is set",
        )));
    }
    match class {
        None => pending(Some(Event::warning(
            "ProvisioningFailed",
            format!("storageclass.storage.k8s.io {class_name:?} not found"),
        ))),
        Some(c) if c.provisioner == NO_PROVISIONER => pending(Some(Event::normal(
            "FailedBinding",
            format!("no persistent volumes available for this claim, and class {class_name:?} does not provision"),
        ))),
        Some(c) => ClaimPlan::Provision(c.provisioner.clone()),
    }
}

fn bound_claim(claim: &PersistentVolumeClaim, volumes: &[Arc<PersistentVolume>]) -> ClaimPlan {
    let lost = |reason, message: &str| ClaimPlan::Phase("Lost", Some(Event::warning(reason, message)));
    let Some(name) = volume_name(claim) else {
        return lost("ClaimLost", "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!");
    };
    let Some(volume) = volumes.iter().find(|v| v.metadata.name.as_deref() == Some(name)) else {
        return lost("ClaimLost", "Bound claim has lost its PersistentVolume. Data on the volume is lost!");
    };
    let ours = claim_ref(volume).map(|r| r.uid.as_deref().unwrap_or("") == claim.metadata.uid.as_deref().unwrap_or(""));
    match ours {
        // Unbound volume (or a cache behind the binder's own write): bind it again.
        None | Some(true) => {
            let binding = bind(volume, claim);
            if binding.is_noop(volume, claim) { ClaimPlan::Steady } else { ClaimPlan::Bind(Box::new(binding)) }
        }
        Some(false) => lost("ClaimMisbound", "Two claims are bound to the same volume, this one is bound incorrectly"),
    }
}

/// What a volume needs.
#[derive(Debug, Clone, PartialEq)]
pub enum VolumePlan {
    Steady,
    /// `status.phase` should be this (Available or Bound).
    Phase(&'static str),
    /// Give the volume back: the volume as it should be (then Available).
    Unbind(Box<PersistentVolume>),
    /// Its claim is gone: Released (if it is not Released or Failed yet), then its reclaim
    /// policy.
    Reclaim {
        release: bool,
    },
}

/// Upstream's syncVolume. `claim` is the claim the volume's `claimRef` names, as found by name
/// (its uid is checked here). A volume being deleted (held by its pv-protection finalizer while
/// Bound) is left as it is until its claim is gone; then it is released and reclaimed once, which
/// lets the finalizer go.
pub fn volume(volume: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumePlan {
    let phase = phase(volume);
    let deleting = volume.metadata.deletion_timestamp.is_some();
    let becomes = |p: &'static str| if deleting || phase == p { VolumePlan::Steady } else { VolumePlan::Phase(p) };
    let Some(r) = claim_ref(volume) else { return becomes("Available") };
    let Some(uid) = r.uid.as_deref().filter(|u| !u.is_empty()) else {
        // Pre-bound by name: the claim's sync binds it.
        return becomes("Available");
    };
    let release = !matches!(phase, "Released" | "Failed");
    let Some(claim) = claim.filter(|c| c.metadata.uid.as_deref() == Some(uid)) else {
        // A volume being deleted that was released already needs nothing more: its reclaim
        // started then (or it was deleted by the reclaim itself).
        return if deleting && !release { VolumePlan::Steady } else { VolumePlan::Reclaim { release } };
    };
    if deleting {
        return VolumePlan::Steady;
    }
    match volume_name(claim) {
        // The claim's sync finishes the binding.
        None => VolumePlan::Steady,
        Some(n) if volume.metadata.name.as_deref() == Some(n) => becomes("Bound"),
        Some(_) => {
            let policy = volume.spec.as_ref().and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
            if annotation(&volume.metadata, PROVISIONED_BY).is_some() && policy == Some("Delete") {
                // Made for a claim that got another volume: not needed.
                return VolumePlan::Reclaim { release };
            }
            let mut v = volume.clone();
            let by_controller = annotation(&volume.metadata, BOUND_BY_CONTROLLER).is_some();
            if let Some(spec) = v.spec.as_mut() {
                if by_controller {
                    spec.claim_ref = None;
                } else if let Some(r) = spec.claim_ref.as_mut() {
                    // The user's pre-binding stays; the claim may come back to it.
                    r.uid = None;
                }
            }
            if let Some(a) = v.metadata.annotations.as_mut() {
                a.remove(BOUND_BY_CONTROLLER);
            }
            VolumePlan::Unbind(Box::new(v))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(v: serde_json::Value) -> Arc<PersistentVolume> {
        Arc::new(serde_json::from_value(v).expect("pv"))
    }

    /// An Available volume of `class` with `size` and `modes`.
    fn available(name: &str, size: &str, modes: &[&str], class: Option<&str>) -> Arc<PersistentVolume> {
        pv(json!({
            "metadata": {"name": name},
            "spec": {"capacity": {"storage": size}, "accessModes": modes, "storageClassName": class,
                     "hostPath": {"path": format!("/data/{name}")}},
            "status": {"phase": "Available"},
        }))
    }

    fn pvc(v: serde_json::Value) -> PersistentVolumeClaim {
        let mut claim = json!({
            "metadata": {"name": "c", "namespace": "ns", "uid": "u1", "resourceVersion": "7"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}},
                     "storageClassName": "manual"},
            "status": {"phase": "Pending"},
        });
        merge(&mut claim, v);
        serde_json::from_value(claim).expect("pvc")
    }

    fn merge(into: &mut serde_json::Value, from: serde_json::Value) {
        match (into, from) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn class(name: &str, provisioner: &str, mode: &str, default: bool, created: &str) -> Arc<StorageClass> {
        let annotations = if default { json!({IS_DEFAULT_CLASS: "true"}) } else { json!({}) };
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": annotations, "creationTimestamp": created},
                "provisioner": provisioner, "volumeBindingMode": mode,
            }))
            .expect("class"),
        )
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}))
            .expect("node")
    }

    fn pinned(name: &str, host: &str) -> Arc<PersistentVolume> {
        let mut v = (*available(name, "5Gi", &["ReadWriteOnce"], Some("manual"))).clone();
        v.spec.get_or_insert_default().node_affinity =
            serde_json::from_value(json!({"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [host]}]}]}}))
            .expect("affinity");
        Arc::new(v)
    }

    fn matched(claim: &PersistentVolumeClaim, volumes: &[Arc<PersistentVolume>]) -> Option<String> {
        find_match(claim, volumes, false, None).and_then(|v| v.metadata.name.clone())
    }

    #[test]
    fn a_claim_gets_the_smallest_available_volume_that_fits() {
        type Case = (&'static str, Vec<Arc<PersistentVolume>>, Option<&'static str>);
        let wanted = pvc(json!({}));
        let cases: Vec<Case> = vec![
            (
                "smallest that holds the request",
                vec![
                    available("small", "1Gi", &["ReadWriteOnce"], Some("manual")),
                    available("big", "10Gi", &["ReadWriteOnce"], Some("manual")),
                    available("fits", "3Gi", &["ReadWriteOnce"], Some("manual")),
                    available("exact", "2Gi", &["ReadWriteOnce"], Some("manual")),
                ],
                Some("exact"),
            ),
            (
                "access modes must include the claim's; fewer modes first",
                vec![
                    available("ro", "2Gi", &["ReadOnlyMany"], Some("manual")),
                    available("many", "2Gi", &["ReadWriteOnce", "ReadWriteMany"], Some("manual")),
                    available("more", "5Gi", &["ReadWriteOnce"], Some("manual")),
                ],
                Some("more"),
            ),
            ("another class is not taken", vec![available("fast", "2Gi", &["ReadWriteOnce"], Some("fast"))], None),
            ("nor no class", vec![available("none", "2Gi", &["ReadWriteOnce"], None)], None),
            (
                "a volume not Available yet is not taken",
                vec![pv(json!({"metadata": {"name": "new"}, "spec": {"capacity": {"storage": "2Gi"},
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "manual"}, "status": {"phase": "Pending"}}))],
                None,
            ),
            (
                "nor one claimed by another",
                vec![pv(json!({"metadata": {"name": "taken"}, "spec": {"capacity": {"storage": "2Gi"},
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                    "claimRef": {"namespace": "ns", "name": "other"}}, "status": {"phase": "Available"}}))],
                None,
            ),
            (
                "nor a Block volume for a Filesystem claim",
                vec![pv(json!({"metadata": {"name": "block"}, "spec": {"capacity": {"storage": "2Gi"},
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "volumeMode": "Block"},
                    "status": {"phase": "Available"}}))],
                None,
            ),
            (
                "a volume pre-bound to the claim wins, even if others are smaller",
                vec![
                    available("exact", "2Gi", &["ReadWriteOnce"], Some("manual")),
                    pv(json!({"metadata": {"name": "mine"}, "spec": {"capacity": {"storage": "9Gi"},
                        "accessModes": ["ReadWriteOnce"], "storageClassName": "other",
                        "claimRef": {"namespace": "ns", "name": "c"}}, "status": {"phase": "Available"}})),
                ],
                Some("mine"),
            ),
            (
                "pre-bound to a claim of that name but another uid is not ours",
                vec![pv(json!({"metadata": {"name": "old"}, "spec": {"capacity": {"storage": "2Gi"},
                    "accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                    "claimRef": {"namespace": "ns", "name": "c", "uid": "u0"}}, "status": {"phase": "Released"}}))],
                None,
            ),
        ];
        for (what, volumes, want) in cases {
            assert_eq!(matched(&wanted, &volumes).as_deref(), want, "{what}");
        }
    }

    #[test]
    fn the_empty_class_selectors_and_volume_modes_narrow_the_match() {
        let volumes = vec![
            available("none", "1Gi", &["ReadWriteOnce"], None),
            pv(json!({"metadata": {"name": "ssd", "labels": {"disk": "ssd"}}, "spec": {"capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOnce"], "storageClassName": "manual"}, "status": {"phase": "Available"}})),
            available("plain", "3Gi", &["ReadWriteOnce"], Some("manual")),
            pv(json!({"metadata": {"name": "block"}, "spec": {"capacity": {"storage": "8Gi"},
                "accessModes": ["ReadWriteOnce"], "storageClassName": "manual", "volumeMode": "Block"},
                "status": {"phase": "Available"}})),
        ];
        let cases = [
            (
                "\"\" matches only volumes without a class",
                json!({"spec": {"storageClassName": "",
                "resources": {"requests": {"storage": "1Gi"}}}}),
                Some("none"),
            ),
            (
                "the selector picks labelled volumes",
                json!({"spec": {"selector": {"matchLabels": {"disk": "ssd"}}}}),
                Some("ssd"),
            ),
            ("without a selector the smallest", json!({}), Some("plain")),
            ("Block claims take Block volumes", json!({"spec": {"volumeMode": "Block"}}), Some("block")),
            ("too big for all", json!({"spec": {"resources": {"requests": {"storage": "1Ti"}}}}), None),
            (
                "an invalid selector matches nothing",
                json!({"spec": {"selector": {"matchExpressions": [
                {"key": "disk", "operator": "Sometimes"}]}}}),
                None,
            ),
        ];
        for (what, claim, want) in cases {
            assert_eq!(matched(&pvc(claim), &volumes).as_deref(), want, "{what}");
        }
    }

    #[test]
    fn with_a_node_only_volumes_it_reaches_match_and_delayed_claims_wait_for_one() {
        let volumes = vec![pinned("on-a", "a"), pinned("on-b", "b")];
        let claim = pvc(json!({}));
        let name = |v: Option<&Arc<PersistentVolume>>| v.and_then(|v| v.metadata.name.clone());
        assert_eq!(name(find_match(&claim, &volumes, true, Some(&node("b")))).as_deref(), Some("on-b"));
        assert_eq!(name(find_match(&claim, &volumes, true, None)), None, "no node chosen yet");
        assert_eq!(name(find_match(&claim, &volumes, true, Some(&node("c")))), None);
        let mut prebound = (*pinned("mine", "a")).clone();
        prebound.spec.get_or_insert_default().claim_ref =
            serde_json::from_value(json!({"namespace": "ns", "name": "c", "uid": "u1"})).expect("ref");
        let volumes = vec![Arc::new(prebound)];
        assert_eq!(name(find_match(&claim, &volumes, true, None)).as_deref(), Some("mine"), "provisioned for it");
        assert_eq!(name(find_match(&claim, &volumes, true, Some(&node("b")))), None, "but not reachable from b");
    }

    #[test]
    fn binding_writes_both_sides_with_upstreams_annotations() {
        let claim = pvc(json!({}));
        let b = bind(&available("v", "3Gi", &["ReadWriteOnce", "ReadOnlyMany"], Some("manual")), &claim);
        let r = b.volume.spec.as_ref().and_then(|s| s.claim_ref.clone()).expect("claimRef");
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref(), r.resource_version.as_deref()),
            (Some("ns"), Some("c"), Some("u1"), Some("7"))
        );
        assert_eq!(annotation(&b.volume.metadata, BOUND_BY_CONTROLLER), Some("yes"));
        assert_eq!(phase(&b.volume), "Bound");
        assert_eq!(volume_name(&b.claim), Some("v"));
        assert_eq!(annotation(&b.claim.metadata, BOUND_BY_CONTROLLER), Some("yes"));
        assert_eq!(annotation(&b.claim.metadata, BIND_COMPLETED), Some("yes"));
        let status = b.claim.status.clone().unwrap_or_default();
        assert_eq!(status.phase.as_deref(), Some("Bound"));
        assert_eq!(status.capacity.and_then(|c| c.get("storage").cloned()), Some(Quantity("3Gi".into())));
        assert_eq!(status.access_modes, Some(vec!["ReadWriteOnce".into(), "ReadOnlyMany".into()]));

        // Pre-bound by the user (by name) and asked for by name: no bound-by-controller marks.
        let mut prebound = (*available("v", "3Gi", &["ReadWriteOnce"], Some("manual"))).clone();
        prebound.spec.get_or_insert_default().claim_ref =
            serde_json::from_value(json!({"namespace": "ns", "name": "c"})).expect("ref");
        let b = bind(&prebound, &pvc(json!({"spec": {"volumeName": "v"}})));
        assert_eq!(annotation(&b.volume.metadata, BOUND_BY_CONTROLLER), None);
        assert_eq!(annotation(&b.claim.metadata, BOUND_BY_CONTROLLER), None);
        assert_eq!(
            b.volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()).and_then(|r| r.uid.as_deref()),
            Some("u1")
        );
    }

    fn bound_pair() -> (Arc<PersistentVolume>, PersistentVolumeClaim) {
        let b = bind(&available("v", "2Gi", &["ReadWriteOnce"], Some("manual")), &pvc(json!({})));
        (Arc::new(b.volume), b.claim)
    }

    fn kind(plan: &ClaimPlan) -> String {
        match plan {
            ClaimPlan::Steady => "steady".into(),
            ClaimPlan::Phase(p, e) => format!("{p} {}", e.as_ref().map(|e| e.reason).unwrap_or("-")),
            ClaimPlan::Bind(b) => format!("bind {}", b.volume.metadata.name.as_deref().unwrap_or("")),
            ClaimPlan::AssignClass(c) => format!("class {c}"),
            ClaimPlan::Provision(p) => format!("provision {p}"),
            ClaimPlan::Reschedule(_) => "reschedule".into(),
        }
    }

    #[test]
    fn unbound_claims_bind_wait_or_provision() {
        let classes = vec![
            class("manual", NO_PROVISIONER, "Immediate", false, "2024-01-01T00:00:00Z"),
            class("local-path", "rkube.io/local-path", WAIT_FOR_FIRST_CONSUMER, true, "2024-01-01T00:00:00Z"),
            class("cloud", "example.com/disk", "Immediate", false, "2024-01-01T00:00:00Z"),
        ];
        let fits = vec![available("fits", "2Gi", &["ReadWriteOnce"], Some("manual"))];
        let n = node("n1");
        type Case<'a> = (&'a str, PersistentVolumeClaim, &'a [Arc<PersistentVolume>], Option<&'a Node>, &'a str);
        let cases: Vec<Case> = vec![
            ("a fitting volume binds", pvc(json!({})), &fits, None, "bind fits"),
            ("none fits in a class that does not provision", pvc(json!({})), &[], None, "Pending FailedBinding"),
            ("no class at all", pvc(json!({"spec": {"storageClassName": ""}})), &[], None, "Pending FailedBinding"),
            (
                "no class field: the default is given",
                pvc(json!({"spec": {"storageClassName": null}})),
                &[],
                None,
                "class local-path",
            ),
            (
                "a missing class",
                pvc(json!({"spec": {"storageClassName": "gone"}})),
                &[],
                None,
                "Pending ProvisioningFailed",
            ),
            (
                "WaitForFirstConsumer without a node waits",
                pvc(json!({"spec": {"storageClassName": "local-path"}})),
                &[],
                None,
                "Pending WaitForFirstConsumer",
            ),
            (
                "and with one provisions",
                pvc(json!({"metadata": {"annotations": {SELECTED_NODE: "n1"}},
                    "spec": {"storageClassName": "local-path"}})),
                &[],
                Some(&n),
                "provision rkube.io/local-path",
            ),
            (
                "a selected node that is gone sends the pod back to the scheduler",
                pvc(json!({"metadata": {"annotations": {SELECTED_NODE: "n9"}},
                    "spec": {"storageClassName": "local-path"}})),
                &[],
                None,
                "reschedule",
            ),
            (
                "an external provisioner's class",
                pvc(json!({"spec": {"storageClassName": "cloud"}})),
                &[],
                None,
                "provision example.com/disk",
            ),
            (
                "a volume asked for by name that does not exist",
                pvc(json!({"spec": {"volumeName": "nope"}})),
                &fits,
                None,
                "Pending -",
            ),
            ("one that exists and fits", pvc(json!({"spec": {"volumeName": "fits"}})), &fits, None, "bind fits"),
            (
                "a claim being deleted is not bound",
                pvc(json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}})),
                &fits,
                None,
                "steady",
            ),
            (
                "one too small",
                pvc(json!({"spec": {"volumeName": "fits", "resources": {"requests": {"storage": "3Gi"}}}})),
                &fits,
                None,
                "Pending VolumeMismatch",
            ),
        ];
        for (what, c, volumes, node, want) in cases {
            assert_eq!(kind(&claim(&c, volumes, &classes, node)), want, "{what}");
        }
    }

    #[test]
    fn bound_claims_stay_bound_or_are_lost() {
        let (volume, bound) = bound_pair();
        assert_eq!(kind(&claim(&bound, std::slice::from_ref(&volume), &[], None)), "steady");
        assert_eq!(kind(&claim(&bound, &[], &[], None)), "Lost ClaimLost", "the volume is gone");
        let mut unbound_volume = (*volume).clone();
        unbound_volume.spec.get_or_insert_default().claim_ref = None;
        assert_eq!(kind(&claim(&bound, &[Arc::new(unbound_volume)], &[], None)), "bind v", "bound again");
        let mut stolen = (*volume).clone();
        if let Some(r) = stolen.spec.as_mut().and_then(|s| s.claim_ref.as_mut()) {
            r.uid = Some("u2".into());
        }
        assert_eq!(kind(&claim(&bound, &[Arc::new(stolen)], &[], None)), "Lost ClaimMisbound");
        let mut status_behind = bound.clone();
        status_behind.status =
            Some(PersistentVolumeClaimStatus { phase: Some("Pending".into()), ..Default::default() });
        assert_eq!(kind(&claim(&status_behind, std::slice::from_ref(&volume), &[], None)), "bind v");
        let mut deleting = bound.clone();
        deleting.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1_000).expect("time")));
        let held = claim(&deleting, std::slice::from_ref(&volume), &[], None);
        assert_eq!(kind(&held), "steady", "a bound claim being deleted stays Bound while it is held");
    }

    #[test]
    fn volumes_follow_their_claims() {
        let (volume, bound) = bound_pair();
        let mut available_phase = (*volume).clone();
        available_phase.status = Some(PersistentVolumeStatus { phase: Some("Available".into()), ..Default::default() });
        let mut elsewhere = bound.clone();
        elsewhere.spec.get_or_insert_default().volume_name = Some("other".into());
        let mut released = (*volume).clone();
        released.status = Some(PersistentVolumeStatus { phase: Some("Released".into()), ..Default::default() });
        let mut provisioned = available_phase.clone();
        set_annotation(&mut provisioned.metadata, PROVISIONED_BY, "rkube.io/local-path");
        provisioned.spec.get_or_insert_default().persistent_volume_reclaim_policy = Some("Delete".into());
        let mut recreated = bound.clone();
        recreated.metadata.uid = Some("u9".into());
        let unclaimed = available("free", "1Gi", &["ReadWriteOnce"], None);
        let fresh = pv(json!({"metadata": {"name": "new"}, "spec": {}, "status": {"phase": "Pending"}}));
        let being_deleted = |v: &PersistentVolume| {
            let mut v = v.clone();
            v.metadata.deletion_timestamp = Some(Time(Timestamp::from_second(1_000).expect("time")));
            v
        };
        let (deleting, deleting_released) = (being_deleted(&volume), being_deleted(&released));
        let deleting_fresh = being_deleted(&fresh);
        let cases: Vec<(&str, &PersistentVolume, Option<&PersistentVolumeClaim>, VolumePlan)> = vec![
            ("a new volume becomes Available", &fresh, None, VolumePlan::Phase("Available")),
            ("an unclaimed Available one stays", &unclaimed, None, VolumePlan::Steady),
            ("bound both ways", &volume, Some(&bound), VolumePlan::Steady),
            ("bound, status behind", &available_phase, Some(&bound), VolumePlan::Phase("Bound")),
            ("claim gone: released", &volume, None, VolumePlan::Reclaim { release: true }),
            ("a namesake is not the claim", &volume, Some(&recreated), VolumePlan::Reclaim { release: true }),
            ("already released: reclaimed only", &released, None, VolumePlan::Reclaim { release: false }),
            (
                "provisioned for a claim that got another volume",
                &provisioned,
                Some(&elsewhere),
                VolumePlan::Reclaim { release: true },
            ),
            ("deleted while bound: held as it is", &deleting, Some(&bound), VolumePlan::Steady),
            ("deleted, then its claim went: released", &deleting, None, VolumePlan::Reclaim { release: true }),
            ("deleted after its release: nothing more", &deleting_released, None, VolumePlan::Steady),
            ("deleted before it was ever Available", &deleting_fresh, None, VolumePlan::Steady),
        ];
        for (what, v, c, want) in cases {
            assert_eq!(super::volume(v, c), want, "{what}");
        }
        // Bound by the binder to a claim that took another volume: given back whole.
        let VolumePlan::Unbind(given_back) = super::volume(&available_phase, Some(&elsewhere)) else {
            panic!("expected an unbind");
        };
        assert_eq!(given_back.spec.as_ref().and_then(|s| s.claim_ref.as_ref()), None);
        assert_eq!(annotation(&given_back.metadata, BOUND_BY_CONTROLLER), None);
        // Pre-bound by the user: the name stays, the uid goes.
        let mut users = available_phase.clone();
        users.metadata.annotations = None;
        let VolumePlan::Unbind(given_back) = super::volume(&users, Some(&elsewhere)) else {
            panic!("expected an unbind");
        };
        let r = given_back.spec.as_ref().and_then(|s| s.claim_ref.clone()).unwrap_or_default();
        assert_eq!((r.name.as_deref(), r.uid), (Some("c"), None));
    }

    #[test]
    fn the_default_class_is_the_newest_marked_one() {
        let classes = vec![
            class("old", "p", "Immediate", true, "2024-01-01T00:00:00Z"),
            class("new", "p", "Immediate", true, "2024-06-01T00:00:00Z"),
            class("newest-unmarked", "p", "Immediate", false, "2025-01-01T00:00:00Z"),
            class("a-new", "p", "Immediate", true, "2024-06-01T00:00:00Z"),
        ];
        assert_eq!(default_class(&classes).and_then(|c| c.metadata.name.as_deref()), Some("a-new"));
        assert!(default_class(&classes[2..3]).is_none());
    }

    #[test]
    fn phases_move_their_transition_time_and_provisioner_annotations_are_added_once() {
        let t0 = Timestamp::from_second(1_000).expect("time");
        let t1 = Timestamp::from_second(2_000).expect("time");
        let v = with_phase(&available("v", "1Gi", &[], None), "Released", None, t0);
        let again = with_phase(&v, "Released", None, t1);
        assert_eq!(again.status.and_then(|s| s.last_phase_transition_time).map(|t| t.0), Some(t0));
        let claim = pvc(json!({}));
        let annotated = with_provisioner(&claim, "rkube.io/local-path").expect("annotated");
        assert_eq!(annotation(&annotated.metadata, STORAGE_PROVISIONER), Some("rkube.io/local-path"));
        assert_eq!(annotation(&annotated.metadata, BETA_STORAGE_PROVISIONER), Some("rkube.io/local-path"));
        assert!(with_provisioner(&annotated, "rkube.io/local-path").is_none());
    }
}

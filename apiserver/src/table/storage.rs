//! Storage: PersistentVolumes, the claims on them, and StorageClasses.

use std::collections::BTreeMap;

use api_types::k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use api_types::k8s_openapi::api::storage::v1::StorageClass;
use api_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, UNSET};
use super::{AGE, Column, NAME, Printer, decode};

/// The annotation that named a volume's class before `storageClassName`; it still wins.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";
/// Annotations that make a StorageClass the default, when `"true"`.
const DEFAULT_CLASS_ANNOTATIONS: [&str; 2] =
    ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"];

const CAPACITY: Column = Column::string("Capacity", "The storage size.");
const ACCESS_MODES: Column = Column::string("Access Modes", "How the volume may be mounted (RWO, ROX, RWX, RWOP).");
const STORAGE_CLASS_COLUMN: Column = Column::string("StorageClass", "The class of the storage.");
const VOLUME_ATTRIBUTES_CLASS: Column =
    Column::string("VolumeAttributesClass", "The class of the volume's mutable attributes.");
const VOLUME_MODE: Column = Column::string("VolumeMode", "Filesystem or Block.").wide();

pub(super) static PERSISTENT_VOLUME: Printer = Printer {
    columns: &[
        NAME,
        CAPACITY,
        ACCESS_MODES,
        Column::string("Reclaim Policy", "What happens to the volume when released."),
        Column::string("Status", "The volume's phase, or Terminating."),
        Column::string("Claim", "The claim bound to the volume, as namespace/name."),
        STORAGE_CLASS_COLUMN,
        VOLUME_ATTRIBUTES_CLASS,
        Column::string("Reason", "Why the volume is in its phase."),
        AGE,
        VOLUME_MODE,
    ],
    cells: persistent_volume_cells,
};

fn persistent_volume_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let volume: PersistentVolume = decode(object)?;
    let spec = volume.spec.unwrap_or_default();
    let status = volume.status.unwrap_or_default();
    let claim = spec
        .claim_ref
        .as_ref()
        .map(|c| format!("{}/{}", c.namespace.as_deref().unwrap_or_default(), c.name.as_deref().unwrap_or_default()))
        .unwrap_or_default();
    let phase = if volume.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        status.phase.unwrap_or_default()
    };
    let class = class(&volume.metadata.annotations, spec.storage_class_name.as_deref());
    Ok(vec![
        format::name(&volume.metadata).into(),
        storage(spec.capacity.as_ref()).into(),
        access_modes(spec.access_modes.as_deref()).into(),
        spec.persistent_volume_reclaim_policy.unwrap_or_default().into(),
        phase.into(),
        claim.into(),
        class.into(),
        format::or(spec.volume_attributes_class_name.as_deref(), UNSET).into(),
        status.reason.unwrap_or_default().into(),
        format::age(&volume.metadata, now).into(),
        format::or(spec.volume_mode.as_deref(), UNSET).into(),
    ])
}

pub(super) static PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Status", "The claim's phase, or Terminating."),
        Column::string("Volume", "The volume bound to the claim."),
        CAPACITY,
        ACCESS_MODES,
        STORAGE_CLASS_COLUMN,
        VOLUME_ATTRIBUTES_CLASS,
        AGE,
        VOLUME_MODE,
    ],
    cells: persistent_volume_claim_cells,
};

fn persistent_volume_claim_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let claim: PersistentVolumeClaim = decode(object)?;
    let spec = claim.spec.unwrap_or_default();
    let status = claim.status.unwrap_or_default();
    let phase = if claim.metadata.deletion_timestamp.is_some() {
        "Terminating".to_string()
    } else {
        status.phase.unwrap_or_default()
    };
    let volume = spec.volume_name.clone().unwrap_or_default();
    // Capacity and access modes are the bound volume's, shown once there is one.
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (storage(status.capacity.as_ref()), access_modes(status.access_modes.as_deref()))
    };
    Ok(vec![
        format::name(&claim.metadata).into(),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        class(&claim.metadata.annotations, spec.storage_class_name.as_deref()).into(),
        format::or(spec.volume_attributes_class_name.as_deref(), UNSET).into(),
        format::age(&claim.metadata, now).into(),
        format::or(spec.volume_mode.as_deref(), UNSET).into(),
    ])
}

/// The `storage` quantity of a capacity, `0` when absent.
fn storage(capacity: Option<&BTreeMap<String, Quantity>>) -> String {
    capacity.and_then(|c| c.get("storage")).map_or_else(|| "0".to_string(), |q| q.0.clone())
}

/// Access modes abbreviated, in upstream's fixed order, each once.
fn access_modes(modes: Option<&[String]>) -> String {
    let modes = modes.unwrap_or_default();
    let known =
        [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")];
    let present: Vec<&str> =
        known.iter().filter(|(mode, _)| modes.iter().any(|m| m == mode)).map(|(_, short)| *short).collect();
    present.join(",")
}

/// A volume's or claim's class: the beta annotation if set, else `storageClassName`.
fn class(annotations: &Option<BTreeMap<String, String>>, name: Option<&str>) -> String {
    annotations
        .as_ref()
        .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
        .map(String::as_str)
        .or(name)
        .unwrap_or_default()
        .to_string()
}

pub(super) static STORAGE_CLASS: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Provisioner", "What provisions the class's volumes."),
        Column::string("ReclaimPolicy", "What happens to a released volume."),
        Column::string("VolumeBindingMode", "When claims are bound and provisioned."),
        Column::string("AllowVolumeExpansion", "Whether claims may grow."),
        AGE,
    ],
    cells: storage_class_cells,
};

fn storage_class_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let class: StorageClass = decode(object)?;
    let default = class
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| DEFAULT_CLASS_ANNOTATIONS.iter().any(|key| a.get(*key).is_some_and(|v| v == "true")));
    let name = format::name(&class.metadata);
    Ok(vec![
        (if default { format!("{name} (default)") } else { name }).into(),
        class.provisioner.into(),
        class.reclaim_policy.unwrap_or_else(|| "Delete".to_string()).into(),
        class.volume_binding_mode.unwrap_or_else(|| "Immediate".to_string()).into(),
        class.allow_volume_expansion.unwrap_or(false).into(),
        format::age(&class.metadata, now).into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_a_bound_volume() {
        assert_eq!(
            headers(&PERSISTENT_VOLUME),
            [
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "+VolumeMode"
            ]
        );
        let object = json!({
            "metadata": {"name": "pv-1", "creationTimestamp": ago(86400 * 3)},
            "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "local",
                     "claimRef": {"namespace": "db", "name": "data-0"}, "volumeMode": "Filesystem",
                     "hostPath": {"path": "/srv/pv-1"}},
            "status": {"phase": "Bound"},
        });
        assert_eq!(
            cells(&PERSISTENT_VOLUME, &object),
            [
                json!("pv-1"),
                json!("10Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("db/data-0"),
                json!("local"),
                json!("<unset>"),
                json!(""),
                json!("3d"),
                json!("Filesystem")
            ]
        );
    }

    #[test]
    fn prints_claims_pending_and_bound() {
        assert_eq!(
            headers(&PERSISTENT_VOLUME_CLAIM),
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "+VolumeMode"
            ]
        );
        let pending = json!({
            "metadata": {"name": "data-0", "creationTimestamp": ago(30),
                         "annotations": {"volume.beta.kubernetes.io/storage-class": "legacy"}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "fast"},
            "status": {"phase": "Pending"},
        });
        assert_eq!(
            cells(&PERSISTENT_VOLUME_CLAIM, &pending),
            [
                json!("data-0"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("legacy"),
                json!("<unset>"),
                json!("30s"),
                json!("<unset>")
            ]
        );
        let bound = json!({
            "metadata": {"name": "data-1", "creationTimestamp": ago(30), "deletionTimestamp": ago(1)},
            "spec": {"volumeName": "pv-1", "storageClassName": "fast", "volumeMode": "Block"},
            "status": {"phase": "Bound", "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOncePod"]},
        });
        assert_eq!(
            cells(&PERSISTENT_VOLUME_CLAIM, &bound),
            [
                json!("data-1"),
                json!("Terminating"),
                json!("pv-1"),
                json!("10Gi"),
                json!("RWOP"),
                json!("fast"),
                json!("<unset>"),
                json!("30s"),
                json!("Block")
            ]
        );
    }

    #[test]
    fn marks_the_default_storage_class() {
        let object = json!({
            "metadata": {"name": "standard", "creationTimestamp": ago(30),
                         "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rkube.io/host-path",
        });
        assert_eq!(
            cells(&STORAGE_CLASS, &object),
            [
                json!("standard (default)"),
                json!("rkube.io/host-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false),
                json!("30s")
            ]
        );
    }
}

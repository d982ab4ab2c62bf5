//! The controllers of long-running pods: Deployments, ReplicaSets, ReplicationControllers,
//! StatefulSets, DaemonSets, and the ControllerRevisions they keep.

use api_types::k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet};
use api_types::k8s_openapi::api::core::v1::ReplicationController;
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, NONE};
use super::{AGE, Column, NAME, Printer, decode};

const CONTAINERS: Column = Column::string("Containers", "Names of the pod template's containers.").wide();
const IMAGES: Column = Column::string("Images", "Images of the pod template's containers.").wide();
const SELECTOR: Column = Column::string("Selector", "The labels of the pods it manages.").wide();

/// Replicas when `spec.replicas` is unset (defaulting fills it in; this only guards).
const DEFAULT_REPLICAS: i32 = 1;

pub(super) static DEPLOYMENT: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Ready", "Ready replicas out of desired replicas."),
        Column::integer("Up-to-date", "Replicas running the latest pod template."),
        Column::integer("Available", "Replicas available to serve."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: deployment_cells,
};

fn deployment_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let deployment: Deployment = decode(object)?;
    let spec = deployment.spec.unwrap_or_default();
    let status = deployment.status.unwrap_or_default();
    let desired = spec.replicas.unwrap_or(DEFAULT_REPLICAS);
    let (containers, images) = format::containers(Some(&spec.template));
    Ok(vec![
        format::name(&deployment.metadata).into(),
        format!("{}/{desired}", status.ready_replicas.unwrap_or(0)).into(),
        status.updated_replicas.unwrap_or(0).into(),
        status.available_replicas.unwrap_or(0).into(),
        format::age(&deployment.metadata, now).into(),
        containers.into(),
        images.into(),
        format::selector(Some(&spec.selector)).into(),
    ])
}

const REPLICA_COLUMNS: &[Column] = &[
    NAME,
    Column::integer("Desired", "Replicas wanted."),
    Column::integer("Current", "Replicas that exist."),
    Column::integer("Ready", "Replicas that are ready."),
    AGE,
    CONTAINERS,
    IMAGES,
    SELECTOR,
];

pub(super) static REPLICA_SET: Printer = Printer { columns: REPLICA_COLUMNS, cells: replica_set_cells };

fn replica_set_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let set: ReplicaSet = decode(object)?;
    let spec = set.spec.unwrap_or_default();
    let status = set.status.unwrap_or_default();
    let (containers, images) = format::containers(spec.template.as_ref());
    Ok(vec![
        format::name(&set.metadata).into(),
        spec.replicas.unwrap_or(DEFAULT_REPLICAS).into(),
        status.replicas.into(),
        status.ready_replicas.unwrap_or(0).into(),
        format::age(&set.metadata, now).into(),
        containers.into(),
        images.into(),
        format::selector(Some(&spec.selector)).into(),
    ])
}

pub(super) static REPLICATION_CONTROLLER: Printer =
    Printer { columns: REPLICA_COLUMNS, cells: replication_controller_cells };

fn replication_controller_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let controller: ReplicationController = decode(object)?;
    let spec = controller.spec.unwrap_or_default();
    let status = controller.status.unwrap_or_default();
    let (containers, images) = format::containers(spec.template.as_ref());
    Ok(vec![
        format::name(&controller.metadata).into(),
        spec.replicas.unwrap_or(DEFAULT_REPLICAS).into(),
        status.replicas.into(),
        status.ready_replicas.unwrap_or(0).into(),
        format::age(&controller.metadata, now).into(),
        containers.into(),
        images.into(),
        format::label_set(spec.selector.as_ref()).into(),
    ])
}

pub(super) static STATEFUL_SET: Printer = Printer {
    columns: &[NAME, Column::string("Ready", "Ready replicas out of desired replicas."), AGE, CONTAINERS, IMAGES],
    cells: stateful_set_cells,
};

fn stateful_set_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let set: StatefulSet = decode(object)?;
    let spec = set.spec.unwrap_or_default();
    let status = set.status.unwrap_or_default();
    let (containers, images) = format::containers(Some(&spec.template));
    Ok(vec![
        format::name(&set.metadata).into(),
        format!("{}/{}", status.ready_replicas.unwrap_or(0), spec.replicas.unwrap_or(DEFAULT_REPLICAS)).into(),
        format::age(&set.metadata, now).into(),
        containers.into(),
        images.into(),
    ])
}

pub(super) static DAEMON_SET: Printer = Printer {
    columns: &[
        NAME,
        Column::integer("Desired", "Nodes that should run the daemon pod."),
        Column::integer("Current", "Nodes running the daemon pod."),
        Column::integer("Ready", "Nodes whose daemon pod is ready."),
        Column::integer("Up-to-date", "Nodes running the latest pod template."),
        Column::integer("Available", "Nodes whose daemon pod is available."),
        Column::string("Node Selector", "The labels a node needs to run the daemon pod."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: daemon_set_cells,
};

fn daemon_set_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let set: DaemonSet = decode(object)?;
    let spec = set.spec.unwrap_or_default();
    let status = set.status.unwrap_or_default();
    let (containers, images) = format::containers(Some(&spec.template));
    let node_selector = spec.template.spec.as_ref().and_then(|s| s.node_selector.as_ref());
    Ok(vec![
        format::name(&set.metadata).into(),
        status.desired_number_scheduled.into(),
        status.current_number_scheduled.into(),
        status.number_ready.into(),
        status.updated_number_scheduled.unwrap_or(0).into(),
        status.number_available.unwrap_or(0).into(),
        format::label_set(node_selector).into(),
        format::age(&set.metadata, now).into(),
        containers.into(),
        images.into(),
        format::selector(Some(&spec.selector)).into(),
    ])
}

pub(super) static CONTROLLER_REVISION: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Controller", "The object that owns the revision."),
        Column::integer("Revision", "The revision's number."),
        AGE,
    ],
    cells: controller_revision_cells,
};

fn controller_revision_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let revision: ControllerRevision = decode(object)?;
    let controller =
        revision.metadata.owner_references.iter().flatten().find(|r| r.controller == Some(true)).map_or_else(
            || NONE.to_string(),
            |r| {
                let group = r.api_version.split_once('/').map_or("", |(group, _)| group);
                let kind = if group.is_empty() { r.kind.clone() } else { format!("{}.{group}", r.kind) };
                format!("{}/{}", kind.to_lowercase(), r.name)
            },
        );
    Ok(vec![
        format::name(&revision.metadata).into(),
        controller.into(),
        revision.revision.into(),
        format::age(&revision.metadata, now).into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "web"}},
               "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}, {"name": "sidecar", "image": "busybox"}]}})
    }

    #[test]
    fn prints_a_deployment() {
        assert_eq!(
            headers(&DEPLOYMENT),
            ["Name", "Ready", "Up-to-date", "Available", "Age", "+Containers", "+Images", "+Selector"]
        );
        let object = json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(2 * 86400 + 3 * 3600)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}, "template": template()},
            "status": {"replicas": 3, "updatedReplicas": 3, "readyReplicas": 2, "availableReplicas": 2},
        });
        assert_eq!(
            cells(&DEPLOYMENT, &object),
            [
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("2d3h"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox"),
                json!("app=web")
            ]
        );
    }

    #[test]
    fn a_new_deployment_without_status_has_nothing_ready() {
        let object = json!({"metadata": {"name": "new"}, "spec": {"replicas": 0, "template": template()}});
        assert_eq!(cells(&DEPLOYMENT, &object)[1..4], [json!("0/0"), json!(0), json!(0)]);
    }

    #[test]
    fn prints_replica_sets_and_replication_controllers_alike() {
        assert_eq!(
            headers(&REPLICA_SET),
            ["Name", "Desired", "Current", "Ready", "Age", "+Containers", "+Images", "+Selector"]
        );
        let set = json!({
            "metadata": {"name": "web-5d9c7b", "creationTimestamp": ago(90)},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web", "pod-template-hash": "5d9c7b"}},
                     "template": template()},
            "status": {"replicas": 3, "readyReplicas": 1},
        });
        assert_eq!(
            cells(&REPLICA_SET, &set),
            [
                json!("web-5d9c7b"),
                json!(3),
                json!(3),
                json!(1),
                json!("90s"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox"),
                json!("app=web,pod-template-hash=5d9c7b")
            ]
        );
        let controller = json!({
            "metadata": {"name": "old", "creationTimestamp": ago(90)},
            "spec": {"replicas": 2, "selector": {"app": "old"}, "template": template()},
            "status": {"replicas": 2},
        });
        assert_eq!(
            cells(&REPLICATION_CONTROLLER, &controller),
            [
                json!("old"),
                json!(2),
                json!(2),
                json!(0),
                json!("90s"),
                json!("nginx,sidecar"),
                json!("nginx:1.27,busybox"),
                json!("app=old")
            ]
        );
    }

    #[test]
    fn prints_a_stateful_set() {
        assert_eq!(headers(&STATEFUL_SET), ["Name", "Ready", "Age", "+Containers", "+Images"]);
        let object = json!({
            "metadata": {"name": "db", "creationTimestamp": ago(600)},
            "spec": {"replicas": 3, "serviceName": "db", "selector": {"matchLabels": {"app": "db"}},
                     "template": {"spec": {"containers": [{"name": "pg", "image": "postgres:16"}]}}},
            "status": {"replicas": 2, "readyReplicas": 2},
        });
        assert_eq!(
            cells(&STATEFUL_SET, &object),
            [json!("db"), json!("2/3"), json!("10m"), json!("pg"), json!("postgres:16")]
        );
    }

    #[test]
    fn prints_a_daemon_set() {
        assert_eq!(
            headers(&DAEMON_SET),
            [
                "Name",
                "Desired",
                "Current",
                "Ready",
                "Up-to-date",
                "Available",
                "Node Selector",
                "Age",
                "+Containers",
                "+Images",
                "+Selector"
            ]
        );
        let object = json!({
            "metadata": {"name": "kube-proxy", "creationTimestamp": ago(86400)},
            "spec": {"selector": {"matchLabels": {"k8s-app": "kube-proxy"}},
                     "template": {"spec": {"nodeSelector": {"kubernetes.io/os": "linux"},
                                           "containers": [{"name": "kube-proxy", "image": "rk-proxy:0.1"}]}}},
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 3, "numberReady": 2,
                       "updatedNumberScheduled": 3, "numberAvailable": 2, "numberMisscheduled": 0},
        });
        assert_eq!(
            cells(&DAEMON_SET, &object),
            [
                json!("kube-proxy"),
                json!(3),
                json!(3),
                json!(2),
                json!(3),
                json!(2),
                json!("kubernetes.io/os=linux"),
                json!("24h"),
                json!("kube-proxy"),
                json!("rk-proxy:0.1"),
                json!("k8s-app=kube-proxy")
            ]
        );
    }

    #[test]
    fn names_a_revisions_controller_by_group_kind() {
        let object = json!({
            "metadata": {"name": "ds-7f8", "creationTimestamp": ago(60),
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy",
                                              "uid": "u1", "controller": true}]},
            "revision": 4,
        });
        assert_eq!(
            cells(&CONTROLLER_REVISION, &object),
            [json!("ds-7f8"), json!("daemonset.apps/kube-proxy"), json!(4), json!("60s")]
        );
        let orphan = json!({"metadata": {"name": "r"}, "revision": 1});
        assert_eq!(cells(&CONTROLLER_REVISION, &orphan)[1], "<none>");
    }
}

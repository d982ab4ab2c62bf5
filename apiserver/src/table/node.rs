//! Nodes: readiness, schedulability, roles and what runs them.

use std::collections::BTreeSet;

use api_types::k8s_openapi::api::core::v1::{Node, NodeStatus};
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, NONE, UNKNOWN};
use super::{AGE, Column, NAME, Printer, decode};

/// Labels `node-role.kubernetes.io/<role>` name a role each.
const ROLE_LABEL_PREFIX: &str = "node-role.kubernetes.io/";
/// The older label whose value names a role.
const ROLE_LABEL: &str = "kubernetes.io/role";

pub(super) static PRINTER: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Status", "Whether the node is Ready, and SchedulingDisabled if cordoned."),
        Column::string("Roles", "The node's roles, from its node-role.kubernetes.io labels."),
        AGE,
        Column::string("Version", "The kubelet's version."),
        Column::string("Internal-IP", "The node's first internal address.").wide(),
        Column::string("External-IP", "The node's first external address.").wide(),
        Column::string("OS-Image", "The operating system the node reports.").wide(),
        Column::string("Kernel-Version", "The kernel the node reports.").wide(),
        Column::string("Container-Runtime", "The container runtime and its version.").wide(),
    ],
    cells,
};

fn cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let node: Node = decode(object)?;
    let status = node.status.unwrap_or_default();
    let unschedulable = node.spec.and_then(|s| s.unschedulable).unwrap_or(false);
    let info = status.node_info.clone().unwrap_or_default();
    let roles = roles(node.metadata.labels.as_ref());
    Ok(vec![
        format::name(&node.metadata).into(),
        readiness(&status, unschedulable).into(),
        (if roles.is_empty() { NONE.to_string() } else { roles.join(",") }).into(),
        format::age(&node.metadata, now).into(),
        info.kubelet_version.into(),
        address(&status, "InternalIP").into(),
        address(&status, "ExternalIP").into(),
        format::or(Some(&info.os_image), UNKNOWN).into(),
        format::or(Some(&info.kernel_version), UNKNOWN).into(),
        format::or(Some(&info.container_runtime_version), UNKNOWN).into(),
    ])
}

/// `Ready` or `NotReady` from the Ready condition (`Unknown` without one), then
/// `SchedulingDisabled` for a cordoned node.
fn readiness(status: &NodeStatus, unschedulable: bool) -> String {
    let ready = status.conditions.iter().flatten().find(|c| c.type_ == "Ready");
    let mut words = vec![match ready {
        Some(c) if c.status == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if unschedulable {
        words.push("SchedulingDisabled");
    }
    words.join(",")
}

/// The roles named by the node's labels, sorted and without repeats.
fn roles(labels: Option<&std::collections::BTreeMap<String, String>>) -> Vec<String> {
    let mut roles = BTreeSet::new();
    for (key, value) in labels.into_iter().flatten() {
        if let Some(role) = key.strip_prefix(ROLE_LABEL_PREFIX) {
            if !role.is_empty() {
                roles.insert(role.to_string());
            }
        } else if key == ROLE_LABEL && !value.is_empty() {
            roles.insert(value.clone());
        }
    }
    roles.into_iter().collect()
}

/// The node's first address of `type_`, `<none>` without one.
fn address(status: &NodeStatus, type_: &str) -> String {
    let found = status.addresses.iter().flatten().find(|a| a.type_ == type_);
    format::or(found.map(|a| a.address.as_str()), NONE)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    fn node(labels: Value, spec: Value, conditions: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": "n1", "labels": labels, "creationTimestamp": ago(50 * 86400)},
            "spec": spec,
            "status": {
                "conditions": conditions,
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "192.168.1.10"}],
                "nodeInfo": {"kubeletVersion": "v1.33.0-rkube", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "docker://26.1.0",
                             "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "",
                             "operatingSystem": "linux", "architecture": "amd64"},
            },
        })
    }

    #[test]
    fn has_upstream_columns() {
        assert_eq!(
            headers(&PRINTER),
            [
                "Name",
                "Status",
                "Roles",
                "Age",
                "Version",
                "+Internal-IP",
                "+External-IP",
                "+OS-Image",
                "+Kernel-Version",
                "+Container-Runtime"
            ]
        );
    }

    #[test]
    fn prints_a_ready_control_plane_node() {
        let object = node(
            json!({"node-role.kubernetes.io/control-plane": "", "kubernetes.io/hostname": "n1"}),
            json!({}),
            json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]),
        );
        assert_eq!(
            cells(&PRINTER, &object),
            [
                json!("n1"),
                json!("Ready"),
                json!("control-plane"),
                json!("50d"),
                json!("v1.33.0-rkube"),
                json!("192.168.1.10"),
                json!("<none>"),
                json!("Debian GNU/Linux 12 (bookworm)"),
                json!("6.1.0-18-amd64"),
                json!("docker://26.1.0")
            ]
        );
    }

    #[test]
    fn prints_a_cordoned_node_that_is_not_ready() {
        let object = node(json!({}), json!({"unschedulable": true}), json!([{"type": "Ready", "status": "Unknown"}]));
        let row = cells(&PRINTER, &object);
        assert_eq!(row[1], "NotReady,SchedulingDisabled");
        assert_eq!(row[2], "<none>");
    }

    #[test]
    fn a_node_without_a_ready_condition_is_unknown() {
        let cases = [(json!(null), false, "Unknown"), (json!([]), true, "Unknown,SchedulingDisabled")];
        for (conditions, unschedulable, want) in cases {
            let object = node(json!({}), json!({"unschedulable": unschedulable}), conditions);
            assert_eq!(cells(&PRINTER, &object)[1], want);
        }
    }

    #[test]
    fn collects_roles_from_both_kinds_of_label() {
        let labels = json!({
            "node-role.kubernetes.io/worker": "",
            "node-role.kubernetes.io/control-plane": "true",
            "node-role.kubernetes.io/": "",
            "kubernetes.io/role": "ingress",
        });
        let object = node(labels, json!({}), json!([]));
        assert_eq!(cells(&PRINTER, &object)[2], "control-plane,ingress,worker");
    }

    #[test]
    fn marks_missing_node_info_unknown() {
        let object = json!({"metadata": {"name": "bare"}});
        let row = cells(&PRINTER, &object);
        assert_eq!(
            row[3..],
            [
                json!("<unknown>"),
                json!(""),
                json!("<none>"),
                json!("<none>"),
                json!("<unknown>"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
    }
}

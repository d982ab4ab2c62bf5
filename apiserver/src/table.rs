//! Server-side printing: the `meta.k8s.io/v1` Table that `kubectl get` asks for with
//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`.
//!
//! Every kind has a `Printer`: its column definitions and a pure function from one object to
//! the cells of its row, showing what upstream's built-in printers show. Like upstream, the
//! server always sends every column; kubectl hides those of priority 1 unless `-o wide`.
//! Kinds without a printer of their own get NAME and AGE.
//!
//! The printers live beside the kinds they print:
//! - `pod`, `node`: the two tables with real logic in them (pod status, node roles).
//! - `workload`: Deployments, ReplicaSets, ReplicationControllers, StatefulSets, DaemonSets,
//!   ControllerRevisions; `batch`: Jobs and CronJobs; `scaling`: HPAs and PDBs.
//! - `network`: Services, Endpoints, EndpointSlices, Ingresses, NetworkPolicies.
//! - `config`: Namespaces, ConfigMaps, Secrets, ServiceAccounts, quotas, limits, Leases.
//! - `event`: both Event kinds; `storage`: volumes, claims, classes; `access`: RBAC, CSRs.
//! - `duration`: upstream's `HumanDuration`; `format`: cell helpers the printers share.

mod access;
mod batch;
mod config;
mod duration;
mod event;
mod format;
mod network;
mod node;
mod pod;
mod scaling;
mod storage;
mod workload;

use api_types::k8s_openapi::jiff::Timestamp;
use api_types::registry::ResourceInfo;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use duration::human_duration;

/// The `includeObject` query parameter: what each row carries besides its cells.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum IncludeObject {
    /// No object.
    None,
    /// The object's metadata, as a `PartialObjectMetadata` (upstream's default).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

/// Parses the `includeObject` query parameter. The empty string is the default, `Metadata`;
/// anything but `None`, `Metadata` and `Object` is rejected.
pub fn parse_include_object(value: &str) -> Option<IncludeObject> {
    match value {
        "None" => Some(IncludeObject::None),
        "" | "Metadata" => Some(IncludeObject::Metadata),
        "Object" => Some(IncludeObject::Object),
        _ => None,
    }
}

/// Renders `objects`, all of kind `resource`, as a `meta.k8s.io/v1` Table. Ages are measured
/// up to `now`. The caller fills in `metadata.resourceVersion` and `metadata.continue`.
///
/// An object that does not decode as its kind (which validation should make impossible) still
/// gets a row: its name, and `<invalid>` in every other cell.
pub fn to_table(resource: &ResourceInfo, objects: &[&Value], include: IncludeObject, now: Timestamp) -> Value {
    let printer = printer(resource);
    let columns: Vec<Value> = printer.columns.iter().map(|c| c.to_json()).collect();
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let cells = (printer.cells)(object, now).unwrap_or_else(|_| undecodable_cells(printer.columns, object));
            let mut row = json!({ "cells": cells });
            if let Some(carried) = row_object(resource, object, include) {
                row["object"] = carried;
            }
            row
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": columns,
        "rows": rows,
    })
}

/// How one kind is printed.
struct Printer {
    columns: &'static [Column],
    /// One cell per column, in order, for one object.
    cells: fn(&Value, Timestamp) -> Result<Vec<Value>, serde_json::Error>,
}

/// One `TableColumnDefinition`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Column {
    name: &'static str,
    /// An OpenAPI type: `string`, `integer`, `boolean`, `date`.
    type_: &'static str,
    /// `name` for the column holding the object's name, else empty.
    format: &'static str,
    description: &'static str,
    /// 0 is always shown; 1 only with `-o wide`.
    priority: u8,
}

impl Column {
    const fn string(name: &'static str, description: &'static str) -> Self {
        Self { name, type_: "string", format: "", description, priority: 0 }
    }

    const fn integer(name: &'static str, description: &'static str) -> Self {
        Self { name, type_: "integer", format: "", description, priority: 0 }
    }

    const fn boolean(name: &'static str, description: &'static str) -> Self {
        Self { name, type_: "boolean", format: "", description, priority: 0 }
    }

    const fn date(name: &'static str, description: &'static str) -> Self {
        Self { name, type_: "date", format: "", description, priority: 0 }
    }

    /// The same column, shown only with `-o wide`.
    const fn wide(self) -> Self {
        Self { priority: 1, ..self }
    }

    /// The same column, marked as holding the object's name.
    const fn names(self) -> Self {
        Self { format: "name", ..self }
    }

    fn to_json(self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

/// The first column of almost every table.
const NAME: Column =
    Column::string("Name", "The object's name, unique among objects of its kind in its namespace.").names();

/// How long ago the object was created.
const AGE: Column = Column::string("Age", "How long ago the object was created.");

/// The printer of kinds without one of their own.
static DEFAULT: Printer = Printer { columns: &[NAME, AGE], cells: default_cells };

fn default_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let metadata: api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta = match object.get("metadata") {
        Some(metadata) => decode(metadata)?,
        None => Default::default(),
    };
    Ok(vec![format::name(&metadata).into(), format::age(&metadata, now).into()])
}

fn printer(resource: &ResourceInfo) -> &'static Printer {
    match (resource.group, resource.kind) {
        ("", "Pod") => &pod::PRINTER,
        ("", "Node") => &node::PRINTER,
        ("", "Namespace") => &config::NAMESPACE,
        ("", "ConfigMap") => &config::CONFIG_MAP,
        ("", "Secret") => &config::SECRET,
        ("", "ServiceAccount") => &config::SERVICE_ACCOUNT,
        ("", "ResourceQuota") => &config::RESOURCE_QUOTA,
        ("", "LimitRange") => &config::LIMIT_RANGE,
        ("coordination.k8s.io", "Lease") => &config::LEASE,
        ("", "Service") => &network::SERVICE,
        ("", "Endpoints") => &network::ENDPOINTS,
        ("discovery.k8s.io", "EndpointSlice") => &network::ENDPOINT_SLICE,
        ("networking.k8s.io", "Ingress") => &network::INGRESS,
        ("networking.k8s.io", "NetworkPolicy") => &network::NETWORK_POLICY,
        ("", "Event") => &event::CORE,
        ("events.k8s.io", "Event") => &event::EVENTS,
        ("", "ReplicationController") => &workload::REPLICATION_CONTROLLER,
        ("apps", "Deployment") => &workload::DEPLOYMENT,
        ("apps", "ReplicaSet") => &workload::REPLICA_SET,
        ("apps", "StatefulSet") => &workload::STATEFUL_SET,
        ("apps", "DaemonSet") => &workload::DAEMON_SET,
        ("apps", "ControllerRevision") => &workload::CONTROLLER_REVISION,
        ("batch", "Job") => &batch::JOB,
        ("batch", "CronJob") => &batch::CRON_JOB,
        ("autoscaling", "HorizontalPodAutoscaler") => &scaling::HORIZONTAL_POD_AUTOSCALER,
        ("policy", "PodDisruptionBudget") => &scaling::POD_DISRUPTION_BUDGET,
        ("", "PersistentVolume") => &storage::PERSISTENT_VOLUME,
        ("", "PersistentVolumeClaim") => &storage::PERSISTENT_VOLUME_CLAIM,
        ("storage.k8s.io", "StorageClass") => &storage::STORAGE_CLASS,
        ("rbac.authorization.k8s.io", "Role" | "ClusterRole") => &access::ROLE,
        ("rbac.authorization.k8s.io", "RoleBinding") => &access::ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &access::CLUSTER_ROLE_BINDING,
        ("certificates.k8s.io", "CertificateSigningRequest") => &access::CERTIFICATE_SIGNING_REQUEST,
        _ => &DEFAULT,
    }
}

/// Decodes an object (or part of one) as its k8s-openapi type. Missing fields default; only
/// a field of the wrong JSON type fails.
fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

/// The row of an object that did not decode: its name where the name goes, `<invalid>` elsewhere.
fn undecodable_cells(columns: &[Column], object: &Value) -> Vec<Value> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    columns.iter().map(|column| if column.format == "name" { name.into() } else { "<invalid>".into() }).collect()
}

/// What the row carries besides its cells, per `includeObject`.
fn row_object(resource: &ResourceInfo, object: &Value, include: IncludeObject) -> Option<Value> {
    match include {
        IncludeObject::None => None,
        IncludeObject::Metadata => Some(json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
        })),
        IncludeObject::Object => {
            let mut whole = object.clone();
            if let Some(fields) = whole.as_object_mut() {
                fields.entry("apiVersion").or_insert_with(|| resource.api_version().into());
                fields.entry("kind").or_insert_with(|| resource.kind.into());
            }
            Some(whole)
        }
    }
}

/// Shared by the printers' tests.
#[cfg(test)]
mod testing {
    use super::*;

    /// The instant every test's ages are measured to.
    pub(super) fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("a valid timestamp")
    }

    /// `now()` minus `seconds`, as the RFC 3339 text objects carry.
    pub(super) fn ago(seconds: i64) -> String {
        let at = now().checked_sub(api_types::k8s_openapi::jiff::SignedDuration::from_secs(seconds)).expect("in range");
        at.to_string()
    }

    /// The row a printer makes of `object`, which must decode.
    pub(super) fn cells(printer: &Printer, object: &Value) -> Vec<Value> {
        let cells = (printer.cells)(object, now()).expect("the object decodes");
        assert_eq!(cells.len(), printer.columns.len(), "one cell per column");
        cells
    }

    /// The names of a printer's columns, priority-1 ones marked `+`.
    pub(super) fn headers(printer: &Printer) -> Vec<String> {
        printer
            .columns
            .iter()
            .map(|c| if c.priority == 1 { format!("+{}", c.name) } else { c.name.to_string() })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{ago, now};
    use super::*;
    use api_types::registry::{RESOURCES, by_kind};

    fn pod_info() -> &'static ResourceInfo {
        by_kind("", "v1", "Pod").expect("pods are served")
    }

    fn pod() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default", "resourceVersion": "7",
                         "creationTimestamp": ago(30)},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            "status": {"phase": "Pending"},
        })
    }

    #[test]
    fn parses_include_object_values() {
        let cases = [
            ("None", Some(IncludeObject::None)),
            ("Metadata", Some(IncludeObject::Metadata)),
            ("Object", Some(IncludeObject::Object)),
            ("", Some(IncludeObject::Metadata)),
            ("metadata", None),
            ("All", None),
        ];
        for (input, want) in cases {
            assert_eq!(parse_include_object(input), want, "{input:?}");
        }
        assert_eq!(IncludeObject::default(), IncludeObject::Metadata);
    }

    #[test]
    fn builds_a_table_with_column_definitions_and_rows() {
        let pod = pod();
        let table = to_table(pod_info(), &[&pod], IncludeObject::None, now());
        assert_eq!(table["kind"], "Table");
        assert_eq!(table["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(table["metadata"], json!({}));
        assert_eq!(
            table["columnDefinitions"][0],
            json!({"name": "Name", "type": "string", "format": "name",
                   "description": NAME.description, "priority": 0})
        );
        assert_eq!(table["columnDefinitions"][5]["name"], "IP");
        assert_eq!(table["columnDefinitions"][5]["priority"], 1);
        assert_eq!(
            table["rows"],
            json!([{"cells": ["web", "0/1", "Pending", "0", "30s",
                               "<none>", "<none>", "<none>", "<none>"]}])
        );
    }

    #[test]
    fn carries_what_include_object_asks_for() {
        let pod = pod();
        let metadata = to_table(pod_info(), &[&pod], IncludeObject::Metadata, now());
        assert_eq!(
            metadata["rows"][0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": pod["metadata"]})
        );
        let whole = to_table(pod_info(), &[&pod], IncludeObject::Object, now());
        assert_eq!(whole["rows"][0]["object"], pod);
        let none = to_table(pod_info(), &[&pod], IncludeObject::None, now());
        assert!(none["rows"][0].get("object").is_none());
    }

    #[test]
    fn fills_in_type_meta_of_whole_objects_that_lack_it() {
        let mut bare = pod();
        let fields = bare.as_object_mut().expect("an object");
        fields.remove("apiVersion");
        fields.remove("kind");
        let table = to_table(pod_info(), &[&bare], IncludeObject::Object, now());
        assert_eq!(table["rows"][0]["object"]["apiVersion"], "v1");
        assert_eq!(table["rows"][0]["object"]["kind"], "Pod");
    }

    #[test]
    fn an_empty_list_has_columns_and_no_rows() {
        let table = to_table(pod_info(), &[], IncludeObject::Metadata, now());
        assert_eq!(table["rows"], json!([]));
        assert_eq!(table["columnDefinitions"].as_array().map(Vec::len), Some(9));
    }

    #[test]
    fn an_undecodable_object_still_gets_a_row() {
        let broken = json!({"metadata": {"name": "odd"}, "spec": {"containers": "not a list"}});
        let table = to_table(pod_info(), &[&broken], IncludeObject::None, now());
        assert_eq!(table["rows"][0]["cells"][0], "odd");
        assert_eq!(table["rows"][0]["cells"][1], "<invalid>");
        assert_eq!(table["rows"][0]["cells"].as_array().map(Vec::len), Some(9));
    }

    #[test]
    fn every_served_kind_prints_one_cell_per_column_with_name_first() {
        let minimal = json!({"metadata": {"name": "x", "creationTimestamp": ago(5)}});
        for resource in RESOURCES {
            let table = to_table(resource, &[&minimal], IncludeObject::None, now());
            let columns = table["columnDefinitions"].as_array().expect("columns");
            let cells = table["rows"][0]["cells"].as_array().expect("cells");
            assert_eq!(cells.len(), columns.len(), "{}", resource.group_resource());
            assert!(
                cells.iter().all(|c| c != "<invalid>"),
                "{} rejected a minimal object: {cells:?}",
                resource.group_resource()
            );
            let first = if resource.kind == "Event" { columns.len() - 1 } else { 0 };
            assert_eq!(columns[first]["format"], "name", "{}", resource.group_resource());
            assert_eq!(cells[first], "x", "{}", resource.group_resource());
        }
    }

    #[test]
    fn kinds_without_a_printer_show_name_and_age() {
        let info = ResourceInfo {
            group: "example.com",
            version: "v1",
            kind: "Widget",
            plural: "widgets",
            singular: "widget",
            short_names: &[],
            namespaced: true,
            subresources: &[],
            categories: &[],
        };
        let widget = json!({"metadata": {"name": "w", "creationTimestamp": ago(3 * 86400)}});
        let table = to_table(&info, &[&widget], IncludeObject::None, now());
        assert_eq!(table["columnDefinitions"][1]["name"], "Age");
        assert_eq!(table["rows"][0]["cells"], json!(["w", "3d"]));
    }
}

//! Discovery: `/api`, `/apis`, `/apis/<group>` and the per-group-version resource lists that
//! kubectl reads to map `po` to `/api/v1/namespaces/<ns>/pods`, and `/version`.

use api_types::registry::{self, ResourceInfo, group_version};
use serde_json::{Value, json};

use crate::api::resource_metrics;

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// The Kubernetes version rkube speaks (k8s-openapi's `v1_33`).
pub const KUBERNETES_MINOR: &str = "33";

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": KUBERNETES_MINOR,
        "gitVersion": format!("v1.{KUBERNETES_MINOR}.0-rkube.{}", env!("CARGO_PKG_VERSION")),
        "gitCommit": "",
        "gitTreeState": "clean",
        "buildDate": "",
        "goVersion": "rustc",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
    })
}

pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": server_address }],
    })
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<Value> = registry::group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({ "groupVersion": group_version(g, v), "version": v }))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({ "name": group, "versions": versions, "preferredVersion": preferred })
}

pub fn groups() -> Value {
    let mut names: Vec<&str> = Vec::new();
    for (g, _) in registry::group_versions() {
        if !g.is_empty() && !names.contains(&g) {
            names.push(g);
        }
    }
    let mut groups: Vec<Value> = names.into_iter().map(group_entry).collect();
    groups.push(metrics_group());
    json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups })
}

/// `metrics.k8s.io`, served by the API server itself rather than from the registry.
fn metrics_group() -> Value {
    let version = json!({ "groupVersion": group_version(resource_metrics::GROUP, resource_metrics::VERSION), "version": resource_metrics::VERSION });
    json!({ "name": resource_metrics::GROUP, "versions": [version.clone()], "preferredVersion": version })
}

pub fn group(name: &str) -> Option<Value> {
    if name == resource_metrics::GROUP {
        let mut g = metrics_group();
        g["kind"] = "APIGroup".into();
        g["apiVersion"] = "v1".into();
        return Some(g);
    }
    registry::group_versions().iter().any(|(g, _)| *g == name && !g.is_empty()).then(|| {
        let mut g = group_entry(name);
        g["kind"] = "APIGroup".into();
        g["apiVersion"] = "v1".into();
        g
    })
}

/// The kind, group and version a subresource answers with.
fn subresource_kind(r: &ResourceInfo, sub: &str) -> (String, &'static str, &'static str) {
    match sub {
        "scale" => ("Scale".into(), "autoscaling", "v1"),
        "binding" => ("Binding".into(), "", "v1"),
        "eviction" => ("Eviction".into(), "policy", "v1"),
        "exec" => ("PodExecOptions".into(), "", "v1"),
        "proxy" => ("NodeProxyOptions".into(), "", "v1"),
        _ => (r.kind.to_string(), "", ""),
    }
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (resource_metrics::GROUP, resource_metrics::VERSION) {
        return Some(resource_metrics::resource_list());
    }
    if !registry::group_versions().contains(&(group, version)) {
        return None;
    }
    let mut resources = Vec::new();
    for r in registry::RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": VERBS,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (kind, g, v) = subresource_kind(r, sub);
            let verbs: &[&str] = match *sub {
                "binding" | "eviction" => &["create"],
                "finalize" | "approval" => &["update"],
                "log" => &["get"],
                "exec" => &["create", "get"],
                "proxy" => &["get"],
                _ => &["get", "patch", "update"],
            };
            let mut entry = json!({
                "name": format!("{}/{sub}", r.plural),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if !g.is_empty() || !v.is_empty() {
                entry["group"] = g.into();
                entry["version"] = v.into();
            }
            resources.push(entry);
        }
    }
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version(group, version),
        "resources": resources,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_v1_lists_pods_with_their_subresources() {
        let list = resource_list("", "v1").expect("core/v1");
        let names: Vec<&str> =
            list["resources"].as_array().into_iter().flatten().filter_map(|r| r["name"].as_str()).collect();
        for want in ["pods", "pods/status", "pods/binding", "pods/eviction", "namespaces", "nodes/status"] {
            assert!(names.contains(&want), "{want}");
        }
        let scale = resource_list("apps", "v1").expect("apps/v1")["resources"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["name"] == "deployments/scale").cloned())
            .expect("deployments/scale");
        assert_eq!((scale["kind"].as_str(), scale["group"].as_str()), (Some("Scale"), Some("autoscaling")));
    }

    #[test]
    fn groups_list_every_served_group_once() {
        let g = groups();
        let names: Vec<&str> =
            g["groups"].as_array().into_iter().flatten().filter_map(|g| g["name"].as_str()).collect();
        assert!(names.contains(&"apps") && names.contains(&"autoscaling") && names.contains(&"events.k8s.io"));
        let autoscaling = group("autoscaling").expect("autoscaling");
        assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
        assert!(group("nope").is_none() && resource_list("apps", "v9").is_none());
        assert!(names.contains(&"metrics.k8s.io") && group("metrics.k8s.io").is_some());
    }
}

//! Services and the objects that route to them: Endpoints, EndpointSlices, Ingresses,
//! NetworkPolicies.

use std::collections::BTreeSet;

use api_types::k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort, ServiceSpec};
use api_types::k8s_openapi::api::discovery::v1::EndpointSlice;
use api_types::k8s_openapi::api::networking::v1::{Ingress, IngressRule, NetworkPolicy};
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, NONE, UNSET};
use super::{AGE, Column, NAME, Printer, decode};

/// How many endpoints, ports or hosts a cell lists before ` + N more...`.
const LISTED: usize = 3;

pub(super) static SERVICE: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Type", "How the service is exposed."),
        Column::string("Cluster-IP", "The service's virtual IP inside the cluster."),
        Column::string("External-IP", "Addresses the service is reachable at from outside."),
        Column::string("Port(s)", "Service ports, with node ports where allocated."),
        AGE,
        Column::string("Selector", "The labels of the pods the service routes to.").wide(),
    ],
    cells: service_cells,
};

fn service_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let service: Service = decode(object)?;
    let spec = service.spec.unwrap_or_default();
    let cluster_ip =
        spec.cluster_ips.as_ref().and_then(|ips| ips.first()).or(spec.cluster_ip.as_ref()).map(String::as_str);
    let ingress = service
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.ip, i.hostname));
    let ports = ports(spec.ports.as_deref().unwrap_or_default());
    Ok(vec![
        format::name(&service.metadata).into(),
        format::or(spec.type_.as_deref(), "ClusterIP").into(),
        format::or(cluster_ip, NONE).into(),
        external_ip(&spec, load_balancer_addresses(ingress)).into(),
        (if ports.is_empty() { NONE.to_string() } else { ports }).into(),
        format::age(&service.metadata, now).into(),
        format::label_set(spec.selector.as_ref()).into(),
    ])
}

/// The EXTERNAL-IP cell: external IPs, load balancer addresses, or the external name.
fn external_ip(spec: &ServiceSpec, load_balancer: Vec<String>) -> String {
    let external_ips = spec.external_ips.clone().unwrap_or_default();
    match spec.type_.as_deref().unwrap_or("ClusterIP") {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => NONE.to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let all: Vec<String> = load_balancer.into_iter().chain(external_ips).collect();
            if all.is_empty() { "<pending>".to_string() } else { all.join(",") }
        }
        "ExternalName" => spec.external_name.clone().unwrap_or_default(),
        _ => "<unknown>".to_string(),
    }
}

/// A load balancer's ingress points, each by IP or else hostname, sorted without repeats.
fn load_balancer_addresses(ingress: impl Iterator<Item = (Option<String>, Option<String>)>) -> Vec<String> {
    let set: BTreeSet<String> = ingress
        .filter_map(|(ip, hostname)| ip.filter(|ip| !ip.is_empty()).or(hostname.filter(|h| !h.is_empty())))
        .collect();
    set.into_iter().collect()
}

/// `80/TCP`, or `80:30080/TCP` with a node port; comma separated.
fn ports(ports: &[ServicePort]) -> String {
    let pieces: Vec<String> = ports
        .iter()
        .map(|p| {
            let protocol = p.protocol.as_deref().unwrap_or("TCP");
            match p.node_port {
                Some(node_port) if node_port > 0 => format!("{}:{node_port}/{protocol}", p.port),
                _ => format!("{}/{protocol}", p.port),
            }
        })
        .collect();
    pieces.join(",")
}

pub(super) static ENDPOINTS: Printer = Printer {
    columns: &[NAME, Column::string("Endpoints", "Ready addresses with their ports."), AGE],
    cells: endpoints_cells,
};

fn endpoints_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let endpoints: Endpoints = decode(object)?;
    let subsets = endpoints.subsets.unwrap_or_default();
    let listed = if subsets.is_empty() {
        NONE.to_string()
    } else {
        let mut all = Vec::new();
        for subset in &subsets {
            let addresses = subset.addresses.as_deref().unwrap_or_default();
            match subset.ports.as_deref() {
                // A headless service without ports lists bare addresses.
                None | Some([]) => all.extend(addresses.iter().map(|a| a.ip.clone())),
                Some(ports) => {
                    for port in ports {
                        all.extend(addresses.iter().map(|a| host_port(&a.ip, port.port)));
                    }
                }
            }
        }
        format::first_of(&all, LISTED)
    };
    Ok(vec![format::name(&endpoints.metadata).into(), listed.into(), format::age(&endpoints.metadata, now).into()])
}

/// `ip:port`, with an IPv6 address in brackets.
fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') { format!("[{ip}]:{port}") } else { format!("{ip}:{port}") }
}

pub(super) static ENDPOINT_SLICE: Printer = Printer {
    columns: &[
        NAME,
        Column::string("AddressType", "The kind of address the slice holds."),
        Column::string("Ports", "The slice's ports."),
        Column::string("Endpoints", "The slice's addresses."),
        AGE,
    ],
    cells: endpoint_slice_cells,
};

fn endpoint_slice_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let slice: EndpointSlice = decode(object)?;
    let ports: Vec<String> = slice
        .ports
        .iter()
        .flatten()
        .map(|p| match (p.port, &p.name) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) => name.clone(),
            (None, None) => "*".to_string(),
        })
        .collect();
    let addresses: Vec<String> = slice.endpoints.iter().flat_map(|e| e.addresses.iter().cloned()).collect();
    Ok(vec![
        format::name(&slice.metadata).into(),
        slice.address_type.into(),
        unset_if_empty(format::first_of(&ports, LISTED)).into(),
        unset_if_empty(format::first_of(&addresses, LISTED)).into(),
        format::age(&slice.metadata, now).into(),
    ])
}

fn unset_if_empty(s: String) -> String {
    if s.is_empty() { UNSET.to_string() } else { s }
}

pub(super) static INGRESS: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Class", "The ingress class that implements the ingress."),
        Column::string("Hosts", "The hosts the ingress routes."),
        Column::string("Address", "Where the ingress's load balancer is reachable."),
        Column::string("Ports", "The ports the ingress serves."),
        AGE,
    ],
    cells: ingress_cells,
};

fn ingress_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let ingress: Ingress = decode(object)?;
    let spec = ingress.spec.unwrap_or_default();
    let rules = spec.rules.unwrap_or_default();
    let hosts = hosts(&rules);
    let points = ingress
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.ip, i.hostname));
    let tls = spec.tls.is_some_and(|t| !t.is_empty());
    Ok(vec![
        format::name(&ingress.metadata).into(),
        format::or(spec.ingress_class_name.as_deref(), NONE).into(),
        hosts.into(),
        load_balancer_addresses(points).join(",").into(),
        (if tls { "80, 443" } else { "80" }).into(),
        format::age(&ingress.metadata, now).into(),
    ])
}

/// The first hosts of the rules, `*` when none names one. Like upstream, once three hosts are
/// listed every further rule, with a host or not, counts towards ` + N more...`.
fn hosts(rules: &[IngressRule]) -> String {
    let mut listed = Vec::new();
    let mut more = false;
    for rule in rules {
        more |= listed.len() == LISTED;
        if let Some(host) = rule.host.as_ref().filter(|h| !more && !h.is_empty()) {
            listed.push(host.clone());
        }
    }
    match listed.join(",") {
        h if h.is_empty() => "*".to_string(),
        h if more => format!("{h} + {} more...", rules.len() - LISTED),
        h => h,
    }
}

pub(super) static NETWORK_POLICY: Printer = Printer {
    columns: &[NAME, Column::string("Pod-Selector", "The pods the policy applies to."), AGE],
    cells: network_policy_cells,
};

fn network_policy_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let policy: NetworkPolicy = decode(object)?;
    let selector = policy.spec.and_then(|s| s.pod_selector);
    Ok(vec![
        format::name(&policy.metadata).into(),
        format::selector_or_none(selector.as_ref()).into(),
        format::age(&policy.metadata, now).into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    fn service(spec: Value, status: Value) -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(600)},
            "spec": spec,
            "status": status,
        })
    }

    #[test]
    fn has_upstream_service_columns() {
        assert_eq!(headers(&SERVICE), ["Name", "Type", "Cluster-IP", "External-IP", "Port(s)", "Age", "+Selector"]);
    }

    #[test]
    fn prints_a_node_port_service() {
        let object = service(
            json!({
                "type": "NodePort",
                "clusterIP": "10.96.12.34",
                "clusterIPs": ["10.96.12.34"],
                "selector": {"app": "web", "tier": "front"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080, "protocol": "TCP"},
                          {"name": "dns", "port": 53, "protocol": "UDP", "nodePort": 30053}],
            }),
            json!({}),
        );
        assert_eq!(
            cells(&SERVICE, &object),
            [
                json!("web"),
                json!("NodePort"),
                json!("10.96.12.34"),
                json!("<none>"),
                json!("80:30080/TCP,53:30053/UDP"),
                json!("10m"),
                json!("app=web,tier=front")
            ]
        );
    }

    #[test]
    fn prints_each_type_of_service() {
        let cases = [
            (
                json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 443}]}),
                json!({}),
                ["ClusterIP", "10.96.0.10", "<none>", "443/TCP", "<none>"],
            ),
            (
                json!({"clusterIP": "None", "clusterIPs": ["None"]}),
                json!({}),
                ["ClusterIP", "None", "<none>", "<none>", "<none>"],
            ),
            (
                json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.11"], "externalIPs": ["1.2.3.4", "5.6.7.8"],
                    "ports": [{"port": 80}]}),
                json!({}),
                ["ClusterIP", "10.96.0.11", "1.2.3.4,5.6.7.8", "80/TCP", "<none>"],
            ),
            (
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 80, "nodePort": 31000}]}),
                json!({}),
                ["LoadBalancer", "10.96.0.12", "<pending>", "80:31000/TCP", "<none>"],
            ),
            (
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "externalIPs": ["9.9.9.9"],
                    "ports": [{"port": 80, "nodePort": 31000}]}),
                json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.com"}, {"ip": "203.0.113.5"}]}}),
                ["LoadBalancer", "10.96.0.12", "203.0.113.5,lb.example.com,9.9.9.9", "80:31000/TCP", "<none>"],
            ),
            (
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                json!({}),
                ["ExternalName", "<none>", "db.example.com", "<none>", "<none>"],
            ),
        ];
        for (spec, status, want) in cases {
            let row = cells(&SERVICE, &service(spec.clone(), status));
            let got: Vec<&str> = [1, 2, 3, 4, 6].iter().map(|&i| row[i].as_str().unwrap_or("?")).collect();
            assert_eq!(got, want, "{spec}");
        }
    }

    #[test]
    fn lists_three_endpoints_then_counts_the_rest() {
        let object = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(60)},
            "subsets": [
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]},
                {"addresses": [{"ip": "fd00::5"}], "ports": [{"port": 80}]},
            ],
        });
        assert_eq!(
            cells(&ENDPOINTS, &object),
            [json!("web"), json!("10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 2 more..."), json!("60s")]
        );
    }

    #[test]
    fn prints_endpoints_without_ports_or_subsets() {
        let cases = [
            (json!(null), "<none>"),
            (json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "fd00::1"}]}]), "10.0.0.1,fd00::1"),
            (json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 53}]}]), "[fd00::1]:53"),
            (json!([{"notReadyAddresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}]}]), ""),
        ];
        for (subsets, want) in cases {
            let object = json!({"metadata": {"name": "e"}, "subsets": subsets});
            assert_eq!(cells(&ENDPOINTS, &object)[1], want, "{subsets}");
        }
    }

    #[test]
    fn prints_endpoint_slices() {
        let object = json!({
            "metadata": {"name": "web-abc12", "creationTimestamp": ago(60)},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 80}, {"name": "named"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1"]}, {"addresses": ["10.0.0.2"]}, {"addresses": ["10.0.0.3"]},
                          {"addresses": ["10.0.0.4"]}],
        });
        assert_eq!(
            cells(&ENDPOINT_SLICE, &object),
            [
                json!("web-abc12"),
                json!("IPv4"),
                json!("80,named,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more..."),
                json!("60s")
            ]
        );
        let empty = json!({"metadata": {"name": "e"}, "addressType": "IPv6"});
        assert_eq!(cells(&ENDPOINT_SLICE, &empty)[2..4], [json!("<unset>"), json!("<unset>")]);
    }

    #[test]
    fn prints_ingresses() {
        let object = json!({
            "metadata": {"name": "site", "creationTimestamp": ago(60)},
            "spec": {
                "ingressClassName": "nginx",
                "rules": [{"host": "a.example.com"}, {}, {"host": "c.example.com"}, {"host": "d.example.com"}],
                "tls": [{"hosts": ["a.example.com"]}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}},
        });
        assert_eq!(
            cells(&INGRESS, &object),
            [
                json!("site"),
                json!("nginx"),
                json!("a.example.com,c.example.com,d.example.com"),
                json!("203.0.113.9"),
                json!("80, 443"),
                json!("60s")
            ]
        );
        let many = json!({"metadata": {"name": "many"}, "spec": {"rules": [
            {"host": "a"}, {}, {"host": "c"}, {"host": "d"}, {"host": "e"}, {}]}});
        assert_eq!(cells(&INGRESS, &many)[2], "a,c,d + 3 more...");
        let bare = json!({"metadata": {"name": "bare"}, "spec": {"defaultBackend": {}}});
        assert_eq!(cells(&INGRESS, &bare)[1..5], [json!("<none>"), json!("*"), json!(""), json!("80")]);
    }

    #[test]
    fn prints_network_policies() {
        let object = json!({"metadata": {"name": "deny", "creationTimestamp": ago(60)},
                            "spec": {"podSelector": {"matchLabels": {"app": "db"}}}});
        assert_eq!(cells(&NETWORK_POLICY, &object), [json!("deny"), json!("app=db"), json!("60s")]);
        let all = json!({"metadata": {"name": "all"}, "spec": {"podSelector": {}}});
        assert_eq!(cells(&NETWORK_POLICY, &all)[1], "<none>");
    }
}

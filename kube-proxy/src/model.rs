//! What the proxy programs, distilled from the API objects: one [`ServicePort`] per port of
//! every Service that has a ClusterIP, with the endpoints its EndpointSlices list for that port.
//! Pure: built from cached objects, compared between syncs to find what changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The label an EndpointSlice carries naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    /// nftables' name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// Which port of which Service: `namespace/name` plus the port's protocol and number.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

impl std::fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{}", self.namespace, self.name, self.protocol.as_str(), self.port)
    }
}

/// One backend of a Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub node: Option<String>,
    pub ready: bool,
    pub serving: bool,
    pub terminating: bool,
}

/// A Service's traffic policy for one kind of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    Cluster,
    Local,
}

/// Everything the proxy needs to know about one port of one Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub id: ServicePortName,
    pub cluster_ips: Vec<Ipv4Addr>,
    pub node_port: Option<u16>,
    /// `spec.externalIPs` and `status.loadBalancer.ingress[].ip`: served like NodePorts.
    pub external_ips: Vec<Ipv4Addr>,
    /// Seconds a client stays with its endpoint (`sessionAffinity: ClientIP`).
    pub affinity_timeout: Option<u32>,
    pub external_policy: Policy,
    pub internal_policy: Policy,
    /// Sorted, deduplicated.
    pub endpoints: Vec<Endpoint>,
}

impl ServicePort {
    /// The endpoints traffic goes to: the ready ones; if none is ready, the serving terminating
    /// ones (as upstream, so connections drain during a rollout of the last pods).
    pub fn usable(&self) -> Vec<&Endpoint> {
        let ready: Vec<&Endpoint> = self.endpoints.iter().filter(|e| e.ready).collect();
        if !ready.is_empty() {
            return ready;
        }
        self.endpoints.iter().filter(|e| e.serving && e.terminating).collect()
    }

    /// [`Self::usable`] endpoints on `node`.
    pub fn usable_on(&self, node: &str) -> Vec<&Endpoint> {
        self.usable().into_iter().filter(|e| e.node.as_deref() == Some(node)).collect()
    }
}

/// The ports of every Service the proxy handles, keyed by name. Services without a ClusterIP
/// (headless, ExternalName) have none: only DNS answers for them.
pub fn service_ports(
    services: &[Arc<Service>],
    slices: &[Arc<EndpointSlice>],
) -> BTreeMap<ServicePortName, ServicePort> {
    let mut by_service: BTreeMap<(&str, &str), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices {
        let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        if slice.address_type != "IPv4" {
            continue;
        }
        let namespace = slice.metadata.namespace.as_deref().unwrap_or_default();
        by_service.entry((namespace, service.as_str())).or_default().push(slice);
    }
    let mut out = BTreeMap::new();
    for service in services {
        let namespace = service.metadata.namespace.as_deref().unwrap_or_default();
        let name = service.metadata.name.as_deref().unwrap_or_default();
        let slices = by_service.get(&(namespace, name)).map_or(&[][..], Vec::as_slice);
        for port in ports_of(service, slices) {
            out.insert(port.id.clone(), port);
        }
    }
    out
}

/// A Service by namespace and name.
pub type ServiceKey = (String, String);

/// The Service ports, kept per Service so that a change recomputes only the Services it
/// touches; [`service_ports`] of everything gives the same map.
#[derive(Debug, Default)]
pub struct Model {
    ports: BTreeMap<ServicePortName, ServicePort>,
    /// The ports each Service has in `ports`.
    by_service: HashMap<ServiceKey, Vec<ServicePortName>>,
    /// Ports updated, added or removed since [`Model::take_changed`].
    changed: BTreeSet<ServicePortName>,
}

impl Model {
    /// The model of everything, from scratch.
    pub fn new(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Self {
        let ports = service_ports(services, slices);
        let mut by_service: HashMap<ServiceKey, Vec<ServicePortName>> = HashMap::new();
        for id in ports.keys() {
            by_service.entry((id.namespace.clone(), id.name.clone())).or_default().push(id.clone());
        }
        Model { ports, by_service, changed: BTreeSet::new() }
    }

    pub fn ports(&self) -> &BTreeMap<ServicePortName, ServicePort> {
        &self.ports
    }

    /// Recomputes the ports of the Service `key` from its object (None: it is gone) and every
    /// EndpointSlice there is (only those labelled for it are read).
    pub fn update(&mut self, key: &ServiceKey, service: Option<&Service>, slices: &[Arc<EndpointSlice>]) {
        for id in self.by_service.remove(key).into_iter().flatten() {
            self.ports.remove(&id);
            self.changed.insert(id);
        }
        let Some(service) = service else { return };
        let mine: Vec<&EndpointSlice> = slices
            .iter()
            .filter(|s| {
                s.address_type == "IPv4"
                    && s.metadata.namespace.as_deref().unwrap_or_default() == key.0
                    && s.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) == Some(&key.1)
            })
            .map(|s| &**s)
            .collect();
        let ports = ports_of(service, &mine);
        if !ports.is_empty() {
            self.by_service.insert(key.clone(), ports.iter().map(|p| p.id.clone()).collect());
        }
        for port in ports {
            self.changed.insert(port.id.clone());
            self.ports.insert(port.id.clone(), port);
        }
    }

    /// The ports [`Model::update`] may have changed since the last call (a superset: a port
    /// recomputed the same is in it too).
    pub fn take_changed(&mut self) -> BTreeSet<ServicePortName> {
        std::mem::take(&mut self.changed)
    }
}

fn ports_of(service: &Service, slices: &[&EndpointSlice]) -> Vec<ServicePort> {
    let Some(spec) = &service.spec else { return Vec::new() };
    if spec.type_.as_deref() == Some("ExternalName") {
        return Vec::new();
    }
    let cluster_ips: Vec<Ipv4Addr> = match &spec.cluster_ips {
        Some(ips) if !ips.is_empty() => ips.iter().filter_map(|ip| ip.parse().ok()).collect(),
        _ => spec.cluster_ip.iter().filter_map(|ip| ip.parse().ok()).collect(),
    };
    if cluster_ips.is_empty() {
        return Vec::new();
    }
    let mut external_ips: Vec<Ipv4Addr> = spec.external_ips.iter().flatten().filter_map(|ip| ip.parse().ok()).collect();
    if spec.type_.as_deref() == Some("LoadBalancer") {
        let ingress = service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.as_ref());
        external_ips.extend(ingress.into_iter().flatten().filter_map(|i| i.ip.as_ref()?.parse::<Ipv4Addr>().ok()));
    }
    external_ips.sort_unstable();
    external_ips.dedup();
    let affinity_timeout = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        let config = spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref());
        config.and_then(|c| c.timeout_seconds).map_or(DEFAULT_AFFINITY_TIMEOUT, |t| t.clamp(1, 86_400) as u32)
    });
    let policy = |p: Option<&str>| if p == Some("Local") { Policy::Local } else { Policy::Cluster };
    let namespace = service.metadata.namespace.clone().unwrap_or_default();
    let name = service.metadata.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for port in spec.ports.iter().flatten() {
        let (Some(protocol), Ok(number)) = (Protocol::parse(port.protocol.as_deref()), u16::try_from(port.port)) else {
            continue;
        };
        let id = ServicePortName { namespace: namespace.clone(), name: name.clone(), protocol, port: number };
        let mut endpoints = endpoints_for(slices, port.name.as_deref().unwrap_or_default(), protocol);
        endpoints.sort();
        endpoints.dedup_by(|a, b| a.ip == b.ip && a.port == b.port);
        out.push(ServicePort {
            id,
            cluster_ips: cluster_ips.clone(),
            node_port: port.node_port.and_then(|p| u16::try_from(p).ok()).filter(|p| *p > 0),
            external_ips: external_ips.clone(),
            affinity_timeout,
            external_policy: policy(spec.external_traffic_policy.as_deref()),
            internal_policy: policy(spec.internal_traffic_policy.as_deref()),
            endpoints,
        });
    }
    out
}

/// Upstream's default `sessionAffinityConfig.clientIP.timeoutSeconds`: three hours.
pub const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;

/// The endpoints of the slices' port named `port_name` (a Service port and its EndpointSlice
/// port share the name; an unnamed port is "").
fn endpoints_for(slices: &[&EndpointSlice], port_name: &str, protocol: Protocol) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for slice in slices {
        let port = slice.ports.iter().flatten().find(|p| {
            p.name.as_deref().unwrap_or_default() == port_name
                && Protocol::parse(p.protocol.as_deref()) == Some(protocol)
        });
        let Some(number) = port.and_then(|p| p.port).and_then(|p| u16::try_from(p).ok()) else { continue };
        for endpoint in &slice.endpoints {
            let conditions = endpoint.conditions.as_ref();
            let ready = conditions.and_then(|c| c.ready).unwrap_or(true);
            let serving = conditions.and_then(|c| c.serving).unwrap_or(ready);
            let terminating = conditions.and_then(|c| c.terminating).unwrap_or(false);
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse() else { continue };
                out.push(Endpoint { ip, port: number, node: endpoint.node_name.clone(), ready, serving, terminating });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn service(value: serde_json::Value) -> Arc<Service> {
        Arc::new(serde_json::from_value(value).expect("service"))
    }

    fn slice(value: serde_json::Value) -> Arc<EndpointSlice> {
        Arc::new(serde_json::from_value(value).expect("slice"))
    }

    fn web() -> Arc<Service> {
        service(json!({"metadata": {"namespace": "ns", "name": "web"}, "spec": {
            "type": "NodePort", "clusterIP": "10.96.0.20", "clusterIPs": ["10.96.0.20"],
            "externalTrafficPolicy": "Local",
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080},
                      {"name": "dns", "port": 53, "protocol": "UDP"}]}}))
    }

    fn web_slice() -> Arc<EndpointSlice> {
        slice(json!({"metadata": {"namespace": "ns", "name": "web-abc", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}, {"name": "dns", "port": 5353, "protocol": "UDP"}],
            "endpoints": [
                {"addresses": ["10.244.1.3"], "nodeName": "b", "conditions": {"ready": true}},
                {"addresses": ["10.244.0.2"], "nodeName": "a"},
                {"addresses": ["10.244.0.9"], "nodeName": "a", "conditions": {"ready": false, "serving": true, "terminating": true}}]}))
    }

    #[test]
    fn a_model_kept_per_service_matches_one_built_from_scratch() {
        let key = |name: &str| ("ns".to_string(), name.to_string());
        let api = service(json!({"metadata": {"namespace": "ns", "name": "api"},
            "spec": {"clusterIP": "10.96.0.21", "ports": [{"port": 443}]}}));
        let api_slice = |ip: &str| {
            slice(json!({"metadata": {"namespace": "ns", "name": "api-1", "labels": {SERVICE_NAME_LABEL: "api"}},
                "addressType": "IPv4", "ports": [{"port": 8443}], "endpoints": [{"addresses": [ip]}]}))
        };
        // Another namespace's Service of the same name is not confused with it.
        let other =
            slice(json!({"metadata": {"namespace": "other", "name": "api-1", "labels": {SERVICE_NAME_LABEL: "api"}},
            "addressType": "IPv4", "ports": [{"port": 8443}], "endpoints": [{"addresses": ["10.244.9.9"]}]}));
        let mut services = vec![web()];
        let mut slices = vec![web_slice(), other];
        let mut model = Model::new(&services, &slices);
        assert_eq!(model.ports(), &service_ports(&services, &slices));
        services.push(api.clone());
        model.update(&key("api"), Some(&api), &slices);
        assert_eq!(model.ports(), &service_ports(&services, &slices));
        slices.push(api_slice("10.244.1.1"));
        model.update(&key("api"), Some(&api), &slices);
        assert_eq!(model.ports(), &service_ports(&services, &slices));
        assert_eq!(model.ports().values().map(|p| p.endpoints.len()).collect::<Vec<_>>(), [1, 3, 3]);
        slices[2] = api_slice("10.244.1.2");
        model.update(&key("api"), Some(&api), &slices);
        assert_eq!(model.ports(), &service_ports(&services, &slices));
        services.remove(0);
        model.update(&key("web"), None, &slices);
        assert_eq!(model.ports(), &service_ports(&services, &slices));
        let changed: Vec<String> = model.take_changed().iter().map(ToString::to_string).collect();
        assert_eq!(changed, ["ns/api/tcp/443", "ns/web/tcp/80", "ns/web/udp/53"]);
        assert!(model.take_changed().is_empty());
    }

    #[test]
    fn each_port_gets_the_endpoints_of_its_named_slice_port() {
        let ports = service_ports(&[web()], &[web_slice()]);
        let names: Vec<String> = ports.keys().map(ToString::to_string).collect();
        assert_eq!(names, ["ns/web/tcp/80", "ns/web/udp/53"]);
        let http = &ports.values().next().expect("http");
        assert_eq!(http.node_port, Some(30080));
        assert_eq!(http.external_policy, Policy::Local);
        let backends: Vec<String> = http.usable().iter().map(|e| format!("{}:{}", e.ip, e.port)).collect();
        assert_eq!(backends, ["10.244.0.2:8080", "10.244.1.3:8080"]);
        let local: Vec<String> = http.usable_on("a").iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(local, ["10.244.0.2"]);
        let dns = &ports.values().nth(1).expect("dns");
        assert!(dns.endpoints.iter().all(|e| e.port == 5353));
    }

    #[test]
    fn terminating_endpoints_serve_only_when_nothing_is_ready() {
        let only_terminating = slice(
            json!({"metadata": {"namespace": "ns", "name": "web-x", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["10.244.0.9"], "conditions": {"ready": false, "serving": true, "terminating": true}},
                          {"addresses": ["10.244.0.8"], "conditions": {"ready": false, "serving": false, "terminating": true}}]}),
        );
        let ports = service_ports(&[web()], &[only_terminating]);
        let http = ports.values().next().expect("http");
        let usable: Vec<String> = http.usable().iter().map(|e| e.ip.to_string()).collect();
        assert_eq!(usable, ["10.244.0.9"]);
    }

    #[test]
    fn headless_and_external_name_services_have_no_ports() {
        let headless = service(
            json!({"metadata": {"namespace": "ns", "name": "h"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
        );
        let external = service(
            json!({"metadata": {"namespace": "ns", "name": "e"}, "spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(service_ports(&[headless, external], &[]).is_empty());
    }

    #[test]
    fn load_balancer_ingress_and_external_ips_are_served_and_affinity_read() {
        let lb = service(json!({"metadata": {"namespace": "ns", "name": "lb"}, "spec": {
                "type": "LoadBalancer", "clusterIP": "10.96.0.30", "externalIPs": ["192.0.2.7"],
                "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                "ports": [{"port": 443, "nodePort": 31443}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.100"}]}}}));
        let ports = service_ports(&[lb], &[]);
        let p = ports.values().next().expect("port");
        assert_eq!(p.external_ips, ["192.0.2.7".parse::<Ipv4Addr>().expect("ip"), "192.0.2.100".parse().expect("ip")]);
        assert_eq!(p.affinity_timeout, Some(60));
        assert!(p.endpoints.is_empty());
    }
}

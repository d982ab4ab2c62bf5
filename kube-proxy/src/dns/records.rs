//! The cluster DNS zone as data: every name under the cluster domain, built once from the cached
//! Services and EndpointSlices into a map keyed by lower-cased FQDN, so a query is one hash lookup.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::rr::Name;
use hickory_proto::rr::rdata::SOA;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tracing::debug;

/// TTL of every record the cluster DNS hands out, including the SOA used for negative answers.
pub(crate) const TTL: u32 = 5;

/// The label that ties an EndpointSlice to its Service.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Every name the cluster DNS answers, built from the cached Services and EndpointSlices.
#[derive(Debug, Clone)]
pub struct Records {
    /// Lower-cased domain labels, e.g. `["cluster", "local"]`, for the in-zone test.
    domain_labels: Vec<String>,
    /// The zone's SOA, put in the authority section of negative answers.
    soa: SOA,
    /// The zone apex, owner of the SOA.
    apex: Name,
    /// The apex's lookup key, e.g. `cluster.local.`.
    apex_key: String,
    /// Lower-cased FQDN with trailing dot → what exists at that name. Parents of every name are
    /// present too (as empty nodes), so they answer NODATA rather than NXDOMAIN.
    nodes: HashMap<String, Node>,
}

/// What exists at one name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Node {
    pub(crate) v4: Vec<Ipv4Addr>,
    pub(crate) v6: Vec<Ipv6Addr>,
    pub(crate) cname: Option<Name>,
    pub(crate) srv: Vec<SrvTarget>,
}

/// One SRV record; the target's addresses go in the additional section.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SrvTarget {
    pub(crate) port: u16,
    /// Lower-cased FQDN with trailing dot, also the key of the target's node.
    pub(crate) target: String,
    /// The same name, ready to put in a record.
    pub(crate) target_name: Name,
}

impl SrvTarget {
    /// An SRV target at `target` (a lower-cased FQDN); `None` if that is no valid DNS name.
    fn new(port: u16, target: &str) -> Option<SrvTarget> {
        let target_name = Name::from_ascii(target).ok()?;
        Some(SrvTarget { port, target: target.to_owned(), target_name })
    }
}

impl Records {
    /// `domain` is the cluster domain, e.g. "cluster.local" (no trailing dot).
    pub fn build(domain: &str, services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Records {
        let domain = domain.trim_matches('.').to_ascii_lowercase();
        let mut builder = Builder { domain: domain.clone(), nodes: HashMap::new() };
        builder.touch(&format!("svc.{domain}."));
        builder.touch(&format!("{domain}."));

        let slices_by_service = index_slices(slices);
        for service in services {
            builder.add_service(service, &slices_by_service);
        }

        let mut nodes = builder.nodes;
        for node in nodes.values_mut() {
            node.v4.sort_unstable();
            node.v4.dedup();
            node.v6.sort_unstable();
            node.v6.dedup();
            node.srv.sort_unstable();
            node.srv.dedup();
        }

        let apex = Name::from_ascii(format!("{domain}.")).unwrap_or_else(|_| Name::root());
        let soa = soa_for(&apex);
        let domain_labels = if domain.is_empty() { Vec::new() } else { domain.split('.').map(str::to_owned).collect() };
        Records { domain_labels, soa, apex, apex_key: format!("{domain}."), nodes }
    }

    /// Whether `name` is the cluster domain or a name below it (case-insensitive).
    pub(crate) fn in_zone(&self, name: &Name) -> bool {
        let labels = self.domain_labels.len();
        if usize::from(name.num_labels()) < labels {
            return false;
        }
        name.iter()
            .rev()
            .zip(self.domain_labels.iter().rev())
            .all(|(got, want)| got.eq_ignore_ascii_case(want.as_bytes()))
    }

    /// The node at `key` (a lower-cased FQDN with trailing dot), if that name exists.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.nodes.get(key)
    }

    pub(crate) fn soa(&self) -> &SOA {
        &self.soa
    }

    pub(crate) fn apex(&self) -> &Name {
        &self.apex
    }

    pub(crate) fn apex_key(&self) -> &str {
        &self.apex_key
    }

    /// How many names the zone holds, parents included.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the zone holds no name at all (never true for a built zone: the apex exists).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// The lookup key of `name`: lower-cased labels joined by dots, with a trailing dot. `None` when
/// a label holds a byte no Kubernetes name can hold, since such a name can never be in the map.
pub(crate) fn lookup_key(name: &Name) -> Option<String> {
    let mut key = String::with_capacity(name.len().max(1) + 1);
    for label in name.iter() {
        for &byte in label {
            if !(byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_') {
                return None;
            }
            key.push(char::from(byte.to_ascii_lowercase()));
        }
        key.push('.');
    }
    if key.is_empty() {
        key.push('.');
    }
    Some(key)
}

/// The CoreDNS-style SOA of the zone: `ns.dns.<domain>. hostmaster.<domain>.`.
fn soa_for(apex: &Name) -> SOA {
    let mname =
        Name::from_ascii("ns.dns").ok().and_then(|n| n.append_domain(apex).ok()).unwrap_or_else(|| apex.clone());
    let rname =
        Name::from_ascii("hostmaster").ok().and_then(|n| n.append_domain(apex).ok()).unwrap_or_else(|| apex.clone());
    // The serial only needs to move when the zone changes; the build time does that.
    let serial = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as u32).unwrap_or(1);
    SOA::new(mname, rname, serial, 7200, 1800, 86400, TTL)
}

/// EndpointSlices grouped by (namespace, Service name), from the `kubernetes.io/service-name` label.
fn index_slices(slices: &[Arc<EndpointSlice>]) -> HashMap<(&str, &str), Vec<&EndpointSlice>> {
    let mut index: HashMap<(&str, &str), Vec<&EndpointSlice>> = HashMap::new();
    for slice in slices {
        let Some(namespace) = slice.metadata.namespace.as_deref() else { continue };
        let Some(service) = slice.metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)) else { continue };
        index.entry((namespace, service.as_str())).or_default().push(slice);
    }
    index
}

struct Builder {
    domain: String,
    nodes: HashMap<String, Node>,
}

impl Builder {
    fn add_service(&mut self, service: &Service, slices: &HashMap<(&str, &str), Vec<&EndpointSlice>>) {
        let (Some(name), Some(namespace)) = (service.metadata.name.as_deref(), service.metadata.namespace.as_deref())
        else {
            return;
        };
        if !is_label(name) || !is_label(namespace) {
            debug!(service = name, namespace, "service name is not a DNS label, skipped");
            return;
        }
        let Some(spec) = service.spec.as_ref() else { return };
        let service_fqdn =
            format!("{}.{}.svc.{}.", name.to_ascii_lowercase(), namespace.to_ascii_lowercase(), self.domain);

        if spec.type_.as_deref() == Some("ExternalName") {
            let target = spec.external_name.as_deref().unwrap_or_default().trim_end_matches('.');
            let node = self.touch(&service_fqdn);
            match Name::from_ascii(format!("{target}.")) {
                Ok(target) if !target.is_root() => node.cname = Some(target),
                _ => debug!(service = name, namespace, "externalName is not a DNS name, no CNAME"),
            }
            return;
        }

        let headless = spec.cluster_ip.as_deref() == Some("None");
        if headless {
            let all = spec.publish_not_ready_addresses == Some(true);
            let empty = Vec::new();
            let service_slices = slices.get(&(namespace, name)).unwrap_or(&empty);
            self.add_headless(&service_fqdn, service_slices, all);
            return;
        }

        let cluster_ips = match spec.cluster_ips.as_deref() {
            Some(ips) if !ips.is_empty() => ips.iter().map(String::as_str).collect::<Vec<_>>(),
            _ => spec.cluster_ip.as_deref().into_iter().collect(),
        };
        let node = self.touch(&service_fqdn);
        for ip in cluster_ips.iter().filter_map(|ip| ip.parse::<IpAddr>().ok()) {
            push_ip(node, ip);
        }
        for port in spec.ports.iter().flatten() {
            let (Some(port_name), Ok(number)) = (port.name.as_deref(), u16::try_from(port.port)) else { continue };
            let Some(owner) = srv_owner(port_name, port.protocol.as_deref(), &service_fqdn) else { continue };
            if let Some(srv) = SrvTarget::new(number, &service_fqdn) {
                self.touch(&owner).srv.push(srv);
            }
        }
    }

    /// A headless Service: its name answers with the endpoint addresses, each endpoint gets a name
    /// of its own (hostname and dashed IP) and each named port an SRV record per endpoint.
    fn add_headless(&mut self, service_fqdn: &str, slices: &[&EndpointSlice], all: bool) {
        self.touch(service_fqdn);
        for slice in slices {
            if !matches!(slice.address_type.as_str(), "IPv4" | "IPv6") {
                continue;
            }
            let ports: Vec<(String, u16)> = slice
                .ports
                .iter()
                .flatten()
                .filter_map(|port| {
                    let number = u16::try_from(port.port?).ok()?;
                    let owner = srv_owner(port.name.as_deref()?, port.protocol.as_deref(), service_fqdn)?;
                    Some((owner, number))
                })
                .collect();
            for endpoint in &slice.endpoints {
                let ready = endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false);
                if !ready && !all {
                    continue;
                }
                let hostname = endpoint.hostname.as_deref().filter(|h| is_label(h)).map(str::to_ascii_lowercase);
                let mut seen = HashSet::new();
                for ip in endpoint.addresses.iter().filter_map(|a| a.parse::<IpAddr>().ok()) {
                    push_ip(self.touch(service_fqdn), ip);
                    let dashed = format!("{}.{service_fqdn}", dashed_ip(ip));
                    push_ip(self.touch(&dashed), ip);
                    let target = match &hostname {
                        Some(hostname) => {
                            let by_hostname = format!("{hostname}.{service_fqdn}");
                            push_ip(self.touch(&by_hostname), ip);
                            by_hostname
                        }
                        None => dashed,
                    };
                    if seen.insert(target.clone()) {
                        for (owner, port) in &ports {
                            if let Some(srv) = SrvTarget::new(*port, &target) {
                                self.touch(owner).srv.push(srv);
                            }
                        }
                    }
                }
            }
        }
    }

    /// The node at `fqdn`, created (with all its missing parents inside the domain) if need be.
    fn touch(&mut self, fqdn: &str) -> &mut Node {
        if !self.nodes.contains_key(fqdn) {
            let apex = format!("{}.", self.domain);
            let mut parent = fqdn;
            while parent.len() > apex.len() {
                let Some((_, rest)) = parent.split_once('.') else { break };
                parent = rest;
                if self.nodes.contains_key(parent) {
                    break;
                }
                self.nodes.insert(parent.to_owned(), Node::default());
            }
        }
        self.nodes.entry(fqdn.to_owned()).or_default()
    }
}

fn push_ip(node: &mut Node, ip: IpAddr) {
    match ip {
        IpAddr::V4(ip) => node.v4.push(ip),
        IpAddr::V6(ip) => node.v6.push(ip),
    }
}

/// `_<port>._<proto>.<service fqdn>` for a named port; `None` for an empty or odd port name.
fn srv_owner(port_name: &str, protocol: Option<&str>, service_fqdn: &str) -> Option<String> {
    if !is_label(port_name) {
        return None;
    }
    let protocol = protocol.unwrap_or("TCP").to_ascii_lowercase();
    if !is_label(&protocol) {
        return None;
    }
    Some(format!("_{}._{protocol}.{service_fqdn}", port_name.to_ascii_lowercase()))
}

/// The endpoint name made from its IP: `10-1-2-3` for 10.1.2.3, `fd00--1` for fd00::1 (a zero is
/// added where the dashed form would begin or end with a dash, as that is no valid label).
pub(crate) fn dashed_ip(ip: IpAddr) -> String {
    let mut dashed = ip.to_string().replace(['.', ':'], "-");
    if dashed.starts_with('-') {
        dashed.insert(0, '0');
    }
    if dashed.ends_with('-') {
        dashed.push('0');
    }
    dashed
}

/// Whether `s` can be one DNS label of a Kubernetes name (letters, digits, dashes; at most 63).
fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_ip_turns_addresses_into_labels() {
        let cases = [
            ("10.1.2.3", "10-1-2-3"),
            ("fd00::1", "fd00--1"),
            ("::1", "0--1"),
            ("fd00::", "fd00--0"),
            ("2001:db8:0:1:2:3:4:5", "2001-db8-0-1-2-3-4-5"),
        ];
        for (ip, want) in cases {
            let ip: IpAddr = ip.parse().expect("test IP");
            assert_eq!(dashed_ip(ip), want, "{ip}");
        }
    }

    #[test]
    fn lookup_key_lower_cases_and_rejects_odd_bytes() {
        let name = |s: &str| Name::from_ascii(s).expect("test name");
        assert_eq!(
            lookup_key(&name("My-Svc.Default.SVC.cluster.local.")).as_deref(),
            Some("my-svc.default.svc.cluster.local.")
        );
        assert_eq!(lookup_key(&name("_http._tcp.x.")).as_deref(), Some("_http._tcp.x."));
        assert_eq!(lookup_key(&Name::root()).as_deref(), Some("."));
        assert_eq!(lookup_key(&name("a\\.b.cluster.local.")), None);
    }

    #[test]
    fn empty_zone_holds_its_apex_and_svc() {
        let records = Records::build("Cluster.Local.", &[], &[]);
        assert!(records.get("cluster.local.").is_some());
        assert!(records.get("svc.cluster.local.").is_some());
        assert_eq!(records.len(), 2);
        assert_eq!(records.apex().to_ascii(), "cluster.local.");
    }
}

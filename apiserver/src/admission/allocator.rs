//! Service ClusterIP and NodePort allocation. Every allocated IP and port is an etcd key
//! (`<root>/ranges/serviceips/<ip>`, `<root>/ranges/servicenodeports/<port>`) created in the same
//! transaction as the Service and deleted with it, so two API servers can never hand out the
//! same one: the transaction of the second fails and it picks again.

use std::net::Ipv4Addr;

use rand::Rng;
use serde_json::Value;

use super::FieldError;

/// The ranges from `--service-cluster-ip-range` and `--service-node-port-range`.
#[derive(Debug, Clone)]
pub struct Allocator {
    network: u32,
    prefix_len: u8,
    node_ports: (u16, u16),
    root: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RangeError {
    #[error("invalid CIDR {0:?}: expected an IPv4 network like 10.96.0.0/12")]
    Cidr(String),
    #[error("invalid port range {0:?}: expected LOW-HIGH like 30000-32767")]
    Ports(String),
}

/// What a Service needs allocated: the IP and ports it got, as etcd keys to create.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub keys: Vec<(String, Vec<u8>)>,
}

impl Allocator {
    pub fn new(root: &str, cidr: &str, node_ports: &str) -> Result<Self, RangeError> {
        let (ip, len) = cidr.split_once('/').ok_or_else(|| RangeError::Cidr(cidr.into()))?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| RangeError::Cidr(cidr.into()))?;
        let prefix_len: u8 =
            len.parse().ok().filter(|l| (8..=30).contains(l)).ok_or_else(|| RangeError::Cidr(cidr.into()))?;
        let mask = u32::MAX << (32 - prefix_len);
        let (lo, hi) = node_ports.split_once('-').ok_or_else(|| RangeError::Ports(node_ports.into()))?;
        let lo: u16 = lo.trim().parse().map_err(|_| RangeError::Ports(node_ports.into()))?;
        let hi: u16 = hi.trim().parse().map_err(|_| RangeError::Ports(node_ports.into()))?;
        if lo == 0 || lo > hi {
            return Err(RangeError::Ports(node_ports.into()));
        }
        Ok(Allocator { network: u32::from(ip) & mask, prefix_len, node_ports: (lo, hi), root: root.to_string() })
    }

    /// The first address of the range, which the `kubernetes` Service gets.
    pub fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    fn size(&self) -> u32 {
        1u32 << (32 - self.prefix_len)
    }

    fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        ip > self.network && ip < self.network + self.size() - 1
    }

    pub fn ip_key(&self, ip: &str) -> String {
        format!("{}/ranges/serviceips/{ip}", self.root)
    }

    pub fn port_key(&self, port: i64) -> String {
        format!("{}/ranges/servicenodeports/{port}", self.root)
    }

    /// Fills in `spec.clusterIP(s)` and `spec.ports[*].nodePort` of a Service being created
    /// (or changed from `old`), choosing at random where the user left them empty, and
    /// returns the keys that claim what is new. `owner` is `ns/name`.
    pub fn allocate(&self, svc: &mut Value, old: Option<&Value>, owner: &str) -> Result<Allocation, Vec<FieldError>> {
        let mut rng = rand::rng();
        let mut alloc = Allocation::default();
        let mut errors = Vec::new();
        let kind = svc["spec"]["type"].as_str().unwrap_or("ClusterIP").to_string();
        if kind == "ExternalName" {
            return Ok(alloc);
        }
        let old_ip = old.and_then(|o| o["spec"]["clusterIP"].as_str()).filter(|ip| !ip.is_empty());
        let wanted = svc["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty()).map(str::to_string);
        let ip = match (wanted, old_ip) {
            (Some(ip), _) if ip == "None" => None,
            (Some(ip), Some(old)) if ip == old => None,
            (None, Some(old)) => {
                svc["spec"]["clusterIP"] = old.into();
                None
            }
            (Some(ip), _) => match ip.parse::<Ipv4Addr>() {
                Ok(addr) if self.contains(addr) => Some(ip),
                _ => {
                    errors.push(FieldError::invalid(
                        "spec.clusterIPs[0]",
                        &ip,
                        format!(
                            "provided IP is not in the valid range. The range of valid IPs is {}/{}",
                            Ipv4Addr::from(self.network),
                            self.prefix_len
                        ),
                    ));
                    None
                }
            },
            (None, None) => {
                // Skip the network address, the first IP (the `kubernetes` Service) and broadcast.
                let offset = rng.random_range(2..self.size() - 1);
                Some(Ipv4Addr::from(self.network + offset).to_string())
            }
        };
        if let Some(ip) = ip {
            alloc.keys.push((self.ip_key(&ip), owner.as_bytes().to_vec()));
            svc["spec"]["clusterIP"] = ip.clone().into();
        }
        if let Some(ip) = svc["spec"]["clusterIP"].as_str().map(str::to_string) {
            svc["spec"]["clusterIPs"] = serde_json::json!([ip]);
        }

        let wants_node_ports = kind == "NodePort" || kind == "LoadBalancer";
        let old_ports: Vec<i64> = old.map(node_ports).unwrap_or_default();
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for (i, port) in ports.iter_mut().enumerate() {
                if !wants_node_ports {
                    if let Some(p) = port.as_object_mut() {
                        p.remove("nodePort");
                    }
                    continue;
                }
                match port["nodePort"].as_i64().filter(|p| *p != 0) {
                    Some(p) if old_ports.contains(&p) => {}
                    Some(p) if p < i64::from(self.node_ports.0) || p > i64::from(self.node_ports.1) => {
                        errors.push(FieldError::invalid_raw(
                            format!("spec.ports[{i}].nodePort"),
                            p.to_string(),
                            format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                self.node_ports.0, self.node_ports.1
                            ),
                        ));
                    }
                    Some(p) => alloc.keys.push((self.port_key(p), owner.as_bytes().to_vec())),
                    None => {
                        let p = i64::from(rng.random_range(self.node_ports.0..=self.node_ports.1));
                        port["nodePort"] = p.into();
                        alloc.keys.push((self.port_key(p), owner.as_bytes().to_vec()));
                    }
                }
            }
        }
        if errors.is_empty() { Ok(alloc) } else { Err(errors) }
    }

    /// The keys a Service holds, to delete with it (or those `old` held that `new` dropped).
    pub fn released(&self, old: &Value, new: Option<&Value>) -> Vec<String> {
        let mut keys = Vec::new();
        let old_ip = old["spec"]["clusterIP"].as_str().filter(|ip| !ip.is_empty() && *ip != "None");
        let new_ip = new.and_then(|n| n["spec"]["clusterIP"].as_str());
        if let Some(ip) = old_ip
            && new_ip != Some(ip)
        {
            keys.push(self.ip_key(ip));
        }
        let kept = new.map(node_ports).unwrap_or_default();
        keys.extend(node_ports(old).into_iter().filter(|p| !kept.contains(p)).map(|p| self.port_key(p)));
        keys
    }

    /// Whether the key that failed to be created is an IP (as opposed to a port).
    pub fn is_ip_key(&self, key: &str) -> bool {
        key.starts_with(&format!("{}/ranges/serviceips/", self.root))
    }
}

fn node_ports(svc: &Value) -> Vec<i64> {
    svc["spec"]["ports"]
        .as_array()
        .map(|ports| ports.iter().filter_map(|p| p["nodePort"].as_i64()).filter(|p| *p != 0).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn allocator() -> Allocator {
        Allocator::new("/registry", "10.96.0.0/12", "30000-32767").expect("valid ranges")
    }

    #[test]
    fn a_new_cluster_ip_service_gets_an_ip_in_range_and_no_node_port() {
        let mut svc = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 31000}]}});
        let alloc = allocator().allocate(&mut svc, None, "default/web").expect("allocates");
        let ip: Ipv4Addr = svc["spec"]["clusterIP"].as_str().and_then(|s| s.parse().ok()).expect("an IP");
        assert!(allocator().contains(ip) && ip != allocator().first_ip());
        assert_eq!(svc["spec"]["clusterIPs"][0], svc["spec"]["clusterIP"]);
        assert!(svc["spec"]["ports"][0].get("nodePort").is_none());
        assert_eq!(alloc.keys.len(), 1);
    }

    #[test]
    fn node_port_services_get_ports_and_requested_ones_are_checked() {
        let mut svc = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81, "nodePort": 30080}]}});
        let alloc = allocator().allocate(&mut svc, None, "default/web").expect("allocates");
        let p = svc["spec"]["ports"][0]["nodePort"].as_i64().expect("a port");
        assert!((30000..=32767).contains(&p));
        assert!(alloc.keys.iter().any(|(k, _)| k == "/registry/ranges/servicenodeports/30080"));
        let mut bad = json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 80}]}});
        let errs = allocator().allocate(&mut bad, None, "default/bad").expect_err("out of range");
        assert_eq!(errs[0].field, "spec.ports[0].nodePort");
    }

    #[test]
    fn headless_and_external_name_services_allocate_nothing() {
        for mut svc in [json!({"spec": {"clusterIP": "None", "ports": []}}), json!({"spec": {"type": "ExternalName"}})]
        {
            assert_eq!(allocator().allocate(&mut svc, None, "a/b").expect("ok").keys.len(), 0);
        }
    }

    #[test]
    fn updates_keep_what_was_allocated_and_release_what_was_dropped() {
        let old = json!({"spec": {"type": "NodePort", "clusterIP": "10.96.0.10", "ports": [{"port": 80, "nodePort": 30001}]}});
        let mut new = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30001}]}});
        let alloc = allocator().allocate(&mut new, Some(&old), "a/b").expect("ok");
        assert!(alloc.keys.is_empty());
        assert_eq!(new["spec"]["clusterIP"], "10.96.0.10");
        assert_eq!(allocator().released(&old, Some(&new)), vec!["/registry/ranges/servicenodeports/30001"]);
        assert_eq!(allocator().released(&old, None).len(), 2);
    }

    #[test]
    fn bad_ranges_are_rejected() {
        assert!(Allocator::new("/r", "10.96.0.0", "30000-32767").is_err());
        assert!(Allocator::new("/r", "10.96.0.0/12", "32767-30000").is_err());
    }
}

//! The pod network across nodes: a route to every other node's podCIDR via that node's
//! InternalIP, in the main table. The proxy marks its routes with protocol [`PROTOCOL`]
//! (`ip route show proto 82`), so it changes only its own and leaves the rest of the table alone.
//! Pure planning here ([`wanted`], [`plan`]); the netlink I/O is [`Routes`].

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Node;
use rtnetlink::RouteMessageBuilder;
use rtnetlink::packet_route::address::{AddressAttribute, AddressMessage};
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol};

/// The route protocol number that marks rk-proxy's routes (unassigned in iproute2's rt_protos).
pub const PROTOCOL: u8 = 82;

/// An IPv4 prefix: a podCIDR.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Prefix {
    pub address: Ipv4Addr,
    pub length: u8,
}

impl Prefix {
    /// `a.b.c.d/n`, with host bits cleared; None if it is not an IPv4 CIDR.
    pub fn parse(s: &str) -> Option<Prefix> {
        let (ip, len) = s.split_once('/')?;
        let (ip, length) = (ip.parse::<Ipv4Addr>().ok()?, len.parse::<u8>().ok().filter(|l| *l <= 32)?);
        let mask = if length == 0 { 0 } else { u32::MAX << (32 - length) };
        Some(Prefix { address: Ipv4Addr::from(u32::from(ip) & mask), length })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.address, self.length)
    }
}

/// Destination prefix → gateway.
pub type Table = BTreeMap<Prefix, Ipv4Addr>;

/// The routes this node should have: each other node's IPv4 podCIDRs via its first IPv4
/// InternalIP. Nodes without either are skipped, and so is a podCIDR that contains this node's
/// own gateway choice (a misconfiguration that would route the node's uplink into itself).
pub fn wanted(nodes: &[impl Borrow<Node>], me: &str) -> Table {
    let mut table = Table::new();
    for node in nodes.iter().map(Borrow::borrow) {
        if node.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let Some(gateway) = internal_ip(node) else { continue };
        let spec = node.spec.as_ref();
        let cidrs = spec.and_then(|s| s.pod_cidrs.clone()).filter(|c| !c.is_empty());
        let cidrs = cidrs.or_else(|| spec.and_then(|s| s.pod_cidr.clone()).map(|c| vec![c])).unwrap_or_default();
        for prefix in cidrs.iter().filter_map(|c| Prefix::parse(c)) {
            if !contains(prefix, gateway) {
                table.insert(prefix, gateway);
            }
        }
    }
    table
}

fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    let addresses = node.status.as_ref()?.addresses.as_ref()?;
    addresses.iter().filter(|a| a.type_ == "InternalIP").find_map(|a| a.address.parse().ok())
}

fn contains(prefix: Prefix, ip: Ipv4Addr) -> bool {
    Prefix::parse(&format!("{ip}/{}", prefix.length)) == Some(prefix)
}

/// What to change to turn `current` (the proxy's own routes) into `wanted`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Added, or replaced when the gateway changed.
    pub set: Vec<(Prefix, Ipv4Addr)>,
    pub delete: Vec<(Prefix, Ipv4Addr)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.delete.is_empty()
    }
}

pub fn plan(wanted: &Table, current: &Table) -> Plan {
    let set = wanted.iter().filter(|(p, gw)| current.get(p) != Some(gw)).map(|(p, gw)| (*p, *gw)).collect();
    let delete = current.iter().filter(|(p, _)| !wanted.contains_key(p)).map(|(p, gw)| (*p, *gw)).collect();
    Plan { set, delete }
}

#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    #[error("netlink: {0}")]
    Netlink(#[from] rtnetlink::Error),
    #[error("netlink socket: {0}")]
    Socket(#[from] std::io::Error),
    #[error("route {prefix} via {gateway}: {source}")]
    Route { prefix: Prefix, gateway: Ipv4Addr, source: rtnetlink::Error },
}

/// A netlink connection to this network namespace's routing table.
pub struct Routes {
    handle: rtnetlink::Handle,
}

impl Routes {
    /// Opens the netlink socket (in the calling thread's network namespace) and drives it on the
    /// current tokio runtime.
    pub fn connect() -> Result<Self, RouteError> {
        let (connection, handle, _) = rtnetlink::new_connection()?;
        tokio::spawn(connection);
        Ok(Routes { handle })
    }

    /// The proxy's own IPv4 routes in the main table.
    pub async fn current(&self) -> Result<Table, RouteError> {
        let query = RouteMessageBuilder::<Ipv4Addr>::new().build();
        let messages: Vec<RouteMessage> = self.handle.route().get(query).execute().try_collect().await?;
        Ok(messages.iter().filter(|m| is_ours(m)).filter_map(route_of).collect())
    }

    /// Makes the proxy's routes equal `wanted`. A route that cannot be written (its gateway not
    /// on a connected network, say) does not stop the others; the first such error is returned
    /// after all were tried.
    pub async fn sync(&self, wanted: &Table) -> Result<Plan, RouteError> {
        let plan = plan(wanted, &self.current().await?);
        let mut first_error = None;
        for &(prefix, gateway) in &plan.delete {
            let result = self.handle.route().del(message(prefix, gateway)).execute().await;
            if let Err(source) = result {
                first_error.get_or_insert(RouteError::Route { prefix, gateway, source });
            }
        }
        for &(prefix, gateway) in &plan.set {
            let result = self.handle.route().add(message(prefix, gateway)).replace().execute().await;
            if let Err(source) = result {
                first_error.get_or_insert(RouteError::Route { prefix, gateway, source });
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(plan),
        }
    }
}

impl Routes {
    /// Upstream's hairpin-veth mode on the pod bridge (the bridge holding an address in the
    /// cluster CIDR): each of its ports may send a frame back out the port it came in on. A pod
    /// reaching a Service that picks the pod itself needs it: with br_netfilter the DNAT happens
    /// on the bridge, which would otherwise drop the frame going back to its sender. Returns the
    /// ports switched on.
    pub async fn hairpin(&self, cluster: Prefix) -> Result<usize, RouteError> {
        let addresses: Vec<AddressMessage> = self.handle.address().get().execute().try_collect().await?;
        let bridges: std::collections::BTreeSet<u32> = addresses
            .iter()
            .filter(|a| {
                a.attributes
                    .iter()
                    .any(|attr| matches!(attr, AddressAttribute::Address(IpAddr::V4(ip)) if contains(cluster, *ip)))
            })
            .map(|a| a.header.index)
            .collect();
        let mut switched = 0;
        for index in bridges {
            let Some(link) = self.handle.link().get().match_index(index).execute().try_next().await? else { continue };
            let Some(name) = link.attributes.iter().find_map(|a| match a {
                LinkAttribute::IfName(n) => Some(n.clone()),
                _ => None,
            }) else {
                continue;
            };
            // Not a bridge: no `brif` directory.
            let Ok(ports) = std::fs::read_dir(format!("/sys/class/net/{name}/brif")) else { continue };
            for port in ports.flatten() {
                let mode = port.path().join("hairpin_mode");
                if std::fs::read_to_string(&mode).is_ok_and(|m| m.trim() == "0") {
                    std::fs::write(&mode, "1")?;
                    switched += 1;
                }
            }
        }
        Ok(switched)
    }
}

fn message(prefix: Prefix, gateway: Ipv4Addr) -> RouteMessage {
    RouteMessageBuilder::<Ipv4Addr>::new()
        .destination_prefix(prefix.address, prefix.length)
        .gateway(gateway)
        .protocol(RouteProtocol::from(PROTOCOL))
        .build()
}

fn is_ours(m: &RouteMessage) -> bool {
    u8::from(m.header.protocol) == PROTOCOL && m.header.table == RouteHeader::RT_TABLE_MAIN
}

fn route_of(m: &RouteMessage) -> Option<(Prefix, Ipv4Addr)> {
    let mut destination = None;
    let mut gateway = None;
    for attribute in &m.attributes {
        match attribute {
            RouteAttribute::Destination(RouteAddress::Inet(ip)) => destination = Some(*ip),
            RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
            _ => {}
        }
    }
    Some((Prefix { address: destination?, length: m.header.destination_prefix_length }, gateway?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, ip: Option<&str>, cidrs: &[&str]) -> Node {
        let addresses: Vec<_> = ip.map(|ip| json!({"type": "InternalIP", "address": ip})).into_iter().collect();
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"podCIDR": cidrs.first(), "podCIDRs": cidrs},
            "status": {"addresses": addresses},
        }))
        .expect("a valid Node")
    }

    fn p(s: &str) -> Prefix {
        Prefix::parse(s).expect("a valid prefix")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("a valid address")
    }

    #[test]
    fn prefixes_parse_and_clear_host_bits() {
        assert_eq!(p("10.244.1.7/24").to_string(), "10.244.1.0/24");
        assert_eq!(p("10.0.0.1/32").to_string(), "10.0.0.1/32");
        assert_eq!(p("1.2.3.4/0").to_string(), "0.0.0.0/0");
        for bad in ["10.244.1.0", "10.244.1.0/33", "fd00::/64", "x/24"] {
            assert_eq!(Prefix::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn wanted_routes_every_other_node() {
        let nodes = [
            node("a", Some("192.168.0.1"), &["10.244.1.0/24"]),
            node("b", Some("192.168.0.2"), &["10.244.2.0/24"]),
            node("c", Some("192.168.0.3"), &["10.244.3.0/24", "fd00:3::/64"]),
            node("no-ip", None, &["10.244.4.0/24"]),
            node("no-cidr", Some("192.168.0.5"), &[]),
            node("self-contained", Some("10.244.6.9"), &["10.244.6.0/24"]),
        ];
        let table = wanted(&nodes, "a");
        let expected: Table = [(p("10.244.2.0/24"), ip("192.168.0.2")), (p("10.244.3.0/24"), ip("192.168.0.3"))].into();
        assert_eq!(table, expected);
    }

    #[test]
    fn the_plan_adds_replaces_and_deletes_only_differences() {
        let current: Table = [
            (p("10.244.2.0/24"), ip("192.168.0.2")),
            (p("10.244.3.0/24"), ip("192.168.0.9")),
            (p("10.244.9.0/24"), ip("192.168.0.9")),
        ]
        .into();
        let wanted: Table = [
            (p("10.244.2.0/24"), ip("192.168.0.2")),
            (p("10.244.3.0/24"), ip("192.168.0.3")),
            (p("10.244.4.0/24"), ip("192.168.0.4")),
        ]
        .into();
        let plan = plan(&wanted, &current);
        assert_eq!(plan.set, [(p("10.244.3.0/24"), ip("192.168.0.3")), (p("10.244.4.0/24"), ip("192.168.0.4"))]);
        assert_eq!(plan.delete, [(p("10.244.9.0/24"), ip("192.168.0.9"))]);
        assert!(super::plan(&wanted, &wanted).is_empty());
    }
}

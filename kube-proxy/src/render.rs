//! Rendering: Service ports → the contents of the proxy's nftables table, as data
//! ([`Ruleset`]: map and set elements, and the few chains that depend on Services), then as
//! `nft -f` text — all of it for a full sync ([`full`]), or only the difference between two
//! rulesets ([`diff`]). Pure; the table layout is described in the crate's README.
//!
//! The layout keeps the number of chains independent of the number of Services: endpoints live
//! in one map keyed by `address . protocol . port . slot`, and a shared "picker" chain per
//! endpoint count N picks a slot with `numgen random mod N`. Changing an endpoint rewrites map
//! elements only.
//!
//! nft 1.0.6 cannot add a picker's rule to a table already in the kernel (it re-reads the
//! endpoint map's `typeof` from the kernel and then rejects `th dport` after `meta l4proto tcp`),
//! so pickers are only ever made by a full sync: it makes those for 1..=[`PRESET_PICKERS`]
//! endpoints and any larger count in use, and [`diff`] asks for a full sync when a new count
//! appears.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use crate::model::{Endpoint, Policy, Protocol, ServicePort, ServicePortName};

/// The table the proxy owns (and nothing else on the host).
pub const TABLE: &str = "rk-proxy";
/// The packet mark bit asking for masquerade (upstream's 0x4000).
const MASQUERADE_MARK: &str = "0x00004000";
/// Endpoint counts every full sync makes pickers for, used or not.
pub const PRESET_PICKERS: usize = 16;
/// Elements per `add element` line of a full sync.
const ELEMENTS_PER_LINE: usize = 1000;

/// What the rules depend on besides Services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// This node's name: endpoints here are "local".
    pub node_name: String,
    /// The pod network (`--cluster-cidr`): traffic to a ClusterIP from outside it is
    /// masqueraded, and pod traffic leaving it too.
    pub cluster_cidr: Option<String>,
    /// `--masquerade-all`.
    pub masquerade_all: bool,
    /// Addresses (or CIDRs) NodePorts answer on: `--nodeport-addresses`, else the node's own.
    pub nodeport_addresses: Vec<String>,
    /// The cluster DNS Service IP, redirected to the proxy's own DNS listener on this port.
    pub dns: Option<(Ipv4Addr, u16)>,
}

/// How traffic reached a Service, which decides masquerading and which endpoints qualify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// To a ClusterIP: masqueraded when it comes from outside the pod network.
    Cluster,
    /// To an external or load-balancer IP, externalTrafficPolicy Cluster: masqueraded.
    External,
    /// To an external or load-balancer IP, externalTrafficPolicy Local: local endpoints, source kept.
    Local,
    /// To a NodePort, policy Cluster.
    NodePort,
    /// To a NodePort, policy Local.
    NodePortLocal,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::External => "external",
            Kind::Local => "local",
            Kind::NodePort => "nodeport",
            Kind::NodePortLocal => "nodeport-local",
        }
    }

    fn map(self) -> &'static str {
        match self {
            Kind::NodePort | Kind::NodePortLocal => "nodeport-endpoints",
            _ => "endpoints",
        }
    }

    /// The lookup key of the endpoints map, as an nftables expression.
    fn key(self) -> &'static str {
        match self {
            Kind::NodePort | Kind::NodePortLocal => "meta l4proto . th dport",
            _ => "ip daddr . meta l4proto . th dport",
        }
    }

    fn marks(self, settings: &Settings) -> Option<String> {
        match self {
            Kind::Cluster if settings.masquerade_all => Some("jump mark-for-masquerade".into()),
            Kind::Cluster => {
                settings.cluster_cidr.as_ref().map(|c| format!("ip saddr != {c} jump mark-for-masquerade"))
            }
            Kind::External | Kind::NodePort => Some("jump mark-for-masquerade".into()),
            Kind::Local | Kind::NodePortLocal => None,
        }
    }
}

/// The Service-dependent contents of the table. Keys and values are nftables text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ruleset {
    /// `map service-ips`: `address . protocol . port` → verdict.
    pub service_ips: BTreeMap<String, String>,
    /// `map service-nodeports`: `protocol . port` → verdict.
    pub service_nodeports: BTreeMap<String, String>,
    /// `map no-endpoint-services`: refused at once (to `goto reject-connection`).
    pub no_endpoint_services: BTreeSet<String>,
    /// `map no-endpoint-nodeports`.
    pub no_endpoint_nodeports: BTreeSet<String>,
    /// `map endpoints`: `address . protocol . port . slot` → `endpoint-address . endpoint-port`.
    pub endpoints: BTreeMap<String, String>,
    /// `map nodeport-endpoints`: `protocol . port . slot` → endpoint.
    pub nodeport_endpoints: BTreeMap<String, String>,
    /// `set hairpin`: `endpoint . endpoint`, masqueraded when a pod reaches itself.
    pub hairpin: BTreeSet<String>,
    /// `set nodeport-ips`.
    pub nodeport_ips: BTreeSet<String>,
    /// The shared picker chains in use. Name → rules.
    pub pickers: BTreeMap<String, Vec<String>>,
    /// For session affinity, one chain per Service port and kind. Name → rules.
    pub chains: BTreeMap<String, Vec<String>>,
    /// The affinity sets (one per Service port endpoint): name → timeout in seconds.
    pub affinity_sets: BTreeMap<String, u32>,
}

/// The ruleset for `ports` on this node.
pub fn ruleset(ports: &BTreeMap<ServicePortName, ServicePort>, settings: &Settings) -> Ruleset {
    let mut r = Ruleset { nodeport_ips: settings.nodeport_addresses.iter().cloned().collect(), ..Ruleset::default() };
    for port in ports.values() {
        add_service_port(&mut r, port, settings);
    }
    r
}

/// One Service port's own share of the ruleset (no `nodeport-ips`: those come from the
/// settings). The whole ruleset is the union of the shares.
pub fn port_rules(port: &ServicePort, settings: &Settings) -> Ruleset {
    let mut r = Ruleset::default();
    add_service_port(&mut r, port, settings);
    r
}

fn add_service_port(r: &mut Ruleset, port: &ServicePort, settings: &Settings) {
    let id = &port.id;
    let proto = id.protocol.as_str();
    let usable = port.usable();
    let local = port.usable_on(&settings.node_name);
    for e in &usable {
        r.hairpin.insert(format!("{} . {}", e.ip, e.ip));
    }
    let dns = |ip: Ipv4Addr| settings.dns.is_some_and(|(dns, _)| dns == ip) && id.port == 53;
    for ip in port.cluster_ips.iter().copied().filter(|ip| !dns(*ip)) {
        let key = format!("{ip} . {proto} . {}", id.port);
        let chosen = if port.internal_policy == Policy::Local { &local } else { &usable };
        route(r, port, Kind::Cluster, key, chosen, usable.is_empty(), settings);
    }
    let (external, external_endpoints) =
        if port.external_policy == Policy::Local { (Kind::Local, &local) } else { (Kind::External, &usable) };
    for ip in &port.external_ips {
        let key = format!("{ip} . {proto} . {}", id.port);
        route(r, port, external, key, external_endpoints, usable.is_empty(), settings);
    }
    if let Some(node_port) = port.node_port {
        let kind = if port.external_policy == Policy::Local { Kind::NodePortLocal } else { Kind::NodePort };
        route(r, port, kind, format!("{proto} . {node_port}"), external_endpoints, usable.is_empty(), settings);
    }
}

/// Sends traffic for `key` to `endpoints`: refused when the Service has no endpoint at all,
/// dropped when only the policy leaves none, else through a picker chain.
fn route(
    r: &mut Ruleset,
    port: &ServicePort,
    kind: Kind,
    key: String,
    endpoints: &[&Endpoint],
    none_at_all: bool,
    settings: &Settings,
) {
    let nodeport = matches!(kind, Kind::NodePort | Kind::NodePortLocal);
    if none_at_all {
        if nodeport { &mut r.no_endpoint_nodeports } else { &mut r.no_endpoint_services }.insert(key);
        return;
    }
    let verdict = if endpoints.is_empty() {
        "drop".to_string()
    } else if let Some(timeout) = port.affinity_timeout {
        let chain = format!("{}-{}", kind.name(), port.id);
        let rules = sticky_rules(r, &port.id, kind, endpoints, timeout, settings);
        r.chains.insert(chain.clone(), rules);
        format!("goto {chain}")
    } else {
        let chain = format!("{}-{}", kind.name(), endpoints.len());
        r.pickers.entry(chain.clone()).or_insert_with(|| picker_rules(kind, endpoints.len(), settings));
        let map = if nodeport { &mut r.nodeport_endpoints } else { &mut r.endpoints };
        for (slot, e) in endpoints.iter().enumerate() {
            map.insert(format!("{key} . {slot}"), format!("{} . {}", e.ip, e.port));
        }
        format!("goto {chain}")
    };
    if nodeport { &mut r.service_nodeports } else { &mut r.service_ips }.insert(key, verdict);
}

/// A shared picker: marks as `kind` asks, then DNATs to slot `numgen random mod n` of the
/// endpoints map entry for the packet's own address, protocol and port.
fn picker_rules(kind: Kind, n: usize, settings: &Settings) -> Vec<String> {
    let mut rules: Vec<String> = kind.marks(settings).into_iter().collect();
    for proto in [Protocol::Tcp, Protocol::Udp, Protocol::Sctp] {
        rules.push(format!(
            "meta l4proto {} dnat ip to {} . numgen random mod {n} map @{}",
            proto.as_str(),
            kind.key(),
            kind.map()
        ));
    }
    rules
}

/// A Service port's own chain for session affinity: a client seen within the timeout goes
/// back to its endpoint; a new one picks at random and is remembered.
fn sticky_rules(
    r: &mut Ruleset,
    id: &ServicePortName,
    kind: Kind,
    endpoints: &[&Endpoint],
    timeout: u32,
    settings: &Settings,
) -> Vec<String> {
    let proto = id.protocol.as_str();
    // The timeout is in the name: a changed timeout makes new sets, and rules that use them.
    let set = |e: &Endpoint| format!("affinity-{id}__{}/{}__{timeout}s", e.ip, e.port);
    let mut rules: Vec<String> = kind.marks(settings).into_iter().collect();
    for e in endpoints {
        r.affinity_sets.insert(set(e), timeout);
        rules.push(format!("ip saddr @{} meta l4proto {proto} dnat ip to {}:{}", set(e), e.ip, e.port));
    }
    let n = endpoints.len();
    for (i, e) in endpoints.iter().enumerate() {
        let pick = if i + 1 < n { format!("numgen random mod {} == 0 ", n - i) } else { String::new() };
        rules.push(format!(
            "{pick}update @{} {{ ip saddr }} meta l4proto {proto} dnat ip to {}:{}",
            set(e),
            e.ip,
            e.port
        ));
    }
    rules
}

/// The fixed part of the table: maps, sets and the chains hooked into netfilter.
fn skeleton(settings: &Settings) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "table ip {TABLE} {{");
    out.push_str(concat!(
        "\tmap service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }\n",
        "\tmap service-nodeports { type inet_proto . inet_service : verdict; }\n",
        "\tmap no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }\n",
        "\tmap no-endpoint-nodeports { type inet_proto . inet_service : verdict; }\n",
        "\tmap endpoints { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport; }\n",
        "\tmap nodeport-endpoints { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport; }\n",
        "\tset hairpin { type ipv4_addr . ipv4_addr; }\n",
        "\tset nodeport-ips { type ipv4_addr; flags interval; auto-merge; }\n",
        "\tchain nat-prerouting { type nat hook prerouting priority -100; policy accept; jump services; }\n",
        "\tchain nat-output { type nat hook output priority -100; policy accept; jump services; }\n",
        "\tchain nat-postrouting { type nat hook postrouting priority 100; policy accept; jump masquerading; }\n",
        "\tchain filter-input { type filter hook input priority -110; policy accept; ct state new jump endpoints-check; }\n",
        "\tchain filter-forward { type filter hook forward priority -110; policy accept; ct state new jump endpoints-check; }\n",
        "\tchain filter-output { type filter hook output priority -110; policy accept; ct state new jump endpoints-check; }\n",
        "\tchain endpoints-check {\n",
        "\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services\n",
        "\t\tfib daddr type local ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports\n",
        "\t}\n",
        "\tchain reject-connection { meta l4proto tcp reject with tcp reset; reject; }\n",
        "\tchain mark-for-masquerade { meta mark set meta mark | 0x00004000; }\n",
    ));
    out.push_str("\tchain services {\n");
    if let Some((ip, port)) = settings.dns {
        let _ = writeln!(out, "\t\tip daddr {ip} udp dport 53 redirect to :{port}");
        let _ = writeln!(out, "\t\tip daddr {ip} tcp dport 53 redirect to :{port}");
    }
    out.push_str("\t\tip daddr . meta l4proto . th dport vmap @service-ips\n");
    out.push_str("\t\tfib daddr type local ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports\n");
    out.push_str("\t}\n");
    out.push_str("\tchain masquerading {\n");
    let _ = writeln!(
        out,
        "\t\tmeta mark & {MASQUERADE_MARK} == {MASQUERADE_MARK} meta mark set meta mark & 0xffffbfff masquerade fully-random"
    );
    out.push_str("\t\tct status dnat ip saddr . ip daddr @hairpin masquerade\n");
    if let Some(cidr) = &settings.cluster_cidr {
        let _ = writeln!(out, "\t\tip saddr {cidr} ip daddr != {cidr} masquerade");
    }
    out.push_str("\t}\n}\n");
    out
}

/// A full sync: the table replaced as a whole, in one transaction (affinity memory included).
pub fn full(r: &Ruleset, settings: &Settings) -> String {
    let mut out = format!("add table ip {TABLE}\ndelete table ip {TABLE}\n");
    out.push_str(&skeleton(settings));
    for (name, timeout) in &r.affinity_sets {
        add_affinity_set(&mut out, name, *timeout);
    }
    for (name, rules) in &preset_pickers(settings) {
        if !r.pickers.contains_key(name) {
            add_chain(&mut out, name, rules);
        }
    }
    for (name, rules) in r.pickers.iter().chain(&r.chains) {
        add_chain(&mut out, name, rules);
    }
    add_elements(&mut out, "service-ips", r.service_ips.iter().map(|(k, v)| format!("{k} : {v}")));
    add_elements(&mut out, "service-nodeports", r.service_nodeports.iter().map(|(k, v)| format!("{k} : {v}")));
    add_elements(&mut out, "no-endpoint-services", r.no_endpoint_services.iter().map(|k| refused(k)));
    add_elements(&mut out, "no-endpoint-nodeports", r.no_endpoint_nodeports.iter().map(|k| refused(k)));
    add_elements(&mut out, "endpoints", r.endpoints.iter().map(|(k, v)| format!("{k} : {v}")));
    add_elements(&mut out, "nodeport-endpoints", r.nodeport_endpoints.iter().map(|(k, v)| format!("{k} : {v}")));
    add_elements(&mut out, "hairpin", r.hairpin.iter().cloned());
    add_elements(&mut out, "nodeport-ips", r.nodeport_ips.iter().cloned());
    out
}

fn preset_pickers(settings: &Settings) -> BTreeMap<String, Vec<String>> {
    let kinds = [Kind::Cluster, Kind::External, Kind::Local, Kind::NodePort, Kind::NodePortLocal];
    kinds
        .into_iter()
        .flat_map(|kind| {
            (1..=PRESET_PICKERS).map(move |n| (format!("{}-{n}", kind.name()), picker_rules(kind, n, settings)))
        })
        .collect()
}

/// Whether the kernel has the picker `name` after a full sync of `r`.
pub fn made_by_full_sync(r: &Ruleset, name: &str) -> bool {
    r.pickers.contains_key(name) || preset(name)
}

/// Whether every full sync makes the picker `name`.
fn preset(name: &str) -> bool {
    name.rsplit_once('-').and_then(|(_, n)| n.parse::<usize>().ok()).is_some_and(|n| n <= PRESET_PICKERS)
}

/// What turns `old` into `new`, as one transaction; empty when they are the same; None when it
/// takes a full sync (a picker for a new endpoint count). New chains and sets come first,
/// element deletions before additions, and chains and sets nothing refers to any more go last.
/// Pickers are left in place when unused.
pub fn diff(old: &Ruleset, new: &Ruleset) -> Option<String> {
    diff_with_pickers(old, new, |p| made_by_full_sync(old, p))
}

/// [`diff`] of parts of rulesets (some Service ports' shares), with `in_kernel` telling which
/// pickers the kernel has, since the parts do not know.
pub fn diff_with_pickers(old: &Ruleset, new: &Ruleset, in_kernel: impl Fn(&str) -> bool) -> Option<String> {
    if new.pickers.keys().any(|p| !preset(p) && !in_kernel(p)) {
        return None;
    }
    let mut out = String::new();
    for (name, timeout) in &new.affinity_sets {
        if !old.affinity_sets.contains_key(name) {
            add_affinity_set(&mut out, name, *timeout);
        }
    }
    for (name, rules) in &new.chains {
        match old.chains.get(name) {
            Some(old_rules) if old_rules == rules => {}
            Some(_) => {
                let _ = writeln!(out, "flush chain ip {TABLE} {name}");
                add_rules(&mut out, name, rules);
            }
            None => add_chain(&mut out, name, rules),
        }
    }
    diff_map(&mut out, "service-ips", &old.service_ips, &new.service_ips);
    diff_map(&mut out, "service-nodeports", &old.service_nodeports, &new.service_nodeports);
    let refusals = |s: &BTreeSet<String>| s.iter().map(|k| (k.clone(), "goto reject-connection".to_string())).collect();
    diff_map(
        &mut out,
        "no-endpoint-services",
        &refusals(&old.no_endpoint_services),
        &refusals(&new.no_endpoint_services),
    );
    diff_map(
        &mut out,
        "no-endpoint-nodeports",
        &refusals(&old.no_endpoint_nodeports),
        &refusals(&new.no_endpoint_nodeports),
    );
    diff_map(&mut out, "endpoints", &old.endpoints, &new.endpoints);
    diff_map(&mut out, "nodeport-endpoints", &old.nodeport_endpoints, &new.nodeport_endpoints);
    diff_set(&mut out, "hairpin", &old.hairpin, &new.hairpin);
    diff_set(&mut out, "nodeport-ips", &old.nodeport_ips, &new.nodeport_ips);
    for name in old.chains.keys().filter(|n| !new.chains.contains_key(*n)) {
        let _ = writeln!(out, "delete chain ip {TABLE} {name}");
    }
    for name in old.affinity_sets.keys().filter(|n| !new.affinity_sets.contains_key(*n)) {
        let _ = writeln!(out, "delete set ip {TABLE} {name}");
    }
    Some(out)
}

fn refused(key: &str) -> String {
    format!("{key} : goto reject-connection")
}

fn diff_map(out: &mut String, map: &str, old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) {
    let gone: Vec<String> = old.iter().filter(|(k, v)| new.get(*k) != Some(v)).map(|(k, _)| k.clone()).collect();
    let added: Vec<String> =
        new.iter().filter(|(k, v)| old.get(*k) != Some(v)).map(|(k, v)| format!("{k} : {v}")).collect();
    delete_elements(out, map, gone.into_iter());
    add_elements(out, map, added.into_iter());
}

fn diff_set(out: &mut String, set: &str, old: &BTreeSet<String>, new: &BTreeSet<String>) {
    delete_elements(out, set, old.difference(new).cloned());
    add_elements(out, set, new.difference(old).cloned());
}

fn add_affinity_set(out: &mut String, name: &str, timeout: u32) {
    let _ = writeln!(out, "add set ip {TABLE} {name} {{ type ipv4_addr; flags dynamic,timeout; timeout {timeout}s; }}");
}

fn add_chain(out: &mut String, name: &str, rules: &[String]) {
    let _ = writeln!(out, "add chain ip {TABLE} {name}");
    add_rules(out, name, rules);
}

fn add_rules(out: &mut String, chain: &str, rules: &[String]) {
    for rule in rules {
        let _ = writeln!(out, "add rule ip {TABLE} {chain} {rule}");
    }
}

fn add_elements(out: &mut String, set: &str, elements: impl Iterator<Item = String>) {
    elements_lines(out, "add", set, elements);
}

fn delete_elements(out: &mut String, set: &str, elements: impl Iterator<Item = String>) {
    elements_lines(out, "delete", set, elements);
}

fn elements_lines(out: &mut String, verb: &str, set: &str, elements: impl Iterator<Item = String>) {
    let elements: Vec<String> = elements.collect();
    for chunk in elements.chunks(ELEMENTS_PER_LINE) {
        let _ = writeln!(out, "{verb} element ip {TABLE} {set} {{ {} }}", chunk.join(", "));
    }
}

#[cfg(test)]
mod tests;

//! Docker container specs for a pod's sandbox and containers: pure functions of the pod, the
//! node's configuration and the ConfigMaps/Secrets its environment refers to.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};

use crate::config::Config;
use crate::docker::{
    ContainerSpec, Kind, LABEL_ATTEMPT, LABEL_CONTAINER_NAME, LABEL_HASH, LABEL_KIND, LABEL_POD_NAME,
    LABEL_POD_NAMESPACE, LABEL_POD_UID, SANDBOX,
};

/// ConfigMaps and Secrets (decoded) by name, as the pod's environment needs them.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Bound PersistentVolumeClaims by name: the volume's path on the node, or why not.
    pub claims: BTreeMap<String, Result<String, String>>,
}

/// The ConfigMaps and Secrets a container's env and envFrom read: (config maps, secrets).
pub fn referenced(c: &Container) -> (Vec<String>, Vec<String>) {
    let (mut cms, mut secrets) = (Vec::new(), Vec::new());
    for e in c.env.iter().flatten() {
        if let Some(from) = &e.value_from {
            if let Some(r) = &from.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &from.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for e in c.env_from.iter().flatten() {
        if let Some(r) = &e.config_map_ref {
            cms.push(r.name.clone());
        }
        if let Some(r) = &e.secret_ref {
            secrets.push(r.name.clone());
        }
    }
    (cms, secrets)
}

/// Why a container cannot be created yet (upstream's CreateContainerConfigError).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

/// Docker's name for a container of a pod, as upstream's dockershim named them.
pub fn docker_name(pod: &Pod, container: &str, attempt: u32) -> String {
    let m = &pod.metadata;
    format!(
        "k8s_{container}_{}_{}_{}_{attempt}",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

fn labels(pod: &Pod, container: &str, kind: Kind, attempt: u32, hash: &str) -> HashMap<String, String> {
    let m = &pod.metadata;
    HashMap::from([
        (LABEL_POD_UID.to_string(), m.uid.clone().unwrap_or_default()),
        (LABEL_POD_NAME.to_string(), m.name.clone().unwrap_or_default()),
        (LABEL_POD_NAMESPACE.to_string(), m.namespace.clone().unwrap_or_default()),
        (LABEL_CONTAINER_NAME.to_string(), container.to_string()),
        (LABEL_KIND.to_string(), kind.label().to_string()),
        (LABEL_ATTEMPT.to_string(), attempt.to_string()),
        (LABEL_HASH.to_string(), hash.to_string()),
    ])
}

/// The pod's network name on this node.
pub fn network_name(node: &str) -> String {
    format!("rk-{node}")
}

/// The pod's resolv.conf, as the upstream kubelet writes it, when the pod has its own network
/// and DNS settings (None: keep what Docker wrote, e.g. the host's for hostNetwork pods).
pub fn resolv_conf(sandbox: &ContainerSpec) -> Option<String> {
    if sandbox.network_mode == "host" || sandbox.dns.is_empty() {
        return None;
    }
    let mut text: String = sandbox.dns.iter().map(|ip| format!("nameserver {ip}\n")).collect();
    if !sandbox.dns_search.is_empty() {
        text.push_str(&format!("search {}\n", sandbox.dns_search.join(" ")));
    }
    if !sandbox.dns_options.is_empty() {
        text.push_str(&format!("options {}\n", sandbox.dns_options.join(" ")));
    }
    Some(text)
}

/// The node's own resolver settings, from the kubelet's `--resolv-conf`: what pods with
/// dnsPolicy Default get, and the search domains ClusterFirst pods get after the cluster's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDns {
    pub nameservers: Vec<String>,
    pub searches: Vec<String>,
    pub options: Vec<String>,
}

/// At most this many nameservers reach a pod, as upstream (the resolver reads no more).
const MAX_NAMESERVERS: usize = 3;
/// At most this many search domains, as upstream validates.
const MAX_SEARCHES: usize = 32;

/// Reads resolv.conf text as the upstream kubelet does: `nameserver` lines add a server, the
/// last `search` line gives the domains (without a trailing dot), `options` lines add options;
/// comments (`#`, `;`) and anything else are ignored.
pub fn parse_resolv_conf(text: &str) -> HostDns {
    let mut dns = HostDns::default();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => dns.nameservers.extend(fields.next().map(str::to_string)),
            Some("search") => dns.searches = fields.map(|d| d.trim_end_matches('.').to_string()).collect(),
            Some("options") => dns.options.extend(fields.map(str::to_string)),
            _ => {}
        }
    }
    dns
}

/// The sandbox: the pause image holding the pod's network namespace, hostname and DNS settings.
/// DNS follows upstream's policies: ClusterFirst (the default) uses the cluster DNS with the
/// cluster's search domains before the node's, falling back to the node's settings when no
/// cluster DNS is configured or the pod is on the host network (ClusterFirstWithHostNet keeps
/// the cluster's); Default uses the node's; None only the pod's `dnsConfig`, which is added to
/// whatever the policy gave.
pub fn sandbox(pod: &Pod, config: &Config, attempt: u32, host: &HostDns) -> ContainerSpec {
    let spec = pod.spec.clone().unwrap_or_default();
    let host_network = spec.host_network.unwrap_or(false);
    let name = pod.metadata.name.clone().unwrap_or_default();
    let hostname = spec.hostname.clone().unwrap_or(name);
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let cluster = match policy {
        "ClusterFirst" => !host_network,
        "ClusterFirstWithHostNet" => true,
        _ => false,
    } && !config.cluster_dns.is_empty();
    // A host-network pod on the node's settings keeps the file Docker copies from the host.
    let node = !cluster && policy != "None" && !host_network;
    let (mut dns, mut search, mut options) = (Vec::new(), Vec::new(), Vec::new());
    if cluster {
        dns = config.cluster_dns.iter().map(ToString::to_string).collect();
        let domain = &config.cluster_domain;
        search = vec![format!("{namespace}.svc.{domain}"), format!("svc.{domain}"), domain.clone()];
        search.extend(host.searches.iter().cloned());
        options = vec!["ndots:5".to_string()];
    } else if node {
        dns.clone_from(&host.nameservers);
        search.clone_from(&host.searches);
        options.clone_from(&host.options);
    }
    if let Some(extra) = &spec.dns_config {
        dns.extend(extra.nameservers.iter().flatten().cloned());
        for s in extra.searches.iter().flatten() {
            if !search.contains(s) {
                search.push(s.clone());
            }
        }
        for o in extra.options.iter().flatten() {
            let name = o.name.clone().unwrap_or_default();
            options.retain(|existing| existing.split(':').next() != Some(name.as_str()));
            options.push(match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name,
            });
        }
    }
    dns.truncate(MAX_NAMESERVERS);
    search.truncate(MAX_SEARCHES);
    ContainerSpec {
        docker_name: docker_name(pod, SANDBOX, attempt),
        labels: labels(pod, SANDBOX, Kind::Sandbox, attempt, ""),
        image: config.pause_image.clone(),
        hostname: (!host_network).then(|| hostname.chars().take(63).collect()),
        network_mode: if host_network { "host".into() } else { network_name(&config.node_name) },
        // The pod's containers join the sandbox's IPC namespace, which Docker only lends when asked.
        ipc_mode: Some(if spec.host_ipc.unwrap_or(false) { "host".into() } else { "shareable".into() }),
        dns,
        dns_search: search,
        dns_options: options,
        host_ports: if host_network { Vec::new() } else { host_ports(&spec) },
        ..Default::default()
    }
}

/// The pod's `hostPort`s as Docker publishes them on the sandbox (which owns the pod's network):
/// `containerPort/protocol`, the host IP (all addresses by default) and the host port.
pub fn host_ports(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<(String, String, u16)> {
    let mut out: Vec<(String, String, u16)> = spec
        .containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|p| *p > 0)?;
            let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            let host_ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
            Some((format!("{}/{protocol}", p.container_port), host_ip, host_port))
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// An app or init container, joined to the sandbox's namespaces.
pub fn container(
    pod: &Pod,
    c: &Container,
    kind: Kind,
    attempt: u32,
    sandbox_id: &str,
    sources: &Sources,
) -> Result<ContainerSpec, ConfigError> {
    let env = environment(pod, c, sources)?;
    let vars: HashMap<&str, &str> = env.iter().filter_map(|e| e.split_once('=')).collect();
    let expand_all =
        |list: &Option<Vec<String>>| list.as_ref().map(|l| l.iter().map(|s| expand(s, &vars)).collect::<Vec<_>>());
    let (entrypoint, cmd) = (expand_all(&c.command), expand_all(&c.args));
    let resources = c.resources.clone().unwrap_or_default();
    let quantity = |map: &Option<BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
                    key: &str| {
        map.as_ref().and_then(|m| m.get(key)).and_then(|q| api_types::quantity::parse(q).ok())
    };
    let memory = quantity(&resources.limits, "memory").map(|q| q.to_value());
    let nano_cpus = quantity(&resources.limits, "cpu").map(|q| q.to_milli() * 1_000_000);
    let cpu_shares = quantity(&resources.requests, "cpu")
        .or_else(|| quantity(&resources.limits, "cpu"))
        .map(|q| (q.to_milli() * 1024 / 1000).max(2));
    let security = c.security_context.clone().unwrap_or_default();
    let pod_security = pod.spec.as_ref().and_then(|s| s.security_context.clone()).unwrap_or_default();
    let uid = security.run_as_user.or(pod_security.run_as_user);
    let gid = security.run_as_group.or(pod_security.run_as_group);
    let user = match (uid, gid) {
        (Some(u), Some(g)) => Some(format!("{u}:{g}")),
        (Some(u), None) => Some(u.to_string()),
        (None, Some(g)) => Some(format!("0:{g}")),
        (None, None) => None,
    };
    let caps = security.capabilities.clone().unwrap_or_default();
    Ok(ContainerSpec {
        docker_name: docker_name(pod, &c.name, attempt),
        labels: labels(pod, &c.name, kind, attempt, &super::plan::container_hash(c)),
        image: c.image.clone().unwrap_or_default(),
        entrypoint,
        cmd,
        env,
        working_dir: c.working_dir.clone().filter(|w| !w.is_empty()),
        user,
        network_mode: format!("container:{sandbox_id}"),
        ipc_mode: Some(format!("container:{sandbox_id}")),
        memory,
        nano_cpus,
        cpu_shares,
        privileged: security.privileged.unwrap_or(false),
        read_only_rootfs: security.read_only_root_filesystem.unwrap_or(false),
        cap_add: caps.add.unwrap_or_default(),
        cap_drop: caps.drop.unwrap_or_default(),
        ..Default::default()
    })
}

/// `NAME=value` pairs: envFrom first, then env (which wins), with `$(VAR)` references expanded
/// against what came before, as upstream does.
pub fn environment(pod: &Pod, c: &Container, sources: &Sources) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, k: String, v: String| match out.iter_mut().find(|(n, _)| *n == k) {
        Some(slot) => slot.1 = v,
        None => out.push((k, v)),
    };
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, what, optional) = match (&from.config_map_ref, &from.secret_ref) {
            (Some(r), _) => (sources.config_maps.get(&r.name), format!("configmap {:?}", r.name), r.optional),
            (None, Some(r)) => (sources.secrets.get(&r.name), format!("secret {:?}", r.name), r.optional),
            (None, None) => continue,
        };
        match data {
            Some(d) => {
                for (k, v) in d {
                    set(&mut out, format!("{prefix}{k}"), v.clone());
                }
            }
            None if optional == Some(true) => {}
            None => return Err(ConfigError(format!("{what} not found"))),
        }
    }
    for e in c.env.iter().flatten() {
        let vars: HashMap<&str, &str> = out.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        if let Some(v) = value_of(pod, c, e, sources, &vars)? {
            set(&mut out, e.name.clone(), v);
        }
    }
    Ok(out.into_iter().map(|(k, v)| format!("{k}={v}")).collect())
}

fn value_of(
    pod: &Pod,
    c: &Container,
    e: &EnvVar,
    sources: &Sources,
    vars: &HashMap<&str, &str>,
) -> Result<Option<String>, ConfigError> {
    let Some(from) = &e.value_from else {
        return Ok(Some(expand(e.value.as_deref().unwrap_or_default(), vars)));
    };
    let keyed = |maps: &BTreeMap<String, BTreeMap<String, String>>,
                 name: &str,
                 key: &str,
                 optional: Option<bool>,
                 what: &str| {
        match maps.get(name).and_then(|m| m.get(key)) {
            Some(v) => Ok(Some(v.clone())),
            None if optional == Some(true) => Ok(None),
            None if maps.contains_key(name) => Err(ConfigError(format!("couldn't find key {key} in {what} {name}"))),
            None => Err(ConfigError(format!("{what} {name:?} not found"))),
        }
    };
    if let Some(r) = &from.config_map_key_ref {
        return keyed(&sources.config_maps, &r.name, &r.key, r.optional, "ConfigMap");
    }
    if let Some(r) = &from.secret_key_ref {
        return keyed(&sources.secrets, &r.name, &r.key, r.optional, "Secret");
    }
    if let Some(r) = &from.field_ref {
        return Ok(Some(
            field(pod, &r.field_path)
                .ok_or_else(|| ConfigError(format!("unsupported fieldPath {:?}", r.field_path)))?,
        ));
    }
    if let Some(r) = &from.resource_field_ref {
        let resources = c.resources.clone().unwrap_or_default();
        let (map, key) = match r.resource.split_once('.') {
            Some(("limits", k)) => (resources.limits, k),
            Some(("requests", k)) => (resources.requests, k),
            _ => return Err(ConfigError(format!("unsupported resource {:?}", r.resource))),
        };
        let q = map.as_ref().and_then(|m| m.get(key)).and_then(|q| api_types::quantity::parse(q).ok());
        let divisor = r.divisor.as_ref().and_then(|d| api_types::quantity::parse(d).ok()).filter(|d| !d.is_zero());
        let value = match (q, divisor) {
            // Rounded up, as upstream does.
            (Some(q), Some(d)) => (q.nanos() + d.nanos() - 1) / d.nanos(),
            (Some(q), None) if key == "cpu" => i128::from((q.to_milli() + 999) / 1000),
            (Some(q), None) => i128::from(q.to_value()),
            (None, _) => 0,
        };
        return Ok(Some(value.to_string()));
    }
    Ok(None)
}

/// The downward API's fields.
pub fn field(pod: &Pod, path: &str) -> Option<String> {
    let m = &pod.metadata;
    let spec = pod.spec.clone().unwrap_or_default();
    let status = pod.status.clone().unwrap_or_default();
    let keyed = |map: &Option<BTreeMap<String, String>>, rest: &str| {
        let key = rest.strip_prefix("['")?.strip_suffix("']")?;
        Some(map.as_ref().and_then(|m| m.get(key)).cloned().unwrap_or_default())
    };
    let all = |map: &Option<BTreeMap<String, String>>| {
        map.iter().flatten().map(|(k, v)| format!("{k}=\"{v}\"")).collect::<Vec<_>>().join("\n")
    };
    Some(match path {
        "metadata.name" => m.name.clone().unwrap_or_default(),
        "metadata.namespace" => m.namespace.clone().unwrap_or_default(),
        "metadata.uid" => m.uid.clone().unwrap_or_default(),
        "metadata.labels" => all(&m.labels),
        "metadata.annotations" => all(&m.annotations),
        "spec.nodeName" => spec.node_name.unwrap_or_default(),
        "spec.serviceAccountName" => spec.service_account_name.unwrap_or_default(),
        "status.podIP" => status.pod_ip.unwrap_or_default(),
        "status.hostIP" => status.host_ip.unwrap_or_default(),
        "status.podIPs" => status.pod_ips.iter().flatten().map(|ip| ip.ip.clone()).collect::<Vec<_>>().join(","),
        p => {
            if let Some(rest) = p.strip_prefix("metadata.labels") {
                return keyed(&m.labels, rest);
            }
            if let Some(rest) = p.strip_prefix("metadata.annotations") {
                return keyed(&m.annotations, rest);
            }
            return None;
        }
    })
}

/// `$(VAR)` → its value when defined, `$$(VAR)` → `$(VAR)`, anything else left as written.
pub fn expand(s: &str, vars: &HashMap<&str, &str>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        if let Some(escaped) = tail.strip_prefix("$$") {
            out.push('$');
            rest = escaped;
        } else if let Some(inner) = tail.strip_prefix("$(")
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match vars.get(name) {
                Some(v) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests;

//! The Node object and its Lease: registration, status pushed on change and at least every
//! minute, and the heartbeat every 10 s.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio_util::sync::CancellationToken;

use crate::{Config, Error};

pub const LEASE_NAMESPACE: &str = "kube-node-lease";
pub const LEASE_DURATION_SECONDS: i32 = 40;
const HEARTBEAT: Duration = Duration::from_secs(10);
const STATUS_EVERY: Duration = Duration::from_secs(60);
pub const MAX_PODS: i64 = 110;
pub const KUBELET_VERSION: &str = concat!("v1.33.0-rkube.", env!("CARGO_PKG_VERSION"));

/// What the node is, read once at start.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub name: String,
    pub internal_ip: String,
    pub hostname: String,
    pub cpus: i64,
    pub memory_bytes: i64,
    pub ephemeral_bytes: i64,
    pub runtime_version: String,
    pub os_image: String,
    pub kernel_version: String,
    pub architecture: String,
    pub machine_id: String,
    pub boot_id: String,
    /// The port of the kubelet's HTTPS server (0: none).
    pub kubelet_port: i32,
}

impl Facts {
    pub fn read(config: &Config, runtime_version: String) -> Facts {
        let read = |path: &str| std::fs::read_to_string(path).map(|s| s.trim().to_string()).unwrap_or_default();
        let meminfo = read("/proc/meminfo");
        let memory_kib: i64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0);
        let os_image = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|v| v.trim_matches('"').to_string())
            .unwrap_or_else(|| "Linux".into());
        Facts {
            name: config.node_name.clone(),
            internal_ip: config.node_ip.map_or_else(default_route_ip, |ip| ip.to_string()),
            hostname: read("/proc/sys/kernel/hostname"),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get() as i64),
            memory_bytes: memory_kib * 1024,
            ephemeral_bytes: disk_bytes(&config.root_dir),
            runtime_version,
            os_image,
            kernel_version: read("/proc/sys/kernel/osrelease"),
            architecture: go_arch(std::env::consts::ARCH).to_string(),
            machine_id: read("/etc/machine-id"),
            boot_id: read("/proc/sys/kernel/random/boot_id"),
            kubelet_port: 0,
        }
    }
}

/// The source address the kernel would use to leave the host; loopback when there is no route.
fn default_route_ip() -> String {
    let probe = || -> std::io::Result<std::net::IpAddr> {
        let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
        socket.connect("192.0.2.1:53")?;
        Ok(socket.local_addr()?.ip())
    };
    probe().map_or_else(|_| "127.0.0.1".into(), |ip| ip.to_string())
}

/// Total bytes of the filesystem holding `dir` (or its nearest existing parent), from `df`.
fn disk_bytes(dir: &std::path::Path) -> i64 {
    let mut dir = dir.to_path_buf();
    while !dir.exists() && dir.pop() {}
    std::process::Command::new("df")
        .args(["--output=size", "-B1"])
        .arg(&dir)
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()))
        .unwrap_or(0)
}

fn go_arch(rust: &str) -> &str {
    match rust {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// The labels a kubelet puts on its Node.
pub fn node_labels(facts: &Facts, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), facts.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), facts.architecture.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), facts.architecture.clone()),
    ]);
    labels.extend(extra.clone());
    labels
}

/// The Node's status as this kubelet sees it, with `now` as heartbeat and, for conditions whose
/// status changed from `previous`, transition time.
pub fn node_status(facts: &Facts, previous: Option<&NodeStatus>, now: Timestamp) -> NodeStatus {
    let quantities = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpus.to_string())),
        ("memory".to_string(), Quantity(format!("{}Ki", facts.memory_bytes / 1024))),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
        ("ephemeral-storage".to_string(), Quantity(format!("{}Ki", facts.ephemeral_bytes / 1024))),
    ]);
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        let transition = previous
            .and_then(|p| p.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
            .filter(|c| c.status == status)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now));
        NodeCondition {
            type_: type_.to_string(),
            status: status.to_string(),
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            last_heartbeat_time: Some(Time(now)),
            last_transition_time: Some(transition),
        }
    };
    NodeStatus {
        capacity: Some(quantities.clone()),
        allocatable: Some(quantities),
        addresses: Some(vec![
            NodeAddress { type_: "InternalIP".into(), address: facts.internal_ip.clone() },
            NodeAddress { type_: "Hostname".into(), address: facts.name.clone() },
        ]),
        conditions: Some(vec![
            condition(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]),
        node_info: Some(NodeSystemInfo {
            architecture: facts.architecture.clone(),
            boot_id: facts.boot_id.clone(),
            container_runtime_version: facts.runtime_version.clone(),
            kernel_version: facts.kernel_version.clone(),
            kube_proxy_version: String::new(),
            kubelet_version: KUBELET_VERSION.to_string(),
            machine_id: facts.machine_id.clone(),
            operating_system: "linux".into(),
            os_image: facts.os_image.clone(),
            system_uuid: facts.machine_id.clone(),
            ..Default::default()
        }),
        daemon_endpoints: (facts.kubelet_port > 0)
            .then_some(NodeDaemonEndpoints { kubelet_endpoint: Some(DaemonEndpoint { port: facts.kubelet_port }) }),
        ..Default::default()
    }
}

/// Whether two statuses differ in anything but heartbeat times.
pub fn status_changed(a: &NodeStatus, b: &NodeStatus) -> bool {
    let strip = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s.images = None;
        s
    };
    strip(a) != strip(b)
}

/// Creates the Node if it is missing (with labels, taints and the pod CIDR), and returns it.
pub async fn register(nodes: &Api<Node>, facts: &Facts, config: &Config) -> Result<Node, Error> {
    match nodes.get_opt(&facts.name).await? {
        Some(node) => Ok(node),
        None => {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(facts.name.clone()),
                    labels: Some(node_labels(facts, &config.node_labels)),
                    ..Default::default()
                },
                spec: Some(NodeSpec {
                    pod_cidr: config.pod_cidr.clone(),
                    pod_cidrs: config.pod_cidr.clone().map(|c| vec![c]),
                    taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
                    ..Default::default()
                }),
                status: None,
            };
            match nodes.create(&PostParams::default(), &node).await {
                Ok(n) => Ok(n),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(nodes.get(&facts.name).await?),
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Pushes the Node's status when it changes and at least every minute, and renews the Lease
/// every 10 s, until `shutdown`.
pub async fn heartbeat(client: kube::Client, facts: Facts, node_uid: String, shutdown: CancellationToken) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client, LEASE_NAMESPACE);
    let mut last: Option<(NodeStatus, Instant)> = None;
    loop {
        let now = Timestamp::now();
        let previous = last.as_ref().map(|(s, _)| s);
        let status = node_status(&facts, previous, now);
        let due = last.as_ref().is_none_or(|(s, at)| status_changed(s, &status) || at.elapsed() >= STATUS_EVERY);
        if due {
            let patch = serde_json::json!({ "status": status });
            match nodes.patch_status(&facts.name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                Ok(_) => last = Some((status, Instant::now())),
                Err(e) => tracing::warn!(node = %facts.name, error = %e, "updating the node status failed"),
            }
        }
        if let Err(e) = renew_lease(&leases, &facts.name, &node_uid, now).await {
            tracing::warn!(node = %facts.name, error = %e, "renewing the node lease failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(HEARTBEAT) => {}
        }
    }
}

async fn renew_lease(leases: &Api<Lease>, node: &str, node_uid: &str, now: Timestamp) -> Result<(), Error> {
    let spec = LeaseSpec {
        holder_identity: Some(node.to_string()),
        lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
        renew_time: Some(MicroTime(now)),
        ..Default::default()
    };
    match leases.get_opt(node).await? {
        Some(mut lease) => {
            lease.spec = Some(LeaseSpec { acquire_time: lease.spec.and_then(|s| s.acquire_time), ..spec });
            leases.replace(node, &PostParams::default(), &lease).await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(node.to_string()),
                    owner_references: Some(vec![OwnerReference {
                        api_version: "v1".into(),
                        kind: "Node".into(),
                        name: node.to_string(),
                        uid: node_uid.to_string(),
                        ..Default::default()
                    }]),
                    ..Default::default()
                },
                spec: Some(LeaseSpec { acquire_time: Some(MicroTime(now)), ..spec }),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Facts {
        Facts {
            name: "n1".into(),
            internal_ip: "10.0.0.5".into(),
            hostname: "n1".into(),
            cpus: 2,
            memory_bytes: 4 * 1024 * 1024 * 1024,
            ephemeral_bytes: 10 * 1024 * 1024 * 1024,
            runtime_version: "docker://20.10.24".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            kernel_version: "6.1.0".into(),
            architecture: "amd64".into(),
            machine_id: "m".into(),
            boot_id: "b".into(),
            kubelet_port: 10250,
        }
    }

    #[test]
    fn status_reports_capacity_addresses_and_ready() {
        let s = node_status(&facts(), None, Timestamp::UNIX_EPOCH);
        let cap = s.capacity.expect("capacity");
        assert_eq!(cap["cpu"].0, "2");
        assert_eq!(cap["memory"].0, "4194304Ki");
        assert_eq!(cap["pods"].0, "110");
        let addresses = s.addresses.expect("addresses");
        assert_eq!((addresses[0].type_.as_str(), addresses[0].address.as_str()), ("InternalIP", "10.0.0.5"));
        let ready = s.conditions.expect("conditions").into_iter().find(|c| c.type_ == "Ready").expect("Ready");
        assert_eq!((ready.status.as_str(), ready.reason.as_deref()), ("True", Some("KubeletReady")));
        assert_eq!(s.node_info.expect("info").container_runtime_version, "docker://20.10.24");
    }

    #[test]
    fn heartbeats_alone_are_not_a_change_and_transitions_are_kept() {
        let t0 = Timestamp::UNIX_EPOCH;
        let t1 = Timestamp::from_second(100).expect("time");
        let first = node_status(&facts(), None, t0);
        let second = node_status(&facts(), Some(&first), t1);
        assert!(!status_changed(&first, &second));
        let ready = second.conditions.as_ref().and_then(|cs| cs.iter().find(|c| c.type_ == "Ready")).expect("Ready");
        assert_eq!(ready.last_transition_time, Some(Time(t0)));
        assert_eq!(ready.last_heartbeat_time, Some(Time(t1)));
        let mut bigger = facts();
        bigger.cpus = 4;
        assert!(status_changed(&second, &node_status(&bigger, Some(&second), t1)));
    }

    #[test]
    fn labels_include_the_well_known_ones_and_extras() {
        let labels = node_labels(&facts(), &BTreeMap::from([("tier".to_string(), "gold".to_string())]));
        assert_eq!(labels["kubernetes.io/hostname"], "n1");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(labels["tier"], "gold");
    }
}

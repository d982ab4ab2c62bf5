//! Flags (upstream kubelet names where one exists, each with an `RK_…` variable) and the
//! validated configuration `run` takes.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;

use k8s_openapi::api::core::v1::Taint;

use crate::Error;

pub const DEFAULT_DOCKER_ENDPOINT: &str = "unix:///var/run/docker.sock";
pub const DEFAULT_PAUSE_IMAGE: &str = "rkube/pause:1";
pub const DEFAULT_ROOT_DIR: &str = "/var/lib/rk-kubelet";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
pub const DEFAULT_RESOLV_CONF: &str = "/etc/resolv.conf";
pub const DEFAULT_PORT: u16 = 10250;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rk-kubelet", about = "The rkube node agent: runs this node's pods on Docker", version)]
pub struct Args {
    /// kubeconfig with the API server's address and this node's credentials.
    #[arg(long, env = "RK_KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Node name (default: the host name).
    #[arg(long, env = "RK_HOSTNAME_OVERRIDE")]
    pub hostname_override: Option<String>,
    /// The node's InternalIP (default: the source address of the default route).
    #[arg(long, env = "RK_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Directory for pod volumes and the kubelet's state.
    #[arg(long, env = "RK_ROOT_DIR", default_value = DEFAULT_ROOT_DIR)]
    pub root_dir: PathBuf,
    /// DNS server IPs for pods with dnsPolicy ClusterFirst, comma-separated.
    #[arg(long, env = "RK_CLUSTER_DNS", value_delimiter = ',')]
    pub cluster_dns: Vec<IpAddr>,
    /// Cluster domain for the pods' DNS search path.
    #[arg(long, env = "RK_CLUSTER_DOMAIN", default_value = DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// The node's resolver configuration, given to pods with dnsPolicy Default ("" for none).
    #[arg(long, env = "RK_RESOLV_CONF", default_value = DEFAULT_RESOLV_CONF)]
    pub resolv_conf: PathBuf,
    /// Pod CIDR to use until the Node has spec.podCIDR.
    #[arg(long, env = "RK_POD_CIDR")]
    pub pod_cidr: Option<String>,
    /// Taints the Node registers with, `key=value:Effect`, comma-separated.
    #[arg(long, env = "RK_REGISTER_WITH_TAINTS", value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// Labels the Node registers with, `key=value`, comma-separated.
    #[arg(long, env = "RK_NODE_LABELS", value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Docker Engine socket.
    #[arg(long, env = "RK_DOCKER_ENDPOINT", default_value = DEFAULT_DOCKER_ENDPOINT)]
    pub docker_endpoint: String,
    /// Address of the HTTPS server (logs) for the API server.
    #[arg(long, env = "RK_ADDRESS", default_value = "0.0.0.0")]
    pub address: IpAddr,
    /// Port of the HTTPS server (0 picks a free one).
    #[arg(long, env = "RK_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// Serving certificate of the HTTPS server; without it and the key there is no server.
    #[arg(long, env = "RK_TLS_CERT_FILE")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, env = "RK_TLS_PRIVATE_KEY_FILE")]
    pub tls_private_key_file: Option<PathBuf>,
    /// CA of the client certificates the HTTPS server accepts (the API server's).
    #[arg(long, env = "RK_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Image of each pod's sandbox container; imported from busybox when absent.
    #[arg(long, env = "RK_POD_INFRA_CONTAINER_IMAGE", default_value = DEFAULT_PAUSE_IMAGE)]
    pub pod_infra_container_image: String,
}

/// What `run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub root_dir: PathBuf,
    pub cluster_dns: Vec<IpAddr>,
    pub cluster_domain: String,
    /// None: pods with dnsPolicy Default get no nameservers from the node.
    pub resolv_conf: Option<PathBuf>,
    pub pod_cidr: Option<String>,
    pub taints: Vec<Taint>,
    pub node_labels: BTreeMap<String, String>,
    /// Path of the Docker socket.
    pub docker_socket: String,
    pub pause_image: String,
    /// How often pods are compared with Docker when nothing else prompts it.
    pub resync: std::time::Duration,
    /// The HTTPS server's address and TLS files, when it is enabled.
    pub server: Option<(std::net::SocketAddr, crate::server::Tls)>,
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(a: Args) -> Result<Self, Error> {
        let node_name = match a.hostname_override {
            Some(n) => n,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")?.trim().to_string(),
        }
        .to_lowercase();
        if node_name.is_empty() {
            return Err(Error::Config("the node name is empty".into()));
        }
        let docker_socket = a.docker_endpoint.strip_prefix("unix://").unwrap_or(&a.docker_endpoint).to_string();
        let taints = a.register_with_taints.iter().map(|t| parse_taint(t)).collect::<Result<_, _>>()?;
        let node_labels = a
            .node_labels
            .iter()
            .map(|l| {
                l.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .ok_or_else(|| Error::Config(format!("--node-labels: {l:?} is not key=value")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Config {
            kubeconfig: a.kubeconfig,
            node_name,
            node_ip: a.node_ip,
            root_dir: a.root_dir,
            cluster_dns: a.cluster_dns,
            cluster_domain: a.cluster_domain,
            resolv_conf: Some(a.resolv_conf).filter(|p| !p.as_os_str().is_empty()),
            pod_cidr: a.pod_cidr,
            taints,
            node_labels,
            docker_socket,
            pause_image: a.pod_infra_container_image,
            resync: std::time::Duration::from_secs(1),
            server: match (a.tls_cert_file, a.tls_private_key_file, a.client_ca_file) {
                (Some(cert_file), Some(key_file), Some(client_ca_file)) => Some((
                    std::net::SocketAddr::new(a.address, a.port),
                    crate::server::Tls { cert_file, key_file, client_ca_file },
                )),
                (None, None, _) => None,
                _ => {
                    return Err(Error::Config(
                        "--tls-cert-file, --tls-private-key-file and --client-ca-file go together".into(),
                    ));
                }
            },
        })
    }
}

/// `key[=value]:Effect`, as `kubectl taint` and upstream's flag take it.
pub fn parse_taint(spec: &str) -> Result<Taint, Error> {
    let bad = || Error::Config(format!("taint {spec:?} is not key[=value]:Effect"));
    let (kv, effect) = spec.rsplit_once(':').ok_or_else(bad)?;
    if !matches!(effect, "NoSchedule" | "PreferNoSchedule" | "NoExecute") {
        return Err(bad());
    }
    let (key, value) = match kv.split_once('=') {
        Some((k, v)) => (k, Some(v.to_string())),
        None => (kv, None),
    };
    if key.is_empty() {
        return Err(bad());
    }
    Ok(Taint { key: key.to_string(), value, effect: effect.to_string(), time_added: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taints_parse_like_upstream() {
        let t = parse_taint("node-role.kubernetes.io/control-plane:NoSchedule").expect("valid");
        assert_eq!(
            (t.key.as_str(), t.value, t.effect.as_str()),
            ("node-role.kubernetes.io/control-plane", None, "NoSchedule")
        );
        let t = parse_taint("dedicated=gpu:NoExecute").expect("valid");
        assert_eq!(t.value.as_deref(), Some("gpu"));
        for bad in ["nokey", "=v:NoSchedule", "k=v:Sometimes"] {
            assert!(parse_taint(bad).is_err(), "{bad}");
        }
    }
}

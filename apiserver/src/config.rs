//! Flags (upstream kube-apiserver names where one exists, each with an `RK_…` variable) and the
//! validated configuration `run` takes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use crate::storage::EtcdTls;

pub const DEFAULT_ETCD_SERVERS: &str = "http://127.0.0.1:2379";
pub const DEFAULT_ETCD_PREFIX: &str = "/registry";
pub const DEFAULT_SECURE_PORT: u16 = 6443;
pub const DEFAULT_SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/12";
pub const DEFAULT_SERVICE_NODE_PORT_RANGE: &str = "30000-32767";
/// Upstream's limit for JSON request bodies.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;

#[derive(Debug, Clone, clap::Parser)]
#[command(name = "rk-apiserver", about = "The rkube API server: the Kubernetes API on etcd", version)]
pub struct Args {
    /// etcd endpoints, comma-separated.
    #[arg(long, env = "RK_ETCD_SERVERS", value_delimiter = ',', default_value = DEFAULT_ETCD_SERVERS)]
    pub etcd_servers: Vec<String>,
    /// CA that signed the etcd servers' certificates.
    #[arg(long, env = "RK_ETCD_CAFILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate for etcd.
    #[arg(long, env = "RK_ETCD_CERTFILE")]
    pub etcd_certfile: Option<PathBuf>,
    /// Client key for etcd.
    #[arg(long, env = "RK_ETCD_KEYFILE")]
    pub etcd_keyfile: Option<PathBuf>,
    /// Key prefix of everything stored in etcd.
    #[arg(long, env = "RK_ETCD_PREFIX", default_value = DEFAULT_ETCD_PREFIX)]
    pub etcd_prefix: String,
    /// Address to serve HTTPS on.
    #[arg(long, env = "RK_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Port to serve HTTPS on (0 picks a free one).
    #[arg(long, env = "RK_SECURE_PORT", default_value_t = DEFAULT_SECURE_PORT)]
    pub secure_port: u16,
    /// Serving certificate (PEM).
    #[arg(long, env = "RK_TLS_CERT_FILE")]
    pub tls_cert_file: PathBuf,
    /// Serving key (PEM).
    #[arg(long, env = "RK_TLS_PRIVATE_KEY_FILE")]
    pub tls_private_key_file: PathBuf,
    /// CA whose client certificates authenticate users (CN = user, O = groups).
    #[arg(long, env = "RK_CLIENT_CA_FILE")]
    pub client_ca_file: Option<PathBuf>,
    /// Static bearer tokens, CSV: token,user,uid[,"group1,group2"].
    #[arg(long, env = "RK_TOKEN_AUTH_FILE")]
    pub token_auth_file: Option<PathBuf>,
    /// CIDR Service ClusterIPs are allocated from.
    #[arg(long, env = "RK_SERVICE_CLUSTER_IP_RANGE", default_value = DEFAULT_SERVICE_CLUSTER_IP_RANGE)]
    pub service_cluster_ip_range: String,
    /// Port range NodePorts are allocated from.
    #[arg(long, env = "RK_SERVICE_NODE_PORT_RANGE", default_value = DEFAULT_SERVICE_NODE_PORT_RANGE)]
    pub service_node_port_range: String,
    /// Largest request body accepted, in bytes.
    #[arg(long, env = "RK_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// Client certificate the API server presents to kubelets (pods/log).
    #[arg(long, env = "RK_KUBELET_CLIENT_CERTIFICATE")]
    pub kubelet_client_certificate: Option<PathBuf>,
    #[arg(long, env = "RK_KUBELET_CLIENT_KEY")]
    pub kubelet_client_key: Option<PathBuf>,
    /// CA of the kubelets' serving certificates; unchecked without it, as upstream.
    #[arg(long, env = "RK_KUBELET_CERTIFICATE_AUTHORITY")]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Events each resource's watch cache keeps for watchers resuming from a resourceVersion.
    #[arg(long, env = "RK_WATCH_CACHE_SIZE", default_value_t = crate::cache::DEFAULT_HISTORY)]
    pub watch_cache_size: usize,
}

/// What `run` needs, validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub etcd_servers: Vec<String>,
    pub etcd_tls: EtcdTls,
    pub etcd_prefix: String,
    pub listen: SocketAddr,
    pub tls_cert_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub token_auth_file: Option<PathBuf>,
    pub service_cluster_ip_range: String,
    pub service_node_port_range: String,
    pub max_request_bytes: usize,
    pub watch_cache_size: usize,
    pub kubelet: crate::kubelet::KubeletTls,
}

impl TryFrom<Args> for Config {
    type Error = crate::RunError;

    fn try_from(a: Args) -> Result<Self, Self::Error> {
        if a.etcd_servers.is_empty() {
            return Err(crate::RunError::Config("--etcd-servers must name at least one endpoint".into()));
        }
        if a.etcd_certfile.is_some() != a.etcd_keyfile.is_some() {
            return Err(crate::RunError::Config("--etcd-certfile and --etcd-keyfile go together".into()));
        }
        Ok(Config {
            etcd_servers: a.etcd_servers,
            etcd_tls: EtcdTls { ca_file: a.etcd_cafile, cert_file: a.etcd_certfile, key_file: a.etcd_keyfile },
            etcd_prefix: a.etcd_prefix.trim_end_matches('/').to_string(),
            listen: SocketAddr::new(a.bind_address, a.secure_port),
            tls_cert_file: a.tls_cert_file,
            tls_private_key_file: a.tls_private_key_file,
            client_ca_file: a.client_ca_file,
            token_auth_file: a.token_auth_file,
            service_cluster_ip_range: a.service_cluster_ip_range,
            service_node_port_range: a.service_node_port_range,
            max_request_bytes: a.max_request_bytes,
            watch_cache_size: a.watch_cache_size.max(100),
            kubelet: crate::kubelet::KubeletTls {
                client_certificate: a.kubelet_client_certificate,
                client_key: a.kubelet_client_key,
                certificate_authority: a.kubelet_certificate_authority,
            },
        })
    }
}

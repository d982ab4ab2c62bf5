//! Flags (upstream kube-proxy's names where they exist, each with an `RK_` variable) and the
//! validated configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

pub const DEFAULT_HEALTHZ_PORT: u16 = 10256;
pub const DEFAULT_CLUSTER_DNS: &str = "10.96.0.10";
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Where the DNS listener sits on the node; traffic to the cluster DNS IP is redirected here.
pub const DEFAULT_DNS_PORT: u16 = 10053;

#[derive(Debug, clap::Parser)]
#[command(name = "rk-proxy", about = "Services on nftables and cluster DNS, on every node.")]
pub struct Args {
    /// Kubeconfig of the API server.
    #[arg(long, env = "RK_KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// This node's name, if not the host name.
    #[arg(long, env = "RK_HOSTNAME_OVERRIDE")]
    pub hostname_override: Option<String>,
    /// The pod network: ClusterIP traffic from outside it, and pod traffic leaving it, is
    /// masqueraded.
    #[arg(long, env = "RK_CLUSTER_CIDR")]
    pub cluster_cidr: Option<String>,
    /// Addresses (CIDRs) NodePorts answer on; by default the node's own InternalIPs.
    #[arg(long, env = "RK_NODEPORT_ADDRESSES", value_delimiter = ',')]
    pub nodeport_addresses: Vec<String>,
    /// Masquerade all traffic to Service IPs.
    #[arg(long, env = "RK_MASQUERADE_ALL")]
    pub masquerade_all: bool,
    /// Least time between two syncs: changes arriving faster are applied together.
    #[arg(long, env = "RK_MIN_SYNC_PERIOD", default_value = "1s", value_parser = daemon::parse_duration)]
    pub min_sync_period: Duration,
    /// How often the whole table is rewritten, repairing anything changed behind the proxy's back.
    #[arg(long, env = "RK_SYNC_PERIOD", default_value = "1h", value_parser = daemon::parse_duration)]
    pub sync_period: Duration,
    /// The cluster DNS Service IP this node answers for (0.0.0.0: no DNS).
    #[arg(long, env = "RK_CLUSTER_DNS", default_value = DEFAULT_CLUSTER_DNS)]
    pub cluster_dns: Ipv4Addr,
    #[arg(long, env = "RK_CLUSTER_DOMAIN", default_value = DEFAULT_CLUSTER_DOMAIN)]
    pub cluster_domain: String,
    /// The port of the node-local DNS listener (UDP and TCP, all addresses).
    #[arg(long, env = "RK_DNS_PORT", default_value_t = DEFAULT_DNS_PORT)]
    pub dns_port: u16,
    /// The resolv.conf naming the upstream resolvers for names outside the cluster.
    #[arg(long, env = "RK_RESOLV_CONF", default_value = "/etc/resolv.conf")]
    pub resolv_conf: PathBuf,
    /// Route other nodes' podCIDRs via their InternalIPs (off when another network plugin does).
    #[arg(long, env = "RK_POD_ROUTES", default_value_t = true, action = clap::ArgAction::Set)]
    pub pod_routes: bool,
    /// Address of /healthz and /metrics; port 0 turns them off.
    #[arg(long, env = "RK_HEALTHZ_BIND_ADDRESS", default_value = "0.0.0.0:10256")]
    pub healthz_bind_address: SocketAddr,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub node_name: String,
    pub cluster_cidr: Option<String>,
    pub nodeport_addresses: Vec<String>,
    pub masquerade_all: bool,
    pub min_sync_period: Duration,
    pub sync_period: Duration,
    /// None: no cluster DNS on this node.
    pub dns: Option<DnsConfig>,
    /// Whether this proxy keeps the routes to other nodes' pods ([`crate::routes`]).
    pub pod_routes: bool,
    pub health_address: Option<SocketAddr>,
    /// The nft program and leading arguments (tests point it into a network namespace).
    pub nft_command: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct DnsConfig {
    pub service_ip: Ipv4Addr,
    pub domain: String,
    /// Where the listener binds (all addresses, the redirect's target port).
    pub listen: SocketAddr,
    pub resolv_conf: PathBuf,
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(a: Args) -> Result<Self, Error> {
        let node_name = match a.hostname_override {
            Some(n) => n,
            None => std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_lowercase())
                .map_err(|e| Error::Config(format!("reading the host name: {e}")))?,
        };
        if let Some(cidr) = &a.cluster_cidr {
            validate_cidr(cidr)?;
        }
        for cidr in &a.nodeport_addresses {
            validate_cidr(cidr)?;
        }
        if a.min_sync_period > a.sync_period {
            return Err(Error::Config("--min-sync-period is longer than --sync-period".into()));
        }
        let dns = (!a.cluster_dns.is_unspecified()).then(|| DnsConfig {
            service_ip: a.cluster_dns,
            domain: a.cluster_domain.trim_end_matches('.').to_string(),
            listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), a.dns_port),
            resolv_conf: a.resolv_conf,
        });
        Ok(Config {
            kubeconfig: a.kubeconfig,
            node_name,
            cluster_cidr: a.cluster_cidr,
            nodeport_addresses: a.nodeport_addresses,
            masquerade_all: a.masquerade_all,
            min_sync_period: a.min_sync_period,
            sync_period: a.sync_period,
            dns,
            pod_routes: a.pod_routes,
            health_address: (a.healthz_bind_address.port() != 0).then_some(a.healthz_bind_address),
            nft_command: vec!["nft".into()],
        })
    }
}

/// An IPv4 address or `address/prefix`.
fn validate_cidr(s: &str) -> Result<(), Error> {
    let (ip, prefix) = s.split_once('/').unwrap_or((s, "32"));
    let ok = ip.parse::<Ipv4Addr>().is_ok() && prefix.parse::<u8>().is_ok_and(|p| p <= 32);
    if ok { Ok(()) } else { Err(Error::Config(format!("{s:?} is not an IPv4 address or CIDR"))) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn flags_become_a_config_with_upstream_defaults() {
        let args = Args::parse_from([
            "rk-proxy",
            "--kubeconfig",
            "/etc/rkube/proxy.conf",
            "--hostname-override",
            "node-a",
            "--cluster-cidr",
            "10.244.0.0/16",
        ]);
        let c = Config::try_from(args).expect("valid");
        assert_eq!(c.node_name, "node-a");
        assert_eq!(c.min_sync_period, Duration::from_secs(1));
        let dns = c.dns.expect("dns on");
        assert_eq!((dns.service_ip.to_string(), dns.domain.as_str()), ("10.96.0.10".to_string(), "cluster.local"));
        assert_eq!(c.health_address.map(|a| a.port()), Some(DEFAULT_HEALTHZ_PORT));
    }

    #[test]
    fn bad_cidrs_and_periods_are_refused() {
        for bad in [
            vec!["--cluster-cidr", "10.244.0.0/33"],
            vec!["--nodeport-addresses", "fe80::/64"],
            vec!["--min-sync-period", "2h"],
        ] {
            let mut argv = vec!["rk-proxy", "--kubeconfig", "k", "--hostname-override", "n"];
            argv.extend(bad.iter().copied());
            assert!(Config::try_from(Args::parse_from(&argv)).is_err(), "{bad:?}");
        }
    }
}

//! Flags (upstream kube-controller-manager's names where they exist, each with an `RK_`
//! variable) and the [`Config`] they become, including which controllers run.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::Error;

/// Port of the plain-HTTP /healthz and /metrics endpoint (kube-controller-manager's old
/// insecure port, next to rk-scheduler's 10251).
pub const DEFAULT_PORT: u16 = 10252;
/// Reconciles of one controller running at once, as upstream's `--concurrent-*-syncs`.
pub const DEFAULT_CONCURRENT_SYNCS: usize = 5;
/// The default `--cluster-cidr`, as text (the parsed form is `nodeipam::DEFAULT_CLUSTER_CIDR`).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.244.0.0/16";
pub const DEFAULT_NODE_CIDR_MASK_SIZE: u8 = 24;
/// How long a node may be silent before it is Ready=Unknown (upstream's default).
pub const DEFAULT_NODE_MONITOR_GRACE_PERIOD: Duration = Duration::from_secs(40);
/// Where on each node the local-path provisioner makes its volumes' directories.
pub const DEFAULT_LOCAL_PATH_DIR: &str = "/var/lib/rkube/local-path";
/// The image of the pods that remove a deleted local-path volume's directory: the kubelet's
/// sandbox image, a static busybox every node already has.
pub const DEFAULT_LOCAL_PATH_HELPER_IMAGE: &str = "rkube/pause:1";

#[derive(Debug, clap::Parser)]
#[command(name = "rk-controller-manager", about = "Runs the controllers that turn intent into pods.")]
pub struct Args {
    /// Kubeconfig of the API server to work for.
    #[arg(long, env = "RK_KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Controllers to run: `*` for every one on by default, `name` to add one, `-name` to
    /// leave one out (e.g. `*,-serviceaccount-controller`).
    #[arg(long, env = "RK_CONTROLLERS", default_value = "*", value_delimiter = ',')]
    pub controllers: Vec<String>,
    /// Run only while holding the `kube-system/rk-controller-manager` Lease.
    #[arg(long, env = "RK_LEADER_ELECT", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_elect: bool,
    #[arg(long, env = "RK_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = daemon::parse_duration)]
    pub leader_elect_lease_duration: Duration,
    #[arg(long, env = "RK_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = daemon::parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    #[arg(long, env = "RK_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = daemon::parse_duration)]
    pub leader_elect_retry_period: Duration,
    /// Address of the plain-HTTP /healthz and /metrics endpoint.
    #[arg(long, env = "RK_ADDRESS", default_value = "127.0.0.1")]
    pub address: IpAddr,
    /// Port of that endpoint; 0 turns it off.
    #[arg(long, env = "RK_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,
    /// The pods' address range, from which each node gets a `--node-cidr-mask-size` slice.
    #[arg(long, env = "RK_CLUSTER_CIDR", default_value = DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: String,
    #[arg(long, env = "RK_NODE_CIDR_MASK_SIZE", default_value_t = DEFAULT_NODE_CIDR_MASK_SIZE)]
    pub node_cidr_mask_size: u8,
    /// Give nodes without a spec.podCIDR one from --cluster-cidr (upstream's default is false;
    /// kubeadm, like rkadm, always turns it on).
    #[arg(long, env = "RK_ALLOCATE_NODE_CIDRS", default_value_t = true, action = clap::ArgAction::Set)]
    pub allocate_node_cidrs: bool,
    /// Silence after which a node is Ready=Unknown and tainted unreachable.
    #[arg(long, env = "RK_NODE_MONITOR_GRACE_PERIOD", default_value = "40s", value_parser = daemon::parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// ReplicaSets (and ReplicationControllers) reconciled at once.
    #[arg(long, env = "RK_CONCURRENT_REPLICASET_SYNCS", default_value_t = DEFAULT_CONCURRENT_SYNCS)]
    pub concurrent_replicaset_syncs: usize,
    /// Deployments reconciled at once.
    #[arg(long, env = "RK_CONCURRENT_DEPLOYMENT_SYNCS", default_value_t = DEFAULT_CONCURRENT_SYNCS)]
    pub concurrent_deployment_syncs: usize,
    /// Make the `local-path` StorageClass (rkube.io/local-path, WaitForFirstConsumer, Delete) at
    /// start if it is missing; it is the default class unless another one is.
    #[arg(long, env = "RK_DEFAULT_STORAGE_CLASS", default_value_t = true, action = clap::ArgAction::Set)]
    pub default_storage_class: bool,
    /// Directory on each node under which local-path volumes are made.
    #[arg(long, env = "RK_LOCAL_PATH_DIR", default_value = DEFAULT_LOCAL_PATH_DIR)]
    pub local_path_dir: PathBuf,
    /// Image of the pods that remove deleted local-path volumes' directories; it must have
    /// /bin/busybox.
    #[arg(long, env = "RK_LOCAL_PATH_HELPER_IMAGE", default_value = DEFAULT_LOCAL_PATH_HELPER_IMAGE)]
    pub local_path_helper_image: String,
    /// How often each HorizontalPodAutoscaler is looked at.
    #[arg(long, env = "RK_HPA_SYNC_PERIOD", default_value = "15s", value_parser = daemon::parse_duration)]
    pub horizontal_pod_autoscaler_sync_period: Duration,
    /// The scale-down stabilization window of autoscalers that set none themselves.
    #[arg(long, env = "RK_HPA_DOWNSCALE_STABILIZATION", default_value = "5m", value_parser = daemon::parse_duration)]
    pub horizontal_pod_autoscaler_downscale_stabilization: Duration,
    /// Usage ratios this close to 1 change nothing.
    #[arg(long, env = "RK_HPA_TOLERANCE", default_value_t = 0.1)]
    pub horizontal_pod_autoscaler_tolerance: f64,
    /// After a pod starts, how long its cpu samples count only once it is ready.
    #[arg(long, env = "RK_HPA_CPU_INITIALIZATION_PERIOD", default_value = "5m", value_parser = daemon::parse_duration)]
    pub horizontal_pod_autoscaler_cpu_initialization_period: Duration,
    /// After a pod starts, how long readiness changes are taken as start-up.
    #[arg(long, env = "RK_HPA_INITIAL_READINESS_DELAY", default_value = "30s", value_parser = daemon::parse_duration)]
    pub horizontal_pod_autoscaler_initial_readiness_delay: Duration,
    /// Addresses for LoadBalancer Services: comma-separated IPv4 CIDRs (`a.b.c.d/n`; below /31
    /// without the network and broadcast addresses) and ranges (`a.b.c.d-e.f.g.h`). Unset, the
    /// service-lb controller gives out none.
    #[arg(long, env = "RK_SERVICE_LB_IP_POOL")]
    pub service_lb_ip_pool: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    /// Names of the controllers to run (see [`crate::controllers::REGISTRY`]).
    pub controllers: BTreeSet<&'static str>,
    /// `None`: run at once, without a Lease.
    pub leader_election: Option<daemon::leader::Config>,
    pub health_address: Option<SocketAddr>,
    pub cluster_cidr: crate::controllers::nodeipam::Cidr,
    pub node_cidr_mask_size: u8,
    pub node_monitor_grace_period: Duration,
    pub concurrent_replicaset_syncs: usize,
    pub concurrent_deployment_syncs: usize,
    /// Make the `local-path` StorageClass at start.
    pub default_storage_class: bool,
    pub local_path_dir: PathBuf,
    pub local_path_helper_image: String,
    pub hpa: crate::controllers::podautoscaler::Settings,
    /// Addresses for LoadBalancer Services; `None`: the service-lb controller is off.
    pub service_lb_ip_pool: Option<crate::controllers::service_lb::Pool>,
}

impl Config {
    /// Every default controller, no leader election, no health endpoint: what tests start.
    pub fn for_kubeconfig(kubeconfig: PathBuf) -> Self {
        Config {
            kubeconfig,
            controllers: crate::controllers::defaults().collect(),
            leader_election: None,
            health_address: None,
            cluster_cidr: crate::controllers::nodeipam::DEFAULT_CLUSTER_CIDR,
            node_cidr_mask_size: DEFAULT_NODE_CIDR_MASK_SIZE,
            node_monitor_grace_period: DEFAULT_NODE_MONITOR_GRACE_PERIOD,
            concurrent_replicaset_syncs: DEFAULT_CONCURRENT_SYNCS,
            concurrent_deployment_syncs: DEFAULT_CONCURRENT_SYNCS,
            default_storage_class: true,
            local_path_dir: PathBuf::from(DEFAULT_LOCAL_PATH_DIR),
            local_path_helper_image: DEFAULT_LOCAL_PATH_HELPER_IMAGE.into(),
            hpa: crate::controllers::podautoscaler::Settings::default(),
            service_lb_ip_pool: None,
        }
    }
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(args: Args) -> Result<Self, Error> {
        let known: Vec<&'static str> = crate::controllers::REGISTRY.iter().map(|c| c.name).collect();
        let defaults: Vec<&'static str> = crate::controllers::defaults().collect();
        let mut controllers = select_controllers(&args.controllers, &known, &defaults)?;
        if !args.allocate_node_cidrs {
            controllers.remove(crate::controllers::nodeipam::NAME);
        }
        let cluster_cidr = crate::controllers::nodeipam::Cidr::parse(&args.cluster_cidr)
            .ok_or_else(|| Error::Config(format!("--cluster-cidr {:?} is not an IPv4 CIDR", args.cluster_cidr)))?;
        if args.node_cidr_mask_size < cluster_cidr.len || args.node_cidr_mask_size > 32 {
            return Err(Error::Config(format!(
                "--node-cidr-mask-size {} must be between the cluster CIDR's prefix ({}) and 32",
                args.node_cidr_mask_size, cluster_cidr.len
            )));
        }
        let leader_election = args.leader_elect.then(|| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
            let identity = format!("{}_{}", host.trim(), std::process::id());
            let mut lease = daemon::leader::Config::new("kube-system", "rk-controller-manager", &identity);
            lease.lease_duration = args.leader_elect_lease_duration;
            lease.renew_deadline = args.leader_elect_renew_deadline;
            lease.retry_period = args.leader_elect_retry_period;
            lease
        });
        if args.concurrent_replicaset_syncs == 0 {
            return Err(Error::Config("--concurrent-replicaset-syncs must be at least 1".into()));
        }
        if args.concurrent_deployment_syncs == 0 {
            return Err(Error::Config("--concurrent-deployment-syncs must be at least 1".into()));
        }
        let service_lb_ip_pool = match args.service_lb_ip_pool.as_deref() {
            Some(text) => crate::controllers::service_lb::Pool::parse(text)
                .map_err(|e| Error::Config(format!("--service-lb-ip-pool: {e}")))?,
            None => None,
        };
        if !args.local_path_dir.is_absolute() {
            return Err(Error::Config(format!("--local-path-dir {:?} must be absolute", args.local_path_dir)));
        }
        Ok(Config {
            kubeconfig: args.kubeconfig,
            controllers,
            leader_election,
            health_address: (args.port != 0).then_some(SocketAddr::new(args.address, args.port)),
            cluster_cidr,
            node_cidr_mask_size: args.node_cidr_mask_size,
            node_monitor_grace_period: args.node_monitor_grace_period,
            concurrent_replicaset_syncs: args.concurrent_replicaset_syncs,
            concurrent_deployment_syncs: args.concurrent_deployment_syncs,
            default_storage_class: args.default_storage_class,
            local_path_dir: args.local_path_dir,
            local_path_helper_image: args.local_path_helper_image,
            hpa: crate::controllers::podautoscaler::Settings {
                sync_period: args.horizontal_pod_autoscaler_sync_period,
                downscale_stabilization: args.horizontal_pod_autoscaler_downscale_stabilization,
                tolerance: args.horizontal_pod_autoscaler_tolerance,
                cpu_initialization_period: args.horizontal_pod_autoscaler_cpu_initialization_period,
                initial_readiness_delay: args.horizontal_pod_autoscaler_initial_readiness_delay,
            },
            service_lb_ip_pool,
        })
    }
}

/// Resolves `--controllers` the upstream way: `*` turns on the defaults, `name` one more, `-name`
/// one off (and wins over `*`). Names are upstream's (`replicaset-controller`); the short form
/// without `-controller` is accepted too.
pub fn select_controllers(
    flags: &[String],
    known: &[&'static str],
    defaults: &[&'static str],
) -> Result<BTreeSet<&'static str>, Error> {
    let resolve = |name: &str| {
        known.iter().copied().find(|k| *k == name || k.strip_suffix("-controller") == Some(name)).ok_or_else(|| {
            Error::Config(format!("--controllers: unknown controller {name:?}; known: {}", known.join(", ")))
        })
    };
    let mut on = BTreeSet::new();
    let mut off = BTreeSet::new();
    let mut star = false;
    for flag in flags.iter().map(|f| f.trim()).filter(|f| !f.is_empty()) {
        if flag == "*" {
            star = true;
        } else if let Some(name) = flag.strip_prefix('-') {
            off.insert(resolve(name)?);
        } else {
            on.insert(resolve(flag)?);
        }
    }
    if star {
        on.extend(defaults.iter().copied());
    }
    Ok(on.difference(&off).copied().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_lb_ip_pool_is_checked_at_start() {
        let config = |pool: Option<&str>| {
            let mut argv = vec!["rk-controller-manager", "--kubeconfig", "/k", "--leader-elect=false"];
            argv.extend(pool.iter().flat_map(|p| ["--service-lb-ip-pool", p]));
            let args = <Args as clap::Parser>::try_parse_from(argv).map_err(|e| Error::Config(e.to_string()))?;
            Config::try_from(args)
        };
        let off = config(None).map(|c| c.service_lb_ip_pool);
        assert!(matches!(off, Ok(None)), "{off:?}");
        let two = config(Some("192.0.2.8/30")).map(|c| c.service_lb_ip_pool.map(|p| p.to_string()));
        assert_eq!(two.ok().flatten().as_deref(), Some("192.0.2.9-192.0.2.10"));
        let bad = config(Some("192.0.2.8/30,192.0.2.300-192.0.2.301")).map(|_| ()).map_err(|e| e.to_string());
        assert_eq!(
            bad,
            Err("--service-lb-ip-pool: \"192.0.2.300-192.0.2.301\": \"192.0.2.300\" is not an IPv4 address".into())
        );
    }

    #[test]
    fn controllers_resolve_like_upstream() {
        let known = ["a-controller", "b-controller", "c-controller"];
        let defaults = ["a-controller", "b-controller"];
        let cases: [(&[&str], Option<&[&str]>); 7] = [
            (&["*"], Some(&["a-controller", "b-controller"])),
            (&["*", "-a-controller"], Some(&["b-controller"])),
            (&["*", "c"], Some(&["a-controller", "b-controller", "c-controller"])),
            (&["-a", "*"], Some(&["b-controller"])),
            (&["c"], Some(&["c-controller"])),
            (&[], Some(&[])),
            (&["*", "nope"], None),
        ];
        for (flags, want) in cases {
            let flags: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
            let got = select_controllers(&flags, &known, &defaults).ok();
            let want = want.map(|w| w.iter().copied().collect::<BTreeSet<_>>());
            assert_eq!(got, want, "{flags:?}");
        }
    }
}

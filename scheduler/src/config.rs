//! Flags (upstream's names where they exist, each with an `RK_` variable) and the configuration
//! file: a `KubeSchedulerConfiguration` (YAML or JSON) of which rk-scheduler reads
//! `percentageOfNodesToScore`, the first profile's `schedulerName` and its score plugins'
//! `enabled` (with weights) and `disabled` lists.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;
use crate::plugins::DEFAULT_WEIGHTS;

pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
pub const DEFAULT_PORT: u16 = 10251;
pub const DEFAULT_BIND_CONCURRENCY: usize = 64;

#[derive(Debug, clap::Parser)]
#[command(name = "rk-scheduler", about = "Places unscheduled pods on nodes.")]
pub struct Args {
    /// Kubeconfig of the API server to schedule for.
    #[arg(long, env = "RK_KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// A KubeSchedulerConfiguration file (weights, percentageOfNodesToScore, schedulerName).
    #[arg(long, env = "RK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Share of the nodes to find feasible before scoring; 0 is upstream's adaptive default.
    #[arg(long, env = "RK_PERCENTAGE_OF_NODES_TO_SCORE")]
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Run only while holding the `kube-system/rk-scheduler` Lease.
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
    /// Bindings written at once.
    #[arg(long, env = "RK_BIND_CONCURRENCY", default_value_t = DEFAULT_BIND_CONCURRENCY)]
    pub bind_concurrency: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub kubeconfig: PathBuf,
    pub scheduler_name: String,
    pub weights: BTreeMap<String, i64>,
    pub percentage_of_nodes_to_score: u32,
    /// `None`: schedule at once, without a Lease.
    pub leader_election: Option<daemon::leader::Config>,
    pub health_address: Option<SocketAddr>,
    pub bind_concurrency: usize,
}

/// The part of a `KubeSchedulerConfiguration` that is read.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct File {
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    profiles: Vec<FileProfile>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FileProfile {
    scheduler_name: Option<String>,
    plugins: Option<FilePlugins>,
}

#[derive(Debug, Default, Deserialize)]
struct FilePlugins {
    score: Option<PluginSet>,
}

#[derive(Debug, Default, Deserialize)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<Plugin>,
    #[serde(default)]
    disabled: Vec<Plugin>,
}

#[derive(Debug, Deserialize)]
struct Plugin {
    name: String,
    weight: Option<i64>,
}

/// What a configuration file sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    pub weights: BTreeMap<String, i64>,
    pub percentage_of_nodes_to_score: Option<u32>,
    pub scheduler_name: Option<String>,
}

/// Weights, percentage and scheduler name from a configuration file's text.
pub fn parse_file(text: &str) -> Result<Settings, String> {
    let file: File = yaml_serde::from_str(text).map_err(|e| e.to_string())?;
    let mut weights: BTreeMap<String, i64> = DEFAULT_WEIGHTS.iter().map(|(n, w)| ((*n).to_string(), *w)).collect();
    let profile = file.profiles.into_iter().next().unwrap_or_default();
    if let Some(score) = profile.plugins.and_then(|p| p.score) {
        for p in score.disabled {
            if p.name == "*" {
                weights.values_mut().for_each(|w| *w = 0);
            } else {
                weights.insert(p.name, 0);
            }
        }
        for p in score.enabled {
            if !weights.contains_key(&p.name) {
                return Err(format!("unknown score plugin {:?}", p.name));
            }
            weights.insert(p.name, p.weight.unwrap_or(1));
        }
    }
    if let Some(p) = file.percentage_of_nodes_to_score.filter(|p| *p > 100) {
        return Err(format!("percentageOfNodesToScore {p} is above 100"));
    }
    Ok(Settings {
        weights,
        percentage_of_nodes_to_score: file.percentage_of_nodes_to_score,
        scheduler_name: profile.scheduler_name,
    })
}

impl TryFrom<Args> for Config {
    type Error = Error;

    fn try_from(a: Args) -> Result<Self, Error> {
        let settings = match &a.config {
            Some(path) => {
                let text =
                    std::fs::read_to_string(path).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
                parse_file(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))?
            }
            None => parse_file("{}").map_err(Error::Config)?,
        };
        let identity = format!(
            "{}_{}",
            std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim(),
            std::process::id()
        );
        let leader_election = a.leader_elect.then(|| daemon::leader::Config {
            lease_duration: a.leader_elect_lease_duration,
            renew_deadline: a.leader_elect_renew_deadline,
            retry_period: a.leader_elect_retry_period,
            ..daemon::leader::Config::new("kube-system", "rk-scheduler", &identity)
        });
        Ok(Config {
            kubeconfig: a.kubeconfig,
            scheduler_name: settings.scheduler_name.unwrap_or_else(|| DEFAULT_SCHEDULER_NAME.into()),
            weights: settings.weights,
            percentage_of_nodes_to_score: a
                .percentage_of_nodes_to_score
                .or(settings.percentage_of_nodes_to_score)
                .unwrap_or(0)
                .min(100),
            leader_election,
            health_address: (a.port != 0).then(|| SocketAddr::new(a.address, a.port)),
            bind_concurrency: a.bind_concurrency.max(1),
        })
    }
}

impl Config {
    /// A configuration for tests: no Lease, no endpoint, default weights.
    pub fn for_kubeconfig(kubeconfig: PathBuf) -> Self {
        Config {
            kubeconfig,
            scheduler_name: DEFAULT_SCHEDULER_NAME.into(),
            weights: parse_file("{}").unwrap_or_default().weights,
            percentage_of_nodes_to_score: 0,
            leader_election: None,
            health_address: None,
            bind_concurrency: DEFAULT_BIND_CONCURRENCY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduler_configuration_sets_weights_percentage_and_name() {
        let text = "
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 20
profiles:
- schedulerName: fast-scheduler
  plugins:
    score:
      disabled: [{name: ImageLocality}]
      enabled: [{name: NodeAffinity, weight: 7}]
";
        let s = parse_file(text).expect("valid");
        assert_eq!((s.weights["NodeAffinity"], s.weights["ImageLocality"], s.weights["TaintToleration"]), (7, 0, 3));
        assert_eq!((s.percentage_of_nodes_to_score, s.scheduler_name.as_deref()), (Some(20), Some("fast-scheduler")));
        let all_off = parse_file(
            r#"{"profiles": [{"plugins": {"score": {"disabled": [{"name": "*"}], "enabled": [{"name": "NodeResourcesFit"}]}}}]}"#,
        );
        assert_eq!(all_off.map(|s| s.weights.values().filter(|w| **w > 0).count()), Ok(1));
        assert!(parse_file("profiles: [{plugins: {score: {enabled: [{name: Nope}]}}}]").is_err());
        assert!(parse_file("percentageOfNodesToScore: 101").is_err());
    }
}

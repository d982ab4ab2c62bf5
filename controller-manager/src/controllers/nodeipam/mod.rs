//! Node IPAM: every Node without a `spec.podCIDR` gets the first free `/--node-cidr-mask-size`
//! (24) of `--cluster-cidr` (10.244.0.0/16); CIDRs a kubelet registered with are taken as used.
//! One worker allocates, remembering what it handed out until the cache shows it, so two nodes
//! never get the same range.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemon::events::{Recorder, Type};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "node-ipam-controller";

/// 10.244.0.0/16, the default `--cluster-cidr`.
pub const DEFAULT_CLUSTER_CIDR: Cidr = Cidr { network: u32::from_be_bytes([10, 244, 0, 0]), len: 16 };

/// An IPv4 range: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub network: u32,
    pub len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, len) = s.split_once('/')?;
        let ip: Ipv4Addr = ip.parse().ok()?;
        let len: u8 = len.parse().ok().filter(|l| *l <= 32)?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        Some(Cidr { network: u32::from(ip) & mask, len })
    }

    fn size(self) -> u64 {
        1u64 << (32 - self.len)
    }

    fn overlaps(self, other: Cidr) -> bool {
        let (a0, b0) = (u64::from(self.network), u64::from(other.network));
        a0 < b0 + other.size() && b0 < a0 + self.size()
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.len)
    }
}

/// The first `/mask` of `cluster` that overlaps none of `used`.
pub fn allocate(cluster: Cidr, mask: u8, used: &[Cidr]) -> Option<Cidr> {
    if mask < cluster.len || mask > 32 {
        return None;
    }
    let count = 1u64 << (mask - cluster.len);
    (0..count)
        .map(|i| Cidr { network: cluster.network + u32::try_from(i << (32 - mask)).unwrap_or(0), len: mask })
        .find(|candidate| !used.iter().any(|u| u.overlaps(*candidate)))
}

pub fn new(ctx: &Context) -> Controller {
    let nodes = ctx.informers.get::<Node>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        nodes.on_change(move |change| {
            if let Change::Applied { new, .. } = change
                && new.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()
            {
                queue.add(new.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    let synced = informers::all_synced([nodes.until_synced()]);
    let reconciler = Ipam {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        nodes,
        cluster: ctx.config.cluster_cidr,
        mask: ctx.config.node_cidr_mask_size,
        handed_out: Mutex::default(),
    };
    // One worker: allocation reads every node's range and must not race itself.
    Controller { name: NAME, queue, workers: 1, reconciler: Arc::new(reconciler), synced }
}

struct Ipam {
    client: kube::Client,
    recorder: Arc<Recorder>,
    nodes: Informer<Node>,
    cluster: Cidr,
    mask: u8,
    /// Ranges written but perhaps not yet in the cache, by node.
    handed_out: Mutex<HashMap<String, Cidr>>,
}

impl Reconcile for Ipam {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl Ipam {
    async fn sync(&self, name: &str) -> Result<Option<Duration>, Error> {
        let all = self.nodes.all();
        let mut used: Vec<Cidr> =
            all.iter().filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref().and_then(Cidr::parse)).collect();
        let chosen = {
            let mut handed_out = self.handed_out.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            // Forget what the cache now shows, and nodes that are gone.
            handed_out.retain(|node, _| {
                all.iter().any(|n| {
                    n.metadata.name.as_deref() == Some(node.as_str())
                        && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_none()
                })
            });
            used.extend(handed_out.values().copied());
            let Some(node) = self.nodes.get("", name) else { return Ok(None) };
            if node.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some() {
                return Ok(None);
            }
            match handed_out.get(name) {
                Some(c) => Some((*c, node)),
                None => allocate(self.cluster, self.mask, &used).map(|c| (c, node)),
            }
        };
        let Some((cidr, node)) = chosen else {
            if let Some(node) = self.nodes.get("", name) {
                let message = format!("Node {name} status is now: CIDRNotAvailable");
                self.recorder.object(&*node, Type::Warning, "CIDRNotAvailable", message);
            }
            tracing::warn!(node = name, cluster_cidr = %self.cluster, "no pod CIDR left");
            return Ok(Some(Duration::from_secs(30)));
        };
        self.handed_out.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.to_string(), cidr);
        let patch = json!({
            "metadata": {"resourceVersion": node.metadata.resource_version},
            "spec": {"podCIDR": cidr.to_string(), "podCIDRs": [cidr.to_string()]},
        });
        Api::<Node>::all(self.client.clone()).patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
        tracing::info!(node = name, pod_cidr = %cidr, "pod CIDR allocated");
        self.recorder.object(
            &*node,
            Type::Normal,
            "CIDRAssignmentSucceeded",
            format!("Node {name} got pod CIDR {cidr}"),
        );
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Cidr {
        Cidr::parse(s).unwrap_or(Cidr { network: 0, len: 32 })
    }

    #[test]
    fn allocation_takes_the_first_free_range() {
        let cluster = c("10.244.0.0/16");
        let cases: [(&[&str], Option<&str>); 5] = [
            (&[], Some("10.244.0.0/24")),
            (&["10.244.0.0/24"], Some("10.244.1.0/24")),
            (&["10.244.0.0/24", "10.244.2.0/24"], Some("10.244.1.0/24")),
            (&["10.244.0.0/23"], Some("10.244.2.0/24")),
            (&["10.244.0.0/16"], None),
        ];
        for (used, want) in cases {
            let used: Vec<Cidr> = used.iter().map(|u| c(u)).collect();
            assert_eq!(allocate(cluster, 24, &used).map(|x| x.to_string()).as_deref(), want, "{used:?}");
        }
        assert_eq!(allocate(c("10.0.0.0/30"), 31, &[]).map(|x| x.to_string()).as_deref(), Some("10.0.0.0/31"));
        assert_eq!(allocate(cluster, 8, &[]), None, "a mask wider than the cluster range");
    }

    #[test]
    fn cidrs_parse_to_their_network() {
        assert_eq!(Some(DEFAULT_CLUSTER_CIDR), Cidr::parse(crate::config::DEFAULT_CLUSTER_CIDR));
        assert_eq!(c("10.244.3.7/24").to_string(), "10.244.3.0/24");
        assert!(Cidr::parse("10.244.0.0/33").is_none());
        assert!(Cidr::parse("nope/24").is_none());
    }
}

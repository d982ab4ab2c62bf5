//! The scheduler's picture of the cluster: every Node with what its pods request and the ports
//! they hold, kept up to date from the watch events and from the scheduler's own decisions
//! (an *assumed* pod counts on its node from the moment it is decided, before the binding is
//! written, and is forgotten if the binding fails). Decisions read it as their snapshot: one
//! task owns it, so a decision never sees a half-applied event. It also keeps the claims,
//! volumes and storage classes VolumeBinding reads.

use std::collections::BTreeMap;

// Node names, pod uids and image names are hashed on every decision, many times: a fast hash.
use foldhash::HashMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod, Taint};

use crate::resources::{Resources, non_zero_requests, pod_requests};

/// What the plugins need of a pod, computed once.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub requests: Resources,
    /// CPU (milli) and memory with upstream's defaults for containers that ask for none.
    pub non_zero: (i64, i64),
    /// `(hostIP, protocol, hostPort)` of every container port with a hostPort.
    pub host_ports: Vec<(String, String, i32)>,
    pub pod: Arc<Pod>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> Self {
        let empty = k8s_openapi::api::core::v1::PodSpec::default();
        let spec = pod.spec.as_ref().unwrap_or(&empty);
        let host_ports = spec
            .containers
            .iter()
            .flat_map(|c| c.ports.iter().flatten())
            .filter(|p| p.host_port.is_some_and(|h| h > 0))
            .map(|p| {
                let ip = p.host_ip.clone().filter(|ip| !ip.is_empty()).unwrap_or_else(|| "0.0.0.0".into());
                (ip, p.protocol.clone().unwrap_or_else(|| "TCP".into()), p.host_port.unwrap_or(0))
            })
            .collect();
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            labels: pod.metadata.labels.clone().unwrap_or_default(),
            requests: pod_requests(spec),
            non_zero: non_zero_requests(spec),
            host_ports,
            pod,
        }
    }

    pub fn spec(&self) -> &k8s_openapi::api::core::v1::PodSpec {
        static EMPTY: std::sync::OnceLock<k8s_openapi::api::core::v1::PodSpec> = std::sync::OnceLock::new();
        self.pod.spec.as_ref().unwrap_or_else(|| EMPTY.get_or_init(Default::default))
    }

    /// Whether the pod carries any inter-pod (anti-)affinity the incoming pods must respect.
    pub fn has_pod_affinity(&self) -> bool {
        self.spec().affinity.as_ref().is_some_and(|a| a.pod_affinity.is_some() || a.pod_anti_affinity.is_some())
    }
}

/// One node and what is placed on it.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    pub name: String,
    pub node: Option<Arc<Node>>,
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub allocatable: Resources,
    pub requested: Resources,
    /// Requested CPU and memory with upstream's defaults, for scoring.
    pub non_zero_requested: (i64, i64),
    pub pods: BTreeMap<String, Arc<PodInfo>>,
    pub used_ports: Vec<(String, String, i32)>,
    /// Image names (every tag and digest form the node reports) with their sizes.
    pub images: HashMap<String, i64>,
}

impl NodeInfo {
    fn set_node(&mut self, node: Arc<Node>) {
        self.labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.clone().unwrap_or_default();
        self.taints = spec.taints.unwrap_or_default();
        self.unschedulable = spec.unschedulable.unwrap_or(false);
        let status = node.status.clone().unwrap_or_default();
        self.allocatable = Resources::from_map(&status.allocatable.or(status.capacity).unwrap_or_default());
        self.images = status
            .images
            .unwrap_or_default()
            .into_iter()
            .flat_map(|i| {
                let size = i.size_bytes.unwrap_or(0);
                i.names.unwrap_or_default().into_iter().map(move |n| (n, size))
            })
            .collect();
        self.node = Some(node);
    }

    fn add_pod(&mut self, info: Arc<PodInfo>) {
        self.requested.add(&info.requests);
        self.non_zero_requested.0 += info.non_zero.0;
        self.non_zero_requested.1 += info.non_zero.1;
        self.used_ports.extend(info.host_ports.iter().cloned());
        self.pods.insert(info.uid.clone(), info);
    }

    fn remove_pod(&mut self, uid: &str) {
        if let Some(info) = self.pods.remove(uid) {
            self.requested.sub(&info.requests);
            self.non_zero_requested.0 -= info.non_zero.0;
            self.non_zero_requested.1 -= info.non_zero.1;
            for port in &info.host_ports {
                if let Some(i) = self.used_ports.iter().position(|p| p == port) {
                    self.used_ports.swap_remove(i);
                }
            }
        }
    }
}

/// Where a known pod is counted.
#[derive(Debug, Clone)]
struct Placed {
    node: String,
    assumed: bool,
}

#[derive(Debug, Default)]
pub struct Cache {
    /// Every node known by a Node object or by a pod placed on it. A decision walks hundreds of
    /// them per pod, so they sit in one vector, reached by position, not through a hash of
    /// their name; a slot freed by a node that is gone is reused (`free`).
    slots: Vec<NodeInfo>,
    free: Vec<usize>,
    by_name: HashMap<String, usize>,
    /// Slots of the nodes with a Node object, in a stable order (the decision rotates through it).
    order: Vec<usize>,
    placed: HashMap<String, Placed>,
    /// Pods with inter-pod (anti-)affinity, by uid: the ones an incoming pod must be checked
    /// against.
    with_affinity: BTreeMap<String, Arc<PodInfo>>,
    /// How many nodes have each image.
    image_spread: HashMap<String, usize>,
    /// Claims, volumes and classes, for VolumeBinding.
    pub volumes: crate::plugins::volume_binding::Volumes,
}

impl Cache {
    pub fn node(&self, name: &str) -> Option<&NodeInfo> {
        self.by_name.get(name).map(|i| &self.slots[*i]).filter(|n| n.node.is_some())
    }

    /// The `i`-th node with a Node object in the stable order (`i < len()`).
    pub fn nth(&self, i: usize) -> &NodeInfo {
        &self.slots[self.order[i]]
    }

    /// Names of the nodes with a Node object, in the stable order.
    pub fn node_names(&self) -> impl Iterator<Item = &str> {
        self.nodes().map(|n| n.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Every node (with a Node object).
    pub fn nodes(&self) -> impl Iterator<Item = &NodeInfo> {
        self.order.iter().map(|i| &self.slots[*i])
    }

    /// The slot of `name`, taken (from the free ones if any) when it has none.
    fn slot(&mut self, name: &str) -> usize {
        if let Some(i) = self.by_name.get(name) {
            return *i;
        }
        let info = NodeInfo { name: name.to_string(), ..Default::default() };
        let i = match self.free.pop() {
            Some(i) => {
                self.slots[i] = info;
                i
            }
            None => {
                self.slots.push(info);
                self.slots.len() - 1
            }
        };
        self.by_name.insert(name.to_string(), i);
        i
    }

    /// Frees the slot of a node with neither a Node object nor pods.
    fn release(&mut self, i: usize) {
        let info = std::mem::take(&mut self.slots[i]);
        self.by_name.remove(&info.name);
        self.free.push(i);
    }

    pub fn pods_with_affinity(&self) -> impl Iterator<Item = (&str, &Arc<PodInfo>)> {
        self.with_affinity.values().filter_map(|p| Some((self.placed.get(&p.uid)?.node.as_str(), p)))
    }

    /// On how many nodes an image is.
    pub fn image_spread(&self, image: &str) -> usize {
        self.image_spread.get(image).copied().unwrap_or(0)
    }

    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        let i = self.slot(&name);
        let entry = &mut self.slots[i];
        let was_known = entry.node.is_some();
        for image in entry.images.keys() {
            if let Some(n) = self.image_spread.get_mut(image) {
                *n = n.saturating_sub(1);
            }
        }
        entry.set_node(node);
        for image in entry.images.keys() {
            *self.image_spread.entry(image.clone()).or_default() += 1;
        }
        if !was_known {
            self.order.push(i);
        }
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(&i) = self.by_name.get(name) else { return };
        let info = &mut self.slots[i];
        for image in info.images.keys() {
            if let Some(n) = self.image_spread.get_mut(image) {
                *n = n.saturating_sub(1);
            }
        }
        info.node = None;
        info.images.clear();
        if info.pods.is_empty() {
            self.release(i);
        }
        self.order.retain(|o| *o != i);
    }

    /// A pod the watch shows bound to `node` (confirming an assumption, or placed by someone
    /// else).
    pub fn upsert_bound_pod(&mut self, info: Arc<PodInfo>, node: &str) {
        self.remove_pod(&info.uid);
        self.place(info, node, false);
    }

    /// Counts a just-decided pod on its node before the binding is written.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: &str) {
        self.remove_pod(&info.uid);
        self.place(info, node, true);
    }

    /// Undoes [`assume`](Self::assume) after a failed binding (a confirmed pod stays).
    pub fn forget(&mut self, uid: &str) {
        if self.placed.get(uid).is_some_and(|p| p.assumed) {
            self.remove_pod(uid);
        }
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.placed.get(uid).is_some_and(|p| p.assumed)
    }

    fn place(&mut self, info: Arc<PodInfo>, node: &str, assumed: bool) {
        if info.has_pod_affinity() {
            self.with_affinity.insert(info.uid.clone(), info.clone());
        }
        self.placed.insert(info.uid.clone(), Placed { node: node.to_string(), assumed });
        let i = self.slot(node);
        self.slots[i].add_pod(info);
    }

    pub fn remove_pod(&mut self, uid: &str) {
        self.with_affinity.remove(uid);
        let Some(placed) = self.placed.remove(uid) else { return };
        if let Some(&i) = self.by_name.get(&placed.node) {
            let info = &mut self.slots[i];
            info.remove_pod(uid);
            if info.node.is_none() && info.pods.is_empty() {
                self.release(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub fn node(name: &str, cpu: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name},
                "status": {"allocatable": {"cpu": cpu, "memory": "1Gi", "pods": "10"},
                           "images": [{"names": ["busybox:1"], "sizeBytes": 1000}]}
            }))
            .expect("node"),
        )
    }

    pub fn pod(uid: &str, cpu: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::new(Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": uid, "namespace": "default", "uid": uid},
                "spec": {"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}},
                                         "ports": [{"containerPort": 80, "hostPort": 8080}]}]}
            }))
            .expect("pod"),
        )))
    }

    #[test]
    fn assumed_pods_count_until_forgotten_and_confirmed_ones_stay() {
        let mut c = Cache::default();
        c.upsert_node(node("n1", "2"));
        c.assume(pod("a", "500m"), "n1");
        assert_eq!(c.node("n1").map(|n| (n.requested.milli_cpu, n.used_ports.len())), Some((500, 1)));
        c.forget("a");
        assert_eq!(c.node("n1").map(|n| (n.requested.milli_cpu, n.used_ports.len())), Some((0, 0)));
        c.assume(pod("b", "1"), "n1");
        c.upsert_bound_pod(pod("b", "1"), "n1");
        c.forget("b");
        assert_eq!(c.node("n1").map(|n| n.requested.milli_cpu), Some(1000), "a confirmed pod is not forgotten");
    }

    #[test]
    fn pods_seen_before_their_node_count_once_it_arrives_and_nodes_leave_the_order() {
        let mut c = Cache::default();
        c.upsert_bound_pod(pod("a", "250m"), "late");
        assert!(c.node("late").is_none(), "no Node object yet");
        c.upsert_node(node("late", "1"));
        assert_eq!(c.node("late").map(|n| n.requested.milli_cpu), Some(250));
        assert_eq!(c.image_spread("busybox:1"), 1);
        c.remove_node("late");
        assert!(c.is_empty());
        assert_eq!(c.image_spread("busybox:1"), 0);
        c.remove_pod("a");
        assert!(c.by_name.is_empty());
    }

    #[test]
    fn freed_slots_are_reused_and_the_order_names_only_live_nodes() {
        let mut c = Cache::default();
        for n in ["a", "b", "c"] {
            c.upsert_node(node(n, "1"));
        }
        c.assume(pod("p", "100m"), "b");
        c.remove_node("a");
        c.remove_node("b");
        assert_eq!(c.node_names().collect::<Vec<_>>(), ["c"]);
        assert_eq!(c.free.len(), 1, "a's slot is free; b's still holds its pod");
        c.upsert_node(node("d", "1"));
        assert!(c.free.is_empty(), "d took a's slot");
        assert_eq!(c.slots.len(), 3);
        assert_eq!(c.node_names().collect::<Vec<_>>(), ["c", "d"]);
        assert_eq!((c.nth(0).name.as_str(), c.nth(1).name.as_str()), ("c", "d"));
        c.upsert_node(node("b", "1"));
        assert_eq!(c.node("b").map(|n| n.requested.milli_cpu), Some(100), "b came back with its pod");
        assert_eq!(c.node_names().collect::<Vec<_>>(), ["c", "d", "b"]);
    }
}

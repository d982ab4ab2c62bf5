//! rk-scheduler: places unscheduled pods on nodes.
//!
//! A tour of the modules:
//! - [`cache`]: every Node with what its pods request, fed by the watch events and by the
//!   scheduler's own *assumed* decisions.
//! - [`queue`]: active (priority, then age), backoff (1 s doubling to 10 s) and unschedulable
//!   (retried on cluster changes and every minute).
//! - [`framework`]: one decision — filter nodes (a sample of them on large clusters), score the
//!   feasible ones, pick the best — and the upstream-style "0/N nodes are available" message.
//! - [`plugins`]: the Filter and Score plugins, registered in one list.
//! - [`resources`]: a pod's requests and a node's allocatable, added up the upstream way.
//! - [`config`], [`metrics`], [`error`].
//!
//! [`run`] watches Nodes and Pods (kube-rs reflectors) and the claims, volumes and storage
//! classes VolumeBinding reads, stands for the leader Lease, and then decides one pod at a time
//! on the cache, assumes it onto its node at once and writes the `pods/binding` in the
//! background (after the selected node of its late-binding claims, once they are bound); a
//! failed binding forgets the assumption and requeues.

pub mod cache;
pub mod config;
mod error;
pub mod framework;
pub mod metrics;
pub mod plugins;
pub mod queue;
pub mod resources;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use rand::Rng;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

pub use config::{Args, Config};
pub use error::Error;

use cache::{Cache, PodInfo};
use daemon::events::{Recorder, Type};
use framework::{Decision, Profile};
use metrics::Metrics;
use queue::Queue;

/// Pods decided in one go before the loop looks at new events again.
const BATCH: usize = 32;
/// How often the queue's periodic work (back-off ends, the minute flush, gauges) runs.
const TICK: Duration = Duration::from_millis(250);

/// Runs the scheduler until `shutdown`; returns [`Error::LostLeadership`] if the Lease is lost.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let client = daemon::client_from_kubeconfig(&config.kubeconfig).await?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("rk_scheduler");
    let metrics = Metrics::new(&mut registry);
    if let Some(address) = config.health_address {
        let listener = daemon::health::bind(address).await?;
        tracing::info!(address = %listener.local_addr()?, "serving /healthz and /metrics");
        tokio::spawn(daemon::health::serve(listener, Arc::new(registry), shutdown.clone()));
    }
    let mut scheduler = Scheduler::new(client, &config, metrics);
    scheduler.run(&config, shutdown).await
}

enum Update {
    Node(Box<watcher::Event<Node>>),
    Pod(Box<watcher::Event<Pod>>),
    Claim(Box<watcher::Event<PersistentVolumeClaim>>),
    Volume(Box<watcher::Event<PersistentVolume>>),
    Class(Box<watcher::Event<StorageClass>>),
}

/// Why a binding was not written: the API refused it, or the pod's claims were not bound in
/// time.
#[derive(Debug)]
enum BindError {
    Api(kube::Error),
    Volumes(String),
}

impl std::fmt::Display for BindError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BindError::Api(e) => e.fmt(f),
            BindError::Volumes(e) => write!(f, "running PreBind plugin \"VolumeBinding\": {e}"),
        }
    }
}

/// The outcome of one binding written in the background.
struct Bound {
    pod: Arc<Pod>,
    node: String,
    since: Instant,
    result: Result<(), BindError>,
}

/// A watch of every `K`, its events as [`Update`]s (errors logged and retried with back-off).
fn watch_all<K>(
    client: &kube::Client,
    what: &'static str,
    update: fn(Box<watcher::Event<K>>) -> Update,
) -> impl futures::Stream<Item = Update> + use<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(Api::<K>::all(client.clone()), watcher::Config::default()).default_backoff().filter_map(
        move |e| async move {
            e.map_err(|e| tracing::warn!(error = %e, "watching {what} failed")).ok().map(|e| update(Box::new(e)))
        },
    )
}

struct Scheduler {
    client: kube::Client,
    name: String,
    profile: Profile,
    cache: Cache,
    queue: Queue,
    metrics: Metrics,
    events: Arc<Recorder>,
    binds: Arc<Semaphore>,
    /// Where the next decision starts looking (rotates through the nodes).
    start: usize,
    /// Whether the node and the pod watches have each delivered their first full list: nothing
    /// is decided on a cache that has not (no nodes yet would make every pod unschedulable).
    synced: (bool, bool),
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or_default(),
        p.metadata.name.as_deref().unwrap_or_default()
    )
}

fn finished(p: &Pod) -> bool {
    matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed"))
}

impl Scheduler {
    fn new(client: kube::Client, config: &Config, metrics: Metrics) -> Self {
        Scheduler {
            events: Arc::new(Recorder::new(client.clone(), &config.scheduler_name, None)),
            client,
            name: config.scheduler_name.clone(),
            profile: plugins::profile(&config.weights, config.percentage_of_nodes_to_score),
            cache: Cache::default(),
            queue: Queue::default(),
            metrics,
            binds: Arc::new(Semaphore::new(config.bind_concurrency)),
            start: 0,
            synced: (false, false),
        }
    }

    async fn run(&mut self, config: &Config, shutdown: CancellationToken) -> Result<(), Error> {
        // Watches run from the start, so a standby has a warm cache when it takes over.
        let (node_reader, node_writer) = reflector::store();
        let (pod_reader, pod_writer) = reflector::store();
        let nodes = reflector::reflector(
            node_writer,
            watcher(Api::<Node>::all(self.client.clone()), watcher::Config::default()),
        )
        .default_backoff()
        .filter_map(|e| async move {
            e.map_err(|e| tracing::warn!(error = %e, "watching nodes failed")).ok().map(|e| Update::Node(Box::new(e)))
        });
        let pods =
            reflector::reflector(pod_writer, watcher(Api::<Pod>::all(self.client.clone()), watcher::Config::default()))
                .default_backoff()
                .filter_map(|e| async move {
                    e.map_err(|e| tracing::warn!(error = %e, "watching pods failed"))
                        .ok()
                        .map(|e| Update::Pod(Box::new(e)))
                });
        let storage = futures::stream::select(
            watch_all(&self.client, "claims", Update::Claim),
            futures::stream::select(
                watch_all(&self.client, "volumes", Update::Volume),
                watch_all(&self.client, "storage classes", Update::Class),
            ),
        );
        let mut updates = std::pin::pin!(futures::stream::select(futures::stream::select(nodes, pods), storage));

        let election = {
            let (client, lease) = (self.client.clone(), config.leader_election.clone());
            let shutdown = shutdown.clone();
            async move {
                match lease {
                    Some(lease) => daemon::leader::acquire(client, lease, shutdown).await.map(|l| l.map(Some)),
                    None => Ok(Some(None)),
                }
            }
        };
        let mut election = std::pin::pin!(election.fuse());
        let mut leadership: Option<daemon::leader::Leadership> = None;
        let mut leading = false;
        let lost = CancellationToken::new();
        let (bound_tx, mut bound_rx) = mpsc::unbounded_channel::<Bound>();
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

        let result = loop {
            let ready =
                leading && self.synced == (true, true) && self.cache.volumes.synced() && self.queue.maybe_ready();
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break Ok(()),
                () = lost.cancelled(), if leading => break Err(Error::LostLeadership),
                Some(update) = updates.next() => {
                    self.apply(update, &node_reader, &pod_reader);
                    // Take every event already there before deciding anything.
                    while let Some(Some(update)) = updates.next().now_or_never() {
                        self.apply(update, &node_reader, &pod_reader);
                    }
                }
                Some(bound) = bound_rx.recv() => self.bound(bound),
                elected = &mut election, if !leading => match elected {
                    Ok(Some(held)) => {
                        if let Some(l) = &held {
                            let (watch, lost) = (l.lost(), lost.clone());
                            tokio::spawn(async move { watch.cancelled().await; lost.cancel() });
                        }
                        leadership = held;
                        leading = true;
                        self.metrics.leader.set(1);
                        tracing::info!(scheduler = %self.name, "scheduling");
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e.into()),
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    self.queue.flush_backoff(now);
                    self.queue.flush_unschedulable(now);
                    self.metrics.depths(self.queue.depths());
                }
                () = std::future::ready(()), if ready => {
                    for _ in 0..BATCH {
                        let Some((pod, since)) = self.queue.pop(Instant::now()) else { break };
                        self.schedule(pod, since, &bound_tx);
                    }
                }
            }
        };
        self.metrics.leader.set(0);
        if let Some(l) = leadership {
            l.release().await;
        }
        result
    }

    /// Applies one watch event to the cache and the queue.
    fn apply(&mut self, update: Update, nodes: &Store<Node>, pods: &Store<Pod>) {
        let now = Instant::now();
        match update {
            Update::Node(e) => self.apply_node(*e, nodes, now),
            Update::Pod(e) => self.apply_pod(*e, pods, now),
            // A claim bound, a volume or class made: pods waiting on them may fit now.
            Update::Claim(e) => {
                self.cache.volumes.claims.apply(*e);
                self.queue.move_all(now);
            }
            Update::Volume(e) => {
                self.cache.volumes.volumes.apply(*e);
                self.queue.move_all(now);
            }
            Update::Class(e) => {
                self.cache.volumes.classes.apply(*e);
                self.queue.move_all(now);
            }
        }
    }

    fn apply_node(&mut self, event: watcher::Event<Node>, nodes: &Store<Node>, now: Instant) {
        match event {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                self.cache.upsert_node(Arc::new(n));
                self.queue.move_all(now);
            }
            watcher::Event::Delete(n) => self.cache.remove_node(n.metadata.name.as_deref().unwrap_or_default()),
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                // The reflector's store now holds exactly what the relist returned: what the
                // cache has beyond it was deleted while the watch was down.
                let present: HashSet<String> = nodes.state().iter().filter_map(|n| n.metadata.name.clone()).collect();
                let gone: Vec<String> =
                    self.cache.node_names().filter(|n| !present.contains(*n)).map(str::to_string).collect();
                for n in gone {
                    self.cache.remove_node(&n);
                }
                self.synced.0 = true;
                self.queue.move_all(now);
            }
        }
    }

    fn apply_pod(&mut self, event: watcher::Event<Pod>, pods: &Store<Pod>, now: Instant) {
        match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => self.upsert_pod(Arc::new(p), now),
            watcher::Event::Delete(p) => self.remove_pod(&uid(&p), now),
            watcher::Event::Init => {}
            watcher::Event::InitDone => {
                let present: HashSet<String> = pods.state().iter().map(|p| uid(p)).collect();
                for gone in self.cache_pod_uids().into_iter().filter(|u| !present.contains(u)) {
                    self.remove_pod(&gone, now);
                }
                self.synced.1 = true;
            }
        }
    }

    fn cache_pod_uids(&self) -> Vec<String> {
        self.cache.nodes().flat_map(|n| n.pods.keys().cloned()).collect()
    }

    fn upsert_pod(&mut self, pod: Arc<Pod>, now: Instant) {
        let id = uid(&pod);
        if finished(&pod) {
            // A finished pod holds nothing any more.
            self.remove_pod(&id, now);
            return;
        }
        let spec = pod.spec.as_ref();
        match spec.and_then(|s| s.node_name.clone()).filter(|n| !n.is_empty()) {
            Some(node) => {
                self.queue.remove(&id);
                self.cache.upsert_bound_pod(Arc::new(PodInfo::new(pod)), &node);
            }
            None => {
                let ours = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or(config::DEFAULT_SCHEDULER_NAME)
                    == self.name;
                if ours && pod.metadata.deletion_timestamp.is_none() && !self.cache.is_assumed(&id) {
                    self.queue.upsert(pod, now);
                }
            }
        }
    }

    fn remove_pod(&mut self, id: &str, now: Instant) {
        self.queue.remove(id);
        if !self.cache.is_assumed(id) {
            self.cache.remove_pod(id);
        }
        // Room was freed: unschedulable pods may fit now.
        self.queue.move_all(now);
    }

    /// Decides one pod; a node means: assume it there and bind in the background.
    fn schedule(&mut self, pod: Arc<Pod>, since: Instant, bound_tx: &mpsc::UnboundedSender<Bound>) {
        let id = uid(&pod);
        let info = Arc::new(PodInfo::new(pod.clone()));
        let began = Instant::now();
        let mut rng = rand::rng();
        let (decision, looked) = self.profile.decide(&info, &self.cache, self.start, &mut |n| rng.random_range(0..n));
        self.metrics.algorithm.observe(began.elapsed().as_secs_f64());
        if !self.cache.is_empty() {
            self.start = (self.start + looked) % self.cache.len();
        }
        match decision {
            Decision::Node(node) => {
                tracing::debug!(pod = %key(&pod), node, looked, "decided");
                let claims = plugins::volume_binding::to_select(&info, &self.cache.volumes, &node);
                self.cache.assume(info, &node);
                let (client, binds, tx) = (self.client.clone(), self.binds.clone(), bound_tx.clone());
                tokio::spawn(async move {
                    let result = async {
                        if !claims.is_empty() {
                            let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
                            let timeout = plugins::volume_binding::BIND_TIMEOUT;
                            plugins::volume_binding::prebind(&client, ns, &claims, &node, timeout)
                                .await
                                .map_err(BindError::Volumes)?;
                        }
                        let _permit = binds.acquire_owned().await;
                        bind(&client, &pod, &node).await.map_err(BindError::Api)
                    }
                    .await;
                    let _ = tx.send(Bound { pod, node, since, result });
                });
            }
            Decision::Unschedulable(diagnosis) => {
                let message = diagnosis.message();
                tracing::debug!(pod = %key(&pod), %message, "unschedulable");
                self.metrics.attempt("unschedulable");
                self.queue.unschedulable(&id, Instant::now());
                self.events.pod(&pod, None, Type::Warning, "FailedScheduling", message.clone());
                let client = self.client.clone();
                tokio::spawn(async move {
                    if let Err(e) = mark_unschedulable(&client, &pod, &message).await {
                        tracing::debug!(pod = %key(&pod), error = %e, "writing PodScheduled=False failed");
                    }
                });
            }
        }
    }

    /// A binding finished: done, or forget the assumption and retry.
    fn bound(&mut self, b: Bound) {
        let id = uid(&b.pod);
        match b.result {
            Ok(()) => {
                self.metrics.attempt("scheduled");
                self.metrics.e2e.observe(b.since.elapsed().as_secs_f64());
                self.queue.done(&id);
                let message = format!("Successfully assigned {} to {}", key(&b.pod), b.node);
                self.events.pod(&b.pod, None, Type::Normal, "Scheduled", message);
            }
            Err(e) => {
                self.metrics.attempt("error");
                self.cache.forget(&id);
                match &e {
                    // Gone, or bound by someone else: the watch will tell.
                    BindError::Api(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => self.queue.remove(&id),
                    _ => {
                        tracing::warn!(pod = %key(&b.pod), node = %b.node, error = %e, "binding failed; retrying");
                        self.events.pod(
                            &b.pod,
                            None,
                            Type::Warning,
                            "FailedScheduling",
                            format!("Binding rejected: {e}"),
                        );
                        self.queue.failed(&id, Instant::now());
                    }
                }
            }
        }
    }
}

/// Writes the decision: `pods/binding`, with the pod's uid so a recreated namesake is not bound.
async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let binding = serde_json::json!({
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node},
    });
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.create_subresource::<_, serde_json::Value>("binding", name, &PostParams::default(), &binding).await.map(drop)
}

/// `PodScheduled=False` with reason Unschedulable and the message, unless it already says so.
async fn mark_unschedulable(client: &kube::Client, pod: &Pod, message: &str) -> Result<(), kube::Error> {
    let current = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"));
    if current.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message)) {
        return Ok(());
    }
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    let patch = serde_json::json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
        "lastTransitionTime": now, "lastProbeTime": null,
    }]}});
    let pods: Api<Pod> = Api::namespaced(client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    pods.patch_status(
        pod.metadata.name.as_deref().unwrap_or_default(),
        &PatchParams::default(),
        &Patch::Strategic(&patch),
    )
    .await
    .map(drop)
}

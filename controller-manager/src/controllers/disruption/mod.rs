//! The disruption controller: keeps each PodDisruptionBudget's status current — the pods it
//! expects (the replicas of the pods' ReplicaSets and StatefulSets, or the pods themselves), how
//! many are healthy, how many must stay so, and `disruptionsAllowed`, which the API server's
//! eviction subresource spends. A pod just evicted (in `disruptedPods`) stops counting as
//! healthy until it is gone, or for two minutes at most, as upstream.

pub mod plan;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::labels::LabelSelector;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, PostParams};

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::pods::{self, key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "disruption-controller";
const WORKERS: usize = 2;
/// How long an evicted pod is taken as going, if it does not go.
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(120);

fn selector(pdb: &PodDisruptionBudget) -> Option<LabelSelector> {
    let sel = pdb.spec.as_ref()?.selector.clone().unwrap_or_default();
    LabelSelector::from_label_selector(&sel).ok()
}

fn covers(pdb: &PodDisruptionBudget, pod: &Pod) -> bool {
    let empty = BTreeMap::new();
    selector(pdb).is_some_and(|s| s.matches(pod.metadata.labels.as_ref().unwrap_or(&empty)))
}

pub fn new(ctx: &Context) -> Controller {
    let budgets = ctx.informers.get::<PodDisruptionBudget>();
    let pods = ctx.informers.get::<Pod>();
    let sets = ctx.informers.get::<ReplicaSet>();
    let stateful = ctx.informers.get::<StatefulSet>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        budgets.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let (queue, budgets) = (queue.clone(), budgets.clone());
        pods.on_change(move |change| {
            let (old, new) = match change {
                Change::Applied { old, new } => (old.clone(), Some(new.clone())),
                Change::Deleted(old) => (Some(old.clone()), None),
            };
            let Some(ns) = new.as_ref().or(old.as_ref()).and_then(|p| p.metadata.namespace.clone()) else { return };
            for pdb in budgets.list(&ns) {
                if old.as_ref().is_some_and(|p| covers(&pdb, p)) || new.as_ref().is_some_and(|p| covers(&pdb, p)) {
                    queue.add(key(&pdb.metadata));
                }
            }
        });
    }
    let synced = informers::all_synced([
        budgets.until_synced(),
        pods.until_synced(),
        sets.until_synced(),
        stateful.until_synced(),
    ]);
    let reconciler = Disruption { client: ctx.client.clone(), budgets, pods, sets, stateful };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct Disruption {
    client: kube::Client,
    budgets: Informer<PodDisruptionBudget>,
    pods: Informer<Pod>,
    sets: Informer<ReplicaSet>,
    stateful: Informer<StatefulSet>,
}

impl Reconcile for Disruption {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl Disruption {
    /// Pods the budget expects: each covered pod's controller counted once at its replicas,
    /// a pod without a known controller counted as itself.
    fn expected(&self, ns: &str, covered: &[Arc<Pod>]) -> i32 {
        let mut seen = HashSet::new();
        let mut total = 0;
        for pod in covered {
            let replicas = pods::controller_of(&pod.metadata).and_then(|r| {
                if !seen.insert(r.uid.clone()) {
                    return Some(0);
                }
                match r.kind.as_str() {
                    "ReplicaSet" => self.sets.get(ns, &r.name).and_then(|s| s.spec.as_ref()?.replicas),
                    "StatefulSet" => self.stateful.get(ns, &r.name).and_then(|s| s.spec.as_ref()?.replicas),
                    _ => None,
                }
            });
            total += replicas.unwrap_or(1);
        }
        total
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(pdb) = self.budgets.get(ns, name) else { return Ok(None) };
        let now = Timestamp::now();
        let covered: Vec<Arc<Pod>> = self
            .pods
            .list(ns)
            .into_iter()
            .filter(|p| covers(&pdb, p))
            .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
            .collect();
        let previous = pdb.status.clone().unwrap_or_default();
        // Evictions still under way: the pod exists, is not yet going, and it is not too late.
        let disrupted: BTreeMap<String, Time> = previous
            .disrupted_pods
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|(pod, at)| {
                at.0 + DELETION_TIMEOUT > now
                    && covered
                        .iter()
                        .any(|p| p.metadata.name.as_deref() == Some(pod) && p.metadata.deletion_timestamp.is_none())
            })
            .collect();
        let healthy = covered
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && pods::is_ready(p))
            .filter(|p| !p.metadata.name.as_ref().is_some_and(|n| disrupted.contains_key(n)))
            .count();
        let spec = pdb.spec.clone().unwrap_or_default();
        let budget = plan::budget(&spec, self.expected(ns, &covered), i32::try_from(healthy).unwrap_or(i32::MAX));
        let allowed = budget.allowed > 0;
        let condition = Condition {
            type_: "DisruptionAllowed".into(),
            status: if allowed { "True" } else { "False" }.into(),
            reason: if allowed { "SufficientPods" } else { "InsufficientPods" }.into(),
            message: String::new(),
            observed_generation: pdb.metadata.generation,
            last_transition_time: Time(now),
        };
        let conditions =
            match previous.conditions.clone().unwrap_or_default().into_iter().find(|c| c.type_ == condition.type_) {
                Some(old) if old.status == condition.status => {
                    vec![Condition { observed_generation: pdb.metadata.generation, ..old }]
                }
                _ => vec![condition],
            };
        let status = PodDisruptionBudgetStatus {
            current_healthy: budget.current,
            desired_healthy: budget.desired,
            expected_pods: budget.expected,
            disruptions_allowed: budget.allowed,
            disrupted_pods: (!disrupted.is_empty()).then(|| disrupted.clone()),
            observed_generation: pdb.metadata.generation,
            conditions: Some(conditions),
        };
        if pdb.status.as_ref() != Some(&status) {
            let mut updated = (*pdb).clone();
            updated.status = Some(status);
            Api::<PodDisruptionBudget>::namespaced(self.client.clone(), ns)
                .replace_status(name, &PostParams::default(), &updated)
                .await?;
        }
        // Look again when the oldest eviction times out.
        let next = disrupted.values().map(|t| t.0 + DELETION_TIMEOUT).min();
        Ok(next.map(|at| Duration::try_from(at.duration_since(now)).unwrap_or_default() + Duration::from_secs(1)))
    }
}

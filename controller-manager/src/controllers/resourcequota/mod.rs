//! The ResourceQuota controller: keeps each quota's `status.hard` (its spec) and `status.used`
//! (what the namespace's objects add up to, by [`api_types::quota::usage`]) current, so that
//! rk-apiserver's quota admission, which charges creates against `used`, starts from the truth.
//! As upstream's replenishment, a pod finishing or going, or a Service or claim going,
//! recounts its namespace's quotas at once (creations were charged by admission already, and
//! recounting on them could race a create between its charge and its write); everything else
//! is recounted every 30 s.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use api_types::quota;
use api_types::registry::{self, ResourceInfo};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Service};
use kube::api::{Api, DynamicObject, ListParams, PostParams};

use crate::controller::{Controller, Reconcile};
use crate::controllers::api_resource;
use crate::informers::{self, Change, Informer};
use crate::pods::{key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "resourcequota-controller";
const WORKERS: usize = 2;
/// How often every quota is recounted, for the kinds not watched here.
const RESYNC: Duration = Duration::from_secs(30);

/// The kind a quota resource name counts.
fn kind_of(name: &str) -> Option<&'static ResourceInfo> {
    let core = |plural| registry::by_plural("", "v1", plural);
    if let Some(counted) = name.strip_prefix("count/") {
        let (plural, group) = counted.split_once('.').unwrap_or((counted, ""));
        return registry::RESOURCES.iter().find(|r| r.plural == plural && r.group == group);
    }
    match name {
        "services" | "services.nodeports" | "services.loadbalancers" => core("services"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" | "persistentvolumeclaims" => core(name),
        "requests.storage" => core("persistentvolumeclaims"),
        _ => core("pods"),
    }
}

/// Whether a pod still counts against quotas (not finished, not being deleted).
fn counts(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

pub fn new(ctx: &Context) -> Controller {
    let quotas = ctx.informers.get::<ResourceQuota>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        // Only a new or changed `hard`: `used` changing is admission's charging, and recounting
        // on it would race the creates being charged.
        quotas.on_change(move |change| {
            if let Change::Applied { old, new } = change
                && old.as_ref().is_none_or(|o| o.spec != new.spec)
            {
                queue.add(key(&new.metadata));
            }
        });
    }
    let recount = |queue: Arc<Queue>, quotas: Informer<ResourceQuota>| {
        move |ns: Option<&str>| {
            for q in quotas.list(ns.unwrap_or("")) {
                queue.add(key(&q.metadata));
            }
        }
    };
    let pods = ctx.informers.get::<Pod>();
    let services = ctx.informers.get::<Service>();
    let claims = ctx.informers.get::<PersistentVolumeClaim>();
    {
        let touch = recount(queue.clone(), quotas.clone());
        pods.on_change(move |c| {
            let freed = match c {
                Change::Deleted(_) => true,
                Change::Applied { old, new } => old.as_ref().is_some_and(|o| counts(o) && !counts(new)),
            };
            if freed {
                touch(c.object().metadata.namespace.as_deref());
            }
        });
    }
    {
        let touch = recount(queue.clone(), quotas.clone());
        services.on_change(move |c| {
            if let Change::Deleted(s) = c {
                touch(s.metadata.namespace.as_deref());
            }
        });
    }
    {
        let touch = recount(queue.clone(), quotas.clone());
        claims.on_change(move |c| {
            if let Change::Deleted(pvc) = c {
                touch(pvc.metadata.namespace.as_deref());
            }
        });
    }
    let synced = informers::all_synced([
        quotas.until_synced(),
        pods.until_synced(),
        services.until_synced(),
        claims.until_synced(),
    ]);
    let reconciler = Quotas { client: ctx.client.clone(), quotas };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct Quotas {
    client: kube::Client,
    quotas: Informer<ResourceQuota>,
}

impl Reconcile for Quotas {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl Quotas {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(rq) = self.quotas.get(ns, name) else { return Ok(None) };
        let hard = rq.spec.as_ref().and_then(|s| s.hard.clone()).unwrap_or_default();
        let kinds: BTreeSet<(&str, &str)> =
            hard.keys().filter_map(|k| kind_of(k)).map(|r| (r.group, r.plural)).collect();
        let mut used: BTreeMap<String, i128> = hard.keys().map(|k| (k.clone(), 0)).collect();
        for (group, plural) in kinds {
            let Some(resource) = registry::RESOURCES.iter().find(|r| r.group == group && r.plural == plural) else {
                continue;
            };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &api_resource(resource));
            for object in api.list(&ListParams::default()).await?.items {
                let value = serde_json::to_value(&object).unwrap_or_default();
                for (k, v) in quota::usage(group, plural, &value) {
                    if let Some(total) = used.get_mut(&k) {
                        *total += v;
                    }
                }
            }
        }
        let status = ResourceQuotaStatus {
            hard: (!hard.is_empty()).then(|| hard.clone()),
            used: (!used.is_empty()).then(|| used.iter().map(|(k, v)| (k.clone(), quota::render(k, *v))).collect()),
        };
        if rq.status.as_ref() != Some(&status) {
            let mut updated = (*rq).clone();
            updated.status = Some(status);
            Api::<ResourceQuota>::namespaced(self.client.clone(), ns)
                .replace_status(name, &PostParams::default(), &updated)
                .await?;
        }
        Ok(Some(RESYNC))
    }
}

//! The service-lb controller: every LoadBalancer Service without a `spec.loadBalancerClass`
//! gets an address of `--service-lb-ip-pool` in `status.loadBalancer.ingress`
//! (`[{"ip": …, "ipMode": "VIP"}]`, written through `services/status`), which rk-proxy then
//! serves on every node. Without a pool it does nothing.
//!
//! The Services' statuses are the whole allocation state: one worker plans every Service at
//! once with the pure [`plan::plan`] and writes the steps, each conditional on the cached
//! resourceVersion. Two things keep a stale cache from handing one address out twice:
//! - status writes made but not yet in the cache are laid over it (the controller's
//!   "expectations"), until the cache moves past the version they were written against;
//! - at start (the first list may come from the API server's watch cache, behind a previous
//!   leader's last writes) and after a write whose outcome is unknown (no answer, a server
//!   error), nothing is planned until the cache agrees with a consistent list from the API.

pub mod plan;
pub mod pool;

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use daemon::events::{Recorder, Type};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::json;

pub use pool::Pool;

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::pods::split_key;
use crate::queue::Queue;
use crate::{Context, Error};
use plan::{Claim, Step};

/// Upstream's name (`--controllers` takes `service-lb` too).
pub const NAME: &str = "service-lb-controller";
/// The one key of the queue: a sync plans every Service.
const KEY: &str = "services";
const WRITES_IN_FLIGHT: usize = 16;
/// How soon to compare again while the cache and the API server disagree.
const IN_DOUBT_RETRY: Duration = Duration::from_millis(100);
/// Reason of the Warning Event of a Service that gets no address.
pub const ALLOCATION_FAILED: &str = "AllocationFailed";
/// Reason of the Normal Event of a Service given an address.
pub const IP_ALLOCATED: &str = "IPAllocated";

pub fn new(ctx: &Context) -> Controller {
    let queue = Arc::new(Queue::new());
    let Some(pool) = ctx.config.service_lb_ip_pool.clone() else {
        tracing::info!(controller = NAME, "off: no --service-lb-ip-pool, so LoadBalancer Services get no address");
        return Controller { name: NAME, queue, workers: 1, reconciler: Arc::new(Off), synced: Box::pin(async {}) };
    };
    tracing::info!(controller = NAME, %pool, addresses = pool.size(), "LoadBalancer addresses from the pool");
    let services = ctx.informers.get::<Service>();
    {
        let queue = queue.clone();
        services.on_change(move |change| {
            let matters = match change {
                Change::Applied { old: Some(old), new } => {
                    let (old, new) = (Claim::of(old), Claim::of(new));
                    (old.concerns() || new.concerns()) && old != new
                }
                Change::Applied { old: None, new } => Claim::of(new).concerns(),
                Change::Deleted(old) => Claim::of(old).concerns(),
            };
            if matters {
                queue.add(KEY.to_string());
            }
        });
    }
    let synced = informers::all_synced([services.until_synced()]);
    let reconciler = Allocator {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        services,
        pool,
        written: Mutex::default(),
        in_doubt: AtomicBool::new(true),
    };
    // One worker: a plan reads every Service's address and must not race itself.
    Controller { name: NAME, queue, workers: 1, reconciler: Arc::new(reconciler), synced }
}

/// The controller without a pool.
struct Off;

impl Reconcile for Off {
    fn reconcile<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        futures::future::ready(Ok(None)).boxed()
    }
}

/// A status this controller wrote that the cache may not show yet.
#[derive(Debug, Clone)]
struct Written {
    uid: Option<String>,
    /// The resourceVersion the write was conditional on: while the cache is at it, the cache
    /// has not seen the write.
    based_on: Option<String>,
    ingress: Vec<LoadBalancerIngress>,
}

/// Every Service as the plan sees it: the cache, with the writes in `written` it has not caught
/// up with laid over it. Only those stay in `written`; the others are seen, or about Services
/// that are gone.
fn overlay(services: &[Arc<Service>], written: &mut HashMap<String, Written>) -> Vec<Claim> {
    let mut claims = Vec::with_capacity(services.len());
    let mut pending = HashMap::with_capacity(written.len());
    for service in services {
        let mut claim = Claim::of(service);
        if let Some(w) = written.remove(&claim.key())
            && w.uid == service.metadata.uid
            && w.based_on == service.metadata.resource_version
        {
            claim.ingress = w.ingress.clone();
            pending.insert(claim.key(), w);
        }
        claims.push(claim);
    }
    *written = pending;
    claims
}

/// The Services that concern the controller, by key, with their uid: what the cache and a
/// consistent list must agree on before a plan is safe.
fn concerned<'a>(
    services: impl IntoIterator<Item = &'a Service>,
    claims: impl IntoIterator<Item = Claim>,
) -> BTreeMap<String, (Option<String>, Claim)> {
    services
        .into_iter()
        .zip(claims)
        .filter(|(_, c)| c.concerns())
        .map(|(s, c)| (c.key(), (s.metadata.uid.clone(), c)))
        .collect()
}

/// Whether a failed write may still have taken place: no answer, or a server error.
fn outcome_unknown(e: &kube::Error) -> bool {
    !matches!(e, kube::Error::Api(s) if (400..500).contains(&s.code))
}

struct Allocator {
    client: kube::Client,
    recorder: Arc<Recorder>,
    services: Informer<Service>,
    pool: Pool,
    /// By `namespace/name`.
    written: Mutex<HashMap<String, Written>>,
    /// The cache may be behind writes the API server has: compare before planning.
    in_doubt: AtomicBool,
}

impl Reconcile for Allocator {
    fn reconcile<'a>(&'a self, _key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync().boxed()
    }
}

impl Allocator {
    fn written(&self) -> std::sync::MutexGuard<'_, HashMap<String, Written>> {
        self.written.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn sync(&self) -> Result<Option<Duration>, Error> {
        let services = self.services.all();
        let claims = overlay(&services, &mut self.written());
        if self.in_doubt.load(Ordering::Acquire) {
            let listed = Api::<Service>::all(self.client.clone()).list(&ListParams::default()).await?.items;
            let cached = concerned(services.iter().map(|s| &**s), claims.iter().cloned());
            if concerned(&listed, listed.iter().map(Claim::of)) != cached {
                tracing::debug!(controller = NAME, "the cache is behind the API server; waiting");
                return Ok(Some(IN_DOUBT_RETRY));
            }
            self.in_doubt.store(false, Ordering::Release);
        }
        let steps = plan::plan(&claims, &self.pool);
        if steps.is_empty() {
            return Ok(None);
        }
        let by_key: HashMap<String, (&Arc<Service>, &Claim)> =
            services.iter().zip(&claims).map(|(s, c)| (c.key(), (s, c))).collect();
        let mut writes = Vec::new();
        for step in steps {
            match step {
                Step::Fail { service, message } => {
                    if let Some((svc, _)) = by_key.get(&service) {
                        tracing::debug!(service, message, "no LoadBalancer address");
                        self.recorder.object(&***svc, Type::Warning, ALLOCATION_FAILED, message);
                    }
                }
                Step::Assign { service, ip } => {
                    if let Some((svc, claim)) = by_key.get(&service) {
                        writes.push(((*svc).clone(), Some(ip), claim.ingress.clone()));
                    }
                }
                Step::Clear { service } => {
                    if let Some((svc, claim)) = by_key.get(&service) {
                        writes.push(((*svc).clone(), None, claim.ingress.clone()));
                    }
                }
            }
        }
        let attempted = writes.len();
        let results: Vec<Result<(), kube::Error>> = futures::stream::iter(writes)
            .map(|(svc, ip, before)| self.write(svc, ip, before))
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        let mut failed = 0;
        let mut first = None;
        for e in results.into_iter().filter_map(Result::err) {
            if outcome_unknown(&e) {
                self.in_doubt.store(true, Ordering::Release);
            }
            failed += 1;
            first.get_or_insert(e);
        }
        match first {
            Some(first) => Err(Error::Partial { what: "Service status writes", attempted, failed, first }),
            None => Ok(None),
        }
    }

    /// Writes `ip` (or, for `None`, no address) as the Service's load balancer, conditional on
    /// the cached resourceVersion; `before` is the ingress the plan saw.
    async fn write(
        &self,
        service: Arc<Service>,
        ip: Option<Ipv4Addr>,
        before: Vec<LoadBalancerIngress>,
    ) -> Result<(), kube::Error> {
        let key = crate::pods::key(&service.metadata);
        let (ns, name) = split_key(&key);
        let ingress = ip.map(plan::ingress_for).unwrap_or_default();
        let patch = json!({
            "metadata": {"resourceVersion": service.metadata.resource_version},
            "status": {"loadBalancer": {"ingress": if ingress.is_empty() { json!(null) } else { json!(ingress) }}},
        });
        let api = Api::<Service>::namespaced(self.client.clone(), ns);
        match api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            // Gone: its deletion is on its way to the cache, and frees what it had.
            Err(kube::Error::Api(e)) if e.code == 404 => return Ok(()),
            Err(e) => return Err(e),
        }
        self.written().insert(
            key.clone(),
            Written { uid: service.metadata.uid.clone(), based_on: service.metadata.resource_version.clone(), ingress },
        );
        let had = |ip: Ipv4Addr| before.iter().any(|i| i.ip.as_deref() == Some(ip.to_string().as_str()));
        match ip {
            Some(ip) if !had(ip) => {
                tracing::info!(service = key, %ip, "LoadBalancer address assigned");
                self.recorder.object(&*service, Type::Normal, IP_ALLOCATED, format!("Assigned IP {ip}"));
            }
            Some(ip) => tracing::debug!(service = key, %ip, "LoadBalancer ingress rewritten"),
            None => {
                let released: Vec<&str> = before.iter().filter_map(|i| i.ip.as_deref()).collect();
                tracing::info!(service = key, ?released, "LoadBalancer address released");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(name: &str, uid: &str, rv: &str, ip: Option<&str>) -> Arc<Service> {
        let status = ip.map(|ip| json!({"loadBalancer": {"ingress": [{"ip": ip, "ipMode": "VIP"}]}}));
        let service = serde_json::from_value(json!({
            "metadata": {"namespace": "default", "name": name, "uid": uid, "resourceVersion": rv},
            "spec": {"type": "LoadBalancer"},
            "status": status,
        }));
        Arc::new(service.unwrap_or_default())
    }

    fn written(uid: &str, rv: &str, ip: Option<Ipv4Addr>) -> Written {
        Written {
            uid: Some(uid.into()),
            based_on: Some(rv.into()),
            ingress: ip.map(plan::ingress_for).unwrap_or_default(),
        }
    }

    #[test]
    fn writes_the_cache_has_not_seen_are_laid_over_it_until_it_has() {
        let ip = Ipv4Addr::new(192, 0, 2, 9);
        let mut pending: HashMap<String, Written> = [
            ("default/unseen".to_string(), written("u1", "10", Some(ip))),
            ("default/cleared".to_string(), written("u2", "11", None)),
            ("default/seen".to_string(), written("u3", "12", Some(ip))),
            ("default/recreated".to_string(), written("old", "13", Some(ip))),
            ("default/gone".to_string(), written("u5", "14", Some(ip))),
        ]
        .into_iter()
        .collect();
        let cache = [
            service("unseen", "u1", "10", None),
            service("cleared", "u2", "11", Some("192.0.2.10")),
            service("seen", "u3", "15", Some("192.0.2.9")),
            service("recreated", "new", "13", None),
        ];
        let claims = overlay(&cache, &mut pending);
        let ips: Vec<(String, Vec<LoadBalancerIngress>)> = claims.into_iter().map(|c| (c.key(), c.ingress)).collect();
        assert_eq!(
            ips,
            [
                ("default/unseen".to_string(), plan::ingress_for(ip)),
                ("default/cleared".to_string(), vec![]),
                ("default/seen".to_string(), plan::ingress_for(ip)),
                ("default/recreated".to_string(), vec![]),
            ]
        );
        let mut left: Vec<&String> = pending.keys().collect();
        left.sort();
        assert_eq!(left, ["default/cleared", "default/unseen"]);
    }

    #[test]
    fn only_answers_from_the_api_server_say_a_write_did_not_happen() {
        let status = |code: u16| {
            kube::Error::Api(Box::new(kube::core::Status { code, ..kube::core::Status::failure("x", "y") }))
        };
        assert!(!outcome_unknown(&status(409)));
        assert!(!outcome_unknown(&status(422)));
        assert!(outcome_unknown(&status(500)));
        assert!(outcome_unknown(&status(504)));
    }
}

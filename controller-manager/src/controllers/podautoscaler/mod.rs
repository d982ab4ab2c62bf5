//! The horizontal pod autoscaler controller (autoscaling/v2, Resource metrics cpu and memory):
//! every sync period it reads the target's `scale` subresource, the selected pods from the cache
//! and their usage from `metrics.k8s.io` (which rk-apiserver serves from the kubelets), asks
//! [`plan`] for the replica count, writes the target's scale when it changes, and reports the
//! current metrics and the AbleToScale, ScalingActive and ScalingLimited conditions in status.
//! The stabilization window's recommendations and the recent scale changes live in memory, as
//! upstream's do: a restarted controller starts a fresh window.

pub mod plan;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use api_types::labels::LabelSelector;
use api_types::quantity;
use daemon::events::Type;
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::autoscaling::v2::{
    HorizontalPodAutoscaler, HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricSpec, MetricStatus,
    MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PostParams};
use serde_json::Value;

use self::plan::{Group, History, Limits, PodState, Readiness, Sample, Target};
use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Informer};
use crate::pods::{key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "horizontal-pod-autoscaler-controller";
const WORKERS: usize = 2;

/// The controller's flags (upstream's `--horizontal-pod-autoscaler-*`).
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub sync_period: Duration,
    pub downscale_stabilization: Duration,
    pub tolerance: f64,
    pub cpu_initialization_period: Duration,
    pub initial_readiness_delay: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            sync_period: Duration::from_secs(15),
            downscale_stabilization: Duration::from_secs(300),
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
        }
    }
}

pub fn new(ctx: &Context) -> Controller {
    let autoscalers = ctx.informers.get::<HorizontalPodAutoscaler>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        autoscalers.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    let synced = informers::all_synced([autoscalers.until_synced(), pods.until_synced()]);
    let reconciler = Autoscaler {
        client: ctx.client.clone(),
        recorder: ctx.recorder.clone(),
        settings: ctx.config.hpa,
        autoscalers,
        pods,
        histories: Mutex::new(HashMap::new()),
    };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct Autoscaler {
    client: kube::Client,
    recorder: Arc<daemon::events::Recorder>,
    settings: Settings,
    autoscalers: Informer<HorizontalPodAutoscaler>,
    pods: Informer<Pod>,
    histories: Mutex<HashMap<String, History>>,
}

impl Reconcile for Autoscaler {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

/// The conditions being built for one sync, keeping transition times of unchanged ones.
struct Conditions {
    list: Vec<HorizontalPodAutoscalerCondition>,
    now: Timestamp,
}

impl Conditions {
    fn set(&mut self, type_: &str, status: bool, reason: &str, message: String) {
        let status = if status { "True" } else { "False" }.to_string();
        let changed = Some(Time(self.now));
        match self.list.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                if c.status != status {
                    c.last_transition_time = changed;
                }
                (c.status, c.reason, c.message) = (status, Some(reason.into()), Some(message));
            }
            None => self.list.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                status,
                reason: Some(reason.into()),
                message: Some(message),
                last_transition_time: changed,
            }),
        }
    }
}

/// One pod's usage of one resource, from metrics.k8s.io.
struct Usage {
    milli: i64,
    taken: Timestamp,
    window: SignedDuration,
}

fn milli(q: &Quantity) -> Option<i64> {
    quantity::parse(q).ok().map(|p| p.to_milli())
}

/// The sum over a pod's containers of `resource`'s usage.
fn usage_of(metrics: &Value, resource: &str) -> Option<Usage> {
    let total = metrics["containers"].as_array()?.iter().try_fold(0i64, |sum, c| {
        let q = Quantity(c["usage"][resource].as_str()?.to_string());
        Some(sum + milli(&q)?)
    })?;
    let taken = metrics["timestamp"].as_str()?.parse().ok()?;
    let window = metrics["window"].as_str().and_then(|w| daemon::parse_duration(w).ok()).unwrap_or_default();
    Some(Usage { milli: total, taken, window: SignedDuration::try_from(window).unwrap_or_default() })
}

/// The sum of the containers' requests of `resource`; `None` if one container has none.
fn request_of(pod: &Pod, resource: &str) -> Option<i64> {
    pod.spec
        .as_ref()?
        .containers
        .iter()
        .try_fold(0i64, |sum, c| Some(sum + milli(c.resources.as_ref()?.requests.as_ref()?.get(resource)?)?))
}

fn pod_state(pod: &Pod) -> PodState {
    let status = pod.status.clone().unwrap_or_default();
    let ready = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status == "True", c.last_transition_time.as_ref().map_or(Timestamp::UNIX_EPOCH, |t| t.0)));
    PodState {
        deleting: pod.metadata.deletion_timestamp.is_some(),
        phase: status.phase.unwrap_or_else(|| "Pending".into()),
        start_time: status.start_time.map(|t| t.0),
        ready,
    }
}

/// Renders milli-units the way a Quantity is usually read: `250m`, or `2` for a whole number.
fn render_milli(m: i64) -> Quantity {
    Quantity(if m % 1000 == 0 { (m / 1000).to_string() } else { format!("{m}m") })
}

/// How upstream names a Resource metric in messages and events.
fn metric_name(resource: &str, target: Target) -> String {
    match target {
        Target::Utilization(_) => format!("{resource} resource utilization (percentage of request)"),
        Target::AverageValue(_) => format!("{resource} resource"),
    }
}

impl Autoscaler {
    fn readiness(&self) -> Readiness {
        let signed = |d: Duration| SignedDuration::try_from(d).unwrap_or_default();
        Readiness {
            cpu_initialization_period: signed(self.settings.cpu_initialization_period),
            initial_readiness_delay: signed(self.settings.initial_readiness_delay),
        }
    }

    /// The selected pods' metrics, by pod name.
    async fn pod_metrics(&self, ns: &str, selector: &str) -> Result<HashMap<String, Value>, Error> {
        let resource = ApiResource {
            group: "metrics.k8s.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics.k8s.io/v1beta1".into(),
            kind: "PodMetrics".into(),
            plural: "pods".into(),
        };
        let list = Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &resource)
            .list(&ListParams::default().labels(selector))
            .await?;
        Ok(list.items.into_iter().filter_map(|m| Some((m.metadata.name?, m.data))).collect())
    }

    /// One metric's proposal, or why there is none.
    fn propose(
        &self,
        spec: &MetricSpec,
        current: i32,
        pods: &[Arc<Pod>],
        metrics: &HashMap<String, Value>,
        now: Timestamp,
    ) -> Result<(plan::Proposal, MetricStatus, String), (&'static str, String)> {
        let Some(source) = spec.resource.as_ref().filter(|_| spec.type_ == "Resource") else {
            return Err(("InvalidMetricSourceType", format!("the HPA does not support metric type {:?}", spec.type_)));
        };
        let resource = source.name.as_str();
        let target =
            match (source.target.type_.as_str(), &source.target.average_utilization, &source.target.average_value) {
                ("Utilization", Some(percent), _) => Target::Utilization(*percent),
                ("AverageValue", _, Some(q)) => Target::AverageValue(milli(q).unwrap_or(0)),
                (other, ..) => {
                    return Err(("InvalidMetricSourceType", format!("invalid resource metric target type {other:?}")));
                }
            };
        let samples: BTreeMap<String, Sample> = pods
            .iter()
            .map(|pod| {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let usage = metrics.get(&name).and_then(|m| usage_of(m, resource));
                let group = plan::group(
                    &pod_state(pod),
                    usage.as_ref().map(|u| (u.taken, u.window)),
                    resource,
                    now,
                    self.readiness(),
                );
                (name, Sample { group, usage: usage.map(|u| u.milli), request: request_of(pod, resource) })
            })
            .collect();
        if let Target::Utilization(_) = target
            && let Some((pod, _)) = samples.iter().find(|(_, s)| s.group != Group::Ignored && s.request.is_none())
        {
            return Err((
                "FailedGetResourceMetric",
                format!("failed to get {resource} utilization: missing request for {resource} in pod {pod}"),
            ));
        }
        let proposal = plan::replicas(current, target, &samples, self.settings.tolerance)
            .map_err(|e| ("FailedGetResourceMetric", format!("failed to get {resource} resource metric value: {e}")))?;
        let status = MetricStatus {
            type_: "Resource".into(),
            resource: Some(ResourceMetricStatus {
                name: resource.into(),
                current: MetricValueStatus {
                    average_utilization: proposal.utilization,
                    average_value: Some(render_milli(proposal.average)),
                    value: None,
                },
            }),
            ..Default::default()
        };
        Ok((proposal, status, metric_name(resource, target)))
    }

    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(hpa) = self.autoscalers.get(ns, name) else {
            self.histories.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(key);
            return Ok(None);
        };
        let now = Timestamp::now();
        let again = Some(self.settings.sync_period);
        let spec = hpa.spec.clone().unwrap_or_default();
        let previous = hpa.status.clone().unwrap_or_default();
        let mut conditions = Conditions { list: previous.conditions.clone().unwrap_or_default(), now };
        let reference = &spec.scale_target_ref;
        let target_resource = api_types::registry::RESOURCES.iter().find(|r| {
            r.api_version() == reference.api_version.as_deref().unwrap_or_default()
                && r.kind == reference.kind
                && r.has_subresource("scale")
        });
        let scale = match target_resource {
            Some(r) => Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &super::api_resource(r))
                .get_scale(&reference.name)
                .await
                .map_err(|e| e.to_string()),
            None => Err(format!(
                "no scale subresource for kind {:?} in {:?}",
                reference.kind,
                reference.api_version.as_deref().unwrap_or_default()
            )),
        };
        let scale = match scale {
            Ok(s) => s,
            Err(e) => {
                let message = format!("the HPA controller was unable to get the target's current scale: {e}");
                self.recorder.object(&*hpa, Type::Warning, "FailedGetScale", e);
                conditions.set("AbleToScale", false, "FailedGetScale", message);
                self.write_status(
                    &hpa,
                    previous.current_replicas.unwrap_or(0),
                    previous.desired_replicas,
                    None,
                    conditions,
                    false,
                )
                .await?;
                return Ok(again);
            }
        };
        conditions.set(
            "AbleToScale",
            true,
            "SucceededGetScale",
            "the HPA controller was able to get the target's current scale".into(),
        );
        let current = scale.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let min = spec.min_replicas.unwrap_or(1);
        let mut statuses: Option<Vec<MetricStatus>> = None;
        let (desired, reason) = if current == 0 && min != 0 {
            conditions.set(
                "ScalingActive",
                false,
                "ScalingDisabled",
                "scaling is disabled since the replica count of the target is zero".into(),
            );
            (0, None)
        } else if current > spec.max_replicas {
            (spec.max_replicas, Some("Current number of replicas above Spec.MaxReplicas".to_string()))
        } else if current < min {
            (min, Some("Current number of replicas below Spec.MinReplicas".to_string()))
        } else {
            let selector = scale.status.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
            let parsed = LabelSelector::parse(&selector).ok().filter(|s| !s.is_empty());
            let Some(parsed) = parsed else {
                let message =
                    format!("the HPA target's scale is missing a selector or has an invalid one: {selector:?}");
                self.recorder.object(&*hpa, Type::Warning, "InvalidSelector", message.clone());
                conditions.set("ScalingActive", false, "InvalidSelector", message);
                self.write_status(&hpa, current, current, None, conditions, false).await?;
                return Ok(again);
            };
            let empty = BTreeMap::new();
            let pods: Vec<Arc<Pod>> = self
                .pods
                .list(ns)
                .into_iter()
                .filter(|p| parsed.matches(p.metadata.labels.as_ref().unwrap_or(&empty)))
                .collect();
            let metrics = match self.pod_metrics(ns, &selector).await {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(hpa = key, error = %e, "no resource metrics");
                    HashMap::new()
                }
            };
            let mut best: Option<(i32, String)> = None;
            let mut found = Vec::new();
            let mut invalid: Vec<(&'static str, String)> = Vec::new();
            for metric in spec.metrics.iter().flatten() {
                match self.propose(metric, current, &pods, &metrics, now) {
                    Ok((proposal, status, name)) => {
                        found.push(status);
                        if best.as_ref().is_none_or(|(r, _)| proposal.replicas > *r) {
                            best = Some((proposal.replicas, name));
                        }
                    }
                    Err(e) => invalid.push(e),
                }
            }
            let count = spec.metrics.as_ref().map_or(0, Vec::len);
            statuses = Some(found);
            match (best, invalid.first()) {
                (Some((replicas, metric)), first_invalid) if first_invalid.is_none() || replicas >= current => {
                    conditions.set(
                        "ScalingActive",
                        true,
                        "ValidMetricFound",
                        format!("the HPA was able to successfully calculate a replica count from {metric}"),
                    );
                    let reason = if replicas > current {
                        format!("{metric} above target")
                    } else {
                        "All metrics below target".into()
                    };
                    let limits = Limits {
                        min,
                        max: spec.max_replicas,
                        behavior: spec.behavior.as_ref(),
                        downscale_stabilization: SignedDuration::try_from(self.settings.downscale_stabilization)
                            .unwrap_or_default(),
                    };
                    let normalized = {
                        let mut histories = self.histories.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                        plan::normalize(current, replicas, &limits, histories.entry(key.to_string()).or_default(), now)
                    };
                    for (type_, status, reason, message) in normalized.conditions {
                        conditions.set(type_, status, reason, message);
                    }
                    (normalized.replicas, Some(reason))
                }
                (_, first_invalid) => {
                    let (reason, message) =
                        first_invalid.cloned().unwrap_or(("FailedGetResourceMetric", "no metrics".into()));
                    conditions.set("ScalingActive", false, reason, message.clone());
                    self.recorder.object(&*hpa, Type::Warning, reason, message.clone());
                    self.recorder.object(
                        &*hpa,
                        Type::Warning,
                        "FailedComputeMetricsReplicas",
                        format!(
                            "invalid metrics ({} invalid out of {count}), first error is: {message}",
                            invalid.len()
                        ),
                    );
                    self.write_status(&hpa, current, current, statuses, conditions, false).await?;
                    return Ok(again);
                }
            }
        };
        let rescale = desired != current && reason.is_some();
        if rescale {
            let reason = reason.unwrap_or_default();
            let mut updated = scale.clone();
            updated.spec.get_or_insert_default().replicas = Some(desired);
            let target_resource = target_resource.ok_or_else(|| Error::Config("target vanished".into()))?;
            let api =
                Api::<DynamicObject>::namespaced_with(self.client.clone(), ns, &super::api_resource(target_resource));
            if let Err(e) = api.replace_scale(&reference.name, &PostParams::default(), &updated).await {
                self.recorder.object(
                    &*hpa,
                    Type::Warning,
                    "FailedRescale",
                    format!("New size: {desired}; reason: {reason}; error: {e}"),
                );
                conditions.set(
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    format!("the HPA controller was unable to update the target scale: {e}"),
                );
                self.write_status(&hpa, current, previous.desired_replicas, statuses, conditions, false).await?;
                return Err(e.into());
            }
            conditions.set(
                "AbleToScale",
                true,
                "SucceededRescale",
                format!("the HPA controller was able to update the target scale to {desired}"),
            );
            self.recorder.object(
                &*hpa,
                Type::Normal,
                "SuccessfulRescale",
                format!("New size: {desired}; reason: {reason}"),
            );
            tracing::info!(hpa = key, from = current, to = desired, reason, "rescaled");
            let mut histories = self.histories.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            plan::record_scale(
                histories.entry(key.to_string()).or_default(),
                spec.behavior.as_ref(),
                current,
                desired,
                now,
            );
        }
        let desired = if rescale { desired } else { current };
        self.write_status(&hpa, current, desired, statuses, conditions, rescale).await?;
        Ok(again)
    }

    async fn write_status(
        &self,
        hpa: &HorizontalPodAutoscaler,
        current: i32,
        desired: i32,
        metrics: Option<Vec<MetricStatus>>,
        conditions: Conditions,
        rescaled: bool,
    ) -> Result<(), Error> {
        let previous = hpa.status.clone().unwrap_or_default();
        let status = HorizontalPodAutoscalerStatus {
            current_replicas: Some(current),
            desired_replicas: desired,
            current_metrics: metrics.or(previous.current_metrics.clone()).filter(|m| !m.is_empty()),
            conditions: Some(conditions.list),
            last_scale_time: if rescaled { Some(Time(conditions.now)) } else { previous.last_scale_time.clone() },
            observed_generation: hpa.metadata.generation,
        };
        if hpa.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let mut updated = hpa.clone();
        updated.status = Some(status);
        let (ns, name) =
            (hpa.metadata.namespace.as_deref().unwrap_or_default(), hpa.metadata.name.as_deref().unwrap_or_default());
        Api::<HorizontalPodAutoscaler>::namespaced(self.client.clone(), ns)
            .replace_status(name, &PostParams::default(), &updated)
            .await?;
        Ok(())
    }
}

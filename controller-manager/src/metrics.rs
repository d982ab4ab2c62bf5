//! `rk_controller_manager_*` metrics: reconciles by controller and result, their duration, each
//! work queue's depth, and whether this instance leads. Labels are bounded (a controller name
//! from the registry, a result).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabel {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub controller: &'static str,
    /// `success` or `error`.
    pub result: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<ResultLabel, Counter>,
    pub duration: Family<ControllerLabel, Histogram>,
    pub queue_depth: Family<ControllerLabel, Gauge>,
    pub leader: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            reconciles: Family::default(),
            duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.0005, 2.0, 16))),
            queue_depth: Family::default(),
            leader: Gauge::default(),
        };
        registry.register("reconciles", "Reconciles by controller and result (success, error)", m.reconciles.clone());
        registry.register("reconcile_duration_seconds", "One reconcile, by controller", m.duration.clone());
        registry.register("queue_depth", "Keys ready to reconcile, by controller", m.queue_depth.clone());
        registry.register("leader", "1 while this instance holds the leader lease", m.leader.clone());
        m
    }
}

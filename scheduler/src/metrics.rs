//! `rk_scheduler_*` metrics: attempts by result, end-to-end and decision latency, queue depths,
//! and whether this instance leads. Labels are bounded (a result, a queue name).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub queue: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub attempts: Family<ResultLabel, Counter>,
    /// From entering the queue to the binding written.
    pub e2e: Histogram,
    /// One decision (filter and score).
    pub algorithm: Histogram,
    pub pending: Family<QueueLabel, Gauge>,
    pub leader: Gauge,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            attempts: Family::default(),
            e2e: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            algorithm: Histogram::new(exponential_buckets(0.00001, 2.0, 18)),
            pending: Family::default(),
            leader: Gauge::default(),
        };
        registry.register(
            "schedule_attempts",
            "Scheduling attempts by result (scheduled, unschedulable, error)",
            m.attempts.clone(),
        );
        registry.register(
            "e2e_scheduling_duration_seconds",
            "From a pod entering the queue to its binding",
            m.e2e.clone(),
        );
        registry.register(
            "scheduling_algorithm_duration_seconds",
            "Filtering and scoring one pod",
            m.algorithm.clone(),
        );
        registry.register("pending_pods", "Pods waiting, by queue (active, backoff, unschedulable)", m.pending.clone());
        registry.register("leader", "1 while this instance holds the leader lease", m.leader.clone());
        m
    }

    pub fn attempt(&self, result: &'static str) {
        self.attempts.get_or_create(&ResultLabel { result }).inc();
    }

    pub fn depths(&self, d: crate::queue::Depths) {
        for (queue, n) in [("active", d.active), ("backoff", d.backoff), ("unschedulable", d.unschedulable)] {
            self.pending.get_or_create(&QueueLabel { queue }).set(n as i64);
        }
    }
}

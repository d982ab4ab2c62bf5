//! `rk_proxy_*` metrics: sync durations by kind (full, partial) and network-programming latency
//! (an EndpointSlice change in the API → its rules in the kernel). Labels are bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SyncLabel {
    pub kind: &'static str,
}

#[derive(Clone)]
pub struct Metrics {
    pub sync_duration: Family<SyncLabel, Histogram>,
    pub network_programming: Histogram,
    pub sync_failures: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            sync_duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 16))),
            network_programming: Histogram::new(exponential_buckets(0.001, 2.0, 18)),
            sync_failures: Counter::default(),
        };
        registry.register("sync_duration_seconds", "Time to render and apply one sync", m.sync_duration.clone());
        registry.register(
            "network_programming_duration_seconds",
            "From an EndpointSlice change in the API to its rules in the kernel",
            m.network_programming.clone(),
        );
        registry.register("sync_failures", "Syncs nft refused", m.sync_failures.clone());
        m
    }
}

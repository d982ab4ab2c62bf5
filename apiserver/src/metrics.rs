//! Prometheus metrics of the API server, served on `/metrics`. Label sets are bounded: verbs,
//! resources and codes, never object names.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    resource: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerbResource {
    verb: String,
    resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Operation {
    operation: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Resource {
    resource: String,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metric families; clones share them.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, prometheus_client::metrics::counter::Counter>,
    request_duration: Family<VerbResource, Histogram, fn() -> Histogram>,
    etcd_duration: Family<Operation, Histogram, fn() -> Histogram>,
    watchers: Family<Resource, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("rk_apiserver");
        let requests = Family::default();
        let request_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let etcd_duration = Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        let watchers = Family::default();
        registry.register("requests", "API requests by verb, resource and HTTP code", requests.clone());
        registry.register(
            "request_duration_seconds",
            "API request latency by verb and resource (watches excluded)",
            request_duration.clone(),
        );
        registry.register("etcd_request_duration_seconds", "etcd request latency by operation", etcd_duration.clone());
        registry.register("watchers", "Open watches by resource", watchers.clone());
        Metrics(Arc::new(Inner { registry, requests, request_duration, etcd_duration, watchers }))
    }
}

impl Metrics {
    pub fn observe_request(&self, verb: &str, resource: &str, code: u16, elapsed: Option<Duration>) {
        let labels = RequestLabels { verb: verb.into(), resource: resource.into(), code: code.to_string() };
        self.0.requests.get_or_create(&labels).inc();
        if let Some(elapsed) = elapsed {
            let labels = VerbResource { verb: verb.into(), resource: resource.into() };
            self.0.request_duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        }
    }

    pub fn observe_etcd(&self, operation: &str, elapsed: Duration) {
        self.0.etcd_duration.get_or_create(&Operation { operation: operation.into() }).observe(elapsed.as_secs_f64());
    }

    /// Counts an open watch until the returned guard drops.
    pub fn watch_opened(&self, resource: &str) -> WatchGauge {
        let gauge = self.0.watchers.get_or_create(&Resource { resource: resource.into() }).clone();
        gauge.inc();
        WatchGauge(gauge)
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.0.registry);
        out
    }
}

/// Decrements the open-watch gauge when dropped.
pub struct WatchGauge(Gauge);

impl Drop for WatchGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

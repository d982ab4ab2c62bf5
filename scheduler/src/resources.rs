//! Resource amounts as the scheduler adds them up: a pod's requests (upstream's way: app
//! containers summed, each init container alone, the larger of the two, plus overhead; a
//! missing request takes the limit) and a node's allocatable.

use std::collections::BTreeMap;

use api_types::quantity;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// What scoring assumes for a container that requests no CPU or memory (upstream's defaults).
pub const DEFAULT_MILLI_CPU: i64 = 100;
pub const DEFAULT_MEMORY: i64 = 200 * 1024 * 1024;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    /// Pods a node allows (allocatable only).
    pub pods: i64,
    /// Extended resources (`example.com/gpu`, `hugepages-2Mi`, …) by name.
    pub scalar: BTreeMap<String, i64>,
}

impl Resources {
    /// From a `requests`/`allocatable` map; unparsable amounts count as zero.
    pub fn from_map(map: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, q) in map {
            let Ok(parsed) = quantity::parse(q) else { continue };
            match name.as_str() {
                "cpu" => r.milli_cpu = parsed.to_milli(),
                "memory" => r.memory = parsed.to_value(),
                "ephemeral-storage" => r.ephemeral_storage = parsed.to_value(),
                "pods" => r.pods = parsed.to_value(),
                other => {
                    r.scalar.insert(other.to_string(), parsed.to_value());
                }
            }
        }
        r
    }

    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Each amount the larger of the two.
    fn max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }
}

/// A container's requests; a resource with a limit and no request requests its limit (what the
/// API's defaulting does).
fn container_requests(c: &Container) -> Resources {
    let Some(res) = &c.resources else { return Resources::default() };
    let mut map = res.limits.clone().unwrap_or_default();
    map.extend(res.requests.clone().unwrap_or_default());
    Resources::from_map(&map)
}

/// What a pod requests from its node.
pub fn pod_requests(spec: &PodSpec) -> Resources {
    let mut apps = Resources::default();
    for c in &spec.containers {
        apps.add(&container_requests(c));
    }
    // Sidecars (init containers that keep running) add to everything after them; a plain init
    // container needs its own requests plus the sidecars started before it.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container_requests(c);
        if c.restart_policy.as_deref() == Some("Always") {
            sidecars.add(&r);
            init_peak.max(&sidecars);
        } else {
            let mut during = sidecars.clone();
            during.add(&r);
            init_peak.max(&during);
        }
    }
    apps.add(&sidecars);
    apps.max(&init_peak);
    if let Some(overhead) = &spec.overhead {
        apps.add(&Resources::from_map(overhead));
    }
    apps
}

/// CPU and memory for scoring: a container that asks for none counts as asking for upstream's
/// defaults, so empty pods still spread.
pub fn non_zero_requests(spec: &PodSpec) -> (i64, i64) {
    let mut cpu = 0;
    let mut memory = 0;
    for c in &spec.containers {
        let r = container_requests(c);
        cpu += if r.milli_cpu == 0 { DEFAULT_MILLI_CPU } else { r.milli_cpu };
        memory += if r.memory == 0 { DEFAULT_MEMORY } else { r.memory };
    }
    (cpu, memory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> PodSpec {
        serde_json::from_value(v).expect("spec")
    }

    #[test]
    fn requests_sum_apps_take_the_init_peak_and_default_from_limits() {
        let cases = [
            (
                serde_json::json!({"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "64Mi"}}},
                    {"name": "b", "resources": {"limits": {"cpu": "1", "example.com/gpu": "2"}}}
                ]}),
                1250,
                64 << 20,
                2,
            ),
            (
                serde_json::json!({
                    "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2", "memory": "1Mi"}}}],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "8Mi"}}}]
                }),
                2000,
                8 << 20,
                0,
            ),
            (
                serde_json::json!({
                    "initContainers": [
                        {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}},
                        {"name": "i", "resources": {"requests": {"cpu": "1"}}}
                    ],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}],
                    "overhead": {"cpu": "10m"}
                }),
                1110,
                0,
                0,
            ),
        ];
        for (s, cpu, memory, gpus) in cases {
            let r = pod_requests(&spec(s.clone()));
            assert_eq!(
                (r.milli_cpu, r.memory, r.scalar.get("example.com/gpu").copied().unwrap_or(0)),
                (cpu, memory, gpus),
                "{s}"
            );
        }
    }

    #[test]
    fn containers_without_requests_count_upstream_defaults_for_scoring() {
        let s = spec(
            serde_json::json!({"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "1"}}}]}),
        );
        assert_eq!(non_zero_requests(&s), (1100, 2 * DEFAULT_MEMORY));
    }
}

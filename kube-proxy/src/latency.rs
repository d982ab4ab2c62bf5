//! Network-programming latency, as upstream measures it: from the change in the API that an
//! EndpointSlice write stems from (the time the EndpointSlice controller puts in its
//! `endpoints.kubernetes.io/last-change-trigger-time` annotation) to the rules being in the
//! kernel. Each annotation value is reported once, after the first sync that applied it; changes
//! older than this proxy are not its latency and are skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::jiff::Timestamp;

const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";

pub struct TriggerTimes {
    /// By slice (namespace/name), the annotation value last reported.
    seen: HashMap<String, String>,
    started: Timestamp,
}

impl TriggerTimes {
    pub fn new(started: Timestamp) -> Self {
        TriggerTimes { seen: HashMap::new(), started }
    }

    /// After a sync applied `slices` at `now`: the latencies of the changes it applied.
    pub fn applied(&mut self, slices: &[Arc<EndpointSlice>], now: Timestamp) -> Vec<Duration> {
        let mut latencies = Vec::new();
        let mut present = HashMap::with_capacity(slices.len());
        for slice in slices {
            let Some(value) = slice.metadata.annotations.as_ref().and_then(|a| a.get(TRIGGER_TIME_ANNOTATION)) else {
                continue;
            };
            let key = format!(
                "{}/{}",
                slice.metadata.namespace.as_deref().unwrap_or_default(),
                slice.metadata.name.as_deref().unwrap_or_default()
            );
            if self.seen.get(&key) != Some(value)
                && let Ok(at) = value.parse::<Timestamp>()
                // Second resolution: a change in the second the proxy started counts.
                && at.as_second() >= self.started.as_second()
            {
                let latency = now.duration_since(at);
                latencies.push(Duration::try_from(latency).unwrap_or_default());
            }
            present.insert(key, value.clone());
        }
        self.seen = present;
        latencies
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn slice(name: &str, trigger: Option<&str>) -> Arc<EndpointSlice> {
        let annotations = trigger.map(|t| json!({TRIGGER_TIME_ANNOTATION: t})).unwrap_or(json!({}));
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "annotations": annotations},
                "addressType": "IPv4", "endpoints": []
            }))
            .expect("slice"),
        )
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn each_trigger_time_is_reported_once_and_only_if_newer_than_the_proxy() {
        let mut times = TriggerTimes::new(t("2026-11-23T10:00:00.5Z"));
        let ms = |v: Vec<Duration>| v.into_iter().map(|d| d.as_millis()).collect::<Vec<_>>();
        let first = [slice("a", Some("2026-11-23T09:59:59Z")), slice("b", Some("2026-11-23T10:00:00Z"))];
        assert_eq!(ms(times.applied(&first, t("2026-11-23T10:00:01Z"))), [1000], "a predates the proxy");
        assert!(times.applied(&first, t("2026-11-23T10:00:02Z")).is_empty(), "nothing new");
        let second =
            [slice("a", Some("2026-11-23T10:00:03Z")), slice("b", Some("2026-11-23T10:00:00Z")), slice("c", None)];
        assert_eq!(ms(times.applied(&second, t("2026-11-23T10:00:03.25Z"))), [250]);
        // A slice that went and came back with the same time is new again.
        assert!(times.applied(&[], t("2026-11-23T10:00:04Z")).is_empty());
        assert_eq!(ms(times.applied(&second[1..2], t("2026-11-23T10:00:05Z"))), [5000]);
    }
}

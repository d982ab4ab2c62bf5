//! Resource usage of the node, its pods and their containers, for `/stats/summary` (upstream's
//! Summary API shape) and `/metrics/resource` (what metrics-server scrapes).
//!
//! A collector reads the node from `/proc` and every running container from Docker's one-shot
//! stats every [`INTERVAL`], keeping the reading before too, so CPU rates (`usageNanoCores`)
//! come from two readings as cAdvisor's do. The HTTP handlers only render the last snapshot.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::docker::{self, Docker, InspectCache, Kind};

/// How often usage is read.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Memory of a container or of the node, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub usage: u64,
    /// Usage less what the kernel can drop at once (inactive file pages): what eviction and
    /// metrics-server look at.
    pub working_set: u64,
    pub rss: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Node only.
    pub available: Option<u64>,
}

/// One reading: cumulative CPU time and current memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub time: Timestamp,
    pub cpu_ns: u64,
    pub memory: Memory,
}

/// The last reading of something and the one before it (for rates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readings {
    pub now: Usage,
    pub before: Option<Usage>,
}

impl Readings {
    /// CPU in billionths of a core, averaged between the two readings.
    pub fn nano_cores(&self) -> Option<u64> {
        let before = self.before?;
        let span = self.now.time.duration_since(before.time).as_nanos();
        let used = self.now.cpu_ns.checked_sub(before.cpu_ns)?;
        (span > 0).then(|| (u128::from(used) * 1_000_000_000 / span as u128) as u64)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStats {
    pub namespace: String,
    pub pod: String,
    pub pod_uid: String,
    /// The pod's container name, or [`docker::SANDBOX`] for the pause container.
    pub container: String,
    pub started_at: Option<Timestamp>,
    pub readings: Readings,
}

/// Everything `/stats/summary` and `/metrics/resource` render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub node_start: Option<Timestamp>,
    pub node: Option<Readings>,
    pub containers: Vec<ContainerStats>,
}

/// CPU time of the whole machine from `/proc/stat` (every state but idle and iowait, in
/// nanoseconds at 100 ticks a second), and the boot time.
pub fn parse_proc_stat(text: &str) -> (Option<u64>, Option<Timestamp>) {
    let mut cpu = None;
    let mut boot = None;
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("cpu") => {
                let ticks: Vec<u64> = fields.filter_map(|f| f.parse().ok()).collect();
                // user nice system idle iowait irq softirq steal (guest time is inside user)
                let busy: u64 =
                    ticks.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, t)| t).sum();
                cpu = Some(busy * 10_000_000);
            }
            Some("btime") => {
                boot = fields.next().and_then(|s| s.parse().ok()).and_then(|s| Timestamp::from_second(s).ok())
            }
            _ => {}
        }
    }
    (cpu, boot)
}

/// The node's memory from `/proc/meminfo`.
pub fn parse_meminfo(text: &str) -> Option<Memory> {
    let fields: HashMap<&str, u64> = text
        .lines()
        .filter_map(|l| {
            let (k, rest) = l.split_once(':')?;
            Some((k, rest.split_whitespace().next()?.parse::<u64>().ok()? * 1024))
        })
        .collect();
    let total = *fields.get("MemTotal")?;
    let free = *fields.get("MemFree")?;
    let available = fields.get("MemAvailable").copied().unwrap_or(free);
    let usage = total.saturating_sub(free);
    let inactive_file = fields.get("Inactive(file)").copied().unwrap_or(0);
    Some(Memory {
        usage,
        working_set: usage.saturating_sub(inactive_file),
        rss: fields.get("AnonPages").copied().unwrap_or(0),
        page_faults: 0,
        major_page_faults: 0,
        available: Some(available),
    })
}

/// A container's reading from Docker's stats (cgroup v1 and v2 name the counters apart).
pub fn container_usage(stats: &bollard::models::ContainerStatsResponse, time: Timestamp) -> Usage {
    let cpu_ns = stats.cpu_stats.as_ref().and_then(|c| c.cpu_usage.as_ref()).and_then(|u| u.total_usage).unwrap_or(0);
    let memory = stats.memory_stats.as_ref();
    let counters = memory.and_then(|m| m.stats.as_ref());
    let counter = |names: &[&str]| names.iter().find_map(|n| counters.and_then(|c| c.get(*n)).copied()).unwrap_or(0);
    let usage = memory.and_then(|m| m.usage).unwrap_or(0);
    Usage {
        time,
        cpu_ns,
        memory: Memory {
            usage,
            working_set: usage.saturating_sub(counter(&["inactive_file", "total_inactive_file"])),
            rss: counter(&["anon", "rss", "total_rss"]),
            page_faults: counter(&["pgfault", "total_pgfault"]),
            major_page_faults: counter(&["pgmajfault", "total_pgmajfault"]),
            available: None,
        },
    }
}

fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn cpu_json(r: &Readings) -> Value {
    let mut v = json!({"time": time(r.now.time), "usageCoreNanoSeconds": r.now.cpu_ns});
    if let Some(n) = r.nano_cores() {
        v["usageNanoCores"] = n.into();
    }
    v
}

fn memory_json(u: &Usage) -> Value {
    let m = &u.memory;
    let mut v = json!({
        "time": time(u.time), "usageBytes": m.usage, "workingSetBytes": m.working_set, "rssBytes": m.rss,
        "pageFaults": m.page_faults, "majorPageFaults": m.major_page_faults,
    });
    if let Some(a) = m.available {
        v["availableBytes"] = a.into();
    }
    v
}

/// The Summary API document (`/stats/summary`). A pod's usage is its containers' and its
/// sandbox's together, as its cgroup's would be.
pub fn summary(node_name: &str, s: &Snapshot) -> Value {
    let mut node = json!({"nodeName": node_name});
    if let Some(start) = s.node_start {
        node["startTime"] = time(start).into();
    }
    if let Some(r) = &s.node {
        node["cpu"] = cpu_json(r);
        node["memory"] = memory_json(&r.now);
    }
    let mut pods: Vec<(&str, &str, &str)> =
        s.containers.iter().map(|c| (c.namespace.as_str(), c.pod.as_str(), c.pod_uid.as_str())).collect();
    pods.sort_unstable();
    pods.dedup();
    let pods: Vec<Value> = pods
        .into_iter()
        .map(|(namespace, name, uid)| {
            let members: Vec<&ContainerStats> = s.containers.iter().filter(|c| c.pod_uid == uid).collect();
            let sandbox = members.iter().find(|c| c.container == docker::SANDBOX);
            let containers: Vec<Value> = members
                .iter()
                .filter(|c| c.container != docker::SANDBOX)
                .map(|c| {
                    let mut v = json!({"name": c.container, "cpu": cpu_json(&c.readings), "memory": memory_json(&c.readings.now)});
                    if let Some(t) = c.started_at {
                        v["startTime"] = time(t).into();
                    }
                    v
                })
                .collect();
            let total = sum(&members);
            let mut pod = json!({
                "podRef": {"name": name, "namespace": namespace, "uid": uid},
                "containers": containers,
                "cpu": cpu_json(&total),
                "memory": memory_json(&total.now),
            });
            if let Some(t) = sandbox.and_then(|c| c.started_at) {
                pod["startTime"] = time(t).into();
            }
            pod
        })
        .collect();
    json!({"node": node, "pods": pods})
}

/// Containers' readings added up; the earlier reading counts only when every member has one.
fn sum(members: &[&ContainerStats]) -> Readings {
    let add = |a: Usage, b: Usage| Usage {
        time: a.time.max(b.time),
        cpu_ns: a.cpu_ns + b.cpu_ns,
        memory: Memory {
            usage: a.memory.usage + b.memory.usage,
            working_set: a.memory.working_set + b.memory.working_set,
            rss: a.memory.rss + b.memory.rss,
            page_faults: a.memory.page_faults + b.memory.page_faults,
            major_page_faults: a.memory.major_page_faults + b.memory.major_page_faults,
            available: None,
        },
    };
    let zero = Usage { time: Timestamp::UNIX_EPOCH, cpu_ns: 0, memory: Memory::default() };
    let now = members.iter().map(|c| c.readings.now).fold(zero, add);
    let before = members.iter().map(|c| c.readings.before).try_fold(zero, |acc, b| b.map(|b| add(acc, b)));
    Readings { now, before: before.filter(|_| !members.is_empty()) }
}

/// `/metrics/resource` in the Prometheus text format, with upstream's metric names and labels
/// and each sample's reading time.
pub fn resource_metrics(s: &Snapshot) -> String {
    let mut out = String::new();
    let ms = |t: Timestamp| t.as_millisecond();
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64, Timestamp)]| {
        let _ = writeln!(out, "# HELP {name} [STABLE] {help}\n# TYPE {name} {kind}");
        for (labels, value, t) in samples {
            let _ = writeln!(out, "{name}{labels} {value} {}", ms(*t));
        }
    };
    let escape = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
    let apps: Vec<&ContainerStats> = s.containers.iter().filter(|c| c.container != docker::SANDBOX).collect();
    let container_labels = |c: &ContainerStats| {
        format!(
            "{{container=\"{}\",namespace=\"{}\",pod=\"{}\"}}",
            escape(&c.container),
            escape(&c.namespace),
            escape(&c.pod)
        )
    };
    let seconds = |ns: u64| ns as f64 / 1e9;
    family(
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the container in core-seconds",
        &apps
            .iter()
            .map(|c| (container_labels(c), seconds(c.readings.now.cpu_ns), c.readings.now.time))
            .collect::<Vec<_>>(),
    );
    family(
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set of the container in bytes",
        &apps
            .iter()
            .map(|c| (container_labels(c), c.readings.now.memory.working_set as f64, c.readings.now.time))
            .collect::<Vec<_>>(),
    );
    family(
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds",
        &apps
            .iter()
            .filter_map(|c| {
                let t = c.started_at?;
                Some((container_labels(c), t.as_second() as f64, c.readings.now.time))
            })
            .collect::<Vec<_>>(),
    );
    if let Some(n) = &s.node {
        family(
            "node_cpu_usage_seconds_total",
            "counter",
            "Cumulative cpu time consumed by the node in core-seconds",
            &[(String::new(), seconds(n.now.cpu_ns), n.now.time)],
        );
        family(
            "node_memory_working_set_bytes",
            "gauge",
            "Current working set of the node in bytes",
            &[(String::new(), n.now.memory.working_set as f64, n.now.time)],
        );
    }
    let mut pods: Vec<(&str, &str, &str)> =
        s.containers.iter().map(|c| (c.namespace.as_str(), c.pod.as_str(), c.pod_uid.as_str())).collect();
    pods.sort_unstable();
    pods.dedup();
    let pod_totals: Vec<(String, Readings)> = pods
        .iter()
        .map(|(ns, pod, uid)| {
            let members: Vec<&ContainerStats> = s.containers.iter().filter(|c| c.pod_uid == *uid).collect();
            (format!("{{namespace=\"{}\",pod=\"{}\"}}", escape(ns), escape(pod)), sum(&members))
        })
        .collect();
    family(
        "pod_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed by the pod in core-seconds",
        &pod_totals.iter().map(|(l, r)| (l.clone(), seconds(r.now.cpu_ns), r.now.time)).collect::<Vec<_>>(),
    );
    family(
        "pod_memory_working_set_bytes",
        "gauge",
        "Current working set of the pod in bytes",
        &pod_totals.iter().map(|(l, r)| (l.clone(), r.now.memory.working_set as f64, r.now.time)).collect::<Vec<_>>(),
    );
    let _ = writeln!(
        out,
        "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise\n\
         # TYPE resource_scrape_error gauge\nresource_scrape_error {}",
        u8::from(s.node.is_none())
    );
    out
}

/// The latest snapshot, shared between the collector and the HTTP server.
#[derive(Clone, Default)]
pub struct Stats(Arc<RwLock<Snapshot>>);

impl Stats {
    pub fn snapshot(&self) -> Snapshot {
        self.0.read().map(|s| s.clone()).unwrap_or_default()
    }

    fn replace(&self, s: Snapshot) {
        if let Ok(mut current) = self.0.write() {
            *current = s;
        }
    }
}

/// Reads usage every [`INTERVAL`] until `shutdown`.
pub async fn collect(docker: Docker, stats: Stats, shutdown: CancellationToken) {
    let mut inspect_cache = InspectCache::default();
    let mut tick = tokio::time::interval(INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = shutdown.cancelled() => return,
        }
        let previous = stats.snapshot();
        let next = read(&docker, &mut inspect_cache, &previous).await;
        stats.replace(next);
    }
}

async fn read(docker: &Docker, inspect_cache: &mut InspectCache, previous: &Snapshot) -> Snapshot {
    let now = Timestamp::now();
    let (cpu, boot) = parse_proc_stat(&tokio::fs::read_to_string("/proc/stat").await.unwrap_or_default());
    let memory = parse_meminfo(&tokio::fs::read_to_string("/proc/meminfo").await.unwrap_or_default());
    let node = cpu.zip(memory).map(|(cpu_ns, memory)| Readings {
        now: Usage { time: now, cpu_ns, memory },
        before: previous.node.map(|r| r.now),
    });
    let running = match docker.list(inspect_cache).await {
        Ok(list) => list.into_iter().filter(|o| o.state == Some(docker::State::Running)).collect::<Vec<_>>(),
        Err(e) => {
            tracing::debug!(error = %e, "listing containers for stats failed");
            Vec::new()
        }
    };
    let before: HashMap<(&str, &str), Usage> =
        previous.containers.iter().map(|c| ((c.pod_uid.as_str(), c.container.as_str()), c.readings.now)).collect();
    let containers = futures::stream::iter(running)
        .map(|o| async move {
            let reading = docker.stats(&o.id).await;
            (o, reading)
        })
        .buffer_unordered(4)
        .filter_map(|(o, reading)| {
            let before = before.get(&(o.pod_uid.as_str(), o.name.as_str())).copied();
            futures::future::ready(match reading {
                Ok(stats) => Some(ContainerStats {
                    readings: Readings { now: container_usage(&stats, Timestamp::now()), before },
                    started_at: o.started_at.as_deref().and_then(|t| t.parse().ok()),
                    namespace: o.namespace,
                    pod: o.pod_name,
                    pod_uid: o.pod_uid,
                    container: if o.kind == Some(Kind::Sandbox) { docker::SANDBOX.to_string() } else { o.name },
                }),
                Err(e) => {
                    tracing::debug!(container = %o.id, error = %e, "container stats failed");
                    None
                }
            })
        })
        .collect::<Vec<_>>()
        .await;
    Snapshot { node_start: boot, node, containers }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    fn usage(t: i64, cpu_ns: u64, working_set: u64) -> Usage {
        Usage { time: at(t), cpu_ns, memory: Memory { usage: working_set, working_set, ..Default::default() } }
    }

    fn container(pod: &str, name: &str, now: Usage, before: Option<Usage>) -> ContainerStats {
        ContainerStats {
            namespace: "default".into(),
            pod: pod.into(),
            pod_uid: format!("uid-{pod}"),
            container: name.into(),
            started_at: Some(at(1_000)),
            readings: Readings { now, before },
        }
    }

    #[test]
    fn proc_stat_counts_busy_ticks_and_the_boot_time() {
        let text = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 0 0\nbtime 1700000000\n";
        let (cpu, boot) = parse_proc_stat(text);
        assert_eq!(cpu, Some((100 + 5 + 50 + 3 + 2 + 1) * 10_000_000));
        assert_eq!(boot, Some(at(1_700_000_000)));
        assert_eq!(parse_proc_stat(""), (None, None));
    }

    #[test]
    fn meminfo_gives_usage_working_set_and_available() {
        let text =
            "MemTotal: 1000 kB\nMemFree: 200 kB\nMemAvailable: 600 kB\nInactive(file): 300 kB\nAnonPages: 250 kB\n";
        let m = parse_meminfo(text).expect("parsed");
        assert_eq!(
            (m.usage, m.working_set, m.rss, m.available),
            (800 * 1024, 500 * 1024, 250 * 1024, Some(600 * 1024))
        );
        assert_eq!(parse_meminfo("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn docker_stats_read_for_cgroup_v1_and_v2() {
        for (name, counters) in [
            ("v2", [("inactive_file", 30), ("anon", 50), ("pgfault", 7), ("pgmajfault", 1)]),
            ("v1", [("total_inactive_file", 30), ("rss", 50), ("pgfault", 7), ("pgmajfault", 1)]),
        ] {
            let stats: bollard::models::ContainerStatsResponse = serde_json::from_value(json!({
                "cpu_stats": {"cpu_usage": {"total_usage": 123}},
                "memory_stats": {"usage": 100, "stats": counters.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()},
            }))
            .expect("stats");
            let u = container_usage(&stats, at(5));
            assert_eq!(
                (u.cpu_ns, u.memory.working_set, u.memory.rss, u.memory.page_faults),
                (123, 70, 50, 7),
                "{name}"
            );
        }
    }

    #[test]
    fn rates_need_two_readings() {
        let r = Readings { now: usage(20, 3_000_000_000, 0), before: Some(usage(10, 1_000_000_000, 0)) };
        assert_eq!(r.nano_cores(), Some(200_000_000));
        assert_eq!(Readings { now: usage(20, 1, 0), before: None }.nano_cores(), None);
        assert_eq!(Readings { now: usage(20, 1, 0), before: Some(usage(20, 0, 0)) }.nano_cores(), None);
    }

    fn snapshot() -> Snapshot {
        Snapshot {
            node_start: Some(at(100)),
            node: Some(Readings {
                now: usage(20, 50_000_000_000, 4096),
                before: Some(usage(10, 40_000_000_000, 4000)),
            }),
            containers: vec![
                container("web", docker::SANDBOX, usage(20, 1_000, 100), Some(usage(10, 0, 100))),
                container("web", "app", usage(20, 2_000_000_000, 1000), Some(usage(10, 1_000_000_000, 900))),
                container("db", "pg", usage(20, 500_000_000, 2000), None),
            ],
        }
    }

    #[test]
    fn the_summary_has_the_node_and_pods_with_their_containers_and_totals() {
        let s = summary("n1", &snapshot());
        assert_eq!(s["node"]["nodeName"], "n1");
        assert_eq!(s["node"]["cpu"]["usageNanoCores"], 1_000_000_000);
        assert_eq!(s["node"]["memory"]["workingSetBytes"], 4096);
        let pods = s["pods"].as_array().expect("pods");
        assert_eq!(pods.len(), 2);
        let web = pods.iter().find(|p| p["podRef"]["name"] == "web").expect("web");
        assert_eq!(web["containers"].as_array().map(Vec::len), Some(1), "the sandbox is not a container");
        assert_eq!(web["containers"][0]["cpu"]["usageNanoCores"], 100_000_000);
        assert_eq!(web["memory"]["workingSetBytes"], 1100, "pod = containers + sandbox");
        assert_eq!(web["cpu"]["usageCoreNanoSeconds"], 2_000_001_000u64);
        assert_eq!(web["startTime"], "1970-01-01T00:16:40Z");
        let db = pods.iter().find(|p| p["podRef"]["name"] == "db").expect("db");
        assert!(db["cpu"].get("usageNanoCores").is_none(), "one reading has no rate");
    }

    #[test]
    fn resource_metrics_use_upstream_names_labels_and_timestamps() {
        let text = resource_metrics(&snapshot());
        for line in [
            "container_cpu_usage_seconds_total{container=\"app\",namespace=\"default\",pod=\"web\"} 2 20000",
            "container_memory_working_set_bytes{container=\"pg\",namespace=\"default\",pod=\"db\"} 2000 20000",
            "container_start_time_seconds{container=\"app\",namespace=\"default\",pod=\"web\"} 1000 20000",
            "node_cpu_usage_seconds_total 50 20000",
            "node_memory_working_set_bytes 4096 20000",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 1100 20000",
            "resource_scrape_error 0",
            "# TYPE pod_cpu_usage_seconds_total counter",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
        assert!(!text.contains("container=\"POD\""), "sandboxes are not containers");
    }
}

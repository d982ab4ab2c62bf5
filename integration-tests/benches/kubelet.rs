//! rk-kubelet benchmark: `cargo bench -p integration-tests --bench kubelet`.
//!
//! Pod startup latency: pods bound to the node with the image present, from the create call to
//! Running seen through a watch, one pod at a time and 50 at once. The denominator, measured in
//! the same run on the same dockerd: raw Docker create+start of a pause container and an app
//! container joined to it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use integration_tests::{BUSYBOX, Cluster, Dockerd, Kubelet};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const PODS: usize = 50;

fn pod(name: &str) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "startup"}},
        "spec": {"nodeName": "bench-node", "terminationGracePeriodSeconds": 0,
                 "containers": [{"name": "app", "image": BUSYBOX, "command": ["sleep", "3600"]}]}
    }))?)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((sorted.len().max(1) as f64 - 1.0) * p).round() as usize).copied().unwrap_or_default()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Raw Docker, through the same API client the kubelet uses: create+start a pause container on
/// the node's network, then an app container in its namespaces.
async fn raw_pair(docker: &kubelet::docker::Docker, i: usize) -> Result<Duration> {
    use kubelet::docker::ContainerSpec;
    let start = Instant::now();
    let pause = ContainerSpec {
        docker_name: format!("raw-pause-{i}"),
        image: "rkube/pause:1".into(),
        network_mode: "rk-bench-node".into(),
        ipc_mode: Some("shareable".into()),
        ..Default::default()
    };
    let id = docker.create(&pause).await?;
    docker.start(&id).await?;
    let app = ContainerSpec {
        docker_name: format!("raw-app-{i}"),
        image: BUSYBOX.into(),
        cmd: Some(vec!["sleep".into(), "3600".into()]),
        network_mode: format!("container:{id}"),
        ipc_mode: Some(format!("container:{id}")),
        ..Default::default()
    };
    let app_id = docker.create(&app).await?;
    docker.start(&app_id).await?;
    Ok(start.elapsed())
}

/// Creates `names` (all at once) and returns each one's create → Running latency.
async fn start_pods(pods: &Api<Pod>, names: &[String]) -> Result<Vec<Duration>> {
    let watch = pods.watch(&WatchParams::default().labels("bench=startup"), "0").await?;
    let mut watch = watch.boxed();
    let mut started: HashMap<String, Instant> = HashMap::new();
    for name in names {
        started.insert(name.clone(), Instant::now());
        pods.create(&PostParams::default(), &pod(name)?).await?;
    }
    let mut latencies = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while latencies.len() < names.len() {
        if Instant::now() > deadline {
            bail!("only {} of {} pods Running after 300 s", latencies.len(), names.len());
        }
        let Some(event) = tokio::time::timeout(Duration::from_secs(30), watch.next()).await? else {
            bail!("watch ended")
        };
        if let WatchEvent::Added(p) | WatchEvent::Modified(p) = event? {
            let name = p.metadata.name.clone().unwrap_or_default();
            let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if running && let Some(t0) = started.get(&name) {
                latencies.entry(name).or_insert_with(|| t0.elapsed());
            }
        }
    }
    let mut out: Vec<Duration> = latencies.into_values().collect();
    out.sort();
    Ok(out)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let c = Cluster::start().await?;
    let docker = Dockerd::start().await?;
    let mut kubelet = Kubelet::start(&c, &docker, "bench-node", "10.232.0.0/24").await?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, "default");
    // Warm-up: the node registers and the pause image is imported.
    start_pods(&pods, &["warm-0".to_string()]).await?;

    let raw_client = kubelet::docker::Docker::connect(&docker.socket.display().to_string(), "raw-bench").await?;
    let mut raw = Vec::new();
    for i in 0..PODS {
        raw.push(raw_pair(&raw_client, i).await?);
    }
    raw.sort();
    for i in 0..PODS {
        let _ = docker.cli(&["rm", "-f", &format!("raw-app-{i}"), &format!("raw-pause-{i}")]);
    }

    let mut one_by_one = Vec::new();
    for i in 0..PODS {
        one_by_one.extend(start_pods(&pods, &[format!("seq-{i}")]).await?);
    }
    one_by_one.sort();
    let burst_names: Vec<String> = (0..PODS).map(|i| format!("burst-{i}")).collect();
    let burst = start_pods(&pods, &burst_names).await?;

    let raw_p50 = percentile(&raw, 0.5);
    println!(
        "raw Docker create+start of a pause and an app container (Engine API, one pair at a time): p50 {:.0} ms, p99 {:.0} ms",
        ms(raw_p50),
        ms(percentile(&raw, 0.99))
    );
    for (what, lat) in [("one pod at a time", &one_by_one), (&format!("{PODS} pods at once") as &str, &burst)] {
        let p50 = percentile(lat, 0.5);
        println!(
            "pod startup, {what} (create call -> Running in a watch): p50 {:.0} ms = {:.2} x raw (asked <= 2), p99 {:.0} ms (asked <= 1000 ms)",
            ms(p50),
            p50.as_secs_f64() / raw_p50.as_secs_f64(),
            ms(percentile(lat, 0.99))
        );
    }
    // Stop the kubelet before its dockerd is emptied, so nothing is restarted behind it.
    kubelet.stop().await?;
    Ok(())
}

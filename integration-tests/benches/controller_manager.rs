//! rk-controller-manager benchmark: `cargo bench -p integration-tests --bench controller_manager`.
//!
//! Deployment fan-out: a 1,000-replica Deployment, from its create to the last of its pods seen
//! through a watch. The denominator, in the same run and against a fresh cluster: 1,000 pod
//! creates issued directly through rk-apiserver at the ReplicaSet controller's concurrency (64
//! writes in flight). Then a rolling update of a 100-replica Deployment (new image, 25% surge and
//! unavailability) to completion, with every pod marked Ready by this process as it appears, as
//! kubelets would.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use futures::StreamExt;
use integration_tests::{Cluster, ControllerManager};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const FAN_OUT: usize = 1_000;
const ROLLING: i32 = 100;
/// The ReplicaSet controller's pod writes in flight.
const CONCURRENCY: usize = 64;

fn pod_template(image: &str) -> serde_json::Value {
    json!({
        "metadata": {"labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "app", "image": image,
                                 "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}]},
    })
}

/// Raw pod creates/s through the API server, `CONCURRENCY` in flight.
async fn raw_creates() -> Result<f64> {
    let c = Cluster::start().await?;
    let pods: Api<Pod> = Api::namespaced(c.client().await?, "default");
    let template = pod_template("busybox:1.36");
    let began = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(0..FAN_OUT)
        .map(|i| {
            let (pods, mut pod) = (pods.clone(), template.clone());
            pod["metadata"]["name"] = format!("raw-{i}").into();
            async move {
                pods.create(&PostParams::default(), &serde_json::from_value(pod)?).await?;
                Ok(())
            }
        })
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    results.into_iter().collect::<Result<()>>()?;
    Ok(FAN_OUT as f64 / began.elapsed().as_secs_f64())
}

fn deployment(name: &str, replicas: usize, image: &str) -> Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "bench"}}, "template": pod_template(image)},
    }))?)
}

/// Seconds from a 1,000-replica Deployment's create to its last pod.
async fn fan_out() -> Result<f64> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    // Let the manager's caches fill before the clock starts.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let mut seen = HashSet::new();
    let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()));
    // Wait for the (empty) first list so no pod is missed.
    while let Some(event) = events.next().await {
        if matches!(event?, watcher::Event::InitDone) {
            break;
        }
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let began = Instant::now();
    deployments.create(&PostParams::default(), &deployment("fan", FAN_OUT, "busybox:1.36")?).await?;
    while seen.len() < FAN_OUT {
        let Some(event) = tokio::time::timeout(Duration::from_secs(120), events.next()).await? else {
            bail!("the pod watch ended");
        };
        if let watcher::Event::Apply(p) = event? {
            seen.extend(p.metadata.name);
        }
    }
    Ok(began.elapsed().as_secs_f64())
}

/// Seconds for a 100-replica rolling update, pods marked Ready as they appear.
async fn rolling_update() -> Result<f64> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    // The kubelets' part: every new pod becomes Running and Ready.
    let kubelets = {
        let pods = pods.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(pods.clone(), watcher::Config::default()));
            let mut ready = HashSet::new();
            while let Some(Ok(event)) = events.next().await {
                let (watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = event else { continue };
                let Some(name) = p.metadata.name.clone() else { continue };
                if p.metadata.deletion_timestamp.is_some() || !ready.insert(name.clone()) {
                    continue;
                }
                let pods = pods.clone();
                tokio::spawn(async move {
                    let now = k8s_openapi::jiff::Timestamp::now().to_string();
                    let status = json!({"status": {"phase": "Running", "conditions": [
                        {"type": "Ready", "status": "True", "lastTransitionTime": now}]}});
                    let _ = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&status)).await;
                });
            }
        })
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let replicas = usize::try_from(ROLLING)?;
    deployments.create(&PostParams::default(), &deployment("roll", replicas, "busybox:1.36")?).await?;
    wait_rolled_out(&deployments, "roll", 1).await?;
    let began = Instant::now();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "busybox:1.37"}]}}}});
    deployments.patch("roll", &PatchParams::default(), &Patch::Strategic(&patch)).await?;
    wait_rolled_out(&deployments, "roll", 2).await?;
    let took = began.elapsed().as_secs_f64();
    kubelets.abort();
    Ok(took)
}

/// Waits until the Deployment has seen generation `generation` and every replica is updated and
/// available, with no old pods left.
async fn wait_rolled_out(deployments: &Api<Deployment>, name: &str, generation: i64) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let d = deployments.get(name).await?;
        let s = d.status.unwrap_or_default();
        let want = d.spec.and_then(|s| s.replicas).unwrap_or(1);
        if s.observed_generation >= Some(generation)
            && s.updated_replicas == Some(want)
            && s.available_replicas == Some(want)
            && s.replicas == Some(want)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("deployment {name} not rolled out: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let raw = raw_creates().await?;
    let seconds = fan_out().await?;
    let rate = FAN_OUT as f64 / seconds;
    println!(
        "deployment fan-out: {FAN_OUT} pods in {seconds:.2} s = {rate:.0} pods/s; raw pod creates ({CONCURRENCY} in flight): {raw:.0}/s; ratio {:.2} (asked: >= 0.5)",
        rate / raw
    );
    let rolling = rolling_update().await?;
    println!(
        "rolling update of {ROLLING} replicas (25% surge, 25% unavailable), pods made ready at once: {rolling:.2} s"
    );
    Ok(())
}

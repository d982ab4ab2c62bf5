//! rk-apiserver benchmark: `cargo bench -p integration-tests --bench apiserver`.
//!
//! In one run, against one etcd: pod creates/s through the API server with 64 concurrent
//! requests, and raw etcd puts/s of the same bytes with 64 in flight (the denominator); LIST of
//! 10,000 pods; and the delivery latency of one event to 500 watchers. Each figure is printed
//! with what it is compared against.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use integration_tests::{ApiServer, Etcd, Pki};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const CONCURRENCY: usize = 64;
const CREATES: usize = 10_000;
const WATCHERS: usize = 500;
const EVENTS: usize = 20;

fn pod(name: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "labels": { "app": "bench", "tier": "web" } },
        "spec": { "containers": [{
            "name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"],
            "ports": [{ "containerPort": 8080 }],
            "resources": { "requests": { "cpu": "100m", "memory": "64Mi" }, "limits": { "memory": "128Mi" } },
            "env": [{ "name": "MODE", "value": "bench" }]
        }] }
    }))
    .expect("valid pod")
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let etcd = Etcd::start().await?;
    let pki = Pki::generate()?;
    let api = ApiServer::start(&etcd.endpoints(), &pki).await?;
    let client = api.client().await?;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");

    // Warm up connections and caches.
    futures::stream::iter((0..CONCURRENCY * 4).map(|i| {
        let pods = pods.clone();
        async move { pods.create(&PostParams::default(), &pod(&format!("warm-{i}"))).await }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;

    // Pod creates through the API server.
    let start = Instant::now();
    futures::stream::iter((0..CREATES).map(|i| {
        let pods = pods.clone();
        async move { pods.create(&PostParams::default(), &pod(&format!("p-{i:05}"))).await }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    let api_rate = CREATES as f64 / start.elapsed().as_secs_f64();

    // Raw etcd puts of the same bytes (a stored pod), same concurrency, same etcd.
    let mut kv = etcd.client().await?.kv_client();
    let sample = kv.get("/registry/core/pods/bench/p-00000", None).await?;
    let bytes: Arc<Vec<u8>> = Arc::new(sample.kvs().first().map(|k| k.value().to_vec()).unwrap_or_default());
    let start = Instant::now();
    futures::stream::iter((0..CREATES).map(|i| {
        let mut kv = kv.clone();
        let bytes = bytes.clone();
        async move { kv.put(format!("/rkube-bench/raw/{i:05}"), bytes.to_vec(), None).await }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    let raw_rate = CREATES as f64 / start.elapsed().as_secs_f64();
    let ratio = api_rate / raw_rate;
    println!(
        "pod creates: {api_rate:.0}/s through rk-apiserver ({CONCURRENCY} concurrent) / raw etcd puts {raw_rate:.0}/s \
         ({CONCURRENCY} in flight, {} bytes each) = {ratio:.2} (asked >= 0.40)",
        bytes.len()
    );

    // LIST of 10,000 pods (the bench namespace holds the 10,000 plus the warm-up pods).
    let mut list_times = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let list = pods.list(&ListParams::default()).await?;
        list_times.push(start.elapsed());
        count = list.items.len();
    }
    list_times.sort();
    let mut paged_times = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let mut params = ListParams::default().limit(500);
        loop {
            let page = pods.list(&params).await?;
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(c) => params = ListParams::default().limit(500).continue_token(&c),
                None => break,
            }
        }
        paged_times.push(start.elapsed());
    }
    paged_times.sort();
    println!(
        "LIST {count} pods: median {:.0} ms, best {:.0} ms (asked <= 300 ms); paged by 500 from etcd (kubectl's way): median {:.0} ms",
        ms(percentile(&list_times, 0.5)),
        ms(list_times[0]),
        ms(percentile(&paged_times, 0.5)),
    );

    // One event to 500 watchers.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "bench");
    let rv = cms.list(&ListParams::default()).await?.metadata.resource_version.unwrap_or_default();
    let mut streams = Vec::new();
    for _ in 0..WATCHERS {
        streams.push(cms.watch(&WatchParams::default().timeout(300), &rv).await?.boxed());
    }
    let mut latencies = Vec::new();
    for e in 0..EVENTS {
        let name = format!("event-{e}");
        let sent = Instant::now();
        cms.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": name}}))?).await?;
        let arrivals = futures::future::join_all(streams.iter_mut().map(|s| async move {
            loop {
                match tokio::time::timeout(Duration::from_secs(10), s.try_next()).await {
                    Ok(Ok(Some(WatchEvent::Added(_)))) => return Some(sent.elapsed()),
                    Ok(Ok(Some(_))) => continue,
                    _ => return None,
                }
            }
        }))
        .await;
        let missing = arrivals.iter().filter(|a| a.is_none()).count();
        if missing > 0 {
            anyhow::bail!("{missing} watchers did not see event {e}");
        }
        latencies.extend(arrivals.into_iter().flatten());
    }
    latencies.sort();
    println!(
        "event to {WATCHERS} watchers ({EVENTS} events, {} deliveries, from create call to arrival): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (asked p99 <= 100 ms)",
        latencies.len(),
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
    );
    api.stop().await;
    Ok(())
}

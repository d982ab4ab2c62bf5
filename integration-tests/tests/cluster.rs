//! Failure and concurrency: a 3-member etcd losing a member, two API servers allocating at once,
//! and many watchers sharing one etcd watch.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use integration_tests::{ApiServer, Etcd, Pki};
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).expect("configmap")
}

/// Creates the API server answered with a 5xx code, from its `/metrics`.
async fn failed_creates(client: &kube::Client) -> Result<u64> {
    let text = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    Ok(text
        .lines()
        .filter(|l| {
            l.starts_with("rk_apiserver_requests_total{") && l.contains("verb=\"create\"") && l.contains("code=\"5")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_keep_succeeding_when_an_etcd_member_stops() -> Result<()> {
    let mut etcd = Etcd::cluster(3).await?;
    let pki = Pki::generate()?;
    let api = ApiServer::start(&etcd.endpoints(), &pki).await?;
    let client = api.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    for i in 0..20 {
        cms.create(&PostParams::default(), &configmap(&format!("before-{i}"))).await?;
    }
    etcd.members[0].stop();
    // Until etcd has a leader again (if the stopped member led) a write may fail or time out; it
    // is retried, and no write may be lost.
    for tries in 0.. {
        match cms.create(&PostParams::default(), &configmap("after-0")).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 => break,
            Err(e) if tries < 20 => {
                eprintln!("retrying after-0: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
    // From then on nothing goes to the stopped member: no create fails, not even one that
    // kube-rs would quietly have sent again.
    let failed_before = failed_creates(&client).await?;
    for i in 1..50 {
        cms.create(&PostParams::default(), &configmap(&format!("after-{i}"))).await?;
    }
    assert_eq!(failed_creates(&client).await?, failed_before, "creates failed after writes had recovered");
    let names: HashSet<String> =
        cms.list(&ListParams::default()).await?.items.into_iter().filter_map(|c| c.metadata.name).collect();
    assert_eq!(names.len(), 70);
    etcd.members[0].restart()?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_servers_never_hand_out_the_same_ip_or_port() -> Result<()> {
    let etcd = Etcd::start().await?;
    let pki = Pki::generate()?;
    let a = ApiServer::start(&etcd.endpoints(), &pki).await?;
    let b = ApiServer::start(&etcd.endpoints(), &pki).await?;
    let clients = [a.client().await?, b.client().await?];
    let tasks = (0..500).map(|i| {
        let svcs: Api<Service> = Api::namespaced(clients[i % 2].clone(), "default");
        async move {
            let svc: Service = serde_json::from_value(json!({
                "metadata": {"name": format!("s{i}")},
                "spec": {"type": "NodePort", "selector": {"app": "x"}, "ports": [{"port": 80}]}
            }))?;
            svcs.create(&PostParams::default(), &svc).await.map_err(anyhow::Error::from)
        }
    });
    let created: Vec<Service> = futures::stream::iter(tasks).buffer_unordered(64).try_collect().await?;
    assert_eq!(created.len(), 500);
    let mut ips = HashSet::new();
    let mut ports = HashSet::new();
    for s in &created {
        let spec = s.spec.as_ref().expect("spec");
        assert!(ips.insert(spec.cluster_ip.clone().expect("clusterIP")), "duplicate IP");
        for p in spec.ports.iter().flatten() {
            assert!(ports.insert(p.node_port.expect("nodePort")), "duplicate nodePort");
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_watchers_share_one_etcd_watch() -> Result<()> {
    let etcd = Etcd::start().await?;
    let pki = Pki::generate()?;
    let api = ApiServer::start(&etcd.endpoints(), &pki).await?;
    let client = api.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = cms.list(&ListParams::default()).await?.metadata.resource_version.expect("rv");
    let mut streams = Vec::new();
    for _ in 0..500 {
        streams.push(cms.watch(&WatchParams::default().timeout(30), &rv).await?.boxed());
    }
    cms.create(&PostParams::default(), &configmap("hello")).await?;
    let arrivals = futures::future::join_all(streams.iter_mut().map(|s| async move {
        loop {
            match tokio::time::timeout(Duration::from_secs(20), s.try_next()).await {
                Ok(Ok(Some(WatchEvent::Added(c)))) => {
                    return c.metadata.name.as_deref() == Some("hello");
                }
                Ok(Ok(Some(WatchEvent::Bookmark(_)))) => continue,
                _ => return false,
            }
        }
    }))
    .await;
    assert_eq!(arrivals.iter().filter(|ok| **ok).count(), 500);
    // The API server holds one etcd watch per resource kind, whatever the number of API watches.
    let metrics = client.request_text(http::Request::get("/metrics").body(Vec::new())?).await?;
    let open: f64 = metrics
        .lines()
        .find(|l| l.starts_with("rk_apiserver_watchers{resource=\"configmaps\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    assert_eq!(open, 500.0);
    // etcd's own count of watchers: one per served resource kind, not one per API watch.
    let etcd_watchers = etcd_metric(&etcd.endpoints()[0], "etcd_debugging_mvcc_watcher_total")?;
    let kinds = api_types::registry::RESOURCES.len() as f64;
    assert!(etcd_watchers <= kinds, "etcd has {etcd_watchers} watchers for {kinds} resource kinds");
    Ok(())
}

/// Reads one metric from etcd's plain-HTTP `/metrics`.
fn etcd_metric(endpoint: &str, name: &str) -> Result<f64> {
    use std::io::{Read, Write};
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr)?;
    write!(conn, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut text = String::new();
    conn.read_to_string(&mut text)?;
    text.lines()
        .find(|l| l.starts_with(name) && !l.starts_with('#'))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("etcd metric {name} not found"))
}

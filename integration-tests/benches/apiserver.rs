//! rk-apiserver benchmark: `cargo bench -p integration-tests --bench apiserver`.
//!
//! In one run, against one etcd: pod creates/s through the API server with 64 concurrent
//! requests, and raw etcd puts/s of the same bytes with 64 in flight (the denominator); LIST of
//! 10,000 pods (consistent, from the watch cache, and paged); and the delivery latency of one event to 500 watchers. Each figure is printed
//! with what it is compared against.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::{StreamExt, TryStreamExt};
use integration_tests::{ApiServer, Etcd, Pki};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

/// The allocator rk-apiserver ships with (the server runs in this process).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

/// An HTTP/2 connection authenticated with the admin certificate: one connection carrying every
/// request, as client-go (and so kubectl) does.
async fn http2_connection(
    api: &ApiServer,
    pki: &Pki,
) -> Result<hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&pki.ca_cert)? {
        roots.add(cert?)?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(&pki.admin_cert)?.collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&pki.admin_key)?;
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(api.addr).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost")?.to_owned(), tcp)
        .await?;
    let (sender, conn) =
        hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), hyper_util::rt::TokioIo::new(tls))
            .await?;
    tokio::spawn(conn);
    Ok(sender)
}

/// Creates pods from prepared bodies over HTTP/2, `CONCURRENCY` at a time; returns creates/s.
async fn create_over_http2(api: &ApiServer, pki: &Pki, bodies: Vec<Vec<u8>>) -> Result<f64> {
    use http_body_util::BodyExt;
    let sender = http2_connection(api, pki).await?;
    let uri = format!("https://{}/api/v1/namespaces/bench-h2/pods", api.addr);
    let n = bodies.len();
    let start = Instant::now();
    futures::stream::iter(bodies.into_iter().map(|body| {
        let mut sender = sender.clone();
        let uri = uri.clone();
        async move {
            let req = http::Request::post(uri)
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
            sender.ready().await?;
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            anyhow::ensure!(status == http::StatusCode::CREATED, "create answered {status}");
            Ok::<_, anyhow::Error>(())
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    Ok(n as f64 / start.elapsed().as_secs_f64())
}

/// Raw etcd "create if absent" transactions (what an API create asks of etcd), optionally with
/// a watcher on their prefix draining events; returns (ops/s, etcd CPU per op).
async fn raw_txn_creates(etcd: &Etcd, bytes: Arc<Vec<u8>>, prefix: &str, watched: bool) -> Result<(f64, Duration)> {
    use etcd_client::{Compare, CompareOp, Txn, TxnOp, WatchOptions};
    let mut client = etcd.client().await?;
    let drain = if watched {
        let mut stream = client.watch(prefix, Some(WatchOptions::new().with_prefix())).await?;
        Some(tokio::spawn(async move { while let Ok(Some(_)) = stream.message().await {} }))
    } else {
        None
    };
    let kv = client.kv_client();
    let etcd_pid = etcd.members[0].pid().unwrap_or(0);
    let etcd0 = integration_tests::cpu_time(etcd_pid).unwrap_or_default();
    let start = Instant::now();
    futures::stream::iter((0..CREATES).map(|i| {
        let mut kv = kv.clone();
        let bytes = bytes.clone();
        let key = format!("{prefix}{i:05}");
        async move {
            let txn = Txn::new()
                .when(vec![Compare::version(key.as_str(), CompareOp::Equal, 0)])
                .and_then(vec![TxnOp::put(key.as_str(), bytes.to_vec(), None)])
                .or_else(vec![TxnOp::get(key.as_str(), None)]);
            kv.txn(txn).await
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    let rate = CREATES as f64 / start.elapsed().as_secs_f64();
    let cpu = (integration_tests::cpu_time(etcd_pid).unwrap_or_default() - etcd0) / CREATES as u32;
    if let Some(d) = drain {
        d.abort();
    }
    Ok((rate, cpu))
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
    for ns in ["bench", "bench-h2"] {
        namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}}))?).await?;
    }
    let pods: Api<Pod> = Api::namespaced(client.clone(), "bench");

    // Warm up connections and caches.
    futures::stream::iter((0..CONCURRENCY * 4).map(|i| {
        let pods = pods.clone();
        async move { pods.create(&PostParams::default(), &pod(&format!("warm-{i}"))).await }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;

    // Pod creates through the API server. Like the raw etcd side, the client sends bytes it
    // prepared beforehand and only checks the answer, so the figure is the server's.
    let bodies: Vec<Vec<u8>> =
        (0..CREATES).map(|i| serde_json::to_vec(&pod(&format!("p-{i:05}")))).collect::<Result<_, _>>()?;
    let etcd_pid = etcd.members[0].pid().unwrap_or(0);
    let cpu = |pid| integration_tests::cpu_time(pid).unwrap_or_default();
    let (me0, etcd0) = (cpu(std::process::id()), cpu(etcd_pid));
    let start = Instant::now();
    futures::stream::iter(bodies.into_iter().map(|body| {
        let client = client.clone();
        async move {
            let req = http::Request::post("/api/v1/namespaces/bench/pods")
                .header("content-type", "application/json")
                .body(body)?;
            client.request_text(req).await.map_err(anyhow::Error::from)
        }
    }))
    .buffer_unordered(CONCURRENCY)
    .try_collect::<Vec<_>>()
    .await?;
    let api_rate = CREATES as f64 / start.elapsed().as_secs_f64();
    let api_cpu = ((cpu(std::process::id()) - me0) / CREATES as u32, (cpu(etcd_pid) - etcd0) / CREATES as u32);

    // Raw etcd puts of the same bytes (a stored pod), same concurrency, same etcd.
    let mut kv = etcd.client().await?.kv_client();
    let sample = kv.get("/registry/core/pods/bench/p-00000", None).await?;
    let bytes: Arc<Vec<u8>> = Arc::new(sample.kvs().first().map(|k| k.value().to_vec()).unwrap_or_default());
    let (me0, etcd0) = (cpu(std::process::id()), cpu(etcd_pid));
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
    let raw_cpu = ((cpu(std::process::id()) - me0) / CREATES as u32, (cpu(etcd_pid) - etcd0) / CREATES as u32);
    let ratio = api_rate / raw_rate;
    let h2_bodies: Vec<Vec<u8>> =
        (0..CREATES).map(|i| serde_json::to_vec(&pod(&format!("h2-{i:05}")))).collect::<Result<_, _>>()?;
    let (me0, etcd0) = (cpu(std::process::id()), cpu(etcd_pid));
    let h2_rate = create_over_http2(&api, &pki, h2_bodies).await?;
    let h2_cpu = ((cpu(std::process::id()) - me0) / CREATES as u32, (cpu(etcd_pid) - etcd0) / CREATES as u32);
    println!(
        "pod creates over HTTP/2 (one connection, {CONCURRENCY} streams, as client-go and kubectl): {h2_rate:.0}/s / raw etcd puts {raw_rate:.0}/s = {:.2} (asked >= 0.40)",
        h2_rate / raw_rate
    );
    println!(
        "  CPU per operation: HTTP/2 create {:.0} µs in the bench process + {:.0} µs in etcd",
        h2_cpu.0.as_secs_f64() * 1e6,
        h2_cpu.1.as_secs_f64() * 1e6,
    );
    println!(
        "  CPU per operation: API create {:.0} µs in the bench process (client + rk-apiserver) + {:.0} µs in etcd; raw put {:.0} µs client + {:.0} µs etcd",
        api_cpu.0.as_secs_f64() * 1e6,
        api_cpu.1.as_secs_f64() * 1e6,
        raw_cpu.0.as_secs_f64() * 1e6,
        raw_cpu.1.as_secs_f64() * 1e6,
    );
    println!(
        "pod creates over HTTP/1.1 (kube-rs, {CONCURRENCY} concurrent): {api_rate:.0}/s through rk-apiserver / raw etcd puts {raw_rate:.0}/s \
         ({CONCURRENCY} in flight, {} bytes each) = {ratio:.2} (asked >= 0.40)",
        bytes.len()
    );

    let (txn_rate, txn_cpu) = raw_txn_creates(&etcd, bytes.clone(), "/rkube-bench/txn/", false).await?;
    let (watched_rate, watched_cpu) = raw_txn_creates(&etcd, bytes.clone(), "/rkube-bench/watched/", true).await?;
    println!(
        "  etcd alone: create-if-absent transactions {txn_rate:.0}/s ({:.0} µs etcd CPU each); with a prefix watcher {watched_rate:.0}/s ({:.0} µs)",
        txn_cpu.as_secs_f64() * 1e6,
        watched_cpu.as_secs_f64() * 1e6,
    );
    // LIST of the 10,000 pods (and the warm-up ones) in the bench namespace.
    let mut list_times = Vec::new();
    let mut count = 0;
    for _ in 0..5 {
        let start = Instant::now();
        let list = pods.list(&ListParams::default()).await?;
        list_times.push(start.elapsed());
        count = list.items.len();
    }
    list_times.sort();
    let mut cached_times = Vec::new();
    for _ in 0..5 {
        let start = Instant::now();
        pods.list(&ListParams { resource_version: Some("0".into()), ..Default::default() }).await?;
        cached_times.push(start.elapsed());
    }
    cached_times.sort();
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
        "LIST {count} pods (consistent: the watch cache, confirmed current by an etcd summary): median {:.0} ms, best {:.0} ms (asked <= 300 ms); from the watch cache (resourceVersion=0): median {:.0} ms; paged by 500 (kubectl's way): median {:.0} ms",
        ms(percentile(&list_times, 0.5)),
        ms(list_times[0]),
        ms(percentile(&cached_times, 0.5)),
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

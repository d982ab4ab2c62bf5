//! rk-proxy benchmark: `cargo bench -p integration-tests --bench proxy` (as root: it makes
//! network namespaces).
//!
//! In one run: the full sync of 1,000 / 5,000 / 10,000 Services × 3 endpoints into a fresh
//! network namespace, each next to `nft -f` of the same rendered text (the raw floor); with
//! 10,000 loaded, the time from one changed EndpointSlice to its rules in the kernel (the model,
//! the render, the difference and `nft -f`, as the daemon does it); and cluster DNS queries/s
//! over UDP from loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use hickory_proto::op::{Message, Query};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube_proxy::model::{Model, SERVICE_NAME_LABEL, service_ports};
use kube_proxy::nft::Nft;
use kube_proxy::render::{self, Settings};
use kube_proxy::sync::Syncer;
use serde_json::json;
use tokio_util::sync::CancellationToken;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A network namespace of the bench's own; deleted on drop.
struct Netns(String);

impl Netns {
    fn create(tag: &str) -> Result<Self> {
        let name = format!("rkbench-{}-{tag}", std::process::id());
        run(&["ip", "netns", "add", &name])?;
        Ok(Netns(name))
    }

    fn nft(&self) -> Vec<String> {
        ["ip", "netns", "exec", &self.0, "nft"].map(String::from).to_vec()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.0]).status();
    }
}

fn run(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// Service `i`: ClusterIP 10.96.x.y, port 80 → 8080, three endpoints, as API objects.
fn service(i: usize) -> Arc<Service> {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 96, 0, 0)) + 16 + i as u32);
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
            "spec": {"type": "ClusterIP", "clusterIP": ip.to_string(), "clusterIPs": [ip.to_string()],
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}
        }))
        .expect("a valid Service"),
    )
}

fn slice(i: usize, generation: u32) -> Arc<EndpointSlice> {
    let endpoints: Vec<_> = (0..3u32)
        .map(|e| {
            let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 244, 0, 0)) + (i as u32 * 3 + e + generation) % 60_000);
            json!({"addresses": [ip.to_string()], "conditions": {"ready": true}, "nodeName": if e == 0 { "a" } else { "b" }})
        })
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "bench", "name": format!("svc-{i}-x"), "labels": {SERVICE_NAME_LABEL: format!("svc-{i}")}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints
        }))
        .expect("a valid EndpointSlice"),
    )
}

fn settings() -> Settings {
    Settings {
        node_name: "a".into(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        masquerade_all: false,
        nodeport_addresses: vec!["192.168.50.2".into()],
        dns: Some((Ipv4Addr::new(10, 96, 0, 10), 10053)),
    }
}

fn syncer(ns: &Netns) -> Syncer {
    let mut registry = prometheus_client::registry::Registry::default();
    Syncer::new(Nft::new(&ns.nft()), kube_proxy::metrics::Metrics::new(&mut registry))
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Full sync of `n` Services, then `nft -f` of the same text into a second fresh namespace.
async fn full_sync(n: usize) -> Result<(Duration, Duration, usize)> {
    let services: Vec<_> = (0..n).map(service).collect();
    let slices: Vec<_> = (0..n).map(|i| slice(i, 0)).collect();
    let ns = Netns::create(&format!("full{n}"))?;
    let start = Instant::now();
    let ports = service_ports(&services, &slices);
    syncer(&ns).sync(&ports, None, &settings(), true).await?;
    let synced = start.elapsed();

    let text = render::full(&render::ruleset(&ports, &settings()), &settings());
    let raw_ns = Netns::create(&format!("raw{n}"))?;
    let file = std::env::temp_dir().join(format!("rkbench-{}-{n}.nft", std::process::id()));
    std::fs::write(&file, &text)?;
    let start = Instant::now();
    let path = file.display().to_string();
    run(&["ip", "netns", "exec", &raw_ns.0, "nft", "-f", &path])?;
    let raw = start.elapsed();
    std::fs::remove_file(&file)?;
    Ok((synced, raw, text.len()))
}

/// With `n` Services loaded, one EndpointSlice changed at a time: the changed Service's model,
/// the render and difference of what changed, and `nft -f`, as the daemon does it, `rounds` times.
async fn one_change(n: usize, rounds: usize) -> Result<Vec<Duration>> {
    let services: Vec<_> = (0..n).map(service).collect();
    let mut slices: Vec<_> = (0..n).map(|i| slice(i, 0)).collect();
    let ns = Netns::create("change")?;
    let mut syncer = syncer(&ns);
    let mut model = Model::new(&services, &slices);
    syncer.sync(model.ports(), None, &settings(), true).await?;
    let mut times = Vec::with_capacity(rounds);
    for round in 0..rounds {
        let i = (round * 7919) % n;
        slices[i] = slice(i, round as u32 + 1);
        let start = Instant::now();
        let key = ("bench".to_string(), format!("svc-{i}"));
        model.update(&key, Some(&services[i]), &slices);
        let changed = model.take_changed();
        let written = syncer.sync(model.ports(), Some(&changed), &settings(), false).await?;
        times.push(start.elapsed());
        if written != kube_proxy::sync::Written::Partial {
            bail!("one changed EndpointSlice gave a {written:?} sync");
        }
    }
    times.sort();
    Ok(times)
}

/// UDP queries/s answered for `<svc>.bench.svc.cluster.local` names with `n` Services known,
/// from `clients` concurrent clients on loopback, for `length`.
async fn dns(n: usize, clients: usize, length: Duration) -> Result<f64> {
    let services: Vec<_> = (0..n).map(service).collect();
    let slices: Vec<_> = (0..n).map(|i| slice(i, 0)).collect();
    let records = kube_proxy::dns::Records::build("cluster.local", &services, &slices);
    let (_keep, receiver) = tokio::sync::watch::channel(Arc::new(records));
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let server: SocketAddr = udp.local_addr()?;
    let stop = CancellationToken::new();
    tokio::spawn(kube_proxy::dns::serve(udp, tcp, receiver, Vec::new(), stop.clone()));
    let deadline = Instant::now() + length;
    let mut tasks = Vec::new();
    for c in 0..clients {
        tasks.push(tokio::spawn(async move {
            let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
            socket.connect(server).await?;
            let mut answered = 0u64;
            let mut buf = vec![0u8; 1500];
            let mut q = c;
            while Instant::now() < deadline {
                let mut message = Message::new();
                message.set_id(q as u16).set_recursion_desired(true);
                let name = Name::from_ascii(format!("svc-{}.bench.svc.cluster.local.", q % n))?;
                message.add_query(Query::query(name, RecordType::A));
                socket.send(&message.to_vec()?).await?;
                let len = tokio::time::timeout(Duration::from_secs(1), socket.recv(&mut buf)).await??;
                let reply = Message::from_vec(&buf[..len])?;
                if reply.answers().len() != 1 {
                    bail!("svc-{} got {} answers", q % n, reply.answers().len());
                }
                answered += 1;
                q += clients;
            }
            Ok::<u64, anyhow::Error>(answered)
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    stop.cancel();
    Ok(total as f64 / length.as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<()> {
    if !std::env::args().any(|a| a == "--bench") {
        return Ok(());
    }
    for n in [1_000, 5_000, 10_000] {
        let (synced, raw, bytes) = full_sync(n).await?;
        let asked = if n == 10_000 { " (asked <= 2 s)" } else { "" };
        println!(
            "full sync of {n} Services x 3 endpoints: {:.0} ms{asked}; raw nft -f of the same {} KiB: {:.0} ms; ratio {:.2}",
            ms(synced),
            bytes / 1024,
            ms(raw),
            synced.as_secs_f64() / raw.as_secs_f64(),
        );
    }
    let times = one_change(10_000, 100).await?;
    println!(
        "one EndpointSlice changed with 10000 Services loaded, to rules in the kernel (model, render, diff, nft -f): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (asked p99 <= 50 ms)",
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1]),
    );
    let rate = dns(10_000, 32, Duration::from_secs(3)).await?;
    println!("cluster DNS over UDP from loopback, 32 clients, 10000 Services: {rate:.0} queries/s (asked >= 10000)");
    Ok(())
}

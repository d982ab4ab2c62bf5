//! rk-proxy: Services and EndpointSlices rendered into one nftables table, and cluster DNS.
//!
//! A tour of the modules:
//! - [`model`]: Services and EndpointSlices distilled into [`model::ServicePort`]s.
//! - [`render`]: the table's contents as data, and `nft -f` text for a full sync or a difference
//!   (the layout is in the crate's README).
//! - [`nft`]: the edge to the kernel, one transaction per sync.
//! - [`sync`]: what to write (full or partial) and when (coalesced, with a periodic full resync).
//! - [`routes`]: routes to other nodes' podCIDRs, through rtnetlink.
//! - [`dns`]: the node's cluster DNS server.
//! - [`config`], [`metrics`], [`error`].
//!
//! [`run`] keeps kube-rs reflectors of Services, EndpointSlices and Nodes; once all three have
//! listed, every change marks its Service dirty and the next sync (at most one per
//! `--min-sync-period`) recomputes the dirty Services' ports, writes what changed, brings the pod
//! routes in step and refreshes the DNS records.

pub mod config;
pub mod dns;
mod error;
mod latency;
pub mod metrics;
pub mod model;
pub mod nft;
pub mod render;
pub mod routes;
pub mod sync;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use tokio_util::sync::CancellationToken;

pub use config::{Args, Config};
pub use error::Error;

use metrics::Metrics;
use sync::{Schedule, Syncer};

/// A change waiting longer than this (past the minimum interval) makes /healthz fail.
const STALE_AFTER: Duration = Duration::from_secs(60);

/// What the watches report to the sync loop: an object of `kind` changed (and with it the
/// Service named, for Services and EndpointSlices), or its list completed.
struct Change {
    kind: usize,
    listed: bool,
    service: Option<model::ServiceKey>,
}

/// More dirty Services than this at one sync, and the model is rebuilt from scratch.
const REBUILD_ABOVE: usize = 1000;

const SERVICES: usize = 0;
const SLICES: usize = 1;
const NODES: usize = 2;

/// Runs rk-proxy until `shutdown`.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let client = daemon::client_from_kubeconfig(&config.kubeconfig).await?;
    let mut registry = prometheus_client::registry::Registry::with_prefix("rk_proxy");
    let metrics = Metrics::new(&mut registry);
    // The oldest change not yet in the kernel, for /healthz.
    let waiting: Arc<Mutex<Option<Instant>>> = Arc::new(Mutex::new(None));
    if let Some(address) = config.health_address {
        let listener = daemon::health::bind(address).await?;
        tracing::info!(address = %listener.local_addr()?, "serving /healthz and /metrics");
        let (waiting, limit) = (waiting.clone(), config.min_sync_period + STALE_AFTER);
        let check: daemon::health::Check = Arc::new(move || match *waiting.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(since) if since.elapsed() > limit => {
                Err(format!("changes waiting {:.0}s to reach nftables", since.elapsed().as_secs_f64()))
            }
            _ => Ok(()),
        });
        tokio::spawn(daemon::health::serve_with_check(listener, Arc::new(registry), check, shutdown.clone()));
    }

    let (services, services_writer) = reflector::store::<Service>();
    let (slices, slices_writer) = reflector::store::<EndpointSlice>();
    let (nodes, nodes_writer) = reflector::store::<Node>();
    let changes = futures::stream::select_all([
        watch(Api::<Service>::all(client.clone()), services_writer, SERVICES),
        watch(Api::<EndpointSlice>::all(client.clone()), slices_writer, SLICES),
        watch(Api::<Node>::all(client), nodes_writer, NODES),
    ]);
    futures::pin_mut!(changes);

    let dns_records = match &config.dns {
        Some(dns) => Some(start_dns(dns, shutdown.clone()).await?),
        None => None,
    };
    let routes = if config.pod_routes { Some(routes::Routes::connect()?) } else { None };
    let mut syncer = Syncer::new(nft::Nft::new(&config.nft_command), metrics.clone());
    let mut model = model::Model::default();
    // Services whose ports may have changed since the last sync; a relist rebuilds them all.
    let mut dirty = std::collections::HashSet::new();
    let mut rebuild = true;
    let mut schedule = Schedule::new(config.min_sync_period, config.sync_period);
    let mut listed = [false; 3];
    let mut trigger_times = latency::TriggerTimes::new(k8s_openapi::jiff::Timestamp::now());
    // EndpointSlices changed since the last sync: their trigger times may be new.
    let mut slices_changed = false;
    loop {
        let wait = if listed.iter().all(|l| *l) { schedule.wait(Instant::now()) } else { Duration::from_secs(3600) };
        tokio::select! {
            change = changes.next() => {
                let Some(Change { kind, listed: done, service }) = change else { return Ok(()) };
                listed[kind] |= done;
                rebuild |= done && kind != NODES;
                dirty.extend(service);
                schedule.changed();
                waiting.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(Instant::now);
                slices_changed |= kind == SLICES;
                continue;
            }
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(()),
        }
        let now = Instant::now();
        let Some(full) = schedule.due(now) else { continue };
        let settings = settings(&config, &nodes);
        let (service_objects, slice_objects) = (services.state(), slices.state());
        // Which ports may have changed: those of the dirty Services, or all after a rebuild.
        let changed = if full || std::mem::take(&mut rebuild) || dirty.len() > REBUILD_ABOVE {
            model = model::Model::new(&service_objects, &slice_objects);
            dirty.clear();
            None
        } else {
            for key in dirty.drain() {
                let service = services.get(&reflector::ObjectRef::new(&key.1).within(&key.0));
                model.update(&key, service.as_deref(), &slice_objects);
            }
            Some(model.take_changed())
        };
        let result = syncer.sync(model.ports(), changed.as_ref(), &settings, full).await;
        schedule.synced(now, full, result.is_ok());
        match result {
            Ok(written) => {
                tracing::debug!(?written, took_ms = now.elapsed().as_millis() as u64, "synced");
                *waiting.lock().unwrap_or_else(|e| e.into_inner()) = None;
                if std::mem::take(&mut slices_changed) {
                    for latency in trigger_times.applied(&slice_objects, k8s_openapi::jiff::Timestamp::now()) {
                        metrics.network_programming.observe(latency.as_secs_f64());
                    }
                }
            }
            Err(e) => {
                metrics.sync_failures.inc();
                tracing::warn!(error = %e, "sync failed; the next one rewrites the whole table");
            }
        }
        if let Some(routes) = &routes {
            match routes.sync(&routes::wanted(&nodes.state(), &config.node_name)).await {
                Ok(plan) if !plan.is_empty() => tracing::info!(?plan, "pod routes changed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pod routes not in step; retried at the next sync"),
            }
            if let Some(cluster) = config.cluster_cidr.as_deref().and_then(routes::Prefix::parse) {
                match routes.hairpin(cluster).await {
                    Ok(0) => {}
                    Ok(ports) => tracing::debug!(ports, "hairpin mode switched on"),
                    Err(e) => tracing::warn!(error = %e, "hairpin mode not set; retried at the next sync"),
                }
            }
        }
        if let (Some(records), Some(dns)) = (&dns_records, &config.dns) {
            let built = dns::Records::build(&dns.domain, &service_objects, &slice_objects);
            records.send_replace(Arc::new(built));
        }
    }
}

/// A reflector feeding `writer`, reporting each change (never ending: errors back off and retry).
fn watch<K>(
    api: Api<K>,
    writer: reflector::store::Writer<K>,
    kind: usize,
) -> std::pin::Pin<Box<dyn futures::Stream<Item = Change> + Send>>
where
    K: kube::Resource<DynamicType = ()> + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    let events = watcher(api, watcher::Config::default()).default_backoff().reflect(writer);
    Box::pin(events.filter_map(move |event| async move {
        match event {
            Ok(watcher::Event::InitDone) => Some(Change { kind, listed: true, service: None }),
            Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => {
                Some(Change { kind, listed: false, service: service_of(kind, o.meta()) })
            }
            Ok(_) => None,
            Err(e) => {
                tracing::warn!(kind, error = %e, "watch failed; retrying");
                None
            }
        }
    }))
}

/// The Service a changed object bears on: itself, or the one an EndpointSlice is labelled for.
fn service_of(
    kind: usize,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<model::ServiceKey> {
    let name = match kind {
        SERVICES => meta.name.clone(),
        SLICES => meta.labels.as_ref().and_then(|l| l.get(model::SERVICE_NAME_LABEL)).cloned(),
        _ => None,
    }?;
    Some((meta.namespace.clone().unwrap_or_default(), name))
}

/// The rules' settings now: NodePort addresses default to this node's InternalIPs.
fn settings(config: &Config, nodes: &Store<Node>) -> render::Settings {
    let nodeport_addresses = if config.nodeport_addresses.is_empty() {
        let node = nodes.state().into_iter().find(|n| n.metadata.name.as_deref() == Some(config.node_name.as_str()));
        let addresses = node.and_then(|n| n.status.clone()).and_then(|s| s.addresses).unwrap_or_default();
        addresses
            .into_iter()
            .filter(|a| a.type_ == "InternalIP" && a.address.parse::<std::net::Ipv4Addr>().is_ok())
            .map(|a| a.address)
            .collect()
    } else {
        config.nodeport_addresses.clone()
    };
    render::Settings {
        node_name: config.node_name.clone(),
        cluster_cidr: config.cluster_cidr.clone(),
        masquerade_all: config.masquerade_all,
        nodeport_addresses,
        dns: config.dns.as_ref().map(|d| (d.service_ip, d.listen.port())),
    }
}

/// Binds the DNS listener and serves it; returns the handle through which records are replaced.
async fn start_dns(
    dns: &config::DnsConfig,
    shutdown: CancellationToken,
) -> Result<tokio::sync::watch::Sender<Arc<dns::Records>>, Error> {
    let udp = tokio::net::UdpSocket::bind(dns.listen).await?;
    let tcp = tokio::net::TcpListener::bind(dns.listen).await?;
    let resolv = std::fs::read_to_string(&dns.resolv_conf).unwrap_or_default();
    let upstream = dns::upstream_from_resolv_conf(&resolv, &[std::net::IpAddr::V4(dns.service_ip)]);
    let (records, receiver) = tokio::sync::watch::channel(Arc::new(dns::Records::build(&dns.domain, &[], &[])));
    tokio::spawn(dns::serve(udp, tcp, receiver, upstream, shutdown));
    Ok(records)
}

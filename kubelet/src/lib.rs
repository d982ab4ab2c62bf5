//! rk-kubelet: the node agent. Registers its Node, keeps a Lease heartbeat and makes the Docker
//! Engine match the Pods bound to it, level-triggered: every pass compares each pod with the
//! containers Docker has (found by labels), so a restarted kubelet adopts what runs.
//!
//! Module tour: `config` (flags), `docker` (the Docker Engine edge), `node` (Node status and
//! Lease), `pods` (the pod loop; `plan`, `status` and `spec` are pure).

pub use daemon::events;
pub mod config;
pub mod docker;
mod error;
pub mod exec;
pub mod node;
pub mod pods;
pub mod server;
pub mod stats;

use k8s_openapi::api::core::v1::Node;
use kube::api::Api;
use tokio_util::sync::CancellationToken;

pub use config::{Args, Config};
pub use error::Error;

/// Waits until the controller manager's node IPAM gives the Node a `spec.podCIDR` (`None` on
/// shutdown first).
async fn wait_for_pod_cidr(
    nodes: &Api<Node>,
    name: &str,
    shutdown: &CancellationToken,
) -> Result<Option<String>, Error> {
    tracing::info!(node = name, "no --pod-cidr: waiting for the Node's spec.podCIDR");
    loop {
        match nodes.get_opt(name).await {
            Ok(node) => {
                if let Some(cidr) = node.and_then(|n| n.spec?.pod_cidr) {
                    tracing::info!(node = name, pod_cidr = %cidr, "pod CIDR assigned");
                    return Ok(Some(cidr));
                }
            }
            Err(e) => tracing::warn!(node = name, error = %e, "reading the Node failed"),
        }
        tokio::select! {
            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}

/// Runs the kubelet until `shutdown` is cancelled.
pub async fn run(config: Config, shutdown: CancellationToken) -> Result<(), Error> {
    let client = daemon::client_from_kubeconfig(&config.kubeconfig).await?;
    let docker = docker::Docker::connect(&config.docker_socket, &config.node_name).await?;
    let mut facts = node::Facts::read(&config, docker.runtime_version().await?);
    let server = match &config.server {
        Some((address, tls)) => {
            let listener = server::bind(*address).await?;
            facts.kubelet_port = i32::from(listener.local_addr()?.port());
            Some((listener, tls.clone()))
        }
        None => None,
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let registered = node::register(&nodes, &facts, &config).await?;
    tracing::info!(node = %facts.name, ip = %facts.internal_ip, "node registered");
    let pod_cidr = match registered.spec.as_ref().and_then(|s| s.pod_cidr.clone()).or_else(|| config.pod_cidr.clone()) {
        Some(cidr) => cidr,
        None => match wait_for_pod_cidr(&nodes, &config.node_name, &shutdown).await? {
            Some(cidr) => cidr,
            None => return Ok(()),
        },
    };
    docker.ensure_network(&pods::spec::network_name(&config.node_name), &pod_cidr).await?;
    docker.ensure_pause_image(&config.pause_image).await?;
    let heartbeat = tokio::spawn(node::heartbeat(
        client.clone(),
        facts.clone(),
        registered.metadata.uid.clone().unwrap_or_default(),
        shutdown.clone(),
    ));
    let serving = server.map(|(listener, tls)| {
        let usage = stats::Stats::default();
        tokio::spawn(stats::collect(docker.clone(), usage.clone(), shutdown.clone()));
        let shared = server::Shared { docker: docker.clone(), node_name: config.node_name.clone(), stats: usage };
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            if let Err(e) = server::serve(listener, tls, shared, shutdown).await {
                tracing::error!(error = %e, "the kubelet's HTTPS server stopped");
            }
        })
    });
    let result = pods::run(client, docker, config, facts.internal_ip.clone(), shutdown).await;
    heartbeat.abort();
    if let Some(s) = serving {
        s.abort();
    }
    result
}

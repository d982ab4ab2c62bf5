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
    let pod_cidr = registered.spec.as_ref().and_then(|s| s.pod_cidr.clone()).or_else(|| config.pod_cidr.clone());
    let Some(pod_cidr) = pod_cidr else {
        return Err(Error::Config("no pod CIDR: the Node has no spec.podCIDR and --pod-cidr is not set".into()));
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

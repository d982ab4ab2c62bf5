//! What every rkube daemon shares, so each `main.rs` stays a few lines:
//! - [`shutdown_signal`]: SIGINT or SIGTERM.
//! - [`client_from_kubeconfig`]: a kube-rs client from a kubeconfig file.
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease, for daemons that run one
//!   active instance (scheduler, controller manager).
//! - [`health`]: the plain-HTTP `/healthz` and `/metrics` endpoint.
//! - [`events`]: core/v1 Events about pods, counted and rate-limited.

pub mod events;
pub mod health;
pub mod leader;

use std::path::Path;

/// What can go wrong in the shared pieces.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// A client for the cluster a kubeconfig file names (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let bad =
        |e: &dyn std::fmt::Display| Error::Kubeconfig { path: path.display().to_string(), message: e.to_string() };
    let kubeconfig = kube::config::Kubeconfig::read_from(path).map_err(|e| bad(&e))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| bad(&e))?;
    Ok(kube::Client::try_from(config)?)
}

//! What every rkube daemon shares, so each `main.rs` stays a few lines:
//! - [`init_logging`], [`shutdown_signal`] and [`cancel_on_signal`]: a daemon's `main`.
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

/// Logs to stdout, filtered by `RK_LOG` (`info` by default), coloured only on a terminal.
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RK_LOG").unwrap_or_else(|_| "info".into()))
        .init();
}

/// A token cancelled on SIGINT or SIGTERM (what a daemon's `run` takes as its shutdown).
pub fn cancel_on_signal() -> tokio_util::sync::CancellationToken {
    let token = tokio_util::sync::CancellationToken::new();
    let signal = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        signal.cancel();
    });
    token
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

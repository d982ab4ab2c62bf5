//! What every rkube daemon shares, so each `main.rs` stays a few lines:
//! - [`init_logging`], [`shutdown_signal`] and [`cancel_on_signal`]: a daemon's `main`.
//! - [`client_from_kubeconfig`]: a kube-rs client from a kubeconfig file.
//! - [`leader`]: leader election on a `coordination.k8s.io` Lease, for daemons that run one
//!   active instance (scheduler, controller manager).
//! - [`health`]: the plain-HTTP `/healthz` and `/metrics` endpoint.
//! - [`events`]: core/v1 Events, counted and rate-limited.
//! - [`parse_duration`]: Go-style durations (`15s`, `1m30s`, `500ms`) for flags.

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

/// Parses a Go-style duration as upstream flags take them: `15s`, `1m30s`, `500ms`, `2h`; a bare
/// number is seconds. Negative and zero durations are refused.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?} is not a duration like 15s or 1m30s");
    if let Ok(secs) = s.parse::<f64>() {
        return Some(secs)
            .filter(|v| v.is_finite() && *v > 0.0)
            .map(std::time::Duration::from_secs_f64)
            .ok_or_else(bad);
    }
    let (mut total, mut rest) = (0.0_f64, s);
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(bad)?;
        let value: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(total).filter(|v| *v > 0.0).map(std::time::Duration::from_secs_f64).ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::parse_duration;

    #[test]
    fn durations_read_the_go_way() {
        let cases = [
            ("15s", Some(Duration::from_secs(15))),
            ("15", Some(Duration::from_secs(15))),
            ("1m30s", Some(Duration::from_secs(90))),
            ("500ms", Some(Duration::from_millis(500))),
            ("2h", Some(Duration::from_secs(7200))),
            ("0.5s", Some(Duration::from_millis(500))),
            ("0s", None),
            ("-1s", None),
            ("10x", None),
            ("s", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).ok(), want, "{text}");
        }
    }
}

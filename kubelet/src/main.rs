//! rk-kubelet: parses flags, sets up logging and runs the node agent until SIGINT or SIGTERM.

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kubelet::Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RK_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let config = kubelet::Config::try_from(args)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        daemon::shutdown_signal().await;
        signal.cancel();
    });
    kubelet::run(config, shutdown).await?;
    Ok(())
}

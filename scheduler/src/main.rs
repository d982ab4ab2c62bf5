//! rk-scheduler: parses flags, sets up logging and schedules until SIGINT or SIGTERM (or until
//! the leader Lease is lost, so the supervisor restarts it as a standby).

use clap::Parser;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = scheduler::Args::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RK_LOG").unwrap_or_else(|_| "info".into()))
        .init();
    let config = scheduler::Config::try_from(args)?;
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        daemon::shutdown_signal().await;
        signal.cancel();
    });
    scheduler::run(config, shutdown).await?;
    Ok(())
}

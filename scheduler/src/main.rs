//! rk-scheduler: parses flags, sets up logging and schedules until SIGINT or SIGTERM (or until
//! the leader Lease is lost, so the supervisor restarts it as a standby).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = scheduler::Args::parse();
    daemon::init_logging();
    let config = scheduler::Config::try_from(args)?;
    scheduler::run(config, daemon::cancel_on_signal()).await?;
    Ok(())
}

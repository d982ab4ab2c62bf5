//! rk-controller-manager: parses flags, sets up logging and runs the controllers until SIGINT or
//! SIGTERM (or until the leader Lease is lost, so the supervisor restarts it as a standby).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = controller_manager::Args::parse();
    daemon::init_logging();
    let config = controller_manager::Config::try_from(args)?;
    controller_manager::run(config, daemon::cancel_on_signal()).await?;
    Ok(())
}

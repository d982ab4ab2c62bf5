//! rk-kubelet: parses flags, sets up logging and runs the node agent until SIGINT or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kubelet::Args::parse();
    daemon::init_logging();
    let config = kubelet::Config::try_from(args)?;
    kubelet::run(config, daemon::cancel_on_signal()).await?;
    Ok(())
}

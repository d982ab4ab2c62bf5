//! rk-proxy: parses flags, sets up logging and keeps this node's Services, routes and DNS in
//! step with the API until SIGINT or SIGTERM.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kube_proxy::Args::parse();
    daemon::init_logging();
    let config = kube_proxy::Config::try_from(args)?;
    kube_proxy::run(config, daemon::cancel_on_signal()).await?;
    Ok(())
}

//! rk-proxy's entry point, built with the tests so that a test can start a real rk-proxy
//! process inside a node's network namespace (`ip netns exec <node> node-proxy --kubeconfig …`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = kube_proxy::Args::parse();
    daemon::init_logging();
    let config = kube_proxy::Config::try_from(args)?;
    kube_proxy::run(config, daemon::cancel_on_signal()).await?;
    Ok(())
}

//! rk-apiserver: parses flags, sets up logging and runs the server until SIGINT or SIGTERM.

use clap::Parser;

/// glibc malloc was a fifth of the CPU profile under load (JSON values are allocation-heavy);
/// mimalloc's per-thread heaps cut that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = apiserver::Args::parse();
    daemon::init_logging();
    let config = apiserver::Config::try_from(args)?;
    apiserver::run(config, daemon::shutdown_signal()).await?;
    Ok(())
}

//! rk-apiserver: the Kubernetes API on a real etcd cluster.
//!
//! A tour of the modules, in the order a request meets them:
//! - [`server`]: HTTPS (rustls; HTTP/2 and HTTP/1.1), authentication ([`auth`]), body limit,
//!   routing; every error becomes a Kubernetes `Status` there ([`error`]).
//! - [`request`]: the method, path and query read into a verb, resource, namespace, name and
//!   subresource (upstream's RequestInfo).
//! - [`discovery`] and [`openapi`]: what kubectl reads to find and validate resources.
//! - [`api`]: the REST handlers — decoding with strict field validation, reads from the watch
//!   cache or etcd, writes through admission ([`admission`]: defaulting, validation, namespace
//!   lifecycle, Service IP/port allocation) into guarded etcd transactions.
//! - [`table`]: the `as=Table` representation kubectl prints.
//! - [`cache`]: one etcd watch per resource feeding every API watch and cached list.
//! - [`storage`]: etcd itself; [`object`]: keys and the stored encoding.
//! - [`bootstrap`]: the namespaces every cluster starts with; [`metrics`]: `/metrics`.
//!
//! [`run`] starts it all; tests start it in-process with [`server::Server::bind`] on port 0.

pub mod admission;
pub mod api;
pub mod auth;
pub mod bootstrap;
pub mod cache;
pub mod config;
pub mod discovery;
pub mod error;
pub mod kubelet;
pub mod metrics;
pub mod object;
pub mod openapi;
pub mod request;
pub mod server;
pub mod storage;
pub mod table;

pub use config::{Args, Config};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("configuration: {0}")]
    Config(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("binding {addr}: {source}")]
    Bind { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("connecting to etcd: {0}")]
    Storage(#[from] storage::StorageError),
}

/// Serves the API until `shutdown` completes.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let token = tokio_util::sync::CancellationToken::new();
    let server = server::Server::bind(config, token.clone()).await?;
    let stop = token.clone();
    tokio::spawn(async move {
        shutdown.await;
        stop.cancel();
    });
    server.run().await
}

//! rk-proxy's one error type.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("configuration: {0}")]
    Config(String),
    #[error(transparent)]
    Daemon(#[from] daemon::Error),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Nft(#[from] crate::nft::NftError),
    #[error(transparent)]
    Routes(#[from] crate::routes::RouteError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

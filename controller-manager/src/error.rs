//! The one error type of the crate.

/// What can stop the controller manager, or fail one reconcile (which is then retried).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Daemon(#[from] daemon::Error),
    #[error("API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("lost the leader lease")]
    LostLeadership,
    /// Some of a reconcile's writes failed; the first error, and how many.
    #[error("{failed} of {attempted} {what} failed; first: {first}")]
    Partial { what: &'static str, attempted: usize, failed: usize, first: kube::Error },
}

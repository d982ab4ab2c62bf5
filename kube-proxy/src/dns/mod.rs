//! Cluster DNS: answers `<svc>.<ns>.svc.<domain>` and friends from the cached Services and
//! EndpointSlices, as CoreDNS's kubernetes plugin does, and forwards every other name to the
//! node's own resolvers.
//!
//! - `records`: the zone as a map from lower-cased FQDN to records, built by [`Records::build`].
//! - `answer`: the pure [`answer()`] from (records, query) to a [`Reply`].
//! - `forward`: upstream exchanges and [`upstream_from_resolv_conf`].
//! - `server`: [`serve`], the UDP and TCP listeners.

mod answer;
mod forward;
mod records;
mod server;

use std::net::SocketAddr;

pub use answer::{Reply, answer};
pub use forward::upstream_from_resolv_conf;
pub use records::Records;
pub use server::serve;

/// What can fail while serving DNS. None of it stops the server: a failed query gets SERVFAIL or
/// is dropped, and the failure is logged.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("talking to upstream resolver {addr}")]
    Upstream {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("upstream resolver {addr} did not answer in time")]
    UpstreamTimeout { addr: SocketAddr },
    #[error("upstream resolver {addr} sent a reply to another query")]
    Mismatch { addr: SocketAddr },
    #[error("no upstream resolver answered")]
    NoUpstream,
    #[error("a DNS message of {len} bytes is too large for TCP")]
    TooLarge { len: usize },
    #[error("encoding a DNS reply")]
    Encode(#[source] hickory_proto::ProtoError),
    #[error("talking to DNS client {peer}")]
    Client {
        peer: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

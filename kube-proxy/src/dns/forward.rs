//! Forwarding queries for names outside the cluster domain to the node's own resolvers, and
//! finding those resolvers in resolv.conf.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tracing::debug;

use super::DnsError;

/// How long one upstream gets to answer before the next one is tried.
pub(crate) const FORWARD_TIMEOUT: Duration = Duration::from_secs(2);

/// The DNS port resolv.conf nameservers listen on.
const DNS_PORT: u16 = 53;

/// The largest DNS message, over TCP and (with EDNS) over UDP.
const MAX_MESSAGE: usize = u16::MAX as usize;

/// The node's own resolvers from resolv.conf text (nameserver lines, port 53), leaving out any
/// address in `exclude` (the cluster DNS IP itself) so queries never loop.
pub fn upstream_from_resolv_conf(text: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let mut upstream = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or_default();
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(nameserver_addr) else { continue };
        if exclude.contains(&addr.ip()) || upstream.contains(&addr) {
            continue;
        }
        upstream.push(addr);
    }
    upstream
}

/// A nameserver address: an IPv4 or IPv6 address, the latter with an optional numeric zone
/// (`fe80::1%2`); zones given as interface names cannot be resolved here and are skipped.
fn nameserver_addr(word: &str) -> Option<SocketAddr> {
    match word.split_once('%') {
        None => Some(SocketAddr::new(word.parse().ok()?, DNS_PORT)),
        Some((ip, zone)) => {
            let ip: Ipv6Addr = ip.parse().ok()?;
            Some(SocketAddr::V6(SocketAddrV6::new(ip, DNS_PORT, 0, zone.parse().ok()?)))
        }
    }
}

/// Sends `query` (a whole DNS message) to each upstream in turn over UDP and returns the first
/// reply, carrying the client's id. Each upstream sees a fresh random id and source port.
pub(crate) async fn forward_udp(query: &[u8], upstream: &[SocketAddr], timeout: Duration) -> Result<Vec<u8>, DnsError> {
    forward(query, upstream, timeout, Transport::Udp).await
}

/// Like [`forward_udp`], over TCP (for queries that came in over TCP).
pub(crate) async fn forward_tcp(query: &[u8], upstream: &[SocketAddr], timeout: Duration) -> Result<Vec<u8>, DnsError> {
    forward(query, upstream, timeout, Transport::Tcp).await
}

#[derive(Debug, Clone, Copy)]
enum Transport {
    Udp,
    Tcp,
}

async fn forward(
    query: &[u8],
    upstream: &[SocketAddr],
    timeout: Duration,
    transport: Transport,
) -> Result<Vec<u8>, DnsError> {
    let Some(client_id) = query.get(..2).map(|id| [id[0], id[1]]) else { return Err(DnsError::NoUpstream) };
    let mut outgoing = query.to_vec();
    for &addr in upstream {
        let id: u16 = rand::random();
        outgoing[..2].copy_from_slice(&id.to_be_bytes());
        let exchange = async {
            match transport {
                Transport::Udp => exchange_udp(&outgoing, addr, id).await,
                Transport::Tcp => exchange_tcp(&outgoing, addr, id).await,
            }
        };
        let error = match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok(mut reply)) => {
                reply[..2].copy_from_slice(&client_id);
                return Ok(reply);
            }
            Ok(Err(error)) => error,
            Err(_) => DnsError::UpstreamTimeout { addr },
        };
        debug!(upstream = %addr, ?transport, error = &error as &dyn std::error::Error, "forwarding failed");
    }
    Err(DnsError::NoUpstream)
}

/// One UDP exchange with `addr` from a fresh socket; replies with another id are ignored.
async fn exchange_udp(query: &[u8], addr: SocketAddr, id: u16) -> Result<Vec<u8>, DnsError> {
    let upstream_error = |source| DnsError::Upstream { addr, source };
    let local = match addr {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    };
    let socket = UdpSocket::bind(local).await.map_err(upstream_error)?;
    socket.connect(addr).await.map_err(upstream_error)?;
    socket.send(query).await.map_err(upstream_error)?;
    let mut buf = vec![0u8; MAX_MESSAGE];
    loop {
        let len = socket.recv(&mut buf).await.map_err(upstream_error)?;
        if is_reply_to(&buf[..len], id) {
            buf.truncate(len);
            return Ok(buf);
        }
        debug!(upstream = %addr, "ignored a UDP reply that does not match the query");
    }
}

/// One TCP exchange with `addr`: a length-prefixed query, a length-prefixed reply.
async fn exchange_tcp(query: &[u8], addr: SocketAddr, id: u16) -> Result<Vec<u8>, DnsError> {
    let upstream_error = |source| DnsError::Upstream { addr, source };
    let framed = frame(query)?;
    let mut stream = TcpStream::connect(addr).await.map_err(upstream_error)?;
    stream.write_all(&framed).await.map_err(upstream_error)?;
    let len = stream.read_u16().await.map_err(upstream_error)?;
    let mut reply = vec![0u8; usize::from(len)];
    stream.read_exact(&mut reply).await.map_err(upstream_error)?;
    if !is_reply_to(&reply, id) {
        return Err(DnsError::Mismatch { addr });
    }
    Ok(reply)
}

/// `message` with the two-byte length prefix DNS over TCP puts before every message.
pub(crate) fn frame(message: &[u8]) -> Result<Vec<u8>, DnsError> {
    let len = u16::try_from(message.len()).map_err(|_| DnsError::TooLarge { len: message.len() })?;
    let mut framed = Vec::with_capacity(message.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(message);
    Ok(framed)
}

/// Whether `bytes` start with a DNS response header carrying `id`.
fn is_reply_to(bytes: &[u8], id: u16) -> bool {
    bytes.len() >= 12 && bytes[..2] == id.to_be_bytes() && bytes[2] & 0x80 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_from_resolv_conf_takes_nameservers_except_excluded_ones() {
        let sock = |s: &str| s.parse::<SocketAddr>().expect("test address");
        let cluster_dns: IpAddr = "10.96.0.10".parse().expect("test IP");
        let cases: [(&str, Vec<SocketAddr>); 7] = [
            ("", vec![]),
            ("nameserver 8.8.8.8\n", vec![sock("8.8.8.8:53")]),
            (
                "# generated\nsearch default.svc.cluster.local svc.cluster.local\nnameserver 10.0.0.2\n\
                 nameserver 10.0.0.3 # second\noptions ndots:5\n",
                vec![sock("10.0.0.2:53"), sock("10.0.0.3:53")],
            ),
            ("nameserver 10.96.0.10\nnameserver 1.1.1.1\n", vec![sock("1.1.1.1:53")]),
            ("nameserver fd00::53\n\tnameserver   ::1  \n", vec![sock("[fd00::53]:53"), sock("[::1]:53")]),
            ("nameserver fe80::1%2\nnameserver fe80::1%eth0\n", vec![sock("[fe80::1%2]:53")]),
            (
                "nameserver not-an-ip\n;nameserver 9.9.9.9\nnameserver\nnameservers 4.4.4.4\nnameserver 1.1.1.1\n\
                 nameserver 1.1.1.1\n",
                vec![sock("1.1.1.1:53")],
            ),
        ];
        for (text, want) in cases {
            assert_eq!(upstream_from_resolv_conf(text, &[cluster_dns]), want, "{text:?}");
        }
    }

    #[test]
    fn replies_match_only_responses_with_the_same_id() {
        let mut reply = [0u8; 12];
        reply[..2].copy_from_slice(&0x1234u16.to_be_bytes());
        assert!(!is_reply_to(&reply, 0x1234), "QR not set");
        reply[2] = 0x80;
        assert!(is_reply_to(&reply, 0x1234));
        assert!(!is_reply_to(&reply, 0x1235));
        assert!(!is_reply_to(&reply[..11], 0x1234));
    }
}

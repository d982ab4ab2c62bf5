//! The DNS listeners: a few UDP receive loops sharing one socket, and a TCP acceptor with one task
//! per connection. Each query reads the current records once, gets its reply from [`answer()`],
//! and names outside the cluster domain are forwarded upstream in a task of their own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::DnsError;
use super::answer::{Reply, answer, encode, error_reply, reject_unparsable, udp_limit};
use super::forward::{FORWARD_TIMEOUT, forward_tcp, forward_udp, frame};
use super::records::Records;

/// Forwarded UDP queries in flight at once; past this, queries get SERVFAIL straight away.
const MAX_FORWARDS: usize = 1024;

/// Open TCP connections at once; past this, new ones are closed on accept.
const MAX_TCP_CONNECTIONS: usize = 256;

/// How long a TCP connection may sit idle (or take to send one query) before it is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most UDP receive loops, whatever the core count.
const MAX_UDP_LOOPS: usize = 8;

/// Pause after an accept or receive error, so a persistent one (out of file descriptors) does
/// not spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);

/// Serves DNS on `udp` and `tcp` until `shutdown`, reading the current records from `records`
/// (the proxy replaces the Arc when Services/EndpointSlices change) and forwarding other names
/// to `upstream` (UDP, with a timeout; TCP queries forwarded over TCP).
pub async fn serve(
    udp: UdpSocket,
    tcp: TcpListener,
    records: watch::Receiver<Arc<Records>>,
    upstream: Vec<SocketAddr>,
    shutdown: CancellationToken,
) {
    serve_with(udp, tcp, records, upstream, FORWARD_TIMEOUT, shutdown).await;
}

/// What every listener task shares.
struct Shared {
    upstream: Vec<SocketAddr>,
    forward_timeout: Duration,
    forwards: Arc<Semaphore>,
    shutdown: CancellationToken,
}

/// [`serve`] with the upstream timeout as a parameter (tests use a short one).
async fn serve_with(
    udp: UdpSocket,
    tcp: TcpListener,
    records: watch::Receiver<Arc<Records>>,
    upstream: Vec<SocketAddr>,
    forward_timeout: Duration,
    shutdown: CancellationToken,
) {
    let shared = Arc::new(Shared {
        upstream,
        forward_timeout,
        forwards: Arc::new(Semaphore::new(MAX_FORWARDS)),
        shutdown: shutdown.clone(),
    });
    info!(
        udp = ?udp.local_addr().ok(),
        tcp = ?tcp.local_addr().ok(),
        upstream = ?shared.upstream,
        "serving cluster DNS"
    );
    let udp = Arc::new(udp);
    let loops = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, MAX_UDP_LOOPS);
    let mut tasks = JoinSet::new();
    for _ in 0..loops {
        tasks.spawn(udp_loop(udp.clone(), records.clone(), shared.clone()));
    }
    tasks.spawn(tcp_accept_loop(tcp, records, shared));
    while let Some(joined) = tasks.join_next().await {
        if let Err(error) = joined {
            warn!(error = &error as &dyn std::error::Error, "a DNS listener task failed");
        }
    }
}

/// One UDP receive loop; several run on the same socket so every core can answer.
async fn udp_loop(socket: Arc<UdpSocket>, records: watch::Receiver<Arc<Records>>, shared: Arc<Shared>) {
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        let received = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return,
            received = socket.recv_from(&mut buf) => received,
        };
        match received {
            Ok((len, peer)) => handle_udp(&socket, &buf[..len], peer, &records, &shared).await,
            Err(error) => {
                debug!(error = &error as &dyn std::error::Error, "UDP receive failed");
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    }
}

/// Answers one UDP datagram: in place for the cluster domain, in a forwarding task otherwise.
async fn handle_udp(
    socket: &Arc<UdpSocket>,
    bytes: &[u8],
    peer: SocketAddr,
    records: &watch::Receiver<Arc<Records>>,
    shared: &Arc<Shared>,
) {
    let query = match Message::from_vec(bytes) {
        Ok(query) => query,
        Err(error) => {
            debug!(%peer, error = &error as &dyn std::error::Error, "unparsable DNS query");
            if let Some(reply) = reject_unparsable(bytes) {
                send_udp(socket, &reply, peer).await;
            }
            return;
        }
    };
    if query.message_type() == MessageType::Response {
        return; // Never answer an answer: that is how loops start.
    }
    let current = records.borrow().clone();
    match answer(&current, &query) {
        Reply::Answer(reply) => match encode(&reply, udp_limit(&query)) {
            Ok(wire) => send_udp(socket, &wire, peer).await,
            Err(error) => warn!(%peer, error = &DnsError::Encode(error) as &dyn std::error::Error, "reply dropped"),
        },
        Reply::Forward => {
            let Ok(permit) = shared.forwards.clone().try_acquire_owned() else {
                debug!(%peer, "too many forwarded queries in flight");
                send_udp_servfail(socket, &query, peer).await;
                return;
            };
            let (socket, shared, bytes) = (socket.clone(), shared.clone(), bytes.to_vec());
            tokio::spawn(async move {
                let _permit = permit;
                let forwarded = tokio::select! {
                    () = shared.shutdown.cancelled() => return,
                    forwarded = forward_udp(&bytes, &shared.upstream, shared.forward_timeout) => forwarded,
                };
                match forwarded {
                    Ok(reply) => send_udp(&socket, &reply, peer).await,
                    Err(error) => {
                        debug!(%peer, error = &error as &dyn std::error::Error, "forwarding failed");
                        send_udp_servfail(&socket, &query, peer).await;
                    }
                }
            });
        }
    }
}

async fn send_udp_servfail(socket: &UdpSocket, query: &Message, peer: SocketAddr) {
    match encode(&error_reply(query, ResponseCode::ServFail), udp_limit(query)) {
        Ok(wire) => send_udp(socket, &wire, peer).await,
        Err(error) => warn!(%peer, error = &DnsError::Encode(error) as &dyn std::error::Error, "SERVFAIL dropped"),
    }
}

async fn send_udp(socket: &UdpSocket, wire: &[u8], peer: SocketAddr) {
    if let Err(source) = socket.send_to(wire, peer).await {
        debug!(error = &DnsError::Client { peer, source } as &dyn std::error::Error, "UDP reply not sent");
    }
}

/// Accepts TCP connections until shutdown, each served by a task of its own.
async fn tcp_accept_loop(listener: TcpListener, records: watch::Receiver<Arc<Records>>, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if connections.len() >= MAX_TCP_CONNECTIONS {
                        debug!(%peer, "too many DNS TCP connections, closed");
                        continue;
                    }
                    connections.spawn(tcp_connection(stream, peer, records.clone(), shared.clone()));
                }
                Err(error) => {
                    debug!(error = &error as &dyn std::error::Error, "TCP accept failed");
                    tokio::time::sleep(ERROR_BACKOFF).await;
                }
            },
        }
    }
    connections.shutdown().await;
}

/// Serves the length-prefixed queries of one TCP connection, in order, until the client closes
/// it, idles past [`TCP_IDLE_TIMEOUT`], or sends something that cannot be answered.
async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    records: watch::Receiver<Arc<Records>>,
    shared: Arc<Shared>,
) {
    loop {
        let query = tokio::select! {
            () = shared.shutdown.cancelled() => return,
            query = tokio::time::timeout(TCP_IDLE_TIMEOUT, read_framed(&mut stream)) => query,
        };
        let query = match query {
            Ok(Ok(query)) => query,
            Ok(Err(_)) | Err(_) => return, // Closed, broken or idle: nothing to answer.
        };
        let Some(reply) = tcp_reply(&query, peer, &records, &shared).await else { return };
        let written = match frame(&reply) {
            Ok(framed) => tokio::time::timeout(TCP_IDLE_TIMEOUT, stream.write_all(&framed)).await,
            Err(error) => {
                warn!(%peer, error = &error as &dyn std::error::Error, "reply dropped");
                return;
            }
        };
        if !matches!(written, Ok(Ok(()))) {
            debug!(%peer, "TCP reply not sent");
            return;
        }
    }
}

async fn read_framed(stream: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let len = stream.read_u16().await?;
    let mut query = vec![0u8; usize::from(len)];
    stream.read_exact(&mut query).await?;
    Ok(query)
}

/// The reply to one query received over TCP, or `None` to close the connection.
async fn tcp_reply(
    bytes: &[u8],
    peer: SocketAddr,
    records: &watch::Receiver<Arc<Records>>,
    shared: &Shared,
) -> Option<Vec<u8>> {
    let query = match Message::from_vec(bytes) {
        Ok(query) => query,
        Err(error) => {
            debug!(%peer, error = &error as &dyn std::error::Error, "unparsable DNS query");
            return reject_unparsable(bytes);
        }
    };
    if query.message_type() == MessageType::Response {
        return None;
    }
    let current = records.borrow().clone();
    let reply = match answer(&current, &query) {
        Reply::Answer(reply) => reply,
        Reply::Forward => match forward_tcp(bytes, &shared.upstream, shared.forward_timeout).await {
            Ok(reply) => return Some(reply),
            Err(error) => {
                debug!(%peer, error = &error as &dyn std::error::Error, "forwarding failed");
                error_reply(&query, ResponseCode::ServFail)
            }
        },
    };
    match encode(&reply, usize::from(u16::MAX)) {
        Ok(wire) => Some(wire),
        Err(error) => {
            warn!(%peer, error = &DnsError::Encode(error) as &dyn std::error::Error, "reply dropped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Query;
    use hickory_proto::rr::rdata::A;
    use hickory_proto::rr::{Name, RData, Record, RecordType};
    use k8s_openapi::api::core::v1::Service;
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    use serde_json::json;

    use super::*;

    /// How long a test waits for any one reply before it fails.
    const TEST_WAIT: Duration = Duration::from_secs(5);

    /// The address the fake upstream answers for every name.
    const UPSTREAM_ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 7);

    fn records_with(services: &[serde_json::Value], slices: &[serde_json::Value]) -> Arc<Records> {
        let services: Vec<Arc<Service>> =
            services.iter().map(|s| Arc::new(serde_json::from_value(s.clone()).expect("test Service"))).collect();
        let slices: Vec<Arc<EndpointSlice>> =
            slices.iter().map(|s| Arc::new(serde_json::from_value(s.clone()).expect("test slice"))).collect();
        Arc::new(Records::build("cluster.local", &services, &slices))
    }

    fn web_service(ip: &str) -> serde_json::Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": {"clusterIP": ip}})
    }

    fn query(id: u16, name: &str, qtype: RecordType) -> Message {
        let mut query = Message::new();
        query
            .set_id(id)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).expect("test name"), qtype));
        query
    }

    fn a_records(reply: &Message) -> Vec<Ipv4Addr> {
        reply
            .answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    /// A running `serve` on loopback and the handles to talk to it.
    struct Server {
        udp: SocketAddr,
        tcp: SocketAddr,
        records: watch::Sender<Arc<Records>>,
        shutdown: CancellationToken,
        task: tokio::task::JoinHandle<()>,
    }

    async fn start(records: Arc<Records>, upstream: Vec<SocketAddr>, forward_timeout: Duration) -> Server {
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
        let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind TCP");
        let (udp_addr, tcp_addr) = (udp.local_addr().expect("UDP addr"), tcp.local_addr().expect("TCP addr"));
        let (sender, receiver) = watch::channel(records);
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve_with(udp, tcp, receiver, upstream, forward_timeout, shutdown.clone()));
        Server { udp: udp_addr, tcp: tcp_addr, records: sender, shutdown, task }
    }

    impl Server {
        async fn stop(self) {
            self.shutdown.cancel();
            tokio::time::timeout(TEST_WAIT, self.task).await.expect("serve stops").expect("serve task");
        }
    }

    async fn ask_udp_bytes(server: SocketAddr, bytes: &[u8]) -> Message {
        let client = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
        client.send_to(bytes, server).await.expect("send");
        let mut buf = vec![0u8; 65535];
        let (len, _) =
            tokio::time::timeout(TEST_WAIT, client.recv_from(&mut buf)).await.expect("a reply").expect("recv");
        Message::from_vec(&buf[..len]).expect("reply parses")
    }

    async fn ask_udp(server: SocketAddr, query: &Message) -> Message {
        ask_udp_bytes(server, &query.to_vec().expect("encode")).await
    }

    async fn ask_tcp(server: SocketAddr, query: &Message) -> Message {
        let mut stream = TcpStream::connect(server).await.expect("connect");
        stream.write_all(&frame(&query.to_vec().expect("encode")).expect("frame")).await.expect("write");
        let reply = tokio::time::timeout(TEST_WAIT, read_framed(&mut stream)).await.expect("a reply").expect("read");
        Message::from_vec(&reply).expect("reply parses")
    }

    /// A fake upstream resolver on loopback, UDP and TCP on the same port, that answers every
    /// A query with [`UPSTREAM_ANSWER`]; it runs until `stop` is cancelled.
    async fn fake_upstream(stop: CancellationToken) -> SocketAddr {
        let (udp, tcp) = bind_same_port().await;
        let addr = udp.local_addr().expect("upstream addr");
        let udp_stop = stop.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65535];
            loop {
                let (len, peer) = tokio::select! {
                    () = udp_stop.cancelled() => return,
                    received = udp.recv_from(&mut buf) => received.expect("upstream recv"),
                };
                let reply = upstream_reply(&buf[..len]);
                udp.send_to(&reply, peer).await.expect("upstream send");
            }
        });
        tokio::spawn(async move {
            loop {
                let mut stream = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = tcp.accept() => accepted.expect("upstream accept").0,
                };
                let query = read_framed(&mut stream).await.expect("upstream read");
                let reply = frame(&upstream_reply(&query)).expect("frame");
                stream.write_all(&reply).await.expect("upstream write");
            }
        });
        addr
    }

    /// A UDP socket and a TCP listener on one loopback port (retrying if the UDP port is taken).
    async fn bind_same_port() -> (UdpSocket, TcpListener) {
        for _ in 0..20 {
            let tcp = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream TCP");
            if let Ok(udp) = UdpSocket::bind(tcp.local_addr().expect("upstream addr")).await {
                return (udp, tcp);
            }
        }
        panic!("no loopback port free for both UDP and TCP");
    }

    fn upstream_reply(query: &[u8]) -> Vec<u8> {
        let query = Message::from_vec(query).expect("upstream got a DNS query");
        let mut reply = Message::new();
        reply.set_id(query.id()).set_message_type(MessageType::Response).set_recursion_available(true);
        for question in query.queries() {
            reply.add_query(question.clone());
            reply.add_answer(Record::from_rdata(question.name().clone(), 60, RData::A(A(UPSTREAM_ANSWER))));
        }
        reply.to_vec().expect("encode upstream reply")
    }

    #[tokio::test]
    async fn serve_answers_cluster_names_over_udp_and_tcp() {
        let server = start(records_with(&[web_service("10.96.0.20")], &[]), vec![], FORWARD_TIMEOUT).await;

        let reply = ask_udp(server.udp, &query(11, "web.default.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(reply.id(), 11);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 96, 0, 20)]);

        let reply = ask_tcp(server.tcp, &query(12, "web.default.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(reply.id(), 12);
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 96, 0, 20)]);

        let reply = ask_udp(server.udp, &query(13, "nope.default.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(reply.response_code(), ResponseCode::NXDomain);

        // New records are picked up by the next query.
        server.records.send_replace(records_with(&[web_service("10.96.0.99")], &[]));
        let reply = ask_udp(server.udp, &query(14, "web.default.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 96, 0, 99)]);

        server.stop().await;
    }

    #[tokio::test]
    async fn serve_forwards_other_names_upstream_with_the_client_id() {
        let upstream_stop = CancellationToken::new();
        let upstream = fake_upstream(upstream_stop.clone()).await;
        let server = start(records_with(&[], &[]), vec![upstream], FORWARD_TIMEOUT).await;

        let reply = ask_udp(server.udp, &query(0xbeef, "example.com.", RecordType::A)).await;
        assert_eq!(reply.id(), 0xbeef);
        assert_eq!(reply.response_code(), ResponseCode::NoError);
        assert_eq!(a_records(&reply), vec![UPSTREAM_ANSWER]);

        let reply = ask_tcp(server.tcp, &query(0xcafe, "example.org.", RecordType::A)).await;
        assert_eq!(reply.id(), 0xcafe);
        assert_eq!(a_records(&reply), vec![UPSTREAM_ANSWER]);

        server.stop().await;
        upstream_stop.cancel();
    }

    #[tokio::test]
    async fn serve_answers_servfail_when_no_upstream_answers() {
        // A bound socket that never replies: the forward times out.
        let silent = UdpSocket::bind("127.0.0.1:0").await.expect("bind silent upstream");
        let server =
            start(records_with(&[], &[]), vec![silent.local_addr().expect("addr")], Duration::from_millis(100)).await;
        let reply = ask_udp(server.udp, &query(21, "example.com.", RecordType::A)).await;
        assert_eq!(reply.id(), 21);
        assert_eq!(reply.response_code(), ResponseCode::ServFail);
        assert_eq!(reply.queries(), query(21, "example.com.", RecordType::A).queries());

        let server_without_upstream = start(records_with(&[], &[]), vec![], FORWARD_TIMEOUT).await;
        let reply = ask_udp(server_without_upstream.udp, &query(22, "example.com.", RecordType::A)).await;
        assert_eq!(reply.response_code(), ResponseCode::ServFail);

        server.stop().await;
        server_without_upstream.stop().await;
    }

    #[tokio::test]
    async fn serve_truncates_large_udp_replies_and_sends_them_whole_over_tcp() {
        let endpoints: Vec<serde_json::Value> =
            (0..60).map(|i| json!({"addresses": [format!("10.3.0.{i}")]})).collect();
        let records = records_with(
            &[json!({"metadata": {"name": "big", "namespace": "default"}, "spec": {"clusterIP": "None"}})],
            &[json!({
                "metadata": {"name": "big-1", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "big"}},
                "addressType": "IPv4",
                "endpoints": endpoints
            })],
        );
        let server = start(records, vec![], FORWARD_TIMEOUT).await;
        let question = query(31, "big.default.svc.cluster.local.", RecordType::A);

        let reply = ask_udp(server.udp, &question).await;
        assert!(reply.truncated());
        assert!(reply.answers().is_empty());

        let reply = ask_tcp(server.tcp, &question).await;
        assert!(!reply.truncated());
        assert_eq!(reply.answers().len(), 60);

        server.stop().await;
    }

    #[tokio::test]
    async fn serve_answers_garbage_with_formerr_and_keeps_serving() {
        let server = start(records_with(&[web_service("10.96.0.20")], &[]), vec![], FORWARD_TIMEOUT).await;

        // A header claiming one question, followed by a truncated name.
        let reply = ask_udp_bytes(server.udp, &[0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x3f, b'a']).await;
        assert_eq!(reply.id(), 0x1234);
        assert_eq!(reply.response_code(), ResponseCode::FormErr);

        let reply = ask_udp(server.udp, &query(41, "web.default.svc.cluster.local.", RecordType::A)).await;
        assert_eq!(a_records(&reply), vec![Ipv4Addr::new(10, 96, 0, 20)]);

        server.stop().await;
    }
}

//! The kubelet's HTTPS server (port 10250): container logs for the API server's `pods/log` and
//! the WebSocket exec behind `pods/exec`, and resource usage (`/stats/summary`,
//! `/metrics/resource`).
//! Only clients with a certificate signed by `--client-ca-file` get in (the API server presents
//! its kubelet client certificate).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::docker::{Docker, LogOptions};
use crate::exec::{ExecRequest, Protocol};
use crate::stats::{self, Stats};

type Body = UnsyncBoxBody<Bytes, std::io::Error>;

/// Serving certificate, key and the CA of the clients allowed in.
#[derive(Debug, Clone)]
pub struct Tls {
    pub cert_file: std::path::PathBuf,
    pub key_file: std::path::PathBuf,
    pub client_ca_file: std::path::PathBuf,
}

fn tls_config(tls: &Tls) -> Result<rustls::ServerConfig, Error> {
    let bad = |path: &std::path::Path, e: &dyn std::fmt::Display| Error::Config(format!("{}: {e}", path.display()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert_file)
        .map_err(|e| bad(&tls.cert_file, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&tls.cert_file, &e))?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file).map_err(|e| bad(&tls.key_file, &e))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&tls.client_ca_file).map_err(|e| bad(&tls.client_ca_file, &e))? {
        let cert = cert.map_err(|e| bad(&tls.client_ca_file, &e))?;
        roots.add(cert).map_err(|e| bad(&tls.client_ca_file, &e))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| Error::Config(e.to_string()))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .map_err(|e| Error::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Binds the listener (so the port is known for the Node's daemonEndpoints).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, Error> {
    Ok(TcpListener::bind(address).await?)
}

/// What the handlers read: the node's Docker, its name and the usage collector's snapshot.
#[derive(Clone)]
pub struct Shared {
    pub docker: Docker,
    pub node_name: String,
    pub stats: Stats,
}

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, tls: Tls, shared: Shared, shutdown: CancellationToken) -> Result<(), Error> {
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&tls)?));
    loop {
        let (tcp, peer) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return Ok(()),
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req| {
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(&shared, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended with an error") },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    typed(code, "text/plain", body.into())
}

fn typed(code: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Body> {
    let body = Full::new(body.into()).map_err(|never: Infallible| match never {}).boxed_unsync();
    Response::builder().status(code).header("content-type", content_type).body(body).unwrap_or_default()
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let docker = &shared.docker;
    let path: Vec<String> = req.uri().path().trim_matches('/').split('/').map(str::to_string).collect();
    let query: Vec<(String, String)> =
        form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    let get = req.method() == hyper::Method::GET;
    match path.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["healthz"] if get => text(StatusCode::OK, "ok"),
        ["stats", "summary"] if get => {
            let body = serde_json::to_vec(&stats::summary(&shared.node_name, &shared.stats.snapshot()));
            typed(StatusCode::OK, "application/json", body.unwrap_or_default())
        }
        ["metrics", "resource"] if get => {
            typed(StatusCode::OK, "text/plain; version=0.0.4", stats::resource_metrics(&shared.stats.snapshot()))
        }
        ["containerLogs", namespace, pod, container] if get => {
            let options = match LogOptions::from_query(&query) {
                Ok(o) => o,
                Err(e) => return text(StatusCode::BAD_REQUEST, e),
            };
            logs(docker, namespace, pod, container, options).await
        }
        ["exec", namespace, pod, container] if get || req.method() == hyper::Method::POST => {
            let (namespace, pod, container) = (namespace.to_string(), pod.to_string(), container.to_string());
            exec(docker, req, &query, &namespace, &pod, &container).await
        }
        ["healthz" | "containerLogs" | "exec" | "stats" | "metrics", ..] => {
            text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
}

/// Upgrades to the WebSocket remotecommand protocol and runs the command in the container. What
/// can be refused (bad query, no such container, not running) is refused before the upgrade, as
/// a plain HTTP error the API server hands back.
async fn exec(
    docker: &Docker,
    mut req: Request<Incoming>,
    query: &[(String, String)],
    namespace: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let request = match ExecRequest::from_query(query) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e),
    };
    let headers = req.headers();
    let websocket = headers
        .get(hyper::header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().eq_ignore_ascii_case("websocket")));
    if !websocket {
        return text(
            StatusCode::BAD_REQUEST,
            "exec needs a WebSocket upgrade (subprotocol v5.channel.k8s.io or v4.channel.k8s.io); SPDY is not served",
        );
    }
    let offered = headers.get_all(hyper::header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok());
    let Some(protocol) = Protocol::negotiate(offered) else {
        return text(
            StatusCode::BAD_REQUEST,
            "none of the offered WebSocket subprotocols is served; use v5.channel.k8s.io or v4.channel.k8s.io",
        );
    };
    let Some(key) = headers.get(hyper::header::SEC_WEBSOCKET_KEY) else {
        return text(StatusCode::BAD_REQUEST, "the WebSocket upgrade has no Sec-WebSocket-Key");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let id = match docker.find(namespace, pod, container, false).await {
        Ok(Some(id)) => id,
        Ok(None) => return text(StatusCode::NOT_FOUND, format!("container {container:?} in pod {pod:?} not found")),
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // Created now (so a stopped container is a plain error), started once the client is there.
    let exec_id = match docker.exec_create(&id, request.command.clone(), request.io).await {
        Ok(Some(exec_id)) => exec_id,
        Ok(None) => {
            return text(StatusCode::BAD_REQUEST, format!("container {container:?} in pod {pod:?} is not running"));
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    tracing::info!(namespace, pod, container, command = ?request.command, tty = request.io.tty, "exec");
    let upgrade = hyper::upgrade::on(&mut req);
    let docker = docker.clone();
    tokio::spawn(async move {
        match upgrade.await {
            Ok(upgraded) => {
                let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    tokio_tungstenite::tungstenite::protocol::Role::Server,
                    None,
                )
                .await;
                crate::exec::run(socket, docker, protocol, exec_id, request.io.tty).await;
            }
            Err(e) => tracing::debug!(error = %e, "exec upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "websocket")
        .header(hyper::header::SEC_WEBSOCKET_ACCEPT, accept)
        .header(hyper::header::SEC_WEBSOCKET_PROTOCOL, protocol.name())
        .body(Empty::new().map_err(|never: Infallible| match never {}).boxed_unsync())
        .unwrap_or_default()
}

async fn logs(docker: &Docker, namespace: &str, pod: &str, container: &str, options: LogOptions) -> Response<Body> {
    let id = match docker.find(namespace, pod, container, options.previous).await {
        Ok(Some(id)) => id,
        Ok(None) if options.previous => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("previous terminated container \"{container}\" in pod \"{pod}\" not found"),
            );
        }
        Ok(None) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("container \"{container}\" in pod \"{pod}\" is waiting to start"),
            );
        }
        Err(e) => return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // limitBytes: the stream ends once that many bytes went out, the last chunk cut to fit.
    let stream = docker.logs(&id, &options).scan(options.limit_bytes, |left, chunk| {
        let frame = match (chunk, *left) {
            (_, Some(0)) => None,
            (Ok(mut data), Some(l)) => {
                data.truncate(l.min(data.len() as u64) as usize);
                *left = Some(l - data.len() as u64);
                Some(Ok(Frame::data(data)))
            }
            (Ok(data), None) => Some(Ok(Frame::data(data))),
            (Err(e), _) => Some(Err(e)),
        };
        futures::future::ready(frame)
    });
    let body = BodyExt::boxed_unsync(StreamBody::new(stream));
    Response::builder().header("content-type", "text/plain").body(body).unwrap_or_default()
}

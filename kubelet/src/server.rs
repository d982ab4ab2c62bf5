//! The kubelet's HTTPS server (port 10250): container logs for the API server's `pods/log`.
//! Only clients with a certificate signed by `--client-ca-file` get in (the API server presents
//! its kubelet client certificate).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::Error;
use crate::docker::{Docker, LogOptions};

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

/// Serves until `shutdown`.
pub async fn serve(listener: TcpListener, tls: Tls, docker: Docker, shutdown: CancellationToken) -> Result<(), Error> {
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
        let docker = docker.clone();
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
                let docker = docker.clone();
                async move { Ok::<_, Infallible>(handle(&docker, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!(%peer, error = %e, "connection ended with an error") },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    let body = Full::new(Bytes::from(body.into())).map_err(|never: Infallible| match never {}).boxed_unsync();
    Response::builder().status(code).header("content-type", "text/plain").body(body).unwrap_or_default()
}

async fn handle(docker: &Docker, req: Request<Incoming>) -> Response<Body> {
    if req.method() != hyper::Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
    }
    let path: Vec<&str> = req.uri().path().trim_matches('/').split('/').collect();
    match path.as_slice() {
        ["healthz"] => text(StatusCode::OK, "ok"),
        ["containerLogs", namespace, pod, container] => {
            let query: Vec<(String, String)> =
                form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
            let options = match LogOptions::from_query(&query) {
                Ok(o) => o,
                Err(e) => return text(StatusCode::BAD_REQUEST, e),
            };
            logs(docker, namespace, pod, container, options).await
        }
        _ => text(StatusCode::NOT_FOUND, "404 page not found"),
    }
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

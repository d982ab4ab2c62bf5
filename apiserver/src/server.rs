//! HTTPS serving: TLS (rustls, HTTP/2 and HTTP/1.1), authentication, the body size limit, and
//! routing each request to discovery, OpenAPI, health or the resource handlers. Every error
//! leaves here as a `Status`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::{Api, Body, bytes_response, json_response};
use crate::auth::{Tokens, User, user_from_certificate};
use crate::error::Error;
use crate::request::{self, Path, Query, Target};
use crate::{RunError, discovery, openapi};

/// Shared by every connection.
pub struct State {
    pub api: Api,
    tokens: Tokens,
    address: String,
}

/// A bound server, ready to `run`.
pub struct Server {
    listener: TcpListener,
    tls: TlsAcceptor,
    state: Arc<State>,
    shutdown: CancellationToken,
}

fn read_pem_error(path: &std::path::Path, e: impl std::fmt::Display) -> RunError {
    RunError::Tls(format!("{}: {e}", path.display()))
}

fn tls_config(config: &crate::Config) -> Result<rustls::ServerConfig, RunError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&config.tls_cert_file)
        .map_err(|e| read_pem_error(&config.tls_cert_file, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_pem_error(&config.tls_cert_file, e))?;
    let key = PrivateKeyDer::from_pem_file(&config.tls_private_key_file)
        .map_err(|e| read_pem_error(&config.tls_private_key_file, e))?;
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| RunError::Tls(e.to_string()))?;
    let builder = match &config.client_ca_file {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).map_err(|e| read_pem_error(ca, e))? {
                roots.add(cert.map_err(|e| read_pem_error(ca, e))?).map_err(|e| read_pem_error(ca, e))?;
            }
            // Clients without a certificate may still use a bearer token.
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| RunError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut tls = builder.with_single_cert(certs, key).map_err(|e| RunError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tls)
}

impl Server {
    pub async fn bind(config: crate::Config, shutdown: CancellationToken) -> Result<Self, RunError> {
        let metrics = crate::metrics::Metrics::default();
        let store = crate::storage::Store::connect(&config.etcd_servers, &config.etcd_tls, metrics.clone()).await?;
        let allocator = crate::admission::allocator::Allocator::new(
            &config.etcd_prefix,
            &config.service_cluster_ip_range,
            &config.service_node_port_range,
        )
        .map_err(|e| RunError::Config(e.to_string()))?;
        let tokens = match &config.token_auth_file {
            Some(path) => Tokens::load(path).map_err(|e| RunError::Config(e.to_string()))?,
            None => Tokens::default(),
        };
        let tls = TlsAcceptor::from(Arc::new(tls_config(&config)?));
        let listener =
            TcpListener::bind(config.listen).await.map_err(|source| RunError::Bind { addr: config.listen, source })?;
        let address = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let api = Api::new(
            store,
            config.etcd_prefix.clone(),
            allocator,
            config.max_request_bytes,
            config.watch_cache_size,
            metrics,
            shutdown.clone(),
        )
        .with_kubelet(crate::kubelet::KubeletClient::new(&config.kubelet)?);
        Ok(Server { listener, tls, state: Arc::new(State { api, tokens, address }), shutdown })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the shutdown token is cancelled.
    pub async fn run(self) -> Result<(), RunError> {
        let state = self.state.clone();
        let bootstrap_shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = crate::bootstrap::run(&state.api) => {}
                () = bootstrap_shutdown.cancelled() => {}
            }
        });
        info!(address = %self.state.address, "serving");
        loop {
            let (tcp, peer) = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                () = self.shutdown.cancelled() => return Ok(()),
            };
            let _ = tcp.set_nodelay(true);
            let tls = self.tls.clone();
            let state = self.state.clone();
            let shutdown = self.shutdown.clone();
            tokio::spawn(async move {
                let stream = match tokio::time::timeout(Duration::from_secs(10), tls.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let user = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .and_then(|c| user_from_certificate(c));
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    let user = user.clone();
                    async move { Ok::<_, Infallible>(serve(&state, user, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                tokio::select! {
                    r = conn => if let Err(e) = r { debug!(%peer, error = %e, "connection ended with an error") },
                    () = shutdown.cancelled() => {}
                }
            });
        }
    }
}

/// Handles one request; never fails (errors become a Status).
async fn serve(state: &State, cert_user: Option<User>, req: Request<Incoming>) -> Response<Body> {
    let start = Instant::now();
    let method = req.method().clone();
    let query = Query::parse(req.uri().query());
    let target = request::parse(&method, req.uri().path(), &query);
    let (verb, resource) = match &target {
        Ok(Target::Resource(r)) => (r.verb.as_str(), r.resource.plural),
        _ => (method.as_str(), ""),
    };
    let result = route(state, cert_user, target, query, req).await;
    let resp = result.unwrap_or_else(|e| {
        if e.code() >= 500 {
            warn!(%method, error = %e, "request failed");
        }
        let mut resp =
            json_response(StatusCode::from_u16(e.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &e.to_status());
        if let crate::error::Error::TooManyRequests { retry_after_seconds, .. } = &e
            && *retry_after_seconds > 0
        {
            resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(*retry_after_seconds));
        }
        resp
    });
    let watch = verb == "watch" && resp.status().is_success();
    state.api.metrics.observe_request(
        verb.to_ascii_lowercase().as_str(),
        resource,
        resp.status().as_u16(),
        (!watch).then(|| start.elapsed()),
    );
    resp
}

async fn route(
    state: &State,
    cert_user: Option<User>,
    target: Result<Target, Error>,
    query: Query,
    req: Request<Incoming>,
) -> Result<Response<Body>, Error> {
    // Health needs no credentials (load balancers and kubelets probe it).
    if let Ok(Target::Path(p @ (Path::Healthz | Path::Livez | Path::Readyz))) = &target {
        return Ok(health(state, p).await);
    }
    let user = cert_user.or_else(|| {
        req.headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| state.tokens.authenticate(v))
    });
    let Some(user) = user else {
        return Err(Error::Unauthorized);
    };
    let ok = |v: serde_json::Value| Ok(json_response(StatusCode::OK, &v));
    match target? {
        Target::Path(path) => match path {
            Path::CoreVersions => ok(discovery::core_versions(&state.address)),
            Path::Groups => ok(discovery::groups()),
            Path::Group(g) => discovery::group(&g).map_or(Err(Error::PathNotFound), ok),
            Path::ResourceList(g, v) => discovery::resource_list(&g, &v).map_or(Err(Error::PathNotFound), ok),
            Path::Version => ok(discovery::version()),
            Path::Metrics => {
                Ok(bytes_response(StatusCode::OK, "text/plain; version=0.0.4", state.api.metrics.encode()))
            }
            Path::OpenApiV3 => Ok(bytes_response(
                StatusCode::OK,
                "application/json",
                openapi::documents(&state.api.definitions).index(),
            )),
            Path::OpenApiV3GroupVersion(g, v) => openapi::documents(&state.api.definitions)
                .group_version(&g, &v)
                .map(|b| bytes_response(StatusCode::OK, "application/json", b))
                .ok_or(Error::PathNotFound),
            Path::OpenApiV2 => {
                crate::api::representation(req.headers())?;
                Ok(bytes_response(StatusCode::OK, "application/json", openapi::documents(&state.api.definitions).v2()))
            }
            Path::ResourceMetrics(m) => state.api.resource_metrics(&m, &query).await,
            Path::Healthz | Path::Livez | Path::Readyz => unreachable!("answered above"),
        },
        Target::Resource(r) => {
            debug!(user = %user.name, verb = r.verb.as_str(), resource = r.resource.plural, namespace = ?r.namespace, name = ?r.name, "request");
            match r.subresource.as_deref() {
                Some("exec") => return state.api.pod_exec(&r, req).await,
                Some("proxy") if req.method() == http::Method::GET => {
                    return state.api.node_proxy(&r, req.uri().query()).await;
                }
                Some("proxy") => {
                    return Err(Error::MethodNotAllowed(format!(
                        "the server does not allow this method on the requested resource: {}",
                        req.method()
                    )));
                }
                _ => {}
            }
            let (parts, body) = req.into_parts();
            let body = read_body(body, state.api.max_body_bytes).await?;
            state.api.handle(&r, &query, &parts.headers, body).await
        }
    }
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Error> {
    match Limited::new(body, limit).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(Error::TooLarge(limit)),
        Err(e) => Err(Error::BadRequest(format!("reading the request body: {e}"))),
    }
}

async fn health(state: &State, path: &Path) -> Response<Body> {
    let ready = match path {
        Path::Readyz => {
            let etcd =
                tokio::time::timeout(Duration::from_secs(2), state.api.store.revision()).await.is_ok_and(|r| r.is_ok());
            etcd && state.api.synced()
        }
        _ => true,
    };
    if ready {
        bytes_response(StatusCode::OK, "text/plain", "ok")
    } else {
        bytes_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "not ready: etcd unreachable or caches not synced",
        )
    }
}

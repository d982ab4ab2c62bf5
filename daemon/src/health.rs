//! The plain-HTTP endpoint a daemon serves for its operator: `/healthz` (`ok`, or 503 when the
//! daemon's own check says it is stuck) and `/metrics` (the Prometheus text of its registry).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Binds `address` (port 0 picks one; see `local_addr`).
pub async fn bind(address: SocketAddr) -> Result<TcpListener, crate::Error> {
    Ok(TcpListener::bind(address).await?)
}

/// A daemon's own health: `Err(why)` makes `/healthz` answer 503 with the reason.
pub type Check = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Serves until `shutdown`; `/healthz` is always ok.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, shutdown: CancellationToken) {
    serve_with_check(listener, registry, Arc::new(|| Ok(())), shutdown).await;
}

/// Serves until `shutdown`, with `/healthz` (and `/livez`, `/readyz`) answering from `check`.
pub async fn serve_with_check(
    listener: TcpListener,
    registry: Arc<Registry>,
    check: Check,
    shutdown: CancellationToken,
) {
    loop {
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = shutdown.cancelled() => return,
        };
        let (registry, check) = (registry.clone(), check.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let response = answer(req.uri().path(), &registry, &*check);
                async move { Ok::<_, Infallible>(response) }
            });
            if let Err(e) =
                hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await
            {
                tracing::debug!(error = %e, "health connection ended");
            }
        });
    }
}

fn answer(
    path: &str,
    registry: &Registry,
    check: &(dyn Fn() -> Result<(), String> + Send + Sync),
) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match path {
        "/healthz" | "/livez" | "/readyz" => match check() {
            Ok(()) => (StatusCode::OK, "text/plain", "ok".to_string()),
            Err(why) => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", why),
        },
        "/metrics" => {
            let mut text = String::new();
            let _ = prometheus_client::encoding::text::encode(&mut text, registry);
            (StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", text)
        }
        _ => (StatusCode::NOT_FOUND, "text/plain", "404 page not found".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = code;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_and_metrics_paths_answer() {
        let mut registry = Registry::with_prefix("rk_test");
        let counter = prometheus_client::metrics::counter::Counter::<u64>::default();
        registry.register("things", "Things counted", counter.clone());
        counter.inc();
        let fine = || -> Result<(), String> { Ok(()) };
        assert_eq!(answer("/healthz", &registry, &fine).status(), StatusCode::OK);
        let stuck = || -> Result<(), String> { Err("last sync 5m ago".into()) };
        assert_eq!(answer("/healthz", &registry, &stuck).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(answer("/nope", &registry, &fine).status(), StatusCode::NOT_FOUND);
        let metrics = answer("/metrics", &registry, &fine);
        assert_eq!(metrics.status(), StatusCode::OK);
    }
}

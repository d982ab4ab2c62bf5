//! The REST handlers for resources: reads ([`read`]) are served from the watch cache or etcd,
//! writes ([`write`]) go through decoding, admission and a guarded etcd transaction.

pub mod connect;
pub mod decode;
pub mod read;
pub mod resource_metrics;
pub mod write;

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use api_types::schema::Definitions;

use api_types::registry::{self, ResourceInfo};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::admission::allocator::Allocator;
use crate::cache::Cache;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::request::{Query, ResourceRequest, Verb};
use crate::storage::Store;

pub type Body = BoxBody<Bytes, Infallible>;

/// Everything a resource handler needs; shared by all connections.
pub struct Api {
    pub store: Store,
    pub root: String,
    caches: HashMap<(&'static str, &'static str), Cache>,
    pub allocator: Allocator,
    pub max_body_bytes: usize,
    pub metrics: Metrics,
    pub definitions: Arc<Definitions>,
    /// Field tables for protobuf bodies, named after `definitions`.
    pub protobuf: api_types::protobuf::Decoder,
    /// Client for the kubelets' HTTPS servers (pods/log).
    pub kubelet: crate::kubelet::KubeletClient,
    pub shutdown: CancellationToken,
}

impl Api {
    pub fn new(
        store: Store,
        root: String,
        allocator: Allocator,
        max_body_bytes: usize,
        history: usize,
        metrics: Metrics,
        shutdown: CancellationToken,
    ) -> Self {
        let caches = registry::RESOURCES
            .iter()
            .map(|r| {
                let prefix = crate::object::resource_prefix(&root, r);
                ((r.group, r.plural), Cache::start(store.clone(), r, prefix, history, shutdown.clone()))
            })
            .collect();
        let definitions = Arc::new(crate::openapi::definitions());
        let protobuf = api_types::protobuf::Decoder::new(&definitions);
        let kubelet = crate::kubelet::KubeletClient::default();
        Api { store, root, caches, allocator, max_body_bytes, metrics, definitions, protobuf, kubelet, shutdown }
    }

    /// Sets the client for kubelets (pods/log).
    pub fn with_kubelet(mut self, kubelet: crate::kubelet::KubeletClient) -> Self {
        self.kubelet = kubelet;
        self
    }

    pub fn cache(&self, resource: &ResourceInfo) -> &Cache {
        // Every registry entry got a cache in `new`.
        &self.caches[&(resource.group, resource.plural)]
    }

    /// Whether every cache has loaded its first list.
    pub fn synced(&self) -> bool {
        self.caches.values().all(|c| c.revision() > 0)
    }

    pub fn key(&self, resource: &ResourceInfo, namespace: Option<&str>, name: &str) -> String {
        crate::object::key(&self.root, resource, namespace, name)
    }

    /// Serves one resource request.
    pub async fn handle(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        match req.verb {
            Verb::Get => self.get(req, query, headers).await,
            Verb::List => self.list(req, query, headers).await,
            Verb::Watch => self.watch(req, query, headers).await,
            Verb::Create => self.create(req, query, headers, body).await,
            Verb::Update => self.update(req, query, headers, body).await,
            Verb::Patch => self.patch(req, query, headers, body).await,
            Verb::Delete => self.delete(req, query, headers, body).await,
            Verb::DeleteCollection => self.delete_collection(req, query, headers, body).await,
        }
    }
}

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

pub fn json_response(code: StatusCode, value: &Value) -> Response<Body> {
    bytes_response(code, "application/json", serde_json::to_vec(value).unwrap_or_default())
}

pub fn bytes_response(code: StatusCode, content_type: &'static str, bytes: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(full(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Adds upstream-style `Warning` headers (`299 - "message"`).
pub fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let text = format!("299 - {:?}", w);
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append(http::header::WARNING, v);
        }
    }
    resp
}

/// What the client accepts: a Table (`as=Table`), metadata only (`as=PartialObjectMetadata`,
/// what metadata informers such as the garbage collector's ask for) or plain JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Representation {
    Object,
    Table,
    Metadata,
}

/// `obj` as a `meta.k8s.io/v1` PartialObjectMetadata: its metadata and nothing else.
pub fn partial_metadata(obj: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or_else(|| serde_json::json!({})),
    })
}

pub fn representation(headers: &HeaderMap) -> Result<Representation, Error> {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("*/*");
    let mut json_ok = false;
    for part in accept.split(',') {
        let mut params = part.split(';').map(str::trim);
        let media = params.next().unwrap_or("");
        let params: Vec<&str> = params.collect();
        if params.contains(&"as=Table") {
            if params.iter().any(|p| *p == "v=v1" || *p == "v=v1beta1") && params.contains(&"g=meta.k8s.io") {
                return Ok(Representation::Table);
            }
            continue;
        }
        if params.contains(&"as=PartialObjectMetadata") || params.contains(&"as=PartialObjectMetadataList") {
            if params.iter().any(|p| *p == "v=v1" || *p == "v=v1beta1") && params.contains(&"g=meta.k8s.io") {
                return Ok(Representation::Metadata);
            }
            continue;
        }
        if params.iter().any(|p| p.starts_with("as=")) {
            continue;
        }
        if matches!(media, "application/json" | "*/*" | "application/*" | "") {
            json_ok = true;
        }
    }
    if json_ok {
        Ok(Representation::Object)
    } else {
        Err(Error::NotAcceptable(
            "only the following media types are accepted: application/json, application/json;as=Table;v=v1;g=meta.k8s.io, application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::ACCEPT, HeaderValue::from_static(v));
        h
    }

    #[test]
    fn kubectl_get_asks_for_a_table() {
        let h = accept(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json",
        );
        assert_eq!(representation(&h).ok(), Some(Representation::Table));
    }

    #[test]
    fn protobuf_first_falls_back_to_json_and_protobuf_only_is_refused() {
        let h = accept("application/vnd.kubernetes.protobuf, application/json");
        assert_eq!(representation(&h).ok(), Some(Representation::Object));
        assert!(representation(&accept("application/vnd.kubernetes.protobuf")).is_err());
        let h = accept("application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json");
        assert_eq!(representation(&h).ok(), Some(Representation::Metadata));
        assert_eq!(representation(&HeaderMap::new()).ok(), Some(Representation::Object));
    }
}

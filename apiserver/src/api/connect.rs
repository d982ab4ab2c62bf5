//! What the API server hands to kubelets: `nodes/<name>/proxy/<path>` (GET), `pods/log`
//! (streamed through) and
//! `pods/exec` (an upgraded connection spliced to the kubelet's, byte for byte, so the WebSocket
//! handshake and frames are the kubelet's and the client's alone).

use http::{HeaderMap, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use super::{Api, Body};
use crate::error::Error;
use crate::object;
use crate::request::{Query, ResourceRequest};
use api_types::registry;

/// Request headers an upgrade needs at the kubelet (WebSocket, and SPDY's version header).
const UPGRADE_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Where a pod's container is served: the container's name and its kubelet's address and port.
struct Target {
    container: String,
    address: String,
    port: u16,
}

/// The container a request names, upstream's way: `container` must be one of the pod's; without
/// it, a pod with one container means that one.
/// A node's kubelet address (InternalIP) and port (`daemonEndpoints`).
pub(super) fn kubelet_endpoint(node: &Value) -> Result<(String, u16), Error> {
    let node_name = node.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
    let address = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| Error::BadRequest(format!("node {node_name} has no InternalIP")))?
        .to_string();
    let port = node.pointer("/status/daemonEndpoints/kubeletEndpoint/Port").and_then(Value::as_u64).unwrap_or(10250);
    let port = u16::try_from(port).map_err(|_| Error::Internal(format!("node {node_name}: bad kubelet port")))?;
    Ok((address, port))
}

fn choose_container(pod: &Value, name: &str, asked: Option<&str>) -> Result<String, Error> {
    let names = |field: &str| -> Vec<String> {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let (apps, inits) = (names("containers"), names("initContainers"));
    match asked {
        Some(c) if apps.iter().chain(&inits).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(Error::BadRequest(format!("container {c} is not valid for pod {name}"))),
        None if apps.len() == 1 => Ok(apps[0].clone()),
        None => Err(Error::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            apps.join(" ")
        ))),
    }
}

impl Api {
    /// A node's kubelet address, read from etcd.
    async fn kubelet_address(&self, node_name: &str) -> Result<(String, u16), Error> {
        let nodes = registry::by_plural("", "v1", "nodes").ok_or(Error::PathNotFound)?;
        let node_key = self.key(nodes, None, node_name);
        let node_kv = self.store.get(&node_key).await?.0.ok_or_else(|| Error::not_found(nodes, node_name))?;
        let node: Value = serde_json::from_slice(&node_kv.value).map_err(|e| Error::Internal(e.to_string()))?;
        kubelet_endpoint(&node)
    }

    /// `nodes/<name>/proxy/<path>`: a GET of `<path>` on the node's kubelet (its stats, logs,
    /// health), answered with the kubelet's status, type and body.
    pub async fn node_proxy(&self, req: &ResourceRequest, query: Option<&str>) -> Result<Response<Body>, Error> {
        let name = req.name.as_deref().unwrap_or_default();
        let (address, port) = self.kubelet_address(name).await?;
        let path = req.proxy_path.as_deref().unwrap_or("/");
        let uri = match query.filter(|q| !q.is_empty()) {
            Some(q) => format!("{path}?{q}"),
            None => path.to_string(),
        };
        let request = hyper::Request::get(uri).body(()).map_err(|e| Error::BadRequest(e.to_string()))?;
        let resp = self.kubelet.send(&address, port, request).await?;
        let (status, content_type) = (resp.status(), resp.headers().get(http::header::CONTENT_TYPE).cloned());
        let mut out = Response::builder().status(status);
        if let Some(t) = content_type {
            out = out.header(http::header::CONTENT_TYPE, t);
        }
        out.body(streamed(resp.into_body())).map_err(|e| Error::Internal(e.to_string()))
    }

    async fn kubelet_target(&self, req: &ResourceRequest, container: Option<&str>) -> Result<Target, Error> {
        let name = req.name.as_deref().unwrap_or_default();
        let key = self.key(req.resource, req.namespace.as_deref(), name);
        let kv = self.store.get(&key).await?.0.ok_or_else(|| Error::not_found(req.resource, name))?;
        let pod: Value = serde_json::from_slice(&kv.value).map_err(|e| Error::Internal(e.to_string()))?;
        let container = choose_container(&pod, name, container.filter(|c| !c.is_empty()))?;
        let node_name = object::str_at(&pod, "/spec/nodeName")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| Error::BadRequest(format!("pod {name} does not have a host assigned")))?;
        let (address, port) = self.kubelet_address(node_name).await?;
        Ok(Target { container, address, port })
    }

    /// `pods/log`: the pod's node, then its kubelet's `/containerLogs`, streamed through.
    pub(super) async fn pod_log(&self, req: &ResourceRequest, query: &Query) -> Result<Response<Body>, Error> {
        let (namespace, name) = (req.namespace.as_deref().unwrap_or_default(), req.name.as_deref().unwrap_or_default());
        let target = self.kubelet_target(req, query.value("container")).await?;
        let params = {
            let mut params = form_urlencoded::Serializer::new(String::new());
            for k in ["follow", "previous", "timestamps", "tailLines", "sinceSeconds", "limitBytes"] {
                if let Some(v) = query.value(k) {
                    params.append_pair(k, v);
                }
            }
            params.finish()
        };
        let path = format!("/containerLogs/{namespace}/{name}/{}?{params}", target.container);
        let request = hyper::Request::get(path).body(()).map_err(|e| Error::Internal(e.to_string()))?;
        let resp = self.kubelet.send(&target.address, target.port, request).await?;
        if !resp.status().is_success() {
            return Err(Error::BadRequest(crate::kubelet::error_text(resp).await));
        }
        let body = streamed(resp.into_body());
        Response::builder()
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(body)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    /// `pods/exec`: the upgrade request goes to the kubelet's `/exec` with the same upgrade
    /// headers; on its `101` the client gets the kubelet's answer and the two connections are
    /// spliced. A refusal before the upgrade comes back as a `Status`.
    pub async fn pod_exec(
        &self,
        req: &ResourceRequest,
        mut request: hyper::Request<Incoming>,
    ) -> Result<Response<Body>, Error> {
        if request.method() != http::Method::GET && request.method() != http::Method::POST {
            return Err(Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource: {}",
                request.method()
            )));
        }
        let (namespace, name) = (req.namespace.as_deref().unwrap_or_default(), req.name.as_deref().unwrap_or_default());
        let pairs: Vec<(String, String)> =
            form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
        let container = pairs.iter().rev().find(|(k, _)| k == "container").map(|(_, v)| v.as_str());
        let target = self.kubelet_target(req, container).await?;
        if !request.headers().contains_key(http::header::UPGRADE) {
            return Err(Error::BadRequest("Upgrade request required".into()));
        }
        let path = format!("/exec/{namespace}/{name}/{}?{}", target.container, kubelet_exec_query(&pairs));
        let mut forward = hyper::Request::builder().method(request.method().clone()).uri(path);
        for header in UPGRADE_HEADERS {
            for value in request.headers().get_all(header) {
                forward = forward.header(header, value);
            }
        }
        let forward = forward.body(()).map_err(|e| Error::Internal(e.to_string()))?;
        let mut resp = self.kubelet.send(&target.address, target.port, forward).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return Err(Error::BadRequest(crate::kubelet::error_text(resp).await));
        }
        let to_kubelet = hyper::upgrade::on(&mut resp);
        let to_client = hyper::upgrade::on(&mut request);
        tracing::debug!(namespace, pod = name, container = target.container, "exec upgraded");
        tokio::spawn(async move {
            let (client, kubelet) = match tokio::try_join!(to_client, to_kubelet) {
                Ok(both) => both,
                Err(e) => return tracing::debug!(error = %e, "exec upgrade did not complete"),
            };
            let (mut client, mut kubelet) = (TokioIo::new(client), TokioIo::new(kubelet));
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                tracing::debug!(error = %e, "exec connection ended");
            }
        });
        let mut out = Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
        if let Some(headers) = out.headers_mut() {
            *headers = upgrade_response_headers(resp.headers());
        }
        out.body(super::full(bytes::Bytes::new())).map_err(|e| Error::Internal(e.to_string()))
    }
}

/// A kubelet's response body passed on chunk by chunk as it arrives (`follow`); a broken kubelet
/// connection ends it.
fn streamed(body: Incoming) -> Body {
    let frames = futures::stream::unfold(body, |mut body| async move {
        match http_body_util::BodyExt::frame(&mut body).await {
            Some(Ok(frame)) => Some((Ok::<_, std::convert::Infallible>(frame), body)),
            _ => None,
        }
    });
    http_body_util::BodyExt::boxed(http_body_util::StreamBody::new(frames))
}

/// The kubelet's `/exec` query from the API's: upstream's kubelet names the streams `input`,
/// `output` and `error`; commands keep their order.
fn kubelet_exec_query(pairs: &[(String, String)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        let k = match k.as_str() {
            "command" | "tty" => k.as_str(),
            "stdin" => "input",
            "stdout" => "output",
            "stderr" => "error",
            _ => continue,
        };
        out.append_pair(k, v);
    }
    out.finish()
}

/// The kubelet's `101` headers, minus the hop-by-hop ones hyper sets itself.
fn upgrade_response_headers(kubelet: &HeaderMap) -> HeaderMap {
    let mut out = HeaderMap::new();
    for (name, value) in kubelet {
        if name != http::header::CONTENT_LENGTH && name != http::header::TRANSFER_ENCODING && name != http::header::DATE
        {
            out.append(name, value.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_are_chosen_as_upstream_does() {
        let pod =
            json!({"spec": {"containers": [{"name": "app"}, {"name": "side"}], "initContainers": [{"name": "init"}]}});
        let one = json!({"spec": {"containers": [{"name": "app"}]}});
        assert_eq!(choose_container(&one, "p", None).ok().as_deref(), Some("app"));
        assert_eq!(choose_container(&pod, "p", Some("init")).ok().as_deref(), Some("init"));
        let err = |r: Result<String, Error>| r.expect_err("refused").to_string();
        assert!(err(choose_container(&pod, "p", None)).contains("choose one of: [app side]"));
        assert!(err(choose_container(&pod, "p", Some("nope"))).contains("container nope is not valid for pod p"));
    }

    #[test]
    fn exec_queries_keep_command_order_and_rename_the_streams() {
        let pairs: Vec<(String, String)> = [
            ("command", "sh"),
            ("container", "app"),
            ("command", "-c"),
            ("command", "echo a&b"),
            ("stdin", "true"),
            ("stdout", "true"),
            ("tty", "true"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        assert_eq!(
            kubelet_exec_query(&pairs),
            "command=sh&command=-c&command=echo+a%26b&input=true&output=true&tty=true"
        );
    }
}

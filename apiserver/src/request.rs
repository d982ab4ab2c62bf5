//! What a request asks for, read from its method, path and query string (upstream calls this
//! the RequestInfo): a resource request with its verb, namespace, name and subresource, or one
//! of the non-resource paths.

use std::collections::HashMap;

use api_types::registry::{self, ResourceInfo};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

/// A request for a resource.
#[derive(Debug, Clone)]
pub struct ResourceRequest {
    pub verb: Verb,
    pub resource: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// What follows `proxy` in `nodes/<name>/proxy/<path>`, with its leading slash.
    pub proxy_path: Option<String>,
}

/// Everything that is not a resource request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Path {
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1`, `/apis/<group>/<version>`
    ResourceList(String, String),
    Version,
    Healthz,
    Livez,
    Readyz,
    Metrics,
    OpenApiV2,
    OpenApiV3,
    /// `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`
    OpenApiV3GroupVersion(String, String),
    /// A GET under `/apis/metrics.k8s.io/v1beta1/`.
    ResourceMetrics(MetricsRequest),
}

/// `metrics.k8s.io/v1beta1` nodes or pods (in a namespace, or all), one by name or a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsRequest {
    pub pods: bool,
    pub namespace: Option<String>,
    pub name: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Target {
    Resource(ResourceRequest),
    Path(Path),
}

/// Parses the method and path. Unknown paths are a 404 with upstream's message.
pub fn parse(method: &http::Method, path: &str, query: &Query) -> Result<Target, Error> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let plain = |p: Path| Ok(Target::Path(p));
    match segments.as_slice() {
        ["api"] => plain(Path::CoreVersions),
        ["apis"] => plain(Path::Groups),
        ["apis", group] => plain(Path::Group((*group).to_string())),
        ["api", version] => plain(Path::ResourceList(String::new(), (*version).to_string())),
        ["apis", group, version] => plain(Path::ResourceList((*group).to_string(), (*version).to_string())),
        ["version"] => plain(Path::Version),
        ["healthz", ..] => plain(Path::Healthz),
        ["livez", ..] => plain(Path::Livez),
        ["readyz", ..] => plain(Path::Readyz),
        ["metrics"] => plain(Path::Metrics),
        ["openapi", "v2"] => plain(Path::OpenApiV2),
        ["openapi", "v3"] => plain(Path::OpenApiV3),
        ["openapi", "v3", "api", version] => plain(Path::OpenApiV3GroupVersion(String::new(), (*version).to_string())),
        ["openapi", "v3", "apis", group, version] => {
            plain(Path::OpenApiV3GroupVersion((*group).to_string(), (*version).to_string()))
        }
        ["apis", "metrics.k8s.io", "v1beta1", rest @ ..] => metrics(method, rest),
        ["api", version, rest @ ..] => resource(method, "", version, rest, query),
        ["apis", group, version, rest @ ..] => resource(method, group, version, rest, query),
        _ => Err(Error::PathNotFound),
    }
}

fn metrics(method: &http::Method, rest: &[&str]) -> Result<Target, Error> {
    let owned = |s: &&str| (*s).to_string();
    let (pods, namespace, name) = match rest {
        ["nodes", name @ ..] if name.len() <= 1 => (false, None, name.first().map(owned)),
        ["pods"] => (true, None, None),
        ["namespaces", ns, "pods", name @ ..] if name.len() <= 1 => (true, Some(owned(ns)), name.first().map(owned)),
        _ => return Err(Error::PathNotFound),
    };
    if method != http::Method::GET {
        return Err(Error::MethodNotAllowed(format!(
            "the server does not allow this method on the requested resource: {method}"
        )));
    }
    Ok(Target::Path(Path::ResourceMetrics(MetricsRequest { pods, namespace, name })))
}

fn resource(method: &http::Method, group: &str, version: &str, rest: &[&str], query: &Query) -> Result<Target, Error> {
    // nodes/<name>/proxy/<anything>: the path goes to the node's kubelet as it is.
    if let (["nodes", name, "proxy", path @ ..], "", "v1") = (rest, group, version) {
        return Ok(Target::Resource(ResourceRequest {
            verb: if method == http::Method::GET { Verb::Get } else { Verb::Create },
            resource: registry::by_plural("", "v1", "nodes").ok_or(Error::PathNotFound)?,
            namespace: None,
            name: Some((*name).to_string()),
            subresource: Some("proxy".into()),
            proxy_path: Some(format!("/{}", path.join("/"))),
        }));
    }
    let lookup = |plural: &str| registry::by_plural(group, version, plural).ok_or(Error::PathNotFound);
    let (resource, namespace, name, subresource) = match rest {
        // /namespaces/<ns>/<plural>[/<name>[/<sub>]] for namespaced resources…
        ["namespaces", ns, plural, tail @ ..] if lookup(plural).is_ok_and(|r| r.namespaced) => {
            let (name, sub) = name_and_subresource(tail)?;
            (lookup(plural)?, Some((*ns).to_string()), name, sub)
        }
        // …and /namespaces/<name>[/<sub>] for the Namespace object itself.
        ["namespaces", tail @ ..] => {
            let (name, sub) = name_and_subresource(tail)?;
            (lookup("namespaces")?, None, name, sub)
        }
        [plural, tail @ ..] => {
            let (name, sub) = name_and_subresource(tail)?;
            (lookup(plural)?, None, name, sub)
        }
        [] => return Err(Error::PathNotFound),
    };
    if let Some(sub) = &subresource
        && !resource.has_subresource(sub)
    {
        return Err(Error::PathNotFound);
    }
    let verb = match (method.as_str(), name.is_some()) {
        ("GET", _) if query.is_watch() => Verb::Watch,
        ("GET", true) => Verb::Get,
        ("GET", false) => Verb::List,
        ("POST", _) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => Verb::Patch,
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        (m, _) => {
            return Err(Error::MethodNotAllowed(format!(
                "the server does not allow this method on the requested resource: {m}"
            )));
        }
    };
    Ok(Target::Resource(ResourceRequest { verb, resource, namespace, name, subresource, proxy_path: None }))
}

fn name_and_subresource(tail: &[&str]) -> Result<(Option<String>, Option<String>), Error> {
    match tail {
        [] => Ok((None, None)),
        [name] => Ok((Some((*name).to_string()), None)),
        [name, sub] => Ok((Some((*name).to_string()), Some((*sub).to_string()))),
        _ => Err(Error::PathNotFound),
    }
}

/// The query string, decoded. Later values of a repeated key win, except for `dryRun`.
#[derive(Debug, Clone, Default)]
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        Query(form_urlencoded::parse(query.unwrap_or_default().as_bytes()).into_owned().collect())
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// A present, non-empty value.
    pub fn value(&self, key: &str) -> Option<&str> {
        self.get(key).filter(|v| !v.is_empty())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn is_watch(&self) -> bool {
        self.flag("watch")
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, Error> {
        match self.value(key) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| Error::BadRequest(format!("invalid value {v:?} for query parameter {key}"))),
        }
    }

    pub fn dry_run(&self) -> Result<bool, Error> {
        match self.value("dryRun") {
            None => Ok(false),
            Some("All") => Ok(true),
            Some(other) => {
                Err(Error::BadRequest(format!("Invalid dry run value: {other:?}; supported values: \"All\"")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn resource_of(method: Method, path: &str, query: &str) -> ResourceRequest {
        match parse(&method, path, &Query::parse(Some(query))) {
            Ok(Target::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_paths_carry_namespace_name_and_subresource() {
        let r = resource_of(Method::PUT, "/api/v1/namespaces/default/pods/web/status", "");
        assert_eq!(r.verb, Verb::Update);
        assert_eq!(r.resource.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
    }

    #[test]
    fn resource_metrics_paths_name_nodes_or_pods() {
        let metrics = |method: Method, path: &str| match parse(&method, path, &Query::parse(None)) {
            Ok(Target::Path(Path::ResourceMetrics(m))) => Ok(m),
            Ok(other) => panic!("{path}: {other:?}"),
            Err(e) => Err(e.to_string()),
        };
        let m = |pods, ns: Option<&str>, name: Option<&str>| MetricsRequest {
            pods,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
        };
        let base = "/apis/metrics.k8s.io/v1beta1";
        assert_eq!(metrics(Method::GET, &format!("{base}/nodes")), Ok(m(false, None, None)));
        assert_eq!(metrics(Method::GET, &format!("{base}/nodes/n1")), Ok(m(false, None, Some("n1"))));
        assert_eq!(metrics(Method::GET, &format!("{base}/pods")), Ok(m(true, None, None)));
        assert_eq!(metrics(Method::GET, &format!("{base}/namespaces/a/pods/p")), Ok(m(true, Some("a"), Some("p"))));
        assert!(metrics(Method::DELETE, &format!("{base}/nodes/n1")).is_err());
        assert!(metrics(Method::GET, &format!("{base}/services")).is_err());
    }

    #[test]
    fn node_proxy_paths_keep_what_follows_proxy() {
        let r = resource_of(Method::GET, "/api/v1/nodes/n1/proxy/stats/summary", "");
        assert_eq!((r.name.as_deref(), r.subresource.as_deref()), (Some("n1"), Some("proxy")));
        assert_eq!(r.proxy_path.as_deref(), Some("/stats/summary"));
        let root = resource_of(Method::GET, "/api/v1/nodes/n1/proxy", "");
        assert_eq!(root.proxy_path.as_deref(), Some("/"));
    }

    #[test]
    fn namespace_objects_and_cluster_lists_are_told_apart() {
        let ns = resource_of(Method::GET, "/api/v1/namespaces/default", "");
        assert_eq!((ns.resource.plural, ns.name.as_deref(), ns.verb), ("namespaces", Some("default"), Verb::Get));
        let all = resource_of(Method::GET, "/apis/apps/v1/deployments", "watch=1");
        assert_eq!((all.resource.plural, all.namespace, all.verb), ("deployments", None, Verb::Watch));
        let nodes = resource_of(Method::DELETE, "/api/v1/nodes", "");
        assert_eq!(nodes.verb, Verb::DeleteCollection);
    }

    #[test]
    fn unknown_resources_and_subresources_are_not_found() {
        for path in ["/api/v1/widgets", "/apis/apps/v1/namespaces/a/deployments/b/log", "/nope"] {
            assert!(matches!(parse(&Method::GET, path, &Query::default()), Err(Error::PathNotFound)), "{path}");
        }
    }

    #[test]
    fn discovery_and_openapi_paths_parse() {
        let p = |s| match parse(&Method::GET, s, &Query::default()) {
            Ok(Target::Path(p)) => p,
            other => panic!("{s}: {other:?}"),
        };
        assert_eq!(p("/apis/apps/v1"), Path::ResourceList("apps".into(), "v1".into()));
        assert_eq!(p("/openapi/v3/api/v1"), Path::OpenApiV3GroupVersion(String::new(), "v1".into()));
        assert_eq!(p("/readyz/etcd"), Path::Readyz);
    }

    #[test]
    fn query_values_are_decoded() {
        let q = Query::parse(Some("labelSelector=app%3Dweb%2Ctier+in+%28a%29&limit=5&dryRun=All"));
        assert_eq!(q.get("labelSelector"), Some("app=web,tier in (a)"));
        assert_eq!(q.int("limit").ok().flatten(), Some(5));
        assert!(q.dry_run().unwrap_or(false));
        assert!(Query::parse(Some("limit=x")).int("limit").is_err());
    }
}

//! OpenAPI v3 (and v2 as JSON) generated from the k8s-openapi types.
//!
//! kubectl reads `/openapi/v3/<group-version>` to decide whether the server validates fields
//! itself (a PATCH operation tagged with the kind and taking `fieldValidation`), to compute the
//! three-way patch of `kubectl apply` (the patch-merge-key extensions), and for `kubectl
//! explain`. Each document carries the paths of its group version and the definitions they
//! reach; all are rendered once, on first use.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::OnceLock;

use api_types::registry::{self, KindVisitor, RESOURCES, ResourceInfo, group_version, visit_kind};
use api_types::schema::{Definitions, Root};
use bytes::Bytes;
use serde_json::{Map, Value, json};

/// The definitions of every served kind and the subresource kinds.
pub fn definitions() -> Definitions {
    struct AsRoot;
    impl KindVisitor for AsRoot {
        type Output = Root;
        fn visit<T>(self) -> Root
        where
            T: api_types::k8s_openapi::Resource + serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema,
        {
            Root::resource::<T>()
        }
    }
    let extra = [("autoscaling", "Scale"), ("", "Binding"), ("policy", "Eviction")];
    let roots: Vec<Root> = RESOURCES
        .iter()
        .map(|r| (r.group, r.kind))
        .chain(extra)
        .filter_map(|(g, k)| visit_kind(g, k, AsRoot))
        .collect();
    Definitions::from_roots(&roots)
}

/// Rendered documents: the v3 index and one document per group version.
pub struct Documents {
    index: Bytes,
    by_group_version: BTreeMap<String, Bytes>,
    v2: Bytes,
}

static DOCUMENTS: OnceLock<Documents> = OnceLock::new();

pub fn documents(defs: &Definitions) -> &'static Documents {
    DOCUMENTS.get_or_init(|| render(defs))
}

impl Documents {
    pub fn index(&self) -> Bytes {
        self.index.clone()
    }

    pub fn group_version(&self, group: &str, version: &str) -> Option<Bytes> {
        self.by_group_version.get(&path_key(group, version)).cloned()
    }

    pub fn v2(&self) -> Bytes {
        self.v2.clone()
    }
}

/// `api/v1` or `apis/<group>/<version>`.
fn path_key(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn render(defs: &Definitions) -> Documents {
    let components = defs.to_v3_components();
    let schemas = components["schemas"].as_object().cloned().unwrap_or_default();
    let mut by_group_version = BTreeMap::new();
    let mut index = Map::new();
    let mut all_paths = Map::new();
    for (group, version) in registry::group_versions() {
        let mut paths = Map::new();
        let mut roots = Vec::new();
        for r in RESOURCES.iter().filter(|r| r.group == group && r.version == version) {
            let Some(def) = defs.definition_name_for(r.group, r.version, r.kind) else {
                continue;
            };
            roots.push(def.to_string());
            add_paths(&mut paths, r, def);
        }
        let reachable = reachable(&schemas, &roots);
        let doc = json!({
            "openapi": "3.0.0",
            "info": { "title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBERNETES_MINOR) },
            "paths": paths.clone(),
            "components": { "schemas": reachable },
        });
        let bytes = Bytes::from(serde_json::to_vec(&doc).unwrap_or_default());
        let mut h = DefaultHasher::new();
        bytes.hash(&mut h);
        let key = path_key(group, version);
        index
            .insert(key.clone(), json!({ "serverRelativeURL": format!("/openapi/v3/{key}?hash={:016X}", h.finish()) }));
        by_group_version.insert(key, bytes);
        all_paths.extend(paths);
    }
    let v2 = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": format!("v1.{}.0", crate::discovery::KUBERNETES_MINOR) },
        "paths": {},
        "definitions": defs.to_v2_definitions(),
    });
    Documents {
        index: Bytes::from(serde_json::to_vec(&json!({ "paths": index })).unwrap_or_default()),
        by_group_version,
        v2: Bytes::from(serde_json::to_vec(&v2).unwrap_or_default()),
    }
}

/// The schemas reachable from `roots` through `$ref`s.
fn reachable(schemas: &Map<String, Value>, roots: &[String]) -> Map<String, Value> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = schemas.get(&name) {
            collect_refs(schema, &mut todo);
        }
    }
    seen.into_iter().filter_map(|n| schemas.get(&n).map(|s| (n, s.clone()))).collect()
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref").and_then(Value::as_str)
                && let Some(name) = r.rsplit('/').next()
            {
                out.push(name.to_string());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn schema_ref(def: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{def}") })
}

fn query_param(name: &str) -> Value {
    json!({ "name": name, "in": "query", "schema": { "type": "string", "uniqueItems": true } })
}

fn path_param(name: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string", "uniqueItems": true } })
}

/// The operations kubectl looks at for one resource.
fn add_paths(paths: &mut Map<String, Value>, r: &ResourceInfo, def: &str) {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}", group_version(r.group, r.version))
    };
    let collection = if r.namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", r.plural)
    } else {
        format!("{base}/{}", r.plural)
    };
    let item = format!("{collection}/{{name}}");
    let gvk = json!({ "group": r.group, "version": r.version, "kind": r.kind });
    let scope_params: Vec<Value> = if r.namespaced { vec![path_param("namespace")] } else { vec![] };
    let body = |media: &[&str]| {
        let content: Map<String, Value> =
            media.iter().map(|m| (m.to_string(), json!({ "schema": schema_ref(def) }))).collect();
        json!({ "content": content, "required": true })
    };
    let ok =
        json!({ "200": { "description": "OK", "content": { "application/json": { "schema": schema_ref(def) } } } });
    let op = |action: &str, id: &str, params: Vec<Value>, request: Option<Value>| {
        let mut o = json!({
            "operationId": format!("{action}{}{}", id, r.kind),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": params,
            "responses": ok,
        });
        if let Some(b) = request {
            o["requestBody"] = b;
        }
        o
    };
    let write_params = || vec![query_param("dryRun"), query_param("fieldManager"), query_param("fieldValidation")];
    let patch_media =
        ["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];
    let id = if r.namespaced { "Namespaced" } else { "" };
    paths.insert(
        collection.clone(),
        json!({
            "parameters": scope_params,
            "get": op("list", id, vec![query_param("labelSelector"), query_param("fieldSelector"), query_param("limit"), query_param("continue"), query_param("watch")], None),
            "post": op("post", id, write_params(), Some(body(&["application/json", "application/yaml"]))),
            "delete": op("deletecollection", id, vec![query_param("labelSelector")], None),
        }),
    );
    let mut item_params = scope_params.clone();
    item_params.insert(0, path_param("name"));
    paths.insert(
        item.clone(),
        json!({
            "parameters": item_params,
            "get": op("get", id, vec![], None),
            "put": op("put", id, write_params(), Some(body(&["application/json", "application/yaml"]))),
            "patch": op("patch", id, { let mut p = write_params(); p.push(query_param("force")); p }, Some(body(&patch_media))),
            "delete": op("delete", id, vec![query_param("gracePeriodSeconds"), query_param("propagationPolicy")], None),
        }),
    );
    if r.has_subresource("status") {
        paths.insert(
            format!("{item}/status"),
            json!({
                "parameters": item_params,
                "get": op("get", &format!("{id}Status"), vec![], None),
                "put": op("put", &format!("{id}Status"), write_params(), Some(body(&["application/json"]))),
                "patch": op("patch", &format!("{id}Status"), write_params(), Some(body(&patch_media))),
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_operations_advertise_field_validation_for_each_kind() {
        let defs = definitions();
        let docs = documents(&defs);
        let apps: Value = serde_json::from_slice(&docs.group_version("apps", "v1").expect("apps/v1")).expect("json");
        let patch = &apps["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Deployment");
        assert!(patch["parameters"].as_array().is_some_and(|p| p.iter().any(|p| p["name"] == "fieldValidation")));
        let schemas = apps["components"]["schemas"].as_object().expect("schemas");
        assert!(
            schemas.contains_key("io.k8s.api.apps.v1.Deployment") && schemas.contains_key("io.k8s.api.core.v1.PodSpec")
        );
        let index: Value = serde_json::from_slice(&docs.index()).expect("json");
        assert!(
            index["paths"]["api/v1"]["serverRelativeURL"]
                .as_str()
                .is_some_and(|u| u.starts_with("/openapi/v3/api/v1?hash="))
        );
    }

    #[test]
    fn every_reference_in_a_document_resolves_inside_it() {
        let defs = definitions();
        let docs = documents(&defs);
        for (key, bytes) in &docs.by_group_version {
            let doc: Value = serde_json::from_slice(bytes).expect("json");
            let mut refs = Vec::new();
            collect_refs(&doc, &mut refs);
            let schemas = doc["components"]["schemas"].as_object().expect("schemas");
            for r in refs {
                assert!(schemas.contains_key(&r), "{key}: dangling {r}");
            }
        }
    }
}

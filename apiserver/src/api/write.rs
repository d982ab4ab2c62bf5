//! create, update, patch, delete and deletecollection, and the `status`, `scale`, `binding`
//! and `eviction` subresources.
//!
//! Every write ends in one guarded etcd transaction. Updates and patches read the current
//! object, compute the new one with pure functions, and write it only if the object is still
//! at the revision read (retrying patches and unconditional updates on a race, answering 409
//! when the client named a resourceVersion).

use api_types::limits::{self, LimitRange};
use api_types::registry::{KindVisitor, ResourceInfo, split_api_version, visit_kind};
use bytes::Bytes;
use http::{HeaderMap, Response, StatusCode};
use serde_json::{Map, Value, json};

use super::decode::{self, FieldValidation};
use super::{Api, Body, json_response, with_warnings};
use crate::admission::{FieldError, defaults, services, validation};
use crate::error::Error;
use crate::object::{self, metadata_mut};
use crate::request::{Query, ResourceRequest};
use crate::storage::{Kv, StorageError};

/// How many times a patch or unconditional update retries after losing a race.
const MAX_RETRIES: usize = 8;

fn now_rfc3339() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Whether `resource` is the core-group resource `plural`.
fn is_core(resource: &ResourceInfo, plural: &str) -> bool {
    resource.group.is_empty() && resource.plural == plural
}

fn has_status(resource: &ResourceInfo) -> bool {
    resource.has_subresource("status")
}

/// What a decoded body turned into, with the warnings to send back.
struct Decoded {
    obj: Value,
    warnings: Vec<String>,
}

impl Api {
    /// A body in the format its Content-Type names, as a JSON value, with its duplicate keys.
    fn parse_body(&self, headers: &HeaderMap, body: &[u8]) -> Result<(Value, Vec<String>), Error> {
        let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        decode::parse(decode::body_format(content_type)?, body, &self.protobuf)
    }

    /// The `DeleteOptions` of a delete: its body (in any format) and the query.
    fn delete_options(&self, query: &Query, headers: &HeaderMap, body: &[u8]) -> Result<DeleteOptions, Error> {
        let body =
            if body.iter().all(u8::is_ascii_whitespace) { Value::Null } else { self.parse_body(headers, body)?.0 };
        DeleteOptions::parse(query, &body)
    }

    /// Decodes a body for `kind` (defaulting `apiVersion`/`kind` from the URL when absent and
    /// refusing others), applying `fieldValidation`.
    fn decode_body(
        &self,
        kind: &str,
        api_version: &str,
        query: &Query,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Decoded, Error> {
        let validation = FieldValidation::parse(query.get("fieldValidation"))?;
        let (mut obj, duplicates) = self.parse_body(headers, body)?;
        if !obj.is_object() {
            return Err(Error::BadRequest("the request body must be a JSON or YAML object".into()));
        }
        match (obj["apiVersion"].as_str(), obj["kind"].as_str()) {
            (Some(v), Some(k)) if v == api_version && k == kind => {}
            (None | Some(""), None | Some("")) => {
                obj["apiVersion"] = api_version.into();
                obj["kind"] = kind.into();
            }
            (v, k) => {
                return Err(Error::BadRequest(format!(
                    "the API version in the data ({}) does not match the expected API version ({api_version}) \
                     or the kind in the data ({}) does not match the expected kind ({kind})",
                    v.unwrap_or_default(),
                    k.unwrap_or_default()
                )));
            }
        }
        let (group, _) = split_api_version(api_version);
        let (typed, unknown) = decode::typed_round_trip(group, kind, obj)?;
        let warnings = decode::field_problems(validation, &unknown, &duplicates)?;
        Ok(Decoded { obj: typed, warnings })
    }

    pub(super) async fn create(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        match req.subresource.as_deref() {
            Some("binding") => return self.bind(req, query, headers, body).await,
            Some("eviction") => return self.evict(req, query, headers, body).await,
            Some(_) | None if req.name.is_some() && req.subresource.is_none() => {
                return Err(Error::MethodNotAllowed("POST is not allowed on a named resource".into()));
            }
            Some(_) => {
                return Err(Error::MethodNotAllowed("POST is not supported for this subresource".into()));
            }
            None => {}
        }
        let resource = req.resource;
        let Decoded { mut obj, warnings } =
            self.decode_body(resource.kind, &resource.api_version(), query, headers, &body)?;
        let namespace = self.namespace_for(req, &obj)?;
        let meta = metadata_mut(&mut obj);
        if let Some(ns) = &namespace {
            meta.insert("namespace".into(), ns.clone().into());
        } else {
            meta.remove("namespace");
        }
        if meta.get("name").and_then(Value::as_str).is_none_or(str::is_empty) {
            match meta.get("generateName").and_then(Value::as_str).filter(|g| !g.is_empty()) {
                Some(prefix) => {
                    let name = api_types::names::generate_name(prefix, rand::random::<u32>);
                    meta.insert("name".into(), name.into());
                }
                None => {
                    return Err(Error::invalid(
                        resource,
                        "",
                        vec![FieldError::required("metadata.name", "name or generateName is required")],
                    ));
                }
            }
        }
        prepare_for_create(resource, &mut obj);
        self.admit(resource, &mut obj, None)?;
        if let Some(ns) = &namespace {
            self.check_namespace_open(resource, ns).await?;
            self.default_storage_class(resource, &mut obj);
            self.limit_ranges(resource, ns, &mut obj)?;
            if !query.dry_run()? {
                self.charge_quotas(resource, ns, &obj).await?;
            }
        }
        protect_storage_object(resource, &mut obj);
        let name = object::name(&obj).to_string();
        let key = self.key(resource, namespace.as_deref(), &name);
        let generate_prefix = object::str_at(&obj, "/metadata/generateName")
            .filter(|_| query.value("dryRun").is_none())
            .map(str::to_string);
        // Only Services can lose an allocation race and go round again with the same object.
        let retries_allocation = is_core(resource, "services");
        for attempt in 0.. {
            let mut candidate = if retries_allocation { obj.clone() } else { std::mem::take(&mut obj) };
            let extra = self.allocate(resource, &mut candidate, None)?;
            if query.dry_run()? {
                return Ok(with_warnings(json_response(StatusCode::CREATED, &candidate), &warnings));
            }
            let stored = object::encode_for_storage(&candidate);
            match self.store.create(&key, stored.clone(), &extra).await {
                Ok(rev) => {
                    // Answer with the stored bytes and the new resourceVersion: one encoding.
                    let resp = match object::with_resource_version(&stored, rev) {
                        Some(bytes) => super::bytes_response(StatusCode::CREATED, "application/json", bytes),
                        None => {
                            object::set_resource_version(&mut candidate, rev);
                            json_response(StatusCode::CREATED, &candidate)
                        }
                    };
                    return Ok(with_warnings(resp, &warnings));
                }
                Err(StorageError::AlreadyExists) if generate_prefix.is_some() && attempt < MAX_RETRIES => {
                    let prefix = generate_prefix.as_deref().unwrap_or_default();
                    let fresh = api_types::names::generate_name(prefix, rand::random::<u32>);
                    return Box::pin(self.create_renamed(req, query, headers, body, fresh)).await;
                }
                Err(StorageError::AlreadyExists) => {
                    return Err(Error::already_exists(resource, &name));
                }
                Err(StorageError::KeyTaken(k)) => {
                    if let Some(e) = self.allocation_conflict(resource, &name, &obj, &k) {
                        return Err(e);
                    }
                    if attempt >= MAX_RETRIES * 4 {
                        return Err(Error::Internal("could not allocate a free ClusterIP or NodePort".into()));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        unreachable!("the loop only ends by returning")
    }

    /// A generateName collision: retry once with a fresh name (upstream retries in the client;
    /// doing it here keeps kubectl create --generate-name reliable).
    async fn create_renamed(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
        name: String,
    ) -> Result<Response<Body>, Error> {
        let (mut value, _) = self.parse_body(headers, &body)?;
        metadata_mut(&mut value).insert("name".into(), name.into());
        let body = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        let mut headers = headers.clone();
        headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        self.create(req, query, &headers, body).await
    }

    /// The namespace an object is created in: the URL's, which the body may repeat but not
    /// contradict.
    fn namespace_for(&self, req: &ResourceRequest, obj: &Value) -> Result<Option<String>, Error> {
        if !req.resource.namespaced {
            return Ok(None);
        }
        let url_ns = req.namespace.clone().ok_or_else(|| {
            Error::BadRequest("the server could not find the requested resource: a namespace is required".into())
        })?;
        match object::namespace(obj) {
            Some(ns) if ns != url_ns => Err(Error::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            )),
            _ => Ok(Some(url_ns)),
        }
    }

    /// Defaulting and validation (`old` on update).
    fn admit(&self, resource: &ResourceInfo, obj: &mut Value, old: Option<&Value>) -> Result<(), Error> {
        if is_core(resource, "secrets") {
            merge_string_data(obj);
        }
        defaults::apply_defaults(resource.group, resource.kind, obj)
            .map_err(|e| Error::BadRequest(format!("defaulting: {e}")))?;
        let errors = validation::validate(resource.group, resource.kind, obj, old);
        if errors.is_empty() { Ok(()) } else { Err(Error::invalid(resource, object::name(obj), errors)) }
    }

    /// Namespace lifecycle: no new objects in a namespace that does not exist or is terminating.
    async fn check_namespace_open(&self, resource: &ResourceInfo, ns: &str) -> Result<(), Error> {
        let namespaces = api_types::registry::by_plural("", "v1", "namespaces").ok_or(Error::PathNotFound)?;
        let key = self.key(namespaces, None, ns);
        let is_terminating = |ns: &Value| {
            ns.pointer("/metadata/deletionTimestamp").is_some()
                || object::str_at(ns, "/status/phase") == Some("Terminating")
        };
        let terminating = match self.cache(namespaces).get(&key) {
            Some(o) => is_terminating(o.value()),
            None => {
                let kv = self.store.get(&key).await?.0.ok_or_else(|| Error::not_found(namespaces, ns))?;
                serde_json::from_slice::<Value>(&kv.value).is_ok_and(|v| is_terminating(&v))
            }
        };
        if terminating && resource.plural != "events" {
            return Err(Error::Forbidden(format!(
                "{} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                resource.group_resource()
            )));
        }
        Ok(())
    }

    /// LimitRanger admission (`api_types::limits`), on create only: a new pod gets the defaults
    /// of its namespace's LimitRanges and must then be within their ranges, a new claim within
    /// their storage range; otherwise 403 in upstream's words. A pod that got defaults is
    /// validated again, as upstream validates after its mutating admission. The LimitRanges come
    /// from the watch cache: a namespace without one costs no etcd read.
    fn limit_ranges(&self, resource: &ResourceInfo, ns: &str, obj: &mut Value) -> Result<(), Error> {
        let is_pod = is_core(resource, "pods");
        if !is_pod && !is_core(resource, "persistentvolumeclaims") {
            return Ok(());
        }
        let Some(limit_ranges) = api_types::registry::by_plural("", "v1", "limitranges") else { return Ok(()) };
        let prefix = object::list_prefix(&self.root, limit_ranges, Some(ns));
        let (objects, _) = self.cache(limit_ranges).snapshot(&prefix);
        if objects.is_empty() {
            return Ok(());
        }
        let ranges: Vec<LimitRange> = objects.iter().map(|o| LimitRange::from_value(o.value())).collect();
        let name = object::name(obj).to_string();
        let refused = |v: limits::Violations| {
            Error::Forbidden(format!("{} {name:?} is forbidden: {v}", resource.group_resource()))
        };
        if !is_pod {
            return limits::validate_claim(&ranges, obj).map_err(refused);
        }
        if limits::default_pod(&ranges, obj) {
            let errors = validation::validate(resource.group, resource.kind, obj, None);
            if !errors.is_empty() {
                return Err(Error::invalid(resource, &name, errors));
            }
        }
        limits::validate_pod(&ranges, obj).map_err(refused)
    }

    /// DefaultStorageClass admission: a claim created without a class (no
    /// `spec.storageClassName`, not even `""`, and no beta class annotation) gets the default
    /// class, the one annotated `storageclass.kubernetes.io/is-default-class: "true"` (the newest
    /// if several, ties to the first name, as upstream since 1.28), read from the watch cache.
    fn default_storage_class(&self, resource: &ResourceInfo, obj: &mut Value) {
        const BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
        const DEFAULT: [&str; 2] =
            ["storageclass.kubernetes.io/is-default-class", "storageclass.beta.kubernetes.io/is-default-class"];
        if !is_core(resource, "persistentvolumeclaims")
            || obj.pointer("/spec/storageClassName").is_some_and(|c| !c.is_null())
            || obj.pointer("/metadata/annotations").and_then(|a| a.get(BETA_CLASS)).is_some()
        {
            return;
        }
        let Some(classes) = api_types::registry::by_plural("storage.k8s.io", "v1", "storageclasses") else { return };
        let prefix = object::list_prefix(&self.root, classes, None);
        let (objects, _) = self.cache(classes).snapshot(&prefix);
        let is_default = |c: &Value| {
            DEFAULT.iter().any(|k| c.pointer("/metadata/annotations").and_then(|a| a.get(*k)) == Some(&json!("true")))
        };
        let newest = objects.iter().map(|o| o.value()).filter(|c| is_default(c)).max_by(|a, b| {
            let created = |c: &Value| {
                object::str_at(c, "/metadata/creationTimestamp").and_then(|t| t.parse::<jiff::Timestamp>().ok())
            };
            created(a).cmp(&created(b)).then_with(|| object::name(b).cmp(object::name(a)))
        });
        if let (Some(class), Some(spec)) = (newest, obj.get_mut("spec").and_then(Value::as_object_mut)) {
            spec.insert("storageClassName".into(), object::name(class).into());
        }
    }

    /// ResourceQuota admission: the object's usage is added to every quota of its namespace
    /// that limits it, each with a conditional write, or the create is refused (403) in
    /// upstream's words. The quota controller recomputes `used` from the objects, so a create
    /// that fails after this only over-counts until its next pass.
    async fn charge_quotas(&self, resource: &ResourceInfo, ns: &str, obj: &Value) -> Result<(), Error> {
        let Some(quotas) = api_types::registry::by_plural("", "v1", "resourcequotas") else { return Ok(()) };
        let prefix = object::list_prefix(&self.root, quotas, Some(ns));
        // Most namespaces have no quota: the watch cache says so without a read of etcd.
        if self.cache(quotas).snapshot(&prefix).0.is_empty() {
            return Ok(());
        }
        let delta = api_types::quota::usage(resource.group, resource.plural, obj);
        if delta.is_empty() {
            return Ok(());
        }
        let forbidden = |message: String| {
            Error::Forbidden(format!("{} {:?} is forbidden: {message}", resource.group_resource(), object::name(obj)))
        };
        let page = self.store.list_all(&prefix).await?;
        for first in page.kvs {
            let mut kv = first;
            for attempt in 0..MAX_RETRIES * 4 {
                let mut quota = object::decode_from_storage(&kv.value, kv.mod_revision)
                    .map_err(|e| Error::Internal(format!("stored object {} is not valid JSON: {e}", kv.key)))?;
                let name = object::name(&quota).to_string();
                let hard = quota_map(&quota["spec"]["hard"]);
                // A pod without a request or limit the quota tracks is refused even though it
                // would add nothing to it.
                if resource.plural == "pods" && resource.group.is_empty() {
                    let missing = api_types::quota::unspecified(&hard, obj);
                    if !missing.is_empty() {
                        return Err(forbidden(format!("failed quota: {name}: must specify {}", missing.join(","))));
                    }
                }
                let limited: Vec<&String> = delta.keys().filter(|k| hard.contains_key(*k)).collect();
                if limited.is_empty() {
                    break;
                }
                let used_known = quota["status"]["used"].as_object().cloned().unwrap_or_default();
                let unknown: Vec<&str> =
                    limited.iter().filter(|k| !used_known.contains_key(k.as_str())).map(|k| k.as_str()).collect();
                if !unknown.is_empty() {
                    return Err(forbidden(format!(
                        "status unknown for quota: {name}, resources: {}",
                        unknown.join(",")
                    )));
                }
                let used = quota_map(&quota["status"]["used"]);
                let over = api_types::quota::exceeded(&hard, &used, &delta);
                if !over.is_empty() {
                    return Err(forbidden(api_types::quota::exceeded_message(&name, &over, &hard, &used, &delta)));
                }
                for key in limited {
                    let total = used.get(key).copied().unwrap_or(0) + delta.get(key).copied().unwrap_or(0);
                    quota["status"]["used"][key] =
                        serde_json::to_value(api_types::quota::render(key, total)).unwrap_or_default();
                }
                match self.store.update(&kv.key, object::encode_for_storage(&quota), kv.mod_revision, &[], &[]).await {
                    Ok(_) => break,
                    // Charged by another create meanwhile: read this quota again.
                    Err(StorageError::Conflict) if attempt + 1 < MAX_RETRIES * 4 => {
                        match self.store.get(&kv.key).await?.0 {
                            Some(fresh) => kv = fresh,
                            None => break,
                        }
                    }
                    Err(StorageError::Conflict) => {
                        return Err(forbidden("quota usage kept changing; try again".into()));
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }

    /// ClusterIP/NodePort claims for a Service (nothing for other kinds).
    fn allocate(
        &self,
        resource: &ResourceInfo,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<Vec<(String, Vec<u8>)>, Error> {
        if !is_core(resource, "services") {
            return Ok(Vec::new());
        }
        let owner = format!("{}/{}", object::namespace(obj).unwrap_or_default(), object::name(obj));
        self.allocator
            .allocate(obj, old, &owner)
            .map(|a| a.keys)
            .map_err(|errors| Error::invalid(resource, object::name(obj), errors))
    }

    /// A claim that failed: a user-chosen IP or port is a 422; a random one is retried (None).
    fn allocation_conflict(&self, resource: &ResourceInfo, name: &str, requested: &Value, key: &str) -> Option<Error> {
        let value = key.rsplit('/').next().unwrap_or_default();
        if self.allocator.is_ip_key(key) {
            let asked = object::str_at(requested, "/spec/clusterIP").is_some_and(|ip| ip == value);
            return asked.then(|| {
                Error::invalid(
                    resource,
                    name,
                    vec![FieldError::invalid(
                        "spec.clusterIPs",
                        value,
                        "failed to allocate IP: provided IP is already allocated",
                    )],
                )
            });
        }
        let asked = requested["spec"]["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .position(|p| p["nodePort"].as_i64().map(|n| n.to_string()).as_deref() == Some(value));
        asked.map(|i| {
            Error::invalid(
                resource,
                name,
                vec![FieldError::invalid_raw(
                    format!("spec.ports[{i}].nodePort"),
                    value,
                    "provided port is already allocated",
                )],
            )
        })
    }

    async fn read_current(&self, req: &ResourceRequest) -> Result<(String, Kv, Value), Error> {
        let name = req.name.as_deref().unwrap_or_default();
        let key = self.key(req.resource, req.namespace.as_deref(), name);
        let kv = self.store.get(&key).await?.0.ok_or_else(|| Error::not_found(req.resource, name))?;
        let value = object::decode_from_storage(&kv.value, kv.mod_revision)
            .map_err(|e| Error::Internal(format!("stored object {key} is not valid JSON: {e}")))?;
        Ok((key, kv, value))
    }

    pub(super) async fn update(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        let resource = req.resource;
        if req.subresource.as_deref() == Some("scale") {
            let Decoded { obj, warnings } = self.decode_body("Scale", "autoscaling/v1", query, headers, &body)?;
            let resp = self.write_scale(req, query, obj).await?;
            return Ok(with_warnings(resp, &warnings));
        }
        let Decoded { obj, warnings } =
            self.decode_body(resource.kind, &resource.api_version(), query, headers, &body)?;
        let name = req.name.as_deref().unwrap_or_default();
        if object::name(&obj) != name {
            return Err(Error::BadRequest(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                object::name(&obj)
            )));
        }
        self.namespace_for(req, &obj)?;
        let precondition = object::resource_version(&obj)
            .map(|rv| rv.parse::<i64>())
            .transpose()
            .map_err(|_| Error::BadRequest(format!("invalid resourceVersion {:?}", object::resource_version(&obj))))?;
        let resp = self.guaranteed_update(req, query, precondition, |_current| Ok(obj.clone())).await?;
        Ok(with_warnings(resp, &warnings))
    }

    pub(super) async fn patch(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        let resource = req.resource;
        let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let media = content_type.split(';').next().unwrap_or_default().trim().to_string();
        let patch: Value = match media.as_str() {
            "application/json-patch+json"
            | "application/merge-patch+json"
            | "application/strategic-merge-patch+json" => {
                serde_json::from_slice(&body).map_err(|e| Error::BadRequest(format!("error decoding patch: {e}")))?
            }
            _ => {
                return Err(Error::UnsupportedMediaType(
                    "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
                        .into(),
                ));
            }
        };
        let validation = FieldValidation::parse(query.get("fieldValidation"))?;
        let scale = req.subresource.as_deref() == Some("scale");
        let precondition = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .map(|rv| rv.parse::<i64>().map_err(|_| Error::BadRequest(format!("invalid resourceVersion {rv:?}"))))
            .transpose()?;
        let warnings = std::sync::Mutex::new(Vec::new());
        let definitions = self.definitions.clone();
        let apply = |current: &Value| -> Result<Value, Error> {
            let (group, kind, original) = if scale {
                ("autoscaling", "Scale", scale_of(current))
            } else {
                (resource.group, resource.kind, current.clone())
            };
            let patched = match media.as_str() {
                "application/json-patch+json" => {
                    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                        .map_err(|e| Error::BadRequest(format!("invalid JSON patch: {e}")))?;
                    let mut doc = original;
                    json_patch::patch(&mut doc, &ops)
                        .map_err(|e| Error::Unprocessable(format!("the JSON patch could not be applied: {e}")))?;
                    doc
                }
                "application/merge-patch+json" => {
                    let mut doc = original;
                    json_patch::merge(&mut doc, &patch);
                    doc
                }
                _ => {
                    let type_name = schema_name(group, kind).unwrap_or_default();
                    api_types::strategic_merge::apply(&original, &patch, &definitions, &type_name).map_err(|e| {
                        Error::BadRequest(format!("the strategic merge patch could not be applied: {e}"))
                    })?
                }
            };
            let (typed, unknown) = decode::typed_round_trip(group, kind, patched)?;
            let found = decode::field_problems(validation, &unknown, &[])?;
            if let Ok(mut w) = warnings.lock() {
                *w = found;
            }
            if scale { Ok(with_replicas(current, &typed)) } else { Ok(typed) }
        };
        let resp = if scale {
            let mut sub = req.clone();
            sub.subresource = None;
            let resp = self.guaranteed_update(&sub, query, precondition, apply).await?;
            rescale_response(resp).await
        } else {
            self.guaranteed_update(req, query, precondition, apply).await?
        };
        let warnings = warnings.into_inner().unwrap_or_default();
        Ok(with_warnings(resp, &warnings))
    }

    /// Reads the object, computes the new one with `change`, admits it and writes it if the
    /// object is unchanged since the read; retries on a race unless `precondition` names the
    /// resourceVersion the client expects.
    async fn guaranteed_update(
        &self,
        req: &ResourceRequest,
        query: &Query,
        precondition: Option<i64>,
        change: impl Fn(&Value) -> Result<Value, Error>,
    ) -> Result<Response<Body>, Error> {
        let resource = req.resource;
        let name = req.name.as_deref().unwrap_or_default();
        for _ in 0..MAX_RETRIES {
            let (key, kv, current) = self.read_current(req).await?;
            if precondition.is_some_and(|rv| rv != kv.mod_revision) {
                return Err(Error::conflict(resource, name));
            }
            let requested = change(&current)?;
            let mut next = merge_for_update(resource, req.subresource.as_deref(), &current, requested);
            prepare_for_update(&current, &mut next);
            if is_core(resource, "services") {
                services::drop_type_dependent_fields(&current, &mut next);
            }
            self.admit(resource, &mut next, Some(&current))?;
            if same_object(&current, &next) {
                return Ok(json_response(StatusCode::OK, &current));
            }
            let extra = self.allocate(resource, &mut next, Some(&current))?;
            let released = self.released(resource, &current, Some(&next));
            if query.dry_run()? {
                return Ok(json_response(StatusCode::OK, &next));
            }
            // A terminating object whose last finalizer went is deleted, not updated.
            if is_finalized(&next) {
                let released = self.released(resource, &current, None);
                return match self.store.delete(&key, kv.mod_revision, &released).await {
                    Ok(_) => Ok(json_response(StatusCode::OK, &next)),
                    Err(StorageError::Conflict) if precondition.is_none() => continue,
                    Err(StorageError::Conflict) => Err(Error::conflict(resource, name)),
                    Err(StorageError::NotFound) => Err(Error::not_found(resource, name)),
                    Err(e) => Err(e.into()),
                };
            }
            match self.store.update(&key, object::encode_for_storage(&next), kv.mod_revision, &extra, &released).await {
                Ok(rev) => {
                    object::set_resource_version(&mut next, rev);
                    return Ok(json_response(StatusCode::OK, &next));
                }
                Err(StorageError::Conflict) if precondition.is_none() => continue,
                Err(StorageError::Conflict) => return Err(Error::conflict(resource, name)),
                Err(StorageError::NotFound) => return Err(Error::not_found(resource, name)),
                Err(StorageError::KeyTaken(k)) => {
                    if let Some(e) = self.allocation_conflict(resource, name, &next, &k) {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::conflict(resource, name))
    }

    /// The allocation keys a Service gives up when it changes to `new`, or is deleted (None).
    fn released(&self, resource: &ResourceInfo, old: &Value, new: Option<&Value>) -> Vec<String> {
        if is_core(resource, "services") { self.allocator.released(old, new) } else { Vec::new() }
    }

    pub(super) async fn delete(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        let options = self.delete_options(query, headers, &body)?;
        let (code, obj) = self.delete_one(req, query, &options).await?;
        Ok(json_response(code, &obj))
    }

    async fn delete_one(
        &self,
        req: &ResourceRequest,
        query: &Query,
        options: &DeleteOptions,
    ) -> Result<(StatusCode, Value), Error> {
        let resource = req.resource;
        let name = req.name.as_deref().unwrap_or_default();
        let dry_run = query.dry_run()? || options.dry_run;
        for _ in 0..MAX_RETRIES {
            let (key, kv, current) = self.read_current(req).await?;
            options.check_preconditions(resource, name, &current)?;
            let plan = plan_delete(resource, &current, options, &now_rfc3339());
            if dry_run {
                return Ok((StatusCode::OK, current));
            }
            let result = match &plan {
                DeletePlan::Now => {
                    let released = self.released(resource, &current, None);
                    self.store.delete(&key, kv.mod_revision, &released).await.map(|_| (StatusCode::OK, current.clone()))
                }
                DeletePlan::Mark(next) => {
                    self.store.update(&key, object::encode_for_storage(next), kv.mod_revision, &[], &[]).await.map(
                        |rev| {
                            let mut next = next.clone();
                            object::set_resource_version(&mut next, rev);
                            (StatusCode::OK, next)
                        },
                    )
                }
                DeletePlan::Unchanged => return Ok((StatusCode::OK, current)),
            };
            match result {
                Ok(done) => return Ok(done),
                Err(StorageError::Conflict) => continue,
                Err(StorageError::NotFound) => return Err(Error::not_found(resource, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::conflict(resource, name))
    }

    pub(super) async fn delete_collection(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        let options = self.delete_options(query, headers, &body)?;
        let filter = super::read::Filter::new(self, req, query)?;
        let page = self.store.list_all(filter.prefix()).await?;
        let mut deleted = Vec::new();
        for obj in page.kvs.into_iter().filter_map(crate::cache::Object::from_kv) {
            if !filter.matches(&obj) {
                continue;
            }
            let mut one = req.clone();
            one.name = Some(object::name(obj.value()).to_string());
            one.namespace = object::namespace(obj.value()).map(str::to_string);
            match self.delete_one(&one, query, &options).await {
                Ok((_, v)) => deleted.push(v),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let list = json!({
            "kind": req.resource.list_kind(),
            "apiVersion": req.resource.api_version(),
            "metadata": { "resourceVersion": page.revision.to_string() },
            "items": deleted,
        });
        Ok(json_response(StatusCode::OK, &list))
    }

    /// `pods/binding`: sets `spec.nodeName` of a pod that has none.
    async fn bind(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        let Decoded { obj: binding, .. } = self.decode_body("Binding", "v1", query, headers, &body)?;
        let node = object::str_at(&binding, "/target/name").filter(|n| !n.is_empty()).map(str::to_string);
        let Some(node) = node else {
            return Err(Error::invalid(
                req.resource,
                req.name.as_deref().unwrap_or_default(),
                vec![FieldError::required("target.name", "")],
            ));
        };
        let name = req.name.clone().unwrap_or_default();
        let mut pod_req = req.clone();
        pod_req.subresource = None;
        let now = now_rfc3339();
        for _ in 0..MAX_RETRIES {
            let (key, kv, mut pod) = self.read_current(&pod_req).await?;
            if let Some(uid) = object::str_at(&binding, "/metadata/uid").filter(|u| !u.is_empty())
                && object::str_at(&pod, "/metadata/uid") != Some(uid)
            {
                return Err(Error::conflict(req.resource, &name));
            }
            if pod.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(Error::Conflict {
                    resource: "pods".into(),
                    name: name.clone(),
                    message: format!("pod {name} is being deleted, cannot be assigned to a host"),
                });
            }
            if let Some(current) = object::str_at(&pod, "/spec/nodeName").filter(|n| !n.is_empty()) {
                return Err(Error::Conflict {
                    resource: "pods".into(),
                    name: name.clone(),
                    message: format!("pod {name} is already assigned to node {current:?}"),
                });
            }
            pod["spec"]["nodeName"] = node.clone().into();
            set_condition(&mut pod, "PodScheduled", "True", &now);
            if query.dry_run()? {
                break;
            }
            match self.store.update(&key, object::encode_for_storage(&pod), kv.mod_revision, &[], &[]).await {
                Ok(_) => break,
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(json_response(StatusCode::CREATED, &crate::error::success_status(Default::default())))
    }

    /// `pods/eviction`: a delete with the eviction's options, allowed only if the pod's
    /// PodDisruptionBudget has a disruption to spare (which it then spends); otherwise a 429.
    async fn evict(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response<Body>, Error> {
        let Decoded { obj: eviction, .. } = self.decode_body("Eviction", "policy/v1", query, headers, &body)?;
        let options = DeleteOptions::parse(query, &eviction["deleteOptions"])?;
        let mut pod_req = req.clone();
        pod_req.subresource = None;
        let (_, _, pod) = self.read_current(&pod_req).await?;
        if counts_against_budget(&pod) && !query.dry_run()? {
            self.spend_disruption(&pod).await?;
        }
        self.delete_one(&pod_req, query, &options).await?;
        Ok(json_response(StatusCode::CREATED, &crate::error::success_status(Default::default())))
    }

    /// Takes one disruption from the budget covering `pod`, as upstream's eviction does: the
    /// budget must have seen its latest spec and allow a disruption; the write is conditional,
    /// so two evictions never spend the same one.
    async fn spend_disruption(&self, pod: &Value) -> Result<(), Error> {
        let Some(budgets) = api_types::registry::by_plural("policy", "v1", "poddisruptionbudgets") else {
            return Ok(());
        };
        let namespace = object::str_at(pod, "/metadata/namespace").unwrap_or_default();
        let pod_name = object::name(pod).to_string();
        let labels: std::collections::BTreeMap<String, String> =
            serde_json::from_value(pod["metadata"]["labels"].clone()).unwrap_or_default();
        let prefix = object::list_prefix(&self.root, budgets, Some(namespace));
        let refuse = |cause: String| Error::TooManyRequests {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            causes: vec![("DisruptionBudget".into(), cause)],
            // As upstream: no Retry-After, so clients do not wait inside one request; kubectl
            // drain asks again every 5 s itself and keeps to its --timeout.
            retry_after_seconds: 0,
        };
        for _ in 0..MAX_RETRIES {
            let page = self.store.list_all(&prefix).await?;
            let mut covering = Vec::new();
            for kv in page.kvs {
                let budget = object::decode_from_storage(&kv.value, kv.mod_revision)
                    .map_err(|e| Error::Internal(format!("stored object {} is not valid JSON: {e}", kv.key)))?;
                let selector: api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector =
                    serde_json::from_value(budget["spec"]["selector"].clone()).unwrap_or_default();
                // In policy/v1 an empty selector selects every pod of the namespace.
                if api_types::labels::LabelSelector::from_label_selector(&selector).is_ok_and(|s| s.matches(&labels)) {
                    covering.push((kv, budget));
                }
            }
            let Some((kv, mut budget)) = covering.pop() else { return Ok(()) };
            if !covering.is_empty() {
                return Err(Error::Internal(
                    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
                        .into(),
                ));
            }
            let name = object::name(&budget).to_string();
            let generation = budget.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            let observed = budget.pointer("/status/observedGeneration").and_then(Value::as_i64).unwrap_or(0);
            if observed < generation {
                return Err(refuse(format!("The disruption budget {name} is still being processed by the server.")));
            }
            let allowed = budget.pointer("/status/disruptionsAllowed").and_then(Value::as_i64).unwrap_or(0);
            if allowed <= 0 {
                let desired = budget.pointer("/status/desiredHealthy").and_then(Value::as_i64).unwrap_or(0);
                let current = budget.pointer("/status/currentHealthy").and_then(Value::as_i64).unwrap_or(0);
                return Err(refuse(format!(
                    "The disruption budget {name} needs {desired} healthy pods and has {current} currently"
                )));
            }
            budget["status"]["disruptionsAllowed"] = (allowed - 1).into();
            if !budget["status"]["disruptedPods"].is_object() {
                budget["status"]["disruptedPods"] = json!({});
            }
            budget["status"]["disruptedPods"][&pod_name] = jiff::Timestamp::now().to_string().into();
            match self.store.update(&kv.key, object::encode_for_storage(&budget), kv.mod_revision, &[], &[]).await {
                Ok(_) => return Ok(()),
                Err(StorageError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Conflict {
            resource: budgets.group_resource(),
            name: String::new(),
            message: "the disruption budget kept changing; try again".into(),
        })
    }

    /// PUT on `scale`: sets `spec.replicas` of the parent from a Scale.
    async fn write_scale(&self, req: &ResourceRequest, query: &Query, scale: Value) -> Result<Response<Body>, Error> {
        let precondition = object::resource_version(&scale).and_then(|rv| rv.parse::<i64>().ok());
        let mut parent = req.clone();
        parent.subresource = None;
        let resp =
            self.guaranteed_update(&parent, query, precondition, |current| Ok(with_replicas(current, &scale))).await?;
        Ok(rescale_response(resp).await)
    }
}

/// Turns a parent-object response into the Scale response the client asked for.
async fn rescale_response(resp: Response<Body>) -> Response<Body> {
    use http_body_util::BodyExt;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(obj) => json_response(parts.status, &scale_of(&obj)),
        Err(_) => Response::from_parts(parts, super::full(bytes)),
    }
}

/// The `autoscaling/v1` Scale of a Deployment, ReplicaSet, StatefulSet or RC.
pub fn scale_of(obj: &Value) -> Value {
    let meta = &obj["metadata"];
    let selector = match obj.pointer("/spec/selector") {
        Some(Value::Object(s)) if s.contains_key("matchLabels") || s.contains_key("matchExpressions") => {
            serde_json::from_value::<api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector>(
                Value::Object(s.clone()),
            )
            .ok()
            .and_then(|s| api_types::labels::LabelSelector::from_label_selector(&s).ok())
            .map(|s| s.to_string())
            .unwrap_or_default()
        }
        // ReplicationControllers have a plain map selector.
        Some(Value::Object(s)) => {
            s.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect::<Vec<_>>().join(",")
        }
        _ => String::new(),
    };
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": obj.pointer("/spec/replicas").cloned().unwrap_or(json!(1)) },
        "status": { "replicas": obj.pointer("/status/replicas").cloned().unwrap_or(json!(0)), "selector": selector },
    })
}

fn with_replicas(current: &Value, scale: &Value) -> Value {
    let mut next = current.clone();
    next["spec"]["replicas"] = scale.pointer("/spec/replicas").cloned().unwrap_or(json!(0));
    next
}

/// The OpenAPI definition name of a kind's type (`io.k8s.api.apps.v1.Deployment`).
pub fn schema_name(group: &str, kind: &str) -> Option<String> {
    struct Name;
    impl KindVisitor for Name {
        type Output = String;
        fn visit<T>(self) -> String
        where
            T: api_types::k8s_openapi::Resource + serde::Serialize + serde::de::DeserializeOwned + schemars::JsonSchema,
        {
            T::schema_name().into_owned()
        }
    }
    visit_kind(group, kind, Name)
}

/// A Secret's write-only `stringData` is folded into `data` (base64), as upstream does; keys in
/// both take the `stringData` value.
fn merge_string_data(secret: &mut Value) {
    use base64::Engine;
    let Some(Value::Object(strings)) = secret.as_object_mut().and_then(|m| m.remove("stringData")) else {
        return;
    };
    if !secret["data"].is_object() {
        secret["data"] = json!({});
    }
    for (k, v) in strings {
        let text = v.as_str().unwrap_or_default();
        secret["data"][k] = base64::engine::general_purpose::STANDARD.encode(text).into();
    }
}

/// StorageObjectInUseProtection admission, on create only: a new PersistentVolumeClaim gets the
/// `kubernetes.io/pvc-protection` finalizer and a new PersistentVolume `kubernetes.io/pv-protection`,
/// so neither goes while in use; rk-controller-manager's pvc- and pv-protection controllers remove
/// them once it is not (and add them to objects made without).
fn protect_storage_object(resource: &ResourceInfo, obj: &mut Value) {
    let finalizer = match (resource.group, resource.plural) {
        ("", "persistentvolumeclaims") => "kubernetes.io/pvc-protection",
        ("", "persistentvolumes") => "kubernetes.io/pv-protection",
        _ => return,
    };
    let meta = metadata_mut(obj);
    let finalizers = meta.entry("finalizers").or_insert_with(|| json!([]));
    if finalizers.is_null() {
        *finalizers = json!([]);
    }
    if let Some(list) = finalizers.as_array_mut()
        && !list.iter().any(|f| f == finalizer)
    {
        list.push(finalizer.into());
    }
}

/// Server-set metadata and the status a new object starts with.
fn prepare_for_create(resource: &ResourceInfo, obj: &mut Value) {
    let meta = metadata_mut(obj);
    meta.insert("uid".into(), uuid::Uuid::new_v4().to_string().into());
    meta.insert("creationTimestamp".into(), now_rfc3339().into());
    for field in ["resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink"] {
        meta.remove(field);
    }
    if obj.get("spec").is_some() || obj.get("template").is_some() {
        metadata_mut(obj).insert("generation".into(), 1.into());
    } else {
        metadata_mut(obj).remove("generation");
    }
    if !has_status(resource) {
        return;
    }
    let status = match (resource.group, resource.plural) {
        // Kubelets register Nodes with their status.
        ("", "nodes") => return,
        ("", "namespaces") => json!({ "phase": "Active" }),
        ("", "pods") => json!({ "phase": "Pending", "qosClass": qos_class(obj) }),
        ("", "persistentvolumes") | ("", "persistentvolumeclaims") => json!({ "phase": "Pending" }),
        _ => json!({}),
    };
    if let Some(m) = obj.as_object_mut() {
        if status.as_object().is_some_and(Map::is_empty) {
            m.remove("status");
        } else {
            m.insert("status".into(), status);
        }
    }
}

/// Upstream's QoS class: Guaranteed when every container has equal cpu and memory requests
/// and limits, BestEffort when none has any, Burstable otherwise.
fn qos_class(pod: &Value) -> &'static str {
    let containers: Vec<&Value> =
        ["containers", "initContainers"].iter().filter_map(|f| pod["spec"][f].as_array()).flatten().collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let requests = &c["resources"]["requests"];
        let limits = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (req, lim) = (requests.get(r), limits.get(r));
            any |= req.is_some() || lim.is_some();
            let equal = match (req, lim) {
                (Some(a), Some(b)) => quantities_equal(a, b),
                (None, Some(_)) => true,
                _ => false,
            };
            guaranteed &= equal;
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

fn quantities_equal(a: &Value, b: &Value) -> bool {
    match (a.as_str().map(api_types::quantity::parse_quantity), b.as_str().map(api_types::quantity::parse_quantity)) {
        (Some(Ok(a)), Some(Ok(b))) => a == b,
        _ => a == b,
    }
}

/// The object an update writes: the main resource keeps the stored status, the `status`
/// subresource changes only status; a namespace's `spec.finalizers` change only through its
/// `finalize` subresource, as upstream.
fn merge_for_update(resource: &ResourceInfo, subresource: Option<&str>, current: &Value, requested: Value) -> Value {
    if resource.kind == "Namespace" && resource.group.is_empty() {
        let finalizers_from = if subresource == Some("finalize") { &requested } else { current };
        let finalizers = finalizers_from.pointer("/spec/finalizers").cloned();
        let mut next = if subresource == Some("finalize") {
            current.clone()
        } else {
            merge_for_update_of(resource, subresource, current, requested)
        };
        if !next["spec"].is_object() {
            next["spec"] = json!({});
        }
        match finalizers {
            Some(f) => next["spec"]["finalizers"] = f,
            None => {
                if let Some(spec) = next["spec"].as_object_mut() {
                    spec.remove("finalizers");
                }
            }
        }
        return next;
    }
    merge_for_update_of(resource, subresource, current, requested)
}

fn merge_for_update_of(resource: &ResourceInfo, subresource: Option<&str>, current: &Value, requested: Value) -> Value {
    match subresource {
        Some("status") => {
            let mut next = current.clone();
            match requested.get("status") {
                Some(s) => next["status"] = s.clone(),
                None => {
                    if let Some(m) = next.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            next
        }
        _ if has_status(resource) => {
            let mut next = requested;
            if let Some(m) = next.as_object_mut() {
                match current.get("status") {
                    Some(s) => {
                        m.insert("status".into(), s.clone());
                    }
                    None => {
                        m.remove("status");
                    }
                }
            }
            next
        }
        _ => requested,
    }
}

/// Keeps what clients may not change, and bumps `generation` when the spec changed.
fn prepare_for_update(current: &Value, next: &mut Value) {
    let old = &current["metadata"];
    let meta = metadata_mut(next);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "name",
        "namespace",
    ] {
        match old.get(field) {
            Some(v) => {
                meta.insert(field.into(), v.clone());
            }
            None => {
                meta.remove(field);
            }
        }
    }
    meta.remove("resourceVersion");
    // Objects with a deletionTimestamp may lose finalizers but not gain new ones.
    let spec_changed = strip(current) != strip(next);
    if spec_changed && old.get("generation").is_some() {
        let g = old["generation"].as_i64().unwrap_or(0) + 1;
        metadata_mut(next).insert("generation".into(), g.into());
    }
}

/// The object without metadata and status: what `generation` tracks.
fn strip(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
    }
    o
}

fn same_object(current: &Value, next: &Value) -> bool {
    let mut a = current.clone();
    let mut b = next.clone();
    metadata_mut(&mut a).remove("resourceVersion");
    metadata_mut(&mut b).remove("resourceVersion");
    a == b
}

/// Whether evicting `pod` spends a disruption: a pod that is finished, already going, or not
/// Ready is no loss to its application.
fn counts_against_budget(pod: &Value) -> bool {
    let phase = object::str_at(pod, "/status/phase").unwrap_or("Pending");
    let ready = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"));
    !matches!(phase, "Succeeded" | "Failed") && pod.pointer("/metadata/deletionTimestamp").is_none() && ready
}

/// A quota's `hard` or `used` map, parsed.
fn quota_map(v: &Value) -> std::collections::BTreeMap<String, i128> {
    let map: std::collections::BTreeMap<String, api_types::k8s_openapi::apimachinery::pkg::api::resource::Quantity> =
        serde_json::from_value(v.clone()).unwrap_or_default();
    api_types::quota::parse(&map)
}

fn is_finalized(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp").is_some()
        && obj.pointer("/metadata/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
        // A namespace's own finalizers (`kubernetes`) are in its spec.
        && obj.pointer("/spec/finalizers").and_then(Value::as_array).is_none_or(Vec::is_empty)
}

fn set_condition(obj: &mut Value, kind: &str, status: &str, now: &str) {
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    if let Some(conds) = obj["status"]["conditions"].as_array_mut() {
        match conds.iter_mut().find(|c| c["type"] == kind) {
            Some(c) if c["status"] == status => {}
            Some(c) => {
                c["status"] = status.into();
                c["lastTransitionTime"] = now.into();
            }
            None => {
                conds.push(json!({ "type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now }))
            }
        }
    }
}

/// Options of a delete, from the query string and/or a `DeleteOptions` body.
#[derive(Debug, Default)]
pub struct DeleteOptions {
    grace_period: Option<i64>,
    propagation: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    dry_run: bool,
}

impl DeleteOptions {
    fn parse(query: &Query, body: &Value) -> Result<Self, Error> {
        if !body.is_null() && !body.is_object() {
            return Err(Error::BadRequest("invalid DeleteOptions: not an object".into()));
        }
        let mut propagation = body["propagationPolicy"]
            .as_str()
            .map(str::to_string)
            .or_else(|| query.value("propagationPolicy").map(str::to_string));
        let orphan =
            body["orphanDependents"].as_bool().or_else(|| query.value("orphanDependents").map(|v| v == "true"));
        if propagation.is_none() && orphan == Some(true) {
            propagation = Some("Orphan".into());
        }
        if let Some(p) = &propagation
            && !matches!(p.as_str(), "Orphan" | "Background" | "Foreground")
        {
            return Err(Error::BadRequest(format!(
                "propagationPolicy: Unsupported value: {p:?}: supported values: \"Foreground\", \"Background\", \"Orphan\""
            )));
        }
        let grace_period = match body["gracePeriodSeconds"].as_i64() {
            Some(g) => Some(g),
            None => query.int("gracePeriodSeconds")?,
        };
        Ok(DeleteOptions {
            grace_period,
            propagation,
            uid: body.pointer("/preconditions/uid").and_then(Value::as_str).map(str::to_string),
            resource_version: body
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: body["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All")),
        })
    }

    fn check_preconditions(&self, resource: &ResourceInfo, name: &str, obj: &Value) -> Result<(), Error> {
        let conflict = |what: &str, want: &str, have: &str| Error::Conflict {
            resource: resource.group_resource(),
            name: name.to_string(),
            message: format!("Precondition failed: {what} in precondition: {want}, {what} in object meta: {have}"),
        };
        if let Some(uid) = &self.uid {
            let have = object::str_at(obj, "/metadata/uid").unwrap_or_default();
            if uid != have {
                return Err(conflict("UID", uid, have));
            }
        }
        if let Some(rv) = &self.resource_version {
            let have = object::resource_version(obj).unwrap_or_default();
            if rv != have {
                return Err(conflict("ResourceVersion", rv, have));
            }
        }
        Ok(())
    }
}

/// What a delete does to an object.
#[derive(Debug, PartialEq)]
enum DeletePlan {
    /// Remove it from storage.
    Now,
    /// Write it back marked for deletion (finalizers pending, or a pod's grace period).
    Mark(Value),
    /// Already being deleted and nothing to shorten.
    Unchanged,
}

/// Decides a delete: finalizers and pods bound to a node are marked (the garbage collector,
/// namespace controller or kubelet finishes them); everything else goes now.
fn plan_delete(resource: &ResourceInfo, current: &Value, options: &DeleteOptions, now: &str) -> DeletePlan {
    let mut next = current.clone();
    let meta = metadata_mut(&mut next);
    meta.remove("resourceVersion");
    let mut finalizers: Vec<String> = meta
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|f| f.as_str().map(str::to_string)).collect())
        .unwrap_or_default();
    let propagation_finalizer = match options.propagation.as_deref() {
        Some("Orphan") => Some("orphan"),
        Some("Foreground") => Some("foregroundDeletion"),
        _ => None,
    };
    if let Some(f) = propagation_finalizer
        && !finalizers.iter().any(|x| x == f)
    {
        finalizers.push(f.to_string());
        meta.insert("finalizers".into(), json!(finalizers));
    }
    let is_namespace = is_core(resource, "namespaces");
    let namespace_finalizers =
        is_namespace && current.pointer("/spec/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty());
    let pod_grace = pod_grace_period(resource, current, options);
    let already = meta.contains_key("deletionTimestamp");

    if let Some(grace) = pod_grace {
        // Graceful pod deletion: the kubelet stops the containers, then deletes with grace 0.
        let current_grace = meta.get("deletionGracePeriodSeconds").and_then(Value::as_i64);
        if already && current_grace.is_some_and(|g| g <= grace) && propagation_finalizer.is_none() {
            return DeletePlan::Unchanged;
        }
        let deadline = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_secs(grace))
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        meta.insert("deletionTimestamp".into(), deadline.into());
        meta.insert("deletionGracePeriodSeconds".into(), grace.into());
        return DeletePlan::Mark(next);
    }
    if finalizers.is_empty() && !namespace_finalizers {
        return DeletePlan::Now;
    }
    if already && propagation_finalizer.is_none() {
        return DeletePlan::Unchanged;
    }
    if !already {
        meta.insert("deletionTimestamp".into(), now.into());
        meta.insert("deletionGracePeriodSeconds".into(), 0.into());
    }
    if is_namespace {
        next["status"]["phase"] = "Terminating".into();
    }
    DeletePlan::Mark(next)
}

/// The grace period for a pod the kubelet must stop first, or None to delete at once.
fn pod_grace_period(resource: &ResourceInfo, pod: &Value, options: &DeleteOptions) -> Option<i64> {
    if !is_core(resource, "pods") {
        return None;
    }
    let bound = object::str_at(pod, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    let finished = matches!(object::str_at(pod, "/status/phase"), Some("Succeeded" | "Failed"));
    let grace = options
        .grace_period
        .or_else(|| pod.pointer("/spec/terminationGracePeriodSeconds").and_then(Value::as_i64))
        .unwrap_or(30);
    (bound && !finished && grace > 0).then_some(grace)
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::registry::by_plural;

    fn pods() -> &'static ResourceInfo {
        by_plural("", "v1", "pods").expect("pods")
    }

    #[test]
    fn bound_pods_are_deleted_gracefully_and_unbound_ones_at_once() {
        let bound = json!({"metadata": {"name": "a"}, "spec": {"nodeName": "n1", "terminationGracePeriodSeconds": 30}});
        let DeletePlan::Mark(marked) = plan_delete(pods(), &bound, &DeleteOptions::default(), "t") else {
            panic!("marked")
        };
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        let unbound = json!({"metadata": {"name": "a"}, "spec": {}});
        assert_eq!(plan_delete(pods(), &unbound, &DeleteOptions::default(), "t"), DeletePlan::Now);
        let zero = DeleteOptions { grace_period: Some(0), ..Default::default() };
        assert_eq!(plan_delete(pods(), &bound, &zero, "t"), DeletePlan::Now);
    }

    #[test]
    fn new_claims_and_volumes_get_their_protection_finalizer_once() {
        let claims = by_plural("", "v1", "persistentvolumeclaims").expect("claims");
        let volumes = by_plural("", "v1", "persistentvolumes").expect("volumes");
        let cms = by_plural("", "v1", "configmaps").expect("configmaps");
        let cases = [
            (claims, json!({"metadata": {"name": "a"}}), json!(["kubernetes.io/pvc-protection"])),
            (claims, json!({"metadata": {"name": "a", "finalizers": null}}), json!(["kubernetes.io/pvc-protection"])),
            (
                claims,
                json!({"metadata": {"name": "a", "finalizers": ["x/y", "kubernetes.io/pvc-protection"]}}),
                json!(["x/y", "kubernetes.io/pvc-protection"]),
            ),
            (
                volumes,
                json!({"metadata": {"name": "a", "finalizers": ["x/y"]}}),
                json!(["x/y", "kubernetes.io/pv-protection"]),
            ),
            (cms, json!({"metadata": {"name": "a"}}), Value::Null),
        ];
        for (resource, mut obj, want) in cases {
            protect_storage_object(resource, &mut obj);
            assert_eq!(obj["metadata"]["finalizers"], want, "{}", resource.plural);
        }
    }

    #[test]
    fn finalizers_and_propagation_policies_mark_instead_of_deleting() {
        let cms = by_plural("", "v1", "configmaps").expect("configmaps");
        let with_finalizer = json!({"metadata": {"name": "a", "finalizers": ["x/y"]}});
        let DeletePlan::Mark(m) = plan_delete(cms, &with_finalizer, &DeleteOptions::default(), "t") else { panic!() };
        assert_eq!(m["metadata"]["deletionTimestamp"], "t");
        let orphan = DeleteOptions { propagation: Some("Orphan".into()), ..Default::default() };
        let DeletePlan::Mark(m) = plan_delete(cms, &json!({"metadata": {"name": "a"}}), &orphan, "t") else { panic!() };
        assert_eq!(m["metadata"]["finalizers"], json!(["orphan"]));
    }

    #[test]
    fn namespaces_terminate_until_their_finalizers_are_done() {
        let ns = by_plural("", "v1", "namespaces").expect("namespaces");
        let obj =
            json!({"metadata": {"name": "a"}, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let DeletePlan::Mark(m) = plan_delete(ns, &obj, &DeleteOptions::default(), "t") else { panic!() };
        assert_eq!(m["status"]["phase"], "Terminating");
    }

    #[test]
    fn updates_keep_server_fields_and_bump_generation_on_spec_change() {
        let deploy = by_plural("apps", "v1", "deployments").expect("deployments");
        let current = json!({"metadata": {"name": "a", "uid": "u1", "generation": 3, "resourceVersion": "7"}, "spec": {"replicas": 1}, "status": {"replicas": 1}});
        let requested =
            json!({"metadata": {"name": "a", "uid": "forged"}, "spec": {"replicas": 2}, "status": {"replicas": 99}});
        let mut next = merge_for_update(deploy, None, &current, requested);
        prepare_for_update(&current, &mut next);
        assert_eq!(next["metadata"]["uid"], "u1");
        assert_eq!(next["metadata"]["generation"], 4);
        assert_eq!(next["status"]["replicas"], 1, "status only changes through /status");
        let status_only = merge_for_update(
            deploy,
            Some("status"),
            &current,
            json!({"spec": {"replicas": 5}, "status": {"replicas": 2}}),
        );
        assert_eq!(
            (status_only["spec"]["replicas"].as_i64(), status_only["status"]["replicas"].as_i64()),
            (Some(1), Some(2))
        );
    }

    #[test]
    fn secret_string_data_is_folded_into_data() {
        let mut s = json!({"data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "hi", "c": "yo"}});
        merge_string_data(&mut s);
        assert_eq!(s, json!({"data": {"a": "eA==", "b": "aGk=", "c": "eW8="}}));
    }

    #[test]
    fn qos_classes_follow_requests_and_limits() {
        let pod = |res: Value| json!({"spec": {"containers": [{"name": "c", "resources": res}]}});
        assert_eq!(qos_class(&pod(json!({}))), "BestEffort");
        assert_eq!(qos_class(&pod(json!({"limits": {"cpu": "1", "memory": "1Gi"}}))), "Guaranteed");
        assert_eq!(qos_class(&pod(json!({"requests": {"cpu": "500m"}}))), "Burstable");
    }

    #[test]
    fn scale_reads_replicas_and_selector() {
        let d = json!({"metadata": {"name": "a", "namespace": "n", "resourceVersion": "5"}, "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}}, "status": {"replicas": 2}});
        let s = scale_of(&d);
        assert_eq!((s["spec"]["replicas"].as_i64(), s["status"]["replicas"].as_i64()), (Some(3), Some(2)));
        assert_eq!(s["status"]["selector"], "app=web");
        assert_eq!(with_replicas(&d, &json!({"spec": {"replicas": 7}}))["spec"]["replicas"], 7);
    }
}

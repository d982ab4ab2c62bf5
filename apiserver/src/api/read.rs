//! get, list and watch.
//!
//! - get reads etcd (a consistent read), as upstream does.
//! - list without `limit` is served from the watch cache once it has caught up with etcd's
//!   current revision; paged lists (`limit`/`continue`) read etcd at one revision, so every
//!   page of a list is consistent; a continue token whose revision was compacted is a 410.
//! - watch is served from the watch cache; a resourceVersion older than its history falls back
//!   to a watch on etcd itself (410 Expired in the stream once etcd has compacted it).

use std::sync::Arc;
use std::time::Duration;

use api_types::fields::FieldSelector;
use api_types::labels::LabelSelector;
use api_types::registry::ResourceInfo;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rand::Rng;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::{Api, Body, Representation, bytes_response, representation};
use crate::cache::{Cache, Event, EventKind, Object, StartAt, Subscription};
use crate::error::Error;
use crate::object;
use crate::request::{Query, ResourceRequest};
use crate::storage::StorageError;
use crate::table;

/// The label and field selectors of a list or watch, plus the namespace and name it is
/// limited to.
pub struct Filter {
    resource: &'static ResourceInfo,
    prefix: String,
    labels: Option<LabelSelector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    pub fn new(api: &Api, req: &ResourceRequest, query: &Query) -> Result<Self, Error> {
        let resource = req.resource;
        let labels = match query.value("labelSelector") {
            Some(s) => Some(
                LabelSelector::parse(s).map_err(|e| Error::BadRequest(format!("unable to parse requirement: {e}")))?,
            ),
            None => None,
        };
        let mut field_text = query.value("fieldSelector").unwrap_or_default().to_string();
        if let Some(name) = &req.name {
            // A watch on /…/pods/<name> is a watch with metadata.name=<name>.
            if !field_text.is_empty() {
                field_text.push(',');
            }
            field_text.push_str(&format!("metadata.name={name}"));
        }
        let fields = if field_text.is_empty() {
            None
        } else {
            let sel = FieldSelector::parse(&field_text)
                .map_err(|e| Error::BadRequest(format!("invalid field selector: {e}")))?;
            for (field, _, _) in sel.requirements() {
                if object::field_value(resource, &Value::Null, field).is_none() {
                    return Err(Error::BadRequest(format!("field label not supported: {field}")));
                }
            }
            Some(sel)
        };
        let prefix = object::list_prefix(&api.root, resource, req.namespace.as_deref());
        Ok(Filter { resource, prefix, labels, fields })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn selects_all(&self) -> bool {
        self.labels.as_ref().is_none_or(LabelSelector::is_empty) && self.fields.is_none()
    }

    pub fn matches(&self, obj: &Object) -> bool {
        obj.key.starts_with(&self.prefix)
            && self.labels.as_ref().is_none_or(|l| l.matches(&obj.labels))
            && self
                .fields
                .as_ref()
                .is_none_or(|f| f.matches(|field| object::field_value(self.resource, obj.value(), field)))
    }
}

/// A continue token: where the next page starts and at which revision.
#[derive(serde::Serialize, serde::Deserialize)]
struct Continue {
    v: String,
    rv: i64,
    start: String,
}

fn encode_continue(rv: i64, next_key: &str) -> String {
    let token = Continue { v: "meta.k8s.io/v1".into(), rv, start: next_key.to_string() };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&token).unwrap_or_default())
}

fn decode_continue(token: &str, prefix: &str) -> Result<Continue, Error> {
    let bad = || {
        Error::BadRequest(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into(),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).map_err(|_| bad())?;
    let c: Continue = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if c.v != "meta.k8s.io/v1" || c.rv <= 0 || !c.start.starts_with(prefix) {
        return Err(bad());
    }
    Ok(c)
}

fn parse_rv(rv: &str) -> Result<i64, Error> {
    rv.parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| Error::BadRequest(format!("invalid resource version: {rv}")))
}

/// The items of a list and what its metadata says.
struct ListResult {
    items: Vec<Arc<Object>>,
    revision: i64,
    continue_token: Option<String>,
    remaining: Option<i64>,
}

impl Api {
    pub(super) async fn get(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, Error> {
        if req.subresource.as_deref() == Some("log") {
            return self.pod_log(req, query).await;
        }
        let repr = representation(headers)?;
        let name = req.name.as_deref().unwrap_or_default();
        let key = self.key(req.resource, req.namespace.as_deref(), name);
        let (kv, _) = self.store.get(&key).await?;
        let kv = kv.ok_or_else(|| Error::not_found(req.resource, name))?;
        let obj = object::decode_from_storage(&kv.value, kv.mod_revision)
            .map_err(|e| Error::Internal(format!("stored object {key} is not valid JSON: {e}")))?;
        let obj = match req.subresource.as_deref() {
            Some("scale") => super::write::scale_of(&obj),
            _ => obj,
        };
        Ok(match repr {
            Representation::Table => {
                let mut t =
                    table::to_table(req.resource, &[&obj], table::IncludeObject::Metadata, jiff::Timestamp::now());
                t["metadata"] = json!({ "resourceVersion": object::resource_version(&obj) });
                super::json_response(StatusCode::OK, &t)
            }
            Representation::Object => super::json_response(StatusCode::OK, &obj),
            Representation::Metadata => super::json_response(StatusCode::OK, &super::partial_metadata(&obj)),
        })
    }

    pub(super) async fn list(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, Error> {
        let repr = representation(headers)?;
        let filter = Filter::new(self, req, query)?;
        let limit = query.int("limit")?.filter(|l| *l > 0);
        let rv = query.value("resourceVersion");
        let exact = query.value("resourceVersionMatch") == Some("Exact");
        let result = if let Some(token) = query.value("continue") {
            let c = decode_continue(token, filter.prefix())?;
            self.list_from_etcd(&filter, Some(c.start), c.rv, limit, true).await?
        } else if (limit.is_some() && rv != Some("0")) || exact {
            let at = rv.map(parse_rv).transpose()?.unwrap_or(0);
            self.list_from_etcd(&filter, None, at, limit, false).await?
        } else {
            self.list_from_cache(&filter, rv).await?
        };
        let resp = match repr {
            Representation::Object => {
                let mut meta = json!({ "resourceVersion": result.revision.to_string() });
                if let Some(c) = &result.continue_token {
                    meta["continue"] = c.clone().into();
                }
                if let Some(n) = result.remaining.filter(|n| *n > 0) {
                    meta["remainingItemCount"] = n.into();
                }
                let head = json!({ "kind": req.resource.list_kind(), "apiVersion": req.resource.api_version(), "metadata": meta });
                bytes_response(StatusCode::OK, "application/json", encode_list(&head, &result.items))
            }
            Representation::Metadata => {
                let mut meta = json!({ "resourceVersion": result.revision.to_string() });
                if let Some(c) = &result.continue_token {
                    meta["continue"] = c.clone().into();
                }
                let items: Vec<Value> = result.items.iter().map(|o| super::partial_metadata(o.value())).collect();
                let list = json!({ "kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "items": items });
                super::json_response(StatusCode::OK, &list)
            }
            Representation::Table => {
                let include = table::parse_include_object(query.value("includeObject").unwrap_or("Metadata"))
                    .ok_or_else(|| Error::BadRequest("includeObject must be one of None, Metadata or Object".into()))?;
                let values: Vec<&Value> = result.items.iter().map(|o| o.value()).collect();
                let mut t = table::to_table(req.resource, &values, include, jiff::Timestamp::now());
                t["metadata"] = json!({ "resourceVersion": result.revision.to_string() });
                if let Some(c) = result.continue_token {
                    t["metadata"]["continue"] = c.into();
                }
                super::json_response(StatusCode::OK, &t)
            }
        };
        Ok(resp)
    }

    /// Serves a list from the watch cache when it is fresh enough for `rv` ("0": anything;
    /// N: at least N; none: current, as etcd confirms), otherwise from etcd.
    async fn list_from_cache(&self, filter: &Filter, rv: Option<&str>) -> Result<ListResult, Error> {
        let cache = self.cache(filter.resource);
        let snapshot = match rv {
            None => self.current_snapshot(cache, filter.prefix()).await?,
            Some("0") => (cache.revision() > 0).then(|| cache.snapshot(filter.prefix())),
            Some(v) => {
                cache.wait_for(parse_rv(v)?, Duration::from_millis(250)).await.then(|| cache.snapshot(filter.prefix()))
            }
        };
        let Some((objects, revision)) = snapshot else {
            return self.list_from_etcd(filter, None, 0, None, false).await;
        };
        let items =
            if filter.selects_all() { objects } else { objects.into_iter().filter(|o| filter.matches(o)).collect() };
        Ok(ListResult { items, revision, continue_token: None, remaining: None })
    }

    /// The cache's objects under `prefix` if they are exactly what etcd holds now, with etcd's
    /// current revision; None if etcd has changes the cache has not applied yet. With etcd 3.4 the
    /// cache cannot learn that it is current from a progress request (see `Cache::wait_for`), so
    /// it asks etcd for a summary of the range instead: a keys-only read of one key, far cheaper
    /// than reading every value. A cache that is behind gets one short wait to catch up.
    async fn current_snapshot(&self, cache: &Cache, prefix: &str) -> Result<Option<(Vec<Arc<Object>>, i64)>, Error> {
        for attempt in 0..2 {
            let (objects, seen) = cache.snapshot(prefix);
            let now = self.store.summary(prefix).await?;
            if now.last_modified <= seen && now.count == objects.len() as i64 {
                return Ok(Some((objects, now.revision)));
            }
            let behind = now.last_modified.max(seen + 1);
            if attempt > 0 || !cache.wait_for(behind, Duration::from_millis(100)).await {
                break;
            }
        }
        Ok(None)
    }

    async fn list_from_etcd(
        &self,
        filter: &Filter,
        start: Option<String>,
        mut revision: i64,
        limit: Option<i64>,
        continuing: bool,
    ) -> Result<ListResult, Error> {
        let mut items = Vec::new();
        let mut next = start;
        let mut remaining;
        loop {
            // Without a limit, etcd is still read in chunks (all at one revision).
            let want = limit.map_or(crate::storage::RANGE_CHUNK, |l| {
                (l - items.len() as i64).clamp(1, crate::storage::RANGE_CHUNK)
            });
            let page = match self.store.list(filter.prefix(), next.as_deref(), revision, want).await {
                Err(StorageError::Compacted { .. }) if continuing => {
                    return Err(Error::Expired(
                        "The provided continue parameter is too old to display a consistent list result. You can \
                         start a new list without the continue parameter, or use the continue token in this \
                         response to retrieve the remainder of the results. Continuing with the provided token \
                         results in an inconsistent list - objects that were created, modified, or deleted \
                         between the time the first chunk was returned and now may show up in the list."
                            .into(),
                    ));
                }
                Err(StorageError::Compacted { .. }) => {
                    return Err(Error::Expired(format!("too old resource version: {revision}")));
                }
                other => other?,
            };
            if revision == 0 {
                revision = page.revision;
            }
            remaining = page.remaining;
            let last_key = page.kvs.last().map(|kv| kv.key.clone());
            for obj in page.kvs.into_iter().filter_map(Object::from_kv) {
                if filter.matches(&obj) {
                    items.push(Arc::new(obj));
                }
            }
            next = last_key.map(|k| format!("{k}\0"));
            let full = limit.is_some_and(|l| items.len() as i64 >= l);
            if full || remaining == 0 || next.is_none() {
                break;
            }
        }
        let continue_token = match (&next, remaining > 0 && limit.is_some()) {
            (Some(k), true) => Some(encode_continue(revision, k)),
            _ => None,
        };
        let remaining = (continue_token.is_some() && filter.selects_all()).then_some(remaining);
        Ok(ListResult { items, revision, continue_token, remaining })
    }

    pub(super) async fn watch(
        &self,
        req: &ResourceRequest,
        query: &Query,
        headers: &HeaderMap,
    ) -> Result<Response<Body>, Error> {
        let repr = representation(headers)?;
        let filter = Filter::new(self, req, query)?;
        let timeout = match query.int("timeoutSeconds")? {
            Some(s) if s > 0 => Duration::from_secs(s as u64),
            _ => Duration::from_secs(rand::rng().random_range(1800..3600)),
        };
        let bookmarks = query.flag("allowWatchBookmarks");
        let initial_events = query.get("sendInitialEvents") == Some("true");
        let rv = query.value("resourceVersion");
        let cache = self.cache(req.resource).clone();
        // Without a resourceVersion a watch starts from the current state (a consistent read),
        // then follows changes after that revision.
        let (start, current) = match rv {
            None => {
                let listed = self.list_from_cache(&filter, None).await?;
                (StartAt::After(listed.revision), Some(listed))
            }
            Some("0") => (StartAt::Snapshot, None),
            Some(_) if initial_events => (StartAt::Snapshot, None),
            Some(v) => (StartAt::After(parse_rv(v)?), None),
        };
        let source = match cache.subscribe(start) {
            Ok(mut sub) => {
                if let Some(listed) = current {
                    let added = listed.items.into_iter().map(|o| {
                        Arc::new(Event { kind: EventKind::Added, revision: o.revision, object: o, prev: None })
                    });
                    sub.initial.splice(0..0, added);
                }
                Source::Cache(sub)
            }
            Err(too_old) => {
                // Never the case without a resourceVersion: etcd's current revision is at least the
                // cache's, so the initial list above is never dropped here.
                let StartAt::After(from) = start else { unreachable!("snapshots are never too old") };
                tracing::debug!(
                    resource = req.resource.plural,
                    from,
                    oldest = too_old.oldest,
                    "watch older than cache; reading etcd"
                );
                Source::Etcd(self.store.watch(filter.prefix(), from + 1, true).await?, from)
            }
        };
        let (tx, rx) = mpsc::channel::<Bytes>(256);
        let stream =
            futures::StreamExt::map(tokio_stream_wrapper(rx), |b| Ok::<_, std::convert::Infallible>(Frame::data(b)));
        let gauge = self.metrics.watch_opened(req.resource.plural);
        let writer = Writer { filter, repr, bookmarks, initial_events, tx, resource: req.resource };
        let shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let _gauge = gauge;
            tokio::select! {
                () = writer.run(source) => {}
                () = tokio::time::sleep(timeout) => {}
                () = shutdown.cancelled() => {}
            }
        });
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
        Ok(resp)
    }
}

fn tokio_stream_wrapper(mut rx: mpsc::Receiver<Bytes>) -> impl futures::Stream<Item = Bytes> {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// `{"kind":…,"apiVersion":…,"metadata":…,"items":[…]}` built from the cached encodings.
fn encode_list(head: &Value, items: &[Arc<Object>]) -> Bytes {
    let head = serde_json::to_vec(head).unwrap_or_default();
    let size: usize = items.iter().map(|o| o.json.len() + 1).sum();
    let mut out = BytesMut::with_capacity(head.len() + size + 16);
    // `head` is an object: drop its closing brace and append the items.
    out.put_slice(&head[..head.len() - 1]);
    out.put_slice(b",\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&o.json);
    }
    out.put_slice(b"]}");
    out.freeze()
}

enum Source {
    Cache(Subscription),
    Etcd(etcd_client::WatchStream, i64),
}

struct Writer {
    filter: Filter,
    repr: Representation,
    bookmarks: bool,
    initial_events: bool,
    tx: mpsc::Sender<Bytes>,
    resource: &'static ResourceInfo,
}

impl Writer {
    async fn run(self, source: Source) {
        match source {
            Source::Cache(sub) => self.follow_cache(sub).await,
            Source::Etcd(stream, from) => self.follow_etcd(stream, from).await,
        }
    }

    async fn follow_cache(self, sub: Subscription) {
        let Subscription { initial, mut live, after } = sub;
        let mut last = after;
        // One write per revision, so a watch that ends (timeout, lag) never ends inside one.
        for group in initial.chunk_by(|a, b| a.revision == b.revision) {
            if !self.send_events(group.iter().map(|e| &**e)).await {
                return;
            }
        }
        if self.initial_events && !self.bookmark(after, true).await {
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(10));
        tick.tick().await;
        let mut bookmarked = after;
        loop {
            tokio::select! {
                changes = live.recv() => match changes {
                    Ok(changes) => {
                        let fresh = changes.iter().filter(|e| e.revision > after);
                        last = changes.last().map_or(last, |e| e.revision.max(last));
                        if !self.send_events(fresh.map(|e| &**e)).await { return; }
                    }
                    // Too slow to keep up: end the watch; the client re-watches from its last RV.
                    Err(broadcast::error::RecvError::Lagged(_) | broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if self.bookmarks && last > bookmarked {
                        bookmarked = last;
                        if !self.bookmark(last, false).await { return; }
                    }
                }
                () = self.tx.closed() => return,
            }
        }
    }

    async fn follow_etcd(self, mut stream: etcd_client::WatchStream, from: i64) {
        loop {
            let resp = tokio::select! {
                m = stream.message() => m,
                () = self.tx.closed() => return,
            };
            let resp = match resp {
                Ok(Some(r)) => r,
                _ => return,
            };
            if resp.canceled() {
                if resp.compact_revision() > 0 {
                    let status =
                        Error::Expired(format!("too old resource version: {from} ({})", resp.compact_revision()))
                            .to_status();
                    let _ = self.tx.send(encode_event("ERROR", &serde_json::to_vec(&status).unwrap_or_default())).await;
                }
                return;
            }
            let mut events = Vec::with_capacity(resp.events().len());
            for ev in resp.events() {
                let Some(kv) = ev.kv() else { continue };
                let kv = crate::storage::Kv::from(kv);
                let prev = ev.prev_kv().and_then(|p| Object::from_kv(crate::storage::Kv::from(p))).map(Arc::new);
                events.push(match ev.event_type() {
                    etcd_client::EventType::Put => {
                        let kind = if prev.is_some() { EventKind::Modified } else { EventKind::Added };
                        let revision = kv.mod_revision;
                        let Some(object) = Object::from_kv(kv) else {
                            continue;
                        };
                        Event { kind, revision, object: Arc::new(object), prev }
                    }
                    etcd_client::EventType::Delete => {
                        let Some(p) = prev else { continue };
                        let object = Arc::new(Object::with_revision(&p, kv.mod_revision));
                        Event { kind: EventKind::Deleted, revision: kv.mod_revision, object, prev: Some(p) }
                    }
                });
            }
            if !self.send_events(events.iter()).await {
                return;
            }
        }
    }

    /// Sends what this watcher should see of `events` in one write. False once the client is gone.
    async fn send_events(&self, events: impl Iterator<Item = &Event>) -> bool {
        let mut lines = events.filter_map(|ev| self.encode(ev));
        let Some(first) = lines.next() else { return true };
        let Some(second) = lines.next() else { return self.tx.send(first).await.is_ok() };
        let mut out = BytesMut::from(&first[..]);
        out.put_slice(&second);
        lines.for_each(|line| out.put_slice(&line));
        self.tx.send(out.freeze()).await.is_ok()
    }

    /// The line this watcher should see of `ev`, if any.
    fn encode(&self, ev: &Event) -> Option<Bytes> {
        let now = self.filter.matches(&ev.object);
        let before = ev.prev.as_ref().is_some_and(|p| self.filter.matches(p));
        let (kind, obj): (&str, std::borrow::Cow<'_, Object>) = match (ev.kind, before, now) {
            (EventKind::Added, _, true) => ("ADDED", std::borrow::Cow::Borrowed(&*ev.object)),
            (EventKind::Modified, true, true) => ("MODIFIED", std::borrow::Cow::Borrowed(&*ev.object)),
            (EventKind::Modified, false, true) => ("ADDED", std::borrow::Cow::Borrowed(&*ev.object)),
            // Leaving the selector: DELETED with the last state that matched, at this revision.
            (EventKind::Modified, true, false) => match &ev.prev {
                Some(p) => ("DELETED", std::borrow::Cow::Owned(Object::with_revision(p, ev.revision))),
                None => return None,
            },
            (EventKind::Deleted, _, true) => ("DELETED", std::borrow::Cow::Borrowed(&*ev.object)),
            _ => return None,
        };
        let line = match self.repr {
            Representation::Object => encode_event(kind, &obj.json),
            Representation::Metadata => {
                encode_event(kind, &serde_json::to_vec(&super::partial_metadata(obj.value())).unwrap_or_default())
            }
            Representation::Table => {
                let t = table::to_table(
                    self.resource,
                    &[obj.value()],
                    table::IncludeObject::Metadata,
                    jiff::Timestamp::now(),
                );
                encode_event(kind, &serde_json::to_vec(&t).unwrap_or_default())
            }
        };
        Some(line)
    }

    async fn bookmark(&self, revision: i64, initial_events_end: bool) -> bool {
        let mut meta = json!({ "resourceVersion": revision.to_string() });
        if initial_events_end {
            meta["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let obj = json!({ "kind": self.resource.kind, "apiVersion": self.resource.api_version(), "metadata": meta });
        self.tx.send(encode_event("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())).await.is_ok()
    }
}

fn encode_event(kind: &str, object: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(object.len() + 32);
    out.put_slice(b"{\"type\":\"");
    out.put_slice(kind.as_bytes());
    out.put_slice(b"\",\"object\":");
    out.put_slice(object);
    out.put_slice(b"}\n");
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn continue_tokens_round_trip_and_reject_other_prefixes() {
        let t = encode_continue(42, "/registry/core/pods/default/b\0");
        let c = decode_continue(&t, "/registry/core/pods/").expect("valid");
        assert_eq!((c.rv, c.start.as_str()), (42, "/registry/core/pods/default/b\0"));
        assert!(decode_continue(&t, "/registry/core/secrets/").is_err());
        assert!(decode_continue("garbage", "/").is_err());
    }

    #[test]
    fn lists_are_concatenated_from_cached_encodings() {
        let items = vec![
            Arc::new(
                Object::from_kv(crate::storage::Kv {
                    key: "k1".into(),
                    value: br#"{"metadata":{"name":"a"}}"#.to_vec(),
                    mod_revision: 3,
                })
                .expect("object"),
            ),
            Arc::new(
                Object::from_kv(crate::storage::Kv {
                    key: "k2".into(),
                    value: br#"{"metadata":{"name":"b"}}"#.to_vec(),
                    mod_revision: 4,
                })
                .expect("object"),
            ),
        ];
        let head = json!({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "9"}});
        let list: Value = serde_json::from_slice(&encode_list(&head, &items)).expect("valid JSON");
        assert_eq!(list["items"][1]["metadata"]["name"], "b");
        assert_eq!(list["items"][0]["metadata"]["resourceVersion"], "3");
        assert_eq!(list["metadata"]["resourceVersion"], "9");
    }
}

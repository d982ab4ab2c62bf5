//! The watch cache: one etcd watch per resource feeds an in-memory copy of every object and a
//! bounded history of recent events. All API watches of that resource are served from it (N
//! watchers, one etcd watch), and so are lists that can be answered consistently from memory.
//!
//! Ordering: the feeder applies the events of one etcd watch response to the state, appends
//! them to the history and broadcasts them together under one write lock, so a watcher that
//! subscribes under the read lock sees every event exactly once — either in its replay or on the
//! broadcast channel — and never part of a revision (a batch of creates shares one revision).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use api_types::registry::ResourceInfo;
use bytes::Bytes;
use etcd_client::EventType;
use serde_json::Value;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::object;
use crate::storage::{Kv, StorageError, Store};

/// How many events each resource's history keeps for watchers resuming from a resourceVersion.
pub const DEFAULT_HISTORY: usize = 10_000;
/// Broadcasts (groups of events) a slow watcher may fall behind before its watch is closed (it
/// then re-watches).
const BROADCAST_CAPACITY: usize = 16_384;

/// One object as the cache holds it: its served encoding (made once, shared by every reader),
/// its labels, and its parsed value, which is only built when something needs it (field
/// selectors, tables): most writes are only ever forwarded as bytes.
#[derive(Debug, Clone)]
pub struct Object {
    pub key: String,
    pub json: Bytes,
    pub labels: BTreeMap<String, String>,
    pub revision: i64,
    value: OnceLock<Value>,
}

/// Just the labels of an object, read without building the rest.
#[derive(serde::Deserialize)]
struct LabelsOnly {
    #[serde(default)]
    metadata: MetadataLabels,
}

#[derive(serde::Deserialize, Default)]
struct MetadataLabels {
    #[serde(default)]
    labels: Option<BTreeMap<String, String>>,
}

impl Object {
    /// An object read from etcd: the stored bytes with the resourceVersion spliced in. None
    /// (logged) when the bytes are not a JSON object with metadata.
    pub fn from_kv(kv: Kv) -> Option<Self> {
        let labels = match serde_json::from_slice::<LabelsOnly>(&kv.value) {
            Ok(l) => l.metadata.labels.unwrap_or_default(),
            Err(e) => {
                warn!(key = %kv.key, error = %e, "undecodable object in etcd");
                return None;
            }
        };
        let Some(json) = object::with_resource_version(&kv.value, kv.mod_revision) else {
            warn!(key = %kv.key, "object in etcd has no metadata");
            return None;
        };
        Some(Object { key: kv.key, json: Bytes::from(json), labels, revision: kv.mod_revision, value: OnceLock::new() })
    }

    /// The parsed object (with its resourceVersion).
    pub fn value(&self) -> &Value {
        self.value.get_or_init(|| serde_json::from_slice(&self.json).unwrap_or(Value::Null))
    }

    /// The same object stamped with another resourceVersion (a deletion's, say).
    pub fn with_revision(&self, revision: i64) -> Self {
        Object::new(self.key.clone(), self.value().clone(), revision)
    }

    fn new(key: String, mut value: Value, revision: i64) -> Self {
        object::set_resource_version(&mut value, revision);
        let json = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        let labels = object::labels(&value);
        Object { key, json, labels, revision, value: OnceLock::from(value) }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Added => "ADDED",
            EventKind::Modified => "MODIFIED",
            EventKind::Deleted => "DELETED",
        }
    }
}

/// A change to one object. For deletions `object` is the last state with the deletion's
/// resourceVersion; `prev` is the state before the change, if there was one.
#[derive(Debug)]
pub struct Event {
    pub kind: EventKind,
    pub object: Arc<Object>,
    pub prev: Option<Arc<Object>>,
    pub revision: i64,
}

/// The events of one etcd watch response (whole revisions), delivered to watchers as one.
pub type Changes = Arc<Vec<Arc<Event>>>;

/// One change read from etcd, parsed before the state is locked.
enum Change {
    Put(Object),
    Delete(Kv, Option<Kv>),
}

struct State {
    objects: BTreeMap<String, Arc<Object>>,
    history: VecDeque<Arc<Event>>,
    capacity: usize,
    /// A watch from any resourceVersion ≥ this can be replayed from `history`.
    oldest: i64,
    revision: i64,
}

/// Where a new watcher starts.
#[derive(Debug, Clone, Copy)]
pub enum StartAt {
    /// Every current object as ADDED, then changes.
    Snapshot,
    /// Changes after this resourceVersion.
    After(i64),
}

/// A watcher's view: events to send first, then the live channel (skip revisions ≤ `after`).
pub struct Subscription {
    pub initial: Vec<Arc<Event>>,
    pub live: broadcast::Receiver<Changes>,
    pub after: i64,
}

/// The resourceVersion asked for is older than the cache's history.
#[derive(Debug)]
pub struct TooOld {
    pub oldest: i64,
}

/// A cache for one resource. Clones share it.
#[derive(Clone)]
pub struct Cache(Arc<Inner>);

struct Inner {
    resource: &'static ResourceInfo,
    prefix: String,
    state: RwLock<State>,
    events: broadcast::Sender<Changes>,
    revision: watch::Sender<i64>,
}

impl Cache {
    /// Creates the cache and starts its feeder; it is usable once its revision is above 0.
    pub fn start(
        store: Store,
        resource: &'static ResourceInfo,
        prefix: String,
        capacity: usize,
        stop: CancellationToken,
    ) -> Self {
        let (events, _) = broadcast::channel(BROADCAST_CAPACITY);
        let (revision, _) = watch::channel(0);
        let cache = Cache(Arc::new(Inner {
            resource,
            prefix,
            state: RwLock::new(State {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                capacity,
                oldest: i64::MAX,
                revision: 0,
            }),
            events,
            revision,
        }));
        let feeder = cache.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = feeder.feed(store) => {}
                () = stop.cancelled() => {}
            }
        });
        cache
    }

    pub fn resource(&self) -> &'static ResourceInfo {
        self.0.resource
    }

    /// The revision the cache reflects (0 before the first list).
    pub fn revision(&self) -> i64 {
        *self.0.revision.borrow()
    }

    /// Waits until the cache has seen revision `at_least`; false on timeout. The cache only
    /// learns of revisions through its own events and etcd's periodic progress notifications:
    /// it never asks etcd for progress, because etcd 3.4 answers such a request with the store's
    /// revision even while events for the watcher are still queued, which would let a reader
    /// take a stale cache for a current one.
    pub async fn wait_for(&self, at_least: i64, timeout: Duration) -> bool {
        let mut rx = self.0.revision.subscribe();
        if *rx.borrow() >= at_least {
            return true;
        }
        tokio::time::timeout(timeout, rx.wait_for(|r| *r >= at_least)).await.is_ok_and(|r| r.is_ok())
    }

    /// The current objects under `prefix` (all of them for the resource prefix), in key order,
    /// and the revision they reflect.
    pub fn snapshot(&self, prefix: &str) -> (Vec<Arc<Object>>, i64) {
        let state = self.read();
        let objects = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, o)| o.clone())
            .collect();
        (objects, state.revision)
    }

    /// One object by key.
    pub fn get(&self, key: &str) -> Option<Arc<Object>> {
        self.read().objects.get(key).cloned()
    }

    pub fn subscribe(&self, start: StartAt) -> Result<Subscription, TooOld> {
        let state = self.read();
        let live = self.0.events.subscribe();
        match start {
            StartAt::Snapshot => {
                let initial = state
                    .objects
                    .values()
                    .map(|o| {
                        Arc::new(Event { kind: EventKind::Added, object: o.clone(), prev: None, revision: o.revision })
                    })
                    .collect();
                Ok(Subscription { initial, live, after: state.revision })
            }
            StartAt::After(rv) if rv >= state.oldest => {
                let initial = state.history.iter().filter(|e| e.revision > rv).cloned().collect();
                Ok(Subscription { initial, live, after: state.revision.max(rv) })
            }
            StartAt::After(_) => Err(TooOld { oldest: state.oldest }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.0.state.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.0.state.write().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Lists, then follows the etcd watch; relists when the watch breaks beyond repair.
    async fn feed(&self, store: Store) {
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.list_and_watch(&store).await {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    warn!(resource = self.0.resource.plural, error = %e, "watch cache feed failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn list_and_watch(&self, store: &Store) -> Result<(), StorageError> {
        let mut revision = self.relist(store).await?;
        // Resume the watch from where we are while it can be resumed; relist only on compaction.
        loop {
            let mut stream = store.watch(&self.0.prefix, revision + 1, false).await?;
            loop {
                let Some(resp) = stream.message().await? else {
                    break;
                };
                if resp.canceled() {
                    if resp.compact_revision() > 0 {
                        debug!(resource = self.0.resource.plural, "watch compacted; relisting");
                        return Ok(());
                    }
                    break;
                }
                let header_rev = resp.header().map_or(0, |h| h.revision());
                if resp.events().is_empty() {
                    // etcd's periodic progress notification, sent through the watcher's own
                    // channel, so every event up to its revision has been delivered.
                    if !resp.created() && resp.watch_id() >= 0 && header_rev > revision {
                        revision = header_rev;
                        self.advance(revision);
                    }
                    continue;
                }
                let mut changes = Vec::with_capacity(resp.events().len());
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let kv = Kv::from(kv);
                    revision = kv.mod_revision.max(revision);
                    match ev.event_type() {
                        EventType::Put => changes.extend(Object::from_kv(kv).map(Change::Put)),
                        EventType::Delete => changes.push(Change::Delete(kv, ev.prev_kv().map(Kv::from))),
                    }
                }
                self.apply(changes);
                self.advance(revision);
            }
            // The stream ended (etcd member restart, network): resume from `revision`.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Loads every object and replaces the state, emitting the differences as events so that
    /// open watchers stay correct. Returns the revision of the list.
    async fn relist(&self, store: &Store) -> Result<i64, StorageError> {
        let page = store.list_all(&self.0.prefix).await?;
        let mut fresh = BTreeMap::new();
        for obj in page.kvs.into_iter().filter_map(Object::from_kv) {
            fresh.insert(obj.key.clone(), Arc::new(obj));
        }
        let revision = page.revision;
        let mut state = self.write();
        let old = std::mem::take(&mut state.objects);
        let mut changes = Vec::new();
        for (key, obj) in &fresh {
            match old.get(key) {
                Some(prev) if prev.revision == obj.revision => {}
                prev => {
                    let kind = if prev.is_some() { EventKind::Modified } else { EventKind::Added };
                    changes.push(Arc::new(Event { kind, object: obj.clone(), prev: prev.cloned(), revision }));
                }
            }
        }
        for (key, prev) in old {
            if !fresh.contains_key(&key) {
                let gone = Arc::new(prev.with_revision(revision));
                changes.push(Arc::new(Event { kind: EventKind::Deleted, object: gone, prev: Some(prev), revision }));
            }
        }
        if !changes.is_empty() {
            let _ = self.0.events.send(Arc::new(changes));
        }
        state.objects = fresh;
        state.history.clear();
        state.oldest = revision;
        state.revision = revision;
        drop(state);
        self.0.revision.send_replace(revision);
        Ok(revision)
    }

    /// Applies one watch response's changes under one lock and broadcasts them as one group.
    fn apply(&self, changes: Vec<Change>) {
        let mut state = self.write();
        let mut events = Vec::with_capacity(changes.len());
        for change in changes {
            let event = match change {
                Change::Put(obj) => {
                    let obj = Arc::new(obj);
                    let prev = state.objects.insert(obj.key.clone(), obj.clone());
                    let kind = if prev.is_some() { EventKind::Modified } else { EventKind::Added };
                    Event { kind, revision: obj.revision, object: obj, prev }
                }
                Change::Delete(kv, prev_kv) => {
                    let cached = state.objects.remove(&kv.key);
                    let last = match (&cached, prev_kv) {
                        (Some(c), _) => Some(c.value().clone()),
                        (None, Some(p)) => serde_json::from_slice(&p.value).ok(),
                        (None, None) => None,
                    };
                    let Some(last) = last else { continue };
                    let object = Arc::new(Object::new(kv.key, last, kv.mod_revision));
                    Event { kind: EventKind::Deleted, object, prev: cached, revision: kv.mod_revision }
                }
            };
            let event = Arc::new(event);
            state.revision = state.revision.max(event.revision);
            if state.history.len() == state.capacity
                && let Some(dropped) = state.history.pop_front()
            {
                state.oldest = dropped.revision;
            }
            state.history.push_back(event.clone());
            events.push(event);
        }
        if !events.is_empty() {
            // No receivers is fine: nobody watches this resource right now.
            let _ = self.0.events.send(Arc::new(events));
        }
    }

    fn advance(&self, revision: i64) {
        let mut state = self.write();
        state.revision = state.revision.max(revision);
        let now = state.revision;
        drop(state);
        self.0.revision.send_if_modified(|r| {
            let changed = *r < now;
            *r = now.max(*r);
            changed
        });
    }
}

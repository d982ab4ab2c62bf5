//! Shared informers: one kube-rs watcher per kind for the whole process, feeding a cache that
//! every controller reads, and change handlers that map an object to work-queue keys.
//!
//! A controller asks [`Informers::get`] for the kinds it needs and registers its handlers
//! before [`Informers::start`]; asking twice for a kind gives the same informer. The cache is
//! indexed by namespace, since most reconciles read "the pods of this namespace".
//!
//! A relist (at start, or after the watch fell too far behind) is diffed against what was
//! cached, so handlers see an update for everything still there and a deletion for everything
//! gone, and never miss a deletion that happened while the watch was down.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, RwLock};

use futures::StreamExt;
use kube::Resource;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// What a handler is told.
#[derive(Debug)]
pub enum Change<K> {
    /// Added (`old` is `None`) or changed.
    Applied {
        old: Option<Arc<K>>,
        new: Arc<K>,
    },
    Deleted(Arc<K>),
}

impl<K> Change<K> {
    /// The object as it is now, or as it was last seen before its deletion.
    pub fn object(&self) -> &Arc<K> {
        match self {
            Change::Applied { new, .. } => new,
            Change::Deleted(old) => old,
        }
    }
}

type Handler<K> = Box<dyn Fn(&Change<K>) + Send + Sync>;
/// Objects by namespace (`""` for cluster-scoped kinds), then name.
type Objects<K> = HashMap<String, HashMap<String, Arc<K>>>;
type Starter = Box<dyn FnOnce(CancellationToken) + Send>;

struct Shared<K> {
    objects: RwLock<Objects<K>>,
    handlers: RwLock<Vec<Handler<K>>>,
    synced: tokio::sync::watch::Sender<bool>,
}

/// The cache of one kind, and its handlers. Clones share everything.
pub struct Informer<K> {
    shared: Arc<Shared<K>>,
}

impl<K> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer { shared: self.shared.clone() }
    }
}

fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn place<K: Resource>(object: &K) -> (String, String) {
    let meta = object.meta();
    (meta.namespace.clone().unwrap_or_default(), meta.name.clone().unwrap_or_default())
}

impl<K: Resource + 'static> Informer<K> {
    fn new() -> Self {
        Informer {
            shared: Arc::new(Shared {
                objects: RwLock::default(),
                handlers: RwLock::default(),
                synced: tokio::sync::watch::Sender::new(false),
            }),
        }
    }

    /// One object; `namespace` is `""` for cluster-scoped kinds.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        read(&self.shared.objects).get(namespace).and_then(|m| m.get(name)).cloned()
    }

    /// Every object of one namespace.
    pub fn list(&self, namespace: &str) -> Vec<Arc<K>> {
        read(&self.shared.objects).get(namespace).map(|m| m.values().cloned().collect()).unwrap_or_default()
    }

    /// Every object.
    pub fn all(&self) -> Vec<Arc<K>> {
        read(&self.shared.objects).values().flat_map(|m| m.values().cloned()).collect()
    }

    /// Calls `handler` on every change, from the watch task: it should only enqueue keys.
    pub fn on_change(&self, handler: impl Fn(&Change<K>) + Send + Sync + 'static) {
        write(&self.shared.handlers).push(Box::new(handler));
    }

    /// Resolves once the first list has been cached.
    pub async fn synced(&self) {
        let mut rx = self.shared.synced.subscribe();
        let _ = rx.wait_for(|synced| *synced).await;
    }

    /// [`Informer::synced`] as an owned future (for [`all_synced`]).
    pub fn until_synced(&self) -> futures::future::BoxFuture<'static, ()>
    where
        K: Send + Sync,
    {
        let me = self.clone();
        Box::pin(async move { me.synced().await })
    }

    pub fn is_synced(&self) -> bool {
        *self.shared.synced.borrow()
    }

    fn dispatch(&self, change: &Change<K>) {
        for handler in read(&self.shared.handlers).iter() {
            handler(change);
        }
    }

    fn apply(&self, object: K) {
        let (ns, name) = place(&object);
        let new = Arc::new(object);
        let old = write(&self.shared.objects).entry(ns).or_default().insert(name, new.clone());
        self.dispatch(&Change::Applied { old, new });
    }

    fn delete(&self, object: K) {
        let (ns, name) = place(&object);
        let old = {
            let mut objects = write(&self.shared.objects);
            let old = objects.get_mut(&ns).and_then(|m| m.remove(&name));
            if objects.get(&ns).is_some_and(HashMap::is_empty) {
                objects.remove(&ns);
            }
            old
        };
        self.dispatch(&Change::Deleted(old.unwrap_or_else(|| Arc::new(object))));
    }

    /// Swaps in a fresh list and tells the handlers what it changed.
    fn replace(&self, fresh: Objects<K>) {
        let mut previous = std::mem::replace(&mut *write(&self.shared.objects), fresh.clone());
        for (ns, objects) in fresh {
            let mut before = previous.remove(&ns).unwrap_or_default();
            for (name, new) in objects {
                let old = before.remove(&name);
                self.dispatch(&Change::Applied { old, new });
            }
            previous.insert(ns, before);
        }
        for gone in previous.into_values().flat_map(HashMap::into_values) {
            self.dispatch(&Change::Deleted(gone));
        }
        self.shared.synced.send_replace(true);
    }
}

/// Resolves once every one of `waits` (from [`Informer::until_synced`]) has: a controller's
/// `synced`.
pub fn all_synced<const N: usize>(
    waits: [futures::future::BoxFuture<'static, ()>; N],
) -> futures::future::BoxFuture<'static, ()> {
    Box::pin(async move {
        futures::future::join_all(waits).await;
    })
}

/// Every informer of the process, by kind.
pub struct Informers {
    client: kube::Client,
    kinds: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
    starters: Mutex<Vec<Starter>>,
}

impl Informers {
    pub fn new(client: kube::Client) -> Self {
        Informers { client, kinds: Mutex::default(), starters: Mutex::default() }
    }

    /// The informer of kind `K`, made on first use; it watches once [`Informers::start`] runs.
    pub fn get<K>(&self) -> Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let mut kinds = self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(informer) = kinds.get(&TypeId::of::<K>()).and_then(|i| i.downcast_ref::<Informer<K>>()) {
            return informer.clone();
        }
        let informer = Informer::<K>::new();
        kinds.insert(TypeId::of::<K>(), Box::new(informer.clone()));
        let api: Api<K> = Api::all(self.client.clone());
        let watched = informer.clone();
        self.starters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(move |shutdown| {
            tokio::spawn(watch(api, watched, shutdown));
        }));
        informer
    }

    /// Runs `start` along with the informers (for watches of a controller's own, such as the
    /// garbage collector's metadata-only watches of every kind).
    pub fn on_start(&self, start: impl FnOnce(CancellationToken) + Send + 'static) {
        self.starters.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(Box::new(start));
    }

    /// Starts watching every kind asked for so far.
    pub fn start(&self, shutdown: &CancellationToken) {
        let starters = std::mem::take(&mut *self.starters.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for start in starters {
            start(shutdown.clone());
        }
    }
}

async fn watch<K>(api: Api<K>, informer: Informer<K>, shutdown: CancellationToken)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let kind = K::kind(&());
    // The first list may come from the API server's watch cache, as client-go's reflector does.
    let config = watcher::Config::default().any_semantic();
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    let mut relist: Option<Objects<K>> = None;
    loop {
        let event = tokio::select! {
            event = events.next() => event,
            () = shutdown.cancelled() => return,
        };
        match event {
            None => return,
            Some(Err(e)) => tracing::warn!(%kind, error = %e, "watch failed; retrying"),
            Some(Ok(watcher::Event::Apply(object))) => informer.apply(object),
            Some(Ok(watcher::Event::Delete(object))) => informer.delete(object),
            Some(Ok(watcher::Event::Init)) => relist = Some(Objects::new()),
            Some(Ok(watcher::Event::InitApply(object))) => {
                let (ns, name) = place(&object);
                relist.get_or_insert_default().entry(ns).or_default().insert(name, Arc::new(object));
            }
            Some(Ok(watcher::Event::InitDone)) => {
                let fresh = relist.take().unwrap_or_default();
                tracing::debug!(%kind, namespaces = fresh.len(), "listed");
                informer.replace(fresh);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;

    use super::*;

    fn cm(ns: &str, name: &str, rv: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                name: Some(name.into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn recording(informer: &Informer<ConfigMap>) -> Arc<Mutex<Vec<String>>> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        informer.on_change(move |change| {
            let line = match change {
                Change::Applied { old, new } => format!(
                    "applied {} {}→{}",
                    new.metadata.name.as_deref().unwrap_or(""),
                    old.as_ref().and_then(|o| o.metadata.resource_version.as_deref()).unwrap_or("-"),
                    new.metadata.resource_version.as_deref().unwrap_or(""),
                ),
                Change::Deleted(old) => format!("deleted {}", old.metadata.name.as_deref().unwrap_or("")),
            };
            log.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
        });
        seen
    }

    #[test]
    fn a_relist_reports_updates_and_the_deletions_it_missed() {
        let informer = Informer::<ConfigMap>::new();
        let seen = recording(&informer);
        informer.apply(cm("a", "x", "1"));
        informer.apply(cm("a", "y", "2"));
        informer.apply(cm("b", "z", "3"));
        informer.delete(cm("b", "z", "4"));
        assert_eq!(informer.list("b").len(), 0);
        let mut fresh = Objects::new();
        fresh.entry("a".into()).or_default().insert("x".into(), Arc::new(cm("a", "x", "5")));
        fresh.entry("c".into()).or_default().insert("w".into(), Arc::new(cm("c", "w", "6")));
        informer.replace(fresh);
        let mut seen = seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        seen[4..].sort();
        assert_eq!(
            seen,
            [
                "applied x -→1",
                "applied y -→2",
                "applied z -→3",
                "deleted z",
                "applied w -→6",
                "applied x 1→5",
                "deleted y"
            ]
        );
        assert!(informer.is_synced());
        assert_eq!(informer.get("a", "x").and_then(|c| c.metadata.resource_version.clone()).as_deref(), Some("5"));
        assert!(informer.get("a", "y").is_none());
        assert_eq!(informer.all().len(), 2);
    }
}

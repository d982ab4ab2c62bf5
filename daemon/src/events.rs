//! core/v1 Events, so `kubectl describe` tells the story (the kubelet's Pulling, Started,
//! Killing…; the scheduler's Scheduled and FailedScheduling; the controllers' SuccessfulCreate…). A repeat of the same event
//! within a minute bumps its count instead of adding one, and is written at most every 10 s.
//! Writes go out in the background, a few at a time; when too many wait, new ones are dropped
//! (as upstream's broadcaster does) so events never crowd out the work they describe.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::Semaphore;

const REPEAT_WINDOW: Duration = Duration::from_secs(60);
const REPEAT_WRITE_EVERY: Duration = Duration::from_secs(10);
/// How often events older than [`REPEAT_WINDOW`] are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(10);
/// Event writes in flight at once, and waiting at most.
const CONCURRENT_WRITES: usize = 8;
const MAX_WAITING: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Normal,
    Warning,
}

/// What was written for one (object, field, reason, message).
#[derive(Debug, Clone)]
struct Seen {
    name: String,
    count: i32,
    written: Instant,
}

/// Events written recently, by (object uid, field path, reason, message).
#[derive(Default)]
struct Recent {
    events: HashMap<(String, String, String, String), Seen>,
    pruned: Option<Instant>,
}

/// Records events as one component (`kubelet` on a host, `default-scheduler`).
pub struct Recorder {
    client: kube::Client,
    component: String,
    host: Option<String>,
    seen: Mutex<Recent>,
    writers: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Recorder {
    pub fn new(client: kube::Client, component: &str, host: Option<&str>) -> Self {
        Recorder {
            client,
            component: component.to_string(),
            host: host.map(str::to_string),
            seen: Mutex::new(Recent::default()),
            writers: Arc::new(Semaphore::new(CONCURRENT_WRITES)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Runs `write` in the background, a few at a time; dropped when too many wait.
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, write: F) {
        if self.waiting.fetch_add(1, Ordering::Relaxed) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
            tracing::debug!("too many events waiting; dropping one");
            return;
        }
        let (writers, waiting) = (self.writers.clone(), self.waiting.clone());
        tokio::spawn(async move {
            let _permit = writers.acquire().await;
            write.await;
            waiting.fetch_sub(1, Ordering::Relaxed);
        });
    }

    /// Records an event about `pod` (and `container`, when given), in the background.
    pub fn pod(&self, pod: &Pod, container: Option<&str>, type_: Type, reason: &str, message: String) {
        let reference = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: pod.metadata.namespace.clone(),
            name: pod.metadata.name.clone(),
            uid: pod.metadata.uid.clone(),
            resource_version: pod.metadata.resource_version.clone(),
            field_path: container.map(|c| format!("spec.containers{{{c}}}")),
        };
        self.record(reference, type_, reason, message);
    }

    /// Records an event about any object (`ReplicaSet`, `Deployment`…), in the background.
    pub fn object<K>(&self, object: &K, type_: Type, reason: &str, message: String)
    where
        K: kube::Resource<DynamicType = ()>,
    {
        let meta = object.meta();
        let reference = ObjectReference {
            api_version: Some(K::api_version(&()).into_owned()),
            kind: Some(K::kind(&()).into_owned()),
            namespace: meta.namespace.clone(),
            name: meta.name.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path: None,
        };
        self.record(reference, type_, reason, message);
    }

    /// Records an event about `involved` (its namespace, or `default` for cluster objects).
    pub fn record(&self, involved: ObjectReference, type_: Type, reason: &str, message: String) {
        let ns = involved.namespace.clone().unwrap_or_else(|| "default".into());
        let key = (
            involved.uid.clone().unwrap_or_default(),
            involved.field_path.clone().unwrap_or_default(),
            reason.to_string(),
            message.clone(),
        );
        let object_name = involved.name.clone().unwrap_or_default();
        let now = Instant::now();
        // (event name, Some(count) for a repeat)
        let (name, repeat) = {
            let Ok(mut guard) = self.seen.lock() else { return };
            // Forgetting old events is a pass over all of them: at most every PRUNE_EVERY, not
            // once per event (a burst of 10,000 events made that quadratic).
            if guard.pruned.is_none_or(|t| now.duration_since(t) >= PRUNE_EVERY) {
                guard.events.retain(|_, s| now.duration_since(s.written) < REPEAT_WINDOW);
                guard.pruned = Some(now);
            }
            let seen = &mut guard.events;
            match seen.get_mut(&key) {
                Some(s) if now.duration_since(s.written) < REPEAT_WRITE_EVERY => return,
                Some(s) if now.duration_since(s.written) < REPEAT_WINDOW => {
                    s.count += 1;
                    s.written = now;
                    (s.name.clone(), Some(s.count))
                }
                _ => {
                    let name = format!("{object_name}.{:x}", Timestamp::now().as_nanosecond());
                    seen.insert(key, Seen { name: name.clone(), count: 1, written: now });
                    (name, None)
                }
            }
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let time = Time(Timestamp::now());
        if let Some(count) = repeat {
            let patch = serde_json::json!({"count": count, "lastTimestamp": time});
            self.spawn(async move {
                if let Err(e) = events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    tracing::debug!(error = %e, event = %name, "updating an event failed");
                }
            });
            return;
        }
        let event = Event {
            metadata: ObjectMeta { name: Some(name), namespace: Some(ns.clone()), ..Default::default() },
            involved_object: involved,
            reason: Some(reason.to_string()),
            message: Some(message),
            type_: Some(match type_ {
                Type::Normal => "Normal".into(),
                Type::Warning => "Warning".into(),
            }),
            count: Some(1),
            first_timestamp: Some(time.clone()),
            last_timestamp: Some(time),
            source: Some(EventSource { component: Some(self.component.clone()), host: self.host.clone() }),
            reporting_component: Some(self.component.clone()),
            reporting_instance: Some(self.host.clone().unwrap_or_else(|| self.component.clone())),
            ..Default::default()
        };
        self.spawn(async move {
            if let Err(e) = events.create(&PostParams::default(), &event).await {
                tracing::debug!(error = %e, "recording an event failed");
            }
        });
    }
}

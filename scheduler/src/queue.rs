//! The scheduling queue: pods waiting for a decision, upstream's three parts.
//! - *active*: ready now, highest priority first, then oldest;
//! - *backoff*: failed recently, each pod for 1 s doubling to 10 s per attempt;
//! - *unschedulable*: no node fitted; they go back to active (or backoff) when something that
//!   could change the answer happens ([`Queue::move_all`]), and at least every
//!   [`UNSCHEDULABLE_FLUSH`].
//!
//! Pure: time comes in as an argument, so the tests need no clock.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
pub const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Ready {
    priority: i32,
    created: k8s_openapi::jiff::Timestamp,
    seq: u64,
    uid: String,
}

impl Ord for Ready {
    fn cmp(&self, o: &Self) -> Ordering {
        self.priority.cmp(&o.priority).then(o.created.cmp(&self.created)).then(o.seq.cmp(&self.seq))
    }
}

impl PartialOrd for Ready {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Where {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    /// Popped and being decided or bound.
    InFlight,
}

#[derive(Debug)]
struct Entry {
    pod: Arc<Pod>,
    at: Where,
    attempts: u32,
    /// When it first entered the queue (for the end-to-end latency).
    since: Instant,
}

/// Depth of each part, for the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depths {
    pub active: usize,
    pub backoff: usize,
    pub unschedulable: usize,
}

#[derive(Debug, Default)]
pub struct Queue {
    pods: HashMap<String, Entry>,
    /// May hold stale entries (a pod moved or deleted since); they are skipped on pop.
    heap: BinaryHeap<Ready>,
    /// Back-off ends, earliest first; stale entries are skipped too.
    backoffs: BinaryHeap<Reverse<(Instant, String)>>,
    seq: u64,
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

/// Back-off after `attempts` failures: 1 s, 2 s, 4 s, 8 s, 10 s, 10 s…
pub fn backoff(attempts: u32) -> Duration {
    INITIAL_BACKOFF.saturating_mul(1 << attempts.saturating_sub(1).min(8)).min(MAX_BACKOFF)
}

impl Queue {
    fn push_active(&mut self, uid: &str) {
        let Some(e) = self.pods.get_mut(uid) else { return };
        e.at = Where::Active;
        self.seq += 1;
        let ready = Ready {
            priority: e.pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            created: e
                .pod
                .metadata
                .creation_timestamp
                .as_ref()
                .map_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH, |t| t.0),
            seq: self.seq,
            uid: uid.to_string(),
        };
        self.heap.push(ready);
    }

    /// A pod that needs a node: new ones go to active; a known one gets its latest version,
    /// and goes back to active if its spec or labels changed while it waited as unschedulable.
    pub fn upsert(&mut self, pod: Arc<Pod>, now: Instant) {
        let key = uid(&pod);
        match self.pods.get_mut(&key) {
            None => {
                self.pods.insert(key.clone(), Entry { pod, at: Where::Active, attempts: 0, since: now });
                self.push_active(&key);
            }
            Some(e) => {
                let changed = e.pod.spec != pod.spec || e.pod.metadata.labels != pod.metadata.labels;
                e.pod = pod;
                if changed && matches!(e.at, Where::Unschedulable(_)) {
                    self.push_active(&key);
                }
            }
        }
    }

    /// The pod was bound or deleted.
    pub fn remove(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    /// The next pod to decide, if one is ready; it stays known (in flight) until
    /// [`done`](Self::done), [`unschedulable`](Self::unschedulable) or [`failed`](Self::failed).
    pub fn pop(&mut self, now: Instant) -> Option<(Arc<Pod>, Instant)> {
        self.flush_backoff(now);
        while let Some(ready) = self.heap.pop() {
            let Some(e) = self.pods.get_mut(&ready.uid) else { continue };
            if e.at != Where::Active {
                continue;
            }
            e.at = Where::InFlight;
            return Some((e.pod.clone(), e.since));
        }
        None
    }

    /// Bound: forget it.
    pub fn done(&mut self, uid: &str) {
        self.pods.remove(uid);
    }

    /// No node fits: wait for a change (or the periodic flush).
    pub fn unschedulable(&mut self, uid: &str, now: Instant) {
        if let Some(e) = self.pods.get_mut(uid) {
            e.attempts += 1;
            e.at = Where::Unschedulable(now);
        }
    }

    /// An error (a failed binding, an API error): retry after the back-off.
    pub fn failed(&mut self, uid: &str, now: Instant) {
        if let Some(e) = self.pods.get_mut(uid) {
            e.attempts += 1;
            let until = now + backoff(e.attempts);
            e.at = Where::Backoff(until);
            self.backoffs.push(Reverse((until, uid.to_string())));
        }
    }

    /// Whether a pop might find a pod without waiting (stale entries aside).
    pub fn maybe_ready(&self) -> bool {
        !self.heap.is_empty()
    }

    /// Something happened that could let unschedulable pods fit: each goes to active, or to
    /// backoff if its back-off has not run out.
    pub fn move_all(&mut self, now: Instant) {
        self.move_unschedulable(now, |_| true);
    }

    /// Unschedulable pods that waited [`UNSCHEDULABLE_FLUSH`] go back, even with no event.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        self.move_unschedulable(now, |since| now.duration_since(since) >= UNSCHEDULABLE_FLUSH);
    }

    fn move_unschedulable(&mut self, now: Instant, due: impl Fn(Instant) -> bool) {
        let moving: Vec<(String, Instant)> = self
            .pods
            .iter()
            .filter_map(|(k, e)| match e.at {
                Where::Unschedulable(since) if due(since) => Some((k.clone(), since)),
                _ => None,
            })
            .collect();
        for (key, since) in moving {
            let attempts = self.pods.get(&key).map_or(0, |e| e.attempts);
            let until = since + backoff(attempts);
            if until > now {
                if let Some(e) = self.pods.get_mut(&key) {
                    e.at = Where::Backoff(until);
                }
                self.backoffs.push(Reverse((until, key)));
            } else {
                self.push_active(&key);
            }
        }
    }

    /// Pods whose back-off ran out go to active.
    pub fn flush_backoff(&mut self, now: Instant) {
        while let Some(Reverse((until, key))) = self.backoffs.peek().cloned() {
            if until > now {
                break;
            }
            self.backoffs.pop();
            if self.pods.get(&key).is_some_and(|e| e.at == Where::Backoff(until)) {
                self.push_active(&key);
            }
        }
    }

    /// When the earliest back-off ends (to wake up then).
    pub fn next_backoff(&mut self) -> Option<Instant> {
        while let Some(Reverse((until, key))) = self.backoffs.peek() {
            if self.pods.get(key).is_some_and(|e| e.at == Where::Backoff(*until)) {
                return Some(*until);
            }
            self.backoffs.pop();
        }
        None
    }

    pub fn depths(&self) -> Depths {
        let mut d = Depths::default();
        for e in self.pods.values() {
            match e.at {
                Where::Active => d.active += 1,
                Where::Backoff(_) => d.backoff += 1,
                Where::Unschedulable(_) => d.unschedulable += 1,
                Where::InFlight => {}
            }
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, priority: i32, created: i64) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": uid, "uid": uid, "creationTimestamp": k8s_openapi::jiff::Timestamp::from_second(created).expect("t").to_string()},
                "spec": {"containers": [{"name": "c"}], "priority": priority}
            }))
            .expect("pod"),
        )
    }

    fn popped(q: &mut Queue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now).map(|(p, _)| uid(&p))).collect()
    }

    #[test]
    fn higher_priority_first_then_older() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.upsert(pod("young", 0, 200), now);
        q.upsert(pod("old", 0, 100), now);
        q.upsert(pod("urgent", 10, 300), now);
        assert_eq!(popped(&mut q, now), ["urgent", "old", "young"]);
    }

    #[test]
    fn failures_back_off_doubling_to_ten_seconds() {
        assert_eq!((1..=6).map(|a| backoff(a).as_secs()).collect::<Vec<_>>(), [1, 2, 4, 8, 10, 10]);
        let now = Instant::now();
        let mut q = Queue::default();
        q.upsert(pod("p", 0, 1), now);
        assert!(q.pop(now).is_some());
        q.failed("p", now);
        assert!(q.pop(now + Duration::from_millis(900)).is_none());
        assert!(q.pop(now + Duration::from_secs(1)).is_some());
        q.failed("p", now);
        assert!(q.pop(now + Duration::from_millis(1900)).is_none(), "second failure: 2 s");
        assert_eq!(q.next_backoff(), Some(now + Duration::from_secs(2)));
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_or_the_minute() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.upsert(pod("p", 0, 1), now);
        q.pop(now);
        q.unschedulable("p", now);
        assert!(q.pop(now + Duration::from_secs(30)).is_none(), "nothing changed");
        assert_eq!(q.depths().unschedulable, 1);
        q.move_all(now + Duration::from_millis(500));
        assert!(q.pop(now + Duration::from_millis(500)).is_none(), "still in its 1 s back-off");
        assert!(q.pop(now + Duration::from_secs(1)).is_some(), "then active");
        q.unschedulable("p", now);
        q.flush_unschedulable(now + Duration::from_secs(59));
        assert!(q.pop(now + Duration::from_secs(59)).is_none());
        q.flush_unschedulable(now + Duration::from_secs(60));
        assert!(q.pop(now + Duration::from_secs(60)).is_some());
    }

    #[test]
    fn a_changed_unschedulable_pod_is_retried_and_removed_pods_never_pop() {
        let now = Instant::now();
        let mut q = Queue::default();
        q.upsert(pod("p", 0, 1), now);
        q.pop(now);
        q.unschedulable("p", now);
        q.upsert(pod("p", 0, 1), now);
        assert!(q.pop(now).is_none(), "same spec: still unschedulable");
        q.upsert(pod("p", 5, 1), now);
        assert!(q.pop(now).is_some(), "changed spec: active again");
        q.upsert(pod("gone", 0, 1), now);
        q.remove("gone");
        assert!(q.pop(now).is_none());
    }
}

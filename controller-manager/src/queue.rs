//! A controller's work queue of object keys (`namespace/name`), with client-go's semantics:
//! - a key waiting is queued once, however often it is added;
//! - a key being reconciled is never handed to a second worker; added meanwhile, it is queued
//!   again when the first worker is [`done`](Queue::done);
//! - a key can be added after a delay, and a failing key backs off (5 ms doubling, up to
//!   [`MAX_BACKOFF`]) until it is [`forget`](Queue::forget)-ten.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub const BASE_BACKOFF: Duration = Duration::from_millis(5);
/// Upstream waits up to 1000 s; a minute keeps recovery prompt after the API server was away.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Queue {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    ready: VecDeque<String>,
    /// Keys waiting in `ready` or to be re-queued when their reconcile is done.
    dirty: HashSet<String>,
    processing: HashSet<String>,
    /// Delayed adds: the earliest time per key, and a heap of (time, key) that may hold stale
    /// entries (checked against `delayed` when they come up).
    delayed: HashMap<String, Instant>,
    timers: BinaryHeap<Reverse<(Instant, String)>>,
    failures: HashMap<String, u32>,
}

impl State {
    fn add(&mut self, key: String) -> bool {
        if !self.dirty.insert(key.clone()) {
            return false;
        }
        if self.processing.contains(&key) {
            return false;
        }
        self.ready.push_back(key);
        true
    }

    fn add_at(&mut self, key: String, at: Instant, now: Instant) -> bool {
        if at <= now {
            return self.add(key);
        }
        match self.delayed.get(&key) {
            Some(t) if *t <= at => {}
            _ => {
                self.delayed.insert(key.clone(), at);
                self.timers.push(Reverse((at, key)));
            }
        }
        false
    }

    /// Moves the delayed keys that are due; returns when the next one is.
    fn promote(&mut self, now: Instant) -> Option<Instant> {
        while let Some(Reverse((at, _))) = self.timers.peek() {
            if *at > now {
                return Some(*at);
            }
            let Some(Reverse((at, key))) = self.timers.pop() else { break };
            if self.delayed.get(&key) == Some(&at) {
                self.delayed.remove(&key);
                self.add(key);
            }
        }
        None
    }

    fn take(&mut self) -> Option<String> {
        let key = self.ready.pop_front()?;
        self.dirty.remove(&key);
        self.processing.insert(key.clone());
        Some(key)
    }
}

/// The back-off after `failures` failures in a row: 5 ms, 10 ms, 20 ms… up to [`MAX_BACKOFF`].
pub fn backoff(failures: u32) -> Duration {
    BASE_BACKOFF.saturating_mul(2u32.saturating_pow(failures.min(31))).min(MAX_BACKOFF)
}

impl Queue {
    pub fn new() -> Self {
        Queue::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let mut guard = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }

    pub fn add(&self, key: String) {
        if self.with(|s| s.add(key)) {
            self.wake.notify_one();
        }
    }

    /// Adds `key` once `delay` has passed (at once for zero); an earlier pending time wins.
    pub fn add_after(&self, key: String, delay: Duration) {
        let now = Instant::now();
        self.with(|s| s.add_at(key, now + delay, now));
        // Either a key is ready or there may be a new earliest timer: a sleeping worker looks again.
        self.wake.notify_one();
    }

    /// Adds `key` after its back-off, which doubles with each call until [`Queue::forget`].
    pub fn add_rate_limited(&self, key: String) {
        let failures = self.with(|s| {
            let n = s.failures.entry(key.clone()).or_insert(0);
            *n += 1;
            *n - 1
        });
        self.add_after(key, backoff(failures));
    }

    /// Clears the back-off of `key` (its reconcile succeeded).
    pub fn forget(&self, key: &str) {
        self.with(|s| s.failures.remove(key));
    }

    /// Failures in a row of `key`.
    pub fn failures(&self, key: &str) -> u32 {
        self.with(|s| s.failures.get(key).copied().unwrap_or(0))
    }

    /// The next key to reconcile, once there is one; `None` on shutdown. Call
    /// [`Queue::done`] with it afterwards.
    pub async fn next(&self, shutdown: &CancellationToken) -> Option<String> {
        loop {
            let next_timer = self.with(|s| {
                let next_timer = s.promote(Instant::now());
                s.take().map(Ok).unwrap_or(Err(next_timer))
            });
            let next_timer = match next_timer {
                Ok(key) => {
                    // Others may be ready too: pass the wake-up on.
                    if !self.is_empty() {
                        self.wake.notify_one();
                    }
                    return Some(key);
                }
                Err(t) => t,
            };
            let sleep = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.wake.notified() => {}
                () = sleep => {}
                () = shutdown.cancelled() => return None,
            }
        }
    }

    /// Marks `key`'s reconcile finished; a key added meanwhile is queued again.
    pub fn done(&self, key: &str) {
        let requeued = self.with(|s| {
            s.processing.remove(key);
            if s.dirty.contains(key) {
                s.ready.push_back(key.to_string());
                true
            } else {
                false
            }
        });
        if requeued {
            self.wake.notify_one();
        }
    }

    /// Keys ready to be reconciled now (the depth a metric shows).
    pub fn len(&self) -> usize {
        self.with(|s| s.ready.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(s: &mut State) -> Vec<String> {
        std::iter::from_fn(|| s.take()).collect()
    }

    #[test]
    fn a_key_added_twice_is_queued_once() {
        let mut s = State::default();
        s.add("a".into());
        s.add("b".into());
        s.add("a".into());
        assert_eq!(taken(&mut s), ["a", "b"]);
    }

    #[test]
    fn a_key_added_while_processing_comes_back_after_done() {
        let q = Queue::new();
        q.add("a".into());
        let key = q.with(State::take);
        assert_eq!(key.as_deref(), Some("a"));
        q.add("a".into());
        assert_eq!(q.with(State::take), None, "never two workers on one key");
        q.done("a");
        assert_eq!(q.with(State::take).as_deref(), Some("a"));
        q.done("a");
        assert_eq!(q.with(State::take), None);
    }

    #[test]
    fn delayed_keys_come_up_in_time_order_and_the_earliest_time_wins() {
        let mut s = State::default();
        let t0 = Instant::now();
        s.add_at("late".into(), t0 + Duration::from_secs(3), t0);
        s.add_at("soon".into(), t0 + Duration::from_secs(1), t0);
        s.add_at("late".into(), t0 + Duration::from_secs(2), t0);
        s.add_at("soon".into(), t0 + Duration::from_secs(5), t0);
        assert_eq!(s.promote(t0), Some(t0 + Duration::from_secs(1)));
        assert!(taken(&mut s).is_empty());
        assert_eq!(s.promote(t0 + Duration::from_millis(1500)), Some(t0 + Duration::from_secs(2)));
        assert_eq!(taken(&mut s), ["soon"]);
        assert_eq!(s.promote(t0 + Duration::from_secs(10)), None);
        assert_eq!(taken(&mut s), ["late"]);
    }

    #[test]
    fn backoff_doubles_from_five_ms_to_a_minute() {
        let cases = [(0, 5), (1, 10), (2, 20), (10, 5120), (14, 60_000), (40, 60_000)];
        for (failures, ms) in cases {
            assert_eq!(backoff(failures), Duration::from_millis(ms), "{failures}");
        }
    }

    #[tokio::test]
    async fn next_waits_for_a_delayed_key() {
        let q = Queue::new();
        q.add_after("a".into(), Duration::from_millis(30));
        let started = Instant::now();
        let key = q.next(&CancellationToken::new()).await;
        assert_eq!(key.as_deref(), Some("a"));
        assert!(started.elapsed() >= Duration::from_millis(25));
    }

    #[tokio::test]
    async fn next_returns_none_on_shutdown() {
        let q = Queue::new();
        let shutdown = CancellationToken::new();
        shutdown.cancel();
        assert_eq!(q.next(&shutdown).await, None);
    }
}

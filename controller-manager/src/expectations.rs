//! Expectations: what a controller has just written and not yet seen come back through its
//! watch. Until the cache has caught up with a controller's own creates and deletes, the cache
//! under-counts or over-counts, and acting on it would create or delete twice. So a reconcile
//! that finds its expectations unmet only updates status; the watch events that meet them
//! enqueue the owner again. Expectations older than [`TTL`] are dropped (a missed event must not
//! wedge a controller for ever), as upstream does.
//!
//! Creations are counted (the new pods' names are not known before the API server answers);
//! deletions are tracked by pod UID, so seeing one pod first get its `deletionTimestamp` and
//! then disappear counts once.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    creations: i64,
    deletions: HashSet<String>,
    set: Instant,
}

/// Expectations by owner key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    pending: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, Pending>) -> T) -> T {
        f(&mut self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether the cache has seen everything `key` wrote, so it may act on it again.
    pub fn satisfied(&self, key: &str) -> bool {
        self.satisfied_at(key, Instant::now())
    }

    fn satisfied_at(&self, key: &str, now: Instant) -> bool {
        self.with(|p| match p.get(key) {
            None => true,
            Some(e) => (e.creations <= 0 && e.deletions.is_empty()) || now.duration_since(e.set) > TTL,
        })
    }

    /// About to create `count` objects for `key` (replaces what was expected before).
    pub fn expect_creations(&self, key: &str, count: usize) {
        self.set(key, count, HashSet::new());
    }

    /// About to delete the pods with these UIDs for `key`.
    pub fn expect_deletions(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.set(key, 0, uids.into_iter().collect());
    }

    fn set(&self, key: &str, creations: usize, deletions: HashSet<String>) {
        let creations = i64::try_from(creations).unwrap_or(i64::MAX);
        self.with(|p| p.insert(key.to_string(), Pending { creations, deletions, set: Instant::now() }));
    }

    /// One creation for `key` was seen (or failed, so it never will be).
    pub fn creation_observed(&self, key: &str) {
        self.with(|p| {
            if let Some(e) = p.get_mut(key) {
                e.creations -= 1;
            }
        });
    }

    /// The pod `uid` of `key` was seen going (or its delete failed).
    pub fn deletion_observed(&self, key: &str, uid: &str) {
        self.with(|p| {
            if let Some(e) = p.get_mut(key) {
                e.deletions.remove(uid);
            }
        });
    }

    /// Forgets `key` (its owner is gone).
    pub fn forget(&self, key: &str) {
        self.with(|p| p.remove(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_once_every_write_is_seen() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a"), "nothing expected");
        e.expect_creations("ns/a", 2);
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"), "an extra pod seen does not unbalance it");
    }

    #[test]
    fn a_deletion_seen_twice_counts_once() {
        let e = Expectations::default();
        e.expect_deletions("ns/a", ["u1".to_string(), "u2".to_string()]);
        e.deletion_observed("ns/a", "u1");
        e.deletion_observed("ns/a", "u1");
        assert!(!e.satisfied("ns/a"));
        e.deletion_observed("ns/a", "u2");
        assert!(e.satisfied("ns/a"));
    }

    #[test]
    fn expectations_expire() {
        let e = Expectations::default();
        e.expect_creations("ns/a", 1);
        assert!(!e.satisfied_at("ns/a", Instant::now()));
        assert!(e.satisfied_at("ns/a", Instant::now() + TTL + Duration::from_secs(1)));
        e.forget("ns/a");
        assert!(e.satisfied("ns/a"));
    }
}

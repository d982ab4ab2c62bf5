//! Group commit of creates. Every create is an etcd transaction "put if absent", and etcd spends
//! most of such a transaction on what is paid once per request (gRPC, raft, the backend's
//! read buffer), not per key. So creates that arrive while earlier ones are still in etcd wait
//! and go together in one transaction: one compare per key, all of them or none. A lone create
//! goes at once, as before; under load batches grow by themselves, up to etcd's limits.
//!
//! The objects of one batch share its revision, so one resourceVersion can name several objects
//! (of no consequence to clients, which compare resourceVersions of one object only). The watch
//! cache and watches deliver a revision's events together, so a watch never stops inside one.

use std::sync::Arc;
use std::time::Instant;

use etcd_client::{Compare, CompareOp, KvClient, Txn, TxnOp, TxnOpResponse};
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::StorageError;
use crate::metrics::Metrics;

/// Transactions of creates in etcd at once. More batches in flight keep etcd's pipeline full;
/// fewer make bigger batches. Measured here: 8 in flight of ≤ 8 creates each, 2.0× the rate of
/// plain puts; one create per transaction, 0.7×.
const IN_FLIGHT: usize = 8;
/// Keys in one transaction: etcd's default `--max-txn-ops`.
const MAX_OPS: usize = 128;
/// Bytes in one transaction, under etcd's default `--max-request-bytes` of 1.5 MiB. A single
/// create larger than this still goes, alone.
const MAX_BYTES: usize = 1 << 20;

/// A create waiting for its transaction.
pub(super) struct Pending {
    pub key: String,
    pub value: Vec<u8>,
    /// Keys created beside the object (an allocated IP or port), all or nothing with it.
    pub extra: Vec<(String, Vec<u8>)>,
    pub done: oneshot::Sender<Result<i64, StorageError>>,
}

impl Pending {
    fn keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.key.as_str()).chain(self.extra.iter().map(|(k, _)| k.as_str()))
    }

    fn bytes(&self) -> usize {
        self.key.len() + self.value.len() + self.extra.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
    }
}

/// Whether `item` may join `batch`: within etcd's limits, and no key twice (etcd refuses a
/// transaction that writes one key twice; the second create then waits for the next batch).
fn admits(batch: &[Pending], item: &Pending) -> bool {
    if batch.is_empty() {
        return true;
    }
    let ops = batch.iter().map(|p| 1 + p.extra.len()).sum::<usize>() + 1 + item.extra.len();
    let bytes = batch.iter().map(Pending::bytes).sum::<usize>() + item.bytes();
    ops <= MAX_OPS && bytes <= MAX_BYTES && !item.keys().any(|k| batch.iter().flat_map(Pending::keys).any(|b| b == k))
}

/// What a failed batch means for one of its creates, from whether each of its keys exists.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    AlreadyExists,
    KeyTaken(String),
    /// Its own keys were free: another create made the batch fail; try it again alone.
    Retry,
}

fn outcome(keys: &[&str], exists: &[bool]) -> Outcome {
    match exists.iter().position(|e| *e) {
        Some(0) => Outcome::AlreadyExists,
        Some(i) => Outcome::KeyTaken(keys[i].to_string()),
        None => Outcome::Retry,
    }
}

/// Takes creates from `rx` and writes them in batches until every sender is gone.
pub(super) async fn run(kv: KvClient, metrics: Metrics, mut rx: mpsc::UnboundedReceiver<Pending>) {
    let slots = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut carried = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let first = match carried.take() {
            Some(p) => p,
            None => match rx.recv().await {
                Some(p) => p,
                None => return,
            },
        };
        let mut batch = vec![first];
        while let Ok(item) = rx.try_recv() {
            if !admits(&batch, &item) {
                carried = Some(item);
                break;
            }
            batch.push(item);
        }
        let (kv, metrics) = (kv.clone(), metrics.clone());
        tokio::spawn(async move {
            commit(kv, &metrics, batch).await;
            drop(slot);
        });
    }
}

async fn commit(kv: KvClient, metrics: &Metrics, mut batch: Vec<Pending>) {
    let start = Instant::now();
    if batch.len() == 1 {
        let p = batch.pop().expect("one create");
        let result = create(kv, &p.key, p.value, &p.extra).await;
        metrics.observe_etcd("create", start.elapsed());
        let _ = p.done.send(result);
        return;
    }
    let mut when = Vec::new();
    let mut then = Vec::new();
    let mut otherwise = Vec::new();
    for p in &batch {
        for (key, value) in std::iter::once((&p.key, &p.value)).chain(p.extra.iter().map(|(k, v)| (k, v))) {
            when.push(Compare::version(key.as_str(), CompareOp::Equal, 0));
            then.push(TxnOp::put(key.as_str(), value.clone(), None));
            otherwise.push(TxnOp::get(key.as_str(), None));
        }
    }
    let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
    let resp = super::members::resend(&kv, |mut kv| {
        let txn = txn.clone();
        async move { kv.txn(txn).await }
    })
    .await;
    metrics.observe_etcd("create", start.elapsed());
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            let e = Arc::new(e);
            for p in batch {
                let _ = p.done.send(Err(StorageError::Etcd(e.clone())));
            }
            return;
        }
    };
    if resp.succeeded() {
        let revision = resp.header().map_or(0, |h| h.revision());
        for p in batch {
            let _ = p.done.send(Ok(revision));
        }
        return;
    }
    // Some key exists: answer the creates it belongs to, and try the others again one by one.
    let mut exists =
        resp.op_responses().into_iter().map(|op| matches!(op, TxnOpResponse::Get(g) if !g.kvs().is_empty()));
    let mut retries = Vec::new();
    for p in batch {
        let keys: Vec<&str> = p.keys().collect();
        let found: Vec<bool> = exists.by_ref().take(keys.len()).collect();
        let result = match outcome(&keys, &found) {
            Outcome::AlreadyExists => Err(StorageError::AlreadyExists),
            Outcome::KeyTaken(k) => Err(StorageError::KeyTaken(k)),
            Outcome::Retry => {
                retries.push(p);
                continue;
            }
        };
        let _ = p.done.send(result);
    }
    futures::future::join_all(retries.into_iter().map(|p| {
        let kv = kv.clone();
        async move {
            let result = create(kv, &p.key, p.value, &p.extra).await;
            let _ = p.done.send(result);
        }
    }))
    .await;
}

/// One create as its own transaction: `key` and every `extra` key, only if none exists.
async fn create(kv: KvClient, key: &str, value: Vec<u8>, extra: &[(String, Vec<u8>)]) -> Result<i64, StorageError> {
    let mut when = vec![Compare::version(key, CompareOp::Equal, 0)];
    let mut then = vec![TxnOp::put(key, value, None)];
    let mut otherwise = vec![TxnOp::get(key, None)];
    for (k, v) in extra {
        when.push(Compare::version(k.as_str(), CompareOp::Equal, 0));
        then.push(TxnOp::put(k.as_str(), v.clone(), None));
        otherwise.push(TxnOp::get(k.as_str(), None));
    }
    let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
    let resp = super::members::resend(&kv, |mut kv| {
        let txn = txn.clone();
        async move { kv.txn(txn).await }
    })
    .await?;
    if resp.succeeded() {
        return Ok(resp.header().map_or(0, |h| h.revision()));
    }
    let keys: Vec<&str> = std::iter::once(key).chain(extra.iter().map(|(k, _)| k.as_str())).collect();
    let exists: Vec<bool> =
        resp.op_responses().into_iter().map(|op| matches!(op, TxnOpResponse::Get(g) if !g.kvs().is_empty())).collect();
    match outcome(&keys, &exists) {
        Outcome::AlreadyExists => Err(StorageError::AlreadyExists),
        Outcome::KeyTaken(k) => Err(StorageError::KeyTaken(k)),
        // Nothing exists now, though something did when etcd compared: a conflict.
        Outcome::Retry => Err(StorageError::Conflict),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(key: &str, extra: &[&str], size: usize) -> Pending {
        Pending {
            key: key.into(),
            value: vec![b'x'; size],
            extra: extra.iter().map(|k| (k.to_string(), Vec::new())).collect(),
            done: oneshot::channel().0,
        }
    }

    #[test]
    fn admits_within_limits_and_without_repeated_keys() {
        let batch = vec![pending("/a", &["/ip/1"], 10), pending("/b", &[], 10)];
        let cases: Vec<(&str, Pending, bool)> = vec![
            ("a new key", pending("/c", &[], 10), true),
            ("the same object key", pending("/a", &[], 10), false),
            ("an extra key already in the batch", pending("/c", &["/ip/1"], 10), false),
            ("its object key among the extras", pending("/ip/1", &[], 10), false),
            ("too many bytes", pending("/c", &[], MAX_BYTES), false),
        ];
        for (name, item, want) in cases {
            assert_eq!(admits(&batch, &item), want, "{name}");
        }
        assert!(admits(&[], &pending("/huge", &[], 2 * MAX_BYTES)), "a lone create always goes");
        let full: Vec<Pending> = (0..MAX_OPS).map(|i| pending(&format!("/k{i}"), &[], 1)).collect();
        assert!(!admits(&full, &pending("/one-more", &[], 1)), "more keys than etcd's --max-txn-ops");
        assert!(admits(&full[1..], &pending("/one-more", &[], 1)));
    }

    #[test]
    fn outcome_names_the_key_that_exists() {
        let keys = ["/pods/a", "/ip/1", "/port/2"];
        let cases = [
            ([true, false, false], Outcome::AlreadyExists),
            ([true, true, false], Outcome::AlreadyExists),
            ([false, false, true], Outcome::KeyTaken("/port/2".into())),
            ([false, false, false], Outcome::Retry),
        ];
        for (exists, want) in cases {
            assert_eq!(outcome(&keys, &exists), want, "{exists:?}");
        }
    }
}

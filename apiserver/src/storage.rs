//! Storage on etcd: the only place that talks to etcd. Writes are transactions guarded by a
//! key's `version` (create: absent) or `mod_revision` (update/delete: unchanged since read), so
//! the etcd revision doubles as the Kubernetes resourceVersion.

use std::sync::Arc;
use std::time::Instant;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue, KvClient, SortOrder,
    SortTarget, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchClient, WatchOptions, WatchStream,
};

use crate::metrics::Metrics;

mod creates;
mod members;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key not found")]
    NotFound,
    #[error("key already exists")]
    AlreadyExists,
    #[error("key was modified")]
    Conflict,
    /// A key written beside the object (an allocated IP or port) is taken.
    #[error("key {0} is already taken")]
    KeyTaken(String),
    #[error("required revision {requested} has been compacted (oldest available {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// Shared: one failed transaction can answer a batch of creates.
    #[error("etcd: {0}")]
    Etcd(Arc<etcd_client::Error>),
    #[error("reading TLS material for etcd from {path}: {source}")]
    Tls { path: String, source: std::io::Error },
}

impl From<etcd_client::Error> for StorageError {
    fn from(e: etcd_client::Error) -> Self {
        StorageError::Etcd(Arc::new(e))
    }
}

impl StorageError {
    /// Whether etcd could not be reached (a 503 rather than a 500).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Etcd(e) => match &**e {
                etcd_client::Error::TransportError(_) => true,
                etcd_client::Error::GRpcStatus(s) => {
                    matches!(s.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                }
                _ => false,
            },
            _ => false,
        }
    }
}

/// Paths to the client TLS material for etcd (`--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`).
#[derive(Debug, Clone, Default)]
pub struct EtcdTls {
    pub ca_file: Option<std::path::PathBuf>,
    pub cert_file: Option<std::path::PathBuf>,
    pub key_file: Option<std::path::PathBuf>,
}

/// One stored key.
#[derive(Debug, Clone)]
pub struct Kv {
    pub key: String,
    pub value: Vec<u8>,
    pub mod_revision: i64,
}

impl From<&KeyValue> for Kv {
    fn from(kv: &KeyValue) -> Self {
        Kv {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            value: kv.value().to_vec(),
            mod_revision: kv.mod_revision(),
        }
    }
}

/// A page of a range read.
#[derive(Debug)]
pub struct Page {
    pub kvs: Vec<Kv>,
    /// The revision the page was read at.
    pub revision: i64,
    /// Keys left after this page.
    pub remaining: i64,
}

/// What a range holds at a revision, without its values: enough to tell whether a copy of the
/// range made at an earlier revision is still exact (see [`Store::summary`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeSummary {
    /// The revision the range was read at.
    pub revision: i64,
    /// Keys in the range.
    pub count: i64,
    /// The highest `mod_revision` among them (0 if there are none).
    pub last_modified: i64,
}

/// Largest etcd response accepted. Ranges are read in chunks of keys, but one chunk of large
/// objects (etcd allows 1.5 MiB each) can still be far past gRPC's default of 4 MiB.
const MAX_RESPONSE_BYTES: usize = 1 << 30;

/// A cheap-to-clone handle on the etcd cluster.
#[derive(Clone)]
pub struct Store {
    kv: KvClient,
    watch: WatchClient,
    metrics: Metrics,
    /// To the task that writes creates in batches ([`creates`]); it ends with the last clone.
    creates: tokio::sync::mpsc::UnboundedSender<creates::Pending>,
    /// Held while any clone lives; the member prober stops when it is gone.
    _alive: Arc<()>,
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, StorageError> {
    std::fs::read(path).map_err(|source| StorageError::Tls { path: path.display().to_string(), source })
}

impl Store {
    pub async fn connect(endpoints: &[String], tls: &EtcdTls, metrics: Metrics) -> Result<Self, StorageError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(std::time::Duration::from_secs(5))
            .with_keep_alive(std::time::Duration::from_secs(10), std::time::Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if let Some(ca) = &tls.ca_file {
            let mut t = TlsOptions::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
                t = t.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            options = options.with_tls(t);
        }
        let client = Client::connect(endpoints, Some(options.clone())).await?;
        let kv = client.kv_client().max_decoding_message_size(MAX_RESPONSE_BYTES);
        let watch = client.watch_client().max_decoding_message_size(MAX_RESPONSE_BYTES);
        let (creates, pending) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(creates::run(kv.clone(), metrics.clone(), pending));
        let alive = Arc::new(());
        if endpoints.len() > 1 {
            let prober = members::keep_to_live_members(client, endpoints.to_vec(), options, Arc::downgrade(&alive));
            tokio::spawn(prober);
        }
        Ok(Store { kv, watch, metrics, creates, _alive: alive })
    }

    fn observe(&self, operation: &'static str, start: Instant) {
        self.metrics.observe_etcd(operation, start.elapsed());
    }

    /// Reads one key; also returns the store's current revision.
    pub async fn get(&self, key: &str) -> Result<(Option<Kv>, i64), StorageError> {
        let start = Instant::now();
        let resp = members::resend(&self.kv, |mut kv| async move { kv.get(key, None).await }).await;
        self.observe("get", start);
        let resp = resp?;
        let rev = resp.header().map_or(0, |h| h.revision());
        Ok((resp.kvs().first().map(Kv::from), rev))
    }

    /// The current revision of the store.
    pub async fn revision(&self) -> Result<i64, StorageError> {
        let start = Instant::now();
        let resp =
            members::resend(
                &self.kv,
                |mut kv| async move { kv.get("\0", Some(GetOptions::new().with_count_only())).await },
            )
            .await;
        self.observe("revision", start);
        Ok(resp?.header().map_or(0, |h| h.revision()))
    }

    /// How many keys are under `prefix` now and when the newest of them was written, in one
    /// keys-only read that returns a single key. A copy of the range made at revision `r` is
    /// exact now when it holds `count` keys and `last_modified <= r`: every key present was
    /// written at or before `r`, so the present keys are a subset of the copy's, and equal counts
    /// make them the same set.
    pub async fn summary(&self, prefix: &str) -> Result<RangeSummary, StorageError> {
        let options = GetOptions::new()
            .with_range(prefix_end(prefix))
            .with_keys_only()
            .with_sort(SortTarget::Mod, SortOrder::Descend)
            .with_limit(1);
        let start = Instant::now();
        let resp = members::resend(&self.kv, |mut kv| {
            let options = options.clone();
            async move { kv.get(prefix, Some(options)).await }
        })
        .await;
        self.observe("summary", start);
        let resp = resp?;
        Ok(RangeSummary {
            revision: resp.header().map_or(0, |h| h.revision()),
            count: resp.count(),
            last_modified: resp.kvs().first().map_or(0, |kv| kv.mod_revision()),
        })
    }

    /// Creates `key` and every `extra` key, all only if none exists. Returns the new revision,
    /// which other creates written in the same batch share.
    pub async fn create(&self, key: &str, value: Vec<u8>, extra: &[(String, Vec<u8>)]) -> Result<i64, StorageError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let pending = creates::Pending { key: key.to_string(), value, extra: extra.to_vec(), done };
        if self.creates.send(pending).is_err() {
            return Err(StorageError::Etcd(Arc::new(etcd_client::Error::Internal("create writer stopped".into()))));
        }
        result.await.unwrap_or_else(|_| {
            Err(StorageError::Etcd(Arc::new(etcd_client::Error::Internal("create writer stopped".into()))))
        })
    }

    /// Replaces `key` if its mod_revision is still `revision`; creates `extra_create` keys (which
    /// must be absent) and deletes `extra_delete` keys in the same transaction.
    pub async fn update(
        &self,
        key: &str,
        value: Vec<u8>,
        revision: i64,
        extra_create: &[(String, Vec<u8>)],
        extra_delete: &[String],
    ) -> Result<i64, StorageError> {
        let mut when = vec![Compare::mod_revision(key, CompareOp::Equal, revision)];
        let mut then = vec![TxnOp::put(key, value, None)];
        let mut otherwise = vec![TxnOp::get(key, None)];
        for (k, v) in extra_create {
            when.push(Compare::version(k.as_str(), CompareOp::Equal, 0));
            then.push(TxnOp::put(k.as_str(), v.clone(), None));
            otherwise.push(TxnOp::get(k.as_str(), None));
        }
        then.extend(extra_delete.iter().map(|k| TxnOp::delete(k.as_str(), None)));
        let start = Instant::now();
        let txn = Txn::new().when(when).and_then(then).or_else(otherwise);
        let resp = members::resend(&self.kv, |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await;
        self.observe("update", start);
        let resp = resp?;
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        let gets: Vec<_> = resp.op_responses();
        match gets.first() {
            Some(TxnOpResponse::Get(g)) if g.kvs().is_empty() => {
                return Err(StorageError::NotFound);
            }
            Some(TxnOpResponse::Get(g)) if g.kvs()[0].mod_revision() != revision => {
                return Err(StorageError::Conflict);
            }
            _ => {}
        }
        for ((k, _), op) in extra_create.iter().zip(gets.iter().skip(1)) {
            if let TxnOpResponse::Get(g) = op
                && !g.kvs().is_empty()
            {
                return Err(StorageError::KeyTaken(k.clone()));
            }
        }
        Err(StorageError::Conflict)
    }

    /// Deletes `key` if its mod_revision is still `revision`, with `extra_delete` keys.
    pub async fn delete(&self, key: &str, revision: i64, extra_delete: &[String]) -> Result<i64, StorageError> {
        let when = vec![Compare::mod_revision(key, CompareOp::Equal, revision)];
        let mut then = vec![TxnOp::delete(key, None)];
        then.extend(extra_delete.iter().map(|k| TxnOp::delete(k.as_str(), None)));
        let start = Instant::now();
        let txn = Txn::new().when(when).and_then(then).or_else(vec![TxnOp::get(key, None)]);
        let resp = members::resend(&self.kv, |mut kv| {
            let txn = txn.clone();
            async move { kv.txn(txn).await }
        })
        .await;
        self.observe("delete", start);
        let resp = resp?;
        if resp.succeeded() {
            return Ok(resp.header().map_or(0, |h| h.revision()));
        }
        match resp.op_responses().first() {
            Some(TxnOpResponse::Get(g)) if g.kvs().is_empty() => Err(StorageError::NotFound),
            _ => Err(StorageError::Conflict),
        }
    }

    /// Reads keys under `prefix` in key order, starting at `start` (inclusive) if given, at
    /// `revision` (0 = now), at most `limit` keys (0 = all).
    pub async fn list(
        &self,
        prefix: &str,
        start: Option<&str>,
        revision: i64,
        limit: i64,
    ) -> Result<Page, StorageError> {
        let end = prefix_end(prefix);
        let from = start.unwrap_or(prefix);
        let mut options = GetOptions::new().with_range(end).with_revision(revision);
        if limit > 0 {
            options = options.with_limit(limit);
        }
        let start_time = Instant::now();
        let resp = members::resend(&self.kv, |mut kv| {
            let options = options.clone();
            async move { kv.get(from, Some(options)).await }
        })
        .await;
        self.observe("list", start_time);
        let resp = match resp {
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("compacted") => {
                return Err(StorageError::Compacted { requested: revision, compacted: 0 });
            }
            other => other?,
        };
        let kvs: Vec<Kv> = resp.kvs().iter().map(Kv::from).collect();
        let remaining = resp.count() - kvs.len() as i64;
        Ok(Page { kvs, revision: resp.header().map_or(revision, |h| h.revision()), remaining })
    }

    /// Reads every key under `prefix` at one revision, in chunks of [`RANGE_CHUNK`] keys, so no
    /// response exceeds gRPC's message limit however many objects there are.
    pub async fn list_all(&self, prefix: &str) -> Result<Page, StorageError> {
        let mut page = self.list(prefix, None, 0, RANGE_CHUNK).await?;
        let revision = page.revision;
        while page.remaining > 0 {
            let Some(last) = page.kvs.last().map(|kv| format!("{}\0", kv.key)) else {
                break;
            };
            let next = self.list(prefix, Some(&last), revision, RANGE_CHUNK).await?;
            page.remaining = next.remaining;
            page.kvs.extend(next.kvs);
        }
        Ok(page)
    }

    /// Watches every key under `prefix` from `start_revision` (inclusive), with progress
    /// notifications, and with previous values if `prev_kv` (etcd then reads the previous
    /// revision of every changed key: the watch cache has them in memory and does without).
    pub async fn watch(&self, prefix: &str, start_revision: i64, prev_kv: bool) -> Result<WatchStream, StorageError> {
        let mut options = WatchOptions::new()
            .with_range(prefix_end(prefix))
            .with_start_revision(start_revision)
            .with_progress_notify();
        if prev_kv {
            options = options.with_prev_key();
        }
        Ok(members::resend(&self.watch, |mut w| {
            let options = options.clone();
            async move { w.watch(prefix, Some(options)).await }
        })
        .await?)
    }
}

/// Keys read per etcd range request: ~1,000 objects of a few KiB stay well under gRPC's 4 MiB
/// message limit.
pub const RANGE_CHUNK: i64 = 1000;

/// The end of the range of keys starting with `prefix`.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_the_last_byte() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert_eq!(prefix_end("a"), b"b".to_vec());
    }
}

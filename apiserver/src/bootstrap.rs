//! Objects every cluster has from the start: the `default`, `kube-system`, `kube-public` and
//! `kube-node-lease` namespaces. Created if absent, by any API server, idempotently.

use std::time::Duration;

use api_types::registry::by_plural;
use serde_json::json;
use tracing::{info, warn};

use crate::api::Api;
use crate::object;
use crate::storage::StorageError;

pub const SYSTEM_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Creates what is missing, retrying until etcd answers.
pub async fn run(api: &Api) {
    let Some(namespaces) = by_plural("", "v1", "namespaces") else {
        return;
    };
    for name in SYSTEM_NAMESPACES {
        let ns = json!({
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {
                "name": name,
                "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                "labels": { "kubernetes.io/metadata.name": name },
            },
            "spec": { "finalizers": ["kubernetes"] },
            "status": { "phase": "Active" },
        });
        let key = api.key(namespaces, None, name);
        let mut delay = Duration::from_millis(100);
        loop {
            match api.store.create(&key, object::encode_for_storage(&ns), &[]).await {
                Ok(_) => {
                    info!(namespace = name, "created system namespace");
                    break;
                }
                Err(StorageError::AlreadyExists) => break,
                Err(e) => {
                    warn!(namespace = name, error = %e, "creating system namespace failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

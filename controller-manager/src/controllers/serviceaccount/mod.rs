//! The ServiceAccount controller: every active namespace has a `default` ServiceAccount; one
//! deleted by hand comes back.

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Change, Informer};
use crate::queue::Queue;
use crate::{Context, Error};

pub const NAME: &str = "serviceaccount-controller";
pub const DEFAULT: &str = "default";
const WORKERS: usize = 2;

pub fn new(ctx: &Context) -> Controller {
    let namespaces = ctx.informers.get::<Namespace>();
    let accounts = ctx.informers.get::<ServiceAccount>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        namespaces.on_change(move |change| {
            if let Change::Applied { new, .. } = change {
                queue.add(new.metadata.name.clone().unwrap_or_default());
            }
        });
    }
    {
        let queue = queue.clone();
        accounts.on_change(move |change| {
            if let Change::Deleted(sa) = change
                && sa.metadata.name.as_deref() == Some(DEFAULT)
            {
                queue.add(sa.metadata.namespace.clone().unwrap_or_default());
            }
        });
    }
    let synced = informers::all_synced([namespaces.until_synced(), accounts.until_synced()]);
    let reconciler = ServiceAccounts { client: ctx.client.clone(), namespaces, accounts };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct ServiceAccounts {
    client: kube::Client,
    namespaces: Informer<Namespace>,
    accounts: Informer<ServiceAccount>,
}

impl Reconcile for ServiceAccounts {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl ServiceAccounts {
    async fn sync(&self, namespace: &str) -> Result<Option<Duration>, Error> {
        let Some(ns) = self.namespaces.get("", namespace) else { return Ok(None) };
        let terminating = ns.metadata.deletion_timestamp.is_some()
            || ns.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
        if terminating || self.accounts.get(namespace, DEFAULT).is_some() {
            return Ok(None);
        }
        let account = ServiceAccount {
            metadata: ObjectMeta { name: Some(DEFAULT.into()), ..Default::default() },
            ..Default::default()
        };
        match Api::<ServiceAccount>::namespaced(self.client.clone(), namespace)
            .create(&PostParams::default(), &account)
            .await
        {
            Ok(_) => tracing::info!(namespace, "created the default service account"),
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}

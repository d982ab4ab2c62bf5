//! The registry of controllers: (name, on by default, constructor), one module each.

pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoint;
pub mod endpointslice;
pub mod garbagecollector;
pub mod job;
pub mod namespace;
pub mod nodeipam;
pub mod nodelifecycle;
pub mod owned;
pub mod persistentvolume;
pub mod podautoscaler;
pub mod podgc;
pub mod replicaset;
pub mod resourcequota;
pub mod service_lb;
pub mod serviceaccount;
pub mod statefulset;
pub mod volumeprotection;

use api_types::registry::ResourceInfo;
use kube::api::ApiResource;

use crate::Context;
use crate::controller::Controller;

pub struct Entry {
    /// Upstream's name (`--controllers` also takes it without `-controller`).
    pub name: &'static str,
    pub on_by_default: bool,
    pub new: fn(&Context) -> Controller,
}

pub const REGISTRY: &[Entry] = &[
    Entry { name: replicaset::NAME, on_by_default: true, new: replicaset::new },
    Entry { name: replicaset::RC_NAME, on_by_default: true, new: replicaset::new_replication_controller },
    Entry { name: daemonset::NAME, on_by_default: true, new: daemonset::new },
    Entry { name: statefulset::NAME, on_by_default: true, new: statefulset::new },
    Entry { name: deployment::NAME, on_by_default: true, new: deployment::new },
    Entry { name: serviceaccount::NAME, on_by_default: true, new: serviceaccount::new },
    Entry { name: garbagecollector::NAME, on_by_default: true, new: garbagecollector::new },
    Entry { name: namespace::NAME, on_by_default: true, new: namespace::new },
    Entry { name: endpoint::NAME, on_by_default: true, new: endpoint::new },
    Entry { name: endpointslice::NAME, on_by_default: true, new: endpointslice::new },
    Entry { name: nodeipam::NAME, on_by_default: true, new: nodeipam::new },
    Entry { name: nodelifecycle::NAME, on_by_default: true, new: nodelifecycle::new },
    Entry { name: podgc::NAME, on_by_default: true, new: podgc::new },
    Entry { name: job::NAME, on_by_default: true, new: job::new },
    Entry { name: cronjob::NAME, on_by_default: true, new: cronjob::new },
    Entry { name: disruption::NAME, on_by_default: true, new: disruption::new },
    Entry { name: resourcequota::NAME, on_by_default: true, new: resourcequota::new },
    Entry { name: persistentvolume::NAME, on_by_default: true, new: persistentvolume::new },
    Entry { name: volumeprotection::claims::NAME, on_by_default: true, new: volumeprotection::claims::new },
    Entry { name: volumeprotection::volumes::NAME, on_by_default: true, new: volumeprotection::volumes::new },
    Entry { name: podautoscaler::NAME, on_by_default: true, new: podautoscaler::new },
    // Inert without --service-lb-ip-pool.
    Entry { name: service_lb::NAME, on_by_default: true, new: service_lb::new },
];

/// The controllers `*` turns on.
pub fn defaults() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().filter(|e| e.on_by_default).map(|e| e.name)
}

/// The kube-rs description of a served kind, for the controllers that handle every kind alike
/// (garbage collector, namespace).
pub fn api_resource(r: &ResourceInfo) -> ApiResource {
    ApiResource {
        group: r.group.into(),
        version: r.version.into(),
        api_version: r.api_version(),
        kind: r.kind.into(),
        plural: r.plural.into(),
    }
}

//! The registry of controllers: (name, on by default, constructor), one module each.

pub mod endpoint;
pub mod endpointslice;
pub mod garbagecollector;
pub mod namespace;
pub mod replicaset;
pub mod serviceaccount;

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
    Entry { name: serviceaccount::NAME, on_by_default: true, new: serviceaccount::new },
    Entry { name: garbagecollector::NAME, on_by_default: true, new: garbagecollector::new },
    Entry { name: namespace::NAME, on_by_default: true, new: namespace::new },
    Entry { name: endpoint::NAME, on_by_default: true, new: endpoint::new },
    Entry { name: endpointslice::NAME, on_by_default: true, new: endpointslice::new },
];

/// The controllers `*` turns on.
pub fn defaults() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().filter(|e| e.on_by_default).map(|e| e.name)
}

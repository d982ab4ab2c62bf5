//! Keeping the kernel in step: [`Syncer::sync`] renders the table for the current Service ports
//! and writes only the difference from what it last applied — or the whole table when nothing
//! was applied yet, the last write failed, a full resync is due, or the difference needs a new
//! picker chain. [`Schedule`] decides when to sync: not before the caches have synced, at most
//! once per minimum interval (changes in between are coalesced), and a full resync on a period.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::metrics::Metrics;
use crate::model::{Protocol, ServicePort, ServicePortName};
use crate::nft::{Nft, NftError};
use crate::render::{self, Ruleset, Settings};

/// What one sync wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Nothing,
    Partial,
    Full,
}

pub struct Syncer {
    nft: Nft,
    metrics: Metrics,
    /// What the kernel holds, as far as the proxy knows; None forces a full sync.
    applied: Option<Ruleset>,
    /// The ports of the last sync, to find UDP endpoints that went away.
    ports: BTreeMap<ServicePortName, ServicePort>,
}

impl Syncer {
    pub fn new(nft: Nft, metrics: Metrics) -> Self {
        Syncer { nft, metrics, applied: None, ports: BTreeMap::new() }
    }

    /// Brings the table to `ports`. On failure the next sync is a full one.
    pub async fn sync(
        &mut self,
        ports: BTreeMap<ServicePortName, ServicePort>,
        settings: &Settings,
        full: bool,
    ) -> Result<Written, NftError> {
        let start = Instant::now();
        let desired = render::ruleset(&ports, settings);
        let partial = match (&self.applied, full) {
            (Some(old), false) => render::diff(old, &desired),
            _ => None,
        };
        let (text, written) = match partial {
            Some(t) if t.is_empty() => return Ok(Written::Nothing),
            Some(t) => (t, Written::Partial),
            None => (render::full(&desired, settings), Written::Full),
        };
        self.applied = None;
        self.nft.apply(&text).await?;
        self.applied = Some(desired);
        let kind = if written == Written::Full { "full" } else { "partial" };
        self.metrics
            .sync_duration
            .get_or_create(&crate::metrics::SyncLabel { kind })
            .observe(start.elapsed().as_secs_f64());
        let gone = removed_udp_endpoints(&self.ports, &ports);
        self.ports = ports;
        flush_conntrack(&gone).await;
        Ok(written)
    }
}

/// (service IP, endpoint IP) pairs of UDP endpoints no longer in use: their conntrack entries
/// would keep sending datagrams to a backend that is gone.
pub fn removed_udp_endpoints(
    old: &BTreeMap<ServicePortName, ServicePort>,
    new: &BTreeMap<ServicePortName, ServicePort>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (id, port) in old.iter().filter(|(id, _)| id.protocol == Protocol::Udp) {
        let still: Vec<_> = new.get(id).map(|p| p.usable().iter().map(|e| e.ip).collect()).unwrap_or_default();
        for e in port.usable().iter().filter(|e| !still.contains(&e.ip)) {
            for ip in port.cluster_ips.iter().chain(&port.external_ips) {
                out.push((ip.to_string(), e.ip.to_string()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

async fn flush_conntrack(entries: &[(String, String)]) {
    for (service, endpoint) in entries {
        let status = tokio::process::Command::new("conntrack")
            .args(["-D", "-p", "udp", "--orig-dst", service, "--reply-src", endpoint])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .await;
        // conntrack exits 1 when there was nothing to delete.
        if let Err(e) = status {
            tracing::warn!(service, endpoint, error = %e, "flushing UDP conntrack entries failed");
        }
    }
}

/// When to sync. Pure: fed the current time.
#[derive(Debug)]
pub struct Schedule {
    min_interval: Duration,
    full_interval: Duration,
    last_sync: Option<Instant>,
    last_full: Option<Instant>,
    dirty: bool,
}

impl Schedule {
    pub fn new(min_interval: Duration, full_interval: Duration) -> Self {
        Schedule { min_interval, full_interval, last_sync: None, last_full: None, dirty: true }
    }

    /// Something changed.
    pub fn changed(&mut self) {
        self.dirty = true;
    }

    /// What to do at `now`: None, or Some(full).
    pub fn due(&self, now: Instant) -> Option<bool> {
        let full = self.last_full.is_none_or(|t| now >= t + self.full_interval);
        let allowed = self.last_sync.is_none_or(|t| now >= t + self.min_interval);
        (allowed && (self.dirty || full)).then_some(full)
    }

    /// How long until [`Self::due`] may say yes.
    pub fn wait(&self, now: Instant) -> Duration {
        let next_allowed = self.last_sync.map_or(now, |t| t + self.min_interval);
        let next_full = self.last_full.map_or(now, |t| t + self.full_interval);
        let at = if self.dirty { next_allowed.max(now) } else { next_full.max(next_allowed) };
        at.saturating_duration_since(now)
    }

    /// A sync ran at `now` (whatever it wrote); a failed one leaves the state dirty.
    pub fn synced(&mut self, now: Instant, full: bool, ok: bool) {
        self.last_sync = Some(now);
        if ok {
            self.dirty = false;
            if full {
                self.last_full = Some(now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, Policy};

    #[test]
    fn schedule_coalesces_changes_and_resyncs_fully_on_its_period() {
        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut sched = Schedule::new(Duration::from_secs(1), Duration::from_secs(60));
        assert_eq!(sched.due(t0), Some(true), "first sync is full");
        sched.synced(t0, true, true);
        assert_eq!(sched.due(t0), None, "nothing changed");
        sched.changed();
        assert_eq!(sched.due(t0), None, "within the minimum interval");
        assert_eq!(sched.wait(t0), Duration::from_secs(1));
        assert_eq!(sched.due(s(1)), Some(false), "a partial sync once allowed");
        sched.synced(s(1), false, false);
        assert_eq!(sched.due(s(2)), Some(false), "a failed sync is retried");
        sched.synced(s(2), false, true);
        assert_eq!(sched.wait(s(2)), Duration::from_secs(58), "idle until the full resync");
        assert_eq!(sched.due(s(60)), Some(true));
    }

    fn port(protocol: Protocol, endpoints: &[&str]) -> (ServicePortName, ServicePort) {
        let id = ServicePortName { namespace: "ns".into(), name: "dns".into(), protocol, port: 53 };
        let endpoints = endpoints
            .iter()
            .map(|ip| Endpoint {
                ip: ip.parse().expect("ip"),
                port: 5353,
                node: None,
                ready: true,
                serving: true,
                terminating: false,
            })
            .collect();
        let p = ServicePort {
            id: id.clone(),
            cluster_ips: vec!["10.96.0.53".parse().expect("ip")],
            node_port: None,
            external_ips: vec![],
            affinity_timeout: None,
            external_policy: Policy::Cluster,
            internal_policy: Policy::Cluster,
            endpoints,
        };
        (id, p)
    }

    #[test]
    fn removed_udp_endpoints_are_found_for_conntrack() {
        let old: BTreeMap<_, _> =
            [port(Protocol::Udp, &["10.244.0.2", "10.244.0.3"]), port(Protocol::Tcp, &["10.244.0.2"])].into();
        let new: BTreeMap<_, _> = [port(Protocol::Udp, &["10.244.0.3"])].into();
        assert_eq!(removed_udp_endpoints(&old, &new), [("10.96.0.53".to_string(), "10.244.0.2".to_string())]);
        assert!(removed_udp_endpoints(&new, &new).is_empty());
    }
}

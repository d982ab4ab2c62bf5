//! Keeping the kernel in step: [`Syncer::sync`] writes only what changed since the last sync
//! — or the whole table when nothing was applied yet, the last write failed, a full resync is
//! due, the settings changed, or the change needs a new picker chain. What was applied is kept
//! per Service port ([`Applied`]), so a change re-renders and compares only the ports that
//! differ, however many Services there are. [`Schedule`] decides when to sync: not before the
//! caches have synced, at most once per minimum interval (changes in between are coalesced),
//! and a full resync on a period.

use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// What the kernel holds, as the shares of the Service ports that made it. Pure.
#[derive(Debug, Clone)]
pub struct Applied {
    settings: Settings,
    ports: HashMap<ServicePortName, (ServicePort, Ruleset)>,
    /// How many ports want each `hairpin` element: one pod may back several Services.
    hairpin: HashMap<String, usize>,
    /// The picker chains the last full sync made beyond the preset ones.
    pickers: BTreeSet<String>,
}

impl Applied {
    /// The state after a full sync of `ports`, and the whole ruleset to write.
    pub fn full(ports: &BTreeMap<ServicePortName, ServicePort>, settings: &Settings) -> (Applied, Ruleset) {
        let whole = render::ruleset(ports, settings);
        let mut applied = Applied {
            settings: settings.clone(),
            ports: HashMap::with_capacity(ports.len()),
            hairpin: HashMap::new(),
            pickers: whole.pickers.keys().cloned().collect(),
        };
        for (id, port) in ports {
            let share = render::port_rules(port, settings);
            for e in &share.hairpin {
                *applied.hairpin.entry(e.clone()).or_default() += 1;
            }
            applied.ports.insert(id.clone(), (port.clone(), share));
        }
        (applied, whole)
    }

    /// Brings the state to `ports` and returns the `nft -f` text of the change (empty when
    /// nothing changed), adding to `udp_gone` the UDP endpoints no longer in use; None when it
    /// takes a full sync, in which case `self` is unusable. `changed`, when given, names every
    /// port that may differ from the last sync (the rest are not compared).
    pub fn change(
        &mut self,
        ports: &BTreeMap<ServicePortName, ServicePort>,
        changed: Option<&BTreeSet<ServicePortName>>,
        settings: &Settings,
        udp_gone: &mut Vec<(String, String)>,
    ) -> Option<String> {
        if *settings != self.settings {
            return None;
        }
        let candidates: Vec<ServicePortName> = match changed {
            Some(ids) => ids.iter().cloned().collect(),
            None => {
                let gone = self.ports.keys().filter(|id| !ports.contains_key(*id));
                gone.chain(ports.keys()).cloned().collect()
            }
        };
        let (mut old, mut new) = (Ruleset::default(), Ruleset::default());
        for id in candidates {
            let port = ports.get(&id);
            match (self.ports.get(&id), port) {
                (Some((applied, _)), Some(port)) if applied == port => continue,
                (None, None) => continue,
                _ => {}
            }
            if let Some((old_port, share)) = self.ports.remove(&id) {
                removed_udp_endpoints(&old_port, port, udp_gone);
                self.release(share, &mut old);
            }
            let Some(port) = port else { continue };
            let share = render::port_rules(port, settings);
            for e in &share.hairpin {
                let n = self.hairpin.entry(e.clone()).or_default();
                *n += 1;
                if *n == 1 {
                    new.hairpin.insert(e.clone());
                }
            }
            merge(&mut new, &share);
            self.ports.insert(id, (port.clone(), share));
        }
        render::diff_with_pickers(&old, &new, |p| self.pickers.contains(p))
    }

    /// Takes a port's share out: into `old`, with the hairpin elements no other port wants.
    fn release(&mut self, share: Ruleset, old: &mut Ruleset) {
        for e in &share.hairpin {
            if let Some(n) = self.hairpin.get_mut(e) {
                *n -= 1;
                if *n == 0 {
                    self.hairpin.remove(e);
                    old.hairpin.insert(e.clone());
                }
            }
        }
        merge(old, &share);
    }
}

/// Adds `share` to `into`, hairpin elements aside (counted by the caller).
fn merge(into: &mut Ruleset, share: &Ruleset) {
    into.service_ips.extend(share.service_ips.iter().map(|(k, v)| (k.clone(), v.clone())));
    into.service_nodeports.extend(share.service_nodeports.iter().map(|(k, v)| (k.clone(), v.clone())));
    into.no_endpoint_services.extend(share.no_endpoint_services.iter().cloned());
    into.no_endpoint_nodeports.extend(share.no_endpoint_nodeports.iter().cloned());
    into.endpoints.extend(share.endpoints.iter().map(|(k, v)| (k.clone(), v.clone())));
    into.nodeport_endpoints.extend(share.nodeport_endpoints.iter().map(|(k, v)| (k.clone(), v.clone())));
    into.pickers.extend(share.pickers.iter().map(|(k, v)| (k.clone(), v.clone())));
    into.chains.extend(share.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
    into.affinity_sets.extend(share.affinity_sets.iter().map(|(k, v)| (k.clone(), *v)));
}

pub struct Syncer {
    nft: Nft,
    metrics: Metrics,
    /// What the kernel holds, as far as the proxy knows; None forces a full sync.
    applied: Option<Applied>,
}

impl Syncer {
    pub fn new(nft: Nft, metrics: Metrics) -> Self {
        Syncer { nft, metrics, applied: None }
    }

    /// Brings the table to `ports`; `changed`, when given, names every port that may have
    /// changed since the last sync. On failure the next sync is a full one.
    pub async fn sync(
        &mut self,
        ports: &BTreeMap<ServicePortName, ServicePort>,
        changed: Option<&BTreeSet<ServicePortName>>,
        settings: &Settings,
        full: bool,
    ) -> Result<Written, NftError> {
        let start = Instant::now();
        let mut udp_gone = Vec::new();
        let mut applied = self.applied.take();
        let partial = match (&mut applied, full) {
            (Some(a), false) => a.change(ports, changed, settings, &mut udp_gone),
            _ => None,
        };
        let (text, written, applied) = match (partial, applied) {
            (Some(t), Some(a)) if t.is_empty() => {
                self.applied = Some(a);
                return Ok(Written::Nothing);
            }
            (Some(t), Some(a)) => (t, Written::Partial, a),
            (_, previous) => {
                udp_gone.clear();
                for (old, _) in previous.iter().flat_map(|p| p.ports.values()) {
                    removed_udp_endpoints(old, ports.get(&old.id), &mut udp_gone);
                }
                let (a, whole) = Applied::full(ports, settings);
                (render::full(&whole, settings), Written::Full, a)
            }
        };
        self.nft.apply(&text).await?;
        self.applied = Some(applied);
        let kind = if written == Written::Full { "full" } else { "partial" };
        self.metrics
            .sync_duration
            .get_or_create(&crate::metrics::SyncLabel { kind })
            .observe(start.elapsed().as_secs_f64());
        udp_gone.sort();
        udp_gone.dedup();
        flush_conntrack(&udp_gone).await;
        Ok(written)
    }
}

/// Adds to `out` the (service IP, endpoint IP) pairs of a UDP port's endpoints that `new` (the
/// port now, None: gone) no longer uses: their conntrack entries would keep sending datagrams
/// to a backend that is gone.
pub fn removed_udp_endpoints(old: &ServicePort, new: Option<&ServicePort>, out: &mut Vec<(String, String)>) {
    if old.id.protocol != Protocol::Udp {
        return;
    }
    let still: Vec<_> = new.map(|p| p.usable().iter().map(|e| e.ip).collect()).unwrap_or_default();
    for e in old.usable().iter().filter(|e| !still.contains(&e.ip)) {
        for ip in old.cluster_ips.iter().chain(&old.external_ips) {
            out.push((ip.to_string(), e.ip.to_string()));
        }
    }
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

    fn settings() -> Settings {
        Settings {
            node_name: "n1".into(),
            cluster_cidr: Some("10.244.0.0/16".into()),
            masquerade_all: false,
            nodeport_addresses: vec!["192.168.1.10".into()],
            dns: None,
        }
    }

    /// A TCP Service port `name` on `ip`:80 with endpoints on port 8080.
    fn tcp(name: &str, ip: &str, endpoints: &[&str], affinity: Option<u32>) -> (ServicePortName, ServicePort) {
        let (id, mut p) = port(Protocol::Tcp, endpoints);
        let id = ServicePortName { name: name.into(), port: 80, ..id };
        p.id = id.clone();
        p.cluster_ips = vec![ip.parse().expect("ip")];
        p.node_port = Some(30000 + ip.rsplit('.').next().and_then(|n| n.parse::<u16>().ok()).unwrap_or(0));
        p.affinity_timeout = affinity;
        for e in &mut p.endpoints {
            e.port = 8080;
        }
        (id, p)
    }

    #[test]
    fn a_change_kept_per_port_writes_what_a_diff_of_whole_rulesets_writes() {
        let web = |eps: &[&str]| tcp("web", "10.96.0.1", eps, None);
        let api = |eps: &[&str]| tcp("api", "10.96.0.2", eps, None);
        let steps: Vec<BTreeMap<_, _>> = vec![
            [web(&["10.244.0.2", "10.244.0.3"]), api(&["10.244.0.2"])].into(),
            // An endpoint goes; the shared pod stays in the hairpin set for the other Service.
            [web(&["10.244.0.3"]), api(&["10.244.0.2"])].into(),
            // A Service goes: its pod's hairpin element goes with it.
            [web(&["10.244.0.3"])].into(),
            // One comes, another scales to zero.
            [web(&[]), api(&["10.244.0.4", "10.244.0.5", "10.244.0.6"])].into(),
            // Session affinity: a chain and sets of its own.
            [web(&["10.244.0.3"]), tcp("api", "10.96.0.2", &["10.244.0.4"], Some(60))].into(),
            [web(&["10.244.0.3"]), tcp("api", "10.96.0.2", &["10.244.0.4"], Some(90))].into(),
            [web(&["10.244.0.3"])].into(),
            [web(&["10.244.0.3"])].into(),
        ];
        let (mut applied, _) = Applied::full(&steps[0], &settings());
        for pair in steps.windows(2) {
            let want = render::diff(&render::ruleset(&pair[0], &settings()), &render::ruleset(&pair[1], &settings()));
            // Told which ports may have changed, it writes the same.
            let named: BTreeSet<ServicePortName> = pair[0].keys().chain(pair[1].keys()).cloned().collect();
            let mut told = applied.clone();
            assert_eq!(told.change(&pair[1], Some(&named), &settings(), &mut Vec::new()), want);
            assert_eq!(
                applied.change(&pair[1], None, &settings(), &mut Vec::new()),
                want,
                "{:?}",
                pair[1].keys().collect::<Vec<_>>()
            );
        }
        assert_eq!(applied.change(&steps[0], None, &settings(), &mut Vec::new()).map(|t| t.is_empty()), Some(false));
    }

    #[test]
    fn changed_settings_or_a_new_picker_take_a_full_sync() {
        let ports: BTreeMap<_, _> = [tcp("web", "10.96.0.1", &["10.244.0.2"], None)].into();
        let (mut applied, _) = Applied::full(&ports, &settings());
        let other = Settings { masquerade_all: true, ..settings() };
        assert_eq!(applied.change(&ports, None, &other, &mut Vec::new()), None);
        let many: Vec<String> = (0..=render::PRESET_PICKERS).map(|i| format!("10.244.1.{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let (mut applied, _) = Applied::full(&ports, &settings());
        assert_eq!(
            applied.change(&[tcp("web", "10.96.0.1", &many, None)].into(), None, &settings(), &mut Vec::new()),
            None
        );
        // Once a full sync made that picker, the same count is a partial change elsewhere.
        let big: BTreeMap<_, _> = [tcp("web", "10.96.0.1", &many, None)].into();
        let (mut applied, _) = Applied::full(&big, &settings());
        let both: BTreeMap<_, _> = [tcp("web", "10.96.0.1", &many, None), tcp("api", "10.96.0.2", &many, None)].into();
        assert!(applied.change(&both, None, &settings(), &mut Vec::new()).is_some_and(|t| !t.is_empty()));
    }

    #[test]
    fn removed_udp_endpoints_are_found_for_conntrack() {
        let (udp, tcp) = (port(Protocol::Udp, &["10.244.0.2", "10.244.0.3"]).1, port(Protocol::Tcp, &["10.244.0.2"]).1);
        let fewer = port(Protocol::Udp, &["10.244.0.3"]).1;
        let gone = |old: &ServicePort, new: Option<&ServicePort>| {
            let mut out = Vec::new();
            removed_udp_endpoints(old, new, &mut out);
            out
        };
        assert_eq!(gone(&udp, Some(&fewer)), [("10.96.0.53".to_string(), "10.244.0.2".to_string())]);
        assert_eq!(gone(&fewer, None), [("10.96.0.53".to_string(), "10.244.0.3".to_string())]);
        assert!(gone(&fewer, Some(&fewer)).is_empty());
        assert!(gone(&tcp, None).is_empty(), "TCP has no conntrack entries to flush");
    }
}

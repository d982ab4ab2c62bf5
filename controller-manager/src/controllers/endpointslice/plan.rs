//! A Service's EndpointSlices, pure: the endpoints its pods make (terminating ones marked), and
//! the creates, updates and deletes that turn the slices there are into slices that hold them,
//! moving as few endpoints as it can (an endpoint stays in the slice it is in).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;

use crate::controllers::endpoint::plan as endpoints;
use crate::{pods, services};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// When the change a slice's latest write stems from happened, for proxies' network-programming
/// latency.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Endpoints per slice, upstream's `--max-endpoints-per-slice` default.
pub const MAX_ENDPOINTS: usize = 100;

/// Endpoints grouped by the port list they serve (keyed by that list, serialized).
pub type Groups = BTreeMap<String, (Vec<EndpointPort>, Vec<Endpoint>)>;

fn port_key(ports: &[EndpointPort]) -> String {
    serde_json::to_string(ports).unwrap_or_default()
}

/// The endpoints of `svc` from the pods its selector matched. Terminating pods stay, marked
/// `terminating` and not ready, so proxies can drain them.
pub fn desired(svc: &Service, selected: &[Arc<Pod>]) -> Groups {
    let publish = svc.spec.as_ref().and_then(|s| s.publish_not_ready_addresses).unwrap_or(false);
    let has_ports = svc.spec.as_ref().and_then(|s| s.ports.as_ref()).is_some_and(|p| !p.is_empty());
    let mut groups = Groups::new();
    for pod in selected {
        let Some(ip) = services::endpoint_ip(pod) else { continue };
        let ports: Vec<EndpointPort> = endpoints::ports(svc, pod)
            .into_iter()
            .map(|p| EndpointPort {
                name: p.name,
                port: Some(p.port),
                protocol: p.protocol,
                app_protocol: p.app_protocol,
            })
            .collect();
        if has_ports && ports.is_empty() {
            continue;
        }
        let address = endpoints::address(svc, pod, ip);
        let terminating = pod.metadata.deletion_timestamp.is_some();
        let serving = publish || pods::is_ready(pod);
        let endpoint = Endpoint {
            addresses: vec![ip.to_string()],
            conditions: Some(EndpointConditions {
                ready: Some(publish || (serving && !terminating)),
                serving: Some(serving),
                terminating: Some(terminating),
            }),
            hostname: address.hostname,
            node_name: address.node_name,
            target_ref: address.target_ref,
            ..Default::default()
        };
        groups.entry(port_key(&ports)).or_insert_with(|| (ports, Vec::new())).1.push(endpoint);
    }
    for (_, endpoints) in groups.values_mut() {
        endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
    }
    groups
}

/// What to write.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub create: Vec<EndpointSlice>,
    pub update: Vec<EndpointSlice>,
    pub delete: Vec<String>,
}

/// The labels every slice of `svc` carries.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = endpoints::labels(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), svc.metadata.name.clone().unwrap_or_default());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    labels
}

fn new_slice(svc: &Service, ports: &[EndpointPort], endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", svc.metadata.name.as_deref().unwrap_or(""))),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![pods::controller_reference(svc)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: (!ports.is_empty()).then(|| ports.to_vec()),
    }
}

/// Turns `existing` (this Service's slices) into slices holding `groups`. An endpoint already
/// in a slice with the same ports stays there; new ones fill slices with room, then new slices.
/// A Service with no endpoints keeps one empty slice, as upstream's placeholder.
pub fn plan(svc: &Service, existing: &[Arc<EndpointSlice>], mut groups: Groups) -> Plan {
    let mut plan = Plan::default();
    let labels = Some(slice_labels(svc));
    let mut existing: Vec<&Arc<EndpointSlice>> = existing.iter().collect();
    existing.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    if groups.is_empty() {
        let mut kept = false;
        for slice in existing {
            let empty = slice.endpoints.is_empty() && slice.ports.is_none() && slice.metadata.labels == labels;
            if kept {
                plan.delete.push(slice.metadata.name.clone().unwrap_or_default());
            } else if empty {
                kept = true;
            } else {
                let mut s = (**slice).clone();
                s.endpoints = Vec::new();
                s.ports = None;
                s.metadata.labels = labels.clone();
                plan.update.push(s);
                kept = true;
            }
        }
        if !kept {
            plan.create.push(new_slice(svc, &[], Vec::new()));
        }
        return plan;
    }
    // Slices of one port list, with their endpoints as they will be.
    let mut filled: HashMap<String, Vec<(EndpointSlice, bool)>> = HashMap::new();
    for slice in existing {
        let key = port_key(slice.ports.as_deref().unwrap_or_default());
        let Some((_, wanted)) = groups.get_mut(&key) else {
            plan.delete.push(slice.metadata.name.clone().unwrap_or_default());
            continue;
        };
        let mut s = (**slice).clone();
        let mut changed = s.metadata.labels != labels;
        s.metadata.labels = labels.clone();
        let mut kept = Vec::new();
        for endpoint in &slice.endpoints {
            if let Some(i) = wanted.iter().position(|w| w.addresses == endpoint.addresses) {
                let fresh = wanted.swap_remove(i);
                changed |= &fresh != endpoint;
                kept.push(fresh);
            } else {
                changed = true;
            }
        }
        s.endpoints = kept;
        filled.entry(key).or_default().push((s, changed));
    }
    for (key, (ports, mut rest)) in groups {
        rest.sort_by(|a, b| a.addresses.cmp(&b.addresses));
        let slices = filled.remove(&key).unwrap_or_default();
        for (mut slice, mut changed) in slices {
            while slice.endpoints.len() < MAX_ENDPOINTS && !rest.is_empty() {
                slice.endpoints.push(rest.remove(0));
                changed = true;
            }
            if slice.endpoints.is_empty() {
                plan.delete.push(slice.metadata.name.clone().unwrap_or_default());
            } else if changed {
                slice.endpoints.sort_by(|a, b| a.addresses.cmp(&b.addresses));
                plan.update.push(slice);
            }
        }
        while !rest.is_empty() {
            let chunk: Vec<Endpoint> = rest.drain(..rest.len().min(MAX_ENDPOINTS)).collect();
            plan.create.push(new_slice(svc, &ports, chunk));
        }
    }
    plan
}

/// The latest change time the slices carry.
pub fn carried(existing: &[Arc<EndpointSlice>]) -> Option<Timestamp> {
    existing
        .iter()
        .filter_map(|s| s.metadata.annotations.as_ref()?.get(TRIGGER_TIME_ANNOTATION)?.parse::<Timestamp>().ok())
        .max()
}

/// The changes to `svc` and its pods newer than `since` (the Service's creation; each selected
/// pod's readiness turning, its Ready condition's `lastTransitionTime`): the earliest, which a
/// write they cause reports as upstream does (the Service's creation when there is no `since`),
/// and the latest, the next `since`. `None` for both
/// when there is none: the write stems from something without a time (a pod gone), and the slices
/// keep the time they carry, so no proxy reports a latency for it.
pub fn changes_since(
    svc: &Service,
    selected: &[Arc<Pod>],
    since: Option<Timestamp>,
) -> (Option<Timestamp>, Option<Timestamp>) {
    let readiness = selected.iter().filter_map(|p| {
        let conditions = p.status.as_ref()?.conditions.as_ref()?;
        Some(conditions.iter().find(|c| c.type_ == "Ready")?.last_transition_time.as_ref()?.0)
    });
    let created = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
    let new: Vec<Timestamp> = created.into_iter().chain(readiness).filter(|t| since.is_none_or(|s| *t > s)).collect();
    let latest = new.iter().max().copied();
    match since {
        // A Service seen for the first time: its slices stem from its creation, not from its
        // pods' older readiness (upstream's tracker does the same).
        None => (created.or(latest), latest),
        Some(_) => (new.iter().min().copied(), latest),
    }
}

/// Writes `at` into every slice `plan` creates or updates.
pub fn stamp(plan: &mut Plan, at: Option<Timestamp>) {
    let Some(at) = at else { return };
    for slice in plan.create.iter_mut().chain(plan.update.iter_mut()) {
        slice
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(TRIGGER_TIME_ANNOTATION.into(), at.to_string());
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn svc() -> Service {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        }))
        .unwrap_or_default()
    }

    fn pod(i: usize, ready: bool, terminating: bool) -> Arc<Pod> {
        let mut p: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("p{i}"), "namespace": "ns", "uid": format!("u{i}")},
            "spec": {"containers": [{"name": "c"}]},
            "status": {"phase": "Running", "podIP": format!("10.0.{}.{}", i / 250, i % 250 + 1),
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
        .unwrap_or_default();
        if terminating {
            p.metadata.deletion_timestamp =
                Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH));
        }
        Arc::new(p)
    }

    fn existing(plan: Plan) -> Vec<Arc<EndpointSlice>> {
        plan.create
            .into_iter()
            .enumerate()
            .map(|(i, mut s)| {
                s.metadata.name = Some(format!("web-{i:03}"));
                Arc::new(s)
            })
            .collect()
    }

    #[test]
    fn conditions_mark_ready_serving_and_terminating_endpoints() {
        let pods = [pod(0, true, false), pod(1, false, false), pod(2, true, true)];
        let groups = desired(&svc(), &pods);
        let (ports, endpoints) = groups.values().next().cloned().unwrap_or_default();
        assert_eq!(ports[0].port, Some(8080));
        let conditions: Vec<(bool, bool, bool)> = endpoints
            .iter()
            .map(|e| {
                let c = e.conditions.clone().unwrap_or_default();
                (c.ready.unwrap_or(false), c.serving.unwrap_or(false), c.terminating.unwrap_or(false))
            })
            .collect();
        assert_eq!(conditions, [(true, true, false), (false, false, false), (false, true, true)]);
    }

    #[test]
    fn endpoints_are_split_into_slices_of_a_hundred_and_stay_where_they_are() {
        let pods: Vec<Arc<Pod>> = (0..250).map(|i| pod(i, true, false)).collect();
        let first = plan(&svc(), &[], desired(&svc(), &pods));
        let sizes: Vec<usize> = first.create.iter().map(|s| s.endpoints.len()).collect();
        assert_eq!(sizes, [100, 100, 50]);
        assert_eq!(
            first.create[0].metadata.labels.as_ref().and_then(|l| l.get(SERVICE_NAME_LABEL)).map(String::as_str),
            Some("web")
        );
        let slices = existing(first);

        assert_eq!(plan(&svc(), &slices, desired(&svc(), &pods)), Plan::default(), "nothing changed, nothing written");

        // One pod goes, one comes: only the slices concerned change.
        let mut next: Vec<Arc<Pod>> =
            pods.iter().filter(|p| p.metadata.name.as_deref() != Some("p0")).cloned().collect();
        next.push(pod(300, true, false));
        let second = plan(&svc(), &slices, desired(&svc(), &next));
        assert!(second.create.is_empty() && second.delete.is_empty(), "{second:?}");
        let updated: Vec<&str> = second.update.iter().filter_map(|s| s.metadata.name.as_deref()).collect();
        assert_eq!(updated, ["web-000"], "the newcomer fills the hole");
    }

    #[test]
    fn a_service_without_endpoints_keeps_one_empty_slice() {
        let none = plan(&svc(), &[], desired(&svc(), &[]));
        assert_eq!(none.create.len(), 1);
        assert!(none.create[0].endpoints.is_empty());
        let slices = existing(plan(&svc(), &[], desired(&svc(), &[pod(1, true, false)])));
        let emptied = plan(&svc(), &slices, desired(&svc(), &[]));
        assert_eq!((emptied.create.len(), emptied.update.len(), emptied.delete.len()), (0, 1, 0));
    }

    fn at(seconds: i64) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
        k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::from_second(seconds).unwrap_or_default())
    }

    fn ready_at(i: usize, seconds: i64) -> Arc<Pod> {
        let mut p = (*pod(i, true, false)).clone();
        if let Some(c) = p.status.as_mut().and_then(|s| s.conditions.as_mut()) {
            c[0].last_transition_time = Some(at(seconds));
        }
        Arc::new(p)
    }

    #[test]
    fn the_trigger_time_is_the_earliest_change_not_yet_written() {
        let t = |seconds: i64| Timestamp::from_second(seconds).unwrap_or_default();
        let mut service = svc();
        service.metadata.creation_timestamp = Some(at(100));
        let pods = [ready_at(0, 50), ready_at(1, 300)];
        let (earliest, latest) = changes_since(&service, &pods, None);
        assert_eq!((earliest, latest), (Some(t(100)), Some(t(300))), "a new Service: its creation");

        let mut first = plan(&service, &[], desired(&service, &pods));
        stamp(&mut first, earliest);
        let slices = existing(first);
        assert_eq!(carried(&slices), Some(t(100)));

        // Two pods became ready since the last write: the earlier one is the trigger.
        let pods = [ready_at(0, 50), ready_at(1, 300), ready_at(2, 450), ready_at(3, 400)];
        assert_eq!(changes_since(&service, &pods, latest), (Some(t(400)), Some(t(450))));
        // Nothing newer (a pod went away): no time, and the slices keep theirs.
        assert_eq!(changes_since(&service, &pods[..1], Some(t(450))), (None, None));
        let mut gone = plan(&service, &slices, desired(&service, &pods[..1]));
        stamp(&mut gone, None);
        let kept = gone.update[0].metadata.annotations.as_ref().and_then(|a| a.get(TRIGGER_TIME_ANNOTATION));
        assert_eq!(kept.map(String::as_str), Some("1970-01-01T00:01:40Z"));
    }
}

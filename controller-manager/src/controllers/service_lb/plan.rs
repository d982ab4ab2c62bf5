//! The LoadBalancer IP allocator's decisions, pure: from every Service's type, class, requested
//! IP and status, and the pool, the status writes and Warning Events that make each class-less
//! LoadBalancer Service hold one address of the pool that no other Service holds.
//!
//! The Services' statuses are the allocation state; nothing else is remembered. In order:
//! 1. A Service that is not a LoadBalancer loses any `status.loadBalancer` it has.
//! 2. A LoadBalancer Service keeps the pool address its status names (unless its
//!    `spec.loadBalancerIP` asks for another); when two name the same one, the older keeps it
//!    (`creationTimestamp`, then name, then namespace) and the other is given a new one.
//! 3. The others, oldest first, get their `spec.loadBalancerIP` when it is in the pool and free,
//!    and otherwise nothing; Services asking for no address in particular then get the lowest
//!    free one.
//!
//! An address given up in one pass (step 1, a Service moving to the address it asks for) is
//! handed out only in the next pass, once its release is written, so two Services never hold it
//! even if one write fails. Services with `spec.loadBalancerClass` belong to another
//! implementation: left alone, but the pool addresses they hold are not handed out.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Service};
use k8s_openapi::jiff::Timestamp;

use super::pool::Pool;

/// `status.loadBalancer.ingress[].ipMode` of the addresses given out: the node takes the
/// traffic as addressed to itself, which is what rk-proxy does.
pub const IP_MODE: &str = "VIP";

/// What the plan needs of one Service.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claim {
    pub namespace: String,
    pub name: String,
    pub created: Option<Timestamp>,
    /// `spec.type` is LoadBalancer.
    pub load_balancer: bool,
    /// `spec.loadBalancerClass` is set: another implementation's Service.
    pub foreign: bool,
    /// Being deleted: it keeps what it has, and gets nothing new.
    pub deleting: bool,
    /// `spec.loadBalancerIP`, when not empty.
    pub requested: Option<String>,
    /// `status.loadBalancer.ingress`.
    pub ingress: Vec<LoadBalancerIngress>,
}

impl Claim {
    pub fn of(service: &Service) -> Claim {
        let spec = service.spec.clone().unwrap_or_default();
        Claim {
            namespace: service.metadata.namespace.clone().unwrap_or_default(),
            name: service.metadata.name.clone().unwrap_or_default(),
            created: service.metadata.creation_timestamp.as_ref().map(|t| t.0),
            load_balancer: spec.type_.as_deref() == Some("LoadBalancer"),
            foreign: spec.load_balancer_class.is_some_and(|c| !c.is_empty()),
            deleting: service.metadata.deletion_timestamp.is_some(),
            requested: spec.load_balancer_ip.filter(|ip| !ip.is_empty()),
            ingress: ingress(service),
        }
    }

    /// Whether the Service is any of the controller's business: a LoadBalancer, or one with
    /// an ingress (which a Service that stopped being one loses).
    pub fn concerns(&self) -> bool {
        self.load_balancer || !self.ingress.is_empty()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The addresses of its ingress that are IPv4 (others are nobody's business here).
    fn ips(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.ingress.iter().filter_map(|i| i.ip.as_deref()?.parse().ok())
    }

    /// Older first: who keeps an address two Services claim, and who is served first.
    fn precedence(&self, other: &Claim) -> Ordering {
        (self.created, &self.name, &self.namespace).cmp(&(other.created, &other.name, &other.namespace))
    }
}

/// A Service's `status.loadBalancer.ingress`.
pub fn ingress(service: &Service) -> Vec<LoadBalancerIngress> {
    service.status.as_ref().and_then(|s| s.load_balancer.as_ref()).and_then(|lb| lb.ingress.clone()).unwrap_or_default()
}

/// The ingress written for an address.
pub fn ingress_for(ip: Ipv4Addr) -> Vec<LoadBalancerIngress> {
    vec![LoadBalancerIngress { ip: Some(ip.to_string()), ip_mode: Some(IP_MODE.into()), ..Default::default() }]
}

/// One thing to do, about the Service `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Write `[{"ip": ip, "ipMode": "VIP"}]` as its `status.loadBalancer.ingress`.
    Assign { service: String, ip: Ipv4Addr },
    /// Clear its `status.loadBalancer`.
    Clear { service: String },
    /// A Warning Event `AllocationFailed` with this message.
    Fail { service: String, message: String },
}

/// The message of an exhausted pool.
pub const EXHAUSTED: &str = "no free address in the pool";

/// The steps that bring `services` in line with `pool` (see the module's doc).
pub fn plan(services: &[Claim], pool: &Pool) -> Vec<Step> {
    let mut order: Vec<&Claim> = services.iter().filter(|c| !c.foreign).collect();
    order.sort_by(|a, b| a.precedence(b));
    let mut steps = Vec::new();
    // Pool addresses not to hand out in this pass, and who holds each. Another class's are
    // theirs whatever their age: they cannot be moved from here.
    let mut taken: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    for claim in services.iter().filter(|c| c.foreign) {
        for ip in claim.ips().filter(|ip| pool.contains(*ip)) {
            taken.entry(ip).or_insert_with(|| claim.key());
        }
    }
    // Addresses being given up; they stay taken until the release is written, but they do not
    // take an address from a Service that holds it as its own.
    let mut releasing: Vec<(Ipv4Addr, String)> = Vec::new();
    // LoadBalancer Services without an address of their own, in precedence order.
    let mut waiting: Vec<&Claim> = Vec::new();
    for claim in order {
        let in_pool = claim.ips().filter(|ip| pool.contains(*ip));
        if !claim.load_balancer {
            releasing.extend(in_pool.map(|ip| (ip, claim.key())));
            if !claim.ingress.is_empty() {
                steps.push(Step::Clear { service: claim.key() });
            }
            continue;
        }
        let held = claim.ips().find(|ip| pool.contains(*ip));
        let keeps = match (held, claim.requested.as_deref().map(str::parse::<Ipv4Addr>)) {
            (Some(ip), None) => Some(ip),
            (Some(ip), Some(Ok(want))) if ip == want => Some(ip),
            _ => None,
        };
        releasing.extend(in_pool.filter(|ip| Some(*ip) != keeps).map(|ip| (ip, claim.key())));
        match keeps {
            Some(ip) if !taken.contains_key(&ip) => {
                taken.insert(ip, claim.key());
                if claim.ingress != ingress_for(ip) {
                    steps.push(Step::Assign { service: claim.key(), ip });
                }
            }
            _ => waiting.push(claim),
        }
    }
    for (ip, holder) in releasing {
        taken.entry(ip).or_insert(holder);
    }

    // Nothing is freed from here on, so the lowest free address only goes up.
    let mut cursor = Ipv4Addr::UNSPECIFIED;
    let (asking, any): (Vec<&Claim>, Vec<&Claim>) = waiting.into_iter().partition(|c| c.requested.is_some());
    for claim in asking.into_iter().chain(any) {
        let key = claim.key();
        let got = match claim.requested.as_deref() {
            _ if claim.deleting => Err(None),
            Some(text) => match text.parse::<Ipv4Addr>() {
                Err(_) => Err(Some(format!("spec.loadBalancerIP {text:?} is not an IPv4 address"))),
                Ok(ip) if !pool.contains(ip) => {
                    Err(Some(format!("spec.loadBalancerIP {ip} is not in the pool ({pool})")))
                }
                Ok(ip) => match taken.get(&ip) {
                    Some(holder) => Err(Some(format!("spec.loadBalancerIP {ip} is in use by Service {holder}"))),
                    None => Ok(ip),
                },
            },
            None => {
                let free = pool.lowest_free(&taken, cursor);
                cursor = free.unwrap_or(cursor);
                free.ok_or_else(|| Some(EXHAUSTED.to_string()))
            }
        };
        match got {
            Ok(ip) => {
                taken.insert(ip, key.clone());
                steps.push(Step::Assign { service: key, ip });
            }
            Err(message) => {
                if !claim.ingress.is_empty() {
                    steps.push(Step::Clear { service: key.clone() });
                }
                if let Some(message) = message {
                    steps.push(Step::Fail { service: key, message });
                }
            }
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(text: &str) -> Pool {
        Pool::parse(text).ok().flatten().unwrap_or_else(|| panic!("{text:?} parses"))
    }

    /// A class-less LoadBalancer Service `default/<name>` created at second `created`.
    fn lb(name: &str, created: i64) -> Claim {
        Claim {
            namespace: "default".into(),
            name: name.into(),
            created: Timestamp::from_second(created).ok(),
            load_balancer: true,
            ..Default::default()
        }
    }

    fn holding(claim: Claim, ip: &str) -> Claim {
        Claim { ingress: ingress_for(ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)), ..claim }
    }

    fn asking(claim: Claim, ip: &str) -> Claim {
        Claim { requested: Some(ip.into()), ..claim }
    }

    fn assign(name: &str, ip: &str) -> Step {
        Step::Assign { service: format!("default/{name}"), ip: ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED) }
    }

    fn clear(name: &str) -> Step {
        Step::Clear { service: format!("default/{name}") }
    }

    fn fail(name: &str, message: &str) -> Step {
        Step::Fail { service: format!("default/{name}"), message: message.into() }
    }

    #[test]
    fn load_balancer_services_get_the_lowest_free_addresses_oldest_first() {
        // 192.0.2.9 and 192.0.2.10 are usable.
        let two = pool("192.0.2.8/30");
        let cases: Vec<(&str, Vec<Claim>, Vec<Step>)> = vec![
            ("nothing to do", vec![], vec![]),
            ("one new Service", vec![lb("a", 1)], vec![assign("a", "192.0.2.9")]),
            (
                "two new, the older first",
                vec![lb("b", 2), lb("a", 1)],
                vec![assign("a", "192.0.2.9"), assign("b", "192.0.2.10")],
            ),
            (
                "same age: by name",
                vec![lb("b", 1), lb("a", 1)],
                vec![assign("a", "192.0.2.9"), assign("b", "192.0.2.10")],
            ),
            (
                "a held address is kept",
                vec![holding(lb("a", 1), "192.0.2.10"), lb("b", 2)],
                vec![assign("b", "192.0.2.9")],
            ),
            (
                "the pool runs out",
                vec![lb("a", 1), lb("b", 2), lb("c", 3)],
                vec![assign("a", "192.0.2.9"), assign("b", "192.0.2.10"), fail("c", EXHAUSTED)],
            ),
            (
                "an address freed by a deletion goes to the one waiting",
                vec![holding(lb("b", 2), "192.0.2.10"), lb("c", 3)],
                vec![assign("c", "192.0.2.9")],
            ),
            (
                "held addresses stay with their Services when the pool is full",
                vec![holding(lb("a", 1), "192.0.2.9"), holding(lb("b", 2), "192.0.2.10"), lb("c", 0)],
                vec![fail("c", EXHAUSTED)],
            ),
        ];
        for (what, services, want) in cases {
            assert_eq!(plan(&services, &two), want, "{what}");
        }
    }

    #[test]
    fn a_service_that_is_no_longer_a_load_balancer_gives_its_address_back_in_the_next_pass() {
        let two = pool("192.0.2.8/30");
        let cluster_ip = |claim: Claim| Claim { load_balancer: false, ..claim };
        let cases: Vec<(&str, Vec<Claim>, Vec<Step>)> = vec![
            (
                "released now, handed out next time",
                vec![cluster_ip(holding(lb("a", 1), "192.0.2.9")), holding(lb("b", 2), "192.0.2.10"), lb("c", 3)],
                vec![clear("a"), fail("c", EXHAUSTED)],
            ),
            (
                "once released, it is free",
                vec![cluster_ip(lb("a", 1)), holding(lb("b", 2), "192.0.2.10"), lb("c", 3)],
                vec![assign("c", "192.0.2.9")],
            ),
            (
                "any ingress is cleared, in the pool or not",
                vec![cluster_ip(holding(lb("a", 1), "203.0.113.1"))],
                vec![clear("a")],
            ),
            ("plain Services are left alone", vec![cluster_ip(lb("a", 1))], vec![]),
            (
                "an address being released does not take it from a Service that holds it",
                vec![cluster_ip(holding(lb("a", 1), "192.0.2.9")), holding(lb("b", 2), "192.0.2.9")],
                vec![clear("a")],
            ),
        ];
        for (what, services, want) in cases {
            assert_eq!(plan(&services, &two), want, "{what}");
        }
    }

    #[test]
    fn a_requested_address_is_given_when_in_the_pool_and_free() {
        let four = pool("192.0.2.10-192.0.2.13");
        let cases: Vec<(&str, Vec<Claim>, Vec<Step>)> = vec![
            ("honoured", vec![asking(lb("a", 1), "192.0.2.12")], vec![assign("a", "192.0.2.12")]),
            (
                "served before Services asking for nothing in particular",
                vec![lb("a", 1), asking(lb("b", 2), "192.0.2.10")],
                vec![assign("b", "192.0.2.10"), assign("a", "192.0.2.11")],
            ),
            (
                "not in the pool",
                vec![asking(lb("a", 1), "198.51.100.1")],
                vec![fail("a", "spec.loadBalancerIP 198.51.100.1 is not in the pool (192.0.2.10-192.0.2.13)")],
            ),
            (
                "not an address",
                vec![asking(lb("a", 1), "example.com")],
                vec![fail("a", "spec.loadBalancerIP \"example.com\" is not an IPv4 address")],
            ),
            (
                "held by another Service, even a younger one",
                vec![holding(lb("b", 2), "192.0.2.11"), asking(lb("a", 1), "192.0.2.11")],
                vec![fail("a", "spec.loadBalancerIP 192.0.2.11 is in use by Service default/b")],
            ),
            (
                "two ask for one: the older gets it",
                vec![asking(lb("b", 2), "192.0.2.11"), asking(lb("a", 1), "192.0.2.11")],
                vec![
                    assign("a", "192.0.2.11"),
                    fail("b", "spec.loadBalancerIP 192.0.2.11 is in use by Service default/a"),
                ],
            ),
            ("already held", vec![asking(holding(lb("a", 1), "192.0.2.12"), "192.0.2.12")], vec![]),
            (
                "a changed request moves the Service; the old address is free next time",
                vec![asking(holding(lb("a", 1), "192.0.2.10"), "192.0.2.12"), lb("b", 2)],
                vec![assign("a", "192.0.2.12"), assign("b", "192.0.2.11")],
            ),
            (
                "a request that cannot be met clears what the Service had",
                vec![asking(holding(lb("a", 1), "192.0.2.10"), "198.51.100.1")],
                vec![
                    clear("a"),
                    fail("a", "spec.loadBalancerIP 198.51.100.1 is not in the pool (192.0.2.10-192.0.2.13)"),
                ],
            ),
        ];
        for (what, services, want) in cases {
            assert_eq!(plan(&services, &four), want, "{what}");
        }
    }

    #[test]
    fn of_two_services_holding_one_address_the_older_keeps_it() {
        let four = pool("192.0.2.10-192.0.2.13");
        let cases: Vec<(&str, Vec<Claim>, Vec<Step>)> = vec![
            (
                "by creation time",
                vec![holding(lb("a", 2), "192.0.2.10"), holding(lb("b", 1), "192.0.2.10")],
                vec![assign("a", "192.0.2.11")],
            ),
            (
                "then by name",
                vec![holding(lb("b", 1), "192.0.2.10"), holding(lb("a", 1), "192.0.2.10")],
                vec![assign("b", "192.0.2.11")],
            ),
            (
                "the loser waits when the pool is full",
                vec![
                    holding(lb("a", 1), "192.0.2.10"),
                    holding(lb("b", 2), "192.0.2.11"),
                    holding(lb("c", 3), "192.0.2.12"),
                    holding(lb("d", 4), "192.0.2.13"),
                    holding(lb("e", 5), "192.0.2.10"),
                ],
                vec![clear("e"), fail("e", EXHAUSTED)],
            ),
        ];
        for (what, services, want) in cases {
            assert_eq!(plan(&services, &four), want, "{what}");
        }
    }

    #[test]
    fn statuses_that_are_not_exactly_ours_are_rewritten() {
        let four = pool("192.0.2.10-192.0.2.13");
        let with = |claim: Claim, ingress: serde_json::Value| Claim {
            ingress: serde_json::from_value(ingress).unwrap_or_default(),
            ..claim
        };
        let cases: Vec<(&str, Vec<Claim>, Vec<Step>)> = vec![
            (
                "no ipMode",
                vec![with(lb("a", 1), serde_json::json!([{"ip": "192.0.2.11"}]))],
                vec![assign("a", "192.0.2.11")],
            ),
            (
                "a hostname beside it",
                vec![with(
                    lb("a", 1),
                    serde_json::json!([{"hostname": "x.example"}, {"ip": "192.0.2.11", "ipMode": "VIP"}]),
                )],
                vec![assign("a", "192.0.2.11")],
            ),
            (
                "two addresses: the first is kept, the other is not another's loss",
                vec![
                    with(lb("a", 1), serde_json::json!([{"ip": "192.0.2.10"}, {"ip": "192.0.2.11"}])),
                    holding(lb("b", 2), "192.0.2.11"),
                    lb("c", 3),
                ],
                vec![assign("a", "192.0.2.10"), assign("c", "192.0.2.12")],
            ),
            (
                "an address outside the pool (one that shrank)",
                vec![holding(lb("a", 1), "198.51.100.1")],
                vec![assign("a", "192.0.2.10")],
            ),
        ];
        for (what, services, want) in cases {
            assert_eq!(plan(&services, &four), want, "{what}");
        }
    }

    #[test]
    fn services_of_another_load_balancer_class_are_left_alone() {
        let two = pool("192.0.2.8/30");
        let foreign = |claim: Claim| Claim { foreign: true, ..claim };
        let cases: Vec<(&str, Vec<Claim>, Vec<Step>)> = vec![
            ("not given an address", vec![foreign(lb("a", 1))], vec![]),
            ("not cleared", vec![foreign(holding(lb("a", 1), "203.0.113.1"))], vec![]),
            (
                "what they hold of the pool is not handed out, whatever their age",
                vec![lb("a", 1), foreign(holding(lb("b", 2), "192.0.2.9"))],
                vec![assign("a", "192.0.2.10")],
            ),
        ];
        for (what, services, want) in cases {
            assert_eq!(plan(&services, &two), want, "{what}");
        }
    }

    #[test]
    fn a_service_being_deleted_keeps_its_address_and_gets_none() {
        let two = pool("192.0.2.8/30");
        let deleting = |claim: Claim| Claim { deleting: true, ..claim };
        let services = vec![deleting(holding(lb("a", 1), "192.0.2.9")), deleting(lb("b", 2)), lb("c", 3)];
        assert_eq!(plan(&services, &two), vec![assign("c", "192.0.2.10")]);
    }

    #[test]
    fn claims_are_read_from_services() {
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "ns", "name": "web", "creationTimestamp": "2026-01-02T03:04:05Z"},
            "spec": {"type": "LoadBalancer", "loadBalancerIP": "192.0.2.10", "loadBalancerClass": "example.com/lb"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "VIP"}]}},
        }))
        .unwrap_or_default();
        let claim = Claim::of(&service);
        assert_eq!(claim.key(), "ns/web");
        assert!(claim.load_balancer && claim.foreign && !claim.deleting);
        assert_eq!(claim.requested.as_deref(), Some("192.0.2.10"));
        assert_eq!(claim.ingress, ingress_for(Ipv4Addr::new(192, 0, 2, 10)));
        assert_eq!(claim.created.map(|t| t.as_second()), Some(1_767_323_045));
        assert!(claim.concerns());
        let plain = Claim::of(&Service::default());
        assert!(!plain.load_balancer && !plain.foreign && plain.requested.is_none() && plain.ingress.is_empty());
        assert!(!plain.concerns());
        let left: Service = serde_json::from_value(serde_json::json!({
            "spec": {"type": "ClusterIP"},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.9"}]}},
        }))
        .unwrap_or_default();
        assert!(Claim::of(&left).concerns(), "a Service that stopped being a LoadBalancer, with an ingress");
    }
}

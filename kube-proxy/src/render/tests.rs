use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;

use super::*;
use crate::model::{SERVICE_NAME_LABEL, service_ports};

fn settings() -> Settings {
    Settings {
        node_name: "a".into(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        masquerade_all: false,
        nodeport_addresses: vec!["192.168.50.2".into()],
        dns: Some(("10.96.0.10".parse().expect("ip"), 10053)),
    }
}

fn service(name: &str, ip: &str, extra: serde_json::Value) -> Arc<Service> {
    let mut spec = json!({"clusterIP": ip, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    Arc::new(
        serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": name}, "spec": spec})).expect("service"),
    )
}

fn slice(service: &str, endpoints: &[(&str, &str)]) -> Arc<EndpointSlice> {
    let endpoints: Vec<_> = endpoints.iter().map(|(ip, node)| json!({"addresses": [ip], "nodeName": node})).collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": format!("{service}-x"), "labels": {SERVICE_NAME_LABEL: service}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}))
        .expect("slice"),
    )
}

fn rules(services: &[Arc<Service>], slices: &[Arc<EndpointSlice>]) -> Ruleset {
    ruleset(&service_ports(services, slices), &settings())
}

#[test]
fn full_sync_renders_the_skeleton_pickers_and_elements() {
    let r = rules(
        &[
            service(
                "web",
                "10.96.0.20",
                json!({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
            ),
            service("empty", "10.96.0.21", json!({})),
        ],
        &[slice("web", &[("10.244.0.2", "a"), ("10.244.1.3", "b")])],
    );
    let text = full(&r, &settings());
    let skeleton = "\
add table ip rk-proxy
delete table ip rk-proxy
table ip rk-proxy {
\tmap service-ips { type ipv4_addr . inet_proto . inet_service : verdict; }
\tmap service-nodeports { type inet_proto . inet_service : verdict; }
\tmap no-endpoint-services { type ipv4_addr . inet_proto . inet_service : verdict; }
\tmap no-endpoint-nodeports { type inet_proto . inet_service : verdict; }
\tmap endpoints { typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport; }
\tmap nodeport-endpoints { typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport; }
\tset hairpin { type ipv4_addr . ipv4_addr; }
\tset nodeport-ips { type ipv4_addr; flags interval; auto-merge; }
\tchain nat-prerouting { type nat hook prerouting priority -100; policy accept; jump services; }
\tchain nat-output { type nat hook output priority -100; policy accept; jump services; }
\tchain nat-postrouting { type nat hook postrouting priority 100; policy accept; jump masquerading; }
\tchain filter-input { type filter hook input priority -110; policy accept; ct state new jump endpoints-check; }
\tchain filter-forward { type filter hook forward priority -110; policy accept; ct state new jump endpoints-check; }
\tchain filter-output { type filter hook output priority -110; policy accept; ct state new jump endpoints-check; }
\tchain endpoints-check {
\t\tip daddr . meta l4proto . th dport vmap @no-endpoint-services
\t\tfib daddr type local ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
\t}
\tchain reject-connection { meta l4proto tcp reject with tcp reset; reject; }
\tchain mark-for-masquerade { meta mark set meta mark | 0x00004000; }
\tchain services {
\t\tip daddr 10.96.0.10 udp dport 53 redirect to :10053
\t\tip daddr 10.96.0.10 tcp dport 53 redirect to :10053
\t\tip daddr . meta l4proto . th dport vmap @service-ips
\t\tfib daddr type local ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
\t}
\tchain masquerading {
\t\tmeta mark & 0x00004000 == 0x00004000 meta mark set meta mark & 0xffffbfff masquerade fully-random
\t\tct status dnat ip saddr . ip daddr @hairpin masquerade
\t\tip saddr 10.244.0.0/16 ip daddr != 10.244.0.0/16 masquerade
\t}
}
";
    let in_use = "\
add chain ip rk-proxy cluster-2
add rule ip rk-proxy cluster-2 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
add rule ip rk-proxy cluster-2 meta l4proto tcp dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @endpoints
add rule ip rk-proxy cluster-2 meta l4proto udp dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @endpoints
add rule ip rk-proxy cluster-2 meta l4proto sctp dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 2 map @endpoints
add chain ip rk-proxy nodeport-2
add rule ip rk-proxy nodeport-2 jump mark-for-masquerade
add rule ip rk-proxy nodeport-2 meta l4proto tcp dnat ip to meta l4proto . th dport . numgen random mod 2 map @nodeport-endpoints
add rule ip rk-proxy nodeport-2 meta l4proto udp dnat ip to meta l4proto . th dport . numgen random mod 2 map @nodeport-endpoints
add rule ip rk-proxy nodeport-2 meta l4proto sctp dnat ip to meta l4proto . th dport . numgen random mod 2 map @nodeport-endpoints
add element ip rk-proxy service-ips { 10.96.0.20 . tcp . 80 : goto cluster-2 }
add element ip rk-proxy service-nodeports { tcp . 30080 : goto nodeport-2 }
add element ip rk-proxy no-endpoint-services { 10.96.0.21 . tcp . 80 : goto reject-connection }
add element ip rk-proxy endpoints { 10.96.0.20 . tcp . 80 . 0 : 10.244.0.2 . 8080, 10.96.0.20 . tcp . 80 . 1 : 10.244.1.3 . 8080 }
add element ip rk-proxy nodeport-endpoints { tcp . 30080 . 0 : 10.244.0.2 . 8080, tcp . 30080 . 1 : 10.244.1.3 . 8080 }
add element ip rk-proxy hairpin { 10.244.0.2 . 10.244.0.2, 10.244.1.3 . 10.244.1.3 }
add element ip rk-proxy nodeport-ips { 192.168.50.2 }
";
    assert!(text.starts_with(skeleton), "got:\n{text}");
    assert!(text.ends_with(in_use), "got:\n{text}");
    let chains = text.lines().filter(|l| l.starts_with("add chain")).count();
    assert_eq!(chains, 5 * PRESET_PICKERS, "every kind's pickers for 1..={PRESET_PICKERS} endpoints");
}

#[test]
fn an_endpoint_change_rewrites_only_its_elements() {
    let web = service("web", "10.96.0.20", json!({}));
    let old = rules(std::slice::from_ref(&web), &[slice("web", &[("10.244.0.2", "a"), ("10.244.1.3", "b")])]);
    let new = rules(&[web], &[slice("web", &[("10.244.0.2", "a"), ("10.244.1.4", "b")])]);
    assert_eq!(
        diff(&old, &new).expect("incremental"),
        "\
delete element ip rk-proxy endpoints { 10.96.0.20 . tcp . 80 . 1 }
add element ip rk-proxy endpoints { 10.96.0.20 . tcp . 80 . 1 : 10.244.1.4 . 8080 }
delete element ip rk-proxy hairpin { 10.244.1.3 . 10.244.1.3 }
add element ip rk-proxy hairpin { 10.244.1.4 . 10.244.1.4 }
"
    );
    assert_eq!(diff(&new, &new).as_deref(), Some(""), "nothing changed, nothing written");
}

#[test]
fn scaling_to_zero_refuses_at_once() {
    let web = service("web", "10.96.0.20", json!({}));
    let old = rules(std::slice::from_ref(&web), &[slice("web", &[("10.244.0.2", "a")])]);
    let new = rules(&[web], &[slice("web", &[])]);
    assert_eq!(
        diff(&old, &new).expect("incremental"),
        "\
delete element ip rk-proxy service-ips { 10.96.0.20 . tcp . 80 }
add element ip rk-proxy no-endpoint-services { 10.96.0.20 . tcp . 80 : goto reject-connection }
delete element ip rk-proxy endpoints { 10.96.0.20 . tcp . 80 . 0 }
delete element ip rk-proxy hairpin { 10.244.0.2 . 10.244.0.2 }
"
    );
}

#[test]
fn an_endpoint_count_without_a_picker_takes_a_full_sync() {
    let web = service("web", "10.96.0.20", json!({}));
    let ips: Vec<String> = (0..=PRESET_PICKERS).map(|i| format!("10.244.0.{}", i + 2)).collect();
    let endpoints: Vec<(&str, &str)> = ips.iter().map(|ip| (ip.as_str(), "a")).collect();
    let small = rules(std::slice::from_ref(&web), &[slice("web", &endpoints[..PRESET_PICKERS])]);
    let large = rules(&[web], &[slice("web", &endpoints)]);
    assert!(diff(&small, &large).is_none(), "{} endpoints need a new picker", PRESET_PICKERS + 1);
    assert!(diff(&large, &small).is_some(), "going back uses a preset picker");
    assert!(full(&large, &settings()).contains(&format!("add chain ip rk-proxy cluster-{}\n", PRESET_PICKERS + 1)));
}

#[test]
fn local_policies_keep_to_local_endpoints_or_drop() {
    let local = service(
        "web",
        "10.96.0.20",
        json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Local",
               "externalIPs": ["192.0.2.7"], "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
    );
    let r = rules(std::slice::from_ref(&local), &[slice("web", &[("10.244.0.2", "a"), ("10.244.1.3", "b")])]);
    assert_eq!(r.service_ips["10.96.0.20 . tcp . 80"], "goto cluster-1");
    assert_eq!(r.service_ips["192.0.2.7 . tcp . 80"], "goto local-1");
    assert_eq!(r.service_nodeports["tcp . 30080"], "goto nodeport-local-1");
    assert_eq!(r.endpoints["192.0.2.7 . tcp . 80 . 0"], "10.244.0.2 . 8080");
    assert_eq!(
        r.pickers["local-1"][0],
        "meta l4proto tcp dnat ip to ip daddr . meta l4proto . th dport . numgen random mod 1 map @endpoints",
        "no masquerade: the source is kept"
    );
    let elsewhere = rules(&[local], &[slice("web", &[("10.244.1.3", "b")])]);
    assert_eq!(elsewhere.service_nodeports["tcp . 30080"], "drop");
    assert_eq!(elsewhere.service_ips["10.96.0.20 . tcp . 80"], "drop");
}

#[test]
fn session_affinity_gets_its_own_chain_and_sets() {
    let sticky = service(
        "web",
        "10.96.0.20",
        json!({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}),
    );
    let r = rules(&[sticky], &[slice("web", &[("10.244.0.2", "a"), ("10.244.1.3", "b")])]);
    assert_eq!(r.service_ips["10.96.0.20 . tcp . 80"], "goto cluster-ns/web/tcp/80");
    assert_eq!(
        r.chains["cluster-ns/web/tcp/80"],
        [
            "ip saddr != 10.244.0.0/16 jump mark-for-masquerade",
            "ip saddr @affinity-ns/web/tcp/80__10.244.0.2/8080__60s meta l4proto tcp dnat ip to 10.244.0.2:8080",
            "ip saddr @affinity-ns/web/tcp/80__10.244.1.3/8080__60s meta l4proto tcp dnat ip to 10.244.1.3:8080",
            "numgen random mod 2 == 0 update @affinity-ns/web/tcp/80__10.244.0.2/8080__60s { ip saddr } meta l4proto tcp dnat ip to 10.244.0.2:8080",
            "update @affinity-ns/web/tcp/80__10.244.1.3/8080__60s { ip saddr } meta l4proto tcp dnat ip to 10.244.1.3:8080",
        ]
    );
    assert_eq!(r.affinity_sets.len(), 2);
    assert!(r.endpoints.is_empty(), "sticky Services pick in their own chain");
}

#[test]
fn the_dns_service_ip_is_left_to_the_redirect() {
    let dns = Arc::new(
        serde_json::from_value::<Service>(json!({"metadata": {"namespace": "kube-system", "name": "kube-dns"},
            "spec": {"clusterIP": "10.96.0.10", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}}))
        .expect("service"),
    );
    let r = rules(&[dns], &[]);
    assert!(r.service_ips.is_empty() && r.no_endpoint_services.is_empty());
}

//! What a Service update drops with its type, as upstream does: a field the old type needed and
//! the new one does not is cleared, but only while the user left it as it was (so a plain
//! `{"spec": {"type": "ClusterIP"}}` patch of a NodePort Service is valid, and a user who sets
//! such a field on purpose still gets told it does not belong).

use serde_json::Value;

fn kind(svc: &Value) -> &str {
    svc["spec"]["type"].as_str().unwrap_or("ClusterIP")
}

fn needs_cluster_ip(svc: &Value) -> bool {
    kind(svc) != "ExternalName"
}

fn needs_node_ports(svc: &Value) -> bool {
    matches!(kind(svc), "NodePort" | "LoadBalancer")
}

fn needs_health_check_node_port(svc: &Value) -> bool {
    kind(svc) == "LoadBalancer" && svc["spec"]["externalTrafficPolicy"].as_str() == Some("Local")
}

fn externally_accessible(svc: &Value) -> bool {
    needs_node_ports(svc)
        || (kind(svc) == "ClusterIP" && svc["spec"]["externalIPs"].as_array().is_some_and(|ips| !ips.is_empty()))
}

fn node_ports(svc: &Value) -> Vec<i64> {
    let ports = svc["spec"]["ports"].as_array();
    ports.into_iter().flatten().filter_map(|p| p["nodePort"].as_i64()).filter(|p| *p != 0).collect()
}

/// Clears in `new` what its type no longer needs and the user did not change from `old`.
pub fn drop_type_dependent_fields(old: &Value, new: &mut Value) {
    let same = |new: &Value, field: &str| old["spec"].get(field) == new["spec"].get(field);
    let mut drop = Vec::new();
    if needs_cluster_ip(old) && !needs_cluster_ip(new) {
        if same(new, "clusterIP") && same(new, "clusterIPs") {
            drop.extend(["clusterIP", "clusterIPs"]);
        }
        drop.extend(["ipFamilies", "ipFamilyPolicy"].into_iter().filter(|f| same(new, f)));
    }
    if needs_health_check_node_port(old) && !needs_health_check_node_port(new) && same(new, "healthCheckNodePort") {
        drop.push("healthCheckNodePort");
    }
    if kind(old) == "LoadBalancer" && kind(new) != "LoadBalancer" {
        drop.extend(["allocateLoadBalancerNodePorts", "loadBalancerClass"].into_iter().filter(|f| same(new, f)));
    }
    if externally_accessible(old) && !externally_accessible(new) && same(new, "externalTrafficPolicy") {
        drop.push("externalTrafficPolicy");
    }
    // Node ports may be dropped as long as no new one was asked for.
    let old_ports = node_ports(old);
    let drop_node_ports =
        needs_node_ports(old) && !needs_node_ports(new) && node_ports(new).iter().all(|p| old_ports.contains(p));
    let Some(spec) = new["spec"].as_object_mut() else { return };
    for field in drop {
        spec.remove(field);
    }
    if drop_node_ports {
        for port in spec.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load_balancer() -> Value {
        json!({"spec": {
            "type": "LoadBalancer", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"],
            "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
            "externalTrafficPolicy": "Local", "healthCheckNodePort": 31000,
            "allocateLoadBalancerNodePorts": true, "loadBalancerClass": "example.org/lb",
            "ports": [{"port": 80, "nodePort": 30080}, {"port": 443, "nodePort": 30443}],
        }})
    }

    fn changed(new_type: &str, tweak: impl FnOnce(&mut Value)) -> Value {
        let old = load_balancer();
        let mut new = old.clone();
        new["spec"]["type"] = new_type.into();
        tweak(&mut new);
        drop_type_dependent_fields(&old, &mut new);
        new
    }

    #[test]
    fn a_load_balancer_turned_cluster_ip_loses_what_only_load_balancers_need() {
        let new = changed("ClusterIP", |_| {});
        assert_eq!(
            new,
            json!({"spec": {
                "type": "ClusterIP", "clusterIP": "10.96.0.9", "clusterIPs": ["10.96.0.9"],
                "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                "ports": [{"port": 80}, {"port": 443}],
            }})
        );
    }

    #[test]
    fn a_load_balancer_turned_node_port_keeps_its_node_ports_and_policy() {
        let new = changed("NodePort", |_| {});
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080);
        assert_eq!(new["spec"]["externalTrafficPolicy"], "Local");
        assert!(new["spec"].get("healthCheckNodePort").is_none());
        assert!(new["spec"].get("loadBalancerClass").is_none());
    }

    #[test]
    fn turned_external_name_it_loses_its_cluster_ip() {
        let new = changed("ExternalName", |n| n["spec"]["externalName"] = "db.example.org".into());
        for field in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy", "externalTrafficPolicy"] {
            assert!(new["spec"].get(field).is_none(), "{field} kept");
        }
    }

    #[test]
    fn what_the_user_changed_or_added_is_left_for_validation_to_judge() {
        let new = changed("ClusterIP", |n| {
            n["spec"]["externalTrafficPolicy"] = "Cluster".into();
            n["spec"]["ports"][1]["nodePort"] = 30999.into();
            n["spec"]["loadBalancerClass"] = "other.org/lb".into();
        });
        assert_eq!(new["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(new["spec"]["ports"][0]["nodePort"], 30080, "a new node port keeps all of them");
        assert_eq!(new["spec"]["loadBalancerClass"], "other.org/lb");
    }

    #[test]
    fn a_cluster_ip_service_with_external_ips_keeps_its_policy_while_they_stay() {
        let old =
            json!({"spec": {"type": "ClusterIP", "externalIPs": ["192.0.2.1"], "externalTrafficPolicy": "Local"}});
        let mut new = old.clone();
        drop_type_dependent_fields(&old, &mut new);
        assert_eq!(new, old);
        new["spec"]["externalIPs"] = json!([]);
        drop_type_dependent_fields(&old, &mut new);
        assert!(new["spec"].get("externalTrafficPolicy").is_none());
    }
}

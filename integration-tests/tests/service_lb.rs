//! rk-controller-manager's service-lb controller against a real API server on real etcd:
//! LoadBalancer Services get addresses of `--service-lb-ip-pool` in their status, wait when it is
//! exhausted, give them back when deleted or turned into something else, and keep them across a
//! restart of the controller manager.

use std::collections::BTreeSet;

use anyhow::Result;
use integration_tests::{Cluster, ControllerManager, eventually};
use k8s_openapi::api::core::v1::{Endpoints, Event, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

/// A controller manager running only the service-lb controller, with `pool`.
fn controller_manager(c: &Cluster, pool: &str) -> Result<ControllerManager> {
    let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    config.controllers = [controller_manager::controllers::service_lb::NAME].into_iter().collect();
    config.service_lb_ip_pool =
        controller_manager::controllers::service_lb::Pool::parse(pool).map_err(anyhow::Error::msg)?;
    Ok(ControllerManager::start(config))
}

/// A LoadBalancer Service; `extra` is merged into its spec.
fn load_balancer(name: &str, extra: serde_json::Value) -> Result<Service> {
    let mut spec = json!({"type": "LoadBalancer", "ports": [{"port": 80}]});
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec}))?)
}

/// The Service's ingress as (ip, ipMode) pairs.
async fn ingress(services: &Api<Service>, name: &str) -> Result<Vec<(String, String)>> {
    let svc = services.get(name).await?;
    let ingress = svc.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
    Ok(ingress.into_iter().map(|i| (i.ip.unwrap_or_default(), i.ip_mode.unwrap_or_default())).collect())
}

/// Waits until the Service has exactly one VIP address; returns it.
async fn address(services: &Api<Service>, name: &str) -> Result<String> {
    eventually(30, &format!("Service {name} gets an address"), || async {
        Ok(match ingress(services, name).await?.as_slice() {
            [(ip, mode)] if mode == "VIP" => Some(ip.clone()),
            _ => None,
        })
    })
    .await
}

/// Waits for a Warning Event `AllocationFailed` about the Service whose message has `text`.
async fn allocation_failed(events: &Api<Event>, name: &str, text: &str) -> Result<String> {
    eventually(30, &format!("AllocationFailed event of {name} saying {text:?}"), || async {
        let found = events.list(&ListParams::default()).await?.items.into_iter().find_map(|e| {
            let message = e.message.unwrap_or_default();
            (e.involved_object.name.as_deref() == Some(name)
                && e.reason.as_deref() == Some("AllocationFailed")
                && e.type_.as_deref() == Some("Warning")
                && message.contains(text))
            .then_some(message)
        });
        Ok(found)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_get_distinct_addresses_wait_for_a_free_one_and_give_theirs_back() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    // 192.0.2.9 and 192.0.2.10: the network and broadcast addresses are skipped.
    let _cm = controller_manager(&c, "192.0.2.8/30")?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    services.create(&pp, &load_balancer("a", json!({}))?).await?;
    services.create(&pp, &load_balancer("b", json!({}))?).await?;
    let a = address(&services, "a").await?;
    let b = address(&services, "b").await?;
    let both: BTreeSet<&str> = [a.as_str(), b.as_str()].into();
    assert_eq!(both, ["192.0.2.10", "192.0.2.9"].into(), "a and b hold distinct addresses of the pool");

    // The pool is exhausted: c waits, with an event saying why.
    services.create(&pp, &load_balancer("c", json!({}))?).await?;
    let message = allocation_failed(&events, "c", "no free address in the pool").await?;
    assert_eq!(message, "no free address in the pool");
    assert!(ingress(&services, "c").await?.is_empty());

    // a's address goes to c once a is gone.
    services.delete("a", &DeleteParams::default()).await?;
    let c_ip = address(&services, "c").await?;
    assert_eq!(c_ip, a, "c gets the address a gave back");

    // Another class's Service is left alone, free address or not.
    services.create(&pp, &load_balancer("other-class", json!({"loadBalancerClass": "example.com/lb"}))?).await?;

    // b stops being a LoadBalancer: its status is cleared and its address is free again.
    // (rk-apiserver, unlike upstream, does not drop the node ports and LoadBalancer-only fields
    // itself, so the patch does.)
    let to_cluster_ip = json!({"spec": {
        "type": "ClusterIP",
        "ports": [{"port": 80}],
        "externalTrafficPolicy": null,
        "allocateLoadBalancerNodePorts": null,
    }});
    services.patch("b", &PatchParams::default(), &Patch::Merge(&to_cluster_ip)).await?;
    eventually(30, "b's load balancer status is cleared", || async {
        let svc = services.get("b").await?;
        let lb = svc.status.and_then(|s| s.load_balancer);
        Ok(lb.is_none_or(|lb| lb.ingress.is_none_or(|i| i.is_empty())).then_some(()))
    })
    .await?;

    // A requested address is honoured when in the pool and free...
    services.create(&pp, &load_balancer("d", json!({"loadBalancerIP": b}))?).await?;
    assert_eq!(address(&services, "d").await?, b, "d gets the address it asked for");
    // ... and refused, with an event, when it is not in the pool or taken.
    services.create(&pp, &load_balancer("e", json!({"loadBalancerIP": "198.51.100.1"}))?).await?;
    allocation_failed(&events, "e", "spec.loadBalancerIP 198.51.100.1 is not in the pool").await?;
    services.create(&pp, &load_balancer("f", json!({"loadBalancerIP": c_ip}))?).await?;
    allocation_failed(&events, "f", &format!("spec.loadBalancerIP {c_ip} is in use by Service default/c")).await?;
    for name in ["e", "f", "other-class"] {
        assert!(ingress(&services, name).await?.is_empty(), "{name} has no address");
    }
    assert_eq!(address(&services, "c").await?, c_ip, "c keeps its address");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_pool_load_balancers_are_left_alone() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    // Every default controller, service-lb among them, and no pool.
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let endpoints: Api<Endpoints> = Api::namespaced(client.clone(), "default");
    services.create(&PostParams::default(), &load_balancer("web", json!({"selector": {"app": "web"}}))?).await?;
    // The endpoints controller has seen the Service: so has the service-lb controller.
    eventually(30, "Endpoints web", || async { Ok(endpoints.get_opt("web").await?) }).await?;
    assert!(ingress(&services, "web").await?.is_empty());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_manager_keeps_existing_addresses_and_settles_duplicates() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let pool = "192.0.2.20-192.0.2.23";
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let first = controller_manager(&c, pool)?;
    for name in ["s1", "s2", "s3"] {
        services.create(&pp, &load_balancer(name, json!({}))?).await?;
    }
    let s1 = address(&services, "s1").await?;
    let s2 = address(&services, "s2").await?;
    let s3 = address(&services, "s3").await?;
    assert_eq!(BTreeSet::from([&s1, &s2, &s3]).len(), 3, "distinct: {s1} {s2} {s3}");
    drop(first);

    // While no controller runs: a new Service, and s3's status edited to s1's address by hand.
    services.create(&pp, &load_balancer("s4", json!({}))?).await?;
    let duplicate = json!({"status": {"loadBalancer": {"ingress": [{"ip": s1, "ipMode": "VIP"}]}}});
    services.patch_status("s3", &PatchParams::default(), &Patch::Merge(&duplicate)).await?;

    let _second = controller_manager(&c, pool)?;
    let s4 = address(&services, "s4").await?;
    let s3_now = eventually(30, "s3 gives up the address it shares with the older s1", || async {
        let ip = address(&services, "s3").await?;
        Ok((ip != s1).then_some(ip))
    })
    .await?;
    assert_eq!(address(&services, "s1").await?, s1, "s1 keeps its address");
    assert_eq!(address(&services, "s2").await?, s2, "s2 keeps its address");
    let all = BTreeSet::from([&s1, &s2, &s3_now, &s4]);
    assert_eq!(all.len(), 4, "four Services, four addresses: {all:?}");
    let in_pool = ["192.0.2.20", "192.0.2.21", "192.0.2.22", "192.0.2.23"];
    assert!(all.iter().all(|ip| in_pool.contains(&ip.as_str())), "{all:?}");
    Ok(())
}

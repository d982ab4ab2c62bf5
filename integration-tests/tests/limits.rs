//! LimitRanger admission against a real API server on real etcd: defaults on new pods,
//! refusals in upstream's words, claims' storage range, and the order with ResourceQuota.

use std::collections::BTreeMap;

use anyhow::{Result, bail};
use integration_tests::{Cluster, ControllerManager, eventually};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, PersistentVolumeClaim, Pod, ResourceQuota};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

fn pod(name: &str, containers: Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"containers": containers}}))?)
}

fn limit_range(name: &str, limits: Value) -> Result<LimitRange> {
    Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"limits": limits}}))?)
}

/// A container's resources as `{"limits": {..}, "requests": {..}}` strings.
fn resources(pod: &Pod, i: usize) -> BTreeMap<&'static str, BTreeMap<String, String>> {
    let r = pod.spec.as_ref().and_then(|s| s.containers.get(i)).and_then(|c| c.resources.clone()).unwrap_or_default();
    let strings =
        |m: Option<BTreeMap<String, Quantity>>| m.unwrap_or_default().into_iter().map(|(k, q)| (k, q.0)).collect();
    BTreeMap::from([("limits", strings(r.limits)), ("requests", strings(r.requests))])
}

fn annotation(pod: &Pod) -> Option<&str> {
    pod.metadata.annotations.as_ref()?.get("kubernetes.io/limit-ranger").map(String::as_str)
}

/// The message of a 403, or an error for anything else.
fn forbidden<T: std::fmt::Debug>(result: kube::Result<T>) -> Result<String> {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => Ok(s.message),
        other => bail!("expected a 403, got {other:?}"),
    }
}

/// Waits until the API server's watch cache has the namespace's LimitRange: until a dry-run pod
/// without resources comes back with the LimitRanger's annotation.
async fn in_force(pods: &Api<Pod>) -> Result<()> {
    let dry = PostParams { dry_run: true, ..Default::default() };
    eventually(10, "the LimitRange in force", || async {
        let probe = pods.create(&dry, &pod("probe", json!([{"name": "probe", "image": "busybox"}]))?).await?;
        Ok(annotation(&probe).is_some().then_some(()))
    })
    .await
}

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output()
    })?;
    if !out.status.success() {
        bail!("kubectl {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_range_defaults_new_pods_and_refuses_what_is_out_of_range() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // A malformed quantity is refused when the LimitRange is written.
    let bad = limit_range("bad", json!([{"type": "Container", "max": {"cpu": "lots"}}]))?;
    match ranges.create(&pp, &bad).await {
        Err(kube::Error::Api(s)) if s.code == 422 => {
            assert!(s.message.contains("spec.limits[0].max[cpu]"), "{}", s.message)
        }
        other => bail!("expected a 422, got {other:?}"),
    }

    let lr = limit_range(
        "limits",
        json!([
            {
                "type": "Container",
                "default": {"cpu": "500m", "memory": "256Mi"},
                "defaultRequest": {"cpu": "100m"},
                "min": {"cpu": "50m"},
                "max": {"cpu": "1"},
            },
            {"type": "Pod", "max": {"memory": "1Gi"}},
            {"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}},
        ]),
    )?;
    ranges.create(&pp, &lr).await?;
    in_force(&pods).await?;

    // Defaults, and upstream's annotation saying which.
    let app = pods.create(&pp, &pod("app", json!([{"name": "app", "image": "busybox"}]))?).await?;
    let want = BTreeMap::from([
        ("limits", BTreeMap::from([("cpu".to_string(), "500m".to_string()), ("memory".into(), "256Mi".into())])),
        ("requests", BTreeMap::from([("cpu".to_string(), "100m".to_string()), ("memory".into(), "256Mi".into())])),
    ]);
    assert_eq!(resources(&app, 0), want);
    assert_eq!(
        annotation(&app),
        Some("LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app")
    );
    let stored = pods.get("app").await?;
    assert_eq!((resources(&stored, 0), annotation(&stored)), (want, annotation(&app)));

    // Out of range: 403, every violation of the LimitRange listed.
    let big = pod(
        "big",
        json!([
            {"name": "a", "image": "busybox", "resources": {"limits": {"cpu": "2"}}},
            {"name": "b", "image": "busybox", "resources": {"limits": {"memory": "800Mi"}}},
        ]),
    )?;
    assert_eq!(
        forbidden(pods.create(&pp, &big).await)?,
        "pods \"big\" is forbidden: [maximum cpu usage per Container is 1, but limit is 2, \
         maximum memory usage per Pod is 1Gi, but limit is 1056Mi]"
    );
    let small = pod("small", json!([{"name": "a", "image": "busybox", "resources": {"requests": {"cpu": "10m"}}}]))?;
    assert_eq!(
        forbidden(pods.create(&pp, &small).await)?,
        "pods \"small\" is forbidden: minimum cpu usage per Container is 50m, but request is 10m"
    );

    // Claims: storage within range.
    let claim = |name: &str, size: &str| -> Result<PersistentVolumeClaim> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}}},
        }))?)
    };
    assert_eq!(
        forbidden(claims.create(&pp, &claim("tiny", "100Mi")?).await)?,
        "persistentvolumeclaims \"tiny\" is forbidden: \
         minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 100Mi"
    );
    claims.create(&pp, &claim("fits", "2Gi")?).await?;

    // Another namespace, without a LimitRange: pods are left as they are.
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces.create(&pp, &serde_json::from_value(json!({"metadata": {"name": "other"}}))?).await?;
    let other: Api<Pod> = Api::namespaced(client.clone(), "other");
    let plain = other.create(&pp, &pod("plain", json!([{"name": "app", "image": "busybox"}]))?).await?;
    assert!(resources(&plain, 0).values().all(BTreeMap::is_empty), "{:?}", resources(&plain, 0));
    assert_eq!(annotation(&plain), None);

    // The stock kubectl reads it back.
    let config = c.api.kubeconfig.as_path();
    let yaml = kubectl(config, &["get", "limitrange", "limits", "-o", "yaml"])?;
    assert!(yaml.contains("kind: LimitRange") && yaml.contains("defaultRequest:"), "{yaml}");
    let described = kubectl(config, &["describe", "limitrange", "limits"])?;
    assert!(described.contains("Container") && described.contains("PersistentVolumeClaim"), "{described}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quota_on_cpu_requests_admits_pods_the_limit_range_gave_requests() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "default");
    let ranges: Api<LimitRange> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    let quota: ResourceQuota =
        serde_json::from_value(json!({"metadata": {"name": "q"}, "spec": {"hard": {"requests.cpu": "1"}}}))?;
    quotas.create(&pp, &quota).await?;
    eventually(30, "the quota counted", || async {
        let used = quotas.get("q").await?.status.and_then(|s| s.used).unwrap_or_default();
        Ok(used.contains_key("requests.cpu").then_some(()))
    })
    .await?;
    let bare = |name: &str| pod(name, json!([{"name": "app", "image": "busybox"}]));
    assert_eq!(
        forbidden(pods.create(&pp, &bare("before")?).await)?,
        "pods \"before\" is forbidden: failed quota: q: must specify requests.cpu"
    );

    let lr = limit_range("cpu", json!([{"type": "Container", "defaultRequest": {"cpu": "250m"}}]))?;
    ranges.create(&pp, &lr).await?;
    in_force(&pods).await?;
    let after = pods.create(&pp, &bare("after")?).await?;
    assert_eq!(resources(&after, 0)["requests"].get("cpu").map(String::as_str), Some("250m"));
    let used = quotas.get("q").await?.status.and_then(|s| s.used).unwrap_or_default();
    assert_eq!(used.get("requests.cpu").map(|q| q.0.as_str()), Some("250m"), "charged with the defaulted request");
    Ok(())
}

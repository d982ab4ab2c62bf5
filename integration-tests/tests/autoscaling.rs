//! The resource metrics API and the HorizontalPodAutoscaler end to end: a real kubelet on a
//! real dockerd measures the pods, rk-apiserver serves `metrics.k8s.io` from it (so the stock
//! `kubectl top` works), and rk-controller-manager scales a Deployment on that.

use std::time::Duration;

use anyhow::{Result, bail};
use integration_tests::{BUSYBOX, Cluster, ControllerManager, Dockerd, Kubelet, Scheduler, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use serde_json::json;

fn kubectl(kubeconfig: &std::path::Path, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new("kubectl").arg("--kubeconfig").arg(kubeconfig).args(args).output()?;
    if !out.status.success() {
        bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

/// Fields drop in order: the controllers stop before the kubelet, the kubelet before its dockerd
/// is emptied, and all before the API server goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_works_and_an_autoscaler_scales_up_under_load_and_back_down_after_its_window() -> Result<()> {
    let c = Cluster::start().await?;
    let docker = Dockerd::start().await?;
    let kubelet = Kubelet::start(&c, &docker, "node-h", "10.231.40.0/24").await?;
    let scheduler = Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let mut config = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    config.controllers = ["deployment-controller", "replicaset-controller", "horizontal-pod-autoscaler-controller"]
        .into_iter()
        .collect();
    config.hpa.sync_period = Duration::from_secs(2);
    let cm = ControllerManager::start(config);
    let client = c.client().await?;
    let kubeconfig = c.api.kubeconfig.clone();

    // Each pod spins for 40 s against a 100m limit (twice its 50m request), then idles.
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "burner"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "burner"}},
            "template": {
                "metadata": {"labels": {"app": "burner"}},
                "spec": {"terminationGracePeriodSeconds": 0, "containers": [{
                    "name": "spin", "image": BUSYBOX,
                    "command": ["sh", "-c", "timeout 40 sh -c 'while :; do :; done'; exec sleep 3600"],
                    "resources": {"requests": {"cpu": "50m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "32Mi"}},
                }]},
            },
        },
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment).await?;
    let hpa: HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "burner"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "burner"},
            "minReplicas": 1, "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 15}},
        },
    }))?;
    let autoscalers: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    autoscalers.create(&PostParams::default(), &hpa).await?;

    // kubectl top reads metrics.k8s.io once the kubelet has two readings of the pod.
    let top = eventually(60, "kubectl top pods shows the burner", || async {
        // "metrics not available yet" until then.
        let out = kubectl(&kubeconfig, &["top", "pods", "-l", "app=burner"]).unwrap_or_default();
        Ok(out.contains("burner-").then_some(out))
    })
    .await?;
    assert!(top.starts_with("NAME") && top.contains("CPU(cores)") && top.contains("MEMORY(bytes)"), "{top}");
    let nodes = kubectl(&kubeconfig, &["top", "nodes"])?;
    assert!(nodes.contains("node-h") && nodes.contains("CPU(%)"), "{nodes}");
    let by_name = kubectl(&kubeconfig, &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/node-h"])?;
    assert!(by_name.contains("\"kind\":\"NodeMetrics\""), "{by_name}");
    let missing = kubectl(&kubeconfig, &["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes/nope"]);
    assert!(missing.as_ref().is_err_and(|e| e.to_string().contains("NotFound")), "{missing:?}");

    // Twice the request against a 50% target: up to the maximum.
    eventually(90, "the autoscaler scales burner to 3", || async {
        Ok(deployments.get("burner").await.ok().filter(|d| replicas(d) == 3))
    })
    .await?;
    let status = autoscalers.get("burner").await?.status.unwrap_or_default();
    let condition = |t: &str| status.conditions.iter().flatten().find(|c| c.type_ == t).cloned();
    assert_eq!(
        condition("ScalingActive").map(|c| (c.status, c.reason)),
        Some(("True".into(), Some("ValidMetricFound".into())))
    );
    let utilization =
        status.current_metrics.iter().flatten().find_map(|m| m.resource.as_ref()?.current.average_utilization);
    assert!(utilization.is_some_and(|u| u > 50), "{status:?}");
    assert!(status.last_scale_time.is_some());
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    eventually(10, "a SuccessfulRescale event saying why", || async {
        let fields = ListParams::default().fields("involvedObject.name=burner,reason=SuccessfulRescale");
        let items = events.list(&fields).await?.items;
        Ok(items.iter().any(|e| e.message.as_deref().is_some_and(|m| m.contains("above target"))).then_some(()))
    })
    .await?;

    // The spinning stops; after the 15 s window the autoscaler goes back to the minimum.
    eventually(150, "the autoscaler scales burner back to 1", || async {
        Ok(deployments.get("burner").await.ok().filter(|d| replicas(d) == 1))
    })
    .await?;
    // The status follows the scale write.
    eventually(10, "status.desiredReplicas 1", || async {
        Ok(autoscalers.get("burner").await?.status.filter(|s| s.desired_replicas == 1))
    })
    .await?;
    drop((cm, scheduler, kubelet, docker));
    Ok(())
}

//! rk-kubelet against a real dockerd (started here) and a real API server on real etcd.

use std::time::Duration;

use anyhow::{Result, bail};
use integration_tests::{BUSYBOX, Cluster, Dockerd, Kubelet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod, Secret};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

/// A node with its own dockerd and kubelet. Fields drop in order: the kubelet stops before its
/// dockerd is emptied, and both before the API server goes.
struct Node1 {
    kubelet: Kubelet,
    docker: Dockerd,
    pods: Api<Pod>,
    c: Cluster,
}

async fn node(name: &str, pod_cidr: &str) -> Result<Node1> {
    let c = Cluster::start().await?;
    let docker = Dockerd::start().await?;
    let kubelet = Kubelet::start(&c, &docker, name, pod_cidr).await?;
    let pods = Api::namespaced(c.client().await?, "default");
    Ok(Node1 { kubelet, docker, pods, c })
}

fn pod(name: &str, node: &str, policy: &str, containers: serde_json::Value) -> Result<Pod> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"nodeName": node, "restartPolicy": policy, "terminationGracePeriodSeconds": 5, "containers": containers}
    }))?)
}

fn sh(name: &str, script: &str) -> serde_json::Value {
    json!({"name": name, "image": BUSYBOX, "command": ["sh", "-c", script]})
}

/// Polls the pod until `check` accepts it.
async fn wait_for(pods: &Api<Pod>, name: &str, secs: u64, what: &str, check: impl Fn(&Pod) -> bool) -> Result<Pod> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        if let Some(p) = pods.get_opt(name).await? {
            if check(&p) {
                return Ok(p);
            }
            last = Some(p);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    bail!("pod {name}: {what} not seen in {secs}s; last: {:#?}", last.and_then(|p| p.status))
}

fn phase(p: &Pod) -> &str {
    p.status.as_ref().and_then(|s| s.phase.as_deref()).unwrap_or("")
}

fn container<'a>(p: &'a Pod, name: &str) -> Option<&'a k8s_openapi::api::core::v1::ContainerStatus> {
    p.status.as_ref()?.container_statuses.as_ref()?.iter().find(|s| s.name == name)
}

fn exit_code(p: &Pod, name: &str) -> Option<i32> {
    container(p, name)?.state.as_ref()?.terminated.as_ref().map(|t| t.exit_code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_registers_and_a_pod_runs_with_an_ip_and_shared_localhost() -> Result<()> {
    let n = node("node-a", "10.231.1.0/24").await?;
    let client = n.c.client().await?;

    let nodes: Api<Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let ready = loop {
        let node = nodes.get_opt("node-a").await?;
        let ready = node
            .as_ref()
            .and_then(|n| n.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        if ready || tokio::time::Instant::now() > deadline {
            break node;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let status = ready.and_then(|n| n.status).expect("node status");
    assert_eq!(status.node_info.as_ref().map(|i| i.container_runtime_version.starts_with("docker://")), Some(true));
    assert!(status.capacity.as_ref().is_some_and(|c| c.contains_key("cpu") && c["pods"].0 == "110"));
    let lease: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while lease.get_opt("node-a").await?.is_none() {
        assert!(tokio::time::Instant::now() < deadline, "no lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let server =
        sh("server", "mkdir -p /www && echo hello-from-server > /www/index.html && exec httpd -f -p 8080 -h /www");
    let client_c = sh(
        "client",
        "for i in $(seq 50); do wget -q -O- http://127.0.0.1:8080/ | grep -q hello-from-server && exit 0; sleep 0.2; done; exit 1",
    );
    n.pods.create(&PostParams::default(), &pod("web", "node-a", "Never", json!([server, client_c]))?).await?;
    let p = wait_for(&n.pods, "web", 60, "client done and server running", |p| {
        exit_code(p, "client").is_some() && container(p, "server").is_some_and(|s| s.ready)
    })
    .await?;
    assert_eq!(exit_code(&p, "client"), Some(0), "client could not reach the server over localhost");
    assert_eq!(phase(&p), "Running");
    let status = p.status.as_ref().expect("status");
    let ip = status.pod_ip.clone().unwrap_or_default();
    assert!(ip.starts_with("10.231.1."), "pod IP {ip:?} is not in the node's pod CIDR");
    assert_eq!(status.host_ip.as_deref(), Some("127.0.0.1"));
    let running = container(&p, "server").and_then(|s| s.container_id.clone()).expect("container id");
    let inspected =
        n.docker.run(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", running.trim_start_matches("docker://")])?;
    assert!(inspected.starts_with("container:"), "{inspected}");

    // The story `kubectl describe pod` tells.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let params = kube::api::ListParams::default().fields("involvedObject.name=web");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reasons: Vec<String> = events.list(&params).await?.items.into_iter().filter_map(|e| e.reason).collect();
        if ["Pulled", "Created", "Started"].iter().all(|r| reasons.iter().any(|x| x == r)) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "events so far: {reasons:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_policies_exit_codes_and_back_off() -> Result<()> {
    let n = node("node-b", "10.231.2.0/24").await?;
    for (name, policy, code) in [("never-ok", "Never", 0), ("never-fail", "Never", 1), ("onfail-ok", "OnFailure", 0)] {
        n.pods
            .create(&PostParams::default(), &pod(name, "node-b", policy, json!([sh("main", &format!("exit {code}"))]))?)
            .await?;
    }
    // Restarted whatever the exit code (Always) or after a failure (OnFailure).
    for (name, policy, code) in [("always", "Always", 1), ("always-ok", "Always", 0), ("onfail-fail", "OnFailure", 1)] {
        let p = pod(name, "node-b", policy, json!([sh("main", &format!("exit {code}"))]))?;
        n.pods.create(&PostParams::default(), &p).await?;
    }
    for (name, want) in [("never-ok", "Succeeded"), ("never-fail", "Failed"), ("onfail-ok", "Succeeded")] {
        let p = wait_for(&n.pods, name, 60, want, |p| phase(p) == want).await?;
        assert_eq!(container(&p, "main").map(|s| s.restart_count), Some(0), "{name}");
    }
    for name in ["always-ok", "onfail-fail"] {
        let p =
            wait_for(&n.pods, name, 60, "a restart", |p| container(p, "main").is_some_and(|s| s.restart_count >= 1))
                .await?;
        assert_eq!(phase(&p), "Running", "{name}: a pod that will restart is not done");
    }
    // Always: restarted after the 10 s back-off, and meanwhile waiting in CrashLoopBackOff.
    let p = wait_for(&n.pods, "always", 60, "CrashLoopBackOff", |p| {
        container(p, "main")
            .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .is_some_and(|r| r == "CrashLoopBackOff")
    })
    .await?;
    let last = container(&p, "main").and_then(|s| s.last_state.as_ref()?.terminated.as_ref()).map(|t| t.exit_code);
    assert_eq!(last, Some(1));
    wait_for(&n.pods, "always", 40, "a restart", |p| container(p, "main").is_some_and(|s| s.restart_count >= 1))
        .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn environment_from_config_maps_secrets_and_the_downward_api() -> Result<()> {
    let n = node("node-c", "10.231.3.0/24").await?;
    let client = n.c.client().await?;
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"MODE": "fast"}}))?;
    Api::<ConfigMap>::namespaced(client.clone(), "default").create(&PostParams::default(), &cm).await?;
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}))?;
    Api::<Secret>::namespaced(client, "default").create(&PostParams::default(), &secret).await?;
    let check = json!({
        "name": "check", "image": BUSYBOX,
        "command": ["sh", "-c", "test \"$MODE\" = fast && test \"$PASSWORD\" = s3cret && test \"$ME\" = env-pod && test \"$GREETING\" = 'hi fast'"],
        "envFrom": [{"configMapRef": {"name": "cfg"}}],
        "env": [
            {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "password"}}},
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "GREETING", "value": "hi $(MODE)"}
        ]
    });
    n.pods.create(&PostParams::default(), &pod("env-pod", "node-c", "Never", json!([check]))?).await?;
    let p = wait_for(&n.pods, "env-pod", 60, "finished", |p| matches!(phase(p), "Succeeded" | "Failed")).await?;
    assert_eq!(phase(&p), "Succeeded", "{:#?}", p.status);

    // A missing ConfigMap holds the container in CreateContainerConfigError.
    let broken = json!({"name": "main", "image": BUSYBOX, "envFrom": [{"configMapRef": {"name": "absent"}}]});
    n.pods.create(&PostParams::default(), &pod("broken", "node-c", "Always", json!([broken]))?).await?;
    wait_for(&n.pods, "broken", 30, "CreateContainerConfigError", |p| {
        container(p, "main")
            .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .is_some_and(|r| r == "CreateContainerConfigError")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_delete_then_the_kubelet_finishes_it() -> Result<()> {
    let n = node("node-d", "10.231.4.0/24").await?;
    let trapper = sh("main", "trap 'exit 0' TERM; while true; do sleep 0.1; done");
    n.pods.create(&PostParams::default(), &pod("polite", "node-d", "Always", json!([trapper]))?).await?;
    let stubborn = sh("main", "trap '' TERM; while true; do sleep 0.1; done");
    n.pods.create(&PostParams::default(), &pod("stubborn", "node-d", "Always", json!([stubborn]))?).await?;
    for name in ["polite", "stubborn"] {
        wait_for(&n.pods, name, 60, "Running", |p| phase(p) == "Running").await?;
    }
    let started = tokio::time::Instant::now();
    n.pods.delete("polite", &DeleteParams::default().grace_period(30)).await?;
    n.pods.delete("stubborn", &DeleteParams::default().grace_period(2)).await?;
    let deadline = started + Duration::from_secs(30);
    let mut polite_gone = None;
    while tokio::time::Instant::now() < deadline {
        if polite_gone.is_none() && n.pods.get_opt("polite").await?.is_none() {
            polite_gone = Some(started.elapsed());
        }
        if polite_gone.is_some() && n.pods.get_opt("stubborn").await?.is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stubborn_gone = started.elapsed();
    let polite_gone = polite_gone.expect("the SIGTERM-trapping pod was not deleted");
    assert!(polite_gone < Duration::from_secs(10), "polite pod took {polite_gone:?} (it exits on SIGTERM)");
    assert!(n.pods.get_opt("stubborn").await?.is_none(), "stubborn pod still there after {stubborn_gone:?}");
    assert!(stubborn_gone >= Duration::from_secs(2), "the 2 s grace period was not given: {stubborn_gone:?}");
    let left = n.docker.run(&["ps", "-aq", "--filter", "label=io.kubernetes.pod.name=polite"])?;
    assert!(left.is_empty(), "containers left: {left}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_restart_adopts_containers_and_cleans_up_what_was_deleted_meanwhile() -> Result<()> {
    let mut n = node("node-e", "10.231.5.0/24").await?;
    for name in ["keep", "drop", "force"] {
        n.pods
            .create(&PostParams::default(), &pod(name, "node-e", "Always", json!([sh("main", "sleep 3600")]))?)
            .await?;
    }
    let mut ids = Vec::new();
    for name in ["keep", "drop", "force"] {
        let p = wait_for(&n.pods, name, 60, "Running", |p| phase(p) == "Running").await?;
        ids.push(container(&p, "main").and_then(|s| s.container_id.clone()).expect("id"));
    }
    n.kubelet.stop().await?;
    // One graceful delete (the pod waits for its kubelet) and one forced (gone from the API).
    n.pods.delete("drop", &DeleteParams::default()).await?;
    n.pods.delete("force", &DeleteParams::default().grace_period(0)).await?;
    assert!(n.pods.get_opt("drop").await?.is_some_and(|p| p.metadata.deletion_timestamp.is_some()));
    n.kubelet = Kubelet::start(&n.c, &n.docker, "node-e", "10.231.5.0/24").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while n.pods.get_opt("drop").await?.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the pod deleted meanwhile was not finished");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !n.docker.run(&["ps", "-aq", "--filter", "label=io.kubernetes.pod.name=force"])?.is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "the orphaned containers were not removed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let p = n.pods.get("keep").await?;
    assert_eq!(
        container(&p, "main").and_then(|s| s.container_id.clone()).as_ref(),
        Some(&ids[0]),
        "container replaced"
    );
    assert_eq!(container(&p, "main").map(|s| s.restart_count), Some(0));
    let running = n.docker.run(&["inspect", "-f", "{{.State.Running}}", ids[0].trim_start_matches("docker://")])?;
    assert_eq!(running, "true");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_ends_in_image_pull_back_off() -> Result<()> {
    let n = node("node-f", "10.231.6.0/24").await?;
    let missing = json!({"name": "main", "image": "127.0.0.1:5999/nowhere/nothing:1"});
    n.pods.create(&PostParams::default(), &pod("nothing", "node-f", "Always", json!([missing]))?).await?;
    let reason = |p: &Pod| container(p, "main").and_then(|s| s.state.as_ref()?.waiting.clone());
    let p = wait_for(&n.pods, "nothing", 60, "ErrImagePull or ImagePullBackOff", |p| {
        reason(p).and_then(|w| w.reason).is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    })
    .await?;
    let message = reason(&p).and_then(|w| w.message).unwrap_or_default();
    assert!(message.contains("127.0.0.1:5999/nowhere/nothing:1"), "{message}");
    wait_for(&n.pods, "nothing", 30, "ImagePullBackOff", |p| {
        reason(p).and_then(|w| w.reason).is_some_and(|r| r == "ImagePullBackOff")
    })
    .await?;
    assert_eq!(phase(&p), "Pending");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_config_map_secret_empty_dir_and_host_path() -> Result<()> {
    let n = node("node-g", "10.231.7.0/24").await?;
    let client = n.c.client().await?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "cfg"}, "data": {"mode": "fast"}}))?;
    cms.create(&PostParams::default(), &cm).await?;
    let secret: Secret =
        serde_json::from_value(json!({"metadata": {"name": "creds"}, "stringData": {"password": "s3cret"}}))?;
    Api::<Secret>::namespaced(client, "default").create(&PostParams::default(), &secret).await?;
    let host = integration_tests::TempDir::new("hostpath")?;
    std::fs::write(host.path().join("marker"), "from-host")?;

    let writer = json!({
        "name": "writer", "image": BUSYBOX, "command": ["sh", "-c", "echo shared > /scratch/x && exec sleep 3600"],
        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]
    });
    let reader = json!({
        "name": "reader", "image": BUSYBOX,
        "command": ["sh", "-c", "for i in $(seq 300); do test -f /scratch/x && break; sleep 0.1; done; \
            test \"$(cat /cfg/mode)\" = fast && test \"$(cat /sec/password)\" = s3cret && \
            test \"$(cat /scratch/x)\" = shared && test \"$(cat /host/marker)\" = from-host && \
            test \"$(cat /info/name)\" = vols"],
        "volumeMounts": [
            {"name": "scratch", "mountPath": "/scratch"},
            {"name": "cfg", "mountPath": "/cfg", "readOnly": true},
            {"name": "sec", "mountPath": "/sec"},
            {"name": "host", "mountPath": "/host"},
            {"name": "info", "mountPath": "/info"}
        ]
    });
    let mut p = pod("vols", "node-g", "Never", json!([writer, reader]))?;
    p.spec.as_mut().expect("spec").volumes = Some(serde_json::from_value(json!([
        {"name": "scratch", "emptyDir": {}},
        {"name": "cfg", "configMap": {"name": "cfg"}},
        {"name": "sec", "secret": {"secretName": "creds"}},
        {"name": "host", "hostPath": {"path": host.path().display().to_string()}},
        {"name": "info", "downwardAPI": {"items": [{"path": "name", "fieldRef": {"fieldPath": "metadata.name"}}]}}
    ]))?);
    n.pods.create(&PostParams::default(), &p).await?;
    let p = wait_for(&n.pods, "vols", 60, "reader finished", |p| exit_code(p, "reader").is_some()).await?;
    assert_eq!(exit_code(&p, "reader"), Some(0), "the reader did not see every volume's content");

    // An update of the ConfigMap reaches the running pod.
    let writer_id = container(&p, "writer").and_then(|s| s.container_id.clone()).expect("writer id");
    let mut cm = cms.get("cfg").await?;
    cm.data = Some([("mode".to_string(), "slow".to_string())].into());
    cms.replace("cfg", &PostParams::default(), &cm).await?;
    let cfg_dir = n.docker.run(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{if eq .Destination \"/scratch\"}}{{.Source}}{{end}}{{end}}",
        writer_id.trim_start_matches("docker://"),
    ])?;
    let cfg_file = std::path::Path::new(&cfg_dir).parent().expect("volumes dir").join("cfg").join("mode");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while std::fs::read_to_string(&cfg_file).unwrap_or_default() != "slow" {
        assert!(tokio::time::Instant::now() < deadline, "the ConfigMap update did not reach the volume");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

fn ready(p: &Pod, name: &str) -> bool {
    container(p, name).is_some_and(|s| s.ready)
}

fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_drive_readiness_and_restart_on_liveness_failure() -> Result<()> {
    let n = node("node-h", "10.231.8.0/24").await?;
    let web = json!({
        "name": "web", "image": BUSYBOX,
        "command": ["sh", "-c", "mkdir -p /www && echo ok > /www/healthz && exec httpd -f -p 8080 -h /www"],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1, "failureThreshold": 1}
    });
    let gate = json!({
        "name": "gate", "image": BUSYBOX, "command": ["sleep", "3600"],
        "readinessProbe": {"exec": {"command": ["test", "-f", "/ready"]}, "periodSeconds": 1, "failureThreshold": 1},
        "livenessProbe": {"exec": {"command": ["test", "!", "-f", "/dead"]}, "periodSeconds": 1, "failureThreshold": 2}
    });
    n.pods.create(&PostParams::default(), &pod("probed", "node-h", "Always", json!([web, gate]))?).await?;
    let p = wait_for(&n.pods, "probed", 60, "web ready through its httpGet probe", |p| ready(p, "web")).await?;
    assert!(!ready(&p, "gate") && !pod_ready(&p), "gate has no /ready yet");
    let gate_id = container(&p, "gate").and_then(|s| s.container_id.clone()).expect("gate id");
    let gate_id = gate_id.trim_start_matches("docker://");

    n.docker.run(&["exec", gate_id, "touch", "/ready"])?;
    wait_for(&n.pods, "probed", 20, "pod Ready", pod_ready).await?;
    n.docker.run(&["exec", gate_id, "rm", "/ready"])?;
    wait_for(&n.pods, "probed", 20, "pod not Ready again", |p| !pod_ready(p) && ready(p, "web")).await?;

    // Liveness: two failures in a row and the container is restarted (after its 10 s back-off).
    n.docker.run(&["exec", gate_id, "touch", "/dead"])?;
    let p = wait_for(&n.pods, "probed", 40, "gate restarted", |p| {
        container(p, "gate").is_some_and(|s| s.restart_count >= 1)
    })
    .await?;
    assert_ne!(
        container(&p, "gate").and_then(|s| s.container_id.clone()).as_deref(),
        Some(format!("docker://{gate_id}").as_str())
    );
    assert_eq!(container(&p, "web").map(|s| s.restart_count), Some(0), "only the unhealthy container restarts");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_through_the_api_server_and_the_stock_kubectl() -> Result<()> {
    let n = node("node-i", "10.231.9.0/24").await?;
    let talker = sh("talker", "echo first; echo second; i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done");
    let quiet = sh("quiet", "echo from-quiet; exec sleep 3600");
    n.pods.create(&PostParams::default(), &pod("chatty", "node-i", "Always", json!([talker, quiet]))?).await?;
    wait_for(&n.pods, "chatty", 60, "Running", |p| phase(p) == "Running").await?;
    tokio::time::sleep(Duration::from_millis(800)).await;

    let params = kube::api::LogParams { container: Some("talker".into()), tail_lines: None, ..Default::default() };
    let text = n.pods.logs("chatty", &params).await?;
    assert!(text.starts_with("first\nsecond\n") && text.contains("tick-1"), "{text}");
    let tail =
        n.pods.logs("chatty", &kube::api::LogParams { container: Some("quiet".into()), ..Default::default() }).await?;
    assert_eq!(tail, "from-quiet\n");
    let err = n.pods.logs("chatty", &kube::api::LogParams::default()).await.expect_err("two containers");
    assert!(
        err.to_string().contains("a container name must be specified for pod chatty, choose one of: [talker quiet]"),
        "{err}"
    );

    // The stock kubectl: logs -c, --tail, and -f (which keeps streaming).
    let kubeconfig = n.c.api.kubeconfig.clone();
    let out = tokio::task::block_in_place(|| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["logs", "chatty", "-c", "talker", "--tail=1"])
            .output()
    })?;
    let last = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && last.trim().starts_with("tick-") && last.lines().count() == 1, "{last:?}");
    let mut follow = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["logs", "-f", "chatty", "-c", "talker", "--tail=1"])
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    let stdout = follow.stdout.take().expect("stdout");
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        std::io::BufReader::new(stdout).lines().map_while(Result::ok).take(5).collect::<Vec<_>>()
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !lines.is_finished() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = follow.kill();
    let _ = follow.wait();
    let seen = lines.join().unwrap_or_default();
    assert_eq!(seen.len(), 5, "kubectl logs -f stopped streaming: {seen:?}");
    let ticks: Vec<u64> = seen.iter().filter_map(|l| l.strip_prefix("tick-")?.parse().ok()).collect();
    assert!(ticks.windows(2).all(|w| w[1] == w[0] + 1), "{seen:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_containers_in_order_then_limits_in_docker() -> Result<()> {
    let n = node("node-j", "10.231.10.0/24").await?;
    let first = json!({"name": "first", "image": BUSYBOX, "command": ["sh", "-c", "echo one >> /work/order"],
                       "volumeMounts": [{"name": "work", "mountPath": "/work"}]});
    let second = json!({"name": "second", "image": BUSYBOX, "command": ["sh", "-c", "test -f /work/order && echo two >> /work/order"],
                        "volumeMounts": [{"name": "work", "mountPath": "/work"}]});
    let app = json!({
        "name": "app", "image": BUSYBOX,
        "command": ["sh", "-c", "test \"$(cat /work/order | tr '\\n' ' ')\" = 'one two ' && exec sleep 3600"],
        "volumeMounts": [{"name": "work", "mountPath": "/work"}],
        "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}, "requests": {"cpu": "250m", "memory": "32Mi"}}
    });
    let mut p = pod("ordered", "node-j", "Never", json!([app]))?;
    let spec = p.spec.as_mut().expect("spec");
    spec.init_containers = Some(serde_json::from_value(json!([first, second]))?);
    spec.volumes = Some(serde_json::from_value(json!([{"name": "work", "emptyDir": {}}]))?);
    n.pods.create(&PostParams::default(), &p).await?;
    let p = wait_for(&n.pods, "ordered", 60, "Running", |p| phase(p) == "Running").await?;
    let inits = p.status.as_ref().and_then(|s| s.init_container_statuses.clone()).unwrap_or_default();
    assert_eq!(inits.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["first", "second"]);
    for s in &inits {
        let code = s.state.as_ref().and_then(|st| st.terminated.as_ref()).map(|t| t.exit_code);
        assert_eq!(code, Some(0), "{}", s.name);
    }
    let id = container(&p, "app").and_then(|s| s.container_id.clone()).expect("app id");
    let limits = n.docker.run(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{.HostConfig.NanoCpus}} {{.HostConfig.CpuShares}}",
        id.trim_start_matches("docker://"),
    ])?;
    assert_eq!(limits, format!("{} 500000000 256", 64 * 1024 * 1024));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_of_the_previous_attempt() -> Result<()> {
    let n = node("node-k", "10.231.11.0/24").await?;
    let script = "n=$(cat /d/n 2>/dev/null || echo 0); n=$((n+1)); echo $n > /d/n; echo run-$n; \
                  [ $n -ge 2 ] && exec sleep 3600; exit 1";
    let mut p = pod(
        "twice",
        "node-k",
        "Always",
        json!([{
            "name": "main", "image": BUSYBOX, "command": ["sh", "-c", script],
            "volumeMounts": [{"name": "d", "mountPath": "/d"}]
        }]),
    )?;
    p.spec.as_mut().expect("spec").volumes = Some(serde_json::from_value(json!([{"name": "d", "emptyDir": {}}]))?);
    n.pods.create(&PostParams::default(), &p).await?;
    wait_for(&n.pods, "twice", 60, "the second attempt running", |p| {
        container(p, "main").is_some_and(|s| s.restart_count == 1 && s.ready)
    })
    .await?;
    let current = n.pods.logs("twice", &kube::api::LogParams::default()).await?;
    assert_eq!(current, "run-2\n");
    let previous = n.pods.logs("twice", &kube::api::LogParams { previous: true, ..Default::default() }).await?;
    assert_eq!(previous, "run-1\n");
    let kubeconfig = n.c.api.kubeconfig.clone();
    let (code, out, err) = tokio::task::block_in_place(|| kubectl(&kubeconfig, &["logs", "twice", "--previous"], b""))?;
    assert_eq!((code, out.as_str()), (0, "run-1\n"), "{err}");
    Ok(())
}

/// Runs the stock kubectl against the cluster with `stdin` fed in; (exit code, stdout, stderr).
fn kubectl(kubeconfig: &std::path::Path, args: &[&str], stdin: &[u8]) -> Result<(i32, String, String)> {
    use std::io::Write;
    let mut child = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    child.stdin.take().expect("stdin").write_all(stdin)?;
    let out = child.wait_with_output()?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).to_string();
    Ok((out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_through_kube_rs_and_the_stock_kubectl() -> Result<()> {
    use tokio::io::AsyncReadExt;
    let n = node("node-l", "10.231.12.0/24").await?;
    let main = sh("main", "exec sleep 3600");
    n.pods.create(&PostParams::default(), &pod("shell", "node-l", "Always", json!([main]))?).await?;
    wait_for(&n.pods, "shell", 60, "Running", |p| phase(p) == "Running").await?;

    // kube-rs: stdout and stderr apart, the exit code in the final Status.
    let command = ["sh", "-c", "echo ready; echo oops >&2; exit 3"];
    let mut run = n.pods.exec("shell", command, &kube::api::AttachParams::default()).await?;
    let (mut out, mut err) = (String::new(), String::new());
    let (mut stdout, mut stderr) = (run.stdout().expect("stdout"), run.stderr().expect("stderr"));
    let status = run.take_status().expect("status");
    let (r1, r2) = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
    r1?;
    r2?;
    let status = status.await.expect("a final status");
    assert_eq!((out.as_str(), err.as_str()), ("ready\n", "oops\n"));
    assert_eq!(status.reason.as_deref(), Some("NonZeroExitCode"), "{status:?}");
    let code = status.details.and_then(|d| d.causes).and_then(|c| c.into_iter().next()).and_then(|c| c.message);
    assert_eq!(code.as_deref(), Some("3"));

    let kubeconfig = n.c.api.kubeconfig.clone();
    tokio::task::block_in_place(|| -> Result<()> {
        // The exit code becomes kubectl's own.
        let (code, out, err) =
            kubectl(&kubeconfig, &["exec", "shell", "--", "sh", "-c", "echo out; echo err >&2; exit 7"], b"")?;
        assert_eq!((code, out.as_str()), (7, "out\n"), "{err}");
        assert!(err.starts_with("err\n"), "{err}");
        // stdin reaches the command and its end closes it (v5's close message).
        let (code, out, err) =
            kubectl(&kubeconfig, &["exec", "-i", "shell", "--", "sh", "-c", "wc -c; echo end"], &[b'x'; 100_000])?;
        assert_eq!((code, out.as_str()), (0, "100000\nend\n"), "{err}");
        // A terminal, sized like the caller's (the resize channel). The size lands just after the
        // command starts, as with `docker exec -it`, hence the pause before reading it.
        let inner = format!(
            "stty rows 33 cols 111; kubectl --kubeconfig {} exec -it shell -- sh -c 'tty; sleep 1; stty size'",
            kubeconfig.display()
        );
        let out = std::process::Command::new("script").args(["-qec", &inner, "/dev/null"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("/dev/pts/") && text.contains("33 111"),
            "{text:?} {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Refusals are Status errors, not hangs.
        let (code, _, err) = kubectl(&kubeconfig, &["exec", "shell", "-c", "nope", "--", "true"], b"")?;
        assert!(code != 0 && err.contains("container nope is not valid for pod shell"), "{err}");
        Ok(())
    })?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_summary_and_resource_metrics_through_the_node_proxy() -> Result<()> {
    let n = node("node-m", "10.231.13.0/24").await?;
    let mut spin = sh("spin", "while true; do :; done");
    spin["resources"] = json!({"limits": {"cpu": "100m", "memory": "32Mi"}});
    n.pods.create(&PostParams::default(), &pod("busy", "node-m", "Always", json!([spin]))?).await?;
    wait_for(&n.pods, "busy", 60, "Running", |p| phase(p) == "Running").await?;

    // The collector reads every 10 s; a rate needs two readings with the container in both.
    let client = n.c.client().await?;
    let get = |path: &str| {
        let client = client.clone();
        let request = http::Request::get(path).body(Vec::new());
        async move { Ok::<_, anyhow::Error>(client.request_text(request?).await?) }
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    let summary = loop {
        let summary: serde_json::Value = serde_json::from_str(&get("/api/v1/nodes/node-m/proxy/stats/summary").await?)?;
        let pod = summary["pods"].as_array().into_iter().flatten().find(|p| p["podRef"]["name"] == "busy").cloned();
        if pod.is_some_and(|p| p["containers"][0]["cpu"]["usageNanoCores"].is_u64()) {
            break summary;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no CPU rate for pod busy in 40 s: {summary:#}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    let node = &summary["node"];
    assert_eq!(node["nodeName"], "node-m");
    for field in
        ["/cpu/usageNanoCores", "/cpu/usageCoreNanoSeconds", "/memory/workingSetBytes", "/memory/availableBytes"]
    {
        assert!(
            node.pointer(field).and_then(serde_json::Value::as_u64).is_some_and(|v| v > 0),
            "node {field}: {node:#}"
        );
    }
    let busy = summary["pods"].as_array().into_iter().flatten().find(|p| p["podRef"]["name"] == "busy").expect("busy");
    let spin = &busy["containers"][0];
    assert_eq!(spin["name"], "spin");
    // The CPU limit (100m) caps the spinning loop: its rate is near 0.1 core, not a whole one.
    let cores = spin["cpu"]["usageNanoCores"].as_u64().unwrap_or(0) as f64 / 1e9;
    assert!((0.03..0.2).contains(&cores), "spin uses {cores} cores: {spin:#}");
    let working_set = spin["memory"]["workingSetBytes"].as_u64().unwrap_or(0);
    assert!(working_set > 0 && working_set <= 32 * 1024 * 1024, "{spin:#}");
    assert!(busy["startTime"].is_string() && busy["podRef"]["uid"].is_string(), "{busy:#}");

    let metrics = get("/api/v1/nodes/node-m/proxy/metrics/resource").await?;
    for prefix in [
        "container_cpu_usage_seconds_total{container=\"spin\",namespace=\"default\",pod=\"busy\"} ",
        "container_memory_working_set_bytes{container=\"spin\",namespace=\"default\",pod=\"busy\"} ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"busy\"} ",
        "node_memory_working_set_bytes ",
        "resource_scrape_error 0",
    ] {
        assert!(metrics.lines().any(|l| l.starts_with(prefix)), "{prefix:?} missing in\n{metrics}");
    }
    // The stock kubectl reaches the same through `get --raw`.
    let kubeconfig = n.c.api.kubeconfig.clone();
    let (code, out, err) = tokio::task::block_in_place(|| {
        kubectl(&kubeconfig, &["get", "--raw", "/api/v1/nodes/node-m/proxy/healthz"], b"")
    })?;
    assert_eq!((code, out.as_str()), (0, "ok"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_reaches_the_pod() -> Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let n = node("node-n", "10.231.14.0/24").await?;
    let web = json!({
        "name": "web", "image": BUSYBOX,
        "command": ["sh", "-c", "mkdir -p /www && echo hello-from-$(hostname) > /www/index.html && exec httpd -f -p 8080 -h /www"],
        "ports": [{"containerPort": 8080, "hostPort": 31480}],
    });
    n.pods.create(&PostParams::default(), &pod("published", "node-n", "Always", json!([web]))?).await?;
    wait_for(&n.pods, "published", 60, "Running", |p| phase(p) == "Running").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let attempt = async {
            let mut s = tokio::net::TcpStream::connect("127.0.0.1:31480").await?;
            s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").await?;
            let mut body = String::new();
            s.read_to_string(&mut body).await?;
            Ok::<_, std::io::Error>(body)
        };
        match attempt.await {
            Ok(body) if body.contains("hello-from-published") => return Ok(()),
            other if tokio::time::Instant::now() > deadline => {
                bail!("host port 31480 did not reach the pod: {other:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_pull_secrets_pull_from_a_registry_with_auth() -> Result<()> {
    let n = node("node-o", "10.231.15.0/24").await?;
    let registry = integration_tests::Registry::start("puller", "s3cret").await?;
    let image = n.docker.push(BUSYBOX, &registry, "private/busybox:1")?;
    n.docker.run(&["rmi", &image])?;
    let auth = format!(r#"{{"auths":{{"{}":{{"username":"puller","password":"s3cret"}}}}}}"#, registry.address);
    let secret: Secret = serde_json::from_value(json!({
        "metadata": {"name": "regcred"},
        "type": "kubernetes.io/dockerconfigjson",
        "stringData": {".dockerconfigjson": auth},
    }))?;
    Api::<Secret>::namespaced(n.c.client().await?, "default").create(&PostParams::default(), &secret).await?;

    // Without the secret the registry refuses: ErrImagePull, then ImagePullBackOff.
    let app = json!([{"name": "app", "image": image, "command": ["sleep", "3600"]}]);
    n.pods.create(&PostParams::default(), &pod("anonymous", "node-o", "Always", app.clone())?).await?;
    let refused = wait_for(&n.pods, "anonymous", 60, "a pull error", |p| {
        container(p, "app")
            .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
            .is_some_and(|r| r == "ErrImagePull" || r == "ImagePullBackOff")
    })
    .await?;
    let message = container(&refused, "app").and_then(|s| s.state.clone()?.waiting?.message).unwrap_or_default();
    assert!(message.contains(&image), "{message}");

    let mut with_secret = pod("authorized", "node-o", "Always", app)?;
    with_secret.spec.as_mut().expect("spec").image_pull_secrets =
        Some(serde_json::from_value(json!([{"name": "regcred"}]))?);
    n.pods.create(&PostParams::default(), &with_secret).await?;
    let p = wait_for(&n.pods, "authorized", 60, "Running", |p| phase(p) == "Running").await?;
    assert_eq!(container(&p, "app").map(|s| s.image.as_str()), Some(image.as_str()));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_hooks_and_an_https_probe() -> Result<()> {
    let n = node("node-p", "10.231.16.0/24").await?;
    let host = integration_tests::TempDir::new("hooks")?;
    let dir = host.path().to_path_buf();
    let app = json!({
        "name": "app", "image": BUSYBOX,
        "command": ["sh", "-c", "trap 'echo term >> /log/events; exit 0' TERM; echo main >> /log/events; while true; do sleep 0.1; done"],
        "volumeMounts": [{"name": "log", "mountPath": "/log"}],
        "lifecycle": {
            "postStart": {"exec": {"command": ["sh", "-c", "echo post-start >> /log/events"]}},
            "preStop": {"exec": {"command": ["sh", "-c", "echo pre-stop >> /log/events; sleep 1"]}},
        },
        // HTTPS with a certificate nobody here trusts: the API server's health, seen from the node.
        "readinessProbe": {"httpGet": {"host": "127.0.0.1", "port": n.c.api.addr.port(), "path": "/healthz", "scheme": "HTTPS"}, "periodSeconds": 1},
    });
    let flaky = json!({
        "name": "flaky", "image": BUSYBOX, "command": ["sleep", "3600"],
        "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}}},
    });
    let mut p = pod("hooked", "node-p", "Always", json!([app, flaky]))?;
    p.spec.as_mut().expect("spec").volumes =
        Some(serde_json::from_value(json!([{"name": "log", "hostPath": {"path": dir.display().to_string()}}]))?);
    n.pods.create(&PostParams::default(), &p).await?;
    wait_for(&n.pods, "hooked", 60, "app ready through its HTTPS probe", |p| ready(p, "app")).await?;
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(n.c.client().await?, "default");
    let params = kube::api::ListParams::default().fields("involvedObject.name=hooked");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let list = events.list(&params).await?.items;
        if list.iter().any(|e| e.reason.as_deref() == Some("FailedPostStartHook")) {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            bail!("no FailedPostStartHook event: {:?}", list.iter().map(|e| &e.reason).collect::<Vec<_>>());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    n.pods.delete("hooked", &DeleteParams::default()).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while n.pods.get_opt("hooked").await?.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "pod not deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let log = std::fs::read_to_string(dir.join("events"))?;
    let lines: Vec<&str> = log.lines().collect();
    let at = |what: &str| lines.iter().position(|l| *l == what);
    assert!(at("main").is_some() && at("post-start").is_some(), "{lines:?}");
    assert!(at("pre-stop") < at("term") && at("pre-stop").is_some(), "preStop runs before SIGTERM: {lines:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_bound_to_a_host_path_volume_is_mounted() -> Result<()> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let n = node("node-q", "10.231.17.0/24").await?;
    let client = n.c.client().await?;
    let host = integration_tests::TempDir::new("pv")?;
    let data = host.path().join("data");
    let pv: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": "pv-q"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": data.display().to_string()}, "storageClassName": "manual"}
    }))?;
    Api::<PersistentVolume>::all(client.clone()).create(&PostParams::default(), &pv).await?;
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client, "default");
    for (name, volume) in [("bound", Some("pv-q")), ("waiting", None)] {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": "manual", "volumeName": volume}
        }))?;
        claims.create(&PostParams::default(), &pvc).await?;
    }
    // No controller manager here (its binder's job): the test binds the claim itself.
    let status =
        json!({"status": {"phase": "Bound", "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "1Gi"}}});
    claims.patch_status("bound", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&status)).await?;

    let with_claim = |pod_name: &str, claim: &str| -> Result<Pod> {
        let mut p = pod(
            pod_name,
            "node-q",
            "Never",
            json!([{"name": "app", "image": BUSYBOX, "command": ["sh", "-c", "echo kept > /data/file"],
                    "volumeMounts": [{"name": "store", "mountPath": "/data"}]}]),
        )?;
        p.spec.as_mut().expect("spec").volumes =
            Some(serde_json::from_value(json!([{"name": "store", "persistentVolumeClaim": {"claimName": claim}}]))?);
        Ok(p)
    };
    n.pods.create(&PostParams::default(), &with_claim("keeper", "bound")?).await?;
    n.pods.create(&PostParams::default(), &with_claim("stuck", "waiting")?).await?;
    let p = wait_for(&n.pods, "keeper", 60, "the writer finished", |p| exit_code(p, "app").is_some()).await?;
    assert_eq!(exit_code(&p, "app"), Some(0));
    assert_eq!(std::fs::read_to_string(data.join("file"))?, "kept\n", "the write landed in the PV's path");
    let stuck = wait_for(&n.pods, "stuck", 30, "a mount message", |p| {
        container(p, "app").and_then(|s| s.state.clone()?.waiting?.message).is_some_and(|m| m.contains("not bound"))
    })
    .await?;
    assert_eq!(phase(&stuck), "Pending");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_loop_back_off_doubles() -> Result<()> {
    let n = node("node-r", "10.231.18.0/24").await?;
    n.pods.create(&PostParams::default(), &pod("crasher", "node-r", "Always", json!([sh("main", "exit 1")]))?).await?;
    // Every attempt seen (by start time) with its end, read from state and lastState as they pass.
    let mut attempts = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    while attempts.len() < 3 {
        if tokio::time::Instant::now() > deadline {
            bail!("three attempts not seen in 90 s: {attempts:?}");
        }
        if let Some(s) = n.pods.get_opt("crasher").await?.as_ref().and_then(|p| container(p, "main").cloned()) {
            let ends = [s.state.and_then(|st| st.terminated), s.last_state.and_then(|st| st.terminated)];
            for t in ends.into_iter().flatten() {
                if let (Some(start), Some(end)) = (t.started_at, t.finished_at) {
                    attempts.insert(start.0, end.0);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let runs: Vec<_> = attempts.into_iter().collect();
    let gap = |i: usize| runs[i + 1].0.duration_since(runs[i].1).as_secs();
    // 10 s, then 20 s (timestamps have whole seconds, and a pass may come late when the whole
    // suite loads both cores: 29 s was seen once; 40 s would be the next doubling).
    assert!((9..=15).contains(&gap(0)), "first back-off {} s: {runs:?}", gap(0));
    assert!((19..=32).contains(&gap(1)), "second back-off {} s: {runs:?}", gap(1));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dockerd_restart_brings_the_pods_back() -> Result<()> {
    let mut n = node("node-s", "10.231.19.0/24").await?;
    n.pods
        .create(&PostParams::default(), &pod("survivor", "node-s", "Always", json!([sh("main", "exec sleep 3600")]))?)
        .await?;
    let before = wait_for(&n.pods, "survivor", 60, "Running", |p| ready(p, "main")).await?;
    let id = |p: &Pod| container(p, "main").and_then(|s| s.container_id.clone()).unwrap_or_default();
    let first = id(&before);
    n.docker.restart().await?;
    let after = wait_for(&n.pods, "survivor", 90, "running again in a new container", |p| {
        ready(p, "main") && id(p) != first && !id(p).is_empty()
    })
    .await?;
    let status = after.status.as_ref().expect("status");
    assert_eq!(phase(&after), "Running");
    assert!(status.pod_ip.as_deref().is_some_and(|ip| ip.starts_with("10.231.19.")), "{:?}", status.pod_ip);
    let running = n.docker.run(&["ps", "-q", "--filter", "label=io.kubernetes.pod.name=survivor"])?;
    assert_eq!(running.lines().count(), 2, "sandbox and app, once each: {running}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn security_context_user_group_read_only_root_and_capabilities() -> Result<()> {
    let n = node("node-t", "10.231.20.0/24").await?;
    let script = "id -u; id -g; touch /probe 2>/dev/null && echo writable || echo read-only";
    let locked = json!({
        "name": "locked", "image": BUSYBOX, "command": ["sh", "-c", script],
        "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}},
    });
    let mut p = pod("confined", "node-t", "Never", json!([locked]))?;
    p.spec.as_mut().expect("spec").security_context = Some(serde_json::from_value(json!({"runAsGroup": 2000}))?);
    n.pods.create(&PostParams::default(), &p).await?;
    let p = wait_for(&n.pods, "confined", 60, "finished", |p| exit_code(p, "locked").is_some()).await?;
    let logs = n.pods.logs("confined", &kube::api::LogParams::default()).await?;
    assert_eq!(logs, "1000\n2000\nread-only\n", "the pod's runAsGroup and the container's runAsUser both apply");
    let id = container(&p, "locked").and_then(|s| s.container_id.clone()).expect("id");
    let caps = n.docker.run(&[
        "inspect",
        "-f",
        "{{.HostConfig.CapAdd}} {{.HostConfig.CapDrop}} {{.HostConfig.Privileged}}",
        id.trim_start_matches("docker://"),
    ])?;
    assert_eq!(caps, "[NET_BIND_SERVICE] [ALL] false");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_empty_dir_projected_sub_path_startup_probe_and_host_network() -> Result<()> {
    let n = node("node-u", "10.231.21.0/24").await?;
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "settings"}, "data": {"level": "3", "extra": "x"}}))?;
    Api::<ConfigMap>::namespaced(n.c.client().await?, "default").create(&PostParams::default(), &cm).await?;
    let check = "mount | grep ' /cache ' | grep -q 'tmpfs.*size=8192k' && \
                 test \"$(cat /proj/level)\" = 3 && test \"$(cat /proj/pod)\" = mixed && \
                 test \"$(cat /etc/level.conf)\" = 3 && test ! -e /proj/extra && echo all-good";
    let app = json!({
        "name": "app", "image": BUSYBOX, "command": ["sh", "-c", format!("{check}; touch /cache/started; exec sleep 3600")],
        "volumeMounts": [
            {"name": "cache", "mountPath": "/cache"},
            {"name": "proj", "mountPath": "/proj"},
            {"name": "proj", "mountPath": "/etc/level.conf", "subPath": "level"}
        ],
        // Ready only after the startup probe has passed, which needs the file the script writes.
        "startupProbe": {"exec": {"command": ["test", "-f", "/cache/started"]}, "periodSeconds": 1, "failureThreshold": 30},
        "readinessProbe": {"exec": {"command": ["true"]}, "periodSeconds": 1},
    });
    let mut p = pod("mixed", "node-u", "Always", json!([app]))?;
    p.spec.as_mut().expect("spec").volumes = Some(serde_json::from_value(json!([
        {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
        {"name": "proj", "projected": {"sources": [
            {"configMap": {"name": "settings", "items": [{"key": "level", "path": "level"}]}},
            {"downwardAPI": {"items": [{"path": "pod", "fieldRef": {"fieldPath": "metadata.name"}}]}}
        ]}}
    ]))?);
    n.pods.create(&PostParams::default(), &p).await?;
    let p = wait_for(&n.pods, "mixed", 60, "started and ready", |p| {
        container(p, "app").is_some_and(|s| s.started == Some(true) && s.ready)
    })
    .await?;
    assert_eq!(n.pods.logs("mixed", &kube::api::LogParams::default()).await?, "all-good\n");
    assert!(container(&p, "app").is_some_and(|s| s.restart_count == 0));

    // hostNetwork: the pod sees the host's interfaces and reports the host's address.
    let mut host =
        pod("on-host", "node-u", "Always", json!([sh("main", "cat /sys/class/net/lo/address; exec sleep 3600")]))?;
    host.spec.as_mut().expect("spec").host_network = Some(true);
    n.pods.create(&PostParams::default(), &host).await?;
    let h = wait_for(&n.pods, "on-host", 60, "Running", |p| phase(p) == "Running").await?;
    assert_eq!(h.status.as_ref().and_then(|s| s.pod_ip.as_deref()), Some("127.0.0.1"), "the host's node IP");
    let id = container(&h, "main").and_then(|s| s.container_id.clone()).expect("id");
    let mode = n.docker.run(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", id.trim_start_matches("docker://")])?;
    let sandbox_mode = n.docker.run(&[
        "ps",
        "-aq",
        "--filter",
        "label=io.kubernetes.pod.name=on-host",
        "--filter",
        "label=io.kubernetes.container.name=POD",
    ])?;
    let sandbox_net = n.docker.run(&["inspect", "-f", "{{.HostConfig.NetworkMode}}", sandbox_mode.trim()])?;
    assert!(mode.starts_with("container:") && sandbox_net == "host", "{mode} / {sandbox_net}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_policy_default_gives_the_node_resolvers_and_cluster_first_the_cluster_dns() -> Result<()> {
    let c = Cluster::start().await?;
    let docker = Dockerd::start().await?;
    let (node_ip, kubeconfig, dns) = ("127.0.0.1".parse()?, c.api.kubeconfig.clone(), ["10.96.0.10".parse()?]);
    let kubelet = Kubelet::start_at(&c, &docker, "node-dns", "10.231.12.0/24", node_ip, &kubeconfig, &dns).await?;
    let n = Node1 { kubelet, docker, pods: Api::namespaced(c.client().await?, "default"), c };
    let mut default = pod("node-resolvers", "node-dns", "Never", json!([sh("main", "cat /etc/resolv.conf")]))?;
    default.spec.as_mut().expect("spec").dns_policy = Some("Default".into());
    n.pods.create(&PostParams::default(), &default).await?;
    n.pods
        .create(
            &PostParams::default(),
            &pod("cluster", "node-dns", "Never", json!([sh("main", "cat /etc/resolv.conf")]))?,
        )
        .await?;
    for name in ["node-resolvers", "cluster"] {
        wait_for(&n.pods, name, 60, "Succeeded", |p| phase(p) == "Succeeded").await?;
    }
    // What the kubelet read from the node's own file (the test kubelets read the default one).
    let host = std::fs::read_to_string(kubelet::config::DEFAULT_RESOLV_CONF)?;
    let want = kubelet::pods::spec::parse_resolv_conf(&host);
    let got = kubelet::pods::spec::parse_resolv_conf(&n.pods.logs("node-resolvers", &Default::default()).await?);
    assert!(!want.nameservers.is_empty(), "this machine's resolv.conf names a nameserver: {host:?}");
    assert_eq!(got.nameservers, want.nameservers.iter().take(3).cloned().collect::<Vec<_>>());
    assert_eq!((got.searches, got.options), (want.searches, want.options));
    let cluster = kubelet::pods::spec::parse_resolv_conf(&n.pods.logs("cluster", &Default::default()).await?);
    assert_eq!(cluster.nameservers, vec!["10.96.0.10"]);
    assert_eq!(cluster.searches[..3], ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]);
    assert_eq!(cluster.options, vec!["ndots:5"]);
    Ok(())
}

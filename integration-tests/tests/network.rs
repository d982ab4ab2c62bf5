//! Two nodes, each a network namespace with its own dockerd, an rk-kubelet and a real rk-proxy
//! process: Services, NodePorts, cluster DNS and pod-to-pod traffic across nodes, measured from
//! inside pods and from the host (outside both nodes).

use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use integration_tests::{
    ApiServer, Cluster, ControllerManager, Dockerd, Etcd, Kubelet, Pki, Scheduler, TempDir, TestNetwork, eventually,
};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const DNS_IP: &str = "10.96.0.10";
/// LoadBalancer addresses: the host routes them to a node (a route that goes with the test's
/// switch if the test stops early).
const LB_POOL: &str = "198.51.100.8/30";

/// Runs a command on the host; its failure is the test's.
fn net_cmd(args: &[&str]) -> Result<()> {
    let out = Command::new(args[0]).args(&args[1..]).output()?;
    if !out.status.success() {
        bail!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A real rk-proxy process inside a node's namespace; killed on drop.
struct Proxy {
    child: Child,
    dir: TempDir,
}

impl Proxy {
    fn start(netns: &str, node: &str, kubeconfig: &std::path::Path) -> Result<Self> {
        let dir = TempDir::new("proxy")?;
        // No upstream resolvers: names outside the cluster are not this test's business.
        std::fs::write(dir.path().join("resolv.conf"), "")?;
        let log = std::fs::File::create(dir.path().join("proxy.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", netns, env!("CARGO_BIN_EXE_node-proxy")])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--hostname-override", node, "--cluster-cidr", "10.244.0.0/16", "--min-sync-period", "100ms"])
            .arg("--resolv-conf")
            .arg(dir.path().join("resolv.conf"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting node-proxy")?;
        Ok(Proxy { child, dir })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("proxy.log")).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One node: its namespace, address, dockerd and kubelet.
struct Node {
    name: String,
    ip: IpAddr,
    docker: Dockerd,
    _kubelet: Kubelet,
}

impl Node {
    /// `GET path` from inside `pod`: the body's last line. busybox nc quits when its stdin ends,
    /// sometimes before the answer arrived, so an empty answer is asked again.
    fn get(&self, pod: &str, ip: &str, port: u16, path: &str) -> Result<String> {
        let mut last = Ok(String::new());
        for _ in 0..5 {
            last = self.sh(pod, &get_script(ip, port, path)).map(|s| s.trim().to_string());
            if last.as_ref().is_ok_and(|s| !s.is_empty()) {
                break;
            }
        }
        last
    }

    /// Runs `sh -c script` in the app container of `pod` (on this node); stdout, or the error.
    fn sh(&self, pod: &str, script: &str) -> Result<String> {
        let filter = format!("label=io.kubernetes.pod.name={pod}");
        let ids = self.docker.run(&[
            "ps",
            "-q",
            "--filter",
            &filter,
            "--filter",
            "label=io.kubernetes.container.name=app",
        ])?;
        let id = ids.split_whitespace().next().with_context(|| format!("no container of {pod} on {}", self.name))?;
        self.docker.run(&["exec", id, "sh", "-c", script])
    }
}

/// A shell command that GETs `path` on `ip:port` with busybox nc (busybox wget crashes on this
/// host) and prints the body's last line.
fn get_script(ip: &str, port: u16, path: &str) -> String {
    format!("printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {ip} {port} | tail -n 1")
}

/// The same GET from the host (outside every node, or inside one with `netns`), with curl.
fn curl(netns: Option<&str>, ip: &str, port: u16, path: &str) -> Result<String> {
    let url = format!("http://{ip}:{port}{path}");
    let out = match netns {
        Some(ns) => TestNetwork::exec(ns, &["curl", "-sS", "--max-time", "3", &url])?,
        None => {
            let out = Command::new("curl").args(["-sS", "--max-time", "3", &url]).output()?;
            if !out.status.success() {
                bail!("curl {url}: {}", String::from_utf8_lossy(&out.stderr));
            }
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    Ok(out.trim().to_string())
}

fn get_from_host(ip: &str, port: u16, path: &str) -> Result<String> {
    curl(None, ip, port, path)
}

/// The pods' placement and state, for a failure message.
async fn describe(pods: &Api<Pod>) -> Result<String> {
    let mut out = String::new();
    for p in pods.list(&ListParams::default()).await?.items {
        let spec_node = p.spec.as_ref().and_then(|s| s.node_name.clone()).unwrap_or_default();
        let status = serde_json::to_string(&p.status)?;
        out.push_str(&format!("{} on {spec_node:?}: {status}\n", p.metadata.name.unwrap_or_default()));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_dns_and_pod_routes_across_two_nodes() -> Result<()> {
    let mut net = TestNetwork::create()?;
    let host_ip = net.host_ip();
    let etcd = Etcd::start().await?;
    let pki = Pki::generate_for(&[host_ip])?;
    let api = ApiServer::start_with(&etcd.endpoints(), &pki, |c| c.listen = SocketAddr::new(host_ip, 0)).await?;
    let c = Cluster { api, pki, etcd };
    let client = c.client().await?;
    let mut manager = controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone());
    manager.service_lb_ip_pool =
        controller_manager::controllers::service_lb::Pool::parse(LB_POOL).map_err(anyhow::Error::msg)?;
    let _manager = ControllerManager::start(manager);
    let _scheduler = Scheduler::start(scheduler::Config::for_kubeconfig(c.api.kubeconfig.clone()));

    let mut nodes = Vec::new();
    let mut netns_of = Vec::new();
    let mut proxies = Vec::new();
    for (i, name) in ["node-a", "node-b"].into_iter().enumerate() {
        let (netns, ip) = net.add_node()?;
        let docker = Dockerd::start_in(Some(&netns)).await?;
        let cidr = format!("10.244.{}.0/24", i + 1);
        let kubelet = Kubelet::start_at(&c, &docker, name, &cidr, ip, &c.api.kubeconfig, &[DNS_IP.parse()?]).await?;
        proxies.push(Proxy::start(&netns, name, &c.api.kubeconfig)?);
        netns_of.push(netns);
        nodes.push(Node { name: name.into(), ip, docker, _kubelet: kubelet });
    }

    let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    eventually(60, "both nodes Ready", || {
        let node_api = node_api.clone();
        async move {
            let ready = node_api
                .list(&ListParams::default())
                .await?
                .items
                .iter()
                .filter(|n| {
                    let conditions = n.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .count();
            Ok((ready == 2).then_some(()))
        }
    })
    .await?;

    // Three web pods spread over both nodes; each answers its name on / and the client's
    // address on /cgi-bin/ip.
    let web = r#"mkdir -p /www/cgi-bin && hostname > /www/index.html &&
        printf '#!/bin/sh\necho Content-Type: text/plain\necho\necho $REMOTE_ADDR\n' > /www/cgi-bin/ip &&
        chmod +x /www/cgi-bin/ip && exec httpd -f -p 8080 -h /www"#;
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}],
                    "containers": [{"name": "app", "image": integration_tests::BUSYBOX, "imagePullPolicy": "Never",
                        "command": ["sh", "-c", web], "ports": [{"name": "http", "containerPort": 8080}]}]
                }
            }
        }
    }))?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments.create(&PostParams::default(), &deployment).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    // web (NodePort 30080), local (externalTrafficPolicy Local, 30081), a headless Service and
    // an ExternalName.
    for spec in [
        json!({"metadata": {"name": "web"},
            "spec": {"type": "NodePort", "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": "http", "nodePort": 30080}]}}),
        json!({"metadata": {"name": "local"},
            "spec": {"type": "NodePort", "externalTrafficPolicy": "Local", "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080, "nodePort": 30081}]}}),
        json!({"metadata": {"name": "web-headless"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"}, "ports": [{"port": 8080}]}}),
        json!({"metadata": {"name": "elsewhere"}, "spec": {"type": "ExternalName", "externalName": "db.example.org"}}),
        json!({"metadata": {"name": "udp"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 53, "targetPort": 8080, "protocol": "UDP"}]}}),
        json!({"metadata": {"name": "web-lb"},
            "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}}),
    ] {
        services.create(&PostParams::default(), &serde_json::from_value::<Service>(spec)?).await?;
    }
    // The client pod on node A.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let client_pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": "client"},
        "spec": {"nodeName": "node-a", "containers": [{"name": "app", "image": integration_tests::BUSYBOX,
            "imagePullPolicy": "Never", "command": ["sleep", "3600"]}]}
    }))?;
    pods.create(&PostParams::default(), &client_pod).await?;

    // Wait for three ready web pods, on both nodes, and the client.
    let web_pods = eventually(120, "three ready web pods on both nodes", || {
        let pods = pods.clone();
        async move {
            let list = pods.list(&ListParams::default().labels("app=web")).await?;
            let ready: Vec<(String, String, String)> = list
                .items
                .iter()
                .filter(|p| {
                    let conditions = p.status.as_ref().and_then(|s| s.conditions.clone()).unwrap_or_default();
                    conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                })
                .filter_map(|p| {
                    let node = p.spec.as_ref()?.node_name.clone()?;
                    Some((p.metadata.name.clone()?, node, p.status.as_ref()?.pod_ip.clone()?))
                })
                .collect();
            let on_both = ["node-a", "node-b"].iter().all(|n| ready.iter().any(|(_, node, _)| node == n));
            Ok((ready.len() == 3 && on_both).then_some(ready))
        }
    })
    .await;
    let web_pods = match web_pods {
        Ok(w) => w,
        Err(e) => bail!("{e}\n{}", describe(&pods).await?),
    };
    eventually(60, "the client pod running", || {
        let pods = pods.clone();
        async move {
            let p = pods.get("client").await?;
            Ok((p.status.and_then(|s| s.phase).as_deref() == Some("Running")).then_some(()))
        }
    })
    .await?;
    let cluster_ip = services.get("web").await?.spec.and_then(|s| s.cluster_ip).context("clusterIP")?;
    let (a, b) = (&nodes[0], &nodes[1]);
    let web_names: std::collections::BTreeSet<String> = web_pods.iter().map(|(n, _, _)| n.clone()).collect();

    // Pod to pod across nodes, by pod IP.
    let (remote_name, _, remote_ip) = web_pods.iter().find(|(_, node, _)| node == "node-b").context("pod on b")?;
    let answer = eventually(60, "pod on node A reaches a pod on node B by IP", || {
        let answer = a.get("client", remote_ip, 8080, "/").unwrap_or_default();
        async move { Ok((!answer.trim().is_empty()).then_some(answer)) }
    })
    .await
    .with_context(|| proxies[0].log())?;
    assert_eq!(answer.trim(), remote_name);

    // The ClusterIP from a pod on node A reaches all three backends.
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen != web_names && Instant::now() < deadline {
        if let Ok(name) = a.get("client", &cluster_ip, 80, "/") {
            seen.insert(name);
        }
    }
    assert_eq!(seen, web_names, "backends reached through {cluster_ip}");

    // Hairpin: a web pod reaches every backend through the ClusterIP, itself included (its
    // connection to itself is masqueraded; otherwise its answer would skip the reverse DNAT).
    let (own, _, _) = web_pods.iter().find(|(_, node, _)| node == "node-a").context("a web pod on node A")?;
    let mut seen = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen != web_names && Instant::now() < deadline {
        if let Ok(name) = a.get(own, &cluster_ip, 80, "/") {
            seen.insert(name);
        }
    }
    assert_eq!(seen, web_names, "backends {own} reached through {cluster_ip}");

    // A LoadBalancer address from the pool, served on every node: the host routes it to one
    // node, then to the other.
    let lb_ip = eventually(60, "web-lb given an address", || {
        let services = services.clone();
        async move {
            let s = services.get("web-lb").await?;
            let ingress = s.status.and_then(|s| s.load_balancer).and_then(|lb| lb.ingress).unwrap_or_default();
            Ok(ingress.into_iter().find_map(|i| i.ip))
        }
    })
    .await?;
    for node in [a, b] {
        net_cmd(&["ip", "route", "replace", &format!("{lb_ip}/32"), "via", &node.ip.to_string()])?;
        let mut seen = std::collections::BTreeSet::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while seen != web_names && Instant::now() < deadline {
            if let Ok(name) = get_from_host(&lb_ip, 80, "/") {
                seen.insert(name);
            }
        }
        assert_eq!(seen, web_names, "backends reached through {lb_ip} routed via {}", node.name);
    }
    net_cmd(&["ip", "route", "del", &format!("{lb_ip}/32")])?;

    // The NodePort on node A's address, from the host, reaches backends on node B too.
    let mut seen_from_host = std::collections::BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen_from_host != web_names && Instant::now() < deadline {
        if let Ok(name) = get_from_host(&a.ip.to_string(), 30080, "/") {
            seen_from_host.insert(name);
        }
    }
    assert_eq!(seen_from_host, web_names, "backends reached through {}:30080", a.ip);

    // externalTrafficPolicy Local: the backend sees the host's own address; Cluster: the node's.
    // (busybox httpd listens on IPv6 and writes IPv4 peers as "[::ffff:a.b.c.d]".)
    let peer = |s: String| s.trim_start_matches("[::ffff:").trim_end_matches(']').to_string();
    for node in [a, b] {
        let seen = peer(get_from_host(&node.ip.to_string(), 30081, "/cgi-bin/ip")?);
        assert_eq!(seen, host_ip.to_string(), "client address behind {}:30081 (Local)", node.ip);
    }
    let masqueraded = peer(get_from_host(&b.ip.to_string(), 30080, "/cgi-bin/ip")?);
    assert_ne!(masqueraded, host_ip.to_string(), "Cluster policy masquerades the client");

    // Cluster DNS from the pod: short, namespaced and full names, headless, ExternalName.
    for name in ["web.default.svc.cluster.local", "web.default", "web"] {
        let out = a.get("client", name, 80, "/")?;
        assert!(web_names.contains(&out), "{name}: {out:?}");
    }
    let out = a.sh("client", &format!("nslookup web-headless.default.svc.cluster.local {DNS_IP}"))?;
    for (_, _, ip) in &web_pods {
        assert!(out.contains(ip.as_str()), "headless answer lacks {ip}: {out}");
    }
    let out = a.sh("client", &format!("nslookup elsewhere.default.svc.cluster.local {DNS_IP} 2>&1; true"))?;
    assert!(out.contains("db.example.org"), "ExternalName answer: {out}");
    let out = a.sh("client", &format!("nslookup nothing.default.svc.cluster.local {DNS_IP} 2>&1; true"))?;
    assert!(out.contains("NXDOMAIN"), "unknown name: {out}");

    // sessionAffinity ClientIP pins the client to one backend.
    let patch = json!({"spec": {"sessionAffinity": "ClientIP"}});
    services.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers: std::collections::BTreeSet<String> =
        (0..10).filter_map(|_| a.get("client", &cluster_ip, 80, "/").ok()).collect();
    assert_eq!(answers.len(), 1, "affinity answers: {answers:?}");

    // A UDP flow to a Service (a DNS query, the only UDP busybox's tools send to an address of
    // one's choosing; the web pods answer it with port unreachable): its conntrack entry stays
    // 30 s, sending further datagrams of that flow to the endpoint, unless the proxy flushes it
    // when the endpoint goes.
    let udp_ip = services.get("udp").await?.spec.and_then(|s| s.cluster_ip).context("udp clusterIP")?;
    let udp_flows = || {
        TestNetwork::exec(&netns_of[0], &["conntrack", "-L", "-p", "udp", "--orig-dst", &udp_ip]).unwrap_or_default()
    };
    eventually(30, "a UDP flow to the Service in node A's conntrack table", || {
        let sent = a.sh("client", &format!("nslookup probe.example {udp_ip} >/dev/null 2>&1; true"));
        let flows = udp_flows();
        async move { Ok((sent.is_ok() && flows.contains("dport=53")).then_some(())) }
    })
    .await?;
    let flushed_by = Instant::now() + Duration::from_secs(25);

    // Scaled to zero: refused at once, not a hang.
    let patch = json!({"spec": {"replicas": 0}});
    deployments.patch("web", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    // At once, so the UDP endpoints go well within their flow's 30 s.
    let now = kube::api::DeleteParams { grace_period_seconds: Some(0), ..Default::default() };
    pods.delete_collection(&now, &ListParams::default().labels("app=web")).await?;
    eventually(60, "the ClusterIP refuses once web has no pods", || {
        let start = Instant::now();
        let out = a.sh("client", &format!("nc -w 5 {cluster_ip} 80 </dev/null 2>&1; echo exit=$?"));
        let refused = out.is_ok_and(|o| o.contains("exit=1")) && start.elapsed() < Duration::from_secs(2);
        async move { Ok(refused.then_some(())) }
    })
    .await?;
    // The UDP flow's entry went with its endpoint, before it would have expired by itself.
    while udp_flows().contains("dport=53") && Instant::now() < flushed_by {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let flows = udp_flows();
    assert!(!flows.contains("dport=53"), "UDP flows left after their endpoints went: {flows}");
    // Each node's rk-proxy reports healthy, with full and partial syncs and the network
    // programming latency of the endpoint changes above.
    for (node, netns) in [(a, &netns_of[0]), (b, &netns_of[1])] {
        assert_eq!(curl(Some(netns), "127.0.0.1", 10256, "/healthz")?, "ok", "{}", node.name);
        let metrics = curl(Some(netns), "127.0.0.1", 10256, "/metrics")?;
        for family in [
            "rk_proxy_sync_duration_seconds_count{kind=\"full\"}",
            "rk_proxy_sync_duration_seconds_count{kind=\"partial\"}",
            "rk_proxy_network_programming_duration_seconds_count",
        ] {
            let count = metrics.lines().find_map(|l| l.strip_prefix(family)?.trim().parse::<u64>().ok());
            assert!(count.is_some_and(|c| c > 0), "{family} on {}: {count:?}", node.name);
        }
    }
    // Each node routes the other's podCIDR via its address, and the route goes with the Node.
    let routes = TestNetwork::exec(&netns_of[0], &["ip", "route", "show", "proto", "82"])?;
    assert_eq!(routes.trim(), format!("10.244.2.0/24 via {} dev eth0", b.ip), "node A's routes");
    let routes = TestNetwork::exec(&netns_of[1], &["ip", "route", "show", "proto", "82"])?;
    assert_eq!(routes.trim(), format!("10.244.1.0/24 via {} dev eth0", a.ip), "node B's routes");
    let mut nodes = nodes;
    nodes[1]._kubelet.stop().await?;
    node_api.delete("node-b", &Default::default()).await?;
    eventually(30, "node A's route to node B's pods removed with the Node", || {
        let routes = TestNetwork::exec(&netns_of[0], &["ip", "route", "show", "proto", "82"]);
        async move { Ok(routes?.trim().is_empty().then_some(())) }
    })
    .await?;
    drop(proxies);
    Ok(())
}

//! rk-proxy's rules in a real kernel: the rendered nftables table is loaded into a network
//! namespace of its own, and connections to Service addresses reach busybox httpd endpoints.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_proxy::model::{SERVICE_NAME_LABEL, service_ports};
use kube_proxy::nft::Nft;
use kube_proxy::render::{self, Ruleset, Settings};
use serde_json::json;

/// A network namespace with a loopback holding the node and endpoint addresses; removed on drop.
struct Netns {
    name: String,
    servers: Vec<Child>,
    dir: integration_tests::TempDir,
}

impl Netns {
    fn create(addresses: &[&str]) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("rkp-{}-{n}", std::process::id());
        let ns = Netns { name: name.clone(), servers: Vec::new(), dir: integration_tests::TempDir::new("proxy")? };
        run(&["ip", "netns", "add", &name])?;
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        for a in addresses {
            ns.exec(&["ip", "addr", "add", &format!("{a}/32"), "dev", "lo"])?;
        }
        // Locally sent packets need a route before the output hook rewrites their destination.
        ns.exec(&["ip", "route", "add", "10.96.0.0/12", "dev", "lo"])?;
        Ok(ns)
    }

    fn exec(&self, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        run(&full)
    }

    /// busybox httpd on `ip:port` answering its own address.
    fn serve(&mut self, ip: &str, port: u16) -> Result<()> {
        let root = self.dir.path().join(ip);
        std::fs::create_dir_all(&root)?;
        std::fs::write(root.join("index.html"), ip)?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.name, "busybox", "httpd", "-f", "-p", &format!("{ip}:{port}"), "-h"])
            .arg(&root)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.servers.push(child);
        let address = format!("{ip}:{port}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.get(&address).is_err() {
            if Instant::now() > deadline {
                bail!("httpd on {address} does not answer");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// GET http://address/ from inside the namespace (busybox nc: busybox wget crashes on this
    /// host): the answering endpoint, or the error.
    fn get(&self, address: &str) -> Result<String, String> {
        let (host, port) = address.rsplit_once(':').ok_or("no port")?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.name, "busybox", "nc", "-w", "3", host, port])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write as _;
            stdin.write_all(b"GET / HTTP/1.0\r\n\r\n").map_err(|e| e.to_string())?;
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&out.stdout);
        match text.split_once("\r\n\r\n") {
            Some((head, body)) if out.status.success() && head.starts_with("HTTP/1.1 200") => {
                Ok(body.trim().to_string())
            }
            _ => Err(format!("{} {}", String::from_utf8_lossy(&out.stderr).trim(), text.trim())),
        }
    }

    fn nft(&self) -> Nft {
        Nft::new(&["ip".into(), "netns".into(), "exec".into(), self.name.clone(), "nft".into()])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).status();
    }
}

fn run(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn settings() -> Settings {
    Settings {
        node_name: "a".into(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        masquerade_all: false,
        nodeport_addresses: vec!["192.168.50.2".into()],
        dns: None,
    }
}

fn service(spec: serde_json::Value) -> Arc<Service> {
    Arc::new(
        serde_json::from_value(json!({"metadata": {"namespace": "ns", "name": "web"}, "spec": spec})).expect("service"),
    )
}

fn slice(endpoints: &[&str]) -> Arc<EndpointSlice> {
    let endpoints: Vec<_> = endpoints.iter().map(|ip| json!({"addresses": [ip], "nodeName": "a"})).collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": "web-x", "labels": {SERVICE_NAME_LABEL: "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}], "endpoints": endpoints}))
        .expect("slice"),
    )
}

fn ruleset(service: &Arc<Service>, endpoints: &[&str]) -> Ruleset {
    render::ruleset(&service_ports(std::slice::from_ref(service), &[slice(endpoints)]), &settings())
}

/// Who answers `n` requests to `address`.
fn answers(ns: &Netns, address: &str, n: usize) -> Result<BTreeSet<String>> {
    let mut seen = BTreeSet::new();
    for _ in 0..n {
        seen.insert(ns.get(address).map_err(anyhow::Error::msg)?);
    }
    Ok(seen)
}

#[tokio::test]
async fn services_reach_their_endpoints_through_the_rendered_table() -> Result<()> {
    let mut ns = Netns::create(&["192.168.50.2", "10.244.0.2", "10.244.0.3"])?;
    ns.serve("10.244.0.2", 8080)?;
    ns.serve("10.244.0.3", 8080)?;
    let nft = ns.nft();
    let web = service(json!({"type": "NodePort", "clusterIP": "10.96.0.20",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "nodePort": 30080}]}));

    // Full sync: the ClusterIP and the NodePort on the node's address spread over both.
    let both = ruleset(&web, &["10.244.0.2", "10.244.0.3"]);
    nft.apply(&render::full(&both, &settings())).await?;
    let expected: BTreeSet<String> = ["10.244.0.2".to_string(), "10.244.0.3".to_string()].into();
    assert_eq!(answers(&ns, "10.96.0.20:80", 24)?, expected);
    assert_eq!(answers(&ns, "192.168.50.2:30080", 24)?, expected);
    assert!(ns.get("127.0.0.1:30080").is_err(), "NodePorts are not served on loopback");

    // Scaled to zero: refused at once, not left to time out.
    let none = ruleset(&web, &[]);
    nft.apply(&render::diff(&both, &none).context("incremental")?).await?;
    let start = Instant::now();
    let refused = ns.get("10.96.0.20:80").expect_err("no endpoints");
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}: {refused}", start.elapsed());
    assert!(refused.contains("refused"), "{refused}");

    // One endpoint back, then a change of endpoint: only elements are rewritten.
    let one = ruleset(&web, &["10.244.0.3"]);
    nft.apply(&render::diff(&none, &one).context("incremental")?).await?;
    assert_eq!(answers(&ns, "10.96.0.20:80", 5)?, ["10.244.0.3".to_string()].into());
    let other = ruleset(&web, &["10.244.0.2"]);
    nft.apply(&render::diff(&one, &other).context("incremental")?).await?;
    assert_eq!(answers(&ns, "10.96.0.20:80", 5)?, ["10.244.0.2".to_string()].into());

    // Session affinity: one client keeps its endpoint.
    let sticky = service(json!({"clusterIP": "10.96.0.20", "sessionAffinity": "ClientIP",
        "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}));
    let pinned = ruleset(&sticky, &["10.244.0.2", "10.244.0.3"]);
    nft.apply(&render::diff(&other, &pinned).context("incremental")?).await?;
    assert_eq!(answers(&ns, "10.96.0.20:80", 12)?.len(), 1, "pinned to one endpoint");

    // A full sync over whatever is there gives the same table as the increments did.
    let incremental = nft.list_table(render::TABLE).await?.context("table")?;
    nft.apply(&render::full(&pinned, &settings())).await?;
    let fresh = nft.list_table(render::TABLE).await?.context("table")?;
    let strip = |t: &str| t.lines().filter(|l| !l.contains("expires")).map(str::trim).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&incremental).lines().count(), strip(&fresh).lines().count());
    Ok(())
}

/// One DNS question to `server` over UDP; the A records of the answer.
async fn resolve(server: std::net::SocketAddr, name: &str) -> Result<Vec<String>> {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let mut query = Message::new();
    query.set_id(7).set_recursion_desired(true).add_query(Query::query(Name::from_ascii(name)?, RecordType::A));
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
    socket.send_to(&query.to_vec()?, server).await?;
    let mut buf = vec![0; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(3), socket.recv_from(&mut buf)).await??;
    let reply = Message::from_vec(&buf[..n])?;
    Ok(reply
        .answers()
        .iter()
        .filter_map(|r| match r.data() {
            RData::A(a) => Some(a.0.to_string()),
            _ => None,
        })
        .collect())
}

/// rk-proxy itself, in-process against rk-apiserver and etcd, programming a network namespace:
/// it writes nothing before its caches have listed, follows Services and EndpointSlices made
/// through the API, puts back a rule deleted by hand at its full resync, and answers DNS.
#[tokio::test]
async fn rk_proxy_follows_the_api_and_repairs_drift() -> Result<()> {
    let c = integration_tests::Cluster::start().await?;
    let client = c.client().await?;
    let mut ns = Netns::create(&["192.168.50.2", "10.244.0.2", "10.244.0.3"])?;
    ns.serve("10.244.0.2", 8080)?;
    ns.serve("10.244.0.3", 8080)?;
    let dns_port = integration_tests::free_port()?;
    let dir = integration_tests::TempDir::new("proxy-conf")?;
    let resolv = dir.path().join("resolv.conf");
    std::fs::write(&resolv, "nameserver 127.0.0.1\n")?;
    let config = kube_proxy::Config {
        kubeconfig: c.api.kubeconfig.clone(),
        node_name: "a".into(),
        cluster_cidr: Some("10.244.0.0/16".into()),
        nodeport_addresses: vec!["192.168.50.2".into()],
        masquerade_all: false,
        min_sync_period: Duration::from_millis(100),
        sync_period: Duration::from_secs(3),
        dns: Some(kube_proxy::config::DnsConfig {
            service_ip: "10.96.0.10".parse()?,
            domain: "cluster.local".into(),
            listen: format!("127.0.0.1:{dns_port}").parse()?,
            resolv_conf: resolv,
        }),
        health_address: None,
        pod_routes: false,
        nft_command: vec!["ip".into(), "netns".into(), "exec".into(), ns.name.clone(), "nft".into()],
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let proxy = tokio::spawn(kube_proxy::run(config, stop.clone()));

    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "ns"}}))?).await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "ns");
    let created = services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))?,
        )
        .await?;
    let ip = created.spec.and_then(|s| s.cluster_ip).context("cluster IP")?;
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "ns");
    slices.create(&PostParams::default(), &slice(&["10.244.0.2", "10.244.0.3"])).await?;
    let address = format!("{ip}:80");
    let expected: BTreeSet<String> = ["10.244.0.2".to_string(), "10.244.0.3".to_string()].into();
    integration_tests::eventually(20, "the Service reaches both endpoints", || async {
        Ok(answers(&ns, &address, 16).ok().filter(|seen| *seen == expected))
    })
    .await?;

    // An endpoint goes: only the other one answers.
    let patch = json!({"endpoints": [{"addresses": ["10.244.0.3"], "nodeName": "a"}]});
    slices.patch("web-x", &PatchParams::default(), &Patch::Merge(&patch)).await?;
    integration_tests::eventually(20, "only 10.244.0.3 answers", || async {
        Ok(answers(&ns, &address, 8).ok().filter(|seen| seen.len() == 1 && seen.contains("10.244.0.3")))
    })
    .await?;

    // Drift: the Service's entry deleted by hand comes back at the next full resync.
    ns.exec(&["nft", "delete", "element", "ip", render::TABLE, "service-ips", &format!("{{ {ip} . tcp . 80 }}")])?;
    assert!(ns.get(&address).is_err(), "deleted by hand");
    integration_tests::eventually(20, "the full resync repairs the table", || async { Ok(ns.get(&address).ok()) })
        .await?;

    // DNS: the Service's name resolves to its ClusterIP; unknown cluster names do not.
    let server: std::net::SocketAddr = format!("127.0.0.1:{dns_port}").parse()?;
    let found = integration_tests::eventually(20, "web.ns resolves", || async {
        Ok(resolve(server, "web.ns.svc.cluster.local.").await.ok().filter(|a| !a.is_empty()))
    })
    .await?;
    assert_eq!(found, [ip]);
    assert!(resolve(server, "nope.ns.svc.cluster.local.").await?.is_empty());

    stop.cancel();
    proxy.await??;
    Ok(())
}

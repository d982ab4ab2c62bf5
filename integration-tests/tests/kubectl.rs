//! The stock kubectl (1.32, on the machine) against rk-apiserver, with a kubeconfig holding a
//! client certificate and no `--validate=false` anywhere.

use std::path::Path;
use std::process::Command;

use anyhow::{Result, bail};
use integration_tests::Cluster;

const APP: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: busybox:1.36
        env:
        - {name: KEEP, value: "1"}
        - {name: DROP, value: "2"}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - port: 80
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: shop
data:
  mode: fast
"#;

struct Kubectl<'a> {
    kubeconfig: &'a Path,
}

impl Kubectl<'_> {
    /// Runs kubectl without blocking the runtime that serves the API.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        tokio::task::block_in_place(|| self.run_blocking(args, stdin))
    }

    fn run_blocking(&self, args: &[&str], stdin: Option<&str>) -> Result<String> {
        let mut cmd = Command::new("kubectl");
        cmd.arg("--kubeconfig").arg(self.kubeconfig).args(args);
        let out = match stdin {
            Some(text) => {
                use std::io::Write;
                let mut child = cmd
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()?;
                child.stdin.take().map(|mut s| s.write_all(text.as_bytes()));
                child.wait_with_output()?
            }
            None => cmd.output()?,
        };
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            bail!("kubectl {}: {}\n{}", args.join(" "), String::from_utf8_lossy(&out.stderr), stdout);
        }
        Ok(stdout)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_everyday_commands() -> Result<()> {
    let c = Cluster::start().await?;
    let k = Kubectl { kubeconfig: &c.api.kubeconfig };

    let out = k.run(&["apply", "-f", "-"], Some(APP))?;
    for line in
        ["namespace/shop created", "deployment.apps/web created", "service/web created", "configmap/settings created"]
    {
        assert!(out.contains(line), "{out}");
    }

    // Apply again with a new image and one env var removed: exactly that changes.
    let changed = APP.replace("busybox:1.36", "busybox:1.37").replace("        - {name: DROP, value: \"2\"}\n", "");
    let out = k.run(&["apply", "-f", "-"], Some(&changed))?;
    assert!(out.contains("deployment.apps/web configured") && out.contains("service/web unchanged"), "{out}");
    let image = k.run(
        &["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"],
        None,
    )?;
    assert_eq!(image, "busybox:1.37");
    let env = k.run(
        &["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"],
        None,
    )?;
    assert_eq!(env, "KEEP");
    let replicas = k.run(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"], None)?;
    assert_eq!(replicas, "2");

    let table = k.run(&["get", "deploy", "-n", "shop"], None)?;
    assert!(table.starts_with("NAME") && table.contains("READY") && table.contains("web"), "{table}");
    let wide = k.run(&["get", "svc", "-n", "shop", "-o", "wide"], None)?;
    assert!(wide.contains("CLUSTER-IP") && wide.contains("SELECTOR") && wide.contains("app=web"), "{wide}");
    let yaml = k.run(&["get", "cm", "settings", "-n", "shop", "-o", "yaml"], None)?;
    assert!(yaml.contains("mode: fast") && yaml.contains("resourceVersion"), "{yaml}");
    let labelled = k.run(&["get", "deploy", "-A", "-l", "app=web"], None)?;
    assert!(labelled.contains("NAMESPACE") && labelled.contains("shop"), "{labelled}");

    let described = k.run(&["describe", "deploy", "web", "-n", "shop"], None)?;
    assert!(described.contains("Name:") && described.contains("busybox:1.37"), "{described}");

    k.run(&["scale", "deploy", "web", "-n", "shop", "--replicas=5"], None)?;
    let replicas = k.run(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.replicas}"], None)?;
    assert_eq!(replicas, "5");
    k.run(&["label", "cm", "settings", "-n", "shop", "tier=gold"], None)?;
    k.run(&["annotate", "cm", "settings", "-n", "shop", "note=hi"], None)?;
    let meta = k.run(
        &["get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.metadata.labels.tier}/{.metadata.annotations.note}"],
        None,
    )?;
    assert_eq!(meta, "gold/hi");

    let resources = k.run(&["api-resources"], None)?;
    for want in ["deployments", "deploy", "horizontalpodautoscalers", "leases", "endpointslices"] {
        assert!(resources.contains(want), "{want} missing from api-resources");
    }
    let explained = k.run(&["explain", "pod.spec.containers"], None)?;
    assert!(explained.contains("image"), "{explained}");

    // `get -w` prints a row for an update made while it watches.
    let mut watch = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(k.kubeconfig)
        .args(["get", "cm", "settings", "-n", "shop", "-w", "-o", "custom-columns=NAME:.metadata.name,MODE:.data.mode"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let stdout = watch.stdout.take().expect("piped stdout");
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = Vec::new();
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.contains("watched");
            seen.push(line);
            if done {
                break;
            }
        }
        seen
    });
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    k.run(&["patch", "cm", "settings", "-n", "shop", "-p", r#"{"data":{"mode":"watched"}}"#], None)?;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !lines.is_finished() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let seen = lines.join().unwrap_or_default();
    assert!(seen.iter().any(|l| l.contains("settings") && l.contains("watched")), "get -w saw {seen:?}");

    // `edit` through $EDITOR.
    let status = tokio::task::block_in_place(|| {
        std::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(k.kubeconfig)
            .args(["edit", "cm", "settings", "-n", "shop"])
            .env("EDITOR", "sed -i s/watched/edited/")
            .status()
    })?;
    assert!(status.success());
    assert_eq!(k.run(&["get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.data.mode}"], None)?, "edited");

    k.run(&["delete", "deploy", "web", "-n", "shop"], None)?;
    k.run(&["delete", "svc", "web", "-n", "shop"], None)?;
    let left = k.run(&["get", "deploy,svc", "-n", "shop", "-o", "name"], None)?;
    assert!(left.trim().is_empty(), "{left}");
    Ok(())
}

/// The generators of `kubectl create`, `run` and `expose` send protobuf bodies through
/// client-go's typed clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_kubectl_create_run_and_expose() -> Result<()> {
    let c = Cluster::start().await?;
    let k = Kubectl { kubeconfig: &c.api.kubeconfig };
    let get = |args: &[&str]| k.run(args, None);

    assert!(get(&["create", "namespace", "lab"])?.contains("namespace/lab created"));
    get(&["create", "deployment", "web", "-n", "lab", "--image=nginx:1.27", "--replicas=3", "--port=8080"])?;
    let deploy = get(&[
        "get",
        "deploy",
        "web",
        "-n",
        "lab",
        "-o",
        "jsonpath={.spec.replicas}/{.spec.selector.matchLabels.app}/{.spec.template.spec.containers[0].ports[0].containerPort}",
    ])?;
    assert_eq!(deploy, "3/web/8080");

    get(&["create", "configmap", "cfg", "-n", "lab", "--from-literal=mode=fast", "--from-literal=level=3"])?;
    assert_eq!(get(&["get", "cm", "cfg", "-n", "lab", "-o", "jsonpath={.data.mode}/{.data.level}"])?, "fast/3");
    get(&["create", "secret", "generic", "creds", "-n", "lab", "--from-literal=password=s3cret"])?;
    assert_eq!(
        get(&["get", "secret", "creds", "-n", "lab", "-o", "jsonpath={.data.password}/{.type}"])?,
        "czNjcmV0/Opaque"
    );

    get(&[
        "run",
        "box",
        "-n",
        "lab",
        "--image=busybox:1.36",
        "--labels=app=box,tier=x",
        "--env=MODE=debug",
        "--port=9000",
        "--restart=Never",
        "--",
        "sleep",
        "3600",
    ])?;
    let pod = get(&[
        "get",
        "pod",
        "box",
        "-n",
        "lab",
        "-o",
        "jsonpath={.metadata.labels.tier}/{.spec.containers[0].env[0].value}/{.spec.containers[0].args[1]}/{.spec.restartPolicy}/{.spec.containers[0].ports[0].containerPort}",
    ])?;
    assert_eq!(pod, "x/debug/3600/Never/9000");

    get(&["expose", "deployment", "web", "-n", "lab", "--port=80", "--target-port=8080", "--type=NodePort"])?;
    let svc = get(&[
        "get",
        "svc",
        "web",
        "-n",
        "lab",
        "-o",
        "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}/{.spec.selector.app}/{.spec.clusterIP}/{.spec.ports[0].nodePort}",
    ])?;
    let parts: Vec<&str> = svc.split('/').collect();
    assert_eq!(parts[..3], ["80", "8080", "web"], "{svc}");
    assert!(parts[3].parse::<std::net::Ipv4Addr>().is_ok(), "{svc}");
    assert!(parts[4].parse::<u16>().is_ok_and(|p| (30000..=32767).contains(&p)), "{svc}");
    get(&["create", "service", "clusterip", "plain", "-n", "lab", "--tcp=5678:8080"])?;
    assert_eq!(
        get(&["get", "svc", "plain", "-n", "lab", "-o", "jsonpath={.spec.ports[0].port}/{.spec.ports[0].targetPort}"])?,
        "5678/8080"
    );

    get(&["create", "job", "once", "-n", "lab", "--image=busybox:1.36", "--", "echo", "hi"])?;
    get(&["create", "cronjob", "tick", "-n", "lab", "--image=busybox:1.36", "--schedule=*/5 * * * *", "--", "date"])?;
    assert_eq!(get(&["get", "cronjob", "tick", "-n", "lab", "-o", "jsonpath={.spec.schedule}"])?, "*/5 * * * *");
    get(&["create", "serviceaccount", "robot", "-n", "lab"])?;
    get(&["create", "role", "reader", "-n", "lab", "--verb=get,list", "--resource=pods"])?;
    get(&["create", "rolebinding", "robot-reads", "-n", "lab", "--role=reader", "--serviceaccount=lab:robot"])?;
    assert_eq!(
        get(&["get", "rolebinding", "robot-reads", "-n", "lab", "-o", "jsonpath={.subjects[0].kind}/{.roleRef.name}"])?,
        "ServiceAccount/reader"
    );
    get(&["create", "quota", "small", "-n", "lab", "--hard=pods=10,cpu=2"])?;
    assert_eq!(get(&["get", "quota", "small", "-n", "lab", "-o", "jsonpath={.spec.hard.cpu}"])?, "2");
    get(&["create", "pdb", "web", "-n", "lab", "--selector=app=web", "--min-available=1"])?;
    get(&["create", "ingress", "site", "-n", "lab", "--rule=example.com/*=web:80"])?;
    assert_eq!(get(&["get", "ingress", "site", "-n", "lab", "-o", "jsonpath={.spec.rules[0].host}"])?, "example.com");

    // Typed deletes and bad input through the same clients.
    get(&["delete", "pod", "box", "-n", "lab", "--grace-period=0", "--force"])?;
    let err = get(&["create", "deployment", "Bad_Name", "-n", "lab", "--image=nginx"]).expect_err("invalid name");
    assert!(err.to_string().contains("Invalid value"), "{err}");
    Ok(())
}

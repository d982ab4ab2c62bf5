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
                let mut child = cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped()).spawn()?;
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
    for line in ["namespace/shop created", "deployment.apps/web created", "service/web created", "configmap/settings created"] {
        assert!(out.contains(line), "{out}");
    }

    // Apply again with a new image and one env var removed: exactly that changes.
    let changed = APP.replace("busybox:1.36", "busybox:1.37").replace("        - {name: DROP, value: \"2\"}\n", "");
    let out = k.run(&["apply", "-f", "-"], Some(&changed))?;
    assert!(out.contains("deployment.apps/web configured") && out.contains("service/web unchanged"), "{out}");
    let image = k.run(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].image}"], None)?;
    assert_eq!(image, "busybox:1.37");
    let env = k.run(&["get", "deploy", "web", "-n", "shop", "-o", "jsonpath={.spec.template.spec.containers[0].env[*].name}"], None)?;
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
    let meta = k.run(&["get", "cm", "settings", "-n", "shop", "-o", "jsonpath={.metadata.labels.tier}/{.metadata.annotations.note}"], None)?;
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

//! The test harness: real etcd processes (one member or a cluster) on free loopback ports,
//! a throwaway PKI, API servers started in-process, and kubeconfigs that both kube-rs and the
//! stock kubectl use. Everything started here is stopped by PID when its handle drops.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use tokio_util::sync::CancellationToken;

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Result<Self> {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rkube-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir)?;
        Ok(TempDir(dir))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for tests).
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// One etcd member started by this test.
pub struct EtcdMember {
    child: Option<Child>,
    pub name: String,
    pub client_url: String,
    args: Vec<String>,
    _dir: std::sync::Arc<TempDir>,
}

impl EtcdMember {
    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the member (SIGKILL by PID), keeping its data for [`EtcdMember::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        self.child = Some(spawn_etcd(&self.args)?);
        Ok(())
    }
}

impl Drop for EtcdMember {
    fn drop(&mut self) {
        self.stop();
    }
}

fn spawn_etcd(args: &[String]) -> Result<Child> {
    Command::new("etcd")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting etcd (is etcd-server installed? run deploy/setup-host)")
}

/// Client TLS material for an etcd that requires client certificates.
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl EtcdTls {
    pub fn for_apiserver(&self) -> apiserver::storage::EtcdTls {
        apiserver::storage::EtcdTls {
            ca_file: Some(self.ca.clone()),
            cert_file: Some(self.client_cert.clone()),
            key_file: Some(self.client_key.clone()),
        }
    }

    fn connect_options(&self) -> Result<etcd_client::ConnectOptions> {
        let tls = etcd_client::TlsOptions::new()
            .ca_certificate(etcd_client::Certificate::from_pem(std::fs::read(&self.ca)?))
            .identity(etcd_client::Identity::from_pem(
                std::fs::read(&self.client_cert)?,
                std::fs::read(&self.client_key)?,
            ));
        Ok(etcd_client::ConnectOptions::new().with_tls(tls))
    }
}

/// An etcd cluster of one or more members on loopback.
pub struct Etcd {
    pub members: Vec<EtcdMember>,
    pub tls: Option<EtcdTls>,
    dir: std::sync::Arc<TempDir>,
}

impl Etcd {
    pub async fn start() -> Result<Self> {
        Self::cluster(1).await
    }

    /// One member serving clients over TLS and requiring client certificates.
    pub async fn start_tls(pki: &Pki) -> Result<Self> {
        Self::cluster_with(1, Some(pki.etcd_tls()?)).await
    }

    pub async fn cluster(size: usize) -> Result<Self> {
        Self::cluster_with(size, None).await
    }

    async fn cluster_with(size: usize, tls: Option<EtcdTls>) -> Result<Self> {
        let dir = std::sync::Arc::new(TempDir::new("etcd")?);
        let ports: Vec<(u16, u16)> = (0..size).map(|_| Ok((free_port()?, free_port()?))).collect::<Result<_>>()?;
        let initial: Vec<String> =
            ports.iter().enumerate().map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}")).collect();
        let mut members = Vec::new();
        for (i, (client, peer)) in ports.iter().enumerate() {
            let name = format!("m{i}");
            let scheme = if tls.is_some() { "https" } else { "http" };
            let client_url = format!("{scheme}://127.0.0.1:{client}");
            let mut args: Vec<String> = vec![
                format!("--name={name}"),
                format!("--data-dir={}", dir.path().join(&name).display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"),
                format!("--initial-cluster={}", initial.join(",")),
                "--initial-cluster-state=new".into(),
                "--initial-cluster-token=rkube-test".into(),
                "--log-level=error".into(),
                "--heartbeat-interval=50".into(),
                "--election-timeout=500".into(),
                // As deploy/rkadm runs etcd: see the comment there.
                "--backend-batch-limit=200".into(),
            ];
            if let Some(t) = &tls {
                args.extend([
                    format!("--cert-file={}", t.server_cert.display()),
                    format!("--key-file={}", t.server_key.display()),
                    format!("--trusted-ca-file={}", t.ca.display()),
                    "--client-cert-auth".into(),
                ]);
            }
            members.push(EtcdMember { child: Some(spawn_etcd(&args)?), name, client_url, args, _dir: dir.clone() });
        }
        let etcd = Etcd { members, tls, dir };
        etcd.wait_healthy(Duration::from_secs(30)).await?;
        Ok(etcd)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|m| m.client_url.clone()).collect()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Waits until a write through the cluster succeeds.
    pub async fn wait_healthy(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = async {
                let mut c = self.client().await?;
                c.put("/rkube-test/health", "ok", None).await?;
                Ok::<_, anyhow::Error>(())
            };
            match tokio::time::timeout(Duration::from_secs(2), attempt).await {
                Ok(Ok(())) => return Ok(()),
                _ if Instant::now() > deadline => {
                    bail!("etcd did not become healthy within {timeout:?}")
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub async fn client(&self) -> Result<etcd_client::Client> {
        let options = self.tls.as_ref().map(EtcdTls::connect_options).transpose()?;
        Ok(etcd_client::Client::connect(self.endpoints(), options).await?)
    }
}

/// A CA, a serving certificate for 127.0.0.1/localhost and an admin client certificate.
pub struct Pki {
    pub dir: TempDir,
    pub ca_cert: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl Pki {
    pub fn generate() -> Result<Self> {
        Self::generate_for(&[])
    }

    /// Like [`Pki::generate`], with the API server's certificate also valid for `extra_ips`
    /// (an address that node network namespaces reach it on).
    pub fn generate_for(extra_ips: &[std::net::IpAddr]) -> Result<Self> {
        let dir = TempDir::new("pki")?;
        let ca_key = KeyPair::generate()?;
        let mut ca = CertificateParams::new(Vec::<String>::new())?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        ca.distinguished_name.push(DnType::CommonName, "rkube-test-ca");
        let ca_cert = ca.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca, ca_key);
        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let p = dir.path().join(name);
            std::fs::write(&p, text)?;
            Ok(p)
        };
        let ca_path = write("ca.crt", &ca_cert.pem())?;
        let server_key = KeyPair::generate()?;
        let mut names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        names.extend(extra_ips.iter().map(ToString::to_string));
        let mut server = CertificateParams::new(names)?;
        server.distinguished_name.push(DnType::CommonName, "rk-apiserver");
        let server_cert = server.signed_by(&server_key, &issuer)?;
        let server_cert_path = write("apiserver.crt", &server_cert.pem())?;
        let server_key_path = write("apiserver.key", &server_key.serialize_pem())?;
        let mut pki = Pki {
            ca_cert: ca_path,
            server_cert: server_cert_path,
            server_key: server_key_path,
            admin_cert: PathBuf::new(),
            admin_key: PathBuf::new(),
            issuer,
            dir,
        };
        let (cert, key) = pki.client_cert("kubernetes-admin", &["system:masters"])?;
        pki.admin_cert = cert;
        pki.admin_key = key;
        Ok(pki)
    }

    /// Serving and client certificates for etcd, signed by this CA.
    pub fn etcd_tls(&self) -> Result<EtcdTls> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?;
        params.distinguished_name.push(DnType::CommonName, "etcd");
        params.extended_key_usages =
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth, rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let cert = params.signed_by(&key, &self.issuer)?;
        let server_cert = self.dir.path().join("etcd-server.crt");
        let server_key = self.dir.path().join("etcd-server.key");
        std::fs::write(&server_cert, cert.pem())?;
        std::fs::write(&server_key, key.serialize_pem())?;
        let (client_cert, client_key) = self.client_cert("apiserver-etcd-client", &[])?;
        Ok(EtcdTls { ca: self.ca_cert.clone(), server_cert, server_key, client_cert, client_key })
    }

    /// Writes a client certificate for `user` in `groups`; returns (cert, key) paths.
    pub fn client_cert(&self, user: &str, groups: &[&str]) -> Result<(PathBuf, PathBuf)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name.push(DnType::CommonName, user);
        for g in groups {
            params.distinguished_name.push(DnType::OrganizationName, *g);
        }
        let cert = params.signed_by(&key, &self.issuer)?;
        let cert_path = self.dir.path().join(format!("{user}.crt"));
        let key_path = self.dir.path().join(format!("{user}.key"));
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }

    /// A kubeconfig for `server` authenticating with the admin certificate.
    pub fn kubeconfig(&self, server: SocketAddr) -> Result<PathBuf> {
        let user = format!(
            "    client-certificate: {}\n    client-key: {}\n",
            self.admin_cert.display(),
            self.admin_key.display()
        );
        self.kubeconfig_as(server, "admin", &user)
    }

    /// A kubeconfig for `server` whose user section is `user_yaml` (a token, or nothing for an
    /// anonymous client).
    pub fn kubeconfig_as(&self, server: SocketAddr, name: &str, user_yaml: &str) -> Result<PathBuf> {
        let path = self.dir.path().join(format!("kubeconfig-{}-{name}", server.port()));
        let user = if user_yaml.is_empty() { "    {}\n" } else { user_yaml };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: rkube\n  cluster:\n    server: https://{server}\n    certificate-authority: {ca}\n\
             users:\n- name: {name}\n  user:\n{user}\
             contexts:\n- name: {name}@rkube\n  context:\n    cluster: rkube\n    user: {name}\n    namespace: default\ncurrent-context: {name}@rkube\n",
            ca = self.ca_cert.display(),
        );
        std::fs::write(&path, text)?;
        Ok(path)
    }
}

/// An API server running in this process.
pub struct ApiServer {
    pub addr: SocketAddr,
    pub kubeconfig: PathBuf,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl ApiServer {
    pub async fn start(etcd: &[String], pki: &Pki) -> Result<Self> {
        Self::start_with(etcd, pki, |_| {}).await
    }

    /// Starts with a configuration adjusted by `tweak` (a token file, a small body limit…).
    pub async fn start_with(etcd: &[String], pki: &Pki, tweak: impl FnOnce(&mut apiserver::Config)) -> Result<Self> {
        let (kubelet_cert, kubelet_key) = pki.client_cert("kube-apiserver-kubelet-client", &["system:masters"])?;
        let mut config = apiserver::Config {
            etcd_servers: etcd.to_vec(),
            etcd_tls: Default::default(),
            etcd_prefix: apiserver::config::DEFAULT_ETCD_PREFIX.into(),
            listen: "127.0.0.1:0".parse()?,
            tls_cert_file: pki.server_cert.clone(),
            tls_private_key_file: pki.server_key.clone(),
            client_ca_file: Some(pki.ca_cert.clone()),
            token_auth_file: None,
            service_cluster_ip_range: apiserver::config::DEFAULT_SERVICE_CLUSTER_IP_RANGE.into(),
            service_node_port_range: apiserver::config::DEFAULT_SERVICE_NODE_PORT_RANGE.into(),
            max_request_bytes: apiserver::config::DEFAULT_MAX_REQUEST_BYTES,
            watch_cache_size: apiserver::cache::DEFAULT_HISTORY,
            kubelet: apiserver::kubelet::KubeletTls {
                client_certificate: Some(kubelet_cert),
                client_key: Some(kubelet_key),
                certificate_authority: None,
            },
        };
        tweak(&mut config);
        let stop = CancellationToken::new();
        let server = apiserver::server::Server::bind(config, stop.clone()).await?;
        let addr = server.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                eprintln!("apiserver stopped: {e}");
            }
        });
        let kubeconfig = pki.kubeconfig(addr)?;
        let api = ApiServer { addr, kubeconfig, stop, task: Some(task) };
        api.wait_ready(Duration::from_secs(30)).await?;
        Ok(api)
    }

    pub async fn client(&self) -> Result<kube::Client> {
        client_from(&self.kubeconfig).await
    }

    async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let client = self.client().await?;
        let deadline = Instant::now() + timeout;
        loop {
            let req = http::Request::get("/readyz").body(Vec::new())?;
            match client.request_text(req).await {
                Ok(t) if t == "ok" => {}
                _ if Instant::now() > deadline => bail!("apiserver not ready within {timeout:?}"),
                _ => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            }
            // The system namespaces are created right after start.
            let ns: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client.clone());
            if ns.get_opt("default").await.ok().flatten().is_some() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops serving (connections and watches close).
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// CPU time (user + system) a process has used so far, from `/proc/<pid>/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the `(comm)` field; utime and stime are the 14th and 15th overall.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_secs_f64(ticks as f64 / 100.0))
}

/// A kube-rs client from a kubeconfig file.
pub async fn client_from(kubeconfig: &Path) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// etcd, PKI and one API server: what most tests need.
pub struct Cluster {
    pub api: ApiServer,
    pub pki: Pki,
    pub etcd: Etcd,
}

impl Cluster {
    pub async fn start() -> Result<Self> {
        let etcd = Etcd::start().await?;
        let pki = Pki::generate()?;
        let api = ApiServer::start(&etcd.endpoints(), &pki).await?;
        Ok(Cluster { api, pki, etcd })
    }

    pub async fn client(&self) -> Result<kube::Client> {
        self.api.client().await
    }
}

/// A dockerd of the test's own (data root, exec root, socket), with no default bridge and no
/// iptables rules, so tests leave the host as they found it.
pub struct Dockerd {
    child: Option<Child>,
    pub socket: PathBuf,
    dir: TempDir,
    netns: Option<String>,
}

/// The busybox image tests run: `docker import` of the host's static busybox with its applets.
pub const BUSYBOX: &str = "rk-test/busybox:1";

impl Dockerd {
    pub async fn start() -> Result<Self> {
        Self::start_in(None).await
    }

    /// A dockerd whose containers and networks live in the network namespace `netns` (a node of
    /// a [`TestNetwork`]); its socket is a file, reachable from anywhere.
    pub async fn start_in(netns: Option<&str>) -> Result<Self> {
        let dir = TempDir::new("dockerd")?;
        let socket = dir.path().join("docker.sock");
        let mut d = Dockerd { child: None, socket, dir, netns: netns.map(str::to_string) };
        d.spawn().await?;
        d.import_busybox(BUSYBOX)?;
        Ok(d)
    }

    async fn spawn(&mut self) -> Result<()> {
        let dir = self.dir.path();
        let mut command = match &self.netns {
            // nsenter, not `ip netns exec`: that mounts a sysfs of the namespace over /sys,
            // hiding the cgroup mounts dockerd needs.
            Some(netns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net=/var/run/netns/{netns}")).arg("dockerd");
                c
            }
            None => Command::new("dockerd"),
        };
        let child = command
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["--iptables=false", "--ip-masq=false", "--bridge=none"])
            .stdout(Stdio::null())
            .stderr(std::fs::OpenOptions::new().create(true).append(true).open(dir.join("dockerd.log"))?)
            .spawn()
            .context("starting dockerd")?;
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.cli(&["version"]).is_ok_and(|o| o.status.success()) {
            if Instant::now() > deadline {
                bail!("dockerd did not come up: {}", std::fs::read_to_string(dir.join("dockerd.log"))?);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Stops the daemon (SIGTERM, which stops its containers) and starts it again on the same
    /// data: what a node sees when dockerd is restarted or upgraded.
    pub async fn restart(&mut self) -> Result<()> {
        self.stop_daemon();
        self.spawn().await
    }

    fn stop_daemon(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Runs the docker CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new("docker").arg("-H").arg(format!("unix://{}", self.socket.display())).args(args).output()
    }

    /// The CLI's stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self.cli(args)?;
        if !out.status.success() {
            bail!("docker {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Imports the host's static busybox, with a link per applet, as `name`.
    pub fn import_busybox(&self, name: &str) -> Result<()> {
        let root = TempDir::new("rootfs")?;
        let bin = root.path().join("bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::copy("/bin/busybox", bin.join("busybox"))?;
        let applets = Command::new("/bin/busybox").arg("--list").output()?;
        for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace().filter(|a| *a != "busybox") {
            std::os::unix::fs::symlink("busybox", bin.join(applet))?;
        }
        let tar = Command::new("tar").arg("-C").arg(root.path()).args(["-c", "."]).stdout(Stdio::piped()).spawn()?;
        let out = Command::new("docker")
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["import", "-c", r#"CMD ["/bin/sh"]"#, "-c", "ENV PATH=/bin:/sbin:/usr/bin:/usr/sbin", "-", name])
            .stdin(tar.stdout.context("tar stdout")?)
            .output()?;
        if !out.status.success() {
            bail!("docker import: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
}

impl Dockerd {
    /// Tags `image` into `registry` as `name` and pushes it there with the registry's user (from a
    /// CLI config of its own, so the host's `~/.docker` is left alone); returns the pushed
    /// reference.
    pub fn push(&self, image: &str, registry: &Registry, name: &str) -> Result<String> {
        let reference = format!("{}/{name}", registry.address);
        self.run(&["tag", image, &reference])?;
        let config = TempDir::new("docker-cli")?;
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", registry.user, registry.password),
        );
        let json = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, registry.address);
        std::fs::write(config.path().join("config.json"), json)?;
        let out = Command::new("docker")
            .arg("--config")
            .arg(config.path())
            .arg("-H")
            .arg(format!("unix://{}", self.socket.display()))
            .args(["push", &reference])
            .output()?;
        if !out.status.success() {
            bail!("docker push {reference}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(reference)
    }
}

/// Debian's docker-registry on a free 127.0.0.1 port (Docker pulls from 127.0.0.0/8 over plain
/// HTTP) with one htpasswd user; stopped by PID on drop.
pub struct Registry {
    child: Option<Child>,
    pub address: String,
    pub user: String,
    pub password: String,
    _dir: TempDir,
}

impl Registry {
    pub async fn start(user: &str, password: &str) -> Result<Self> {
        let dir = TempDir::new("registry")?;
        let address = format!("127.0.0.1:{}", free_port()?);
        let hash = bcrypt::hash(password, 5)?;
        std::fs::write(dir.path().join("htpasswd"), format!("{user}:{hash}\n"))?;
        let config = format!(
            "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {address}\n\
             auth:\n  htpasswd:\n    realm: rkube-test\n    path: {}\n",
            dir.path().join("data").display(),
            dir.path().join("htpasswd").display()
        );
        std::fs::write(dir.path().join("config.yml"), config)?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("registry.log"))?)
            .spawn()
            .context("starting docker-registry")?;
        let registry =
            Registry { child: Some(child), address, user: user.into(), password: password.into(), _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(&registry.address).is_err() {
            if Instant::now() > deadline {
                bail!("docker-registry did not listen on {}", registry.address);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        // Containers first (their mounts live under the data root), then the networks (their
        // bridges live on the host), then the daemon by PID. Twice, in case a kubelet that was
        // still stopping started something in between.
        for _ in 0..2 {
            if let Ok(out) = self.cli(&["ps", "-aq"]) {
                let ids: Vec<String> =
                    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
                if !ids.is_empty() {
                    let mut args = vec!["rm", "-f"];
                    args.extend(ids.iter().map(String::as_str));
                    let _ = self.cli(&args);
                }
            }
            let _ = self.cli(&["network", "prune", "-f"]);
            std::thread::sleep(Duration::from_millis(200));
        }
        self.stop_daemon();
        // dockerd bind-mounts its own network namespace here and does not always unmount it,
        // which would keep the directory from being removed.
        let _ = Command::new("umount").arg(self.dir.path().join("exec/netns/default")).stderr(Stdio::null()).status();
    }
}

/// An rk-kubelet running in-process against an API server and a dockerd.
pub struct Kubelet {
    pub node: String,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), kubelet::Error>>>,
    _root: TempDir,
}

impl Kubelet {
    pub async fn start(cluster: &Cluster, docker: &Dockerd, node: &str, pod_cidr: &str) -> Result<Self> {
        Self::start_at(cluster, docker, node, pod_cidr, "127.0.0.1".parse()?, &cluster.api.kubeconfig, &[]).await
    }

    /// A kubelet whose Node reports `node_ip` as its InternalIP and whose pods resolve names
    /// through `cluster_dns`, talking to the API through `kubeconfig`.
    pub async fn start_at(
        cluster: &Cluster,
        docker: &Dockerd,
        node: &str,
        pod_cidr: &str,
        node_ip: std::net::IpAddr,
        kubeconfig: &Path,
        cluster_dns: &[std::net::IpAddr],
    ) -> Result<Self> {
        let pki = &cluster.pki;
        let root = TempDir::new("kubelet")?;
        let config = kubelet::Config {
            kubeconfig: kubeconfig.to_path_buf(),
            node_name: node.to_string(),
            node_ip: Some(node_ip),
            root_dir: root.path().to_path_buf(),
            cluster_dns: cluster_dns.to_vec(),
            cluster_domain: "cluster.local".into(),
            resolv_conf: Some(kubelet::config::DEFAULT_RESOLV_CONF.into()),
            pod_cidr: Some(pod_cidr.to_string()),
            taints: vec![],
            node_labels: Default::default(),
            docker_socket: docker.socket.display().to_string(),
            pause_image: kubelet::config::DEFAULT_PAUSE_IMAGE.into(),
            resync: Duration::from_millis(500),
            server: Some((
                "127.0.0.1:0".parse()?,
                kubelet::server::Tls {
                    cert_file: pki.server_cert.clone(),
                    key_file: pki.server_key.clone(),
                    client_ca_file: pki.ca_cert.clone(),
                },
            )),
        };
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(kubelet::run(config, shutdown.clone()));
        Ok(Kubelet { node: node.to_string(), shutdown, task: Some(task), _root: root })
    }

    /// Stops the kubelet (its containers keep running, as when the process dies).
    pub async fn stop(&mut self) -> Result<()> {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await??;
        }
        Ok(())
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // tmpfs volumes (secrets, memory emptyDirs) of pods still on the node would keep the
        // root directory from being removed: unmount them, deepest first.
        let root = self._root.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let mut points: Vec<&str> =
            mounts.lines().filter_map(|l| l.split(' ').nth(1)).filter(|p| p.starts_with(&root)).collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for point in points {
            let _ = Command::new("umount").args(["-l", point]).stderr(Stdio::null()).status();
        }
    }
}

/// An in-process rk-scheduler against the cluster.
pub struct Scheduler {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), scheduler::Error>>>,
}

impl Scheduler {
    /// Starts one with `config` (see [`scheduler::Config::for_kubeconfig`]).
    pub fn start(config: scheduler::Config) -> Self {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(scheduler::run(config, shutdown.clone()));
        Scheduler { shutdown, task: Some(task) }
    }

    /// Kills it the way a crash would: no lease release, bindings in flight abandoned.
    pub fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.kill();
    }
}

/// rk-controller-manager running in the test process.
pub struct ControllerManager {
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<Result<(), controller_manager::Error>>>,
}

impl ControllerManager {
    /// Starts one with `config` (see [`controller_manager::Config::for_kubeconfig`]).
    pub fn start(config: controller_manager::Config) -> Self {
        log_to_test_output();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(controller_manager::run(config, shutdown.clone()));
        ControllerManager { shutdown, task: Some(task) }
    }

    /// Kills it the way a crash would: no lease release, writes in flight abandoned.
    pub fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }

    pub fn is_running(&self) -> bool {
        self.task.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        self.shutdown.cancel();
        self.kill();
    }
}

/// Sends in-process daemons' logs to the test's output when `RK_LOG` is set (`RK_LOG=debug`).
pub fn log_to_test_output() {
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RK_LOG") {
        let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    }
}

/// Polls `check` until it returns `Some`, for at most `secs`; fails naming `what`.
pub async fn eventually<T, F, Fut>(secs: u64, what: &str, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if tokio::time::Instant::now() > deadline {
            anyhow::bail!("not within {secs}s: {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Machines for multi-node tests: a bridge in the host's namespace (the switch, with the host
/// itself at `.1`) and one network namespace per node, plugged in by a veth pair and routing
/// (forwarding on), each a host of its own. Removed, namespaces first, on drop.
pub struct TestNetwork {
    bridge: String,
    subnet: [u8; 3],
    nodes: Vec<String>,
}

impl TestNetwork {
    pub fn create() -> Result<Self> {
        let pid = std::process::id();
        // A /24 per test process, so parallel tests do not share a subnet.
        let subnet = [10, 250, (pid % 250) as u8];
        let net = TestNetwork { bridge: format!("rkb{}", pid % 1_000_000), subnet, nodes: Vec::new() };
        net_cmd(&["ip", "link", "add", &net.bridge, "type", "bridge"])?;
        net_cmd(&["ip", "addr", "add", &format!("{}/24", net.host_ip()), "dev", &net.bridge])?;
        net_cmd(&["ip", "link", "set", &net.bridge, "up"])?;
        Ok(net)
    }

    /// The host's address on the switch.
    pub fn host_ip(&self) -> std::net::IpAddr {
        let [a, b, c] = self.subnet;
        std::net::Ipv4Addr::new(a, b, c, 1).into()
    }

    /// Adds a machine; returns its namespace name and its address on the switch (`eth0`).
    pub fn add_node(&mut self) -> Result<(String, std::net::IpAddr)> {
        let n = self.nodes.len();
        let [a, b, c] = self.subnet;
        let ip = std::net::Ipv4Addr::new(a, b, c, n as u8 + 2);
        let netns = format!("{}-n{n}", self.bridge);
        let veth = format!("{}-v{n}", self.bridge);
        net_cmd(&["ip", "netns", "add", &netns])?;
        self.nodes.push(netns.clone());
        net_cmd(&["ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        net_cmd(&["ip", "link", "set", &veth, "master", &self.bridge, "up"])?;
        let inside = |args: &[&str]| -> Result<String> {
            let mut full = vec!["ip", "netns", "exec", &netns];
            full.extend_from_slice(args);
            net_cmd(&full)
        };
        inside(&["ip", "link", "set", "lo", "up"])?;
        inside(&["ip", "addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
        inside(&["ip", "link", "set", "eth0", "up"])?;
        inside(&["ip", "route", "add", "default", "via", &self.host_ip().to_string()])?;
        inside(&["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
        Ok((netns, ip.into()))
    }

    /// Runs a command inside a node's namespace; its stdout, or an error with its stderr.
    pub fn exec(netns: &str, args: &[&str]) -> Result<String> {
        let mut full = vec!["ip", "netns", "exec", netns];
        full.extend_from_slice(args);
        net_cmd(&full)
    }
}

impl Drop for TestNetwork {
    fn drop(&mut self) {
        for netns in &self.nodes {
            let _ = Command::new("ip").args(["netns", "delete", netns]).status();
        }
        let _ = Command::new("ip").args(["link", "delete", &self.bridge]).status();
    }
}

fn net_cmd(args: &[&str]) -> Result<String> {
    let out = Command::new(args[0]).args(&args[1..]).output().with_context(|| format!("running {}", args[0]))?;
    if !out.status.success() {
        bail!("{}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

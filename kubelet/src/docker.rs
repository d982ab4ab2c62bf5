//! The Docker Engine edge: every call the kubelet makes to dockerd, and the labels that let a
//! restarted kubelet recognise what it started.

use std::collections::HashMap;

use bollard::models::{
    ContainerCreateBody, ContainerSummaryStateEnum, EndpointSettings, HostConfig, Ipam, IpamConfig,
    NetworkCreateRequest, NetworkingConfig,
};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, InspectContainerOptions, KillContainerOptions, ListContainersOptions,
    RemoveContainerOptions, StopContainerOptions,
};
use futures::TryStreamExt;

use crate::Error;

pub const LABEL_NODE: &str = "io.rkube.node";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const LABEL_KIND: &str = "io.rkube.container.kind";
pub const LABEL_ATTEMPT: &str = "io.rkube.container.attempt";
pub const LABEL_HASH: &str = "io.rkube.container.hash";
/// The container name the sandbox carries, as upstream's dockershim named it.
pub const SANDBOX: &str = "POD";

/// What a container is to its pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sandbox,
    Init,
    App,
}

impl Kind {
    /// The value of [`LABEL_KIND`].
    pub fn label(self) -> &'static str {
        match self {
            Kind::Sandbox => "sandbox",
            Kind::Init => "init",
            Kind::App => "app",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "sandbox" => Some(Kind::Sandbox),
            "init" => Some(Kind::Init),
            "app" => Some(Kind::App),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Created,
    Running,
    Exited,
}

/// One container of a pod as Docker reports it (list, then inspect for the details).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub id: String,
    pub pod_uid: String,
    pub pod_name: String,
    pub namespace: String,
    /// The pod's container name, or [`SANDBOX`].
    pub name: String,
    pub kind: Option<Kind>,
    pub attempt: u32,
    pub hash: String,
    pub state: Option<State>,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub image: String,
    pub image_id: String,
    /// The sandbox's address on the pod network.
    pub ip: Option<String>,
}

/// A container to create for a pod.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub docker_name: String,
    pub labels: HashMap<String, String>,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub hostname: Option<String>,
    pub user: Option<String>,
    /// `container:<id>` to join a sandbox, `host`, or a network name.
    pub network_mode: String,
    /// The sandbox to share IPC with.
    pub ipc_mode: Option<String>,
    pub dns: Vec<String>,
    pub dns_search: Vec<String>,
    pub dns_options: Vec<String>,
    pub memory: Option<i64>,
    pub nano_cpus: Option<i64>,
    pub cpu_shares: Option<i64>,
    pub privileged: bool,
    pub read_only_rootfs: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub binds: Vec<String>,
    /// `hostPort`s, published on the sandbox: `(containerPort/protocol, host IP, host port)`.
    pub host_ports: Vec<(String, String, u16)>,
}

/// A Docker Engine client scoped to one node's containers.
#[derive(Clone)]
pub struct Docker {
    client: bollard::Docker,
    node: String,
}

impl Docker {
    /// Connects to the socket and settles on the daemon's API version (bollard's default is newer
    /// than Docker 20.10 accepts).
    pub async fn connect(socket: &str, node: &str) -> Result<Docker, Error> {
        let client = bollard::Docker::connect_with_unix(socket, 120, bollard::API_DEFAULT_VERSION)?;
        let client = client.negotiate_version().await?;
        Ok(Docker { client, node: node.to_string() })
    }

    /// `docker://<version>`, as nodeInfo.containerRuntimeVersion shows it.
    pub async fn runtime_version(&self) -> Result<String, Error> {
        let v = self.client.version().await?;
        Ok(format!("docker://{}", v.version.unwrap_or_default()))
    }

    /// The node's pod network: a bridge on `cidr` with Docker's masquerading off (rk-proxy owns
    /// NAT). Returns its name; an existing network of that name is kept.
    pub async fn ensure_network(&self, name: &str, cidr: &str) -> Result<(), Error> {
        if self.client.inspect_network(name, None).await.is_ok() {
            return Ok(());
        }
        let gateway =
            first_host(cidr).ok_or_else(|| Error::Config(format!("pod CIDR {cidr:?} is not an IPv4 CIDR")))?;
        let request = NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            ipam: Some(Ipam {
                config: Some(vec![IpamConfig {
                    subnet: Some(cidr.to_string()),
                    gateway: Some(gateway),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            options: Some(HashMap::from([("com.docker.network.bridge.enable_ip_masquerade".into(), "false".into())])),
            labels: Some(HashMap::from([(LABEL_NODE.into(), self.node.clone())])),
            ..Default::default()
        };
        match self.client.create_network(request).await {
            Ok(_) => Ok(()),
            // Another kubelet (or a previous start) got there first.
            Err(e) if self.client.inspect_network(name, None).await.is_ok() => {
                tracing::debug!(error = %e, network = name, "network exists");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn has_image(&self, image: &str) -> bool {
        self.client.inspect_image(image).await.is_ok()
    }

    /// Pulls `image` (with registry credentials if given).
    pub async fn pull(&self, image: &str, auth: Option<bollard::auth::DockerCredentials>) -> Result<(), Error> {
        let (repo, tag) = split_image(image);
        let options =
            CreateImageOptions { from_image: Some(repo.to_string()), tag: Some(tag.to_string()), ..Default::default() };
        self.client.create_image(Some(options), None, auth).try_collect::<Vec<_>>().await?;
        Ok(())
    }

    /// Makes the sandbox image from the host's static busybox when it is missing, so a node needs
    /// no registry to run pods.
    pub async fn ensure_pause_image(&self, image: &str) -> Result<(), Error> {
        if self.has_image(image).await {
            return Ok(());
        }
        let busybox = std::fs::read("/bin/busybox")?;
        let rootfs = tar(&[("bin/", None), ("bin/busybox", Some(&busybox))]);
        let (repo, tag) = split_image(image);
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.to_string()),
            tag: Some(tag.to_string()),
            changes: vec![r#"CMD ["/bin/busybox", "sleep", "2147483647"]"#.into()],
            ..Default::default()
        };
        self.client
            .create_image(Some(options), Some(bollard::body_full(rootfs.into())), None)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Every container this node's kubelet started, with the details of inspect.
    pub async fn list(&self, inspect_cache: &mut InspectCache) -> Result<Vec<Observed>, Error> {
        self.list_matching(inspect_cache, None).await
    }

    /// The containers of one pod.
    pub async fn list_pod(&self, inspect_cache: &mut InspectCache, uid: &str) -> Result<Vec<Observed>, Error> {
        self.list_matching(inspect_cache, Some(format!("{LABEL_POD_UID}={uid}"))).await
    }

    async fn list_matching(
        &self,
        inspect_cache: &mut InspectCache,
        label: Option<String>,
    ) -> Result<Vec<Observed>, Error> {
        let mut labels = vec![format!("{LABEL_NODE}={}", self.node)];
        labels.extend(label);
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".into(), labels)])),
            ..Default::default()
        };
        let summaries = self.client.list_containers(Some(options)).await?;
        let mut out = Vec::with_capacity(summaries.len());
        let mut seen = Vec::with_capacity(summaries.len());
        for s in summaries {
            let labels = s.labels.unwrap_or_default();
            let label = |k: &str| labels.get(k).cloned().unwrap_or_default();
            let state = match s.state {
                Some(ContainerSummaryStateEnum::CREATED) => Some(State::Created),
                Some(ContainerSummaryStateEnum::RUNNING | ContainerSummaryStateEnum::RESTARTING) => {
                    Some(State::Running)
                }
                Some(ContainerSummaryStateEnum::EXITED | ContainerSummaryStateEnum::DEAD) => Some(State::Exited),
                _ => None,
            };
            let id = s.id.unwrap_or_default();
            let mut observed = Observed {
                id: id.clone(),
                pod_uid: label(LABEL_POD_UID),
                pod_name: label(LABEL_POD_NAME),
                namespace: label(LABEL_POD_NAMESPACE),
                name: label(LABEL_CONTAINER_NAME),
                kind: Kind::parse(&label(LABEL_KIND)),
                attempt: label(LABEL_ATTEMPT).parse().unwrap_or(0),
                hash: label(LABEL_HASH),
                state,
                image: s.image.unwrap_or_default(),
                image_id: s.image_id.unwrap_or_default(),
                ..Default::default()
            };
            // Inspect once per (container, state): what it adds only changes with the state.
            let key = (id.clone(), state);
            let details = match inspect_cache.0.get(&key) {
                Some(d) => d.clone(),
                None => match self.inspect(&id).await {
                    Ok(d) => {
                        inspect_cache.0.insert(key.clone(), d.clone());
                        d
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, container = %id, "inspect failed; the container may be gone");
                        continue;
                    }
                },
            };
            seen.push(key);
            observed.exit_code = details.exit_code;
            observed.oom_killed = details.oom_killed;
            observed.error = details.error;
            observed.started_at = details.started_at;
            observed.finished_at = details.finished_at;
            observed.ip = details.ip;
            out.push(observed);
        }
        inspect_cache.0.retain(|k, _| seen.contains(k));
        Ok(out)
    }

    async fn inspect(&self, id: &str) -> Result<Details, Error> {
        let c = self.client.inspect_container(id, None::<InspectContainerOptions>).await?;
        let state = c.state.unwrap_or_default();
        let zero = |t: Option<String>| t.filter(|t| !t.starts_with("0001-01-01"));
        let ip = c
            .network_settings
            .and_then(|n| n.networks)
            .and_then(|nets| nets.into_values().find_map(|e| e.ip_address.filter(|ip| !ip.is_empty())));
        Ok(Details {
            exit_code: state.exit_code,
            oom_killed: state.oom_killed.unwrap_or(false),
            error: state.error.filter(|e| !e.is_empty()),
            started_at: zero(state.started_at),
            finished_at: zero(state.finished_at),
            ip,
        })
    }

    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, Error> {
        let mut labels = spec.labels.clone();
        labels.insert(LABEL_NODE.into(), self.node.clone());
        let nonempty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let host_config = HostConfig {
            network_mode: Some(spec.network_mode.clone()),
            ipc_mode: spec.ipc_mode.clone(),
            dns: nonempty(&spec.dns),
            dns_search: nonempty(&spec.dns_search),
            dns_options: nonempty(&spec.dns_options),
            memory: spec.memory,
            nano_cpus: spec.nano_cpus,
            cpu_shares: spec.cpu_shares,
            privileged: Some(spec.privileged),
            readonly_rootfs: Some(spec.read_only_rootfs),
            cap_add: nonempty(&spec.cap_add),
            cap_drop: nonempty(&spec.cap_drop),
            binds: nonempty(&spec.binds),
            port_bindings: (!spec.host_ports.is_empty()).then(|| {
                let mut map: HashMap<String, Option<Vec<bollard::models::PortBinding>>> = HashMap::new();
                for (port, host_ip, host_port) in &spec.host_ports {
                    let binding = bollard::models::PortBinding {
                        host_ip: Some(host_ip.clone()),
                        host_port: Some(host_port.to_string()),
                    };
                    map.entry(port.clone()).or_default().get_or_insert_with(Vec::new).push(binding);
                }
                map
            }),
            ..Default::default()
        };
        let networking_config =
            (!spec.network_mode.starts_with("container:") && spec.network_mode != "host").then(|| NetworkingConfig {
                endpoints_config: Some(HashMap::from([(spec.network_mode.clone(), EndpointSettings::default())])),
            });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: nonempty(&spec.env),
            working_dir: spec.working_dir.clone(),
            hostname: spec.hostname.clone(),
            user: spec.user.clone(),
            labels: Some(labels),
            exposed_ports: (!spec.host_ports.is_empty()).then(|| {
                let mut ports: Vec<String> = spec.host_ports.iter().map(|(p, _, _)| p.clone()).collect();
                ports.dedup();
                ports
            }),
            host_config: Some(host_config),
            networking_config,
            ..Default::default()
        };
        let options = CreateContainerOptions { name: Some(spec.docker_name.clone()), ..Default::default() };
        let created = match self.client.create_container(Some(options.clone()), body.clone()).await {
            Ok(c) => c,
            // A container of that name left over from a create whose answer was lost.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 409, .. }) => {
                self.remove(&spec.docker_name).await?;
                self.client.create_container(Some(options), body).await?
            }
            Err(e) => return Err(e.into()),
        };
        Ok(created.id)
    }

    /// Runs `cmd` in a running container; returns its exit code and combined output.
    pub async fn exec(&self, id: &str, cmd: Vec<String>) -> Result<(i64, String), Error> {
        use bollard::exec::{CreateExecOptions, StartExecResults};
        let options = CreateExecOptions {
            cmd: Some(cmd),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            ..Default::default()
        };
        let exec = self.client.create_exec(id, options).await?;
        let mut output = String::new();
        if let StartExecResults::Attached { output: mut stream, .. } = self.client.start_exec(&exec.id, None).await? {
            while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
                if output.len() < 4096 {
                    output.push_str(&chunk?.to_string());
                }
            }
        }
        let inspected = self.client.inspect_exec(&exec.id).await?;
        Ok((inspected.exit_code.unwrap_or(-1), output))
    }

    /// Creates (does not start) an exec of `cmd` in a running container with the asked-for
    /// streams (`kubectl exec`). A container that is not running is `Ok(None)`.
    pub async fn exec_create(&self, container: &str, cmd: Vec<String>, io: ExecIo) -> Result<Option<String>, Error> {
        let options = bollard::exec::CreateExecOptions {
            cmd: Some(cmd),
            attach_stdin: Some(io.stdin),
            attach_stdout: Some(io.stdout),
            attach_stderr: Some(io.stderr),
            tty: Some(io.tty),
            ..Default::default()
        };
        match self.client.create_exec(container, options).await {
            Ok(e) => Ok(Some(e.id)),
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a created exec, attached.
    pub async fn exec_start(&self, exec_id: &str, tty: bool) -> Result<ExecSession, Error> {
        use bollard::exec::{StartExecOptions, StartExecResults};
        let start = StartExecOptions { detach: false, tty, output_capacity: None };
        match self.client.start_exec(exec_id, Some(start)).await? {
            StartExecResults::Attached { output, input } => Ok(ExecSession { output, input }),
            StartExecResults::Detached => Err(Error::Config("docker started the exec detached".into())),
        }
    }

    /// One reading of a container's usage (Docker's one-shot stats: no wait for a second sample).
    pub async fn stats(&self, id: &str) -> Result<bollard::models::ContainerStatsResponse, Error> {
        let options = bollard::query_parameters::StatsOptions { stream: false, one_shot: true };
        let mut stream = std::pin::pin!(self.client.stats(id, Some(options)));
        match futures::StreamExt::next(&mut stream).await {
            Some(r) => Ok(r?),
            None => Err(Error::Io(std::io::Error::other(format!("no stats for container {id}")))),
        }
    }

    /// Sets the terminal size of a `tty` exec.
    pub async fn exec_resize(&self, exec_id: &str, width: u16, height: u16) -> Result<(), Error> {
        let options = bollard::exec::ResizeExecOptions { width, height };
        self.client.resize_exec(exec_id, options).await?;
        Ok(())
    }

    /// The exit code of a finished exec.
    pub async fn exec_exit_code(&self, exec_id: &str) -> Result<Option<i64>, Error> {
        Ok(self.client.inspect_exec(exec_id).await?.exit_code)
    }

    /// The latest attempt of a pod's container (or the one before it).
    pub async fn find(
        &self,
        namespace: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Result<Option<String>, Error> {
        let filters = vec![
            format!("{LABEL_NODE}={}", self.node),
            format!("{LABEL_POD_NAMESPACE}={namespace}"),
            format!("{LABEL_POD_NAME}={pod}"),
            format!("{LABEL_CONTAINER_NAME}={container}"),
        ];
        let options = ListContainersOptions {
            all: true,
            filters: Some(HashMap::from([("label".into(), filters)])),
            ..Default::default()
        };
        let mut found: Vec<(u32, String)> = self
            .client
            .list_containers(Some(options))
            .await?
            .into_iter()
            .filter_map(|c| {
                let attempt = c.labels.as_ref()?.get(LABEL_ATTEMPT)?.parse().ok()?;
                Some((attempt, c.id?))
            })
            .collect();
        found.sort();
        let index = if previous { found.len().checked_sub(2) } else { found.len().checked_sub(1) };
        Ok(index.map(|i| found[i].1.clone()))
    }

    /// A container's stdout and stderr as Docker keeps them.
    pub fn logs(
        &self,
        id: &str,
        o: &LogOptions,
    ) -> impl futures::Stream<Item = Result<bytes::Bytes, std::io::Error>> + use<> {
        let since = o.since_seconds.map_or(0, |s| {
            let now =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            i32::try_from(now - s).unwrap_or(0)
        });
        let options = bollard::query_parameters::LogsOptions {
            follow: o.follow,
            stdout: true,
            stderr: true,
            since,
            timestamps: o.timestamps,
            tail: o.tail_lines.map_or_else(|| "all".to_string(), |n| n.to_string()),
            ..Default::default()
        };
        futures::StreamExt::map(self.client.logs(id, Some(options)), |chunk| {
            chunk.map(bollard::container::LogOutput::into_bytes).map_err(std::io::Error::other)
        })
    }

    /// Replaces the resolv.conf Docker wrote for a started container with `text`. On a
    /// user-defined network Docker writes its embedded resolver (127.0.0.11) there, not the
    /// cluster DNS address; the pod's containers share this file through `container:<sandbox>`.
    pub async fn write_resolv_conf(&self, id: &str, text: &str) -> Result<(), Error> {
        let c = self.client.inspect_container(id, None::<InspectContainerOptions>).await?;
        match c.resolv_conf_path.filter(|p| !p.is_empty()) {
            Some(path) => Ok(tokio::fs::write(path, text).await?),
            None => Ok(()),
        }
    }

    pub async fn start(&self, id: &str) -> Result<(), Error> {
        self.client.start_container(id, None).await?;
        Ok(())
    }

    /// SIGTERM (or the image's stop signal), then SIGKILL after `grace_seconds`.
    pub async fn stop(&self, id: &str, grace_seconds: i64) -> Result<(), Error> {
        let options =
            StopContainerOptions { t: Some(grace_seconds.clamp(0, i64::from(i32::MAX)) as i32), ..Default::default() };
        match self.client.stop_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 304 | 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn kill(&self, id: &str) -> Result<(), Error> {
        match self.client.kill_container(id, Some(KillContainerOptions { signal: "SIGKILL".into() })).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404 | 409, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn remove(&self, id: &str) -> Result<(), Error> {
        let options = RemoveContainerOptions { force: true, ..Default::default() };
        match self.client.remove_container(id, Some(options)).await {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Which streams an exec attaches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecIo {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// A started exec's output (stdout and stderr apart, or the terminal) and its stdin.
pub struct ExecSession {
    pub output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<bollard::container::LogOutput, bollard::errors::Error>> + Send>,
    >,
    pub input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>,
}

/// What `pods/log` asks for, from the kubelet's `/containerLogs` query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail_lines: Option<u64>,
    pub since_seconds: Option<i64>,
    pub limit_bytes: Option<u64>,
}

impl LogOptions {
    pub fn from_query(query: &[(String, String)]) -> Result<Self, String> {
        let mut o = LogOptions::default();
        for (k, v) in query {
            let flag = || v == "true" || v == "1";
            let number = |what: &str| {
                v.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| format!("{what}: invalid value {v:?}"))
            };
            match k.as_str() {
                "follow" => o.follow = flag(),
                "previous" => o.previous = flag(),
                "timestamps" => o.timestamps = flag(),
                "tailLines" => o.tail_lines = Some(number("tailLines")? as u64),
                "sinceSeconds" => o.since_seconds = Some(number("sinceSeconds")?),
                "limitBytes" => o.limit_bytes = Some(number("limitBytes")? as u64),
                _ => {}
            }
        }
        Ok(o)
    }
}

/// Inspect results by (container, state).
#[derive(Debug, Default)]
pub struct InspectCache(HashMap<(String, Option<State>), Details>);

#[derive(Debug, Clone, Default)]
pub struct Details {
    exit_code: Option<i64>,
    oom_killed: bool,
    error: Option<String>,
    started_at: Option<String>,
    finished_at: Option<String>,
    ip: Option<String>,
}

/// `repo[:tag]` → (repo, tag), `latest` by default; a registry port is not a tag.
pub fn split_image(image: &str) -> (&str, &str) {
    let image = image.split('@').next().unwrap_or(image);
    match image.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (image, "latest"),
    }
}

/// The first host address of an IPv4 CIDR: the bridge's own (gateway) address.
fn first_host(cidr: &str) -> Option<String> {
    let (ip, len) = cidr.split_once('/')?;
    let ip: std::net::Ipv4Addr = ip.parse().ok()?;
    let len: u32 = len.parse().ok().filter(|l| *l <= 30)?;
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    Some(std::net::Ipv4Addr::from((u32::from(ip) & mask) + 1).to_string())
}

/// A ustar archive of directories (`None`) and files, enough for `docker import`.
fn tar(entries: &[(&str, Option<&[u8]>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let size = data.map_or(0, <[u8]>::len);
        header[100..108].copy_from_slice(b"0000755\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[156] = if data.is_some() { b'0' } else { b'5' };
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[148..156].copy_from_slice(b"        ");
        let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        if let Some(data) = data {
            out.extend_from_slice(data);
            out.resize(out.len().div_ceil(512) * 512, 0);
        }
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names_split_like_docker() {
        for (image, want) in [
            ("busybox", ("busybox", "latest")),
            ("busybox:1.36", ("busybox", "1.36")),
            ("127.0.0.1:5000/app", ("127.0.0.1:5000/app", "latest")),
            ("127.0.0.1:5000/app:v2", ("127.0.0.1:5000/app", "v2")),
        ] {
            assert_eq!(split_image(image), want, "{image}");
        }
    }

    #[test]
    fn gateway_is_the_first_host() {
        assert_eq!(first_host("10.244.1.0/24").as_deref(), Some("10.244.1.1"));
        assert_eq!(first_host("10.244.1.77/24").as_deref(), Some("10.244.1.1"));
        assert_eq!(first_host("nonsense"), None);
    }

    #[test]
    fn tar_headers_have_valid_checksums() {
        let archive = tar(&[("bin/", None), ("bin/x", Some(b"hello"))]);
        assert_eq!(archive.len(), 512 * 3 + 1024);
        let header = &archive[512..1024];
        let stored = u32::from_str_radix(std::str::from_utf8(&header[148..154]).expect("ascii"), 8).expect("octal");
        let mut blank = header.to_vec();
        blank[148..156].copy_from_slice(b"        ");
        assert_eq!(stored, blank.iter().map(|b| u32::from(*b)).sum::<u32>());
        assert_eq!(&archive[1024..1029], b"hello");
    }
}

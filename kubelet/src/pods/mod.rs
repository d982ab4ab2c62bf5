//! The pod loop: a reflector of the pods bound to this node, and a pass every second (or at once
//! on a change) that lists this node's containers in Docker and gives each pod with work a
//! worker, one at a time per pod. Workers execute `plan`'s next steps and write `status` back.

pub mod credentials;
pub mod plan;
pub mod probe;
pub mod spec;
pub mod status;
pub mod volumes;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::plan::Action;
use self::status::{Context, Waiting};
use crate::docker::{Docker, InspectCache, Kind, Observed, State};
use crate::events::{Recorder, Type};
use crate::{Config, Error};

const BACKOFF_START: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts with its back-off reset.
const BACKOFF_RESET: Duration = Duration::from_secs(600);
/// How often a running pod's configMap/secret/downwardAPI volumes are compared with their sources.
const VOLUME_REFRESH: Duration = Duration::from_secs(10);

/// Consecutive failures of one container (or one image pull) of one pod.
#[derive(Debug, Clone, Copy, Default)]
struct Backoff {
    failures: u32,
    last: Option<Timestamp>,
}

impl Backoff {
    fn delay(&self) -> Duration {
        let factor = 1u32 << self.failures.saturating_sub(1).min(16);
        (BACKOFF_START * factor).min(BACKOFF_MAX)
    }

    /// For a container that exited (having run from `started` to `finished`): `None` when it may
    /// restart now, counting the restart; otherwise the back-off still to honour. A run of
    /// [`BACKOFF_RESET`] or more starts the back-off over.
    fn restart(&mut self, started: Option<Timestamp>, finished: Option<Timestamp>, now: Timestamp) -> Option<Duration> {
        if let (Some(s), Some(f)) = (started, finished)
            && f.duration_since(s).as_secs_f64() >= BACKOFF_RESET.as_secs_f64()
        {
            self.failures = 0;
        }
        let delay = Backoff { failures: self.failures + 1, last: None }.delay();
        if now >= finished.unwrap_or(now) + jiff_duration(delay) {
            self.failures += 1;
            self.last = Some(now);
            None
        } else {
            Some(delay)
        }
    }
}

/// What workers share.
struct Shared {
    client: kube::Client,
    docker: Docker,
    config: Config,
    host_ip: String,
    /// Back-offs by (pod uid, container name; `pull:<name>` for image pulls).
    backoff: Mutex<HashMap<(String, String), Backoff>>,
    /// Waiting reasons by pod uid and container name.
    waiting: Mutex<HashMap<String, BTreeMap<String, Waiting>>>,
    /// When each pod's file volumes were last rewritten from their sources.
    refreshed: Mutex<HashMap<String, std::time::Instant>>,
    /// Probe results by container ID and probe.
    probes: Mutex<HashMap<(String, probe::Kind), probe::Tracker>>,
    events: Recorder,
}

/// Runs the pod loop until `shutdown`.
pub async fn run(
    client: kube::Client,
    docker: Docker,
    config: Config,
    host_ip: String,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let pods: Api<Pod> = Api::all(client.clone());
    let (reader, writer) = reflector::store();
    let changed = Arc::new(tokio::sync::Notify::new());
    let selector = format!("spec.nodeName={}", config.node_name);
    let stream = reflector(writer, watcher(pods, watcher::Config::default().fields(&selector))).default_backoff();
    let notify = changed.clone();
    let reflect = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Err(e) = event {
                tracing::warn!(error = %e, "watching pods failed; retrying");
            }
            notify.notify_one();
        }
    });
    let resync = config.resync;
    let node_name = config.node_name.clone();
    let shared = Arc::new(Shared {
        client: client.clone(),
        docker,
        config,
        host_ip,
        backoff: Mutex::new(HashMap::new()),
        waiting: Mutex::new(HashMap::new()),
        refreshed: Mutex::new(HashMap::new()),
        probes: Mutex::new(HashMap::new()),
        events: Recorder::new(client.clone(), "kubelet", Some(&node_name)),
    });
    tokio::select! {
        () = shutdown.cancelled() => { reflect.abort(); return Ok(()) }
        r = reader.wait_until_ready() => r.map_err(|e| Error::Config(format!("pod reflector: {e}")))?,
    }
    let mut inspect_cache = InspectCache::default();
    let mut workers: HashMap<String, JoinHandle<()>> = HashMap::new();
    loop {
        workers.retain(|_, handle| !handle.is_finished());
        match shared.docker.list(&mut inspect_cache).await {
            Ok(all) => {
                let mut by_pod: HashMap<String, Vec<Observed>> = HashMap::new();
                if let Ok(mut probes) = shared.probes.lock() {
                    let running: HashSet<&str> =
                        all.iter().filter(|o| o.state == Some(State::Running)).map(|o| o.id.as_str()).collect();
                    probes.retain(|(id, _), _| running.contains(id.as_str()));
                }
                for o in all {
                    by_pod.entry(o.pod_uid.clone()).or_default().push(o);
                }
                let pods = reader.state();
                let known: HashSet<String> = pods.iter().filter_map(|p| p.metadata.uid.clone()).collect();
                for pod in pods {
                    let uid = pod.metadata.uid.clone().unwrap_or_default();
                    if workers.contains_key(&uid) {
                        continue;
                    }
                    let observed = by_pod.remove(&uid).unwrap_or_default();
                    let shared = shared.clone();
                    let span = tracing::info_span!(
                        "sync_pod",
                        namespace = pod.metadata.namespace.as_deref().unwrap_or_default(),
                        pod = pod.metadata.name.as_deref().unwrap_or_default()
                    );
                    let work = async move { sync_pod(&shared, &pod, observed).await };
                    workers.insert(uid, tokio::spawn(work.instrument(span)));
                }
                // Containers of pods that no longer exist (deleted while the kubelet was down).
                for (uid, observed) in by_pod.into_iter().filter(|(uid, _)| !known.contains(uid)) {
                    if workers.contains_key(&uid) {
                        continue;
                    }
                    let shared = shared.clone();
                    workers
                        .insert(uid.clone(), tokio::spawn(async move { remove_orphan(&shared, &uid, observed).await }));
                }
            }
            Err(e) => tracing::warn!(error = %e, "listing containers failed"),
        }
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = changed.notified() => {}
            () = tokio::time::sleep(resync) => {}
        }
    }
    reflect.abort();
    for (_, handle) in workers {
        handle.abort();
    }
    Ok(())
}

async fn remove_orphan(shared: &Shared, uid: &str, observed: Vec<Observed>) {
    tracing::info!(pod_uid = uid, containers = observed.len(), "removing the containers of a pod that is gone");
    for o in observed {
        if let Err(e) = shared.docker.remove(&o.id).await {
            tracing::warn!(container = %o.id, error = %e, "removing an orphaned container failed");
        }
    }
    volumes::cleanup(&shared.config.root_dir, uid);
}

/// Plans taken in a row by one worker: a new pod's sandbox and then its containers start in one
/// go instead of one pass apart.
const STEPS_PER_SYNC: usize = 4;

/// One pass for one pod: the plan's next steps (re-planned on what Docker then has while they
/// start things), then its status.
async fn sync_pod(shared: &Shared, pod: &Pod, mut observed: Vec<Observed>) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    for _ in 0..STEPS_PER_SYNC {
        let actions = plan::plan(pod, &observed);
        let progress = actions.iter().any(|a| matches!(a, Action::CreateSandbox { .. } | Action::Start { .. }));
        if actions.is_empty() {
            break;
        }
        if !execute_all(shared, pod, &observed, actions).await {
            return;
        }
        let mut cache = InspectCache::default();
        match shared.docker.list_pod(&mut cache, &uid).await {
            Ok(fresh) => observed = fresh,
            Err(e) => {
                tracing::warn!(error = %e, "listing the pod's containers failed");
                break;
            }
        }
        if !progress {
            break;
        }
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return;
    }
    write_status(shared, pod, observed).await;
}

/// Executes one plan; false once the pod is gone (its deletion finished).
async fn execute_all(shared: &Shared, pod: &Pod, observed: &[Observed], actions: Vec<Action>) -> bool {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    // A pod's containers stop together (their preStop hooks and grace periods overlap, as
    // upstream's); everything else goes in order.
    let app_stop = |a: &Action| matches!(a, Action::Stop { id, .. } if observed.iter().any(|o| o.id == *id && o.kind != Some(Kind::Sandbox)));
    let mut actions = actions.into_iter().peekable();
    while let Some(action) = actions.next() {
        if app_stop(&action) {
            let mut batch = vec![action];
            while let Some(next) = actions.next_if(|a| app_stop(a)) {
                batch.push(next);
            }
            let results = futures::future::join_all(batch.iter().map(|a| execute(shared, pod, observed, a))).await;
            for (action, result) in batch.iter().zip(results) {
                if let Err(e) = result {
                    tracing::warn!(?action, error = %e, "pod step failed");
                }
            }
            continue;
        }
        let result = match &action {
            Action::FinishDeletion => {
                let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    preconditions: Some(Preconditions { uid: Some(uid.clone()), resource_version: None }),
                    ..Default::default()
                };
                match pods.delete(&name, &params).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                    Err(e) => tracing::warn!(error = %e, "finishing the deletion failed"),
                }
                volumes::cleanup(&shared.config.root_dir, &uid);
                forget(shared, &uid);
                return false;
            }
            action => execute(shared, pod, observed, action).await,
        };
        if let Err(e) = result {
            tracing::warn!(?action, error = %e, "pod step failed");
        }
    }
    true
}

/// Probes, volume refreshes and the status write of a pod that is not being deleted.
async fn write_status(shared: &Shared, pod: &Pod, observed: Vec<Observed>) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    refresh_volumes(shared, pod, &observed).await;
    let (unready, unstarted) = run_probes(shared, pod, &observed).await;
    let waiting = shared.waiting.lock().map(|w| w.get(&uid).cloned().unwrap_or_default()).unwrap_or_default();
    let ctx = Context { host_ip: shared.host_ip.clone(), now: None, waiting, unready, unstarted };
    let status = status::pod_status(pod, &observed, &ctx);
    let current = serde_json::to_value(&pod.status).unwrap_or_default();
    let wanted = serde_json::to_value(&status).unwrap_or_default();
    if current != wanted {
        let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
        let patch = serde_json::json!({ "status": wanted });
        if let Err(e) = pods.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
            tracing::warn!(error = %e, "writing the pod status failed");
        }
    }
}

/// Rewrites configMap, secret and downwardAPI volumes of a running pod when their sources
/// changed, at most every [`VOLUME_REFRESH`].
async fn refresh_volumes(shared: &Shared, pod: &Pod, observed: &[Observed]) {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let has_files = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .any(|v| v.config_map.is_some() || v.secret.is_some() || v.downward_api.is_some() || v.projected.is_some());
    let running = observed.iter().any(|o| o.state == Some(State::Running) && o.kind != Some(Kind::Sandbox));
    if !has_files || !running {
        return;
    }
    let due = shared.refreshed.lock().is_ok_and(|r| r.get(&uid).is_none_or(|at| at.elapsed() >= VOLUME_REFRESH));
    if !due {
        return;
    }
    if let Ok(mut r) = shared.refreshed.lock() {
        r.insert(uid.clone(), std::time::Instant::now());
    }
    match sources(shared, pod, None, true).await {
        Ok(sources) => {
            if let Err(e) = volumes::prepare(&shared.config.root_dir, pod, &sources) {
                tracing::warn!(error = %e, "refreshing volumes failed");
            }
        }
        Err(e) => tracing::warn!(error = %e, "reading volume sources failed"),
    }
}

/// Runs the probes that are due on the pod's running containers. A failed liveness (or startup)
/// probe stops the container, which then restarts per the restartPolicy. Returns the containers
/// that are not ready and those not yet started.
async fn run_probes(shared: &Shared, pod: &Pod, observed: &[Observed]) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut unready, mut unstarted) = (BTreeSet::new(), BTreeSet::new());
    let spec = pod.spec.clone().unwrap_or_default();
    let ip = pod.status.as_ref().and_then(|s| s.pod_ip.clone()).unwrap_or_else(|| shared.host_ip.clone());
    for c in &spec.containers {
        let Some(o) = plan::latest(observed, &c.name).filter(|o| o.state == Some(State::Running)) else { continue };
        let started_at = parse_time(&o.started_at).unwrap_or_else(Timestamp::now);
        let running_for = Timestamp::now().duration_since(started_at).unsigned_abs();
        let mut started = true;
        for kind in [probe::Kind::Startup, probe::Kind::Liveness, probe::Kind::Readiness] {
            let Some(p) = kind.of(c) else { continue };
            if !started {
                break;
            }
            let key = (o.id.clone(), kind);
            let now = std::time::Instant::now();
            let tracker = shared
                .probes
                .lock()
                .ok()
                .map(|mut m| *m.entry(key.clone()).or_insert_with(|| probe::Tracker::new(kind)));
            let Some(mut tracker) = tracker else { continue };
            // A startup probe that passed is done; the others keep running.
            let settled = kind == probe::Kind::Startup && tracker.passing;
            if !settled && tracker.due(p, running_for, now) {
                let result = probe::run(&shared.docker, p, c, &ip, &o.id).await;
                tracker.record(p, result.is_ok(), now);
                if let Err(message) = &result {
                    tracing::info!(container = %c.name, probe = kind.name(), %message, "probe failed");
                    let text = format!("{} probe failed: {message}", kind.name());
                    shared.events.pod(pod, Some(&c.name), Type::Warning, "Unhealthy", text);
                }
                if let Ok(mut m) = shared.probes.lock() {
                    m.insert(key, tracker);
                }
            }
            let failed = match kind {
                probe::Kind::Liveness => !tracker.passing,
                probe::Kind::Startup => !tracker.passing && tracker.exhausted(p),
                probe::Kind::Readiness => false,
            };
            if failed {
                tracing::info!(container = %c.name, probe = kind.name(), "container failed its probe; it will be restarted");
                let text =
                    format!("Container {} failed {} probe, will be restarted", c.name, kind.name().to_lowercase());
                if let Err(e) = stop(shared, pod, observed, o, plan::grace_seconds(pod), text).await {
                    tracing::warn!(error = %e, "stopping an unhealthy container failed");
                }
            }
            match kind {
                probe::Kind::Startup if !tracker.passing => {
                    started = false;
                    unstarted.insert(c.name.clone());
                    unready.insert(c.name.clone());
                }
                probe::Kind::Readiness if !tracker.passing => {
                    unready.insert(c.name.clone());
                }
                _ => {}
            }
        }
    }
    (unready, unstarted)
}

fn forget(shared: &Shared, uid: &str) {
    if let Ok(mut r) = shared.refreshed.lock() {
        r.remove(uid);
    }
    if let Ok(mut b) = shared.backoff.lock() {
        b.retain(|(u, _), _| u != uid);
    }
    if let Ok(mut w) = shared.waiting.lock() {
        w.remove(uid);
    }
}

fn set_waiting(shared: &Shared, uid: &str, container: &str, waiting: Option<Waiting>) {
    if let Ok(mut w) = shared.waiting.lock() {
        let entry = w.entry(uid.to_string()).or_default();
        match waiting {
            Some(reason) => {
                entry.insert(container.to_string(), reason);
            }
            None => {
                entry.remove(container);
            }
        }
    }
}

/// The node's resolver settings, read afresh for each sandbox as upstream does (an unreadable
/// file gives none, with a warning).
async fn host_dns(path: Option<&std::path::Path>) -> spec::HostDns {
    let Some(path) = path else { return spec::HostDns::default() };
    match tokio::fs::read_to_string(path).await {
        Ok(text) => spec::parse_resolv_conf(&text),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "reading the node's resolv.conf failed");
            spec::HostDns::default()
        }
    }
}

async fn execute(shared: &Shared, pod: &Pod, observed: &[Observed], action: &Action) -> Result<(), Error> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    match action {
        Action::CreateSandbox { attempt } => {
            let host = host_dns(shared.config.resolv_conf.as_deref()).await;
            let spec = spec::sandbox(pod, &shared.config, *attempt, &host);
            let id = shared.docker.create(&spec).await?;
            shared.docker.start(&id).await?;
            if let Some(text) = spec::resolv_conf(&spec) {
                shared.docker.write_resolv_conf(&id, &text).await?;
            }
            tracing::info!(attempt, "sandbox started");
            Ok(())
        }
        Action::Start { name, kind, attempt } => start(shared, pod, observed, name, *kind, *attempt).await,
        Action::Restart { name, kind, attempt } => {
            let exited = plan::latest(observed, name);
            let key = (uid.clone(), name.clone());
            let now = Timestamp::now();
            let ready = {
                let mut backoffs = shared.backoff.lock().map_err(|_| Error::Config("poisoned lock".into()))?;
                let started = exited.and_then(|o| parse_time(&o.started_at));
                let finished = exited.and_then(|o| parse_time(&o.finished_at));
                backoffs.entry(key).or_default().restart(started, finished, now)
            };
            match ready {
                None => {
                    set_waiting(shared, &uid, name, None);
                    start(shared, pod, observed, name, *kind, *attempt).await
                }
                Some(delay) => {
                    let message = format!(
                        "back-off {}s restarting failed container={name} pod={}_{}({uid})",
                        delay.as_secs(),
                        pod.metadata.name.as_deref().unwrap_or_default(),
                        pod.metadata.namespace.as_deref().unwrap_or_default()
                    );
                    set_waiting(shared, &uid, name, Some(Waiting { reason: "CrashLoopBackOff".into(), message }));
                    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
                    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
                    let text = format!("Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})");
                    shared.events.pod(pod, Some(name), Type::Warning, "BackOff", text);
                    Ok(())
                }
            }
        }
        Action::Stop { id, grace } => match observed.iter().find(|o| o.id == *id && o.kind != Some(Kind::Sandbox)) {
            Some(o) => stop(shared, pod, observed, o, *grace, format!("Stopping container {}", o.name)).await,
            None => shared.docker.stop(id, *grace).await,
        },
        Action::Remove { id } => shared.docker.remove(id).await,
        Action::FinishDeletion => Ok(()),
    }
}

/// Stops an app or init container: a `Killing` event, its preStop hook within the grace period,
/// then SIGTERM and, after what is left of the grace period (at least 2 s, as upstream), SIGKILL.
async fn stop(
    shared: &Shared,
    pod: &Pod,
    observed: &[Observed],
    o: &Observed,
    grace: i64,
    why: String,
) -> Result<(), Error> {
    shared.events.pod(pod, Some(&o.name), Type::Normal, "Killing", why);
    let spec = pod.spec.as_ref();
    let container = spec.into_iter().flat_map(|s| s.containers.iter()).find(|c| c.name == o.name);
    let pre_stop = container.and_then(|c| Some((c, c.lifecycle.as_ref()?.pre_stop.as_ref()?)));
    let mut grace = grace;
    if let Some((c, hook)) = pre_stop.filter(|_| o.state == Some(State::Running)) {
        let began = std::time::Instant::now();
        let ip = plan::latest(observed, crate::docker::SANDBOX)
            .and_then(|s| s.ip.clone())
            .unwrap_or_else(|| shared.host_ip.clone());
        let budget = Duration::from_secs(grace.max(0) as u64);
        let outcome = tokio::time::timeout(budget, probe::perform(&shared.docker, hook.into(), c, &ip, &o.id)).await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(_) => Some(format!("the hook did not finish within the grace period ({grace}s)")),
        };
        if let Some(message) = failure {
            let text = format!("PreStopHook failed: {message}");
            shared.events.pod(pod, Some(&o.name), Type::Warning, "FailedPreStopHook", text);
        }
        grace = (grace - began.elapsed().as_secs() as i64).max(2);
    }
    shared.docker.stop(&o.id, grace).await
}

fn parse_time(t: &Option<String>) -> Option<Timestamp> {
    t.as_deref()?.parse().ok()
}

fn jiff_duration(d: Duration) -> k8s_openapi::jiff::SignedDuration {
    k8s_openapi::jiff::SignedDuration::try_from(d).unwrap_or(k8s_openapi::jiff::SignedDuration::MAX)
}

/// Pulls the image if its policy says so, resolves the environment, then creates and starts
/// the container in the pod's sandbox.
async fn start(
    shared: &Shared,
    pod: &Pod,
    observed: &[Observed],
    name: &str,
    kind: Kind,
    attempt: u32,
) -> Result<(), Error> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let spec = pod.spec.clone().unwrap_or_default();
    let Some(container) = spec.containers.iter().chain(spec.init_containers.iter().flatten()).find(|c| c.name == name)
    else {
        return Ok(());
    };
    let Some(sandbox) = plan::latest(observed, crate::docker::SANDBOX).filter(|s| s.state == Some(State::Running))
    else {
        return Ok(());
    };
    if !ensure_image(shared, pod, container).await? {
        return Ok(());
    }
    // A pod that has run a container has its claims mounted already: it keeps them while they
    // are being deleted. Only a pod yet to start is refused them, as upstream's kubelet does.
    let started = observed.iter().any(|o| o.kind != Some(Kind::Sandbox));
    let sources = match sources(shared, pod, Some(container), started).await {
        Ok(s) => s,
        Err(message) => {
            shared.events.pod(pod, Some(name), Type::Warning, "Failed", format!("Error: {message}"));
            set_waiting(shared, &uid, name, Some(Waiting { reason: "CreateContainerConfigError".into(), message }));
            return Ok(());
        }
    };
    let mounts =
        volumes::prepare(&shared.config.root_dir, pod, &sources).and_then(|paths| volumes::binds(container, &paths));
    let binds = match mounts {
        Ok(binds) => binds,
        Err(message) => {
            tracing::warn!(container = name, %message, "mounting volumes failed");
            let message = format!("MountVolume.SetUp failed: {message}");
            shared.events.pod(pod, None, Type::Warning, "FailedMount", message.clone());
            set_waiting(shared, &uid, name, Some(Waiting { reason: "ContainerCreating".into(), message }));
            return Ok(());
        }
    };
    let mut spec = match spec::container(pod, container, kind, attempt, &sandbox.id, &sources) {
        Ok(s) => s,
        Err(spec::ConfigError(message)) => {
            shared.events.pod(pod, Some(name), Type::Warning, "Failed", format!("Error: {message}"));
            set_waiting(shared, &uid, name, Some(Waiting { reason: "CreateContainerConfigError".into(), message }));
            return Ok(());
        }
    };
    spec.binds = binds;
    let id = shared.docker.create(&spec).await?;
    shared.events.pod(pod, Some(name), Type::Normal, "Created", format!("Created container: {name}"));
    match shared.docker.start(&id).await {
        Ok(()) => {
            shared.events.pod(pod, Some(name), Type::Normal, "Started", format!("Started container {name}"));
            set_waiting(shared, &uid, name, None);
            tracing::info!(container = name, attempt, "container started");
            let post_start = container.lifecycle.as_ref().and_then(|l| l.post_start.as_ref());
            if let Some(hook) = post_start {
                let ip = sandbox.ip.clone().unwrap_or_else(|| shared.host_ip.clone());
                if let Err(message) = probe::perform(&shared.docker, hook.into(), container, &ip, &id).await {
                    // As upstream: the container is killed and restarts per its policy.
                    let text = format!("PostStartHook failed: {message}");
                    shared.events.pod(pod, Some(name), Type::Warning, "FailedPostStartHook", text);
                    shared.docker.stop(&id, plan::grace_seconds(pod)).await?;
                }
            }
            Ok(())
        }
        Err(e) => {
            shared.events.pod(pod, Some(name), Type::Warning, "Failed", format!("Error: {e}"));
            set_waiting(
                shared,
                &uid,
                name,
                Some(Waiting { reason: "RunContainerError".into(), message: e.to_string() }),
            );
            Err(e)
        }
    }
}

/// Whether the image is there to run, pulling it per imagePullPolicy (`:latest` or no tag means
/// Always by default). Failures become ErrImagePull, then ImagePullBackOff while backing off.
async fn ensure_image(shared: &Shared, pod: &Pod, c: &k8s_openapi::api::core::v1::Container) -> Result<bool, Error> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let image = c.image.clone().unwrap_or_default();
    let latest = crate::docker::split_image(&image).1 == "latest";
    let policy =
        c.image_pull_policy.clone().unwrap_or_else(|| if latest { "Always".into() } else { "IfNotPresent".into() });
    let present = shared.docker.has_image(&image).await;
    let pull = match policy.as_str() {
        "Never" if present => false,
        "Never" => {
            let message = format!("Container image \"{image}\" is not present with pull policy of Never");
            set_waiting(shared, &uid, &c.name, Some(Waiting { reason: "ErrImageNeverPull".into(), message }));
            return Ok(false);
        }
        "IfNotPresent" => !present,
        _ => true,
    };
    if !pull {
        let message = format!("Container image \"{image}\" already present on machine");
        shared.events.pod(pod, Some(&c.name), Type::Normal, "Pulled", message);
        return Ok(true);
    }
    let key = (uid.clone(), format!("pull:{}", c.name));
    let now = Timestamp::now();
    let backing_off = shared.backoff.lock().ok().and_then(|b| b.get(&key).copied()).and_then(|b| {
        let last = b.last?;
        (now < last + jiff_duration(b.delay())).then_some(b.delay())
    });
    if let Some(delay) = backing_off {
        let message = format!("Back-off pulling image \"{image}\" ({}s)", delay.as_secs());
        shared.events.pod(pod, Some(&c.name), Type::Normal, "BackOff", format!("Back-off pulling image \"{image}\""));
        shared.events.pod(pod, Some(&c.name), Type::Warning, "Failed", "Error: ImagePullBackOff".into());
        set_waiting(shared, &uid, &c.name, Some(Waiting { reason: "ImagePullBackOff".into(), message }));
        return Ok(false);
    }
    let credentials = credentials::for_image(&image, &pull_secrets(shared, pod).await);
    shared.events.pod(pod, Some(&c.name), Type::Normal, "Pulling", format!("Pulling image \"{image}\""));
    let began = std::time::Instant::now();
    let mut result = if credentials.is_empty() { shared.docker.pull(&image, None).await } else { Ok(()) };
    for (i, auth) in credentials.into_iter().enumerate() {
        result = shared.docker.pull(&image, Some(auth)).await;
        if result.is_ok() {
            break;
        }
        tracing::debug!(image, credential = i, "pull with this credential failed");
    }
    match result {
        Ok(()) => {
            let message = format!("Successfully pulled image \"{image}\" in {:.3}s", began.elapsed().as_secs_f64());
            shared.events.pod(pod, Some(&c.name), Type::Normal, "Pulled", message);
            if let Ok(mut b) = shared.backoff.lock() {
                b.remove(&key);
            }
            Ok(true)
        }
        Err(e) => {
            if let Ok(mut b) = shared.backoff.lock() {
                let entry = b.entry(key).or_default();
                entry.failures += 1;
                entry.last = Some(now);
            }
            let message = format!("Failed to pull image \"{image}\": {e}");
            shared.events.pod(pod, Some(&c.name), Type::Warning, "Failed", message.clone());
            shared.events.pod(pod, Some(&c.name), Type::Warning, "Failed", "Error: ErrImagePull".into());
            set_waiting(shared, &uid, &c.name, Some(Waiting { reason: "ErrImagePull".into(), message }));
            Ok(false)
        }
    }
}

/// The pod's `imagePullSecrets` that exist; a missing one is an Event, and the pull goes on
/// without it, as upstream's does.
async fn pull_secrets(shared: &Shared, pod: &Pod) -> Vec<k8s_openapi::api::core::v1::Secret> {
    let names: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty())
        .collect();
    if names.is_empty() {
        return Vec::new();
    }
    let api: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(shared.client.clone(), pod.metadata.namespace.as_deref().unwrap_or("default"));
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for name in names {
        match api.get_opt(&name).await {
            Ok(Some(s)) => found.push(s),
            Ok(None) => missing.push(name),
            Err(e) => missing.push(format!("{name} ({e})")),
        }
    }
    if !missing.is_empty() {
        let message = format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
            missing.join(", ")
        );
        shared.events.pod(pod, None, Type::Warning, "FailedToRetrieveImagePullSecret", message);
    }
    found
}

/// Reads the ConfigMaps and Secrets a container's environment and the pod's volumes refer to; a
/// missing one is left out (and reported where it is used unless optional). The pod's claims are
/// resolved to paths; one being deleted only for a pod that `started` before.
async fn sources(
    shared: &Shared,
    pod: &Pod,
    c: Option<&k8s_openapi::api::core::v1::Container>,
    started: bool,
) -> Result<spec::Sources, String> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (mut cms, mut secrets) = c.map(spec::referenced).unwrap_or_default();
    let (volume_cms, volume_secrets) = volumes::referenced(pod);
    cms.extend(volume_cms);
    secrets.extend(volume_secrets);
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    let mut out = spec::Sources::default();
    let cm_api: Api<ConfigMap> = Api::namespaced(shared.client.clone(), &ns);
    for name in cms {
        if let Some(cm) = cm_api.get_opt(&name).await.map_err(|e| e.to_string())? {
            out.config_maps.insert(name, cm.data.unwrap_or_default());
        }
    }
    let secret_api: Api<Secret> = Api::namespaced(shared.client.clone(), &ns);
    for name in secrets {
        if let Some(s) = secret_api.get_opt(&name).await.map_err(|e| e.to_string())? {
            let data =
                s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()));
            out.secrets.insert(name, data.collect());
        }
    }
    let claims =
        pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()).filter_map(|v| v.persistent_volume_claim.as_ref());
    for claim in claims {
        let path = claim_path(shared, &ns, &claim.claim_name, started).await;
        out.claims.insert(claim.claim_name.clone(), path);
    }
    Ok(out)
}

/// Where a bound claim's volume lives on this node: its PersistentVolume's `hostPath` or `local`
/// path. Anything else is the reason the mount cannot happen yet; so is a claim being deleted,
/// unless the pod `started` with it.
async fn claim_path(shared: &Shared, ns: &str, claim: &str, started: bool) -> Result<String, String> {
    use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(shared.client.clone(), ns);
    let pvc = claims
        .get_opt(claim)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolumeclaim \"{claim}\" not found"))?;
    if pvc.metadata.deletion_timestamp.is_some() && !started {
        return Err(format!("persistentvolumeclaim \"{claim}\" is being deleted"));
    }
    let volume = pvc.spec.as_ref().and_then(|s| s.volume_name.clone()).filter(|v| !v.is_empty());
    let phase = pvc.status.as_ref().and_then(|s| s.phase.clone()).unwrap_or_default();
    let Some(volume) = volume.filter(|_| phase == "Bound") else {
        return Err(format!("persistentvolumeclaim \"{claim}\" is not bound (phase {phase:?})"));
    };
    let pv = Api::<PersistentVolume>::all(shared.client.clone())
        .get_opt(&volume)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("persistentvolume \"{volume}\" of claim \"{claim}\" not found"))?;
    let spec = pv.spec.unwrap_or_default();
    spec.host_path
        .map(|h| h.path)
        .or(spec.local.map(|l| l.path))
        .ok_or_else(|| format!("persistentvolume \"{volume}\" is neither hostPath nor local; no plugin mounts it here"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    #[test]
    fn restarts_back_off_10s_doubling_to_5_minutes_and_reset_after_10_minutes_of_running() {
        let mut b = Backoff::default();
        let mut delays = Vec::new();
        let mut t = 1_000;
        for _ in 0..7 {
            // Exits at once; waits out whatever the back-off asks, then restarts.
            let wait = b.restart(Some(at(t)), Some(at(t)), at(t)).map_or(0, |d| d.as_secs());
            delays.push(wait);
            t += wait as i64;
            assert_eq!(b.restart(Some(at(t - wait as i64)), Some(at(t - wait as i64)), at(t)), None);
        }
        assert_eq!(delays, [10, 20, 40, 80, 160, 300, 300]);
        // Ten minutes of clean running: the next restart waits 10 s again.
        assert_eq!(b.restart(Some(at(t)), Some(at(t + 600)), at(t + 600)), Some(Duration::from_secs(10)));
    }
}

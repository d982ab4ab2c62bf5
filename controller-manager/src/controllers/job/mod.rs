//! The Job controller: runs a Job's pods to `completions` (each completion index once for
//! Indexed Jobs), `parallelism` at a time, replacing failed pods after a back-off (10 s doubling
//! to 6 minutes) until `backoffLimit`; fails the Job past that, past `activeDeadlineSeconds` or on
//! a podFailurePolicy `FailJob` rule; suspends and resumes it; and deletes a finished Job once
//! its `ttlSecondsAfterFinished` has passed (upstream's ttl-after-finished controller).
//!
//! Simplified against upstream: counts come from the pods that exist, kept from going down by
//! the counts already in status (upstream tracks each pod with a finalizer, so a failed pod
//! deleted before it was seen still counts); the interim `FailureTarget` and
//! `SuccessCriteriaMet` conditions are not written.

pub mod plan;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use daemon::events::{Recorder, Type};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::{EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, PostParams, Preconditions};

use crate::controller::{Controller, Reconcile};
use crate::controllers::owned;
use crate::expectations::Expectations;
use crate::informers::{self, Change, Informer};
use crate::pods::{self, key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::Verdict;

pub const NAME: &str = "job-controller";
const WORKERS: usize = 5;
const WRITES_IN_FLIGHT: usize = 32;

pub fn new(ctx: &Context) -> Controller {
    let jobs = ctx.informers.get::<Job>();
    let pods = ctx.informers.get::<Pod>();
    let queue = Arc::new(Queue::new());
    let expectations = Arc::new(Expectations::default());
    {
        let queue = queue.clone();
        jobs.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let (jobs, queue, expectations) = (jobs.clone(), queue.clone(), expectations.clone());
        pods.on_change(move |change| {
            let pod = change.object();
            let Some(job) = owned::owner(&jobs, pod) else { return };
            let k = key(&job.metadata);
            let uid = pod.metadata.uid.as_deref().unwrap_or("");
            match change {
                Change::Applied { old: None, new } if new.metadata.deletion_timestamp.is_none() => {
                    expectations.creation_observed(&k);
                }
                Change::Applied { new, .. } if new.metadata.deletion_timestamp.is_some() => {
                    expectations.deletion_observed(&k, uid);
                }
                Change::Deleted(_) => expectations.deletion_observed(&k, uid),
                Change::Applied { .. } => {}
            }
            queue.add(k);
        });
    }
    let synced = informers::all_synced([jobs.until_synced(), pods.until_synced()]);
    let reconciler = Jobs { client: ctx.client.clone(), recorder: ctx.recorder.clone(), jobs, pods, expectations };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

fn finished(job: &Job) -> Option<Timestamp> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

struct Jobs {
    client: kube::Client,
    recorder: Arc<Recorder>,
    jobs: Informer<Job>,
    pods: Informer<Pod>,
    expectations: Arc<Expectations>,
}

impl Reconcile for Jobs {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

impl Jobs {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(job) = self.jobs.get(ns, name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let now = Timestamp::now();
        let api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        if let Some(at) = finished(&job) {
            return self.after_finish(&job, &api, at, now).await;
        }
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let uid = job.metadata.uid.as_deref().unwrap_or("");
        let owned: Vec<Arc<Pod>> = self
            .pods
            .list(ns)
            .into_iter()
            .filter(|p| pods::controller_of(&p.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let spec = job.spec.clone().unwrap_or_default();
        let counts = plan::count(&job, &owned);
        let suspended = spec.suspend == Some(true);
        let mut status = job.status.clone().unwrap_or_default();
        let mut again = None;
        if status.start_time.is_none() && !suspended {
            status.start_time = Some(Time(now));
        }
        let mut probe = (*job).clone();
        probe.status = Some(status.clone());
        match plan::verdict(&probe, &counts, now) {
            Verdict::Failed { reason, message } => {
                self.delete_pods(&job, key, &counts.active).await?;
                self.recorder.object(&*job, Type::Warning, reason, message.clone());
                status.conditions.get_or_insert_with(Vec::new).push(condition("Failed", reason, &message, now));
            }
            Verdict::Complete => {
                self.recorder.object(&*job, Type::Normal, "Completed", "Job completed".into());
                status.conditions.get_or_insert_with(Vec::new).push(condition("Complete", "", "", now));
                status.completion_time = Some(Time(now));
            }
            Verdict::Running if suspended => {
                self.delete_pods(&job, key, &counts.active).await?;
            }
            Verdict::Running => {
                again = self.run_pods(&job, key, &counts, now).await?;
                if let (Some(deadline), Some(started)) = (spec.active_deadline_seconds, status.start_time.as_ref()) {
                    let end = started.0 + SignedDuration::from_secs(deadline);
                    let left =
                        Duration::try_from(end.duration_since(now)).unwrap_or_default() + Duration::from_millis(100);
                    again = Some(again.map_or(left, |a: Duration| a.min(left)));
                }
            }
        }
        self.set_suspended(&mut status, suspended, now);
        status.active = Some(i32::try_from(counts.active.len()).unwrap_or(i32::MAX)).filter(|n| *n > 0);
        status.ready = Some(counts.ready);
        status.succeeded = Some(counts.succeeded).filter(|n| *n > 0);
        status.failed = Some(counts.failed).filter(|n| *n > 0);
        status.terminating = Some(counts.terminating);
        if plan::is_indexed(&spec) {
            status.completed_indexes = Some(plan::format_indexes(&counts.completed));
        }
        if job.status.as_ref() != Some(&status) {
            let mut updated = (*job).clone();
            updated.status = Some(status);
            api.replace_status(name, &PostParams::default(), &updated).await?;
        }
        Ok(again)
    }

    fn set_suspended(&self, status: &mut JobStatus, suspended: bool, now: Timestamp) {
        let conditions = status.conditions.get_or_insert_with(Vec::new);
        let current = conditions.iter().position(|c| c.type_ == "Suspended");
        match (suspended, current) {
            (true, None) => conditions.push(condition("Suspended", "JobSuspended", "Job suspended", now)),
            (false, Some(i)) if conditions[i].status == "True" => {
                conditions[i] = JobCondition {
                    status: "False".into(),
                    reason: Some("JobResumed".into()),
                    message: Some("Job resumed".into()),
                    last_transition_time: Some(Time(now)),
                    last_probe_time: Some(Time(now)),
                    type_: "Suspended".into(),
                };
                status.start_time = Some(Time(now));
            }
            (true, Some(i)) if conditions[i].status != "True" => {
                conditions[i] = condition("Suspended", "JobSuspended", "Job suspended", now);
            }
            _ => {}
        }
        if conditions.is_empty() {
            status.conditions = None;
        }
    }

    /// Starts the pods the Job needs now, unless it is backing off from a failure.
    async fn run_pods(
        &self,
        job: &Job,
        key: &str,
        counts: &plan::Counts,
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        if !self.expectations.satisfied(key) {
            return Ok(None);
        }
        let spec = job.spec.clone().unwrap_or_default();
        let wanted = plan::to_create(&spec, counts);
        if wanted.is_empty() {
            return Ok(None);
        }
        if let Some(failed_at) = counts.last_failure {
            let ready_at = failed_at + SignedDuration::try_from(plan::backoff(counts.failed)).unwrap_or_default();
            if ready_at > now {
                return Ok(Some(Duration::try_from(ready_at.duration_since(now)).unwrap_or_default()));
            }
        }
        let (ns, name) = split_key(key);
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        self.expectations.expect_creations(key, wanted.len());
        let pods: Vec<Pod> = wanted.iter().map(|index| self.pod(job, name, ns, *index)).collect();
        let params = PostParams::default();
        let results: Vec<_> = futures::stream::iter(pods.iter().cloned())
            .map(|p: Pod| {
                let (api, params) = (api.clone(), params.clone());
                async move { api.create(&params, &p).await }
            })
            .buffer_unordered(WRITES_IN_FLIGHT)
            .collect()
            .await;
        let mut first = None;
        let mut failed = 0;
        for result in results {
            match result {
                Ok(p) => self.recorder.object(
                    job,
                    Type::Normal,
                    "SuccessfulCreate",
                    format!("Created pod: {}", p.metadata.name.as_deref().unwrap_or("")),
                ),
                Err(e) => {
                    self.expectations.creation_observed(key);
                    failed += 1;
                    if first.is_none() {
                        self.recorder.object(job, Type::Warning, "FailedCreate", format!("Error creating: {e}"));
                        first = Some(e);
                    }
                }
            }
        }
        match first {
            Some(first) => Err(Error::Partial { what: "pod creates", attempted: pods.len(), failed, first }),
            None => Ok(None),
        }
    }

    /// A pod of the Job: its template, the Job's labels, and for an Indexed Job its index.
    fn pod(&self, job: &Job, name: &str, ns: &str, index: Option<i32>) -> Pod {
        let spec = job.spec.clone().unwrap_or_default();
        let prefix = match index {
            Some(i) => format!("{name}-{i}-"),
            None => format!("{name}-"),
        };
        let mut pod = pods::from_template(&spec.template, ns, &prefix, pods::controller_reference(job));
        let uid = job.metadata.uid.clone().unwrap_or_default();
        let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name.to_string()),
            ("controller-uid", &uid),
            ("job-name", &name.to_string()),
        ] {
            labels.entry(k.to_string()).or_insert_with(|| v.clone());
        }
        if let Some(i) = index {
            labels.insert(plan::INDEX_ANNOTATION.into(), i.to_string());
            pod.metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(plan::INDEX_ANNOTATION.into(), i.to_string());
            if let Some(pod_spec) = pod.spec.as_mut() {
                pod_spec.hostname.get_or_insert_with(|| format!("{name}-{i}"));
                for c in pod_spec.containers.iter_mut().chain(pod_spec.init_containers.iter_mut().flatten()) {
                    c.env.get_or_insert_with(Vec::new).push(EnvVar {
                        name: "JOB_COMPLETION_INDEX".into(),
                        value: None,
                        value_from: Some(EnvVarSource {
                            field_ref: Some(ObjectFieldSelector {
                                field_path: format!("metadata.annotations['{}']", plan::INDEX_ANNOTATION),
                                api_version: None,
                            }),
                            ..Default::default()
                        }),
                    });
                }
            }
        }
        pod
    }

    async fn delete_pods(&self, job: &Job, key: &str, victims: &[Arc<Pod>]) -> Result<(), Error> {
        if victims.is_empty() {
            return Ok(());
        }
        let api: Api<Pod> = Api::namespaced(self.client.clone(), split_key(key).0);
        self.expectations.expect_deletions(key, victims.iter().filter_map(|p| p.metadata.uid.clone()));
        for pod in victims {
            let params = DeleteParams {
                preconditions: Some(Preconditions { uid: pod.metadata.uid.clone(), resource_version: None }),
                ..Default::default()
            };
            let pod_name = pod.metadata.name.as_deref().unwrap_or("");
            match api.delete(pod_name, &params).await {
                Ok(_) => {
                    self.recorder.object(job, Type::Normal, "SuccessfulDelete", format!("Deleted pod: {pod_name}"))
                }
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {
                    self.expectations.deletion_observed(key, pod.metadata.uid.as_deref().unwrap_or(""));
                }
                Err(e) => {
                    self.expectations.deletion_observed(key, pod.metadata.uid.as_deref().unwrap_or(""));
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    /// A finished Job waits out its `ttlSecondsAfterFinished`, then goes (with its pods).
    async fn after_finish(
        &self,
        job: &Job,
        api: &Api<Job>,
        at: Timestamp,
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        let Some(ttl) = job.spec.as_ref().and_then(|s| s.ttl_seconds_after_finished) else { return Ok(None) };
        if job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let expires = at + SignedDuration::from_secs(i64::from(ttl));
        if expires > now {
            return Ok(Some(
                Duration::try_from(expires.duration_since(now)).unwrap_or_default() + Duration::from_millis(100),
            ));
        }
        let params = DeleteParams {
            propagation_policy: Some(kube::api::PropagationPolicy::Background),
            preconditions: Some(Preconditions { uid: job.metadata.uid.clone(), resource_version: None }),
            ..Default::default()
        };
        match api.delete(job.metadata.name.as_deref().unwrap_or(""), &params).await {
            Ok(_) => tracing::info!(job = %key(&job.metadata), ttl, "deleted: finished and past its TTL"),
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => return Err(e.into()),
        }
        Ok(None)
    }
}

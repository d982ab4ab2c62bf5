//! The CronJob controller: starts a Job for each scheduled time (five-field cron or `@hourly`
//! style, in `spec.timeZone`, a `TZ=` prefix, or this process's zone as upstream), honouring
//! `concurrencyPolicy` (Allow, Forbid, Replace), `startingDeadlineSeconds` and `suspend`; keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`; trims finished Jobs to the
//! history limits; and looks again when the next run is due.

pub mod plan;

use std::sync::Arc;
use std::time::Duration;

use api_types::cron::Schedule;
use daemon::events::{Recorder, Type};
use futures::FutureExt;
use futures::future::BoxFuture;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::jiff::tz::TimeZone;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};

use crate::controller::{Controller, Reconcile};
use crate::informers::{self, Informer};
use crate::pods::{self, key, split_key};
use crate::queue::Queue;
use crate::{Context, Error};
use plan::Start;

pub const NAME: &str = "cronjob-controller";
const WORKERS: usize = 5;
pub const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";

pub fn new(ctx: &Context) -> Controller {
    let cron_jobs = ctx.informers.get::<CronJob>();
    let jobs = ctx.informers.get::<Job>();
    let queue = Arc::new(Queue::new());
    {
        let queue = queue.clone();
        cron_jobs.on_change(move |change| queue.add(key(&change.object().metadata)));
    }
    {
        let queue = queue.clone();
        jobs.on_change(move |change| {
            let job = change.object();
            if let Some(r) = pods::controller_of(&job.metadata).filter(|r| r.kind == "CronJob") {
                queue.add(format!("{}/{}", job.metadata.namespace.as_deref().unwrap_or(""), r.name));
            }
        });
    }
    let synced = informers::all_synced([cron_jobs.until_synced(), jobs.until_synced()]);
    let reconciler = CronJobs { client: ctx.client.clone(), recorder: ctx.recorder.clone(), cron_jobs, jobs };
    Controller { name: NAME, queue, workers: WORKERS, reconciler: Arc::new(reconciler), synced }
}

struct CronJobs {
    client: kube::Client,
    recorder: Arc<Recorder>,
    cron_jobs: Informer<CronJob>,
    jobs: Informer<Job>,
}

impl Reconcile for CronJobs {
    fn reconcile<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<Duration>, Error>> {
        self.sync(key).boxed()
    }
}

fn reference(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

fn until(t: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(t.duration_since(now)).unwrap_or_default() + Duration::from_millis(100)
}

impl CronJobs {
    async fn sync(&self, key: &str) -> Result<Option<Duration>, Error> {
        let (ns, name) = split_key(key);
        let Some(cron_job) = self.cron_jobs.get(ns, name) else { return Ok(None) };
        if cron_job.metadata.deletion_timestamp.is_some() {
            return Ok(None);
        }
        let spec = cron_job.spec.clone().unwrap_or_default();
        let uid = cron_job.metadata.uid.as_deref().unwrap_or("");
        let jobs_api: Api<Job> = Api::namespaced(self.client.clone(), ns);
        let owned: Vec<Arc<Job>> = self
            .jobs
            .list(ns)
            .into_iter()
            .filter(|j| pods::controller_of(&j.metadata).is_some_and(|r| r.uid == uid))
            .collect();
        let mut active: Vec<Arc<Job>> = owned.iter().filter(|j| plan::outcome(j).is_none()).cloned().collect();
        let mut status = cron_job.status.clone().unwrap_or_default();
        let last_success = owned
            .iter()
            .filter(|j| plan::outcome(j) == Some("Complete"))
            .filter_map(|j| j.status.as_ref()?.completion_time.clone())
            .max_by_key(|t| t.0);
        if last_success.is_some() {
            status.last_successful_time = last_success;
        }
        let doomed = plan::history_to_delete(
            &owned,
            spec.successful_jobs_history_limit.unwrap_or(3),
            spec.failed_jobs_history_limit.unwrap_or(1),
        );
        for job in doomed {
            self.delete_job(&jobs_api, &cron_job, &job).await?;
        }

        let now = Timestamp::now();
        let mut again = None;
        if spec.suspend != Some(true) {
            again = self.schedule(&cron_job, &jobs_api, &mut status, &mut active, now).await?;
        }
        status.active = (!active.is_empty()).then(|| active.iter().map(|j| reference(j)).collect());
        if cron_job.status.as_ref() != Some(&status) {
            let mut updated = (*cron_job).clone();
            updated.status = Some(status);
            Api::<CronJob>::namespaced(self.client.clone(), ns)
                .replace_status(name, &PostParams::default(), &updated)
                .await?;
        }
        Ok(again)
    }

    /// Starts the Job of the due run, if any; returns when the next run is.
    async fn schedule(
        &self,
        cron_job: &CronJob,
        jobs_api: &Api<Job>,
        status: &mut k8s_openapi::api::batch::v1::CronJobStatus,
        active: &mut Vec<Arc<Job>>,
        now: Timestamp,
    ) -> Result<Option<Duration>, Error> {
        let spec = cron_job.spec.clone().unwrap_or_default();
        let name = cron_job.metadata.name.as_deref().unwrap_or("");
        let schedule = match Schedule::parse(&spec.schedule) {
            Ok(s) => s,
            Err(e) => {
                self.recorder.object(
                    cron_job,
                    Type::Warning,
                    "InvalidSchedule",
                    format!("invalid schedule: {}: {e}", spec.schedule),
                );
                return Ok(None);
            }
        };
        let zone = spec.time_zone.clone().or_else(|| schedule.zone.clone());
        let tz = match zone.as_deref() {
            None => TimeZone::system(),
            Some(z) => match TimeZone::get(z) {
                Ok(tz) => tz,
                Err(e) => {
                    self.recorder.object(
                        cron_job,
                        Type::Warning,
                        "UnknownTimeZone",
                        format!("invalid timeZone: {z:?}: {e}"),
                    );
                    return Ok(None);
                }
            },
        };
        let since =
            status.last_schedule_time.as_ref().or(cron_job.metadata.creation_timestamp.as_ref()).map_or(now, |t| t.0);
        let next = schedule.next_after(now, &tz).map(|t| until(t, now));
        let Some((scheduled, missed)) = plan::most_recent(&schedule, &tz, since, now) else { return Ok(next) };
        if missed > plan::TOO_MANY_MISSED {
            self.recorder.object(
                cron_job,
                Type::Warning,
                "TooManyMissedTimes",
                format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew"),
            );
        }
        let policy = spec.concurrency_policy.as_deref().unwrap_or("Allow");
        match plan::start(policy, spec.starting_deadline_seconds, scheduled, active.len(), now) {
            Start::Missed => {
                self.recorder.object(
                    cron_job,
                    Type::Warning,
                    "MissSchedule",
                    format!("Missed scheduled time to start a job: {scheduled}"),
                );
                status.last_schedule_time = Some(Time(scheduled));
                return Ok(next);
            }
            Start::Forbidden => {
                tracing::debug!(cronjob = %key(&cron_job.metadata), "a job is still running; waiting (Forbid)");
                return Ok(next);
            }
            Start::Now { replace } => {
                if replace {
                    for job in active.drain(..) {
                        self.delete_job(jobs_api, cron_job, &job).await?;
                    }
                }
            }
        }
        let template = spec.job_template.clone();
        let meta = template.metadata.clone().unwrap_or_default();
        let mut annotations = meta.annotations.unwrap_or_default();
        annotations.insert(SCHEDULED_ANNOTATION.into(), scheduled.to_string());
        let job = Job {
            metadata: ObjectMeta {
                name: Some(plan::job_name(name, scheduled)),
                namespace: cron_job.metadata.namespace.clone(),
                labels: meta.labels,
                annotations: Some(annotations),
                owner_references: Some(vec![pods::controller_reference(cron_job)]),
                ..Default::default()
            },
            spec: template.spec,
            status: None,
        };
        match jobs_api.create(&PostParams::default(), &job).await {
            Ok(created) => {
                let job_name = created.metadata.name.clone().unwrap_or_default();
                self.recorder.object(cron_job, Type::Normal, "SuccessfulCreate", format!("Created job {job_name}"));
                tracing::info!(cronjob = %key(&cron_job.metadata), job = job_name, %scheduled, "started");
                active.push(Arc::new(created));
            }
            // Made on an earlier pass whose status write failed: it is the same run.
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                self.recorder.object(cron_job, Type::Warning, "FailedCreate", format!("Error creating job: {e}"));
                return Err(e.into());
            }
        }
        status.last_schedule_time = Some(Time(scheduled));
        Ok(next)
    }

    async fn delete_job(&self, api: &Api<Job>, cron_job: &CronJob, job: &Job) -> Result<(), Error> {
        let name = job.metadata.name.as_deref().unwrap_or("");
        match api
            .delete(
                name,
                &DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() },
            )
            .await
        {
            Ok(_) => {
                self.recorder.object(cron_job, Type::Normal, "SuccessfulDelete", format!("Deleted job {name}"));
                Ok(())
            }
            Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

//! Jobs and CronJobs through rk-controller-manager against a real API server on real etcd. No
//! kubelets: the tests finish pods through the API (`status.phase`), as a kubelet would.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use integration_tests::{Cluster, ControllerManager, eventually};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn job(name: &str, spec: serde_json::Value) -> Result<Job> {
    let mut full =
        json!({"template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}});
    if let (Some(f), Some(s)) = (full.as_object_mut(), spec.as_object()) {
        f.extend(s.clone());
    }
    Ok(serde_json::from_value(json!({"metadata": {"name": name}, "spec": full}))?)
}

/// The pods of Job `name` that are neither finished nor being deleted.
async fn running(pods: &Api<Pod>, name: &str) -> Result<Vec<Pod>> {
    let list = pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}"))).await?.items;
    Ok(list
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter(|p| !matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded" | "Failed")))
        .collect())
}

/// Ends a pod the way its kubelet would report it: Succeeded, or Failed with `exit`.
async fn finish(pods: &Api<Pod>, pod: &Pod, exit: i32) -> Result<()> {
    let phase = if exit == 0 { "Succeeded" } else { "Failed" };
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let status = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "c", "image": "busybox", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit, "startedAt": now, "finishedAt": now}},
    }]}});
    pods.patch_status(pod.metadata.name.as_deref().unwrap_or(""), &PatchParams::default(), &Patch::Merge(&status))
        .await?;
    Ok(())
}

/// The type and reason of the Job's finishing condition, once it has one.
async fn finished(jobs: &Api<Job>, name: &str) -> Result<(String, Option<String>)> {
    eventually(30, &format!("job {name} finished"), || async {
        let job = jobs.get(name).await?;
        let conditions = job.status.and_then(|s| s.conditions).unwrap_or_default();
        Ok(conditions
            .into_iter()
            .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
            .map(|c| (c.type_, c.reason)))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_run_to_completion_in_parallel_and_fail_by_limit_deadline_or_policy() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pp = PostParams::default();

    // Three completions, two at a time; deleted a second after it finishes.
    jobs.create(&pp, &job("three", json!({"completions": 3, "parallelism": 2, "ttlSecondsAfterFinished": 1}))?).await?;
    let mut done = 0;
    while done < 3 {
        let now = eventually(30, "a running pod of three", || async {
            let r = running(&pods, "three").await?;
            Ok((!r.is_empty()).then_some(r))
        })
        .await?;
        assert!(now.len() <= 2, "parallelism 2, saw {}", now.len());
        finish(&pods, &now[0], 0).await?;
        done += 1;
    }
    // Read in the same look as the condition: a second later the Job may be gone.
    let status = eventually(30, "three complete", || async {
        let status = jobs.get("three").await?.status.unwrap_or_default();
        let complete = status.conditions.iter().flatten().any(|c| c.type_ == "Complete" && c.status == "True");
        Ok(complete.then_some(status))
    })
    .await?;
    assert_eq!((status.succeeded, status.completion_time.is_some()), (Some(3), true));
    eventually(30, "three deleted after its TTL, pods with it", || async {
        let pods_left =
            pods.list(&ListParams::default().labels("batch.kubernetes.io/job-name=three")).await?.items.len();
        Ok((jobs.get_opt("three").await?.is_none() && pods_left == 0).then_some(()))
    })
    .await?;

    // Indexed: one pod per index, told its index.
    jobs.create(&pp, &job("indexed", json!({"completions": 2, "parallelism": 2, "completionMode": "Indexed"}))?)
        .await?;
    let both = eventually(30, "both indexes running", || async {
        let r = running(&pods, "indexed").await?;
        Ok((r.len() == 2).then_some(r))
    })
    .await?;
    let indexes: BTreeSet<String> = both
        .iter()
        .filter_map(|p| p.metadata.annotations.as_ref()?.get("batch.kubernetes.io/job-completion-index").cloned())
        .collect();
    assert_eq!(indexes, BTreeSet::from(["0".to_string(), "1".to_string()]));
    let env = both[0].spec.as_ref().map(|s| s.containers[0].env.clone().unwrap_or_default()).unwrap_or_default();
    assert!(env.iter().any(|e| e.name == "JOB_COMPLETION_INDEX"));
    for p in &both {
        finish(&pods, p, 0).await?;
    }
    assert_eq!(finished(&jobs, "indexed").await?.0, "Complete");
    assert_eq!(jobs.get("indexed").await?.status.and_then(|s| s.completed_indexes).as_deref(), Some("0-1"));

    // No retries left: the first failure fails the Job.
    jobs.create(&pp, &job("fragile", json!({"backoffLimit": 0}))?).await?;
    let pod = eventually(30, "fragile's pod", || async { Ok(running(&pods, "fragile").await?.pop()) }).await?;
    finish(&pods, &pod, 1).await?;
    assert_eq!(finished(&jobs, "fragile").await?, ("Failed".to_string(), Some("BackoffLimitExceeded".to_string())));

    // A FailJob rule fails it at once, retries or not.
    let policy = json!({"backoffLimit": 5, "podFailurePolicy": {"rules": [
        {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [3]}},
    ]}});
    jobs.create(&pp, &job("picky", policy)?).await?;
    let pod = eventually(30, "picky's pod", || async { Ok(running(&pods, "picky").await?.pop()) }).await?;
    finish(&pods, &pod, 3).await?;
    assert_eq!(finished(&jobs, "picky").await?, ("Failed".to_string(), Some("PodFailurePolicy".to_string())));

    // Past its deadline, the Job fails and its pods go.
    jobs.create(&pp, &job("slow", json!({"activeDeadlineSeconds": 2}))?).await?;
    assert_eq!(finished(&jobs, "slow").await?, ("Failed".to_string(), Some("DeadlineExceeded".to_string())));
    eventually(30, "slow's pods gone", || async { Ok(running(&pods, "slow").await?.is_empty().then_some(())) }).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_backoff_limit_1_retries_once_after_its_back_off_then_fails() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job("retry", json!({"backoffLimit": 1}))?).await?;
    let first = eventually(30, "retry's first pod", || async { Ok(running(&pods, "retry").await?.pop()) }).await?;
    finish(&pods, &first, 1).await?;
    let failed_at = std::time::Instant::now();
    // The replacement waits out the first back-off (10 s).
    let second = eventually(30, "retry's second pod", || async { Ok(running(&pods, "retry").await?.pop()) }).await?;
    let waited = failed_at.elapsed();
    assert!(waited >= Duration::from_secs(8), "replaced after {waited:?}");
    assert_ne!(second.metadata.name, first.metadata.name);
    assert_eq!(jobs.get("retry").await?.status.and_then(|s| s.failed), Some(1));
    finish(&pods, &second, 1).await?;
    assert_eq!(finished(&jobs, "retry").await?, ("Failed".to_string(), Some("BackoffLimitExceeded".to_string())));
    let all = pods.list(&ListParams::default().labels("batch.kubernetes.io/job-name=retry")).await?.items;
    assert_eq!(all.len(), 2, "two pods in all: the first try and one retry");
    assert_eq!(jobs.get("retry").await?.status.and_then(|s| s.failed), Some(2));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cron_job_fires_on_schedule_forbids_overlap_and_keeps_its_history() -> Result<()> {
    let c = Cluster::start().await?;
    let client = c.client().await?;
    let _cm = ControllerManager::start(controller_manager::Config::for_kubeconfig(c.api.kubeconfig.clone()));
    let cron_jobs: Api<CronJob> = Api::namespaced(client.clone(), "default");
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let cron_job: CronJob = serde_json::from_value(json!({
        "metadata": {"name": "tick"},
        "spec": {
            "schedule": "@every 2s", "concurrencyPolicy": "Forbid", "successfulJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"run": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox"}]}}}},
        },
    }))?;
    cron_jobs.create(&PostParams::default(), &cron_job).await?;
    let owned = |jobs: Vec<Job>| -> Vec<Job> {
        jobs.into_iter().filter(|j| j.metadata.name.as_deref().is_some_and(|n| n.starts_with("tick-"))).collect()
    };

    let first =
        eventually(30, "the first run", || async { Ok(owned(jobs.list(&ListParams::default()).await?.items).pop()) })
            .await?;
    let first_name = first.metadata.name.clone().unwrap_or_default();
    assert_eq!(first.metadata.labels.and_then(|l| l.get("run").cloned()).as_deref(), Some("tick"));
    assert!(
        first.metadata.annotations.is_some_and(|a| a.contains_key("batch.kubernetes.io/cronjob-scheduled-timestamp"))
    );
    let active = eventually(30, "status.active lists it", || async {
        Ok(cron_jobs.get("tick").await?.status.and_then(|s| s.active).filter(|a| !a.is_empty()))
    })
    .await?;
    assert_eq!(active[0].name.as_deref(), Some(first_name.as_str()));
    // Forbid: while the first runs, through two more scheduled times, nothing else starts.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(owned(jobs.list(&ListParams::default()).await?.items).len(), 1);

    // The first finishes; the next run starts, and only one finished Job is kept.
    let pod = eventually(30, "the first run's pod", || async { Ok(running(&pods, &first_name).await?.pop()) }).await?;
    finish(&pods, &pod, 0).await?;
    let second = eventually(30, "a second run", || async {
        Ok(owned(jobs.list(&ListParams::default()).await?.items)
            .into_iter()
            .find(|j| j.metadata.name.as_deref() != Some(first_name.as_str())))
    })
    .await?;
    let second_name = second.metadata.name.clone().unwrap_or_default();
    let pod =
        eventually(30, "the second run's pod", || async { Ok(running(&pods, &second_name).await?.pop()) }).await?;
    finish(&pods, &pod, 0).await?;
    eventually(30, "the first run trimmed from history", || async {
        Ok(jobs.get_opt(&first_name).await?.is_none().then_some(()))
    })
    .await?;
    let status = cron_jobs.get("tick").await?.status.unwrap_or_default();
    assert!(status.last_schedule_time.is_some() && status.last_successful_time.is_some());

    // Suspended, it starts nothing more.
    cron_jobs.patch("tick", &PatchParams::default(), &Patch::Merge(json!({"spec": {"suspend": true}}))).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before: BTreeSet<String> =
        owned(jobs.list(&ListParams::default()).await?.items).into_iter().filter_map(|j| j.metadata.name).collect();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let after: BTreeSet<String> =
        owned(jobs.list(&ListParams::default()).await?.items).into_iter().filter_map(|j| j.metadata.name).collect();
    assert!(after.is_subset(&before), "{before:?} → {after:?}");
    Ok(())
}

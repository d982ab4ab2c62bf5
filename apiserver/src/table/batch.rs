//! Jobs and CronJobs.

use api_types::k8s_openapi::api::batch::v1::{CronJob, Job, JobCondition};
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, NONE, UNSET};
use super::{AGE, Column, NAME, Printer, decode};

const CONTAINERS: Column = Column::string("Containers", "Names of the pod template's containers.").wide();
const IMAGES: Column = Column::string("Images", "Images of the pod template's containers.").wide();
const SELECTOR: Column = Column::string("Selector", "The labels of the job's pods.").wide();

pub(super) static JOB: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Status", "Where the job is: Running, Complete, Failed, Suspended..."),
        Column::string("Completions", "Succeeded pods out of the completions wanted."),
        Column::string("Duration", "How long the job ran, or has been running."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: job_cells,
};

fn job_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let job: Job = decode(object)?;
    let spec = job.spec.unwrap_or_default();
    let status = job.status.unwrap_or_default();
    let succeeded = status.succeeded.unwrap_or(0);
    let completions = match (spec.completions, spec.parallelism.unwrap_or(0)) {
        (Some(completions), _) => format!("{succeeded}/{completions}"),
        (None, parallelism) if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        (None, _) => format!("{succeeded}/1"),
    };
    let duration = match (&status.start_time, &status.completion_time) {
        (None, _) => String::new(),
        (Some(start), None) => format::elapsed(start.0, now),
        (Some(start), Some(end)) => format::elapsed(start.0, end.0),
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let (containers, images) = format::containers(Some(&spec.template));
    Ok(vec![
        format::name(&job.metadata).into(),
        job_status(conditions, job.metadata.deletion_timestamp.is_some()).into(),
        completions.into(),
        duration.into(),
        format::age(&job.metadata, now).into(),
        containers.into(),
        images.into(),
        format::selector(spec.selector.as_ref()).into(),
    ])
}

/// The first of these that holds: Complete, Failed, Terminating (being deleted), Suspended,
/// FailureTarget, SuccessCriteriaMet; else Running.
fn job_status(conditions: &[JobCondition], deleting: bool) -> &'static str {
    let holds = |type_: &str| conditions.iter().any(|c| c.type_ == type_ && c.status == "True");
    if holds("Complete") {
        "Complete"
    } else if holds("Failed") {
        "Failed"
    } else if deleting {
        "Terminating"
    } else if holds("Suspended") {
        "Suspended"
    } else if holds("FailureTarget") {
        "FailureTarget"
    } else if holds("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

pub(super) static CRON_JOB: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Schedule", "When jobs are created, in cron syntax."),
        Column::string("Timezone", "The time zone of the schedule."),
        Column::boolean("Suspend", "Whether new jobs are held back."),
        Column::integer("Active", "Jobs running now."),
        Column::string("Last Schedule", "How long ago a job was last scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        SELECTOR,
    ],
    cells: cron_job_cells,
};

fn cron_job_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let cron: CronJob = decode(object)?;
    let spec = cron.spec.unwrap_or_default();
    let status = cron.status.unwrap_or_default();
    let last = status.last_schedule_time.as_ref().map_or_else(|| NONE.to_string(), |t| format::since(Some(t), now));
    let suspend = match spec.suspend {
        Some(true) => "True",
        Some(false) => "False",
        None => UNSET,
    };
    let job_spec = spec.job_template.spec.unwrap_or_default();
    let (containers, images) = format::containers(Some(&job_spec.template));
    Ok(vec![
        format::name(&cron.metadata).into(),
        spec.schedule.into(),
        spec.time_zone.unwrap_or_else(|| NONE.to_string()).into(),
        suspend.into(),
        status.active.map_or(0, |a| a.len()).into(),
        last.into(),
        format::age(&cron.metadata, now).into(),
        containers.into(),
        images.into(),
        format::selector_or_none(job_spec.selector.as_ref()).into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    fn job(spec: Value, status: Value) -> Value {
        let mut spec = spec;
        spec["template"] =
            json!({"spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl:5"}]}});
        json!({"metadata": {"name": "pi", "creationTimestamp": ago(300)}, "spec": spec, "status": status})
    }

    #[test]
    fn prints_a_completed_job() {
        assert_eq!(
            headers(&JOB),
            ["Name", "Status", "Completions", "Duration", "Age", "+Containers", "+Images", "+Selector"]
        );
        let object = job(
            json!({"completions": 1, "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}}}),
            json!({"succeeded": 1, "startTime": ago(290), "completionTime": ago(250),
                   "conditions": [{"type": "SuccessCriteriaMet", "status": "True"}, {"type": "Complete", "status": "True"}]}),
        );
        assert_eq!(
            cells(&JOB, &object),
            [
                json!("pi"),
                json!("Complete"),
                json!("1/1"),
                json!("40s"),
                json!("5m"),
                json!("pi"),
                json!("perl:5"),
                json!("batch.kubernetes.io/controller-uid=u1")
            ]
        );
    }

    #[test]
    fn summarizes_job_status_and_completions() {
        let cases = [
            (
                json!({"completions": 3}),
                json!({"succeeded": 1, "startTime": ago(130)}),
                false,
                ["Running", "1/3", "2m10s"],
            ),
            (json!({"parallelism": 4}), json!({}), false, ["Running", "0/1 of 4", ""]),
            (json!({}), json!({"conditions": [{"type": "Failed", "status": "True"}]}), false, ["Failed", "0/1", ""]),
            (
                json!({"completions": 1, "suspend": true}),
                json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                false,
                ["Suspended", "0/1", ""],
            ),
            (
                json!({"completions": 1}),
                json!({"conditions": [{"type": "Suspended", "status": "False"}]}),
                false,
                ["Running", "0/1", ""],
            ),
            (
                json!({"completions": 1}),
                json!({"conditions": [{"type": "FailureTarget", "status": "True"}]}),
                false,
                ["FailureTarget", "0/1", ""],
            ),
            (
                json!({"completions": 1}),
                json!({"conditions": [{"type": "Suspended", "status": "True"}]}),
                true,
                ["Terminating", "0/1", ""],
            ),
        ];
        for (spec, status, deleting, want) in cases {
            let mut object = job(spec.clone(), status.clone());
            if deleting {
                object["metadata"]["deletionTimestamp"] = json!(ago(1));
            }
            let row = cells(&JOB, &object);
            assert_eq!(row[1..4], want.map(Value::from), "{spec} {status}");
        }
    }

    #[test]
    fn prints_a_cron_job() {
        assert_eq!(
            headers(&CRON_JOB),
            [
                "Name",
                "Schedule",
                "Timezone",
                "Suspend",
                "Active",
                "Last Schedule",
                "Age",
                "+Containers",
                "+Images",
                "+Selector"
            ]
        );
        let object = json!({
            "metadata": {"name": "backup", "creationTimestamp": ago(3 * 86400)},
            "spec": {"schedule": "*/5 * * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "b", "image": "backup:2"}]}}}}},
            "status": {"active": [{"name": "backup-1"}], "lastScheduleTime": ago(120)},
        });
        assert_eq!(
            cells(&CRON_JOB, &object),
            [
                json!("backup"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("2m"),
                json!("3d"),
                json!("b"),
                json!("backup:2"),
                json!("<none>")
            ]
        );
        let never = json!({"metadata": {"name": "n"}, "spec": {"schedule": "@daily", "timeZone": "Europe/Paris",
                                                               "jobTemplate": {}}});
        assert_eq!(
            cells(&CRON_JOB, &never)[2..6],
            [json!("Europe/Paris"), json!("<unset>"), json!(0), json!("<none>")]
        );
    }
}

//! The CronJob controller's decisions, pure: which scheduled time is due, what the concurrency
//! policy and starting deadline make of it, the Job's name, and the history to trim.

use std::sync::Arc;

use api_types::cron::Schedule;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// Upstream warns when more than this many start times were missed.
pub const TOO_MANY_MISSED: usize = 100;
/// Scheduled times looked at, at most, when catching up.
const MAX_STEPS: usize = 10_000;

/// The latest scheduled time in `(since, now]` and how many there were.
pub fn most_recent(schedule: &Schedule, tz: &TimeZone, since: Timestamp, now: Timestamp) -> Option<(Timestamp, usize)> {
    let mut last = None;
    let mut count = 0;
    let mut t = since;
    while count < MAX_STEPS {
        match schedule.next_after(t, tz) {
            Some(next) if next <= now => {
                last = Some(next);
                count += 1;
                t = next;
            }
            _ => break,
        }
    }
    last.map(|l| (l, count))
}

/// The Job of the run scheduled at `scheduled`: upstream names it by the minute, so a run is
/// created once however often the controller looks. Only `@every` can fire between whole
/// minutes; such runs are named by the second instead, so they do not collide.
pub fn job_name(cron_job: &str, scheduled: Timestamp) -> String {
    let seconds = scheduled.as_second();
    if seconds.rem_euclid(60) == 0 {
        format!("{cron_job}-{}", seconds.div_euclid(60))
    } else {
        format!("{cron_job}-{seconds}")
    }
}

/// What to do about the due time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Start the Job now (first deleting the active ones, for `Replace`).
    Now { replace: bool },
    /// Too late: `startingDeadlineSeconds` passed.
    Missed,
    /// `Forbid`, and a Job is still running: wait for it.
    Forbidden,
}

pub fn start(
    concurrency_policy: &str,
    starting_deadline: Option<i64>,
    scheduled: Timestamp,
    active: usize,
    now: Timestamp,
) -> Start {
    if starting_deadline.is_some_and(|d| scheduled + SignedDuration::from_secs(d) < now) {
        return Start::Missed;
    }
    match concurrency_policy {
        "Forbid" if active > 0 => Start::Forbidden,
        "Replace" => Start::Now { replace: active > 0 },
        _ => Start::Now { replace: false },
    }
}

/// Whether a Job has finished, and how.
pub fn outcome(job: &Job) -> Option<&'static str> {
    let conditions = job.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().filter(|c| c.status == "True").find_map(|c| match c.type_.as_str() {
        "Complete" => Some("Complete"),
        "Failed" => Some("Failed"),
        _ => None,
    })
}

/// Finished Jobs beyond the history limits, oldest first.
pub fn history_to_delete(jobs: &[Arc<Job>], successful_limit: i32, failed_limit: i32) -> Vec<Arc<Job>> {
    let mut doomed = Vec::new();
    for (kind, limit) in [("Complete", successful_limit), ("Failed", failed_limit)] {
        let mut done: Vec<&Arc<Job>> = jobs.iter().filter(|j| outcome(j) == Some(kind)).collect();
        done.sort_by_key(|j| {
            let start = j.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0);
            (start, j.metadata.creation_timestamp.as_ref().map(|t| t.0), j.metadata.name.clone())
        });
        let extra = done.len().saturating_sub(usize::try_from(limit).unwrap_or(0));
        doomed.extend(done.into_iter().take(extra).cloned());
    }
    doomed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap_or(Timestamp::UNIX_EPOCH)
    }

    #[test]
    fn the_latest_due_time_is_taken_and_missed_ones_counted() {
        let every_five = Schedule::parse("*/5 * * * *")
            .unwrap_or_else(|_| Schedule::parse("@hourly").unwrap_or_else(|e| panic!("{e}")));
        let tz = TimeZone::UTC;
        let cases = [
            ("2026-11-22T10:00:00Z", "2026-11-22T10:04:59Z", None),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:05:00Z", Some(("2026-11-22T10:05:00Z", 1))),
            ("2026-11-22T10:00:00Z", "2026-11-22T10:31:00Z", Some(("2026-11-22T10:30:00Z", 6))),
        ];
        for (since, now, want) in cases {
            let got = most_recent(&every_five, &tz, at(since), at(now));
            assert_eq!(got, want.map(|(t, n)| (at(t), n)), "{since} → {now}");
        }
    }

    #[test]
    fn concurrency_policy_and_deadline_decide_a_start() {
        let t = at("2026-11-22T10:00:00Z");
        let cases = [
            ("Allow", None, 2, "2026-11-22T10:00:05Z", Start::Now { replace: false }),
            ("Forbid", None, 1, "2026-11-22T10:00:05Z", Start::Forbidden),
            ("Forbid", None, 0, "2026-11-22T10:00:05Z", Start::Now { replace: false }),
            ("Replace", None, 1, "2026-11-22T10:00:05Z", Start::Now { replace: true }),
            ("Allow", Some(10), 0, "2026-11-22T10:00:05Z", Start::Now { replace: false }),
            ("Allow", Some(10), 0, "2026-11-22T10:00:11Z", Start::Missed),
        ];
        for (i, (policy, deadline, active, now, want)) in cases.into_iter().enumerate() {
            assert_eq!(start(policy, deadline, t, active, at(now)), want, "case {i}");
        }
        assert_eq!(job_name("nightly", at("2026-11-22T10:00:00Z")), "nightly-29922360");
        assert_eq!(job_name("often", at("2026-11-22T10:00:02Z")), "often-1795341602");
    }

    #[test]
    fn history_keeps_the_newest_finished_jobs() {
        let job = |name: &str, start: &str, kind: &str| -> Arc<Job> {
            Arc::new(
                serde_json::from_value(json!({"metadata": {"name": name}, "status": {"startTime": start,
                    "conditions": [{"type": kind, "status": "True"}]}}))
                .unwrap_or_default(),
            )
        };
        let jobs = [
            job("ok-1", "2026-11-22T10:00:00Z", "Complete"),
            job("ok-2", "2026-11-22T10:01:00Z", "Complete"),
            job("ok-3", "2026-11-22T10:02:00Z", "Complete"),
            job("bad-1", "2026-11-22T10:03:00Z", "Failed"),
            job("bad-2", "2026-11-22T10:04:00Z", "Failed"),
            job("running", "2026-11-22T10:05:00Z", "Suspended"),
        ];
        let names: Vec<String> =
            history_to_delete(&jobs, 2, 1).into_iter().filter_map(|j| j.metadata.name.clone()).collect();
        assert_eq!(names, ["ok-1", "bad-1"]);
    }
}

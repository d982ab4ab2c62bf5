//! CronJob schedules, checked with the parser the CronJob controller runs them with
//! ([`api_types::cron`]), so a schedule the API server takes is one the controller can run.

/// Why `schedule` is not a valid cron schedule, or `None` when it is. A leading `TZ=` or
/// `CRON_TZ=` zone is accepted here; the caller decides whether it is allowed.
pub(super) fn schedule_error(schedule: &str) -> Option<String> {
    api_types::cron::Schedule::parse(schedule).err()
}

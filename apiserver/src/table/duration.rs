//! Upstream's `HumanDuration`: the short, increasingly coarse durations of AGE columns.

use api_types::k8s_openapi::jiff::SignedDuration;

/// Formats a duration the way kubectl shows ages: seconds below two minutes, minutes and
/// seconds below ten minutes, minutes below three hours, hours and minutes below eight hours,
/// hours below two days, days and hours below eight days, days below two years, years and days
/// below eight years, then years. Up to a second in the future counts as `0s`; further is
/// `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 2 * 60 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        return with_remainder(minutes, "m", seconds % 60, "s");
    }
    if minutes < 3 * 60 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        return with_remainder(hours, "h", minutes % 60, "m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 8 * 24 {
        return with_remainder(days, "d", hours % 24, "h");
    }
    if hours < 2 * 365 * 24 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 8 * 365 * 24 {
        return with_remainder(years, "y", days % 365, "d");
    }
    format!("{years}y")
}

/// `3m2s`, or `3m` when the smaller unit is zero.
fn with_remainder(big: i64, big_unit: &str, small: i64, small_unit: &str) -> String {
    if small == 0 { format!("{big}{big_unit}") } else { format!("{big}{big_unit}{small}{small_unit}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: i64 = 60;
    const HOUR: i64 = 60 * MINUTE;
    const DAY: i64 = 24 * HOUR;
    const YEAR: i64 = 365 * DAY;

    #[test]
    fn formats_durations_like_upstream() {
        let cases = [
            (0, "0s"),
            (5, "5s"),
            (119, "119s"),
            (2 * MINUTE, "2m"),
            (3 * MINUTE + 2, "3m2s"),
            (9 * MINUTE + 59, "9m59s"),
            (10 * MINUTE, "10m"),
            (10 * MINUTE + 59, "10m"),
            (179 * MINUTE + 59, "179m"),
            (3 * HOUR, "3h"),
            (3 * HOUR + 4 * MINUTE + 30, "3h4m"),
            (7 * HOUR + 59 * MINUTE, "7h59m"),
            (8 * HOUR, "8h"),
            (47 * HOUR + 59 * MINUTE, "47h"),
            (2 * DAY, "2d"),
            (2 * DAY + 3 * HOUR, "2d3h"),
            (7 * DAY + 23 * HOUR, "7d23h"),
            (8 * DAY, "8d"),
            (45 * DAY + 5 * HOUR, "45d"),
            (729 * DAY, "729d"),
            (2 * YEAR, "2y"),
            (2 * YEAR + 10 * DAY, "2y10d"),
            (7 * YEAR + 364 * DAY, "7y364d"),
            (8 * YEAR + 100 * DAY, "8y"),
            (30 * YEAR, "30y"),
        ];
        for (seconds, want) in cases {
            assert_eq!(human_duration(SignedDuration::from_secs(seconds)), want, "{seconds}s");
        }
    }

    #[test]
    fn tolerates_a_second_of_clock_skew_and_no_more() {
        assert_eq!(human_duration(SignedDuration::from_millis(-500)), "0s");
        assert_eq!(human_duration(SignedDuration::from_millis(-1900)), "0s");
        assert_eq!(human_duration(SignedDuration::from_secs(-2)), "<invalid>");
    }

    #[test]
    fn drops_fractions_of_a_second() {
        assert_eq!(human_duration(SignedDuration::from_millis(5999)), "5s");
    }
}

//! CronJob schedules: the standard five fields (`*/5 * * * MON-FRI`) or a descriptor (`@daily`,
//! `@every 1h`), parsed the way upstream's cron library parses them (with its error messages, so
//! the API server can reject a bad schedule in upstream's words), and the next time a schedule
//! fires after a given instant in a time zone.

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan, Zoned};

/// Each field's bounds and, for months and weekdays, the names it accepts.
const FIELDS: [(u32, u32, &[&str]); 5] = [
    (0, 59, &[]),
    (0, 23, &[]),
    (1, 31, &[]),
    (1, 12, &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// A `TZ=` or `CRON_TZ=` prefix of the schedule text, if any.
    pub zone: Option<String>,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// One bit per allowed value of minute, hour, day of month, month, day of week; whether the
    /// day fields were `*` (then both must match, otherwise either may).
    Fields {
        bits: [u64; 5],
        dom_star: bool,
        dow_star: bool,
    },
    Every(SignedDuration),
}

impl Schedule {
    pub fn parse(schedule: &str) -> Result<Schedule, String> {
        let mut spec = schedule.trim();
        let mut zone = None;
        if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
            let (tz, rest) = spec.split_once(' ').unwrap_or((spec, ""));
            zone = tz.split_once('=').map(|(_, z)| z.to_string());
            spec = rest.trim();
        }
        let spec = match spec {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            other => other,
        };
        if spec.starts_with('@') {
            let every = match spec.strip_prefix("@every ") {
                Some(d) => go_duration(d.trim())
                    .ok_or_else(|| format!("failed to parse duration {spec}: time: invalid duration {:?}", d.trim()))?,
                None => return Err(format!("unrecognized descriptor: {spec}")),
            };
            return Ok(Schedule { zone, kind: Kind::Every(every) });
        }
        let fields: Vec<&str> = spec.split_whitespace().collect();
        if fields.len() != FIELDS.len() {
            return Err(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
        }
        let mut bits = [0u64; 5];
        for (i, (field, (min, max, names))) in fields.iter().zip(FIELDS).enumerate() {
            for expr in field.split(',') {
                bits[i] |= range(expr, min, max, names)?;
            }
        }
        let star = |f: &str| f.starts_with('*') || f.starts_with('?');
        Ok(Schedule { zone, kind: Kind::Fields { bits, dom_star: star(fields[2]), dow_star: star(fields[4]) } })
    }

    /// The first time after `after` that the schedule fires, in `tz`; `None` if it never does
    /// within five years (`30 0 31 2 *`, say).
    pub fn next_after(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let (bits, dom_star, dow_star) = match &self.kind {
            Kind::Every(every) => {
                // Whole seconds, as upstream's constant-delay schedule.
                let next = after.checked_add(*every).ok()?;
                return Timestamp::from_second(next.as_second()).ok();
            }
            Kind::Fields { bits, dom_star, dow_star } => (bits, *dom_star, *dow_star),
        };
        let has = |field: usize, v: i8| bits[field] & (1u64 << u32::try_from(v).unwrap_or(63)) != 0;
        let day_matches = |d: Date| {
            let dom = has(2, d.day());
            let dow = has(4, d.weekday().to_sunday_zero_offset());
            if dom_star || dow_star { dom && dow } else { dom || dow }
        };
        // Civil minutes in the zone, from the minute after `after`.
        let start = after.to_zoned(tz.clone()).datetime();
        let mut t = start.with().second(0).subsec_nanosecond(0).build().ok()?.checked_add(1.minute()).ok()?;
        let limit = start.checked_add(5.years()).ok()?;
        while t < limit {
            if !has(3, t.month()) {
                let first = t.date().first_of_month().checked_add(1.month()).ok()?;
                t = DateTime::from_parts(first, Time::midnight());
                continue;
            }
            if !day_matches(t.date()) {
                t = DateTime::from_parts(t.date().tomorrow().ok()?, Time::midnight());
                continue;
            }
            if !has(1, t.hour()) {
                t = t.with().minute(0).build().ok()?.checked_add(1.hour()).ok()?;
                continue;
            }
            if !has(0, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            // A civil time a DST gap skips or a fold repeats resolves as upstream's (the later
            // offset for a gap, the first occurrence for a fold).
            let zoned: Zoned = tz.to_ambiguous_zoned(t).compatible().ok()?;
            if zoned.timestamp() > after {
                return Some(zoned.timestamp());
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

/// A Go duration such as `1h30m` or `90s`.
fn go_duration(s: &str) -> Option<SignedDuration> {
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        if number_len == 0 {
            return None;
        }
        let value: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let units = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
        let (unit, scale) = units.iter().find(|(u, _)| rest.starts_with(*u))?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    SignedDuration::try_from_secs_f64(total).ok()
}

/// One comma-separated part of a field (`*`, `?`, `n`, `a-b`, each optionally `/step`) as bits.
fn range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let parts: Vec<&str> = expr.split('/').collect();
    if parts.len() > 2 {
        return Err(format!("too many slashes: {expr}"));
    }
    let bounds: Vec<&str> = parts[0].split('-').collect();
    if bounds.len() > 2 {
        return Err(format!("too many hyphens: {expr}"));
    }
    let star = bounds[0] == "*" || bounds[0] == "?";
    let (start, mut end) = if star {
        (min, max)
    } else {
        let start = value(bounds[0], names)?;
        let end = match bounds.get(1) {
            Some(b) => value(b, names)?,
            None => start,
        };
        (start, end)
    };
    let mut step = 1;
    if let Some(s) = parts.get(1) {
        step = value(s, &[])?;
        if step == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
        // `n/step` runs from n to the field's maximum.
        if bounds.len() == 1 && !star {
            end = max;
        }
    }
    if start < min {
        return Err(format!("beginning of range ({start}) below minimum ({min}): {expr}"));
    }
    if end > max {
        return Err(format!("end of range ({end}) above maximum ({max}): {expr}"));
    }
    if start > end {
        return Err(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    Ok((start..=end).step_by(usize::try_from(step).unwrap_or(1)).fold(0, |bits, v| bits | (1u64 << v)))
}

fn value(s: &str, names: &[&str]) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        // Months count from 1, weekdays from 0.
        let first = if names.len() == 12 { 1 } else { 0 };
        return Ok(u32::try_from(i).unwrap_or(0) + first);
    }
    s.parse::<u32>().map_err(|_| format!("failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_with_upstreams_messages() {
        let cases = [
            ("*/5 * * * *", None),
            ("0 3 * * MON-FRI", None),
            ("15 10 1,15 jan-jun ?", None),
            ("@daily", None),
            ("@every 1h30m", None),
            ("CRON_TZ=UTC 0 0 * * *", None),
            ("* * * *", Some("expected exactly 5 fields, found 4: [* * * *]")),
            ("60 * * * *", Some("end of range (60) above maximum (59): 60")),
            ("* * 0 * *", Some("beginning of range (0) below minimum (1): 0")),
            ("5-1 * * * *", Some("beginning of range (5) beyond end of range (1): 5-1")),
            ("x * * * *", Some("failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax")),
            ("*/0 * * * *", Some("step of range should be a positive number: */0")),
            ("@fortnightly", Some("unrecognized descriptor: @fortnightly")),
            ("@every soon", Some("failed to parse duration @every soon: time: invalid duration \"soon\"")),
        ];
        for (schedule, want) in cases {
            assert_eq!(Schedule::parse(schedule).err().as_deref(), want, "{schedule}");
        }
        assert_eq!(
            Schedule::parse("TZ=Europe/Paris @hourly").ok().and_then(|s| s.zone).as_deref(),
            Some("Europe/Paris")
        );
    }

    fn next(schedule: &str, after: &str, zone: &str) -> Option<String> {
        let tz = TimeZone::get(zone).ok()?;
        let after: Timestamp = after.parse().ok()?;
        let next = Schedule::parse(schedule).ok()?.next_after(after, &tz)?;
        Some(next.to_zoned(tz).strftime("%Y-%m-%d %H:%M %a").to_string())
    }

    #[test]
    fn next_times_follow_the_fields() {
        let cases = [
            ("*/5 * * * *", "2026-11-22T10:03:00Z", "UTC", "2026-11-22 10:05 Sun"),
            ("*/5 * * * *", "2026-11-22T10:05:00Z", "UTC", "2026-11-22 10:10 Sun"),
            ("@hourly", "2026-11-22T10:00:30Z", "UTC", "2026-11-22 11:00 Sun"),
            ("0 3 * * MON-FRI", "2026-11-21T12:00:00Z", "UTC", "2026-11-23 03:00 Mon"),
            ("@monthly", "2026-11-22T00:00:00Z", "UTC", "2026-12-01 00:00 Tue"),
            ("@yearly", "2026-11-22T00:00:00Z", "UTC", "2027-01-01 00:00 Fri"),
            // Day of month or day of week when neither is `*`.
            ("0 0 13 * 5", "2026-11-01T00:00:00Z", "UTC", "2026-11-06 00:00 Fri"),
            ("0 9 * * *", "2026-11-22T10:00:00Z", "Asia/Tokyo", "2026-11-23 09:00 Mon"),
            // 02:30 does not exist on 2026-03-29 in Paris: it runs at 03:30 CEST.
            ("30 2 * * *", "2026-03-28T12:00:00Z", "Europe/Paris", "2026-03-29 03:30 Sun"),
        ];
        for (schedule, after, zone, want) in cases {
            assert_eq!(next(schedule, after, zone).as_deref(), Some(want), "{schedule} after {after} in {zone}");
        }
        assert_eq!(next("0 0 31 2 *", "2026-01-01T00:00:00Z", "UTC"), None, "February 31st never comes");
        let every =
            Schedule::parse("@every 90s").ok().and_then(|s| s.next_after(Timestamp::UNIX_EPOCH, &TimeZone::UTC));
        assert_eq!(every.map(|t| t.as_second()), Some(90));
    }
}

//! CronJob schedules in the standard five-field syntax (`*/5 * * * MON-FRI`) or a descriptor
//! (`@daily`, `@every 1h`), checked the way upstream's cron library parses them, with its
//! error messages.

/// Each field's name, bounds and, for months and weekdays, the names it accepts.
const FIELDS: [(u32, u32, &[&str]); 5] = [
    (0, 59, &[]),
    (0, 23, &[]),
    (1, 31, &[]),
    (1, 12, &["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];
const DESCRIPTORS: &[&str] = &["@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"];

/// Why `schedule` is not a valid cron schedule, or `None` when it is. A leading `TZ=` or
/// `CRON_TZ=` zone is accepted here; the caller decides whether it is allowed.
pub(super) fn schedule_error(schedule: &str) -> Option<String> {
    let mut spec = schedule.trim();
    if spec.starts_with("TZ=") || spec.starts_with("CRON_TZ=") {
        spec = spec.split_once(' ').map_or("", |(_, rest)| rest.trim());
    }
    if spec.starts_with('@') {
        return descriptor_error(spec);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != FIELDS.len() {
        return Some(format!("expected exactly 5 fields, found {}: [{}]", fields.len(), fields.join(" ")));
    }
    fields
        .iter()
        .zip(FIELDS)
        .find_map(|(field, (min, max, names))| field.split(',').find_map(|expr| range_error(expr, min, max, names)))
}

fn descriptor_error(spec: &str) -> Option<String> {
    if DESCRIPTORS.contains(&spec) {
        return None;
    }
    match spec.strip_prefix("@every ") {
        Some(duration) if is_go_duration(duration.trim()) => None,
        Some(duration) => {
            Some(format!("failed to parse duration {spec}: time: invalid duration {:?}", duration.trim()))
        }
        None => Some(format!("unrecognized descriptor: {spec}")),
    }
}

/// A Go duration such as `1h30m` or `90s`.
fn is_go_duration(s: &str) -> bool {
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let number_len = rest.bytes().take_while(|b| b.is_ascii_digit() || *b == b'.').count();
        if number_len == 0 {
            return false;
        }
        rest = &rest[number_len..];
        let Some(unit) = ["ns", "us", "µs", "ms", "s", "m", "h"].iter().find(|u| rest.starts_with(*u)) else {
            return false;
        };
        rest = &rest[unit.len()..];
    }
    true
}

/// One comma-separated part of a field: `*`, `?`, `n`, `a-b`, each optionally `/step`.
fn range_error(expr: &str, min: u32, max: u32, names: &[&str]) -> Option<String> {
    let parts: Vec<&str> = expr.split('/').collect();
    if parts.len() > 2 {
        return Some(format!("too many slashes: {expr}"));
    }
    let bounds: Vec<&str> = parts[0].split('-').collect();
    if bounds.len() > 2 {
        return Some(format!("too many hyphens: {expr}"));
    }
    let (start, mut end) = if bounds[0] == "*" || bounds[0] == "?" {
        (min, max)
    } else {
        let start = match value(bounds[0], names) {
            Ok(v) => v,
            Err(e) => return Some(e),
        };
        let end = match bounds.get(1) {
            Some(b) => match value(b, names) {
                Ok(v) => v,
                Err(e) => return Some(e),
            },
            None => start,
        };
        (start, end)
    };
    if let Some(step) = parts.get(1) {
        let step = match value(step, &[]) {
            Ok(v) => v,
            Err(e) => return Some(e),
        };
        if step == 0 {
            return Some(format!("step of range should be a positive number: {expr}"));
        }
        // `n/step` runs from n to the field's maximum.
        if bounds.len() == 1 && bounds[0] != "*" && bounds[0] != "?" {
            end = max;
        }
    }
    if start < min {
        return Some(format!("beginning of range ({start}) below minimum ({min}): {expr}"));
    }
    if end > max {
        return Some(format!("end of range ({end}) above maximum ({max}): {expr}"));
    }
    if start > end {
        return Some(format!("beginning of range ({start}) beyond end of range ({end}): {expr}"));
    }
    None
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
    use super::schedule_error;

    #[test]
    fn schedules() {
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
        ];
        for (schedule, want) in cases {
            assert_eq!(schedule_error(schedule).as_deref(), want, "{schedule}");
        }
    }
}

//! Cell formatting the printers share: names, ages, label sets, selectors, container lists.

use std::collections::BTreeMap;

use api_types::k8s_openapi::api::core::v1::{Container, PodTemplateSpec};
use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, MicroTime, ObjectMeta, Time};
use api_types::k8s_openapi::jiff::Timestamp;
use api_types::labels;

use super::duration::human_duration;

/// What a cell says when a value is absent and that is worth saying.
pub(super) const NONE: &str = "<none>";
/// What a cell says when a value cannot be known.
pub(super) const UNKNOWN: &str = "<unknown>";
/// What a cell says when an optional field is not set.
pub(super) const UNSET: &str = "<unset>";

pub(super) fn name(metadata: &ObjectMeta) -> String {
    metadata.name.clone().unwrap_or_default()
}

/// The AGE cell: how long before `now` the object was created.
pub(super) fn age(metadata: &ObjectMeta, now: Timestamp) -> String {
    since(metadata.creation_timestamp.as_ref(), now)
}

/// How long before `now` a time was; `<unknown>` when unset.
pub(super) fn since(time: Option<&Time>, now: Timestamp) -> String {
    time.map_or_else(|| UNKNOWN.to_string(), |t| elapsed(t.0, now))
}

/// [`since`] for the microsecond times of events.
pub(super) fn since_micro(time: Option<&MicroTime>, now: Timestamp) -> String {
    time.map_or_else(|| UNKNOWN.to_string(), |t| elapsed(t.0, now))
}

/// The human duration from `from` to `to`.
pub(super) fn elapsed(from: Timestamp, to: Timestamp) -> String {
    human_duration(to.duration_since(from))
}

/// A time as a `date` cell: RFC 3339 in UTC to the second; the zero time when unset.
pub(super) fn date(time: Option<&Time>) -> String {
    match time {
        Some(t) => t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "0001-01-01T00:00:00Z".to_string(),
    }
}

/// `value`, or `fallback` when it is unset or empty.
pub(super) fn or(value: Option<&str>, fallback: &str) -> String {
    match value {
        Some(v) if !v.is_empty() => v.to_string(),
        _ => fallback.to_string(),
    }
}

/// A label set as `a=1,b=2` (sorted by key), `<none>` when empty.
pub(super) fn label_set(labels: Option<&BTreeMap<String, String>>) -> String {
    let pairs: Vec<String> = labels.into_iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() { NONE.to_string() } else { pairs.join(",") }
}

/// A label selector in the selector string syntax; empty when it selects everything or is
/// unset, `<invalid>` when it cannot be converted.
pub(super) fn selector(selector: Option<&LabelSelector>) -> String {
    match selector {
        None => String::new(),
        Some(s) => {
            labels::LabelSelector::from_label_selector(s).map_or_else(|_| "<invalid>".to_string(), |s| s.to_string())
        }
    }
}

/// A label selector as [`selector`] shows it, but `<none>` instead of empty and `<error>`
/// instead of `<invalid>` (upstream's `FormatLabelSelector`).
pub(super) fn selector_or_none(sel: Option<&LabelSelector>) -> String {
    match selector(sel).as_str() {
        "" => NONE.to_string(),
        "<invalid>" => "<error>".to_string(),
        s => s.to_string(),
    }
}

/// The CONTAINERS and IMAGES cells: names and images, each joined by commas.
pub(super) fn containers(template: Option<&PodTemplateSpec>) -> (String, String) {
    let containers: &[Container] = template.and_then(|t| t.spec.as_ref()).map_or(&[], |s| s.containers.as_slice());
    let names: Vec<&str> = containers.iter().map(|c| c.name.as_str()).collect();
    let images: Vec<&str> = containers.iter().map(|c| c.image.as_deref().unwrap_or_default()).collect();
    (names.join(","), images.join(","))
}

/// The first `max` items joined by commas, with ` + N more...` for the rest.
pub(super) fn first_of(items: &[String], max: usize) -> String {
    let shown = items[..items.len().min(max)].join(",");
    if items.len() > max { format!("{shown} + {} more...", items.len() - max) } else { shown }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    #[test]
    fn formats_label_sets_sorted_or_none() {
        let labels = BTreeMap::from([("tier".to_string(), "web".to_string()), ("app".to_string(), "x".to_string())]);
        assert_eq!(label_set(Some(&labels)), "app=x,tier=web");
        assert_eq!(label_set(Some(&BTreeMap::new())), "<none>");
        assert_eq!(label_set(None), "<none>");
    }

    #[test]
    fn formats_label_selectors_in_selector_syntax() {
        let sel = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "web".to_string())])),
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".to_string(),
                operator: "In".to_string(),
                values: Some(vec!["qa".to_string(), "prod".to_string()]),
            }]),
        };
        assert_eq!(selector(Some(&sel)), "app=web,env in (prod,qa)");
        assert_eq!(selector(None), "");
        assert_eq!(selector(Some(&LabelSelector::default())), "");
        assert_eq!(selector_or_none(Some(&LabelSelector::default())), "<none>");
        let bad = LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: "env".to_string(),
                operator: "Near".to_string(),
                values: None,
            }]),
            ..Default::default()
        };
        assert_eq!(selector(Some(&bad)), "<invalid>");
        assert_eq!(selector_or_none(Some(&bad)), "<error>");
    }

    #[test]
    fn shows_at_most_a_few_items_then_counts_the_rest() {
        let items: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(first_of(&items[..2], 3), "a,b");
        assert_eq!(first_of(&items[..3], 3), "a,b,c");
        assert_eq!(first_of(&items, 3), "a,b,c + 2 more...");
        assert_eq!(first_of(&[], 3), "");
    }

    #[test]
    fn formats_dates_to_the_second_in_utc() {
        let t = Time("2024-05-01T14:00:00.25+02:00".parse().expect("valid"));
        assert_eq!(date(Some(&t)), "2024-05-01T12:00:00Z");
        assert_eq!(date(None), "0001-01-01T00:00:00Z");
    }
}

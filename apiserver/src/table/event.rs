//! Events, of both the core and the `events.k8s.io` kind, which print alike: upstream converts
//! both to one internal type before printing.

use api_types::k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use api_types::k8s_openapi::api::events::v1::Event as NewEvent;
use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format::{self, UNKNOWN};
use super::{Column, NAME, Printer, decode};

const COLUMNS: &[Column] = &[
    Column::string("Last Seen", "How long ago the event last happened."),
    Column::string("Type", "Normal or Warning."),
    Column::string("Reason", "Why the event happened, in one word."),
    Column::string("Object", "The object the event is about."),
    Column::string("Subobject", "The part of the object, such as a container.").wide(),
    Column::string("Source", "The component that reported the event, and where.").wide(),
    Column::string("Message", "What happened."),
    Column::string("First Seen", "How long ago the event first happened.").wide(),
    Column::string("Count", "How often the event happened.").wide(),
    NAME.wide(),
];

pub(super) static CORE: Printer = Printer { columns: COLUMNS, cells: core_cells };
pub(super) static EVENTS: Printer = Printer { columns: COLUMNS, cells: events_cells };

/// The fields the table shows, common to both kinds.
struct Seen<'a> {
    metadata: &'a ObjectMeta,
    regarding: Option<&'a ObjectReference>,
    type_: Option<&'a str>,
    reason: Option<&'a str>,
    message: Option<&'a str>,
    first: Option<&'a Time>,
    last: Option<&'a Time>,
    event_time: Option<&'a MicroTime>,
    count: Option<i32>,
    /// The series' count and last observation, for a recurring event.
    series: Option<(Option<i32>, Option<&'a MicroTime>)>,
    source: Option<&'a EventSource>,
    reporting_controller: Option<&'a str>,
    reporting_instance: Option<&'a str>,
}

fn core_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let event: CoreEvent = decode(object)?;
    Ok(cells(
        &Seen {
            metadata: &event.metadata,
            regarding: Some(&event.involved_object),
            type_: event.type_.as_deref(),
            reason: event.reason.as_deref(),
            message: event.message.as_deref(),
            first: event.first_timestamp.as_ref(),
            last: event.last_timestamp.as_ref(),
            event_time: event.event_time.as_ref(),
            count: event.count,
            series: event.series.as_ref().map(|s| (s.count, s.last_observed_time.as_ref())),
            source: event.source.as_ref(),
            reporting_controller: event.reporting_component.as_deref(),
            reporting_instance: event.reporting_instance.as_deref(),
        },
        now,
    ))
}

fn events_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let event: NewEvent = decode(object)?;
    Ok(cells(
        &Seen {
            metadata: &event.metadata,
            regarding: event.regarding.as_ref(),
            type_: event.type_.as_deref(),
            reason: event.reason.as_deref(),
            message: event.note.as_deref(),
            first: event.deprecated_first_timestamp.as_ref(),
            last: event.deprecated_last_timestamp.as_ref(),
            event_time: event.event_time.as_ref(),
            count: event.deprecated_count,
            series: event.series.as_ref().map(|s| (Some(s.count), Some(&s.last_observed_time))),
            source: event.deprecated_source.as_ref(),
            reporting_controller: event.reporting_controller.as_deref(),
            reporting_instance: event.reporting_instance.as_deref(),
        },
        now,
    ))
}

fn cells(event: &Seen<'_>, now: Timestamp) -> Vec<Value> {
    let first = match event.first {
        Some(t) => format::since(Some(t), now),
        None => format::since_micro(event.event_time, now),
    };
    let (last, count) = match event.series {
        Some((count, observed)) => (format::since_micro(observed, now), count.unwrap_or(0)),
        None => (
            event.last.map_or_else(|| first.clone(), |t| format::since(Some(t), now)),
            // Events written through the new API leave the count unset: they happened once.
            event.count.filter(|&c| c != 0).unwrap_or(1),
        ),
    };
    let regarding = event.regarding.cloned().unwrap_or_default();
    let kind = regarding.kind.unwrap_or_default().to_lowercase();
    let object = match regarding.name.filter(|n| !n.is_empty()) {
        Some(name) => format!("{kind}/{name}"),
        None => kind,
    };
    vec![
        last.into(),
        event.type_.unwrap_or_default().into(),
        event.reason.unwrap_or_default().into(),
        object.into(),
        regarding.field_path.unwrap_or_default().into(),
        source(event).into(),
        event.message.unwrap_or_default().trim().into(),
        first.into(),
        count.into(),
        format::name(event.metadata).into(),
    ]
}

/// `component, host`, from the old source field or else the reporting fields.
fn source(event: &Seen<'_>) -> String {
    let non_empty = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_string);
    let component =
        non_empty(event.source.and_then(|s| s.component.as_deref())).or_else(|| non_empty(event.reporting_controller));
    let instance =
        non_empty(event.source.and_then(|s| s.host.as_deref())).or_else(|| non_empty(event.reporting_instance));
    match (component, instance) {
        (None, _) => UNKNOWN.to_string(),
        (Some(c), None) => c,
        (Some(c), Some(i)) => format!("{c}, {i}"),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    #[test]
    fn has_upstream_columns_with_name_last() {
        assert_eq!(
            headers(&CORE),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "+Subobject",
                "+Source",
                "Message",
                "+First Seen",
                "+Count",
                "+Name"
            ]
        );
    }

    #[test]
    fn prints_a_core_event() {
        let object = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web-0.17c3a", "namespace": "default", "creationTimestamp": ago(600)},
            "involvedObject": {"kind": "Pod", "name": "web-0", "namespace": "default",
                               "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container app\n",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600),
            "lastTimestamp": ago(30),
            "count": 12,
            "type": "Warning",
        });
        assert_eq!(
            cells(&CORE, &object),
            [
                json!("30s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web-0"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("Back-off restarting failed container app"),
                json!("10m"),
                json!(12),
                json!("web-0.17c3a")
            ]
        );
    }

    #[test]
    fn prints_an_event_written_through_the_new_api() {
        let object = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default"},
            "eventTime": "2024-05-01T11:59:00.123456Z",
            "reportingController": "rk-scheduler",
            "reportingInstance": "rk-scheduler-host-a",
            "action": "Binding",
            "reason": "Scheduled",
            "regarding": {"kind": "Pod", "name": "web", "namespace": "default"},
            "note": "Successfully assigned default/web to n1",
            "type": "Normal",
        });
        assert_eq!(
            cells(&EVENTS, &object),
            // 59.88 seconds before now: ages truncate.
            [
                json!("59s"),
                json!("Normal"),
                json!("Scheduled"),
                json!("pod/web"),
                json!(""),
                json!("rk-scheduler, rk-scheduler-host-a"),
                json!("Successfully assigned default/web to n1"),
                json!("59s"),
                json!(1),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn a_recurring_event_reports_its_series() {
        let object = json!({
            "metadata": {"name": "e"},
            "eventTime": ago(3600),
            "series": {"count": 7, "lastObservedTime": ago(20)},
            "regarding": {"kind": "Node"},
            "reportingController": "kubelet",
        });
        let row = cells(&EVENTS, &object);
        assert_eq!(row[0], "20s");
        assert_eq!(row[3], "node");
        assert_eq!(row[5], "kubelet");
        assert_eq!(row[7], "60m");
        assert_eq!(row[8], 7);
    }

    #[test]
    fn an_event_without_times_or_source_is_unknown() {
        let object = json!({"metadata": {"name": "e"}, "involvedObject": {}});
        let row = cells(&CORE, &object);
        assert_eq!(row[0], "<unknown>");
        assert_eq!(row[5], "<unknown>");
        assert_eq!(row[7], "<unknown>");
    }
}

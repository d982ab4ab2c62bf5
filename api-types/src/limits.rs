//! LimitRange admission, upstream's LimitRanger plugin: the defaults a namespace's LimitRanges
//! give a new pod's containers, and the minimums, maximums and limit/request ratios they hold
//! pods (`type: Container` per container, `type: Pod` on the pod's total) and
//! PersistentVolumeClaims (`type: PersistentVolumeClaim` on `spec.resources.requests`) to, with
//! upstream's messages.
//!
//! The API server reads the LimitRanges with [`LimitRange::from_value`], gives a new pod its
//! defaults with [`default_pod`], and checks it with [`validate_pod`] (a claim with
//! [`validate_claim`]); a refusal is the [`Violations`] of the first LimitRange the object
//! breaks, which reads like upstream's aggregate error.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::quantity::{self, ParsedQuantity};

/// The annotation upstream's LimitRanger leaves on a pod it gave defaults to.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

const CONTAINER: &str = "Container";
const POD: &str = "Pod";
const CLAIM: &str = "PersistentVolumeClaim";
/// Upstream's `MaxMilliValue`: above it, comparisons are in whole units, not thousandths.
const MAX_MILLI_VALUE: i64 = i64::MAX / 1000;

/// Quantities by resource name, in name order.
type Resources = BTreeMap<String, ParsedQuantity>;

/// One item of `spec.limits`, its quantities parsed.
#[derive(Debug, Clone, Default, PartialEq)]
struct Item {
    kind: String,
    min: Resources,
    max: Resources,
    default: Resources,
    default_request: Resources,
    max_limit_request_ratio: Resources,
}

impl Item {
    fn from_value(item: &Value) -> Self {
        let map = |field: &str| resources(item.get(field));
        let mut item = Item {
            kind: item.get("type").and_then(Value::as_str).unwrap_or_default().to_string(),
            min: map("min"),
            max: map("max"),
            default: map("default"),
            default_request: map("defaultRequest"),
            max_limit_request_ratio: map("maxLimitRequestRatio"),
        };
        if item.kind == CONTAINER {
            item.apply_defaults();
        }
        item
    }

    /// Upstream's LimitRange defaulting of a Container item: the default limit is the maximum
    /// where unset, the default request the default limit, else the minimum.
    fn apply_defaults(&mut self) {
        for (name, q) in &self.max {
            self.default.entry(name.clone()).or_insert(*q);
        }
        for (name, q) in self.default.iter().chain(&self.min) {
            self.default_request.entry(name.clone()).or_insert(*q);
        }
    }
}

/// A LimitRange's items. Quantities that do not parse are left out (validation refuses them
/// when the LimitRange is written).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LimitRange {
    items: Vec<Item>,
}

impl LimitRange {
    /// Reads a LimitRange object (JSON); anything that is not one has no items.
    pub fn from_value(obj: &Value) -> Self {
        let items = obj.pointer("/spec/limits").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        LimitRange { items: items.iter().map(Item::from_value).collect() }
    }

    /// The default limits and requests of its Container items (a later item wins).
    fn container_defaults(&self) -> (Resources, Resources) {
        let mut limits = Resources::new();
        let mut requests = Resources::new();
        for item in self.items.iter().filter(|i| i.kind == CONTAINER) {
            limits.extend(item.default.iter().map(|(k, v)| (k.clone(), *v)));
            requests.extend(item.default_request.iter().map(|(k, v)| (k.clone(), *v)));
        }
        (limits, requests)
    }
}

/// What one LimitRange found wrong, shown as upstream's aggregate error: one message alone,
/// several as `[first, second]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<String>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_slice() {
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}

impl std::error::Error for Violations {}

impl Violations {
    /// `None` for no messages; repeated messages are shown once, as upstream's aggregate does.
    fn of(messages: Vec<String>) -> Option<Self> {
        let mut unique: Vec<String> = Vec::with_capacity(messages.len());
        for m in messages {
            if !unique.contains(&m) {
                unique.push(m);
            }
        }
        (!unique.is_empty()).then_some(Violations(unique))
    }
}

/// Gives a new pod the defaults of every LimitRange, in order (an earlier one's win, as each
/// fills only what is still unset), with the `kubernetes.io/limit-ranger` annotation naming what
/// was set, as upstream's LimitRanger does in its mutating phase. Returns whether it set anything.
pub fn default_pod(ranges: &[LimitRange], pod: &mut Value) -> bool {
    let mut changed = false;
    for range in ranges {
        changed |= default_pod_with(range, pod);
    }
    changed
}

/// Checks a (defaulted) pod against each LimitRange: the violations of the first one it breaks.
pub fn validate_pod(ranges: &[LimitRange], pod: &Value) -> Result<(), Violations> {
    match ranges.iter().find_map(|range| Violations::of(pod_violations(range, pod))) {
        Some(v) => Err(v),
        None => Ok(()),
    }
}

/// Checks a PersistentVolumeClaim's requested storage against the PersistentVolumeClaim items
/// (claims get no defaults: their request is required).
pub fn validate_claim(ranges: &[LimitRange], claim: &Value) -> Result<(), Violations> {
    let requests = resources(claim.pointer("/spec/resources/requests"));
    let none = Resources::new();
    let mut found = ranges.iter().map(|range| {
        let mut errs = Vec::new();
        for item in range.items.iter().filter(|i| i.kind == CLAIM) {
            for (name, bound) in &item.min {
                errs.extend(min_violation(CLAIM, name, bound, &requests, &none));
            }
            for (name, bound) in &item.max {
                errs.extend(max_request_violation(CLAIM, name, bound, &requests));
            }
        }
        errs
    });
    match found.find_map(Violations::of) {
        Some(v) => Err(v),
        None => Ok(()),
    }
}

/// Sets one LimitRange's default limits and requests on the containers and init containers
/// that lack them, and annotates the pod if it set any. A request the container leaves out but
/// has a limit for is the limit (the API's own pod defaulting, which runs first upstream);
/// only what the LimitRange set is named in the annotation.
fn default_pod_with(range: &LimitRange, pod: &mut Value) -> bool {
    let (limits, requests) = range.container_defaults();
    if limits.is_empty() && requests.is_empty() {
        return false;
    }
    let mut notes = Vec::new();
    for (field, what) in [("containers", "container"), ("initContainers", "init container")] {
        let Some(list) = pod.pointer_mut(&format!("/spec/{field}")).and_then(Value::as_array_mut) else { continue };
        for container in list {
            notes.extend(default_container(container, &limits, &requests, what));
        }
    }
    if notes.is_empty() {
        return false;
    }
    if let Some(annotations) = object_at(pod, &["metadata", "annotations"]) {
        annotations.insert(ANNOTATION.into(), format!("LimitRanger plugin set: {}", notes.join("; ")).into());
    }
    true
}

/// Defaults one container; returns the annotation's notes for it (requests, then limits).
fn default_container(container: &mut Value, limits: &Resources, requests: &Resources, what: &str) -> Vec<String> {
    let name = container.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(res) = object_at(container, &["resources"]) else { return Vec::new() };
    let own_limits = res.get("limits").and_then(Value::as_object).cloned().unwrap_or_default();
    if !own_limits.is_empty()
        && let Some(own_requests) = object_at_map(res, "requests")
    {
        for (r, limit) in own_limits {
            own_requests.entry(r).or_insert(limit);
        }
    }
    let set_limits = fill(res, "limits", limits);
    let set_requests = fill(res, "requests", requests);
    let mut notes = Vec::new();
    if !set_requests.is_empty() {
        notes.push(format!("{} request for {what} {name}", set_requests.join(", ")));
    }
    if !set_limits.is_empty() {
        notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
    }
    notes
}

/// Adds the `defaults` missing from `resources[field]`; returns the names added, sorted.
fn fill(resources: &mut Map<String, Value>, field: &str, defaults: &Resources) -> Vec<String> {
    let missing: Vec<(&String, &ParsedQuantity)> =
        defaults.iter().filter(|(name, _)| resources.get(field).and_then(|m| m.get(name.as_str())).is_none()).collect();
    if missing.is_empty() {
        return Vec::new();
    }
    let Some(map) = object_at_map(resources, field) else { return Vec::new() };
    missing
        .into_iter()
        .map(|(name, q)| {
            map.insert(name.clone(), q.to_string().into());
            name.clone()
        })
        .collect()
}

/// One LimitRange's checks of a pod: Container items on each container and init container,
/// Pod items on the pod's total.
fn pod_violations(range: &LimitRange, pod: &Value) -> Vec<String> {
    let mut errs = Vec::new();
    for item in &range.items {
        match item.kind.as_str() {
            CONTAINER => {
                for container in containers(pod, "containers").chain(containers(pod, "initContainers")) {
                    let requests = resources(container.pointer("/resources/requests"));
                    let limits = resources(container.pointer("/resources/limits"));
                    check(item, &requests, &limits, &mut errs);
                }
            }
            POD => check(item, &pod_total(pod, "requests"), &pod_total(pod, "limits"), &mut errs),
            _ => {}
        }
    }
    errs
}

/// An item's minimums, maximums and ratios against one set of requests and limits.
fn check(item: &Item, requests: &Resources, limits: &Resources, errs: &mut Vec<String>) {
    let kind = item.kind.as_str();
    for (name, bound) in &item.min {
        errs.extend(min_violation(kind, name, bound, requests, limits));
    }
    for (name, bound) in &item.max {
        errs.extend(max_violation(kind, name, bound, requests, limits));
    }
    for (name, bound) in &item.max_limit_request_ratio {
        errs.extend(ratio_violation(kind, name, bound, requests, limits));
    }
}

fn min_violation(
    kind: &str,
    name: &str,
    bound: &ParsedQuantity,
    requests: &Resources,
    limits: &Resources,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, b) = comparable(req, lim, bound);
    let Some(req) = req else {
        return Some(format!("minimum {name} usage per {kind} is {bound}.  No request is specified"));
    };
    if r < b {
        return Some(format!("minimum {name} usage per {kind} is {bound}, but request is {req}"));
    }
    match lim {
        Some(lim) if l < b => Some(format!("minimum {name} usage per {kind} is {bound}, but limit is {lim}")),
        _ => None,
    }
}

fn max_violation(
    kind: &str,
    name: &str,
    bound: &ParsedQuantity,
    requests: &Resources,
    limits: &Resources,
) -> Option<String> {
    let (req, lim) = (requests.get(name), limits.get(name));
    let (r, l, b) = comparable(req, lim, bound);
    let Some(lim) = lim else {
        return Some(format!("maximum {name} usage per {kind} is {bound}.  No limit is specified"));
    };
    if l > b {
        return Some(format!("maximum {name} usage per {kind} is {bound}, but limit is {lim}"));
    }
    match req {
        Some(req) if r > b => Some(format!("maximum {name} usage per {kind} is {bound}, but request is {req}")),
        _ => None,
    }
}

/// The maximum of a kind that has requests only (claims).
fn max_request_violation(kind: &str, name: &str, bound: &ParsedQuantity, requests: &Resources) -> Option<String> {
    let req = requests.get(name);
    let (r, _, b) = comparable(req, None, bound);
    match req {
        None => Some(format!("maximum {name} usage per {kind} is {bound}.  No request is specified")),
        Some(req) if r > b => Some(format!("maximum {name} usage per {kind} is {bound}, but request is {req}")),
        Some(_) => None,
    }
}

fn ratio_violation(
    kind: &str,
    name: &str,
    bound: &ParsedQuantity,
    requests: &Resources,
    limits: &Resources,
) -> Option<String> {
    let (r, l, _) = comparable(requests.get(name), limits.get(name), bound);
    let head = format!("{name} max limit to request ratio per {kind} is {bound}");
    if r == 0 {
        return Some(format!("{head}, but no request is specified or request is 0"));
    }
    if l == 0 {
        return Some(format!("{head}, but no limit is specified or limit is 0"));
    }
    let observed = l as f64 / r as f64;
    let (scaled, allowed) = if bound.to_value() <= MAX_MILLI_VALUE {
        (observed * 1000.0, bound.to_milli() as f64)
    } else {
        (observed, bound.to_value() as f64)
    };
    (scaled > allowed).then(|| format!("{head}, but provided ratio is {observed:.6}"))
}

/// Request, limit and bound at a common precision, as upstream compares them: thousandths
/// (rounded up) unless one of them is too large for that, then whole units. Absent is 0.
fn comparable(req: Option<&ParsedQuantity>, lim: Option<&ParsedQuantity>, bound: &ParsedQuantity) -> (i64, i64, i64) {
    let value = |q: Option<&ParsedQuantity>| q.map_or(0, ParsedQuantity::to_value);
    let (r, l, b) = (value(req), value(lim), bound.to_value());
    if r <= MAX_MILLI_VALUE && l <= MAX_MILLI_VALUE && b <= MAX_MILLI_VALUE {
        let milli = |q: Option<&ParsedQuantity>| q.map_or(0, ParsedQuantity::to_milli);
        (milli(req), milli(lim), bound.to_milli())
    } else {
        (r, l, b)
    }
}

/// A pod's total requests or limits (`which`), as upstream's LimitRanger adds them up: the app
/// containers and sidecars (init containers with `restartPolicy: Always`) together, or what
/// the init containers need one at a time (each with the sidecars started before it) if more.
fn pod_total(pod: &Value, which: &str) -> Resources {
    let of = |c: &Value| resources(c.pointer(&format!("/resources/{which}")));
    let mut total = Resources::new();
    for c in containers(pod, "containers") {
        add(&mut total, &of(c));
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for c in containers(pod, "initContainers") {
        let own = of(c);
        let needs = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add(&mut total, &own);
            add(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut needs = own;
            add(&mut needs, &sidecars);
            needs
        };
        for (name, q) in needs {
            let peak = init_peak.entry(name).or_insert(q);
            if q.nanos() > peak.nanos() {
                *peak = q;
            }
        }
    }
    for (name, q) in init_peak {
        let t = total.entry(name).or_insert(q);
        if q.nanos() > t.nanos() {
            *t = q;
        }
    }
    total
}

fn add(total: &mut Resources, more: &Resources) {
    for (name, q) in more {
        total.entry(name.clone()).and_modify(|t| *t += *q).or_insert(*q);
    }
}

/// The pod's `spec.<field>` entries.
fn containers<'a>(pod: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    pod.pointer(&format!("/spec/{field}")).and_then(Value::as_array).into_iter().flatten()
}

/// A resource list (`{"cpu": "500m"}`), leaving out what does not parse.
fn resources(list: Option<&Value>) -> Resources {
    list.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(name, v)| Some((name.clone(), quantity::parse_quantity(v.as_str()?.trim()).ok()?)))
        .collect()
}

/// The object at `path` in `v`, created where missing or null; `None` if something else is in
/// the way.
fn object_at<'a>(v: &'a mut Value, path: &[&str]) -> Option<&'a mut Map<String, Value>> {
    let mut map = v.as_object_mut()?;
    for key in path {
        map = object_at_map(map, key)?;
    }
    Some(map)
}

fn object_at_map<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    let entry = map.entry(key).or_insert(Value::Null);
    if entry.is_null() {
        *entry = Value::Object(Map::new());
    }
    entry.as_object_mut()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn range(limits: Value) -> LimitRange {
        LimitRange::from_value(&json!({"spec": {"limits": limits}}))
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    /// Both phases, as the API server runs them.
    fn admit_pod(ranges: &[LimitRange], pod: &mut Value) -> Result<bool, Violations> {
        let changed = default_pod(ranges, pod);
        validate_pod(ranges, pod).map(|()| changed)
    }

    fn refusal(ranges: &[LimitRange], mut pod: Value) -> String {
        match admit_pod(ranges, &mut pod) {
            Err(v) => v.to_string(),
            Ok(_) => format!("admitted: {pod}"),
        }
    }

    #[test]
    fn containers_without_resources_get_the_defaults_and_the_annotation() {
        let lr = range(json!([{
            "type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "0.1"},
        }]));
        let mut p = pod(json!([{"name": "app"}, {"name": "side", "resources": {"requests": {"cpu": "50m"}}}]));
        p["spec"]["initContainers"] = json!([{"name": "init"}]);
        assert_eq!(admit_pod(&[lr], &mut p), Ok(true));
        assert_eq!(
            p["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "256Mi"}}),
            "the memory request defaults to the memory limit"
        );
        assert_eq!(p["spec"]["containers"][1]["resources"]["requests"], json!({"cpu": "50m", "memory": "256Mi"}));
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app; \
             memory request for container side; cpu, memory limit for container side; \
             cpu, memory request for init container init; cpu, memory limit for init container init"
        );
    }

    #[test]
    fn what_the_pod_sets_is_kept_and_an_own_limit_is_the_request() {
        let lr = range(json!([{"type": "Container", "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "100m"}}]));
        let mut p = pod(json!([{"name": "app", "resources": {"limits": {"cpu": "200m"}}}]));
        assert_eq!(admit_pod(&[lr], &mut p), Ok(false));
        assert_eq!(
            p["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "200m"}, "requests": {"cpu": "200m"}})
        );
        assert!(p["metadata"].get("annotations").is_none());
    }

    #[test]
    fn a_maximum_alone_is_the_default_limit_and_request_and_a_minimum_the_default_request() {
        let lr = range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}}]));
        let mut p = pod(json!([{"name": "app"}]));
        assert_eq!(admit_pod(&[lr], &mut p), Ok(true));
        assert_eq!(
            p["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "1"}, "requests": {"cpu": "1", "memory": "64Mi"}})
        );
    }

    #[test]
    fn the_first_limit_range_with_a_default_wins_and_each_is_checked() {
        let first = range(json!([{"type": "Container", "default": {"cpu": "300m"}}]));
        let second = range(json!([{"type": "Container", "default": {"cpu": "2"}, "max": {"cpu": "250m"}}]));
        let mut p = pod(json!([{"name": "app"}]));
        let ranges = [first, second];
        assert_eq!(
            admit_pod(&ranges, &mut p).map_err(|v| v.to_string()),
            Err("maximum cpu usage per Container is 250m, but limit is 300m".to_string())
        );
        assert_eq!(p["spec"]["containers"][0]["resources"]["limits"]["cpu"], "300m");
    }

    #[test]
    fn out_of_range_containers_are_refused_in_upstreams_words() {
        let lr = range(json!([{
            "type": "Container",
            "min": {"cpu": "100m"},
            "max": {"cpu": "1", "memory": "1Gi"},
            "maxLimitRequestRatio": {"memory": "2"},
        }]));
        let cases = [
            (
                json!([{"name": "a", "resources": {"requests": {"cpu": "50m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}}}]),
                "[minimum cpu usage per Container is 100m, but request is 50m, \
                 memory max limit to request ratio per Container is 2, but provided ratio is 4.000000]",
            ),
            (
                json!([{"name": "a", "resources": {"limits": {"cpu": "2", "memory": "1Gi"}}}]),
                "maximum cpu usage per Container is 1, but limit is 2",
            ),
            (
                json!([{"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "2Gi"}}}]),
                "maximum memory usage per Container is 1Gi, but limit is 2Gi",
            ),
            (
                json!([{"name": "a", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]),
                "maximum cpu usage per Container is 1, but request is 2",
            ),
        ];
        for (containers, want) in cases {
            assert_eq!(refusal(std::slice::from_ref(&lr), pod(containers)), want);
        }
    }

    #[test]
    fn missing_limits_and_requests_are_named() {
        // No defaults here: a Pod item gives none.
        let lr = range(json!([{"type": "Pod", "min": {"cpu": "100m"}, "max": {"memory": "1Gi"}}]));
        assert_eq!(
            refusal(&[lr], pod(json!([{"name": "a"}]))),
            "[minimum cpu usage per Pod is 100m.  No request is specified, \
             maximum memory usage per Pod is 1Gi.  No limit is specified]"
        );
        let lr = range(json!([{"type": "Pod", "maxLimitRequestRatio": {"cpu": "2"}}]));
        assert_eq!(
            refusal(&[lr], pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]))),
            "cpu max limit to request ratio per Pod is 2, but no limit is specified or limit is 0"
        );
    }

    #[test]
    fn pod_items_hold_the_sum_of_the_containers() {
        let lr = range(json!([{"type": "Pod", "max": {"memory": "1Gi", "cpu": "2"}}]));
        let two = json!([
            {"name": "a", "resources": {"limits": {"memory": "512Mi", "cpu": "1"}}},
            {"name": "b", "resources": {"limits": {"memory": "544Mi", "cpu": "1"}}},
        ]);
        assert_eq!(
            refusal(std::slice::from_ref(&lr), pod(two)),
            "maximum memory usage per Pod is 1Gi, but limit is 1056Mi"
        );
        // An init container runs alone; a sidecar runs beside the app containers.
        let mut p = pod(json!([{"name": "a", "resources": {"limits": {"memory": "512Mi", "cpu": "1"}}}]));
        p["spec"]["initContainers"] = json!([{"name": "i", "resources": {"limits": {"memory": "1Gi", "cpu": "2"}}}]);
        assert_eq!(admit_pod(std::slice::from_ref(&lr), &mut p.clone()), Ok(false));
        p["spec"]["initContainers"][0]["restartPolicy"] = json!("Always");
        assert_eq!(
            refusal(&[lr], p),
            "[maximum cpu usage per Pod is 2, but limit is 3, maximum memory usage per Pod is 1Gi, but limit is 1536Mi]"
        );
    }

    #[test]
    fn claims_are_held_to_their_storage_range() {
        let lr =
            range(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]));
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        let check = |c: Value| validate_claim(std::slice::from_ref(&lr), &c).map_err(|v| v.to_string());
        assert_eq!(check(claim("5Gi")), Ok(()));
        assert_eq!(
            check(claim("500Mi")),
            Err("minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi".into())
        );
        assert_eq!(
            check(claim("20Gi")),
            Err("maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi".into())
        );
        assert_eq!(
            check(json!({"spec": {}})),
            Err("[minimum storage usage per PersistentVolumeClaim is 1Gi.  No request is specified, \
                 maximum storage usage per PersistentVolumeClaim is 10Gi.  No request is specified]"
                .into())
        );
        // Container items say nothing about claims, and claims get no defaults.
        let containers = range(json!([{"type": "Container", "max": {"storage": "1Mi"}}]));
        assert_eq!(validate_claim(&[containers], &claim("5Gi")), Ok(()));
    }

    #[test]
    fn malformed_input_is_skipped_not_a_crash() {
        let lr = range(json!([
            {"type": "Container", "default": {"cpu": "lots"}, "max": {"memory": 12}},
            "not an item",
        ]));
        let mut p = json!({"spec": {"containers": [{"name": "a", "resources": "none"}, 7]}, "metadata": []});
        assert_eq!(admit_pod(std::slice::from_ref(&lr), &mut p), Ok(false));
        assert_eq!(LimitRange::from_value(&json!("x")), LimitRange::default());
        assert_eq!(validate_claim(&[lr], &json!(null)), Ok(()));
    }

    #[test]
    fn a_limit_range_without_items_changes_nothing() {
        let mut p = pod(json!([{"name": "a"}]));
        let before = p.clone();
        assert_eq!(admit_pod(&[LimitRange::default()], &mut p), Ok(false));
        assert_eq!(p, before);
    }
}

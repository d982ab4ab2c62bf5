//! The HorizontalPodAutoscaler's arithmetic, as upstream's replica calculator and normalization
//! do it: which pods count, the replica count one metric proposes, then the stabilization window
//! and the scaling limits. Pure functions over plain numbers; the controller brings the pods,
//! metrics and history.

use std::collections::BTreeMap;

use k8s_openapi::api::autoscaling::v2::{HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscalerBehavior};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How a pod takes part in a metric's average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Group {
    /// Counted with its metric.
    Ready,
    /// Pending, or (for cpu) not ready or too freshly ready for its sample to be trusted.
    Unready,
    /// Running but without a sample.
    Missing,
    /// Being deleted or failed: left out.
    Ignored,
}

/// What [`group`] needs to know of a pod.
#[derive(Debug, Clone, Default)]
pub struct PodState {
    pub deleting: bool,
    pub phase: String,
    pub start_time: Option<Timestamp>,
    /// The Ready condition: its status and last transition, if the pod has one.
    pub ready: Option<(bool, Timestamp)>,
}

/// Timings of the cpu readiness rules (upstream's `--horizontal-pod-autoscaler-cpu-initialization-period`
/// and `--horizontal-pod-autoscaler-initial-readiness-delay`).
#[derive(Debug, Clone, Copy)]
pub struct Readiness {
    pub cpu_initialization_period: SignedDuration,
    pub initial_readiness_delay: SignedDuration,
}

impl Default for Readiness {
    fn default() -> Self {
        Readiness {
            cpu_initialization_period: SignedDuration::from_mins(5),
            initial_readiness_delay: SignedDuration::from_secs(30),
        }
    }
}

/// Where a pod goes for a metric of `resource`; `sample` is when its metric was taken and over
/// what window, if it has one.
pub fn group(
    pod: &PodState,
    sample: Option<(Timestamp, SignedDuration)>,
    resource: &str,
    now: Timestamp,
    r: Readiness,
) -> Group {
    if pod.deleting || pod.phase == "Failed" {
        return Group::Ignored;
    }
    if pod.phase == "Pending" {
        return Group::Unready;
    }
    let Some((taken, window)) = sample else { return Group::Missing };
    if resource != "cpu" {
        return Group::Ready;
    }
    let (Some((ready, changed)), Some(started)) = (pod.ready, pod.start_time) else { return Group::Unready };
    let unready = if started + r.cpu_initialization_period > now {
        // Still starting: only a ready pod whose sample was taken a whole window after it
        // became ready counts.
        !ready || taken < changed + window
    } else {
        // Unready and never ready since it started: its cpu is start-up noise.
        !ready && started + r.initial_readiness_delay > changed
    };
    if unready { Group::Unready } else { Group::Ready }
}

/// A metric's target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Per pod, in milli-units (millicores, or milli-bytes for memory).
    AverageValue(i64),
}

/// One metric's answer: the proposal and what the status reports as current.
#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub replicas: i32,
    /// Percent of requests (for a Utilization target).
    pub utilization: Option<i32>,
    /// Mean per counted pod, in milli-units.
    pub average: i64,
}

/// Every pod the target selects: its group and, if known, its usage and request (milli-units).
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub group: Group,
    pub usage: Option<i64>,
    pub request: Option<i64>,
}

/// The usage ratio over `metrics` (pod → usage): mean usage against the target, or total usage
/// against total requests in percent (truncated, as upstream) against the target percent.
fn ratio(target: Target, metrics: &BTreeMap<&str, i64>, requests: &BTreeMap<&str, i64>) -> Option<(f64, i32, i64)> {
    let counted: Vec<(i64, i64)> =
        metrics.iter().map(|(pod, usage)| (*usage, requests.get(pod).copied().unwrap_or(0))).collect();
    if counted.is_empty() {
        return None;
    }
    let total: i64 = counted.iter().map(|(u, _)| u).sum();
    let average = total / counted.len() as i64;
    match target {
        Target::Utilization(percent) => {
            let requested: i64 = counted.iter().map(|(_, r)| r).sum();
            if requested == 0 || percent <= 0 {
                return None;
            }
            let utilization = i32::try_from(total * 100 / requested).unwrap_or(i32::MAX);
            Some((f64::from(utilization) / f64::from(percent), utilization, average))
        }
        Target::AverageValue(per_pod) if per_pod > 0 => Some((average as f64 / per_pod as f64, 0, average)),
        Target::AverageValue(_) => None,
    }
}

/// The replica count one Resource metric asks for (upstream's replica calculator): a ratio from
/// the ready pods; pods without samples count as at target on a scale-down and as idle on a
/// scale-up, unready pods as idle on a scale-up; within `tolerance` of 1, or if those guesses
/// flip the direction, nothing changes.
pub fn replicas(
    current: i32,
    target: Target,
    samples: &BTreeMap<String, Sample>,
    tolerance: f64,
) -> Result<Proposal, String> {
    if let Target::Utilization(_) = target
        && let Some(pod) = samples.iter().find(|(_, s)| s.group != Group::Ignored && s.request.is_none())
    {
        return Err(format!("missing request for the resource in pod {}", pod.0));
    }
    let requests: BTreeMap<&str, i64> =
        samples.iter().filter_map(|(pod, s)| Some((pod.as_str(), s.request?))).collect();
    let mut metrics: BTreeMap<&str, i64> = samples
        .iter()
        .filter(|(_, s)| s.group == Group::Ready)
        .filter_map(|(pod, s)| Some((pod.as_str(), s.usage?)))
        .collect();
    let ready = metrics.len();
    let Some((usage_ratio, utilization, average)) = ratio(target, &metrics, &requests) else {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    };
    let proposal = |replicas: i32| Proposal {
        replicas,
        utilization: matches!(target, Target::Utilization(_)).then_some(utilization),
        average,
    };
    let in_group = |g: Group| samples.iter().filter(move |(_, s)| s.group == g).map(|(pod, _)| pod.as_str());
    let missing: Vec<&str> = in_group(Group::Missing).collect();
    let scale_up_with_unready = in_group(Group::Unready).next().is_some() && usage_ratio > 1.0;
    if !scale_up_with_unready && missing.is_empty() {
        if (1.0 - usage_ratio).abs() <= tolerance {
            return Ok(proposal(current));
        }
        return Ok(proposal((usage_ratio * ready as f64).ceil() as i32));
    }
    for pod in &missing {
        let assumed = match target {
            _ if usage_ratio > 1.0 => 0,
            Target::Utilization(percent) => requests.get(pod).copied().unwrap_or(0) * i64::from(percent.max(100)) / 100,
            Target::AverageValue(per_pod) => per_pod,
        };
        if usage_ratio != 1.0 {
            metrics.insert(pod, assumed);
        }
    }
    if scale_up_with_unready {
        for pod in in_group(Group::Unready) {
            metrics.insert(pod, 0);
        }
    }
    let Some((new_ratio, _, _)) = ratio(target, &metrics, &requests) else { return Ok(proposal(current)) };
    if (1.0 - new_ratio).abs() <= tolerance
        || (usage_ratio < 1.0 && new_ratio > 1.0)
        || (usage_ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(proposal(current));
    }
    let replicas = (new_ratio * metrics.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(proposal(current));
    }
    Ok(proposal(replicas))
}

/// A recommendation remembered for the stabilization window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    pub at: Timestamp,
}

/// A change made to the target's replicas, remembered for the rate policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    pub change: i32,
    pub at: Timestamp,
}

/// A condition the normalization sets: type, status, reason, message.
pub type Condition = (&'static str, bool, &'static str, String);

/// What normalization decided, with the AbleToScale and ScalingLimited conditions it explains
/// itself with.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalized {
    pub replicas: i32,
    pub conditions: Vec<Condition>,
}

/// The history of one autoscaler.
#[derive(Debug, Clone, Default)]
pub struct History {
    pub recommendations: Vec<Recommendation>,
    pub scale_up: Vec<ScaleEvent>,
    pub scale_down: Vec<ScaleEvent>,
}

/// The bounds and windows normalization works within.
#[derive(Debug, Clone)]
pub struct Limits<'a> {
    pub min: i32,
    pub max: i32,
    pub behavior: Option<&'a HorizontalPodAutoscalerBehavior>,
    /// The controller's `--horizontal-pod-autoscaler-downscale-stabilization`, for autoscalers
    /// that set no scale-down window.
    pub downscale_stabilization: SignedDuration,
}

/// Upstream's default rules when `behavior` (or one side of it) is not set.
pub fn default_rules(up: bool) -> HPAScalingRules {
    let policy = |type_: &str, value| HPAScalingPolicy { type_: type_.into(), value, period_seconds: 15 };
    if up {
        HPAScalingRules {
            stabilization_window_seconds: Some(0),
            select_policy: Some("Max".into()),
            policies: Some(vec![policy("Pods", 4), policy("Percent", 100)]),
            ..Default::default()
        }
    } else {
        HPAScalingRules {
            stabilization_window_seconds: None,
            select_policy: Some("Max".into()),
            policies: Some(vec![policy("Percent", 100)]),
            ..Default::default()
        }
    }
}

fn window(rules: &HPAScalingRules, fallback: SignedDuration) -> SignedDuration {
    rules.stabilization_window_seconds.map_or(fallback, |s| SignedDuration::from_secs(i64::from(s)))
}

/// Replicas changed within the last `period` seconds.
fn changed_within(events: &[ScaleEvent], period: i32, now: Timestamp) -> i32 {
    let cutoff = now - SignedDuration::from_secs(i64::from(period));
    events.iter().filter(|e| e.at > cutoff).map(|e| e.change).sum()
}

/// The most (`up`) or fewest replicas the rate policies allow now.
fn rate_limit(rules: &HPAScalingRules, up: bool, current: i32, h: &History, now: Timestamp) -> i32 {
    let select = rules.select_policy.as_deref().unwrap_or("Max");
    if select == "Disabled" {
        return current;
    }
    // "Max" picks the policy allowing the largest change: the highest limit up, the lowest down.
    let largest_change = select != "Min";
    let mut limit: Option<i32> = None;
    for p in rules.policies.iter().flatten() {
        let start = current - changed_within(&h.scale_up, p.period_seconds, now)
            + changed_within(&h.scale_down, p.period_seconds, now);
        let proposed = match (p.type_.as_str(), up) {
            ("Pods", true) => start + p.value,
            ("Pods", false) => start - p.value,
            (_, true) => (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32,
            (_, false) => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        };
        let pick_higher = largest_change == up;
        limit = Some(match limit {
            None => proposed,
            Some(l) if pick_higher => l.max(proposed),
            Some(l) => l.min(proposed),
        });
    }
    limit.unwrap_or(current)
}

/// Stabilizes `desired` against the recent recommendations (which it joins), then bounds it by
/// minReplicas, maxReplicas and the scaling rate: upstream's normalization, with behaviors when
/// the autoscaler has them and the older fixed rules (at most double, at least 4) when not.
pub fn normalize(current: i32, desired: i32, limits: &Limits, h: &mut History, now: Timestamp) -> Normalized {
    let up_rules = limits.behavior.and_then(|b| b.scale_up.clone()).unwrap_or_else(|| default_rules(true));
    let down_rules = limits.behavior.and_then(|b| b.scale_down.clone()).unwrap_or_else(|| default_rules(false));
    let up_window =
        if limits.behavior.is_some() { window(&up_rules, SignedDuration::ZERO) } else { SignedDuration::ZERO };
    let down_window = window(&down_rules, limits.downscale_stabilization);
    let (up_cutoff, down_cutoff) = (now - up_window, now - down_window);
    let (mut up, mut down) = (desired, desired);
    for r in &h.recommendations {
        if r.at > up_cutoff {
            up = up.min(r.replicas);
        }
        if r.at > down_cutoff {
            down = down.max(r.replicas);
        }
    }
    let stabilized = current.max(up).min(down);
    h.recommendations.retain(|r| r.at > up_cutoff || r.at > down_cutoff);
    h.recommendations.push(Recommendation { replicas: desired, at: now });
    let able = if stabilized != desired {
        if desired >= current {
            (
                "AbleToScale",
                true,
                "ScaleUpStabilized",
                "recent recommendations were lower than current one, applying the lowest recent recommendation"
                    .to_string(),
            )
        } else {
            (
                "AbleToScale",
                true,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation"
                    .to_string(),
            )
        }
    } else {
        ("AbleToScale", true, "ReadyForNewScale", "recommended size matches current size".to_string())
    };
    let (replicas, reason, message) = if limits.behavior.is_some() {
        bound_by_rates(current, stabilized, limits, &up_rules, &down_rules, h, now)
    } else {
        bound_by_fixed_rules(current, stabilized, limits)
    };
    let limited = ("ScalingLimited", replicas != stabilized, reason, message.to_string());
    Normalized { replicas, conditions: vec![able, limited] }
}

fn bound_by_rates(
    current: i32,
    desired: i32,
    limits: &Limits,
    up_rules: &HPAScalingRules,
    down_rules: &HPAScalingRules,
    h: &History,
    now: Timestamp,
) -> (i32, &'static str, &'static str) {
    if desired > current {
        let rate = rate_limit(up_rules, true, current, h, now).max(current);
        let (most, reason, message) = if limits.max > rate {
            (rate, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
        } else {
            (limits.max, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
        };
        if desired > most {
            return (most, reason, message);
        }
    } else if desired < current {
        let rate = rate_limit(down_rules, false, current, h, now).min(current);
        let (fewest, reason, message) = if limits.min < rate {
            (rate, "ScaleDownLimit", "the desired replica count is decreasing faster than the maximum scale rate")
        } else {
            (limits.min, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
        };
        if desired < fewest {
            return (fewest, reason, message);
        }
    }
    (desired, "DesiredWithinRange", "the desired count is within the acceptable range")
}

fn bound_by_fixed_rules(current: i32, desired: i32, limits: &Limits) -> (i32, &'static str, &'static str) {
    let scale_up_limit = (2 * current).max(4);
    let (most, reason, message) = if limits.max > scale_up_limit {
        (scale_up_limit, "ScaleUpLimit", "the desired replica count is increasing faster than the maximum scale rate")
    } else {
        (limits.max, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
    };
    if desired < limits.min {
        return (limits.min, "TooFewReplicas", "the desired replica count is less than the minimum replica count");
    }
    if desired > most {
        return (most, reason, message);
    }
    (desired, "DesiredWithinRange", "the desired count is within the acceptable range")
}

/// Remembers a change of the target's replicas (only autoscalers with behaviors use them), and
/// forgets changes older than the longest policy period.
pub fn record_scale(
    h: &mut History,
    behavior: Option<&HorizontalPodAutoscalerBehavior>,
    from: i32,
    to: i32,
    now: Timestamp,
) {
    let Some(b) = behavior else { return };
    let longest = |rules: Option<&HPAScalingRules>, up| {
        let rules = rules.cloned().unwrap_or_else(|| default_rules(up));
        rules.policies.iter().flatten().map(|p| p.period_seconds).max().unwrap_or(0)
    };
    let (up_period, down_period) = (longest(b.scale_up.as_ref(), true), longest(b.scale_down.as_ref(), false));
    h.scale_up.retain(|e| e.at > now - SignedDuration::from_secs(i64::from(up_period)));
    h.scale_down.retain(|e| e.at > now - SignedDuration::from_secs(i64::from(down_period)));
    if to > from {
        h.scale_up.push(ScaleEvent { change: to - from, at: now });
    } else if to < from {
        h.scale_down.push(ScaleEvent { change: from - to, at: now });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    fn ready(usage: i64, request: i64) -> Sample {
        Sample { group: Group::Ready, usage: Some(usage), request: Some(request) }
    }

    fn samples(list: &[(&str, Sample)]) -> BTreeMap<String, Sample> {
        list.iter().map(|(n, s)| ((*n).to_string(), s.clone())).collect()
    }

    #[test]
    fn pods_are_grouped_as_upstream_does() {
        let r = Readiness::default();
        let now = at(1_000);
        let window = SignedDuration::from_secs(10);
        let running = |started: i64, ready: bool, changed: i64| PodState {
            phase: "Running".into(),
            start_time: Some(at(started)),
            ready: Some((ready, at(changed))),
            ..Default::default()
        };
        let cases = [
            ("deleting", PodState { deleting: true, ..running(0, true, 0) }, Some(now), "cpu", Group::Ignored),
            ("failed", PodState { phase: "Failed".into(), ..Default::default() }, Some(now), "cpu", Group::Ignored),
            ("pending", PodState { phase: "Pending".into(), ..Default::default() }, None, "cpu", Group::Unready),
            ("no sample", running(0, true, 0), None, "cpu", Group::Missing),
            ("long ready", running(0, true, 10), Some(now), "cpu", Group::Ready),
            ("fresh, sample after a window", running(900, true, 950), Some(at(970)), "cpu", Group::Ready),
            ("fresh, sample too early", running(900, true, 950), Some(at(955)), "cpu", Group::Unready),
            ("fresh, not ready", running(900, false, 950), Some(now), "cpu", Group::Unready),
            ("old, never ready", running(0, false, 10), Some(now), "cpu", Group::Unready),
            ("old, was ready once", running(0, false, 500), Some(now), "cpu", Group::Ready),
            ("memory ignores readiness", running(900, false, 950), Some(now), "memory", Group::Ready),
        ];
        for (name, pod, sample, resource, want) in cases {
            assert_eq!(group(&pod, sample.map(|t| (t, window)), resource, now, r), want, "{name}");
        }
    }

    #[test]
    fn utilization_scales_by_the_ratio_of_total_usage_to_requests() {
        let two = samples(&[("a", ready(400, 200)), ("b", ready(400, 200))]);
        // 200% of requests against a 50% target: 4× the ready pods.
        let p = replicas(2, Target::Utilization(50), &two, 0.1).expect("proposal");
        assert_eq!((p.replicas, p.utilization, p.average), (8, Some(200), 400));
        // Within the tolerance: unchanged.
        let near = samples(&[("a", ready(105, 200)), ("b", ready(105, 200))]);
        assert_eq!(replicas(2, Target::Utilization(50), &near, 0.1).map(|p| p.replicas), Ok(2));
        // Scale down.
        let idle = samples(&[("a", ready(10, 200)), ("b", ready(10, 200)), ("c", ready(10, 200))]);
        assert_eq!(replicas(3, Target::Utilization(50), &idle, 0.1).map(|p| p.replicas), Ok(1));
    }

    #[test]
    fn average_value_scales_by_the_mean_per_pod() {
        let s = samples(&[("a", ready(300, 0)), ("b", ready(100, 0))]);
        assert_eq!(replicas(2, Target::AverageValue(100), &s, 0.1).map(|p| (p.replicas, p.average)), Ok((4, 200)));
    }

    #[test]
    fn missing_and_unready_pods_damp_the_change_the_upstream_way() {
        let missing = Sample { group: Group::Missing, usage: None, request: Some(200) };
        let unready = Sample { group: Group::Unready, usage: None, request: Some(200) };
        // Scale up with a pod lacking metrics: it counts as idle. (400+0)/400 = 100% vs 50% → 4.
        let s = samples(&[("a", ready(400, 200)), ("b", missing.clone())]);
        assert_eq!(replicas(2, Target::Utilization(50), &s, 0.1).map(|p| p.replicas), Ok(4));
        // Scale down with a pod lacking metrics: it counts as at 100%; the ratio flips → unchanged.
        let s = samples(&[("a", ready(20, 200)), ("b", missing)]);
        assert_eq!(replicas(2, Target::Utilization(50), &s, 0.1).map(|p| p.replicas), Ok(2));
        // Unready pods count as idle on a scale-up.
        let s = samples(&[("a", ready(300, 200)), ("b", unready.clone()), ("c", unready)]);
        assert_eq!(replicas(3, Target::Utilization(50), &s, 0.1).map(|p| p.replicas), Ok(3));
        // Only unready pods: no answer.
        let s = samples(&[("b", Sample { group: Group::Unready, usage: Some(1), request: Some(1) })]);
        assert!(replicas(1, Target::Utilization(50), &s, 0.1).is_err());
        // A pod without a request makes utilization meaningless.
        let s = samples(&[("a", Sample { group: Group::Ready, usage: Some(1), request: None })]);
        assert!(replicas(1, Target::Utilization(50), &s, 0.1).is_err());
    }

    fn limits(min: i32, max: i32, behavior: Option<&HorizontalPodAutoscalerBehavior>) -> Limits<'_> {
        Limits { min, max, behavior, downscale_stabilization: SignedDuration::from_mins(5) }
    }

    #[test]
    fn without_behavior_scale_up_is_at_most_double_or_four_and_down_waits_out_the_window() {
        let mut h = History::default();
        let n = normalize(1, 10, &limits(1, 10, None), &mut h, at(0));
        assert_eq!(n.replicas, 4);
        assert_eq!(n.conditions[1].2, "ScaleUpLimit");
        assert_eq!(normalize(4, 20, &limits(1, 6, None), &mut h, at(15)).replicas, 6);
        // The load goes: the highest recommendation of the last 5 minutes holds.
        let n = normalize(6, 1, &limits(1, 6, None), &mut h, at(30));
        assert_eq!((n.replicas, n.conditions[0].2), (6, "ScaleDownStabilized"));
        assert_eq!(normalize(6, 1, &limits(1, 6, None), &mut h, at(314)).replicas, 6);
        assert_eq!(normalize(6, 1, &limits(1, 6, None), &mut h, at(316)).replicas, 1);
        // Below the minimum.
        assert_eq!(normalize(3, 1, &limits(2, 6, None), &mut History::default(), at(0)).replicas, 2);
    }

    #[test]
    fn behaviors_limit_the_rate_per_period_and_the_window() {
        let behavior = HorizontalPodAutoscalerBehavior {
            scale_up: Some(HPAScalingRules {
                policies: Some(vec![HPAScalingPolicy { type_: "Pods".into(), value: 2, period_seconds: 60 }]),
                ..default_rules(true)
            }),
            scale_down: Some(HPAScalingRules { stabilization_window_seconds: Some(10), ..default_rules(false) }),
        };
        let mut h = History::default();
        let l = limits(1, 10, Some(&behavior));
        let n = normalize(2, 9, &l, &mut h, at(0));
        assert_eq!((n.replicas, n.conditions[1].1, n.conditions[1].2), (4, true, "ScaleUpLimit"));
        record_scale(&mut h, Some(&behavior), 2, 4, at(0));
        // Within the same 60 s only the 2 already added were allowed.
        assert_eq!(normalize(4, 9, &l, &mut h, at(30)).replicas, 4);
        assert_eq!(normalize(4, 9, &l, &mut h, at(61)).replicas, 6);
        // Scale down after the 10 s window: 100% per 15 s allows it all.
        assert_eq!(normalize(6, 1, &l, &mut h, at(65)).replicas, 6);
        assert_eq!(normalize(6, 1, &l, &mut h, at(80)).replicas, 1);
        // selectPolicy Disabled never scales down.
        let frozen = HorizontalPodAutoscalerBehavior {
            scale_down: Some(HPAScalingRules {
                select_policy: Some("Disabled".into()),
                stabilization_window_seconds: Some(0),
                ..default_rules(false)
            }),
            ..Default::default()
        };
        assert_eq!(normalize(6, 1, &limits(1, 10, Some(&frozen)), &mut History::default(), at(0)).replicas, 6);
    }
}

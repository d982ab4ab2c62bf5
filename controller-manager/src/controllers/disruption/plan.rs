//! A PodDisruptionBudget's arithmetic, pure: how many pods are expected, how many must stay
//! healthy, and how many may be disrupted now.

use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub expected: i32,
    pub desired: i32,
    pub current: i32,
    pub allowed: i32,
}

/// `n` or `p%` of `of`, percentages rounded up as upstream.
fn scaled(value: &IntOrString, of: i32) -> Option<i32> {
    match value {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(s) => {
            let p: i64 = s.strip_suffix('%')?.parse().ok()?;
            let n = (p * i64::from(of) + 99) / 100;
            i32::try_from(n).ok()
        }
    }
}

/// The budget of `spec` over `expected` pods of which `healthy` are healthy. Without
/// `minAvailable` or `maxUnavailable`, nothing may be disrupted.
pub fn budget(spec: &PodDisruptionBudgetSpec, expected: i32, healthy: i32) -> Budget {
    let desired = match (&spec.min_available, &spec.max_unavailable) {
        (_, Some(max)) => expected - scaled(max, expected).unwrap_or(0),
        (Some(min), None) => scaled(min, expected).unwrap_or(expected),
        (None, None) => expected,
    }
    .max(0);
    Budget { expected, desired, current: healthy, allowed: (healthy - desired).max(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(min: Option<IntOrString>, max: Option<IntOrString>) -> PodDisruptionBudgetSpec {
        PodDisruptionBudgetSpec { min_available: min, max_unavailable: max, ..Default::default() }
    }

    #[test]
    fn budgets_follow_min_available_or_max_unavailable() {
        use IntOrString::{Int, String as Pct};
        let cases = [
            (spec(Some(Int(2)), None), 3, 3, (2, 1)),
            (spec(Some(Int(2)), None), 3, 2, (2, 0)),
            (spec(Some(Pct("50%".into())), None), 3, 3, (2, 1)),
            (spec(None, Some(Int(1))), 4, 4, (3, 1)),
            (spec(None, Some(Pct("25%".into()))), 5, 5, (3, 2)),
            (spec(None, Some(Int(5))), 3, 1, (0, 1)),
            (spec(None, None), 3, 3, (3, 0)),
        ];
        for (i, (s, expected, healthy, (desired, allowed))) in cases.into_iter().enumerate() {
            let b = budget(&s, expected, healthy);
            assert_eq!((b.desired, b.allowed), (desired, allowed), "case {i}");
        }
    }
}

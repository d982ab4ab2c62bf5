//! Values rendered the way upstream's error messages show them: Go's `%#v` of the internal
//! types (`map[string]string{"app":"web"}`, `[]string{"10.0.0.1"}`, `v1.LabelSelector{...}`).

use std::collections::BTreeMap;

use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use api_types::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// A Go string literal (`%q`).
pub(super) fn go_string(s: &str) -> String {
    format!("{s:?}")
}

/// `map[string]string{"a":"1", "b":"2"}`, or `map[string]string(nil)` when absent.
pub(super) fn go_string_map(map: Option<&BTreeMap<String, String>>) -> String {
    match map {
        None => "map[string]string(nil)".to_string(),
        Some(map) => {
            let entries: Vec<String> = map.iter().map(|(k, v)| format!("{}:{}", go_string(k), go_string(v))).collect();
            format!("map[string]string{{{}}}", entries.join(", "))
        }
    }
}

/// `[]string{"a", "b"}`, or `[]string(nil)` when absent.
pub(super) fn go_string_slice(items: Option<&[String]>) -> String {
    match items {
        None => "[]string(nil)".to_string(),
        Some(items) => {
            let items: Vec<String> = items.iter().map(|s| go_string(s)).collect();
            format!("[]string{{{}}}", items.join(", "))
        }
    }
}

/// A `*metav1.LabelSelector` as upstream prints it: `null` when absent, else
/// `v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}`.
pub(super) fn go_label_selector(selector: Option<&LabelSelector>) -> String {
    let Some(selector) = selector else {
        return "null".to_string();
    };
    let expressions = match &selector.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(exprs) => {
            let items: Vec<String> = exprs
                .iter()
                .map(|e| {
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_string(&e.key),
                        go_string(&e.operator),
                        go_string_slice(e.values.as_deref())
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(selector.match_labels.as_ref()),
        expressions
    )
}

/// An `intstr.IntOrString` as `%#v` prints it.
pub(super) fn go_int_or_string(value: Option<&IntOrString>) -> String {
    match value {
        None => "null".to_string(),
        Some(IntOrString::Int(n)) => {
            format!("intstr.IntOrString{{Type:0, IntVal:{n}, StrVal:\"\"}}")
        }
        Some(IntOrString::String(s)) => format!("intstr.IntOrString{{Type:1, IntVal:0, StrVal:{}}}", go_string(s)),
    }
}

/// The `(protocol, port)` key upstream reports duplicate Service ports with.
pub(super) fn go_service_port_key(protocol: &str, port: i32) -> String {
    format!(
        "core.ServicePort{{Name:\"\", Protocol:{}, AppProtocol:(*string)(nil), Port:{port}, \
         TargetPort:intstr.IntOrString{{Type:0, IntVal:0, StrVal:\"\"}}, NodePort:0}}",
        go_string(protocol)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn maps_print_sorted_with_quoted_keys_and_values() {
        let cases = [
            (None, "map[string]string(nil)"),
            (Some(labels(&[])), "map[string]string{}"),
            (Some(labels(&[("tier", "web"), ("app", "x")])), r#"map[string]string{"app":"x", "tier":"web"}"#),
        ];
        for (map, want) in cases {
            assert_eq!(go_string_map(map.as_ref()), want);
        }
    }

    #[test]
    fn slices_print_like_go() {
        let ips = vec!["10.0.0.1".to_string(), "fd00::1".to_string()];
        assert_eq!(go_string_slice(Some(&ips)), r#"[]string{"10.0.0.1", "fd00::1"}"#);
        assert_eq!(go_string_slice(None), "[]string(nil)");
    }

    #[test]
    fn label_selectors_print_like_go() {
        let cases = [
            (None, "null".to_string()),
            (
                Some(LabelSelector { match_labels: Some(labels(&[("app", "x")])), match_expressions: None }),
                r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#.to_string(),
            ),
            (
                Some(LabelSelector {
                    match_labels: None,
                    match_expressions: Some(vec![LabelSelectorRequirement {
                        key: "tier".to_string(),
                        operator: "In".to_string(),
                        values: Some(vec!["a".to_string(), "b".to_string()]),
                    }]),
                }),
                r#"v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:"tier", Operator:"In", Values:[]string{"a", "b"}}}}"#.to_string(),
            ),
        ];
        for (selector, want) in cases {
            assert_eq!(go_label_selector(selector.as_ref()), want);
        }
    }
}

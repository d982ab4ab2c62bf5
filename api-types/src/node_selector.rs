//! Node selector terms (a required node affinity, a PersistentVolume's node affinity, a
//! preferred term): whether a node's labels and name satisfy them, as upstream evaluates them.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelector, NodeSelectorRequirement, NodeSelectorTerm};

/// One requirement against the node's value for its key (In, NotIn, Exists, DoesNotExist, and
/// Gt/Lt on integers); an unknown operator matches nothing.
fn requirement(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or_default();
    let number = |s: &str| s.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (value.and_then(number), values.first().and_then(|v| number(v))) else {
                return false;
            };
            if r.operator == "Gt" { have > bound } else { have < bound }
        }
        _ => false,
    }
}

/// One term: its label expressions and `metadata.name` fields all hold; an empty term matches
/// nothing, as upstream.
pub fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if expressions.is_empty() && fields.is_empty() {
        return false;
    }
    expressions.iter().all(|r| requirement(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| r.key == "metadata.name" && requirement(r, Some(node_name)))
}

/// A whole selector: any of its terms matches.
pub fn matches(selector: &NodeSelector, labels: &BTreeMap<String, String>, node_name: &str) -> bool {
    selector.node_selector_terms.iter().any(|t| term_matches(t, labels, node_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(expressions: serde_json::Value, fields: serde_json::Value) -> NodeSelectorTerm {
        serde_json::from_value(serde_json::json!({"matchExpressions": expressions, "matchFields": fields}))
            .expect("term")
    }

    #[test]
    fn operators_fields_and_empty_terms() {
        let labels: BTreeMap<String, String> =
            [("zone", "a"), ("cores", "8")].into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let expr = |key: &str, op: &str, values: &[&str]| {
            term(serde_json::json!([{"key": key, "operator": op, "values": values}]), serde_json::json!([]))
        };
        let cases = [
            (expr("zone", "In", &["a", "b"]), true),
            (expr("zone", "NotIn", &["a"]), false),
            (expr("rack", "NotIn", &["r1"]), true),
            (expr("zone", "Exists", &[]), true),
            (expr("zone", "DoesNotExist", &[]), false),
            (expr("cores", "Gt", &["4"]), true),
            (expr("cores", "Lt", &["4"]), false),
            (expr("zone", "Gt", &["4"]), false),
            (expr("zone", "Near", &["a"]), false),
            (term(serde_json::json!([]), serde_json::json!([])), false),
            (
                term(
                    serde_json::json!([]),
                    serde_json::json!([{"key": "metadata.name", "operator": "In", "values": ["n1"]}]),
                ),
                true,
            ),
            (
                term(
                    serde_json::json!([]),
                    serde_json::json!([{"key": "metadata.uid", "operator": "In", "values": ["n1"]}]),
                ),
                false,
            ),
        ];
        for (i, (t, want)) in cases.iter().enumerate() {
            assert_eq!(term_matches(t, &labels, "n1"), *want, "case {i}: {t:?}");
        }
        let either = NodeSelector { node_selector_terms: vec![expr("zone", "In", &["b"]), expr("zone", "In", &["a"])] };
        assert!(matches(&either, &labels, "n1"));
    }
}

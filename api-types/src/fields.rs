//! Field selectors (`?fieldSelector=spec.nodeName=n1,status.phase!=Running`).
//!
//! A selector is a list of `field=value`, `field==value` or `field!=value` terms that must all
//! hold. As in `k8s.io/apimachinery/pkg/fields`, terms are split at unescaped commas, the field
//! ends at the first operator, values may escape `\,` `\=` and `\\`, whitespace is significant,
//! and an absent field compares as the empty string. Which fields a kind supports is for the API
//! server to decide; [`FieldSelector::requirements`] lists the ones a selector uses.

use std::fmt;
use std::str::FromStr;

/// Why a field selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldSelectorError {
    #[error("invalid selector: '{selector}'; can't understand '{term}'")]
    Unparseable { selector: String, term: String },
    #[error("invalid field selector: invalid escape sequence: {0}")]
    InvalidEscape(String),
    #[error("invalid field selector: unescaped character in value: '{0}'")]
    UnescapedChar(char),
}

/// How a term compares the object's field with its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `=` or `==`.
    Equals,
    /// `!=`.
    NotEquals,
}

impl Op {
    fn as_str(self) -> &'static str {
        match self {
            Op::Equals => "=",
            Op::NotEquals => "!=",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Term {
    field: String,
    op: Op,
    /// Unescaped.
    value: String,
}

/// A conjunction of field terms; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<Term>,
}

impl FieldSelector {
    /// Parses the `fieldSelector` syntax. Terms are sorted, as upstream does, so that equal
    /// selectors written in a different order render the same.
    pub fn parse(s: &str) -> Result<Self, FieldSelectorError> {
        let mut raw_terms = split_terms(s);
        raw_terms.sort_unstable();
        let mut terms = Vec::new();
        for raw in raw_terms.into_iter().filter(|t| !t.is_empty()) {
            let (field, op, value) = split_term(raw)
                .ok_or_else(|| FieldSelectorError::Unparseable { selector: s.to_string(), term: raw.to_string() })?;
            terms.push(Term { field: field.to_string(), op, value: unescape_value(value)? });
        }
        Ok(Self { terms })
    }

    /// Whether the object satisfies every term; `get(field)` returns the object's value for a
    /// field path, `None` when absent (which compares as "").
    pub fn matches(&self, get: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|term| {
            let have = get(&term.field).unwrap_or_default();
            (have == term.value) == (term.op == Op::Equals)
        })
    }

    /// The terms as `(field, op, value)`, values unescaped.
    pub fn requirements(&self) -> impl Iterator<Item = (&str, Op, &str)> {
        self.terms.iter().map(|t| (t.field.as_str(), t.op, t.value.as_str()))
    }

    /// The value `field` must equal, if a term says so (as `spec.nodeName=n1` does).
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms.iter().find(|t| t.field == field && t.op == Op::Equals).map(|t| t.value.as_str())
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

impl FromStr for FieldSelector {
    type Err = FieldSelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, term) in self.terms.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{}{}{}", term.field, term.op.as_str(), escape_value(&term.value))?;
        }
        Ok(())
    }
}

/// Escapes `\`, `,` and `=` so that `value` can be written into a field selector.
pub fn escape_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, '\\' | ',' | '=') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped
}

/// Splits at commas not preceded by an escaping backslash; escapes are kept for later.
fn split_terms(s: &str) -> Vec<&str> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            ',' => {
                terms.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&s[start..]);
    terms
}

/// Splits a term at its first operator; `==` is tried before `=` so it is not half-consumed.
fn split_term(term: &str) -> Option<(&str, Op, &str)> {
    const OPERATORS: [(&str, Op); 3] = [("!=", Op::NotEquals), ("==", Op::Equals), ("=", Op::Equals)];
    term.char_indices().find_map(|(i, _)| {
        let rest = &term[i..];
        OPERATORS
            .iter()
            .find(|(symbol, _)| rest.starts_with(symbol))
            .map(|(symbol, op)| (&term[..i], *op, &rest[symbol.len()..]))
    })
}

fn unescape_value(raw: &str) -> Result<String, FieldSelectorError> {
    let mut value = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped @ ('\\' | ',' | '=')) => value.push(escaped),
                Some(other) => return Err(FieldSelectorError::InvalidEscape(format!("\\{other}"))),
                None => return Err(FieldSelectorError::InvalidEscape("\\".to_string())),
            },
            ',' | '=' => return Err(FieldSelectorError::UnescapedChar(c)),
            _ => value.push(c),
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn parse(s: &str) -> FieldSelector {
        FieldSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    fn object(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let fields: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |field| fields.get(field).cloned()
    }

    #[test]
    fn parse_renders_sorted_canonical_terms() {
        let cases = [
            ("", ""),
            (",", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("spec.nodeName=n1,metadata.name=x", "metadata.name=x,spec.nodeName=n1"),
            ("a=b,,c=d", "a=b,c=d"),
            ("a=", "a="),
            ("a=x\\,y", "a=x\\,y"),
            ("a=x\\=y\\\\z", "a=x\\=y\\\\z"),
            ("a== b", "a= b"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn requirements_list_fields_operators_and_unescaped_values() {
        let sel = parse("status.phase!=Running,spec.nodeName=n\\,1, x ==y");
        let got: Vec<_> = sel.requirements().collect();
        assert_eq!(
            got,
            [
                (" x ", Op::Equals, "y"),
                ("spec.nodeName", Op::Equals, "n,1"),
                ("status.phase", Op::NotEquals, "Running")
            ]
        );
        assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("n,1"));
        assert_eq!(sel.requires_exact_match("status.phase"), None);
        assert_eq!(sel.requires_exact_match("metadata.name"), None);
    }

    #[test]
    fn parse_rejects_terms_without_operator_and_bad_escapes() {
        let cases = [
            ("a", FieldSelectorError::Unparseable { selector: "a".into(), term: "a".into() }),
            ("a=b,c", FieldSelectorError::Unparseable { selector: "a=b,c".into(), term: "c".into() }),
            ("a=b=c", FieldSelectorError::UnescapedChar('=')),
            ("a!==b", FieldSelectorError::UnescapedChar('=')),
            ("a=b\\", FieldSelectorError::InvalidEscape("\\".into())),
            ("a=b\\n", FieldSelectorError::InvalidEscape("\\n".into())),
        ];
        for (input, want) in cases {
            assert_eq!(FieldSelector::parse(input), Err(want), "{input:?}");
        }
    }

    #[test]
    fn errors_read_like_upstream() {
        let err = FieldSelector::parse("a=b,c").expect_err("no operator");
        assert_eq!(err.to_string(), "invalid selector: 'a=b,c'; can't understand 'c'");
    }

    #[test]
    fn matches_compares_fields_with_absent_as_empty() {
        let pod = object(&[("spec.nodeName", "n1"), ("status.phase", "Running"), ("metadata.name", "a,b")]);
        let cases = [
            ("", true),
            ("spec.nodeName=n1", true),
            ("spec.nodeName==n1", true),
            ("spec.nodeName=n2", false),
            ("spec.nodeName!=n2", true),
            ("spec.nodeName!=n1", false),
            ("spec.nodeName=n1,status.phase!=Running", false),
            ("spec.nodeName=n1,status.phase!=Pending", true),
            ("metadata.name=a\\,b", true),
            ("spec.hostname=", true),
            ("spec.hostname!=", false),
            ("spec.hostname!=x", true),
            ("spec.hostname=x", false),
        ];
        for (selector, want) in cases {
            assert_eq!(parse(selector).matches(&pod), want, "{selector:?}");
        }
    }

    #[test]
    fn escape_value_round_trips_through_parse() {
        for value in ["plain", "a,b", "a=b", "back\\slash", "", "ünï"] {
            let sel = parse(&format!("f={}", escape_value(value)));
            assert_eq!(sel.requires_exact_match("f"), Some(value));
        }
    }
}

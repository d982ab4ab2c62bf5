//! Label selectors: parsed from `?labelSelector=` or built from a `metav1.LabelSelector`.
//!
//! A selector is a list of requirements that must all hold (`app=web,tier notin (db),!canary`).
//! The string syntax, the validation and the matching rules follow
//! `k8s.io/apimachinery/pkg/labels`: requirements are kept sorted by key, `!=` and `notin` hold
//! when the key is absent, and the empty selector matches everything.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

use crate::names::{is_qualified_name, is_valid_label_value};

/// Why a label selector was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse label selector: found '{found}', expected: {expected}")]
    Syntax { found: String, expected: &'static str },
    #[error("invalid label key \"{key}\": {}", reasons.join("; "))]
    InvalidKey { key: String, reasons: Vec<String> },
    #[error("invalid label value \"{value}\" for key \"{key}\": {}", reasons.join("; "))]
    InvalidValue { key: String, value: String, reasons: Vec<String> },
    #[error("invalid values for key \"{key}\": {reason}")]
    WrongValues { key: String, reason: &'static str },
    #[error("\"{0}\" is not a valid label selector operator")]
    UnknownOperator(String),
}

/// How a requirement compares a label's value with its own values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    /// `key=value` or `key==value`.
    Equals,
    /// `key!=value`; holds when the key is absent.
    NotEquals,
    /// `key in (a,b)`.
    In,
    /// `key notin (a,b)`; holds when the key is absent.
    NotIn,
    /// `key`.
    Exists,
    /// `!key`.
    DoesNotExist,
    /// `key>5`: the label's value is an integer greater than the requirement's.
    GreaterThan,
    /// `key<5`: the label's value is an integer less than the requirement's.
    LessThan,
}

/// One condition on one label key. Values are validated, sorted and free of duplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

/// A conjunction of [`Requirement`]s, sorted by key. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

impl Requirement {
    /// Validates the key, each value, and that the number of values suits the operator.
    pub fn new(key: &str, operator: Operator, values: Vec<String>) -> Result<Self, SelectorError> {
        let reasons = is_qualified_name(key);
        if !reasons.is_empty() {
            return Err(SelectorError::InvalidKey { key: key.to_string(), reasons });
        }
        let wrong = |reason| Err(SelectorError::WrongValues { key: key.to_string(), reason });
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return wrong("for 'in', 'notin' operators, values set can't be empty");
            }
            Operator::Equals | Operator::NotEquals if values.len() != 1 => {
                return wrong("exact-match compatibility requires one single value");
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return wrong("values set must be empty for exists and does not exist");
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return wrong("for 'Gt', 'Lt' operators, exactly one value is required");
                }
                if values.iter().any(|v| v.parse::<i64>().is_err()) {
                    return wrong("for 'Gt', 'Lt' operators, the value must be an integer");
                }
            }
            _ => {}
        }
        for value in &values {
            let reasons = is_valid_label_value(value);
            if !reasons.is_empty() {
                return Err(SelectorError::InvalidValue { key: key.to_string(), value: value.clone(), reasons });
            }
        }
        let mut values = values;
        values.sort();
        values.dedup();
        Ok(Self { key: key.to_string(), operator, values })
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn operator(&self) -> Operator {
        self.operator
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let label = labels.get(&self.key);
        let listed = |v: &String| self.values.binary_search(v).is_ok();
        match self.operator {
            Operator::Equals | Operator::In => label.is_some_and(listed),
            Operator::NotEquals | Operator::NotIn => !label.is_some_and(listed),
            Operator::Exists => label.is_some(),
            Operator::DoesNotExist => label.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let as_int = |v: &String| v.parse::<i64>().ok();
                let (Some(have), Some(bound)) = (label.and_then(as_int), self.values.first().and_then(as_int)) else {
                    return false;
                };
                if self.operator == Operator::GreaterThan { have > bound } else { have < bound }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let values = self.values.join(",");
        match self.operator {
            Operator::Equals => write!(f, "{}={values}", self.key),
            Operator::NotEquals => write!(f, "{}!={values}", self.key),
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::GreaterThan => write!(f, "{}>{values}", self.key),
            Operator::LessThan => write!(f, "{}<{values}", self.key),
        }
    }
}

impl LabelSelector {
    /// A selector requiring all of `requirements`.
    pub fn new(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Self { requirements }
    }

    /// Parses the `labelSelector` string syntax; the empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        Parser { tokens: lex(s), pos: 0 }.selector().map(Self::new)
    }

    /// Converts a non-nil `metav1.LabelSelector`; an empty one selects everything.
    pub fn from_label_selector(sel: &metav1::LabelSelector) -> Result<Self, SelectorError> {
        let mut requirements = Vec::new();
        for (key, value) in sel.match_labels.iter().flatten() {
            requirements.push(Requirement::new(key, Operator::Equals, vec![value.clone()])?);
        }
        for expr in sel.match_expressions.iter().flatten() {
            let operator = match expr.operator.as_str() {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => return Err(SelectorError::UnknownOperator(other.to_string())),
            };
            requirements.push(Requirement::new(&expr.key, operator, expr.values.clone().unwrap_or_default())?);
        }
        Ok(Self::new(requirements))
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// True for the selector that matches everything.
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A key, a value, or the words `in` and `notin`, which are only keywords after a key.
    Word(String),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    Open,
    Close,
    Comma,
}

impl Token {
    fn literal(token: Option<&Token>) -> String {
        let symbol = match token {
            None => "",
            Some(Token::Word(word)) => word,
            Some(Token::Not) => "!",
            Some(Token::Equals) => "=",
            Some(Token::DoubleEquals) => "==",
            Some(Token::NotEquals) => "!=",
            Some(Token::Greater) => ">",
            Some(Token::Less) => "<",
            Some(Token::Open) => "(",
            Some(Token::Close) => ")",
            Some(Token::Comma) => ",",
        };
        symbol.to_string()
    }
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '>' | '<')
}

fn is_blank(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n')
}

/// Splits a selector into tokens. Every character is part of some token, so this cannot fail.
fn lex(s: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        let token = match c {
            c if is_blank(c) => continue,
            '=' if chars.next_if_eq(&'=').is_some() => Token::DoubleEquals,
            '!' if chars.next_if_eq(&'=').is_some() => Token::NotEquals,
            '=' => Token::Equals,
            '!' => Token::Not,
            '>' => Token::Greater,
            '<' => Token::Less,
            '(' => Token::Open,
            ')' => Token::Close,
            ',' => Token::Comma,
            first => {
                let mut word = first.to_string();
                while let Some(c) = chars.next_if(|c| !is_blank(*c) && !is_special(*c)) {
                    word.push(c);
                }
                Token::Word(word)
            }
        };
        tokens.push(token);
    }
    tokens
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        token
    }

    fn at_end_of_requirement(&self) -> bool {
        matches!(self.peek(), None | Some(Token::Comma))
    }

    fn selector(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        if self.peek().is_none() {
            return Ok(requirements);
        }
        if !matches!(self.peek(), Some(Token::Word(_) | Token::Not)) {
            return Err(syntax(self.peek(), "!, identifier, or 'end of string'"));
        }
        loop {
            requirements.push(self.requirement()?);
            match self.next() {
                None => return Ok(requirements),
                Some(Token::Comma) if matches!(self.peek(), Some(Token::Word(_) | Token::Not)) => {}
                Some(Token::Comma) => return Err(syntax(self.peek(), "identifier after ','")),
                other => return Err(syntax(other.as_ref(), "',' or 'end of string'")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        let negated = self.peek() == Some(&Token::Not);
        if negated {
            self.pos += 1;
        }
        let key = match self.next() {
            Some(Token::Word(key)) => key,
            other => return Err(syntax(other.as_ref(), "identifier")),
        };
        if negated {
            return Requirement::new(&key, Operator::DoesNotExist, Vec::new());
        }
        if self.at_end_of_requirement() {
            return Requirement::new(&key, Operator::Exists, Vec::new());
        }
        let operator = match self.next() {
            Some(Token::Equals | Token::DoubleEquals) => Operator::Equals,
            Some(Token::NotEquals) => Operator::NotEquals,
            Some(Token::Greater) => Operator::GreaterThan,
            Some(Token::Less) => Operator::LessThan,
            Some(Token::Word(word)) if word == "in" => Operator::In,
            Some(Token::Word(word)) if word == "notin" => Operator::NotIn,
            other => return Err(syntax(other.as_ref(), "in, notin, =, ==, !=, gt, lt")),
        };
        let values = match operator {
            Operator::In | Operator::NotIn => self.value_list()?,
            _ => vec![self.exact_value()?],
        };
        Requirement::new(&key, operator, values)
    }

    /// The value after `=`, `!=`, `>` or `<`; nothing at all means the empty value.
    fn exact_value(&mut self) -> Result<String, SelectorError> {
        if self.at_end_of_requirement() {
            return Ok(String::new());
        }
        match self.next() {
            Some(Token::Word(value)) => Ok(value),
            other => Err(syntax(other.as_ref(), "identifier")),
        }
    }

    /// `(a,b)`; an item left out, as in `()` or `(a,)`, is the empty value.
    fn value_list(&mut self) -> Result<Vec<String>, SelectorError> {
        match self.next() {
            Some(Token::Open) => {}
            other => return Err(syntax(other.as_ref(), "'('")),
        }
        let mut values = Vec::new();
        loop {
            match self.next() {
                Some(Token::Word(value)) => {
                    values.push(value);
                    match self.next() {
                        Some(Token::Comma) => {}
                        Some(Token::Close) => return Ok(values),
                        other => return Err(syntax(other.as_ref(), "',' or ')'")),
                    }
                }
                Some(Token::Comma) => values.push(String::new()),
                Some(Token::Close) => {
                    values.push(String::new());
                    return Ok(values);
                }
                other => return Err(syntax(other.as_ref(), "',', ')' or identifier")),
            }
        }
    }
}

fn syntax(found: Option<&Token>, expected: &'static str) -> SelectorError {
    SelectorError::Syntax { found: Token::literal(found), expected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn parse(s: &str) -> LabelSelector {
        LabelSelector::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
    }

    #[test]
    fn parse_renders_the_canonical_form() {
        let cases = [
            ("", ""),
            ("   ", ""),
            ("a=b", "a=b"),
            ("a==b", "a=b"),
            ("a!=b", "a!=b"),
            ("a", "a"),
            ("!a", "!a"),
            ("a>5", "a>5"),
            ("a<5", "a<5"),
            ("a in (y,x)", "a in (x,y)"),
            ("a notin ( x , y , x )", "a notin (x,y)"),
            ("a=", "a="),
            ("a in ()", "a in ()"),
            ("a in (,x)", "a in (,x)"),
            ("a in (x,)", "a in (,x)"),
            ("a in (x,,y)", "a in (,x,y)"),
            ("z=1, a=2 ,m", "a=2,m,z=1"),
            (" x = y , ! z ", "x=y,!z"),
            ("\tapp\n in\r(web)", "app in (web)"),
            ("in in (in), notin notin (notin)", "in in (in),notin notin (notin)"),
            ("a=in", "a=in"),
            ("example.com/App_1=V.2", "example.com/App_1=V.2"),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn canonical_form_parses_back_to_the_same_selector() {
        for input in ["a in (,x)", "a=,b!=c,!d,e,f>1,g notin (h)"] {
            let first = parse(input);
            assert_eq!(parse(&first.to_string()), first, "{input}");
        }
    }

    #[test]
    fn parse_rejects_malformed_selectors() {
        let cases = [
            ("a,", "found '', expected: identifier after ','"),
            (",a", "found ',', expected: !, identifier, or 'end of string'"),
            ("a,,b", "found ',', expected: identifier after ','"),
            ("a b", "found 'b', expected: in, notin, =, ==, !=, gt, lt"),
            ("a=b c", "found 'c', expected: ',' or 'end of string'"),
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            ("a in x", "found 'x', expected: '('"),
            ("a in (x", "found '', expected: ',' or ')'"),
            ("a in (x y)", "found 'y', expected: ',' or ')'"),
            ("a in (=)", "found '=', expected: ',', ')' or identifier"),
            ("a==(", "found '(', expected: identifier"),
            ("!a=b", "found '=', expected: ',' or 'end of string'"),
            ("!", "found '', expected: identifier"),
            ("!!a", "found '!', expected: identifier"),
            ("=a", "found '=', expected: !, identifier, or 'end of string'"),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input);
            assert!(matches!(err, SelectorError::Syntax { .. }), "{input}: {err}");
            assert!(err.to_string().ends_with(want), "{input}: {err}");
        }
    }

    #[test]
    fn parse_validates_keys_and_values() {
        let bad_keys = ["-a=b", "a/b/c", "a_", &format!("{}=x", "k".repeat(64)), "Example.com/a", "/a"];
        for input in bad_keys {
            let err = LabelSelector::parse(input).expect_err(input);
            assert!(matches!(err, SelectorError::InvalidKey { .. }), "{input}: {err}");
        }
        let bad_values = ["a=-b", "a in (x,y/z)", "a!=b_", &format!("a={}", "v".repeat(64))];
        for input in bad_values {
            let err = LabelSelector::parse(input).expect_err(input);
            assert!(matches!(err, SelectorError::InvalidValue { .. }), "{input}: {err}");
        }
        for input in ["a>b", "a<1.5", "a>"] {
            let err = LabelSelector::parse(input).expect_err(input);
            assert!(matches!(err, SelectorError::WrongValues { .. }), "{input}: {err}");
        }
    }

    #[test]
    fn matches_follows_upstream_semantics() {
        let web = labels(&[("app", "web"), ("tier", "front"), ("replicas", "3"), ("empty", "")]);
        let none = labels(&[]);
        let cases = [
            ("", &web, true),
            ("", &none, true),
            ("app=web", &web, true),
            ("app==web", &web, true),
            ("app=db", &web, false),
            ("app=web", &none, false),
            ("app!=db", &web, true),
            ("app!=web", &web, false),
            ("app!=web", &none, true),
            ("app in (db,web)", &web, true),
            ("app in (db)", &web, false),
            ("app in (web)", &none, false),
            ("app notin (db)", &web, true),
            ("app notin (web,db)", &web, false),
            ("app notin (web)", &none, true),
            ("app", &web, true),
            ("app", &none, false),
            ("!app", &web, false),
            ("!app", &none, true),
            ("replicas>2", &web, true),
            ("replicas>3", &web, false),
            ("replicas<4", &web, true),
            ("replicas<3", &web, false),
            ("replicas>2", &none, false),
            ("app>2", &web, false),
            ("empty=", &web, true),
            ("empty in ()", &web, true),
            ("empty", &web, true),
            ("missing=", &web, false),
            ("app=web,tier=front", &web, true),
            ("app=web,tier=back", &web, false),
            ("app=web,!canary,replicas>1", &web, true),
        ];
        for (selector, labels, want) in cases {
            assert_eq!(parse(selector).matches(labels), want, "{selector:?} on {labels:?}");
        }
    }

    #[test]
    fn greater_than_compares_integers_not_strings() {
        let ten = labels(&[("n", "10")]);
        assert!(parse("n>9").matches(&ten));
        assert!(!parse("n<9").matches(&ten));
        assert!(LabelSelector::parse("n>-1").is_err(), "'-1' is not a valid label value");
    }

    #[test]
    fn empty_selector_object_matches_everything() {
        let sel = LabelSelector::from_label_selector(&metav1::LabelSelector::default()).expect("empty is valid");
        assert!(sel.is_empty());
        assert!(sel.matches(&labels(&[("any", "thing")])));
    }

    fn expression(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: values.map(|v| v.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn from_label_selector_combines_match_labels_and_expressions() {
        let sel = metav1::LabelSelector {
            match_labels: Some(labels(&[("tier", "front"), ("app", "web")])),
            match_expressions: Some(vec![
                expression("env", "In", Some(&["prod", "dev"])),
                expression("canary", "DoesNotExist", None),
                expression("zone", "NotIn", Some(&["a"])),
                expression("owner", "Exists", Some(&[])),
            ]),
        };
        let sel = LabelSelector::from_label_selector(&sel).expect("valid selector");
        assert_eq!(sel.to_string(), "app=web,!canary,env in (dev,prod),owner,tier=front,zone notin (a)");
        let pod = labels(&[("app", "web"), ("tier", "front"), ("env", "prod"), ("owner", "me")]);
        assert!(sel.matches(&pod));
        let canary = labels(&[("app", "web"), ("tier", "front"), ("env", "prod"), ("owner", "me"), ("canary", "1")]);
        assert!(!sel.matches(&canary));
    }

    #[test]
    fn from_label_selector_rejects_bad_expressions() {
        let cases = [
            (expression("a", "In", None), "for 'in', 'notin' operators, values set can't be empty"),
            (expression("a", "NotIn", Some(&[])), "for 'in', 'notin' operators, values set can't be empty"),
            (expression("a", "Exists", Some(&["x"])), "values set must be empty for exists and does not exist"),
            (expression("a", "DoesNotExist", Some(&["x"])), "values set must be empty for exists and does not exist"),
            (expression("a", "Gt", Some(&["1"])), "\"Gt\" is not a valid label selector operator"),
            (expression("a", "in", Some(&["x"])), "\"in\" is not a valid label selector operator"),
            (expression("a b", "Exists", None), "invalid label key \"a b\""),
            (expression("a", "In", Some(&["x y"])), "invalid label value \"x y\" for key \"a\""),
        ];
        for (expr, want) in cases {
            let sel = metav1::LabelSelector { match_expressions: Some(vec![expr.clone()]), ..Default::default() };
            let err = LabelSelector::from_label_selector(&sel).expect_err(&expr.key);
            assert!(err.to_string().contains(want), "{expr:?}: {err}");
        }
    }

    #[test]
    fn from_label_selector_validates_match_labels() {
        let sel = metav1::LabelSelector { match_labels: Some(labels(&[("app", "-web")])), ..Default::default() };
        let err = LabelSelector::from_label_selector(&sel).expect_err("invalid value");
        assert!(matches!(err, SelectorError::InvalidValue { .. }), "{err}");
    }

    #[test]
    fn requirements_are_exposed_sorted_by_key() {
        let sel = parse("b in (2,1),a");
        let got: Vec<(&str, Operator, &[String])> =
            sel.requirements().iter().map(|r| (r.key(), r.operator(), r.values())).collect();
        assert_eq!(
            got,
            [("a", Operator::Exists, &[][..]), ("b", Operator::In, &["1".to_string(), "2".to_string()][..])]
        );
    }
}

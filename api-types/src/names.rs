//! Name validation (DNS-1123, DNS-1035, qualified names, label values) with upstream's messages.
//!
//! Every check returns the list of problems found, empty when the input is valid, worded like
//! `k8s.io/apimachinery/pkg/util/validation` so that clients see the messages they know.

/// Longest DNS-1123 or DNS-1035 label, qualified-name name part and label value.
pub const MAX_LABEL_LENGTH: usize = 63;
/// Longest DNS-1123 subdomain.
pub const MAX_SUBDOMAIN_LENGTH: usize = 253;
/// Number of random characters `generateName` appends.
pub const GENERATED_SUFFIX_LENGTH: usize = 5;
/// The alphabet of those characters: no vowels (no words) and no look-alikes such as 0/o, 1/l.
const GENERATED_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// Which naming rule a kind's `metadata.name` follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    /// Most kinds (Pods, ConfigMaps, Deployments, ...).
    Dns1123Subdomain,
    /// Namespaces, for example.
    Dns1123Label,
    /// Services: the name becomes a DNS label that must start with a letter.
    Dns1035Label,
    /// Anything that only has to be a safe URL path segment (RBAC roles and bindings).
    PathSegment,
}

/// Problems with `value` as a lowercase RFC 1123 label (`my-name`, `123-abc`).
pub fn is_dns1123_label(value: &str) -> Vec<String> {
    let mut errs = max_len(value, MAX_LABEL_LENGTH);
    if !matches_dns1123_label(value) {
        if matches_dns1123_subdomain(value) {
            // Only dots can make a valid subdomain an invalid label.
            errs.push("must not contain dots".to_string());
        } else {
            errs.push(regex_error(DNS1123_LABEL_MSG, DNS1123_LABEL_FMT, &["my-name", "123-abc"]));
        }
    }
    errs
}

/// Problems with `value` as a lowercase RFC 1123 subdomain (`example.com`).
pub fn is_dns1123_subdomain(value: &str) -> Vec<String> {
    let mut errs = max_len(value, MAX_SUBDOMAIN_LENGTH);
    if !matches_dns1123_subdomain(value) {
        errs.push(regex_error(DNS1123_SUBDOMAIN_MSG, DNS1123_SUBDOMAIN_FMT, &["example.com"]));
    }
    errs
}

/// Problems with `value` as an RFC 1035 label: a DNS-1123 label that starts with a letter.
pub fn is_dns1035_label(value: &str) -> Vec<String> {
    let mut errs = max_len(value, MAX_LABEL_LENGTH);
    if !matches_dns1035_label(value) {
        errs.push(regex_error(DNS1035_LABEL_MSG, DNS1035_LABEL_FMT, &["my-name", "abc-123"]));
    }
    errs
}

/// Problems with `value` as a label or annotation key: `[prefix/]name`, where the prefix is a
/// DNS-1123 subdomain and the name is at most 63 alphanumerics, `-`, `_` and `.`.
pub fn is_qualified_name(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = value.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                let prefixed = is_dns1123_subdomain(prefix).into_iter().map(|e| format!("prefix part {e}"));
                errs.extend(prefixed);
            }
            *name
        }
        _ => {
            let rule = regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"]);
            return vec![format!(
                "a qualified name {rule} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
            )];
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > MAX_LABEL_LENGTH {
        errs.push(format!("name part {}", max_len_error(MAX_LABEL_LENGTH)));
    }
    if !matches_qualified_name(name) {
        let rule = regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"]);
        errs.push(format!("name part {rule}"));
    }
    errs
}

/// Problems with `value` as a label value: empty, or up to 63 characters of a qualified name.
pub fn is_valid_label_value(value: &str) -> Vec<String> {
    let mut errs = max_len(value, MAX_LABEL_LENGTH);
    if !value.is_empty() && !matches_qualified_name(value) {
        errs.push(regex_error(LABEL_VALUE_MSG, LABEL_VALUE_FMT, &["MyValue", "my_value", "12345"]));
    }
    errs
}

/// Problems with `name` as a URL path segment: not `.` or `..`, and no `/` or `%`.
pub fn is_valid_path_segment(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"].iter().filter(|bad| name.contains(*bad)).map(|bad| format!("may not contain '{bad}'")).collect()
}

/// Problems with `name` as the `metadata.name` of a kind following `rule`.
///
/// An empty name gives "must be non-empty"; the API server reports a missing name (and no
/// `generateName`) itself, as upstream's "name or generateName is required".
pub fn validate_object_name(rule: NameRule, name: &str) -> Vec<String> {
    if name.is_empty() {
        return vec!["must be non-empty".to_string()];
    }
    match rule {
        NameRule::Dns1123Subdomain => is_dns1123_subdomain(name),
        NameRule::Dns1123Label => is_dns1123_label(name),
        NameRule::Dns1035Label => is_dns1035_label(name),
        NameRule::PathSegment => is_valid_path_segment(name),
    }
}

/// Problems with `prefix` as a `metadata.generateName`: like [`validate_object_name`], except
/// that a trailing `-` is allowed because random characters will follow it.
pub fn validate_generate_name(rule: NameRule, prefix: &str) -> Vec<String> {
    match prefix.strip_suffix('-') {
        Some(stem) if !stem.is_empty() => validate_object_name(rule, &format!("{stem}a")),
        _ => validate_object_name(rule, prefix),
    }
}

/// Upstream's `generateName`: `prefix`, cut so that the result fits 63 characters, followed by
/// five characters drawn from a vowel-free alphabet using `random`.
pub fn generate_name(prefix: &str, mut random: impl FnMut() -> u32) -> String {
    let mut cut = prefix.len().min(MAX_LABEL_LENGTH - GENERATED_SUFFIX_LENGTH);
    while !prefix.is_char_boundary(cut) {
        cut -= 1;
    }
    let mut name = prefix[..cut].to_string();
    for _ in 0..GENERATED_SUFFIX_LENGTH {
        let index = random() as usize % GENERATED_ALPHABET.len();
        name.push(char::from(GENERATED_ALPHABET[index]));
    }
    name
}

fn matches_dns1123_label(s: &str) -> bool {
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    delimited_by(s, ok, ok, |c| ok(c) || c == b'-')
}

fn matches_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(matches_dns1123_label)
}

fn matches_dns1035_label(s: &str) -> bool {
    let ok = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    delimited_by(s, |c| c.is_ascii_lowercase(), ok, |c| ok(c) || c == b'-')
}

fn matches_qualified_name(s: &str) -> bool {
    let ok = |c: u8| c.is_ascii_alphanumeric();
    delimited_by(s, ok, ok, |c| ok(c) || matches!(c, b'-' | b'_' | b'.'))
}

/// True when `s` is non-empty, starts with a `first` byte, ends with a `last` byte and every
/// byte in between is a `middle` byte.
fn delimited_by(s: &str, first: impl Fn(u8) -> bool, last: impl Fn(u8) -> bool, middle: impl Fn(u8) -> bool) -> bool {
    match s.as_bytes() {
        [] => false,
        [only] => first(*only) && last(*only),
        [head, inner @ .., tail] => first(*head) && last(*tail) && inner.iter().all(|c| middle(*c)),
    }
}

fn max_len(value: &str, max: usize) -> Vec<String> {
    if value.len() > max { vec![max_len_error(max)] } else { Vec::new() }
}

fn max_len_error(max: usize) -> String {
    format!("must be no more than {max} characters")
}

/// Upstream's `RegexError`: the rule, some examples, and the regular expression.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let examples: Vec<String> = examples.iter().map(|e| format!("'{e}', ")).collect();
    format!("{msg} (e.g. {}regex used for validation is '{fmt}')", examples.join(" or "))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL_REGEX_ERROR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
    const SUBDOMAIN_REGEX_ERROR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    const DNS1035_REGEX_ERROR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
    const NAME_PART_REGEX_ERROR: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
    const LABEL_VALUE_REGEX_ERROR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

    fn long(n: usize) -> String {
        "a".repeat(n)
    }

    #[test]
    fn dns1123_label_accepts_lowercase_alphanumerics_and_inner_dashes() {
        for ok in ["a", "0", "my-name", "123-abc", "a--b", &long(63)] {
            assert_eq!(is_dns1123_label(ok), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn dns1123_label_reports_upstream_messages() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[LABEL_REGEX_ERROR]),
            ("-a", &[LABEL_REGEX_ERROR]),
            ("a-", &[LABEL_REGEX_ERROR]),
            ("My-Name", &[LABEL_REGEX_ERROR]),
            ("a_b", &[LABEL_REGEX_ERROR]),
            ("a.b", &["must not contain dots"]),
            (&long(64), &["must be no more than 63 characters"]),
        ];
        for (input, want) in cases {
            assert_eq!(is_dns1123_label(input), *want, "{input}");
        }
    }

    #[test]
    fn dns1123_subdomain_accepts_dotted_labels_up_to_253_characters() {
        let max = format!("{}.{}.{}.{}", long(63), long(63), long(63), long(61));
        for ok in ["a", "example.com", "a-b.c-d.e", "1.2.3.4", &max] {
            assert_eq!(is_dns1123_subdomain(ok), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn dns1123_subdomain_reports_upstream_messages() {
        let too_long = format!("{}.{}.{}.{}", long(63), long(63), long(63), long(62));
        let cases: &[(&str, &[&str])] = &[
            ("", &[SUBDOMAIN_REGEX_ERROR]),
            (".a", &[SUBDOMAIN_REGEX_ERROR]),
            ("a..b", &[SUBDOMAIN_REGEX_ERROR]),
            ("a.", &[SUBDOMAIN_REGEX_ERROR]),
            ("A.com", &[SUBDOMAIN_REGEX_ERROR]),
            ("a.-b", &[SUBDOMAIN_REGEX_ERROR]),
            (&too_long, &["must be no more than 253 characters"]),
        ];
        for (input, want) in cases {
            assert_eq!(is_dns1123_subdomain(input), *want, "{input}");
        }
    }

    #[test]
    fn dns1035_label_requires_a_leading_letter() {
        let cases: &[(&str, &[&str])] = &[
            ("my-name", &[]),
            ("abc-123", &[]),
            ("a", &[]),
            ("1abc", &[DNS1035_REGEX_ERROR]),
            ("abc-", &[DNS1035_REGEX_ERROR]),
            ("a.b", &[DNS1035_REGEX_ERROR]),
            ("", &[DNS1035_REGEX_ERROR]),
            (&long(64), &["must be no more than 63 characters"]),
        ];
        for (input, want) in cases {
            assert_eq!(is_dns1035_label(input), *want, "{input}");
        }
    }

    #[test]
    fn qualified_name_allows_an_optional_subdomain_prefix() {
        let prefixed_max = format!("{}/{}", long(253), long(63));
        for ok in ["a", "MyName", "my.name", "123-abc", "a_b", "example.com/MyName", "k8s.io/a", &prefixed_max] {
            assert_eq!(is_qualified_name(ok), Vec::<String>::new(), "{ok}");
        }
    }

    #[test]
    fn qualified_name_reports_each_bad_part() {
        let prefix_error = format!("prefix part {SUBDOMAIN_REGEX_ERROR}");
        let cases: &[(&str, &[&str])] = &[
            ("", &["name part must be non-empty", NAME_PART_REGEX_ERROR]),
            ("-a", &[NAME_PART_REGEX_ERROR]),
            ("a/", &["name part must be non-empty", NAME_PART_REGEX_ERROR]),
            ("/a", &["prefix part must be non-empty"]),
            ("Example.com/a", &[&prefix_error]),
            (&long(64), &["name part must be no more than 63 characters"]),
        ];
        for (input, want) in cases {
            assert_eq!(is_qualified_name(input), *want, "{input}");
        }
    }

    #[test]
    fn qualified_name_with_two_slashes_gets_the_whole_rule() {
        let errs = is_qualified_name("a/b/c");
        assert_eq!(errs.len(), 1);
        assert!(errs[0].starts_with("a qualified name must consist of"), "{errs:?}");
        assert!(errs[0].ends_with("with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"));
    }

    #[test]
    fn label_value_may_be_empty_or_a_qualified_name_part() {
        let cases: &[(&str, &[&str])] = &[
            ("", &[]),
            ("MyValue", &[]),
            ("my_value", &[]),
            ("1.2", &[]),
            (&long(63), &[]),
            ("-a", &[LABEL_VALUE_REGEX_ERROR]),
            ("a/b", &[LABEL_VALUE_REGEX_ERROR]),
            ("a b", &[LABEL_VALUE_REGEX_ERROR]),
            (&long(64), &["must be no more than 63 characters"]),
        ];
        for (input, want) in cases {
            assert_eq!(is_valid_label_value(input), *want, "{input}");
        }
    }

    #[test]
    fn path_segment_rejects_dots_slashes_and_percents() {
        let cases: &[(&str, &[&str])] = &[
            ("system:admin", &[]),
            ("a.b", &[]),
            ("...", &[]),
            (".", &["may not be '.'"]),
            ("..", &["may not be '..'"]),
            ("a/b", &["may not contain '/'"]),
            ("a%2F/", &["may not contain '/'", "may not contain '%'"]),
        ];
        for (input, want) in cases {
            assert_eq!(is_valid_path_segment(input), *want, "{input}");
        }
    }

    #[test]
    fn object_name_follows_the_kinds_rule() {
        let cases: &[(NameRule, &str, bool)] = &[
            (NameRule::Dns1123Subdomain, "web.example", true),
            (NameRule::Dns1123Subdomain, "Web", false),
            (NameRule::Dns1123Label, "kube-system", true),
            (NameRule::Dns1123Label, "kube.system", false),
            (NameRule::Dns1035Label, "web", true),
            (NameRule::Dns1035Label, "1web", false),
            (NameRule::PathSegment, "system:controller:Foo", true),
            (NameRule::PathSegment, "..", false),
        ];
        for (rule, name, valid) in cases {
            assert_eq!(validate_object_name(*rule, name).is_empty(), *valid, "{rule:?} {name}");
        }
    }

    #[test]
    fn object_name_must_be_non_empty_under_every_rule() {
        for rule in [NameRule::Dns1123Subdomain, NameRule::Dns1123Label, NameRule::Dns1035Label, NameRule::PathSegment]
        {
            assert_eq!(validate_object_name(rule, ""), ["must be non-empty"], "{rule:?}");
        }
    }

    #[test]
    fn generate_name_prefix_may_end_with_a_dash() {
        let cases: &[(NameRule, &str, bool)] = &[
            (NameRule::Dns1123Subdomain, "web-", true),
            (NameRule::Dns1123Subdomain, "web", true),
            (NameRule::Dns1123Subdomain, "-", false),
            (NameRule::Dns1123Subdomain, "web--", true),
            (NameRule::Dns1123Subdomain, "web_-", false),
            (NameRule::Dns1035Label, "1web-", false),
            (NameRule::Dns1123Label, "", false),
        ];
        for (rule, prefix, valid) in cases {
            assert_eq!(validate_generate_name(*rule, prefix).is_empty(), *valid, "{rule:?} {prefix}");
        }
    }

    #[test]
    fn generate_name_appends_five_characters_from_the_alphabet() {
        let mut n = 0;
        let name = generate_name("web-", || {
            n += 1;
            n - 1
        });
        assert_eq!(name, "web-bcdfg");
        let wrapped = generate_name("", || 27 + 26);
        assert_eq!(wrapped, "99999");
    }

    #[test]
    fn generate_name_truncates_the_prefix_to_fit_63_characters() {
        let cases = [(long(10), 15), (long(58), 63), (long(59), 63), (long(300), 63)];
        for (prefix, want_len) in cases {
            let name = generate_name(&prefix, || 0);
            assert_eq!(name.len(), want_len, "{prefix}");
            assert!(name.ends_with("bbbbb"));
            assert!(is_dns1123_label(&name).is_empty());
        }
    }

    #[test]
    fn generate_name_never_splits_a_multibyte_character() {
        let prefix = format!("{}é", long(57));
        assert_eq!(generate_name(&prefix, || 0), format!("{}bbbbb", long(57)));
    }
}

//! Request bodies: JSON, YAML or Kubernetes protobuf into a JSON value, checked against the kind's Rust type so that
//! type errors are a 400, and unknown or duplicate fields follow `fieldValidation`
//! (Strict → 400, Warn → a `Warning` header, Ignore → nothing). The value that comes out is the
//! typed round trip, so unknown fields never reach storage.

use std::fmt;

use api_types::protobuf::Decoder;
use api_types::registry::{KindVisitor, visit_kind};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>) -> Result<Self, Error> {
        match v {
            None | Some("") | Some("Warn") => Ok(Self::Warn),
            Some("Strict") => Ok(Self::Strict),
            Some("Ignore") => Ok(Self::Ignore),
            Some(other) => {
                Err(Error::BadRequest(format!("fieldValidation must be one of Ignore, Warn, or Strict, got {other:?}")))
            }
        }
    }
}

/// The media type of a body, from its Content-Type header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Json,
    Yaml,
    /// `application/vnd.kubernetes.protobuf`, as client-go's typed clients send.
    Protobuf,
}

pub fn body_format(content_type: Option<&str>) -> Result<BodyFormat, Error> {
    let media = content_type.unwrap_or("application/json").split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" | "*/*" => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" => Ok(BodyFormat::Yaml),
        "application/vnd.kubernetes.protobuf" => Ok(BodyFormat::Protobuf),
        _ => Err(Error::UnsupportedMediaType(
            "application/json, application/yaml, application/vnd.kubernetes.protobuf".into(),
        )),
    }
}

/// Parses a body into a JSON value, reporting duplicate keys by path.
pub fn parse(format: BodyFormat, body: &[u8], protobuf: &Decoder) -> Result<(Value, Vec<String>), Error> {
    match format {
        BodyFormat::Protobuf => {
            let value =
                protobuf.decode(body).map_err(|e| Error::BadRequest(format!("error decoding protobuf: {e}")))?;
            Ok((value, Vec::new()))
        }
        BodyFormat::Json => {
            let mut duplicates = Vec::new();
            let mut de = serde_json::Deserializer::from_slice(body);
            let value = Checked { at: &Segment::Root, duplicates: &mut duplicates }
                .deserialize(&mut de)
                .and_then(|v| de.end().map(|()| v))
                .map_err(|e| Error::BadRequest(format!("error decoding JSON: {e}")))?;
            Ok((value, duplicates))
        }
        BodyFormat::Yaml => {
            let value: Value = yaml_serde::from_slice(body).map_err(|e| {
                let message = e.to_string();
                match message.strip_prefix("duplicate entry") {
                    Some(_) => Error::BadRequest(format!("strict decoding error: {message}")),
                    None => Error::BadRequest(format!("error decoding YAML: {message}")),
                }
            })?;
            Ok((value, Vec::new()))
        }
    }
}

/// A JSON value deserializer that records duplicate object keys instead of silently keeping
/// the last one, as upstream's strict decoder does.
struct Checked<'a, 'p> {
    /// Where the value being read sits; spelled out as a path only for a duplicate.
    at: &'p Segment<'p>,
    duplicates: &'a mut Vec<String>,
}

/// A place in a JSON document, as a chain up to the root.
enum Segment<'p> {
    Root,
    Key(&'p Segment<'p>, &'p str),
    Index(&'p Segment<'p>, usize),
}

impl Segment<'_> {
    /// Upstream's spelling: `spec.containers[0].name`.
    fn path(&self) -> String {
        match self {
            Segment::Root => String::new(),
            Segment::Key(Segment::Root, key) => key.to_string(),
            Segment::Key(parent, key) => format!("{}.{key}", parent.path()),
            Segment::Index(parent, i) => format!("{}[{i}]", parent.path()),
        }
    }
}

impl<'de> DeserializeSeed<'de> for Checked<'_, '_> {
    type Value = Value;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Checked<'_, '_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        loop {
            let here = Segment::Index(self.at, out.len());
            match seq.next_element_seed(Checked { at: &here, duplicates: &mut *self.duplicates })? {
                Some(v) => out.push(v),
                None => break,
            }
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let here = Segment::Key(self.at, &key);
            let value = map.next_value_seed(Checked { at: &here, duplicates: &mut *self.duplicates })?;
            if out.contains_key(&key) {
                self.duplicates.push(here.path());
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Checks `value` against the Rust type of `group`/`kind`: returns the typed round trip and the
/// paths of unknown fields. A type error is a 400.
pub fn typed_round_trip(group: &str, kind: &str, value: Value) -> Result<(Value, Vec<String>), Error> {
    /// The value is taken by the visit, so its strings move into the typed object.
    struct RoundTrip<'a>(&'a mut Option<Value>);
    impl KindVisitor for RoundTrip<'_> {
        type Output = Result<(Value, Vec<String>), String>;
        fn visit<T>(self) -> Self::Output
        where
            T: api_types::k8s_openapi::Resource + Serialize + DeserializeOwned + schemars::JsonSchema,
        {
            let mut unknown = Vec::new();
            let value = self.0.take().unwrap_or_default();
            let typed: T = serde_ignored::deserialize(value, |path| unknown.push(upstream_path(&path.to_string())))
                .map_err(|e| e.to_string())?;
            let back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
            Ok((back, unknown))
        }
    }
    let mut value = Some(value);
    match visit_kind(group, kind, RoundTrip(&mut value)) {
        Some(result) => result.map_err(|e| Error::BadRequest(format!("error decoding request body: {e}"))),
        None => Ok((value.unwrap_or_default(), Vec::new())),
    }
}

/// serde_ignored prints `spec.containers.0.foo`; upstream prints `spec.containers[0].foo`.
fn upstream_path(path: &str) -> String {
    let mut out = String::new();
    // `?` marks an Option layer; upstream paths have no such segment.
    for segment in path.split('.').map(|s| s.trim_end_matches('?')).filter(|s| !s.is_empty()) {
        if !segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{segment}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(segment);
        }
    }
    out
}

/// Applies `validation` to what decoding found: an error for Strict, warnings for Warn.
pub fn field_problems(
    validation: FieldValidation,
    unknown: &[String],
    duplicates: &[String],
) -> Result<Vec<String>, Error> {
    let problems: Vec<String> = unknown
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .chain(duplicates.iter().map(|p| format!("duplicate field \"{p}\"")))
        .collect();
    match validation {
        FieldValidation::Strict if !problems.is_empty() => {
            Err(Error::BadRequest(format!("strict decoding error: {}", problems.join(", "))))
        }
        FieldValidation::Warn => Ok(problems),
        _ => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn duplicate_keys_are_reported_with_their_path() {
        let body = br#"{"metadata":{"name":"a","name":"b"},"spec":{"containers":[{"name":"x","name":"y"}]}}"#;
        let (value, dups) = parse(BodyFormat::Json, body, &Decoder::new(&Default::default())).expect("parses");
        assert_eq!(dups, vec!["metadata.name", "spec.containers[0].name"]);
        assert_eq!(value["metadata"]["name"], "b");
    }

    #[test]
    fn unknown_fields_are_found_and_dropped_by_the_round_trip() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "a"},
            "spec": {"containers": [{"name": "c", "image": "busybox", "imagePullPolcy": "Always"}], "bogus": 1}});
        let (back, mut unknown) = typed_round_trip("", "Pod", pod).expect("decodes");
        unknown.sort();
        assert_eq!(unknown, vec!["spec.bogus", "spec.containers[0].imagePullPolcy"]);
        assert!(back["spec"].get("bogus").is_none());
        assert_eq!(back["spec"]["containers"][0]["image"], "busybox");
    }

    #[test]
    fn wrong_types_are_a_bad_request() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "a"}, "spec": {"replicas": "three"}});
        assert!(matches!(typed_round_trip("apps", "Deployment", deploy), Err(Error::BadRequest(_))));
    }

    #[test]
    fn strict_validation_rejects_and_warn_reports() {
        let unknown = vec!["spec.x".to_string()];
        assert!(field_problems(FieldValidation::Strict, &unknown, &[]).is_err());
        assert_eq!(
            field_problems(FieldValidation::Warn, &unknown, &[]).ok(),
            Some(vec!["unknown field \"spec.x\"".to_string()])
        );
        assert_eq!(field_problems(FieldValidation::Ignore, &unknown, &[]).ok(), Some(vec![]));
    }

    #[test]
    fn yaml_and_protobuf_media_types() {
        assert_eq!(body_format(Some("application/yaml")).ok(), Some(BodyFormat::Yaml));
        assert_eq!(body_format(Some("application/json; charset=utf-8")).ok(), Some(BodyFormat::Json));
        assert_eq!(body_format(Some("application/vnd.kubernetes.protobuf")).ok(), Some(BodyFormat::Protobuf));
        assert!(body_format(Some("application/cbor")).is_err());
        let protobuf = Decoder::new(&Default::default());
        let (v, _) = parse(BodyFormat::Yaml, b"metadata:\n  name: a\n", &protobuf).expect("yaml");
        assert_eq!(v["metadata"]["name"], "a");
    }
}

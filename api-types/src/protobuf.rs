//! Kubernetes' protobuf encoding (`application/vnd.kubernetes.protobuf`), decoded into the same
//! JSON value a JSON body would give. client-go's typed clients, and so `kubectl create` and
//! `kubectl run`, send their bodies this way and have no fallback to JSON.
//!
//! A body is the four bytes `k8s\0` and a `runtime.Unknown` message: `typeMeta` (apiVersion,
//! kind) and `raw`, the object's own message. Field numbers come from `protobuf/fields.txt`
//! (see `tools/protobuf-table`). Names there are prost's (`HttpGetAction`, `pod_ip`), so messages
//! are keyed without case, and JSON names come from the OpenAPI definitions, matched to the proto
//! field names without case and underscores (`pod_ip` is `podIP`).
//!
//! Go's encoder writes every non-pointer field, so the zero values Go's JSON encoder would leave
//! out (`""`, the zero time) are dropped here to give the same object a JSON client would send.

use std::collections::HashMap;

use base64::Engine;
use serde_json::{Map, Value};

use crate::schema::Definitions;

const MAGIC: &[u8] = b"k8s\0";
const TABLE: &str = include_str!("protobuf/fields.txt");
/// `time.Time{}.Unix()`: Go's zero time, which Go's JSON encoder writes as null.
const GO_ZERO_TIME: i64 = -62_135_596_800;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtobufError {
    #[error("the body does not start with the Kubernetes protobuf prefix")]
    NoPrefix,
    #[error("malformed protobuf: {0}")]
    Malformed(&'static str),
    #[error("content encoding {0:?} is not supported")]
    ContentEncoding(String),
    #[error("no protobuf message is known for {api_version}, Kind={kind}")]
    UnknownKind { api_version: String, kind: String },
    #[error("{field}: {reason}")]
    Field { field: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Card {
    Optional,
    Repeated,
    Map,
}

#[derive(Debug)]
struct Field {
    json: String,
    card: Card,
    ty: String,
    inline: bool,
}

const SCALARS: [&str; 6] = ["string", "bytes", "bool", "int32", "int64", "double"];

/// The field tables of every message in the served API groups.
#[derive(Debug)]
pub struct Decoder {
    messages: HashMap<String, HashMap<u32, Field>>,
}

impl Decoder {
    pub fn new(definitions: &Definitions) -> Decoder {
        let by_lower: HashMap<String, &str> =
            definitions.iter().map(|(name, _)| (name.to_ascii_lowercase(), name)).collect();
        let mut messages: HashMap<String, HashMap<u32, Field>> = HashMap::new();
        let mut current: Option<(String, HashMap<String, String>)> = None;
        for line in TABLE.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let Some(field) = line.strip_prefix(' ') else {
                let key = line.to_ascii_lowercase();
                let names = by_lower
                    .get(&key)
                    .and_then(|name| definitions.definition(name))
                    .and_then(|d| d.get("properties"))
                    .and_then(Value::as_object)
                    .map(|props| props.keys().map(|k| (normalize(k), k.clone())).collect())
                    .unwrap_or_default();
                messages.entry(key.clone()).or_default();
                current = Some((key, names));
                continue;
            };
            let Some((message, names)) = &current else {
                continue;
            };
            let parts: Vec<&str> = field.split(' ').collect();
            let [tag, name, card, ty] = parts[..] else {
                continue;
            };
            let Ok(tag) = tag.parse::<u32>() else {
                continue;
            };
            let card = match card {
                "r" => Card::Repeated,
                "M" => Card::Map,
                _ => Card::Optional,
            };
            let json = names.get(&normalize(name)).cloned().unwrap_or_else(|| lower_camel(name));
            // A message field with no JSON property of its own is a Go struct embedded with
            // `json:",inline"` (a Volume's VolumeSource, an IngressRule's IngressRuleValue).
            let inline = !names.is_empty()
                && !names.contains_key(&normalize(name))
                && !SCALARS.contains(&ty)
                && card == Card::Optional;
            messages
                .entry(message.clone())
                .or_default()
                .insert(tag, Field { json, card, ty: ty.to_ascii_lowercase(), inline });
        }
        Decoder { messages }
    }

    /// Decodes a whole body: the prefix, the envelope and the object, with `apiVersion` and
    /// `kind` from the envelope.
    pub fn decode(&self, body: &[u8]) -> Result<Value, ProtobufError> {
        let envelope = body.strip_prefix(MAGIC).ok_or(ProtobufError::NoPrefix)?;
        let (mut api_version, mut kind, mut raw, mut encoding) = (String::new(), String::new(), &[][..], String::new());
        for item in Fields::new(envelope) {
            let (tag, value) = item?;
            match (tag, value) {
                (1, Wire::Len(type_meta)) => {
                    for item in Fields::new(type_meta) {
                        match item? {
                            (1, Wire::Len(v)) => api_version = utf8(v)?.to_string(),
                            (2, Wire::Len(v)) => kind = utf8(v)?.to_string(),
                            _ => {}
                        }
                    }
                }
                (2, Wire::Len(v)) => raw = v,
                (3, Wire::Len(v)) => encoding = utf8(v)?.to_string(),
                _ => {}
            }
        }
        if !encoding.is_empty() {
            return Err(ProtobufError::ContentEncoding(encoding));
        }
        let message = self
            .message_for(&api_version, &kind)
            .ok_or_else(|| ProtobufError::UnknownKind { api_version: api_version.clone(), kind: kind.clone() })?;
        let mut object = Map::new();
        object.insert("apiVersion".into(), Value::String(api_version));
        object.insert("kind".into(), Value::String(kind));
        if let Some(Value::Object(fields)) = self.message(message, raw, "")? {
            object.extend(fields);
        }
        Ok(Value::Object(object))
    }

    /// The message of a kind: `io.k8s.api.<group's first label>.<version>.<Kind>` (core for the
    /// legacy group), or one of the option kinds in meta/v1 (`DeleteOptions`).
    fn message_for(&self, api_version: &str, kind: &str) -> Option<&str> {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let package = match group.split('.').next() {
            Some("") | None => "core",
            Some(first) => first,
        };
        [format!("io.k8s.api.{package}.{version}.{kind}"), format!("io.k8s.apimachinery.pkg.apis.meta.v1.{kind}")]
            .into_iter()
            .map(|name| name.to_ascii_lowercase())
            .find_map(|name| self.messages.get_key_value(&name).map(|(k, _)| k.as_str()))
    }

    /// One message (by lower-case name) as JSON; `None` for a zero value Go's JSON encoder
    /// leaves out.
    fn message(&self, name: &str, bytes: &[u8], path: &str) -> Result<Option<Value>, ProtobufError> {
        if let Some(special) = self.well_known(name, bytes, path)? {
            return Ok(special);
        }
        let table = self.messages.get(name).ok_or_else(|| field_error(path, format!("no table for message {name}")))?;
        let mut out = Map::new();
        for item in Fields::new(bytes) {
            let (tag, wire) = item?;
            // Unknown fields are skipped, as Go's generated unmarshallers do.
            let Some(field) = table.get(&tag) else {
                continue;
            };
            let here = if path.is_empty() { field.json.clone() } else { format!("{path}.{}", field.json) };
            match field.card {
                Card::Optional if field.inline => {
                    if let Some(Value::Object(fields)) = self.value(&field.ty, wire, path)? {
                        out.extend(fields);
                    }
                }
                Card::Optional => {
                    if let Some(v) = self.value(&field.ty, wire, &here)? {
                        out.insert(field.json.clone(), v);
                    }
                }
                Card::Repeated => {
                    let list = out.entry(field.json.clone()).or_insert_with(|| Value::Array(Vec::new()));
                    let Value::Array(list) = list else { unreachable!("repeated fields are arrays") };
                    match wire {
                        // Packed numbers: one length-delimited run of varints.
                        Wire::Len(run) if matches!(field.ty.as_str(), "int32" | "int64" | "bool") => {
                            let mut rest = run;
                            while !rest.is_empty() {
                                let (v, n) = varint(rest)?;
                                rest = &rest[n..];
                                list.extend(self.value(&field.ty, Wire::Varint(v), &here)?);
                            }
                        }
                        // In a list an empty string is an element (`apiGroups: [""]`).
                        Wire::Len(b) if field.ty == "string" => list.push(Value::String(utf8(b)?.to_string())),
                        wire => list.push(self.value(&field.ty, wire, &here)?.unwrap_or(Value::Null)),
                    }
                }
                Card::Map => {
                    let Wire::Len(entry) = wire else {
                        return Err(field_error(&here, "a map entry must be length-delimited".into()));
                    };
                    let (mut key, mut value) = (String::new(), None);
                    for item in Fields::new(entry) {
                        match item? {
                            (1, Wire::Len(k)) => key = utf8(k)?.to_string(),
                            (2, v) => value = self.value(&field.ty, v, &format!("{here}[{key}]"))?,
                            _ => {}
                        }
                    }
                    let value = value.unwrap_or_else(|| match field.ty.as_str() {
                        "string" | "bytes" => Value::String(String::new()),
                        _ => Value::Null,
                    });
                    let map = out.entry(field.json.clone()).or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(map) = map {
                        map.insert(key, value);
                    }
                }
            }
        }
        Ok(Some(Value::Object(out)))
    }

    /// A single value of `ty` from its wire form.
    fn value(&self, ty: &str, wire: Wire<'_>, path: &str) -> Result<Option<Value>, ProtobufError> {
        let wrong = || field_error(path, format!("wrong wire type for {ty}"));
        Ok(match (ty, wire) {
            ("string", Wire::Len(b)) => Some(utf8(b)?).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())),
            ("bytes", Wire::Len(b)) => Some(Value::String(base64::engine::general_purpose::STANDARD.encode(b))),
            ("bool", Wire::Varint(v)) => Some(Value::Bool(v != 0)),
            ("int32", Wire::Varint(v)) => Some(Value::from(v as i64 as i32)),
            ("int64", Wire::Varint(v)) => Some(Value::from(v as i64)),
            ("double", Wire::Fixed64(v)) => serde_json::Number::from_f64(f64::from_bits(v)).map(Value::Number),
            (scalar, _) if SCALARS.contains(&scalar) => return Err(wrong()),
            (message, Wire::Len(b)) => self.message(message, b, path)?,
            _ => return Err(wrong()),
        })
    }

    /// Messages whose JSON form is not an object of their fields. `Ok(None)` for any other.
    fn well_known(&self, name: &str, bytes: &[u8], path: &str) -> Result<Option<Option<Value>>, ProtobufError> {
        let short = name.strip_prefix("io.k8s.apimachinery.pkg.").unwrap_or(name);
        let value = match short {
            "apis.meta.v1.time" | "apis.meta.v1.microtime" => {
                let (mut seconds, mut nanos) = (0i64, 0i64);
                for item in Fields::new(bytes) {
                    match item? {
                        (1, Wire::Varint(v)) => seconds = v as i64,
                        (2, Wire::Varint(v)) => nanos = v as i64 as i32 as i64,
                        _ => {}
                    }
                }
                (seconds != GO_ZERO_TIME && !bytes.is_empty())
                    .then(|| Value::String(rfc3339(seconds, (short == "apis.meta.v1.microtime").then_some(nanos))))
            }
            "apis.meta.v1.duration" => {
                let nanos = scalar(bytes, 1)?.map_or(0, |v| v as i64);
                Some(Value::String(go_duration(nanos)))
            }
            "util.intstr.intorstring" => {
                let (mut is_string, mut int, mut string) = (false, 0i64, String::new());
                for item in Fields::new(bytes) {
                    match item? {
                        (1, Wire::Varint(v)) => is_string = v == 1,
                        (2, Wire::Varint(v)) => int = v as i64 as i32 as i64,
                        (3, Wire::Len(b)) => string = utf8(b)?.to_string(),
                        _ => {}
                    }
                }
                Some(if is_string { Value::String(string) } else { Value::from(int) })
            }
            "api.resource.quantity" => {
                let mut string = String::new();
                for item in Fields::new(bytes) {
                    if let (1, Wire::Len(b)) = item? {
                        string = utf8(b)?.to_string();
                    }
                }
                Some(Value::String(string))
            }
            "runtime.rawextension" | "apis.meta.v1.fieldsv1" => {
                let mut raw: &[u8] = &[];
                for item in Fields::new(bytes) {
                    if let (1, Wire::Len(b)) = item? {
                        raw = b;
                    }
                }
                if raw.is_empty() {
                    None
                } else {
                    let value = serde_json::from_slice(raw)
                        .map_err(|e| field_error(path, format!("embedded object is not JSON: {e}")))?;
                    Some(value)
                }
            }
            "io.k8s.api.certificates.v1.extravalue" => {
                let mut items = Vec::new();
                for item in Fields::new(bytes) {
                    if let (1, Wire::Len(b)) = item? {
                        items.push(Value::String(utf8(b)?.to_string()));
                    }
                }
                Some(Value::Array(items))
            }
            _ => return Ok(None),
        };
        Ok(Some(value))
    }
}

fn field_error(path: &str, reason: String) -> ProtobufError {
    ProtobufError::Field { field: if path.is_empty() { "<root>".into() } else { path.to_string() }, reason }
}

fn normalize(name: &str) -> String {
    name.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

fn lower_camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn utf8(bytes: &[u8]) -> Result<&str, ProtobufError> {
    std::str::from_utf8(bytes).map_err(|_| ProtobufError::Malformed("a string is not UTF-8"))
}

/// The varint field `tag` of a message, if present.
fn scalar(bytes: &[u8], tag: u32) -> Result<Option<u64>, ProtobufError> {
    for item in Fields::new(bytes) {
        if let (t, Wire::Varint(v)) = item?
            && t == tag
        {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

/// One field's payload on the wire.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

/// The (tag, payload) pairs of one message, in wire order.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Fields { rest: bytes }
    }

    fn next_field(&mut self) -> Result<(u32, Wire<'a>), ProtobufError> {
        let (key, n) = varint(self.rest)?;
        self.rest = &self.rest[n..];
        let tag = u32::try_from(key >> 3).map_err(|_| ProtobufError::Malformed("field number out of range"))?;
        let wire = match key & 7 {
            0 => {
                let (v, n) = varint(self.rest)?;
                self.rest = &self.rest[n..];
                Wire::Varint(v)
            }
            1 => Wire::Fixed64(u64::from_le_bytes(self.take(8)?.try_into().expect("8 bytes"))),
            2 => {
                let (len, n) = varint(self.rest)?;
                self.rest = &self.rest[n..];
                let len = usize::try_from(len).map_err(|_| ProtobufError::Malformed("length out of range"))?;
                Wire::Len(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Wire::Fixed32
            }
            _ => return Err(ProtobufError::Malformed("unsupported wire type")),
        };
        Ok((tag, wire))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if self.rest.len() < n {
            return Err(ProtobufError::Malformed("truncated message"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), ProtobufError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

fn varint(bytes: &[u8]) -> Result<(u64, usize), ProtobufError> {
    let mut value = 0u64;
    for (i, b) in bytes.iter().enumerate().take(10) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok((value, i + 1));
        }
    }
    Err(ProtobufError::Malformed("truncated varint"))
}

/// `2006-01-02T15:04:05Z`, or with microseconds for a MicroTime, in UTC.
fn rfc3339(seconds: i64, micro_nanos: Option<i64>) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    match micro_nanos {
        Some(nanos) => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{:06}Z", nanos / 1000),
        None => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z"),
    }
}

/// The proleptic Gregorian date of a count of days since 1970-01-01.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Duration.String()` for whole and fractional seconds: `1h2m3s`, `1.5s`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000_000_000 {
        let (unit, div) = if n < 1_000 {
            ("ns", 1)
        } else if n < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{sign}{}{unit}", trim_fraction(n, div));
    }
    let (h, rest) = (n / 3_600_000_000_000, n % 3_600_000_000_000);
    let (m, rest) = (rest / 60_000_000_000, rest % 60_000_000_000);
    let s = trim_fraction(rest, 1_000_000_000);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// `n / div` with its fraction and no trailing zeros: 1500/1000 → "1.5".
fn trim_fraction(n: u64, div: u64) -> String {
    let (whole, frac) = (n / div, n % div);
    if frac == 0 {
        return whole.to_string();
    }
    let width = div.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;

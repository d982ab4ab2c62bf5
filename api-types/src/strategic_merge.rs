//! Applying a strategic merge patch (`application/strategic-merge-patch+json`) to an object, the
//! way the API server does for `kubectl patch` and `kubectl apply`.
//!
//! The rules, driven by the patch metadata in [`Definitions`]:
//! - Maps merge recursively; `null` deletes a key; `{"$patch": "replace"}` replaces a map and
//!   `{"$patch": "delete"}` empties it; `"$retainKeys": [..]` clears every key not listed.
//! - Lists whose field has strategy `merge` and a merge key merge element by element:
//!   elements with the same key value are merged, new ones are added, and
//!   `{"<key>": v, "$patch": "delete"}` removes one. A `{"$patch": "replace"}` element
//!   replaces the whole list.
//! - Lists of primitives with strategy `merge` are unioned; `"$deleteFromPrimitiveList/<f>"`
//!   removes values from list `f`.
//! - Every other list is replaced by the patch's list.
//! - `"$setElementOrder/<f>"` gives the final order of list `f` (kubectl apply sends it).
//!   Without it, elements named in the patch come in the patch's order and the others keep
//!   their place relative to them, as upstream orders them.
//! - Fields the schema does not know (or an unknown type) behave as in a JSON merge patch:
//!   maps merge, lists are replaced.
//!
//! Nulls in values that had nothing to merge with are dropped, and no directive is left in
//! the result.

use serde_json::{Map, Value};

use crate::schema::{Definitions, PatchMeta, Shape};

const PATCH: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";

/// Longest JSON excerpt of a patch element quoted in an error message.
const MAX_QUOTED: usize = 200;

/// Why a strategic merge patch could not be applied. Every variant is a fault of the patch
/// except [`StrategicMergeError::OriginalNotAnObject`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StrategicMergeError {
    #[error("a strategic merge patch must be a JSON object, not {0}")]
    PatchNotAnObject(&'static str),
    #[error("the object to patch is {0}, not a JSON object")]
    OriginalNotAnObject(&'static str),
    #[error("{path}: unknown $patch directive {value}; expected \"replace\" or \"delete\"")]
    UnknownDirective { path: String, value: String },
    #[error("{path}: \"$patch\": \"merge\" is not supported in a list")]
    MergeDirectiveInList { path: String },
    #[error("{path}: list element {element} does not contain the merge key {key:?}")]
    MissingMergeKey { path: String, key: String, element: String },
    #[error("{path}: list element {element} is not an object, but the list is merged by {key:?}")]
    ElementNotAnObject { path: String, key: String, element: String },
    #[error(
        "{path}: list element {element} is not a primitive value, but the list is merged as a \
         set of primitives (it has no merge key)"
    )]
    ElementNotAPrimitive { path: String, element: String },
    #[error("{path}: {directive} must be a list, not {found}")]
    DirectiveNotAList { path: String, directive: String, found: &'static str },
    #[error("{path}: $retainKeys must list field names, found {found}")]
    RetainKeyNotAString { path: String, found: String },
    #[error("{path}: the order of the elements in the patch does not match {directive}")]
    ElementOrderMismatch { path: String, directive: String },
    #[error("{path}: {directive} applies to a field that is not a list")]
    DeleteFromNonList { path: String, directive: String },
}

type Result<T, E = StrategicMergeError> = std::result::Result<T, E>;

/// Applies `patch` to `original`, an object of the type named `type_name` in `defs` (e.g.
/// `io.k8s.api.apps.v1.Deployment`). A type `defs` does not know is patched as with a JSON
/// merge patch. `original` may be `null` (nothing to patch yet).
pub fn apply(original: &Value, patch: &Value, defs: &Definitions, type_name: &str) -> Result<Value> {
    let Value::Object(patch) = patch else {
        return Err(StrategicMergeError::PatchNotAnObject(json_type(patch)));
    };
    let original = match original {
        Value::Object(original) => original.clone(),
        Value::Null => Map::new(),
        other => return Err(StrategicMergeError::OriginalNotAnObject(json_type(other))),
    };
    let ctx = match defs.definition(type_name) {
        Some(_) => Ctx::Struct(type_name),
        None => Ctx::Unknown,
    };
    let merger = Merger { defs };
    merger.merge_map(original, patch, ctx, &Path::root()).map(Value::Object)
}

/// What the schema says about the object being merged.
#[derive(Debug, Clone, Copy)]
enum Ctx<'a> {
    /// A definition with properties.
    Struct(&'a str),
    /// A string-keyed map whose values are of this definition, if any.
    MapOf(Option<&'a str>),
    /// No schema: JSON-merge-patch behaviour.
    Unknown,
}

/// A dotted path to the value being merged, for error messages.
#[derive(Debug, Clone)]
struct Path(String);

impl Path {
    fn root() -> Path {
        Path(String::new())
    }

    fn field(&self, key: &str) -> Path {
        if self.0.is_empty() { Path(key.to_string()) } else { Path(format!("{}.{key}", self.0)) }
    }

    fn element(&self, label: &str) -> Path {
        Path(format!("{}[{label}]", self.0))
    }

    fn text(&self) -> String {
        if self.0.is_empty() { "the patch".to_string() } else { self.0.clone() }
    }
}

struct Merger<'a> {
    defs: &'a Definitions,
}

impl<'a> Merger<'a> {
    /// The schema context and patch metadata of `key` inside an object of context `ctx`.
    fn slot(&self, ctx: Ctx<'a>, key: &str) -> (Ctx<'a>, PatchMeta<'a>) {
        match ctx {
            Ctx::Struct(definition) => match self.defs.field(definition, key) {
                Some(field) => {
                    let child = match (field.shape, field.type_name) {
                        (Shape::Map, values) => Ctx::MapOf(values),
                        (_, Some(name)) => Ctx::Struct(name),
                        (_, None) => Ctx::Unknown,
                    };
                    (child, field.patch)
                }
                None => (Ctx::Unknown, PatchMeta::default()),
            },
            Ctx::MapOf(Some(name)) => (Ctx::Struct(name), PatchMeta::default()),
            Ctx::MapOf(None) | Ctx::Unknown => (Ctx::Unknown, PatchMeta::default()),
        }
    }

    /// Merges `patch` into `original`, which it takes over: subtrees are moved, not copied.
    fn merge_map(
        &self,
        original: Map<String, Value>,
        patch: &Map<String, Value>,
        ctx: Ctx<'a>,
        path: &Path,
    ) -> Result<Map<String, Value>> {
        if let Some(directive) = patch.get(PATCH) {
            return match directive.as_str() {
                Some("replace") => {
                    let mut replacement = patch.clone();
                    replacement.remove(PATCH);
                    self.merge_map(Map::new(), &replacement, ctx, path)
                }
                Some("delete") => Ok(Map::new()),
                _ => Err(StrategicMergeError::UnknownDirective { path: path.text(), value: directive.to_string() }),
            };
        }

        let mut result = original;
        if let Some(retain) = patch.get(RETAIN_KEYS) {
            let keys = retained_keys(retain, path)?;
            result.retain(|key, _| keys.contains(&key.as_str()));
        }

        let mut ordered: Vec<&str> = Vec::new();
        for (key, order) in patch {
            let Some(field) = key.strip_prefix(SET_ELEMENT_ORDER) else {
                continue;
            };
            if self.apply_element_order(&mut result, patch, key, field, order, ctx, path)? {
                ordered.push(field);
            }
        }

        for (key, value) in patch {
            if is_directive_key(key) || ordered.contains(&key.as_str()) {
                continue;
            }
            self.merge_field(&mut result, key, value, ctx, path)?;
        }

        for (key, values) in patch {
            if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
                delete_from_primitive_list(&mut result, key, field, values, path)?;
            }
        }
        Ok(result)
    }

    /// Merges `patch[key]` into `result[key]`.
    fn merge_field(
        &self,
        result: &mut Map<String, Value>,
        key: &str,
        value: &Value,
        ctx: Ctx<'a>,
        path: &Path,
    ) -> Result<()> {
        if value.is_null() {
            result.remove(key);
            return Ok(());
        }
        let (child, meta) = self.slot(ctx, key);
        let path = path.field(key);
        // Taken in place (not removed) so that a map keeping insertion order keeps it.
        let current = result.get_mut(key).map(std::mem::take);
        let merged = match (current, value) {
            (Some(Value::Object(original)), Value::Object(patch)) if !meta.replaces() => {
                Value::Object(self.merge_map(original, patch, child, &path)?)
            }
            (Some(Value::Array(original)), Value::Array(patch)) => {
                Value::Array(self.merge_list(original, patch, child, meta, &path)?)
            }
            _ => self.take(value, child, meta, &path)?,
        };
        result.insert(key.to_string(), merged);
        Ok(())
    }

    /// A patch value that has nothing to merge with, cleaned of directives and nulls.
    fn take(&self, value: &Value, ctx: Ctx<'a>, meta: PatchMeta<'a>, path: &Path) -> Result<Value> {
        Ok(match value {
            Value::Object(patch) => Value::Object(self.merge_map(Map::new(), patch, ctx, path)?),
            Value::Array(patch) => Value::Array(self.merge_list(Vec::new(), patch, ctx, meta, path)?),
            scalar => scalar.clone(),
        })
    }

    /// Merges list `patch` into list `original`; `ctx` describes the elements.
    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: &[Value],
        ctx: Ctx<'a>,
        meta: PatchMeta<'a>,
        path: &Path,
    ) -> Result<Vec<Value>> {
        if !meta.merges() {
            // Replaced: the patch's list, without directive elements.
            return patch
                .iter()
                .filter(|element| !is_directive_element(element))
                .enumerate()
                .map(|(i, element)| self.take(element, ctx, PatchMeta::default(), &path.element(&i.to_string())))
                .collect();
        }
        match meta.merge_key {
            Some(key) => self.merge_keyed_list(original, patch, key, ctx, path),
            None => merge_primitive_list(&original, patch, path),
        }
    }

    fn merge_keyed_list(
        &self,
        original: Vec<Value>,
        patch: &[Value],
        key: &str,
        ctx: Ctx<'a>,
        path: &Path,
    ) -> Result<Vec<Value>> {
        let mut base = original;
        let mut items: Vec<&Map<String, Value>> = Vec::new();
        let mut replace = false;
        for element in patch {
            let Value::Object(element) = element else {
                return Err(StrategicMergeError::ElementNotAnObject {
                    path: path.text(),
                    key: key.to_string(),
                    element: quote(element),
                });
            };
            let Some(directive) = element.get(PATCH) else {
                items.push(element);
                continue;
            };
            match directive.as_str() {
                Some("delete") => {
                    let id = merge_key_of(element, key, path)?;
                    base.retain(|existing| existing.get(key) != Some(id));
                }
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(StrategicMergeError::MergeDirectiveInList { path: path.text() });
                }
                _ => {
                    return Err(StrategicMergeError::UnknownDirective {
                        path: path.text(),
                        value: directive.to_string(),
                    });
                }
            }
        }

        let mut patch_order = Vec::with_capacity(items.len());
        for item in &items {
            patch_order.push(merge_key_of(item, key, path)?.clone());
        }
        if replace {
            base.clear();
        }
        let server_order: Vec<Value> = base.iter().filter_map(|e| e.get(key).cloned()).collect();

        let mut merged = base;
        for (item, id) in items.into_iter().zip(&patch_order) {
            let item_path = path.element(&format!("{key}={id}"));
            let existing = merged.iter().position(|e| e.get(key) == Some(id));
            match existing {
                Some(i) => {
                    let original = match &mut merged[i] {
                        Value::Object(original) => std::mem::take(original),
                        _ => Map::new(),
                    };
                    merged[i] = Value::Object(self.merge_map(original, item, ctx, &item_path)?);
                }
                None => {
                    let new = self.merge_map(Map::new(), item, ctx, &item_path)?;
                    merged.push(Value::Object(new));
                }
            }
        }
        Ok(normalize_order(merged, &patch_order, &server_order, |e| e.get(key).cloned()))
    }

    /// Handles `$setElementOrder/<field>`: merges `patch[field]` (if any) into
    /// `result[field]` and puts the elements in the given order. Returns whether it took care
    /// of `field` (it leaves a patch value that is not a list to the ordinary merge).
    #[allow(clippy::too_many_arguments)]
    fn apply_element_order(
        &self,
        result: &mut Map<String, Value>,
        patch: &Map<String, Value>,
        directive: &str,
        field: &str,
        order: &Value,
        ctx: Ctx<'a>,
        path: &Path,
    ) -> Result<bool> {
        let Value::Array(order) = order else {
            return Err(StrategicMergeError::DirectiveNotAList {
                path: path.text(),
                directive: directive.to_string(),
                found: json_type(order),
            });
        };
        let patch_list = match patch.get(field) {
            None => None,
            Some(Value::Array(list)) => Some(list),
            Some(_) => return Ok(false),
        };
        let (child, meta) = self.slot(ctx, field);
        let field_path = path.field(field);
        let merge_key = meta.merge_key;
        let id = |element: &Value| match merge_key {
            Some(key) => element.get(key).cloned(),
            None => Some(element.clone()),
        };

        let mut order_ids = Vec::with_capacity(order.len());
        for element in order {
            match (merge_key, element) {
                (Some(key), Value::Object(element)) => {
                    order_ids.push(merge_key_of(element, key, &field_path)?.clone());
                }
                (Some(key), other) => {
                    return Err(StrategicMergeError::ElementNotAnObject {
                        path: field_path.text(),
                        key: key.to_string(),
                        element: quote(other),
                    });
                }
                (None, element) => order_ids.push(element.clone()),
            }
        }
        if let Some(patch_list) = patch_list {
            let mut remaining = order_ids.iter();
            for element in patch_list.iter().filter(|e| !is_directive_element(e)) {
                // A missing merge key is reported by the merge below.
                let Some(wanted) = id(element) else { continue };
                if !remaining.any(|o| *o == wanted) {
                    return Err(StrategicMergeError::ElementOrderMismatch {
                        path: field_path.text(),
                        directive: directive.to_string(),
                    });
                }
            }
        }

        let original_list = match result.get_mut(field) {
            Some(Value::Array(list)) => Some(std::mem::take(list)),
            _ => None,
        };
        let server_order: Vec<Value> = original_list.iter().flatten().filter_map(id).collect();
        let merged = match (original_list, patch_list) {
            (Some(original), None) => original,
            (original, Some(patch)) => {
                self.merge_list(original.unwrap_or_default(), patch, child, meta, &field_path)?
            }
            (None, None) => return Ok(true),
        };
        let ordered = normalize_order(merged, &order_ids, &server_order, id);
        result.insert(field.to_string(), Value::Array(ordered));
        Ok(true)
    }
}

/// Unions a list of primitives with the patch's values (or replaces it, given a
/// `{"$patch": "replace"}` element).
fn merge_primitive_list(original: &[Value], patch: &[Value], path: &Path) -> Result<Vec<Value>> {
    let mut values = Vec::with_capacity(patch.len());
    let mut replace = false;
    for element in patch {
        match element {
            Value::Object(map) if map.contains_key(PATCH) => match map.get(PATCH).and_then(Value::as_str) {
                Some("replace") => replace = true,
                Some("merge") => {
                    return Err(StrategicMergeError::MergeDirectiveInList { path: path.text() });
                }
                _ => {
                    return Err(StrategicMergeError::UnknownDirective {
                        path: path.text(),
                        value: map.get(PATCH).map(Value::to_string).unwrap_or_default(),
                    });
                }
            },
            Value::Object(_) | Value::Array(_) => {
                return Err(StrategicMergeError::ElementNotAPrimitive { path: path.text(), element: quote(element) });
            }
            primitive => values.push(primitive.clone()),
        }
    }
    if replace {
        return Ok(values);
    }
    let mut merged: Vec<Value> = Vec::with_capacity(original.len() + values.len());
    for value in original.iter().chain(&values) {
        if !merged.contains(value) {
            merged.push(value.clone());
        }
    }
    Ok(normalize_order(merged, &values, original, |v| Some(v.clone())))
}

/// Puts merged elements in upstream's order: elements named in `patch_order` come in that
/// order; the others keep the order they had (`server_order`), and one of them comes before a
/// patch element only if both were in the original list and it was ahead there. `id` gives
/// an element's identity (its merge key value, or itself for primitives).
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    id: impl Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let index_in = |list: &[Value], element: &Value| {
        let element = id(element)?;
        list.iter().position(|x| *x == element)
    };
    let (mut from_patch, mut server_only): (Vec<Value>, Vec<Value>) =
        merged.into_iter().partition(|e| index_in(patch_order, e).is_some());
    from_patch.sort_by_key(|e| index_in(patch_order, e));
    server_only.sort_by_key(|e| index_in(server_order, e));

    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let mut server_only = server_only.into_iter().peekable();
    let mut from_patch = from_patch.into_iter().peekable();
    while let (Some(server), Some(patched)) = (server_only.peek(), from_patch.peek()) {
        let server_first = matches!(
            (index_in(server_order, server), index_in(server_order, patched)),
            (Some(s), Some(p)) if s < p
        );
        let next = if server_first { server_only.next() } else { from_patch.next() };
        out.extend(next);
    }
    out.extend(server_only);
    out.extend(from_patch);
    out
}

fn delete_from_primitive_list(
    result: &mut Map<String, Value>,
    directive: &str,
    field: &str,
    values: &Value,
    path: &Path,
) -> Result<()> {
    let Value::Array(values) = values else {
        return Err(StrategicMergeError::DirectiveNotAList {
            path: path.text(),
            directive: directive.to_string(),
            found: json_type(values),
        });
    };
    match result.get_mut(field) {
        None => Ok(()),
        Some(Value::Array(list)) => {
            list.retain(|v| !values.contains(v));
            Ok(())
        }
        Some(_) => Err(StrategicMergeError::DeleteFromNonList {
            path: path.field(field).text(),
            directive: directive.to_string(),
        }),
    }
}

fn retained_keys<'v>(retain: &'v Value, path: &Path) -> Result<Vec<&'v str>> {
    let Value::Array(keys) = retain else {
        return Err(StrategicMergeError::DirectiveNotAList {
            path: path.text(),
            directive: RETAIN_KEYS.to_string(),
            found: json_type(retain),
        });
    };
    keys.iter()
        .map(|key| {
            key.as_str()
                .ok_or_else(|| StrategicMergeError::RetainKeyNotAString { path: path.text(), found: quote(key) })
        })
        .collect()
}

fn merge_key_of<'v>(element: &'v Map<String, Value>, key: &str, path: &Path) -> Result<&'v Value> {
    element.get(key).ok_or_else(|| StrategicMergeError::MissingMergeKey {
        path: path.text(),
        key: key.to_string(),
        element: quote(&Value::Object(element.clone())),
    })
}

fn is_directive_key(key: &str) -> bool {
    key == PATCH
        || key == RETAIN_KEYS
        || key.starts_with(SET_ELEMENT_ORDER)
        || key.starts_with(DELETE_FROM_PRIMITIVE_LIST)
}

/// `{"$patch": ...}` elements mark a list operation; they are never list content.
fn is_directive_element(element: &Value) -> bool {
    element.get(PATCH).is_some()
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// A value as compact JSON, shortened for an error message.
fn quote(value: &Value) -> String {
    let text = value.to_string();
    if text.len() <= MAX_QUOTED {
        return text;
    }
    let mut end = MAX_QUOTED;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests;

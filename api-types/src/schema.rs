//! The OpenAPI definitions of the served kinds, generated from the k8s-openapi types, with the
//! strategic-merge-patch extensions upstream publishes added to them.
//!
//! k8s-openapi implements [`schemars::JsonSchema`] for every type, naming each schema by its
//! OpenAPI definition name (`io.k8s.api.core.v1.PodSpec`), but without the
//! `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` extensions. A
//! [`DefinitionsBuilder`] collects the definitions reachable from some root types, tags the
//! top-level kinds with `x-kubernetes-group-version-kind`, and injects the patch metadata kept
//! as data in [`PATCH_META`] (and the list types in [`LIST_TYPES`]).
//!
//! ```
//! use api_types::k8s_openapi::api::{apps::v1::Deployment, core::v1::Pod};
//! use api_types::schema::Definitions;
//!
//! let mut builder = Definitions::builder();
//! builder.add_resource::<Pod>().add_resource::<Deployment>();
//! let defs = builder.finish();
//! let containers = defs.field("io.k8s.api.core.v1.PodSpec", "containers").unwrap();
//! assert_eq!(containers.patch.merge_key, Some("name"));
//! ```
//!
//! The definitions are stored with OpenAPI v2 references (`#/definitions/<name>`);
//! [`Definitions::to_v3_components`] rewrites them for OpenAPI v3.

mod patch_meta;

use std::collections::BTreeMap;

use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use schemars::transform::ReplaceBoolSchemas;
use serde_json::{Map, Value, json};

pub use patch_meta::{LIST_TYPES, PATCH_META};

/// Where OpenAPI v2 keeps definitions: `#/definitions/<name>`.
pub const V2_REF_PREFIX: &str = "#/definitions/";
/// Where OpenAPI v3 keeps schemas: `#/components/schemas/<name>`.
pub const V3_REF_PREFIX: &str = "#/components/schemas/";

/// Extension naming the kinds a definition is the schema of.
pub const GROUP_VERSION_KIND: &str = "x-kubernetes-group-version-kind";
/// Extension with a field's strategic-merge-patch strategy (`merge`, `retainKeys`, ...).
pub const PATCH_STRATEGY: &str = "x-kubernetes-patch-strategy";
/// Extension with the key that identifies the elements of a merged list.
pub const PATCH_MERGE_KEY: &str = "x-kubernetes-patch-merge-key";
/// Extension with a list's topology for server-side apply (`atomic`, `set`, `map`).
pub const LIST_TYPE: &str = "x-kubernetes-list-type";
/// Extension with the keys of a list whose list type is `map`.
pub const LIST_MAP_KEYS: &str = "x-kubernetes-list-map-keys";

/// A group, version and kind, as in `x-kubernetes-group-version-kind` (group `""` is core).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupVersionKind {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl GroupVersionKind {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        GroupVersionKind { group: group.to_string(), version: version.to_string(), kind: kind.to_string() }
    }

    fn to_value(&self) -> Value {
        json!({ "group": self.group, "kind": self.kind, "version": self.version })
    }
}

/// A root type to generate definitions for, chosen at compile time and handed over as data
/// (see [`Definitions::from_roots`]).
#[derive(Debug, Clone, Copy)]
pub struct Root {
    add: fn(&mut DefinitionsBuilder),
}

impl Root {
    /// A top-level kind: its definition gets the kind's group, version and kind.
    pub fn resource<T: k8s_openapi::Resource + JsonSchema>() -> Root {
        Root {
            add: |builder| {
                builder.add_resource::<T>();
            },
        }
    }

    /// Any other type (`Status`, `DeleteOptions`, ...), without a group-version-kind.
    pub fn schema<T: JsonSchema>() -> Root {
        Root {
            add: |builder| {
                builder.add::<T>(None);
            },
        }
    }
}

/// Collects the definitions reachable from the types added to it.
#[derive(Debug)]
pub struct DefinitionsBuilder {
    generator: SchemaGenerator,
    kinds: Vec<(String, GroupVersionKind)>,
}

impl Default for DefinitionsBuilder {
    fn default() -> Self {
        DefinitionsBuilder::new()
    }
}

impl DefinitionsBuilder {
    pub fn new() -> Self {
        DefinitionsBuilder { generator: generator_settings().into_generator(), kinds: Vec::new() }
    }

    /// Adds `T` and every type it references. With `gvk` (`(group, version, kind)`, group `""`
    /// for core), `T`'s definition is tagged as that kind; a type added under several kinds
    /// (like `DeleteOptions` upstream) lists them all.
    pub fn add<T: JsonSchema>(&mut self, gvk: Option<(&str, &str, &str)>) -> &mut Self {
        let reference = self.generator.subschema_for::<T>();
        // Inlined types (primitives) have no definition to tag.
        let name = reference
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix(V2_REF_PREFIX))
            .map(str::to_string);
        if let (Some(name), Some((group, version, kind))) = (name, gvk) {
            self.kinds.push((name, GroupVersionKind::new(group, version, kind)));
        }
        self
    }

    /// Adds a top-level kind, taking its group, version and kind from k8s-openapi.
    pub fn add_resource<T: k8s_openapi::Resource + JsonSchema>(&mut self) -> &mut Self {
        self.add::<T>(Some((T::GROUP, T::VERSION, T::KIND)))
    }

    /// The definitions, with the group-version-kind and patch extensions added.
    pub fn finish(mut self) -> Definitions {
        let mut definitions: BTreeMap<String, Value> = self.generator.take_definitions(true).into_iter().collect();
        for (name, gvk) in &self.kinds {
            if let Some(Value::Object(definition)) = definitions.get_mut(name) {
                tag_kind(definition, gvk);
            }
        }
        patch_meta::annotate(&mut definitions);
        Definitions { definitions }
    }
}

/// OpenAPI-compatible output: references to `#/definitions/<name>`, no `$schema`, no boolean
/// schemas, no transforms that would move `$ref` siblings around.
fn generator_settings() -> SchemaSettings {
    SchemaSettings::openapi3().with(|settings| {
        settings.definitions_path = V2_REF_PREFIX.trim_start_matches('#').into();
        settings.meta_schema = None;
        settings.inline_subschemas = false;
        settings.transforms = vec![Box::new(ReplaceBoolSchemas::default())];
    })
}

fn tag_kind(definition: &mut Map<String, Value>, gvk: &GroupVersionKind) {
    let entry = gvk.to_value();
    let tags = definition.entry(GROUP_VERSION_KIND).or_insert_with(|| Value::Array(Vec::new()));
    match tags {
        Value::Array(tags) if !tags.contains(&entry) => tags.push(entry),
        _ => {}
    }
    // k8s-openapi marks `metadata` required because its Rust field is not optional; upstream
    // does not, and clients (kubectl create with generated objects) may omit it.
    if let Some(Value::Array(required)) = definition.get_mut("required") {
        required.retain(|r| r != "metadata");
        if required.is_empty() {
            definition.remove("required");
        }
    }
}

/// The OpenAPI definitions of a set of types, keyed by definition name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Definitions {
    definitions: BTreeMap<String, Value>,
}

impl Definitions {
    pub fn builder() -> DefinitionsBuilder {
        DefinitionsBuilder::new()
    }

    /// The definitions reachable from `roots`.
    pub fn from_roots(roots: &[Root]) -> Definitions {
        let mut builder = DefinitionsBuilder::new();
        for root in roots {
            (root.add)(&mut builder);
        }
        builder.finish()
    }

    /// One definition, with OpenAPI v2 references.
    pub fn definition(&self, name: &str) -> Option<&Value> {
        self.definitions.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.definitions.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.definitions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.definitions.is_empty()
    }

    /// The kinds a definition is tagged with.
    pub fn kinds_of(&self, name: &str) -> Vec<GroupVersionKind> {
        let tags = self.definitions.get(name).and_then(|d| d.get(GROUP_VERSION_KIND)).and_then(Value::as_array);
        tags.into_iter()
            .flatten()
            .filter_map(|tag| {
                Some(GroupVersionKind::new(
                    tag.get("group")?.as_str()?,
                    tag.get("version")?.as_str()?,
                    tag.get("kind")?.as_str()?,
                ))
            })
            .collect()
    }

    /// The name of the definition tagged with this kind.
    pub fn definition_name_for(&self, group: &str, version: &str, kind: &str) -> Option<&str> {
        let wanted = GroupVersionKind::new(group, version, kind).to_value();
        self.definitions
            .iter()
            .find(|(_, d)| {
                d.get(GROUP_VERSION_KIND).and_then(Value::as_array).is_some_and(|tags| tags.contains(&wanted))
            })
            .map(|(name, _)| name.as_str())
    }

    /// The `definitions` object of an OpenAPI v2 document.
    pub fn to_v2_definitions(&self) -> Value {
        Value::Object(self.definitions.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
    }

    /// The `components` object of an OpenAPI v3 document (`{"schemas": {...}}`). References
    /// point to `#/components/schemas/<name>`, and a reference with siblings (a description,
    /// a patch strategy) is wrapped in `allOf`, as upstream does, because OpenAPI 3.0 ignores
    /// the siblings of a `$ref`.
    pub fn to_v3_components(&self) -> Value {
        let schemas = self
            .definitions
            .iter()
            .map(|(k, v)| {
                let mut v = v.clone();
                rewrite_refs_v3(&mut v);
                (k.clone(), v)
            })
            .collect();
        json!({ "schemas": Value::Object(schemas) })
    }

    /// The schema of `field` in `definition`, with what the patch code needs to know about it.
    /// `None` when the definition or the field is unknown.
    pub fn field(&self, definition: &str, field: &str) -> Option<Field<'_>> {
        let schema = self.definitions.get(definition)?.get("properties")?.get(field)?;
        Some(self.describe(schema))
    }

    /// What a schema is: its shape, the definition it resolves to (through `$ref`, a list's
    /// `items` or a map's `additionalProperties`) and its patch metadata.
    pub fn describe<'a>(&'a self, schema: &'a Value) -> Field<'a> {
        let patch = PatchMeta {
            strategy: schema.get(PATCH_STRATEGY).and_then(Value::as_str),
            merge_key: schema.get(PATCH_MERGE_KEY).and_then(Value::as_str),
        };
        let (shape, type_name) = if let Some(name) = ref_name(schema) {
            (self.shape_of_definition(name), Some(name))
        } else {
            match schema.get("type").and_then(Value::as_str) {
                Some("array") => (Shape::List, schema.get("items").and_then(ref_name)),
                Some("object") => match schema.get("additionalProperties") {
                    Some(values @ Value::Object(_)) => (Shape::Map, ref_name(values)),
                    _ => (Shape::Object, None),
                },
                _ => (Shape::Scalar, None),
            }
        };
        Field { schema, shape, type_name, patch }
    }

    fn shape_of_definition(&self, name: &str) -> Shape {
        match self.definitions.get(name) {
            Some(d) if d.get("type").and_then(Value::as_str) == Some("object") => Shape::Object,
            Some(d) if d.get("properties").is_some() => Shape::Object,
            Some(_) => Shape::Scalar,
            None => Shape::Object,
        }
    }
}

/// What a field's schema says, resolved for the patch code.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Field<'a> {
    /// The property schema itself (with v2 references).
    pub schema: &'a Value,
    pub shape: Shape,
    /// The definition the field resolves to: the referenced type, a list's element type or a
    /// map's value type. `None` for inline primitives.
    pub type_name: Option<&'a str>,
    pub patch: PatchMeta<'a>,
}

/// The JSON shape a field's schema describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// A struct with known properties (or an opaque object such as `RawExtension`).
    Object,
    /// An array; its elements' definition, if any, is [`Field::type_name`].
    List,
    /// A string-keyed map (`additionalProperties`); its values' definition is the type name.
    Map,
    /// A string, number or boolean, including `Quantity`, `IntOrString` and `Time`.
    Scalar,
}

/// A field's strategic-merge-patch metadata.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PatchMeta<'a> {
    /// The comma-separated strategies, e.g. `merge,retainKeys`.
    pub strategy: Option<&'a str>,
    pub merge_key: Option<&'a str>,
}

impl PatchMeta<'_> {
    /// Whether `strategy` is one of the field's strategies.
    pub fn has_strategy(&self, strategy: &str) -> bool {
        self.strategy.is_some_and(|s| s.split(',').any(|part| part.trim() == strategy))
    }

    /// Lists are merged (by merge key, or as a set of primitives) instead of replaced.
    pub fn merges(&self) -> bool {
        self.has_strategy("merge")
    }

    /// The value is replaced as a whole instead of merged.
    pub fn replaces(&self) -> bool {
        self.has_strategy("replace")
    }

    /// Keys not listed in a patch's `$retainKeys` are cleared.
    pub fn retains_keys(&self) -> bool {
        self.has_strategy("retainKeys")
    }
}

/// The definition name a schema references: `$ref`, or a single-element `allOf` wrapping one,
/// in either v2 or v3 form.
pub fn ref_name(schema: &Value) -> Option<&str> {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.strip_prefix(V2_REF_PREFIX).or_else(|| r.strip_prefix(V3_REF_PREFIX));
    }
    match schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) => ref_name(only),
        _ => None,
    }
}

fn rewrite_refs_v3(value: &mut Value) {
    match value {
        Value::Object(map) => {
            // Only a string `$ref` is a reference: JSONSchemaProps has a property named `$ref`.
            if let Some(Value::String(r)) = map.get("$ref") {
                let target = match r.strip_prefix(V2_REF_PREFIX) {
                    Some(name) => format!("{V3_REF_PREFIX}{name}"),
                    None => r.clone(),
                };
                if map.len() > 1 {
                    map.remove("$ref");
                    map.insert("allOf".to_string(), json!([{ "$ref": target }]));
                } else {
                    map.insert("$ref".to_string(), Value::String(target));
                }
            }
            map.values_mut().for_each(rewrite_refs_v3);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs_v3),
        _ => {}
    }
}

/// Every `$ref` target in `value`, as definition names.
fn referenced_names<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    match value {
        Value::Object(map) => {
            if let Some(name) = map.get("$ref").and_then(Value::as_str) {
                out.push(name);
            }
            map.values().for_each(|v| referenced_names(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| referenced_names(v, out)),
        _ => {}
    }
}

impl Definitions {
    /// References that point to no definition (each as the raw `$ref` string). Empty for
    /// definitions built by [`DefinitionsBuilder`]; a check for tests and start-up.
    pub fn dangling_refs(&self) -> Vec<String> {
        let mut refs = Vec::new();
        for definition in self.definitions.values() {
            referenced_names(definition, &mut refs);
        }
        let mut dangling: Vec<String> = refs
            .into_iter()
            .filter(|r| r.strip_prefix(V2_REF_PREFIX).is_none_or(|name| !self.definitions.contains_key(name)))
            .map(str::to_string)
            .collect();
        dangling.sort();
        dangling.dedup();
        dangling
    }
}

#[cfg(test)]
mod tests;

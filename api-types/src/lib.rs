//! Kubernetes API types and the pure logic that both the API server and its clients need.
//!
//! A tour of the modules:
//! - [`registry`]: every resource rkube serves — group, version, kind, plural, short names,
//!   scope, subresources — and the lookups the API server and `rctl` make on it.
//! - [`labels`]: label selectors, parsed from the `labelSelector` query string or built from a
//!   `metav1.LabelSelector`, and matched against an object's labels.
//! - [`cron`]: CronJob schedules, parsed with upstream's messages, and their next run time.
//! - [`fields`]: field selectors (`spec.nodeName=n1,status.phase!=Running`).
//! - [`node_selector`]: node selector terms (node affinity, a volume's node affinity) matched
//!   against a node's labels and name.
//! - [`limits`]: LimitRange admission (upstream's LimitRanger): container defaults and the
//!   minimums, maximums and ratios a namespace's LimitRanges hold pods and claims to.
//! - [`quota`]: what an object counts for in a ResourceQuota, and upstream's refusal messages.
//! - [`quantity`]: resource quantities (`500m`, `128Mi`, `1.5Gi`) parsed to exact values.
//! - [`names`]: DNS-1123 and qualified-name validation with upstream's error messages.
//! - [`schema`]: the OpenAPI definitions of the served kinds, generated from the k8s-openapi
//!   types, with the strategic-merge-patch extensions added.
//! - [`strategic_merge`]: applying a strategic merge patch using those definitions.
//! - [`tls`]: the certificate verifier for the places upstream skips verification.
//!
//! Nothing here does I/O.

pub use k8s_openapi;

pub mod cron;
pub mod fields;
pub mod labels;
pub mod limits;
pub mod names;
pub mod node_selector;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod registry;
pub mod schema;
pub mod strategic_merge;
pub mod tls;

//! The API server's errors, and the one place they become a Kubernetes `Status`.

use serde_json::{Value, json};

use crate::admission::FieldError;

/// Everything a request can fail with. Each variant maps to one HTTP code and Status reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{resource} {name:?} not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} {name:?} already exists")]
    AlreadyExists { resource: String, name: String },
    #[error("Operation cannot be fulfilled on {resource} {name:?}: {message}")]
    Conflict { resource: String, name: String, message: String },
    #[error("{kind} {name:?} is invalid: {}", render_causes(.causes))]
    Invalid { kind: String, name: String, causes: Vec<FieldError> },
    #[error("{0}")]
    BadRequest(String),
    /// A request that is well-formed but cannot be carried out (a failing JSON patch).
    #[error("{0}")]
    Unprocessable(String),
    /// A resourceVersion older than what storage still has.
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("the server could not find the requested resource")]
    PathNotFound,
    #[error("request entity too large: limit is {0} bytes")]
    TooLarge(usize),
    #[error("the body of the request was in an unknown format - accepted media types include: {0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    Timeout(String),
    /// A 429: come back later (an eviction a disruption budget does not allow yet). Causes are
    /// (reason, message) pairs.
    #[error("{message}")]
    TooManyRequests { message: String, causes: Vec<(String, String)>, retry_after_seconds: u32 },
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    #[error("{0}")]
    Internal(String),
}

fn render_causes(causes: &[FieldError]) -> String {
    match causes {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The group/kind/name the Status `details` carry, when the error is about one object.
#[derive(Debug, Default, Clone)]
pub struct Details {
    pub group: String,
    /// The resource's plural (upstream puts the resource in `details.kind` for most errors).
    pub kind: String,
    pub name: String,
}

impl Error {
    pub fn not_found(resource: &api_types::registry::ResourceInfo, name: &str) -> Self {
        Self::NotFound { resource: resource.group_resource(), name: name.to_string() }
    }

    pub fn already_exists(resource: &api_types::registry::ResourceInfo, name: &str) -> Self {
        Self::AlreadyExists { resource: resource.group_resource(), name: name.to_string() }
    }

    pub fn conflict(resource: &api_types::registry::ResourceInfo, name: &str) -> Self {
        Self::Conflict {
            resource: resource.group_resource(),
            name: name.to_string(),
            message: "the object has been modified; please apply your changes to the latest \
                      version and try again"
                .to_string(),
        }
    }

    /// A 422 for `kind` (e.g. `Deployment.apps`) named `name`.
    pub fn invalid(resource: &api_types::registry::ResourceInfo, name: &str, causes: Vec<FieldError>) -> Self {
        let kind = if resource.group.is_empty() {
            resource.kind.to_string()
        } else {
            format!("{}.{}", resource.kind, resource.group)
        };
        Self::Invalid { kind, name: name.to_string(), causes }
    }

    pub fn code(&self) -> u16 {
        match self {
            Self::NotFound { .. } | Self::PathNotFound => 404,
            Self::AlreadyExists { .. } | Self::Conflict { .. } => 409,
            Self::Invalid { .. } | Self::Unprocessable(_) => 422,
            Self::BadRequest(_) => 400,
            Self::Expired(_) => 410,
            Self::MethodNotAllowed(_) => 405,
            Self::Unauthorized => 401,
            Self::Forbidden(_) => 403,
            Self::TooLarge(_) => 413,
            Self::UnsupportedMediaType(_) => 415,
            Self::NotAcceptable(_) => 406,
            Self::Timeout(_) => 504,
            Self::TooManyRequests { .. } => 429,
            Self::Storage(e) if e.is_unavailable() => 503,
            Self::Storage(_) | Self::Internal(_) => 500,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound { .. } | Self::PathNotFound => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::Conflict { .. } => "Conflict",
            Self::Invalid { .. } | Self::Unprocessable(_) => "Invalid",
            Self::BadRequest(_) => "BadRequest",
            Self::Expired(_) => "Expired",
            Self::MethodNotAllowed(_) => "MethodNotAllowed",
            Self::Unauthorized => "Unauthorized",
            Self::Forbidden(_) => "Forbidden",
            Self::TooLarge(_) => "RequestEntityTooLarge",
            Self::UnsupportedMediaType(_) => "UnsupportedMediaType",
            Self::NotAcceptable(_) => "NotAcceptable",
            Self::Timeout(_) => "Timeout",
            Self::TooManyRequests { .. } => "TooManyRequests",
            Self::Storage(e) if e.is_unavailable() => "ServiceUnavailable",
            Self::Storage(_) | Self::Internal(_) => "InternalError",
        }
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            Self::NotFound { resource, name }
            | Self::AlreadyExists { resource, name }
            | Self::Conflict { resource, name, .. } => {
                let (kind, group) = resource.split_once('.').unwrap_or((resource, ""));
                Some(json!({ "name": name, "group": group, "kind": kind }))
            }
            Self::Invalid { kind, name, causes } => {
                let (kind, group) = kind.split_once('.').unwrap_or((kind, ""));
                let causes: Vec<Value> = causes
                    .iter()
                    .map(|c| json!({ "reason": c.reason(), "message": c.message(), "field": c.field }))
                    .collect();
                Some(json!({ "name": name, "group": group, "kind": kind, "causes": causes }))
            }
            Self::TooManyRequests { causes, retry_after_seconds, .. } => {
                let causes: Vec<Value> =
                    causes.iter().map(|(reason, message)| json!({ "reason": reason, "message": message })).collect();
                let mut details = json!({ "causes": causes });
                if *retry_after_seconds > 0 {
                    details["retryAfterSeconds"] = (*retry_after_seconds).into();
                }
                Some(details)
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

/// The Status of a successful delete answered without the object (`deletecollection` items).
pub fn success_status(details: Details) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": { "name": details.name, "group": details.group, "kind": details.kind },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use api_types::registry::by_plural;

    #[test]
    fn not_found_reads_like_upstream() {
        let pods = by_plural("", "v1", "pods").expect("pods");
        let e = Error::not_found(pods, "web");
        assert_eq!(e.to_string(), "pods \"web\" not found");
        let s = e.to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["details"]["kind"], "pods");
    }

    #[test]
    fn grouped_resources_are_qualified_in_messages() {
        let deploy = by_plural("apps", "v1", "deployments").expect("deployments");
        let e = Error::already_exists(deploy, "web");
        assert_eq!(e.to_string(), "deployments.apps \"web\" already exists");
        assert_eq!(e.to_status()["details"]["group"], "apps");
    }

    #[test]
    fn invalid_lists_every_cause() {
        let deploy = by_plural("apps", "v1", "deployments").expect("deployments");
        let e = Error::invalid(
            deploy,
            "web",
            vec![FieldError::required("spec.selector", ""), FieldError::invalid("metadata.name", "Web", "bad")],
        );
        assert_eq!(
            e.to_string(),
            "Deployment.apps \"web\" is invalid: [spec.selector: Required value, metadata.name: \
             Invalid value: \"Web\": bad]"
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(s["details"]["causes"][1]["field"], "metadata.name");
    }
}

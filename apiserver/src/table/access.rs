//! Who may do what: RBAC roles and bindings, and CertificateSigningRequests.

use api_types::k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use api_types::k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding, RoleRef, Subject};
use api_types::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use api_types::k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

use super::duration::human_duration;
use super::format::{self, NONE};
use super::{AGE, Column, NAME, Printer, decode};

/// Roles and ClusterRoles: their rules do not fit a table.
pub(super) static ROLE: Printer =
    Printer { columns: &[NAME, Column::date("Created At", "When the object was created.")], cells: role_cells };

fn role_cells(object: &Value, _now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let metadata: ObjectMeta = object.get("metadata").map(decode).transpose()?.unwrap_or_default();
    Ok(vec![format::name(&metadata).into(), format::date(metadata.creation_timestamp.as_ref()).into()])
}

const BINDING_COLUMNS: &[Column] = &[
    NAME,
    Column::string("Role", "The role granted, as kind/name."),
    AGE,
    Column::string("Users", "Users granted the role.").wide(),
    Column::string("Groups", "Groups granted the role.").wide(),
    Column::string("ServiceAccounts", "Service accounts granted the role, as namespace/name.").wide(),
];

pub(super) static ROLE_BINDING: Printer = Printer { columns: BINDING_COLUMNS, cells: role_binding_cells };
pub(super) static CLUSTER_ROLE_BINDING: Printer =
    Printer { columns: BINDING_COLUMNS, cells: cluster_role_binding_cells };

fn role_binding_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let binding: RoleBinding = decode(object)?;
    Ok(binding_cells(&binding.metadata, &binding.role_ref, binding.subjects.as_deref(), now))
}

fn cluster_role_binding_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let binding: ClusterRoleBinding = decode(object)?;
    Ok(binding_cells(&binding.metadata, &binding.role_ref, binding.subjects.as_deref(), now))
}

fn binding_cells(metadata: &ObjectMeta, role: &RoleRef, subjects: Option<&[Subject]>, now: Timestamp) -> Vec<Value> {
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in subjects.unwrap_or_default() {
        match subject.kind.as_str() {
            "User" => users.push(subject.name.clone()),
            "Group" => groups.push(subject.name.clone()),
            "ServiceAccount" => {
                accounts.push(format!("{}/{}", subject.namespace.as_deref().unwrap_or_default(), subject.name))
            }
            _ => {}
        }
    }
    vec![
        format::name(metadata).into(),
        format!("{}/{}", role.kind, role.name).into(),
        format::age(metadata, now).into(),
        users.join(", ").into(),
        groups.join(", ").into(),
        accounts.join(", ").into(),
    ]
}

pub(super) static CERTIFICATE_SIGNING_REQUEST: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        Column::string("SignerName", "Who is asked to sign."),
        Column::string("Requestor", "Who asked."),
        Column::string("RequestedDuration", "How long the certificate is asked to be valid."),
        Column::string("Condition", "Pending, Approved or Denied; Failed and Issued when so."),
    ],
    cells: csr_cells,
};

fn csr_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let csr: CertificateSigningRequest = decode(object)?;
    let spec = csr.spec;
    let status = csr.status.unwrap_or_default();
    let has = |type_: &str| status.conditions.iter().flatten().any(|c| c.type_ == type_);
    let mut condition = if has("Denied") {
        "Denied"
    } else if has("Approved") {
        "Approved"
    } else {
        "Pending"
    }
    .to_string();
    if has("Failed") {
        condition.push_str(",Failed");
    }
    if status.certificate.is_some_and(|c| !c.0.is_empty()) {
        condition.push_str(",Issued");
    }
    let duration = spec
        .expiration_seconds
        .map_or_else(|| NONE.to_string(), |s| human_duration(SignedDuration::from_secs(s.into())));
    Ok(vec![
        format::name(&csr.metadata).into(),
        format::age(&csr.metadata, now).into(),
        format::or(Some(&spec.signer_name), NONE).into(),
        spec.username.unwrap_or_default().into(),
        duration.into(),
        condition.into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    #[test]
    fn dates_roles() {
        assert_eq!(headers(&ROLE), ["Name", "Created At"]);
        let role = json!({"kind": "ClusterRole", "apiVersion": "rbac.authorization.k8s.io/v1",
                          "metadata": {"name": "view", "creationTimestamp": "2024-01-02T03:04:05Z"}, "rules": []});
        assert_eq!(cells(&ROLE, &role), [json!("view"), json!("2024-01-02T03:04:05Z")]);
    }

    #[test]
    fn lists_binding_subjects_by_kind() {
        assert_eq!(headers(&ROLE_BINDING), ["Name", "Role", "Age", "+Users", "+Groups", "+ServiceAccounts"]);
        let binding = json!({
            "kind": "ClusterRoleBinding",
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "metadata": {"name": "admins", "creationTimestamp": ago(60)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [
                {"kind": "User", "name": "alice"},
                {"kind": "Group", "name": "system:masters"},
                {"kind": "ServiceAccount", "name": "deployer", "namespace": "ci"},
                {"kind": "User", "name": "bob"},
            ],
        });
        assert_eq!(
            cells(&CLUSTER_ROLE_BINDING, &binding),
            [
                json!("admins"),
                json!("ClusterRole/cluster-admin"),
                json!("60s"),
                json!("alice, bob"),
                json!("system:masters"),
                json!("ci/deployer")
            ]
        );
    }

    #[test]
    fn summarizes_certificate_signing_requests() {
        assert_eq!(
            headers(&CERTIFICATE_SIGNING_REQUEST),
            ["Name", "Age", "SignerName", "Requestor", "RequestedDuration", "Condition"]
        );
        let csr = json!({
            "metadata": {"name": "node-csr-n1", "creationTimestamp": ago(60)},
            "spec": {"request": "AA==", "signerName": "kubernetes.io/kube-apiserver-client-kubelet",
                     "username": "system:bootstrap:abc", "expirationSeconds": 86400},
            "status": {"conditions": [{"type": "Approved", "status": "True"}], "certificate": "AA=="},
        });
        assert_eq!(
            cells(&CERTIFICATE_SIGNING_REQUEST, &csr),
            [
                json!("node-csr-n1"),
                json!("60s"),
                json!("kubernetes.io/kube-apiserver-client-kubelet"),
                json!("system:bootstrap:abc"),
                json!("24h"),
                json!("Approved,Issued")
            ]
        );
        let pending = json!({"metadata": {"name": "p"}, "spec": {"request": "AA==", "signerName": "example.com/x"}});
        assert_eq!(cells(&CERTIFICATE_SIGNING_REQUEST, &pending)[4..], [json!("<none>"), json!("Pending")]);
    }
}

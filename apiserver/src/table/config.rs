//! Namespaces and what configures the objects in them: ConfigMaps, Secrets, ServiceAccounts,
//! ResourceQuotas, LimitRanges, and Leases.

use api_types::k8s_openapi::api::coordination::v1::Lease;
use api_types::k8s_openapi::api::core::v1::{ConfigMap, LimitRange, Namespace, ResourceQuota, Secret, ServiceAccount};
use api_types::k8s_openapi::jiff::Timestamp;
use serde_json::Value;

use super::format;
use super::{AGE, Column, NAME, Printer, decode};

pub(super) static NAMESPACE: Printer = Printer {
    columns: &[NAME, Column::string("Status", "The namespace's phase: Active or Terminating."), AGE],
    cells: namespace_cells,
};

fn namespace_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let namespace: Namespace = decode(object)?;
    let phase = namespace.status.and_then(|s| s.phase).unwrap_or_default();
    Ok(vec![format::name(&namespace.metadata).into(), phase.into(), format::age(&namespace.metadata, now).into()])
}

pub(super) static CONFIG_MAP: Printer =
    Printer { columns: &[NAME, Column::integer("Data", "Keys held, text and binary."), AGE], cells: config_map_cells };

fn config_map_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let map: ConfigMap = decode(object)?;
    let keys = map.data.map_or(0, |d| d.len()) + map.binary_data.map_or(0, |d| d.len());
    Ok(vec![format::name(&map.metadata).into(), keys.into(), format::age(&map.metadata, now).into()])
}

pub(super) static SECRET: Printer = Printer {
    columns: &[
        NAME,
        Column::string("Type", "What the secret holds, which fixes its keys."),
        Column::integer("Data", "Keys held."),
        AGE,
    ],
    cells: secret_cells,
};

fn secret_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let secret: Secret = decode(object)?;
    Ok(vec![
        format::name(&secret.metadata).into(),
        secret.type_.unwrap_or_default().into(),
        secret.data.map_or(0, |d| d.len()).into(),
        format::age(&secret.metadata, now).into(),
    ])
}

pub(super) static SERVICE_ACCOUNT: Printer = Printer {
    columns: &[NAME, Column::integer("Secrets", "Secrets listed in the account's secrets field."), AGE],
    cells: service_account_cells,
};

fn service_account_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let account: ServiceAccount = decode(object)?;
    Ok(vec![
        format::name(&account.metadata).into(),
        account.secrets.map_or(0, |s| s.len()).into(),
        format::age(&account.metadata, now).into(),
    ])
}

pub(super) static RESOURCE_QUOTA: Printer = Printer {
    columns: &[
        NAME,
        AGE,
        Column::string("Request", "Used out of hard limits, for requests and counts."),
        Column::string("Limit", "Used out of hard limits, for resource limits."),
    ],
    cells: resource_quota_cells,
};

fn resource_quota_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let quota: ResourceQuota = decode(object)?;
    let hard = quota.spec.and_then(|s| s.hard).unwrap_or_default();
    let used = quota.status.and_then(|s| s.used).unwrap_or_default();
    let (mut requests, mut limits) = (Vec::new(), Vec::new());
    for (resource, limit) in &hard {
        let in_use = used.get(resource).map_or("0", |q| q.0.as_str());
        let entry = format!("{resource}: {in_use}/{}", limit.0);
        if resource.starts_with("limits.") { limits.push(entry) } else { requests.push(entry) }
    }
    Ok(vec![
        format::name(&quota.metadata).into(),
        format::age(&quota.metadata, now).into(),
        requests.join(", ").into(),
        limits.join(", ").into(),
    ])
}

pub(super) static LIMIT_RANGE: Printer =
    Printer { columns: &[NAME, Column::date("Created At", "When the object was created.")], cells: limit_range_cells };

fn limit_range_cells(object: &Value, _now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let range: LimitRange = decode(object)?;
    Ok(vec![format::name(&range.metadata).into(), format::date(range.metadata.creation_timestamp.as_ref()).into()])
}

pub(super) static LEASE: Printer =
    Printer { columns: &[NAME, Column::string("Holder", "Who holds the lease."), AGE], cells: lease_cells };

fn lease_cells(object: &Value, now: Timestamp) -> Result<Vec<Value>, serde_json::Error> {
    let lease: Lease = decode(object)?;
    let holder = lease.spec.and_then(|s| s.holder_identity).unwrap_or_default();
    Ok(vec![format::name(&lease.metadata).into(), holder.into(), format::age(&lease.metadata, now).into()])
}

#[cfg(test)]
mod tests {
    use super::super::testing::{ago, cells, headers};
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_a_namespace() {
        assert_eq!(headers(&NAMESPACE), ["Name", "Status", "Age"]);
        let object = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(400 * 86400)},
                            "status": {"phase": "Active"}});
        assert_eq!(cells(&NAMESPACE, &object), [json!("kube-system"), json!("Active"), json!("400d")]);
    }

    #[test]
    fn counts_config_map_and_secret_keys() {
        let map = json!({"metadata": {"name": "cfg", "creationTimestamp": ago(5)},
                         "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(cells(&CONFIG_MAP, &map), [json!("cfg"), json!(3), json!("5s")]);
        let secret = json!({"metadata": {"name": "tls", "creationTimestamp": ago(5)}, "type": "kubernetes.io/tls",
                            "data": {"tls.crt": "AA==", "tls.key": "AA=="}});
        assert_eq!(headers(&SECRET), ["Name", "Type", "Data", "Age"]);
        assert_eq!(cells(&SECRET, &secret), [json!("tls"), json!("kubernetes.io/tls"), json!(2), json!("5s")]);
    }

    #[test]
    fn counts_service_account_secrets() {
        assert_eq!(headers(&SERVICE_ACCOUNT), ["Name", "Secrets", "Age"]);
        let account = json!({"metadata": {"name": "default", "creationTimestamp": ago(5)}});
        assert_eq!(cells(&SERVICE_ACCOUNT, &account), [json!("default"), json!(0), json!("5s")]);
    }

    #[test]
    fn splits_quota_usage_into_requests_and_limits() {
        let quota = json!({
            "metadata": {"name": "team", "creationTimestamp": ago(5)},
            "spec": {"hard": {"pods": "10", "requests.cpu": "4", "limits.cpu": "8", "limits.memory": "16Gi"}},
            "status": {"used": {"pods": "3", "requests.cpu": "1500m", "limits.cpu": "2"}},
        });
        assert_eq!(headers(&RESOURCE_QUOTA), ["Name", "Age", "Request", "Limit"]);
        assert_eq!(
            cells(&RESOURCE_QUOTA, &quota),
            [
                json!("team"),
                json!("5s"),
                json!("pods: 3/10, requests.cpu: 1500m/4"),
                json!("limits.cpu: 2/8, limits.memory: 0/16Gi")
            ]
        );
    }

    #[test]
    fn dates_limit_ranges() {
        let range = json!({"metadata": {"name": "limits", "creationTimestamp": "2024-04-30T08:15:00Z"}});
        assert_eq!(cells(&LIMIT_RANGE, &range), [json!("limits"), json!("2024-04-30T08:15:00Z")]);
    }

    #[test]
    fn shows_a_lease_holder() {
        let lease = json!({"metadata": {"name": "rk-scheduler", "creationTimestamp": ago(5)},
                           "spec": {"holderIdentity": "host-a_1234", "leaseDurationSeconds": 15}});
        assert_eq!(cells(&LEASE, &lease), [json!("rk-scheduler"), json!("host-a_1234"), json!("5s")]);
    }
}

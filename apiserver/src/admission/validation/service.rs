//! Service rules: type, ports (names, numbers, protocols, target ports), session affinity,
//! traffic policies, IP families, cluster IP format, and that cluster IPs do not change.
//! Node-port ranges and allocation are the allocator's business, not checked here.

use std::collections::BTreeSet;
use std::net::IpAddr;

use api_types::k8s_openapi::api::core::v1 as core;
use api_types::names;
use serde_json::Value;

use super::pod::port_number_or_name;
use super::render::{go_service_port_key, go_string_slice};
use super::{
    FieldError, FieldErrorKind, Path, decode, invalid_rendered, name_errors, optional_supported_value, port_number,
    port_protocol, supported_value, validate_labels,
};

/// The kubelet's port, which a LoadBalancer may not expose.
const KUBELET_PORT: i32 = 10250;
const MAX_CLIENT_IP_TIMEOUT_SECONDS: i32 = 86400;
const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

pub(super) fn validate_service(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let spec: core::ServiceSpec = match decode(obj, "spec") {
        Ok(spec) => spec,
        Err(e) => return vec![e],
    };
    let p = Path::new("spec");
    let mut errs = Vec::new();
    let type_ = spec.type_.as_deref().unwrap_or("");
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let ports = spec.ports.as_deref().unwrap_or_default();
    let ports_path = p.child("ports");

    if ports.is_empty() && !headless && type_ != "ExternalName" {
        errs.push(FieldError::required(&ports_path, ""));
    }
    match type_ {
        "LoadBalancer" | "NodePort" if headless => errs.push(FieldError::invalid(
            p.child("clusterIP"),
            "None",
            format!("may not be set to 'None' for {type_} services"),
        )),
        _ => {}
    }
    if type_ == "LoadBalancer" {
        for (i, port) in ports.iter().enumerate().filter(|(_, port)| port.port == KUBELET_PORT) {
            errs.push(FieldError::invalid_raw(
                ports_path.index(i).child("port"),
                port.port.to_string(),
                format!("may not expose port {KUBELET_PORT} externally since it is used by kubelet"),
            ));
        }
    }
    if type_ == "ExternalName" {
        errs.extend(external_name(&spec, &p));
    }

    let mut names = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        errs.extend(service_port(port, ports.len() > 1, &mut names, &ports_path.index(i)));
    }
    errs.extend(validate_labels(&p.child("selector"), spec.selector.as_ref()));
    errs.extend(session_affinity(&spec, &p));
    errs.extend(cluster_ip_format(&spec, &p));
    errs.extend(supported_value(
        &p.child("type"),
        spec.type_.as_deref(),
        &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
    ));
    if type_ == "ClusterIP" {
        for (i, _) in ports.iter().enumerate().filter(|(_, port)| port.node_port.is_some_and(|n| n != 0)) {
            errs.push(FieldError::forbidden(
                ports_path.index(i).child("nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for (i, port) in ports.iter().enumerate() {
        let protocol = port.protocol.clone().unwrap_or_default();
        if !seen.insert((protocol.clone(), port.port)) {
            errs.push(FieldError {
                field: ports_path.index(i).into(),
                kind: FieldErrorKind::Duplicate(go_service_port_key(&protocol, port.port)),
                detail: String::new(),
            });
        }
    }
    errs.extend(traffic_policies(&spec, &p));
    errs.extend(optional_supported_value(
        &p.child("ipFamilyPolicy"),
        spec.ip_family_policy.as_deref(),
        &["PreferDualStack", "RequireDualStack", "SingleStack"],
    ));
    for (i, family) in spec.ip_families.iter().flatten().enumerate() {
        errs.extend(supported_value(&p.child("ipFamilies").index(i), Some(family), &["IPv4", "IPv6"]));
    }

    let old_spec = match old.map(|old| decode::<core::ServiceSpec>(old, "spec")) {
        Some(Ok(old_spec)) => Some(old_spec),
        Some(Err(e)) => return [errs, vec![e]].concat(),
        None => None,
    };
    match cluster_ips(&spec, old_spec.as_ref()) {
        Ok(new_ips) => {
            if let Some(old_spec) = &old_spec {
                let old_ips = cluster_ips(old_spec, None).unwrap_or_default();
                errs.extend(cluster_ips_unchanged(&spec, &new_ips, old_spec, &old_ips));
            }
        }
        Err(e) => errs.push(e),
    }
    errs
}

/// An ExternalName service names a DNS subdomain (a trailing dot allowed) and has no cluster IPs.
fn external_name(spec: &core::ServiceSpec, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if spec.cluster_ips.as_ref().is_some_and(|ips| !ips.is_empty()) {
        errs.push(FieldError::forbidden(p.child("clusterIPs"), "may not be set for ExternalName services"));
    }
    let name = spec.external_name.as_deref().unwrap_or("");
    let cname = name.strip_suffix('.').unwrap_or(name);
    if cname.is_empty() {
        errs.push(FieldError::required(p.child("externalName"), ""));
    } else {
        errs.extend(name_errors(&p.child("externalName"), cname, names::is_dns1123_subdomain(cname)));
    }
    errs
}

/// Port names are unique DNS labels, required when there is more than one port.
fn service_port(
    port: &core::ServicePort,
    require_name: bool,
    names: &mut BTreeSet<String>,
    p: &Path,
) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = port.name.as_deref().unwrap_or("");
    if name.is_empty() {
        if require_name {
            errs.push(FieldError::required(p.child("name"), ""));
        }
    } else {
        errs.extend(name_errors(&p.child("name"), name, names::is_dns1123_label(name)));
        if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(p.child("name"), name));
        }
    }
    errs.extend(port_number(&p.child("port"), port.port));
    errs.extend(port_protocol(&p.child("protocol"), port.protocol.as_deref()));
    if let Some(target) = &port.target_port {
        errs.extend(port_number_or_name(&p.child("targetPort"), target));
    }
    errs
}

fn session_affinity(spec: &core::ServiceSpec, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let affinity = spec.session_affinity.as_deref();
    errs.extend(supported_value(&p.child("sessionAffinity"), affinity, &["ClientIP", "None"]));
    let config_path = p.child("sessionAffinityConfig");
    if affinity == Some("ClientIP") {
        let timeout =
            spec.session_affinity_config.as_ref().and_then(|c| c.client_ip.as_ref()).and_then(|c| c.timeout_seconds);
        match (&spec.session_affinity_config, timeout) {
            (None, _) => errs.push(FieldError::required(&config_path, "when session affinity type is ClientIP")),
            (Some(_), Some(t)) if !(1..=MAX_CLIENT_IP_TIMEOUT_SECONDS).contains(&t) => {
                errs.push(FieldError::invalid_raw(
                    config_path.child("clientIP").child("timeoutSeconds"),
                    t.to_string(),
                    format!("must be greater than 0 and less than {MAX_CLIENT_IP_TIMEOUT_SECONDS}"),
                ));
            }
            _ => {}
        }
    } else if let Some(config) = &spec.session_affinity_config {
        errs.push(invalid_rendered(
            &config_path,
            serde_json::to_string(config).unwrap_or_default(),
            "must not be set when session affinity is None",
        ));
    }
    errs
}

/// Each cluster IP is `None` (first only), empty, or an IP address.
fn cluster_ip_format(spec: &core::ServiceSpec, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let check = |path: Path, ip: &str, first: bool, errs: &mut Vec<FieldError>| {
        if ip.is_empty() || (first && ip == "None") {
            return;
        }
        if ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError::invalid(path, ip, INVALID_IP));
        }
    };
    match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => {
            for (i, ip) in ips.iter().enumerate() {
                check(p.child("clusterIPs").index(i), ip, i == 0, &mut errs);
            }
        }
        _ => check(p.child("clusterIP"), spec.cluster_ip.as_deref().unwrap_or(""), true, &mut errs),
    }
    errs
}

fn traffic_policies(spec: &core::ServiceSpec, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let type_ = spec.type_.as_deref().unwrap_or("");
    let node_ports = matches!(type_, "NodePort" | "LoadBalancer");
    let external_ips = spec.external_ips.as_ref().is_some_and(|ips| !ips.is_empty());
    let externally_accessible = node_ports || (type_ == "ClusterIP" && external_ips);
    let external = spec.external_traffic_policy.as_deref().filter(|v| !v.is_empty());
    let external_path = p.child("externalTrafficPolicy");
    match external {
        Some(policy) if !externally_accessible => {
            errs.push(FieldError::invalid(&external_path, policy, "may only be set for externally-accessible services"))
        }
        Some(_) => errs.extend(supported_value(&external_path, external, &["Cluster", "Local"])),
        None if node_ports => errs.push(FieldError::required(&external_path, "")),
        None => {}
    }
    let internal_path = p.child("internalTrafficPolicy");
    match spec.internal_traffic_policy.as_deref() {
        None if type_ != "ExternalName" => errs.push(FieldError::required(&internal_path, "")),
        None => {}
        Some(policy) => errs.extend(supported_value(&internal_path, Some(policy), &["Cluster", "Local"])),
    }
    errs
}

/// A service's cluster IPs, `clusterIP` and `clusterIPs` reconciled as upstream does before it
/// validates: on update, whichever of the two the client edited wins; otherwise they must agree.
fn cluster_ips(spec: &core::ServiceSpec, old: Option<&core::ServiceSpec>) -> Result<Vec<String>, FieldError> {
    let mut ips = spec.cluster_ips.clone().unwrap_or_default();
    let Some(primary) = spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()) else {
        return Ok(ips);
    };
    match ips.first() {
        None => ips.push(primary.to_string()),
        Some(first) if first == primary => {}
        // Only clusterIP was edited.
        Some(_) if old.is_some_and(|o| o.cluster_ips == spec.cluster_ips) => ips[0] = primary.to_string(),
        // Only clusterIPs was edited.
        Some(_) if old.is_some_and(|o| o.cluster_ip == spec.cluster_ip) => {}
        Some(_) => {
            return Err(invalid_rendered(
                &Path::new("spec").child("clusterIPs"),
                go_string_slice(Some(&ips)),
                "first value must match `clusterIP`",
            ));
        }
    }
    Ok(ips)
}

/// The primary cluster IP never changes (except to or from ExternalName, or between two
/// headless forms); a secondary one may be added or dropped. An update that leaves the cluster
/// IPs out keeps the stored ones (the allocator copies them over, as upstream does before it
/// validates), so that is no change.
fn cluster_ips_unchanged(
    new: &core::ServiceSpec,
    new_ips: &[String],
    old: &core::ServiceSpec,
    old_ips: &[String],
) -> Vec<FieldError> {
    let external_name = |s: &core::ServiceSpec| s.type_.as_deref() == Some("ExternalName");
    let headless = |s: &core::ServiceSpec| s.cluster_ip.as_deref() == Some("None");
    if external_name(new) || external_name(old) || (headless(new) && headless(old)) {
        return Vec::new();
    }
    if new_ips.is_empty() {
        return Vec::new();
    }
    let path = Path::new("spec").child("clusterIPs");
    let rendered = go_string_slice(Some(new_ips));
    let changed = |i: usize| FieldError::invalid_raw(path.index(i), rendered.clone(), "may not change once set");
    let mut errs = Vec::new();
    if new_ips.len() == old_ips.len() {
        errs.extend(old_ips.iter().zip(new_ips).enumerate().filter(|(_, (o, n))| o != n).map(|(i, _)| changed(i)));
    } else if !old_ips.is_empty() && new_ips[0] != old_ips[0] {
        errs.push(changed(0));
    }
    errs
}

#[cfg(test)]
mod tests;

//! What the Endpoints and EndpointSlice controllers share about Services and their pods: which
//! pods a Service selects, whether a pod is an endpoint at all, and which port a Service port's
//! `targetPort` means on a given pod.

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The Service's selector, if the controllers manage its endpoints: Services without a selector
/// (their endpoints are written by hand) and ExternalName Services have none.
pub fn managed_selector(svc: &Service) -> Option<&std::collections::BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref()
}

/// Whether `selector` (a Service's equality-based map) selects `pod`.
pub fn selects(selector: &std::collections::BTreeMap<String, String>, pod: &Pod) -> bool {
    let empty = Default::default();
    let labels = pod.metadata.labels.as_ref().unwrap_or(&empty);
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The pod's IP, if it is a possible endpoint: it has one and has not finished.
pub fn endpoint_ip(pod: &Pod) -> Option<&str> {
    let status = pod.status.as_ref()?;
    if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
        return None;
    }
    status.pod_ip.as_deref().filter(|ip| !ip.is_empty())
}

/// The port a Service port sends to on `pod`: a number as it is, a name looked up among the
/// pod's container ports (same protocol); `None` when the pod has no port of that name.
pub fn target_port(port: &ServicePort, pod: &Pod) -> Option<i32> {
    let protocol = port.protocol.as_deref().unwrap_or("TCP");
    match port.target_port.as_ref() {
        None => Some(port.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => match name.parse::<i32>() {
            Ok(n) => Some(n),
            Err(_) => pod.spec.as_ref()?.containers.iter().flat_map(|c| c.ports.iter().flatten()).find_map(|p| {
                (p.name.as_deref() == Some(name.as_str()) && p.protocol.as_deref().unwrap_or("TCP") == protocol)
                    .then_some(p.container_port)
            }),
        },
    }
}

/// Keys of the Services whose endpoints a pod change may alter: those selecting the pod before
/// or after the change.
pub fn keys_for_pod_change(
    services: &crate::informers::Informer<Service>,
    change: &crate::informers::Change<Pod>,
) -> Vec<String> {
    use crate::informers::Change;
    let (old, new) = match change {
        Change::Applied { old, new } => {
            if old.as_ref().is_some_and(|o| o.metadata.resource_version == new.metadata.resource_version) {
                return Vec::new();
            }
            (old.as_deref(), Some(new.as_ref()))
        }
        Change::Deleted(old) => (Some(old.as_ref()), None),
    };
    let Some(ns) = new.or(old).and_then(|p| p.metadata.namespace.as_deref()) else { return Vec::new() };
    services
        .list(ns)
        .iter()
        .filter(|svc| {
            managed_selector(svc)
                .is_some_and(|sel| old.is_some_and(|p| selects(sel, p)) || new.is_some_and(|p| selects(sel, p)))
        })
        .map(|svc| crate::pods::key(&svc.metadata))
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodStatus};

    use super::*;

    fn pod_with_ports(ports: &[(&str, i32, &str)]) -> Pod {
        Pod {
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "c".into(),
                    ports: Some(
                        ports
                            .iter()
                            .map(|(name, port, proto)| ContainerPort {
                                name: Some(name.to_string()),
                                container_port: *port,
                                protocol: Some(proto.to_string()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            status: Some(PodStatus {
                pod_ip: Some("10.0.0.1".into()),
                phase: Some("Running".into()),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn target_ports_resolve_by_number_or_by_name_and_protocol() {
        let pod = pod_with_ports(&[("http", 8080, "TCP"), ("dns", 53, "UDP")]);
        let port = |target: Option<IntOrString>, proto: &str| ServicePort {
            port: 80,
            target_port: target,
            protocol: Some(proto.into()),
            ..Default::default()
        };
        let cases = [
            (port(None, "TCP"), Some(80)),
            (port(Some(IntOrString::Int(9090)), "TCP"), Some(9090)),
            (port(Some(IntOrString::String("http".into())), "TCP"), Some(8080)),
            (port(Some(IntOrString::String("http".into())), "UDP"), None),
            (port(Some(IntOrString::String("dns".into())), "UDP"), Some(53)),
            (port(Some(IntOrString::String("nope".into())), "TCP"), None),
        ];
        for (i, (p, want)) in cases.into_iter().enumerate() {
            assert_eq!(target_port(&p, &pod), want, "case {i}");
        }
    }

    #[test]
    fn finished_pods_and_pods_without_ips_are_no_endpoints() {
        let mut pod = pod_with_ports(&[]);
        assert_eq!(endpoint_ip(&pod), Some("10.0.0.1"));
        if let Some(s) = pod.status.as_mut() {
            s.phase = Some("Succeeded".into());
        }
        assert_eq!(endpoint_ip(&pod), None);
        assert_eq!(endpoint_ip(&Pod::default()), None);
    }
}

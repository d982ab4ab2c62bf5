//! NodePorts: a hostPort can be held once per node, protocol and address (`0.0.0.0` clashes
//! with every address).

use crate::cache::NodeInfo;
use crate::framework::{Filter, Prepared};

pub struct NodePorts;

fn clash(a: &(String, String, i32), b: &(String, String, i32)) -> bool {
    a.2 == b.2 && a.1 == b.1 && (a.0 == b.0 || a.0 == "0.0.0.0" || b.0 == "0.0.0.0")
}

impl Filter for NodePorts {
    fn name(&self) -> &'static str {
        "NodePorts"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        let taken = p.pod.host_ports.iter().any(|want| node.used_ports.iter().any(|used| clash(want, used)));
        if taken { Err(vec!["node(s) didn't have free ports for the requested pod ports".into()]) } else { Ok(()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn host_ports_clash_by_port_protocol_and_address() {
        let holder =
            pod(json!({"metadata": {"name": "h", "uid": "h"}, "spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080},
                {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"}
            ]}]}}));
        let c = cache(vec![node(json!({"metadata": {"name": "a"}}))], vec![("a", holder)]);
        let cases = [
            (json!({"containerPort": 1, "hostPort": 8080}), false),
            (json!({"containerPort": 1, "hostPort": 8080, "protocol": "UDP"}), true),
            (json!({"containerPort": 1, "hostPort": 8081}), true),
            (json!({"containerPort": 1, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.2"}), true),
            (json!({"containerPort": 1, "hostPort": 53, "protocol": "UDP"}), false),
            (json!({"containerPort": 1}), true),
        ];
        for (port, fits) in cases {
            let p = pod(json!({"spec": {"containers": [{"name": "c", "ports": [port.clone()]}]}}));
            assert_eq!(NodePorts.filter(&Prepared::new(&p, &c), info(&c, "a")).is_ok(), fits, "{port}");
        }
    }
}

//! NodeName: a pod that names its node fits only there.

use crate::cache::NodeInfo;
use crate::framework::{Filter, Prepared};

pub struct NodeName;

impl Filter for NodeName {
    fn name(&self) -> &'static str {
        "NodeName"
    }

    fn filter(&self, p: &Prepared<'_>, node: &NodeInfo) -> Result<(), Vec<String>> {
        match p.pod.spec().node_name.as_deref() {
            Some(n) if !n.is_empty() && n != node.name => {
                Err(vec!["node(s) didn't match the requested node name".into()])
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let c = cache(vec![node(json!({"metadata": {"name": "a"}})), node(json!({"metadata": {"name": "b"}}))], vec![]);
        for (spec, want_a, want_b) in [(json!({"nodeName": "a"}), true, false), (json!({}), true, true)] {
            let p = pod(json!({"spec": spec}));
            let prepared = Prepared::new(&p, &c);
            assert_eq!(NodeName.filter(&prepared, info(&c, "a")).is_ok(), want_a);
            assert_eq!(NodeName.filter(&prepared, info(&c, "b")).is_ok(), want_b);
        }
    }
}

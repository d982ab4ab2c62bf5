//! ImageLocality: nodes that already have the pod's images score higher, by image size scaled
//! by how widely the image is spread (so one node with a popular image does not draw every pod).

use crate::cache::{Cache, NodeInfo, PodInfo};
use crate::framework::{MAX_NODE_SCORE, Prepared, Score};

pub struct ImageLocality;

const MB: i64 = 1024 * 1024;
/// Upstream's thresholds, per container.
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_THRESHOLD: i64 = 1000 * MB;

/// `busybox` → `busybox:latest`, as nodes report image names.
fn normalized(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || last.contains('@') { image.to_string() } else { format!("{image}:latest") }
}

/// The pod's images as nodes name them, each with how many nodes have it: the same for every
/// node, so worked out once per decision. Images no node has are left out.
#[derive(Default)]
pub struct State {
    images: Vec<(String, usize)>,
    containers: usize,
}

impl State {
    pub fn new(pod: &PodInfo, cache: &Cache) -> Self {
        let containers = &pod.spec().containers;
        let images = containers
            .iter()
            .filter_map(|c| {
                let name = normalized(c.image.as_deref()?);
                let spread = cache.image_spread(&name);
                (spread > 0).then_some((name, spread))
            })
            .collect();
        State { images, containers: containers.len() }
    }
}

impl Score for ImageLocality {
    fn name(&self) -> &'static str {
        "ImageLocality"
    }

    fn score(&self, p: &Prepared<'_>, node: &NodeInfo) -> i64 {
        let state = &p.images;
        if state.images.is_empty() {
            return 0;
        }
        let total_nodes = p.cache.len().max(1) as i64;
        let sum: i64 = state
            .images
            .iter()
            .filter_map(|(name, spread)| Some(*node.images.get(name)? * *spread as i64 / total_nodes))
            .sum();
        let n = state.containers.max(1) as i64;
        let (min, max) = (MIN_THRESHOLD * n, MAX_THRESHOLD * n);
        (sum.clamp(min, max) - min) * MAX_NODE_SCORE / (max - min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::*;
    use serde_json::json;

    #[test]
    fn nodes_with_big_common_images_score_higher() {
        let with = |name: &str| {
            node(
                json!({"metadata": {"name": name}, "status": {"images": [{"names": ["app:1"], "sizeBytes": 500 * MB}]}}),
            )
        };
        let c = cache(vec![with("a"), with("b"), node(json!({"metadata": {"name": "c"}}))], vec![]);
        let p = pod(json!({"spec": {"containers": [{"name": "c", "image": "app:1"}]}}));
        let prepared = Prepared::new(&p, &c);
        let scores: Vec<i64> = ["a", "b", "c"].iter().map(|n| ImageLocality.score(&prepared, info(&c, n))).collect();
        // 500 MB × 2/3 of the nodes = 333 MB, between 23 MB and 1000 MB.
        assert_eq!(scores, [31, 31, 0]);
        assert_eq!(normalized("busybox"), "busybox:latest");
        assert_eq!(normalized("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
    }
}

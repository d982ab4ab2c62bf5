//! The garbage collector's picture of the cluster, pure: every object's metadata by UID, who
//! owns whom, and what the collector does with one object given the state of its owners.

use std::collections::{HashMap, HashSet};

use api_types::registry::ResourceInfo;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const ORPHAN: &str = "orphan";
pub const FOREGROUND: &str = "foregroundDeletion";

/// One object as the collector knows it.
#[derive(Debug, Clone)]
pub struct Node {
    pub resource: &'static ResourceInfo,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub resource_version: String,
    pub owners: Vec<OwnerReference>,
    pub finalizers: Vec<String>,
    pub deleting: bool,
}

impl Node {
    pub fn from_meta(resource: &'static ResourceInfo, meta: &ObjectMeta) -> Option<Node> {
        Some(Node {
            resource,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            uid: meta.uid.clone()?,
            resource_version: meta.resource_version.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
            deleting: meta.deletion_timestamp.is_some(),
        })
    }

    pub fn has_finalizer(&self, f: &str) -> bool {
        self.finalizers.iter().any(|x| x == f)
    }

    /// Being deleted in the foreground: its dependents go first.
    pub fn deleting_dependents(&self) -> bool {
        self.deleting && self.has_finalizer(FOREGROUND)
    }

    /// `kind namespace/name`, for logs.
    pub fn describe(&self) -> String {
        if self.namespace.is_empty() {
            format!("{} {}", self.resource.kind, self.name)
        } else {
            format!("{} {}/{}", self.resource.kind, self.namespace, self.name)
        }
    }
}

/// Every object, and the dependents of every owner UID (seen or not).
#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
}

impl Graph {
    pub fn get(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    /// The objects that name `uid` as an owner.
    pub fn dependents(&self, uid: &str) -> Vec<&Node> {
        self.dependents.get(uid).into_iter().flatten().filter_map(|d| self.nodes.get(d)).collect()
    }

    /// UIDs of the objects of `resource` (to find those a relist no longer has).
    pub fn uids_of(&self, resource: &ResourceInfo) -> Vec<String> {
        self.nodes.values().filter(|n| std::ptr::eq(n.resource, resource)).map(|n| n.uid.clone()).collect()
    }

    /// Records an added or changed object; returns the UIDs the collector should look at.
    pub fn apply(&mut self, node: Node) -> Vec<String> {
        let uid = node.uid.clone();
        if let Some(old) = self.nodes.get(&uid) {
            for owner in &old.owners {
                if let Some(set) = self.dependents.get_mut(&owner.uid) {
                    set.remove(&uid);
                    if set.is_empty() {
                        self.dependents.remove(&owner.uid);
                    }
                }
            }
        }
        for owner in &node.owners {
            self.dependents.entry(owner.uid.clone()).or_default().insert(uid.clone());
        }
        let needs_look = (node.deleting && (node.has_finalizer(ORPHAN) || node.has_finalizer(FOREGROUND)))
            || node.owners.iter().any(|o| self.nodes.get(&o.uid).is_none_or(Node::deleting_dependents));
        self.nodes.insert(uid.clone(), node);
        if needs_look { vec![uid] } else { Vec::new() }
    }

    /// Forgets a deleted object; returns its dependents (their owner is gone) and its owners
    /// waiting in the foreground for it.
    pub fn remove(&mut self, uid: &str) -> Vec<String> {
        let Some(node) = self.nodes.remove(uid) else { return Vec::new() };
        let mut look: Vec<String> = self.dependents.get(uid).into_iter().flatten().cloned().collect();
        for owner in &node.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
                if set.is_empty() {
                    self.dependents.remove(&owner.uid);
                }
            }
            if self.nodes.get(&owner.uid).is_some_and(Node::deleting_dependents) {
                look.push(owner.uid.clone());
            }
        }
        look
    }
}

/// What an owner reference points at, as far as the collector can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Exists, with the referenced UID, and is not waiting for its dependents.
    Solid,
    /// Gone (or replaced by an object with another UID).
    Dangling,
    /// Being deleted in the foreground: waits for this dependent to go.
    WaitingForDependents,
}

/// What the collector does with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Nothing,
    /// Delete it, with this propagation policy.
    Delete(&'static str),
    /// Drop these owner references (UIDs): another owner still holds it.
    RemoveOwners(Vec<String>),
    /// Orphan: take this owner out of every dependent's references, then drop the finalizer.
    Orphan {
        dependents: Vec<String>,
    },
    /// Foreground: delete these dependents first (in the foreground too).
    DeleteDependents(Vec<String>),
    /// Every blocking dependent is gone: drop the finalizer, and the API server deletes it.
    RemoveFinalizer(&'static str),
}

/// Decides for `node`, given what each of its owners is (same order as `node.owners`) and,
/// for an owner being deleted, its dependents.
pub fn decide(node: &Node, owners: &[Owner], dependents: &[&Node]) -> Action {
    if node.deleting {
        if node.has_finalizer(ORPHAN) {
            return Action::Orphan { dependents: dependents.iter().map(|d| d.uid.clone()).collect() };
        }
        if node.has_finalizer(FOREGROUND) {
            let blocking: Vec<&&Node> = dependents
                .iter()
                .filter(|d| d.owners.iter().any(|o| o.uid == node.uid && o.block_owner_deletion == Some(true)))
                .collect();
            if blocking.is_empty() {
                return Action::RemoveFinalizer(FOREGROUND);
            }
            let to_delete: Vec<String> = dependents.iter().filter(|d| !d.deleting).map(|d| d.uid.clone()).collect();
            return if to_delete.is_empty() { Action::Nothing } else { Action::DeleteDependents(to_delete) };
        }
        return Action::Nothing;
    }
    if node.owners.is_empty() {
        return Action::Nothing;
    }
    let gone: Vec<String> = node
        .owners
        .iter()
        .zip(owners)
        .filter(|(_, state)| **state != Owner::Solid)
        .map(|(r, _)| r.uid.clone())
        .collect();
    if gone.is_empty() {
        return Action::Nothing;
    }
    if owners.contains(&Owner::Solid) {
        return Action::RemoveOwners(gone);
    }
    if owners.contains(&Owner::WaitingForDependents) {
        Action::Delete("Foreground")
    } else {
        Action::Delete("Background")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource() -> &'static ResourceInfo {
        api_types::registry::by_plural("", "v1", "pods").unwrap_or(&api_types::registry::RESOURCES[0])
    }

    fn node(uid: &str, owners: &[(&str, bool)], finalizers: &[&str], deleting: bool) -> Node {
        Node {
            resource: resource(),
            namespace: "ns".into(),
            name: uid.into(),
            uid: uid.into(),
            resource_version: "1".into(),
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    uid: o.to_string(),
                    name: o.to_string(),
                    kind: "ReplicaSet".into(),
                    api_version: "apps/v1".into(),
                    block_owner_deletion: Some(*block),
                    controller: Some(true),
                })
                .collect(),
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
            deleting,
        }
    }

    #[test]
    fn an_object_is_collected_once_all_its_owners_are_gone() {
        use Owner::*;
        let one = node("pod", &[("rs", true)], &[], false);
        let two = node("pod", &[("a", false), ("b", false)], &[], false);
        let cases: [(&Node, &[Owner], Action); 7] = [
            (&one, &[Solid], Action::Nothing),
            (&one, &[Dangling], Action::Delete("Background")),
            (&one, &[WaitingForDependents], Action::Delete("Foreground")),
            (&two, &[Solid, Dangling], Action::RemoveOwners(vec!["b".into()])),
            (&two, &[WaitingForDependents, Solid], Action::RemoveOwners(vec!["a".into()])),
            (&two, &[Dangling, Dangling], Action::Delete("Background")),
            (&node("free", &[], &[], false), &[], Action::Nothing),
        ];
        for (i, (n, owners, want)) in cases.into_iter().enumerate() {
            assert_eq!(decide(n, owners, &[]), want, "case {i}");
        }
    }

    #[test]
    fn finalizers_decide_for_an_owner_being_deleted() {
        let child = node("pod", &[("rs", true)], &[], false);
        let leaving_child = node("pod2", &[("rs", true)], &[], true);
        let loose_child = node("pod3", &[("rs", false)], &[], false);
        let orphaning = node("rs", &[], &[ORPHAN], true);
        assert_eq!(decide(&orphaning, &[], &[&child]), Action::Orphan { dependents: vec!["pod".into()] });
        let foreground = node("rs", &[], &[FOREGROUND], true);
        assert_eq!(
            decide(&foreground, &[], &[&child, &loose_child]),
            Action::DeleteDependents(vec!["pod".into(), "pod3".into()])
        );
        assert_eq!(decide(&foreground, &[], &[&leaving_child]), Action::Nothing, "waits for a dependent already going");
        assert_eq!(decide(&foreground, &[], &[&loose_child]), Action::RemoveFinalizer(FOREGROUND), "nothing blocks");
        assert_eq!(decide(&foreground, &[], &[]), Action::RemoveFinalizer(FOREGROUND));
        assert_eq!(decide(&node("rs", &[], &["other"], true), &[], &[&child]), Action::Nothing);
    }

    #[test]
    fn the_graph_says_whom_to_look_at() {
        let mut g = Graph::default();
        assert_eq!(g.apply(node("pod", &[("rs", true)], &[], false)), ["pod"], "owner not seen yet");
        assert!(g.apply(node("rs", &[], &[], false)).is_empty());
        assert!(g.apply(node("pod", &[("rs", true)], &[], false)).is_empty(), "owner present");
        assert_eq!(g.dependents("rs").len(), 1);
        assert_eq!(g.apply(node("rs", &[], &[FOREGROUND], true)), ["rs"]);
        assert_eq!(g.apply(node("pod", &[("rs", true)], &[], false)), ["pod"], "owner waits for it");
        assert_eq!(g.remove("pod"), ["rs"], "the waiting owner looks again");
        assert!(g.dependents("rs").is_empty());
        g.apply(node("pod", &[("rs", true)], &[], false));
        assert_eq!(g.remove("rs"), ["pod"], "dependents of a deleted owner");
        g.apply(node("pod", &[], &[], false));
        assert!(g.dependents("rs").is_empty(), "a changed owner list moves the edges");
    }
}

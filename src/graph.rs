//! The image dependency graph (petgraph): an edge parent → child for every
//! `image.<ADDR>.id` reference. Cycles are an error that names every image
//! in the cycle and where each reference is written.

use std::collections::{BTreeMap, BTreeSet};

use petgraph::algo::{tarjan_scc, toposort};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::Direction;

use crate::addr::ImageAddr;
use crate::diag::{Diagnostic, SourceLoc};

#[derive(Debug, Clone)]
pub struct ImageGraph {
    graph: DiGraph<ImageAddr, ()>,
    index: BTreeMap<ImageAddr, NodeIndex>,
}

impl ImageGraph {
    /// `images`: each image with its parents and where each is referenced.
    pub fn build<'a>(
        images: impl IntoIterator<Item = (&'a ImageAddr, &'a BTreeMap<ImageAddr, SourceLoc>)>,
    ) -> Result<ImageGraph, Vec<Diagnostic>> {
        let images: Vec<_> = images.into_iter().collect();
        let mut graph = DiGraph::new();
        let mut index = BTreeMap::new();
        for (addr, _) in &images {
            index.insert((*addr).clone(), graph.add_node((*addr).clone()));
        }
        let mut locs: BTreeMap<(ImageAddr, ImageAddr), SourceLoc> = BTreeMap::new();
        for (addr, refs) in &images {
            for (parent, loc) in refs.iter() {
                if let (Some(&p), Some(&c)) = (index.get(parent), index.get(*addr)) {
                    graph.add_edge(p, c, ());
                    locs.insert((parent.clone(), (*addr).clone()), loc.clone());
                }
            }
        }
        let mut diags = Vec::new();
        for scc in tarjan_scc(&graph) {
            if scc.len() < 2 {
                continue;
            }
            let mut members: Vec<ImageAddr> = scc.iter().map(|n| graph[*n].clone()).collect();
            members.sort();
            let names = members
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" → ");
            let member_set: BTreeSet<&ImageAddr> = members.iter().collect();
            let first = locs
                .iter()
                .find(|((p, c), _)| member_set.contains(p) && member_set.contains(c))
                .map(|(_, l)| l.clone());
            let detail = locs
                .iter()
                .filter(|((p, c), _)| member_set.contains(p) && member_set.contains(c))
                .map(|((p, c), l)| format!("{c} uses image.{p}.id at {l}"))
                .collect::<Vec<_>>()
                .join("\n");
            diags.push(
                Diagnostic::error(format!("dependency cycle between images: {names} → {}", members[0]))
                    .at(first)
                    .detail(detail)
                    .hint("an image cannot (indirectly) be built from itself; remove one of the image.<ADDR>.id references"),
            );
        }
        if !diags.is_empty() {
            return Err(diags);
        }
        Ok(ImageGraph { graph, index })
    }

    /// Every image, parents before children; ties broken by address.
    pub fn topo_order(&self) -> Vec<ImageAddr> {
        // toposort cannot fail: cycles were rejected in build().
        let order = toposort(&self.graph, None).unwrap_or_default();
        // Stable order: repeatedly take the smallest ready address.
        let mut indegree: BTreeMap<NodeIndex, usize> = order
            .iter()
            .map(|n| {
                (
                    *n,
                    self.graph
                        .neighbors_directed(*n, Direction::Incoming)
                        .count(),
                )
            })
            .collect();
        let mut ready: BTreeSet<(ImageAddr, NodeIndex)> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| (self.graph[*n].clone(), *n))
            .collect();
        let mut out = Vec::with_capacity(order.len());
        while let Some(first) = ready.iter().next().cloned() {
            ready.remove(&first);
            out.push(first.0.clone());
            for child in self.graph.neighbors_directed(first.1, Direction::Outgoing) {
                let d = indegree.get_mut(&child).expect("node");
                *d -= 1;
                if *d == 0 {
                    ready.insert((self.graph[child].clone(), child));
                }
            }
        }
        out
    }

    pub fn parents(&self, addr: &ImageAddr) -> Vec<ImageAddr> {
        self.neighbors(addr, Direction::Incoming)
    }

    pub fn children(&self, addr: &ImageAddr) -> Vec<ImageAddr> {
        self.neighbors(addr, Direction::Outgoing)
    }

    fn neighbors(&self, addr: &ImageAddr, dir: Direction) -> Vec<ImageAddr> {
        let Some(&n) = self.index.get(addr) else {
            return Vec::new();
        };
        let mut out: Vec<ImageAddr> = self
            .graph
            .neighbors_directed(n, dir)
            .map(|m| self.graph[m].clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The image and everything it is built from.
    pub fn with_ancestors(&self, addr: &ImageAddr) -> BTreeSet<ImageAddr> {
        self.closure(addr, Direction::Incoming)
    }

    /// The image and everything built from it.
    pub fn with_descendants(&self, addr: &ImageAddr) -> BTreeSet<ImageAddr> {
        self.closure(addr, Direction::Outgoing)
    }

    fn closure(&self, addr: &ImageAddr, dir: Direction) -> BTreeSet<ImageAddr> {
        let mut out = BTreeSet::new();
        let mut stack = vec![addr.clone()];
        while let Some(a) = stack.pop() {
            if out.insert(a.clone()) {
                stack.extend(self.neighbors(&a, dir));
            }
        }
        out
    }

    pub fn contains(&self, addr: &ImageAddr) -> bool {
        self.index.contains_key(addr)
    }

    /// Graphviz DOT, parents pointing at children.
    pub fn to_dot(&self) -> String {
        let mut out = String::from("digraph imgform {\n  rankdir = LR;\n  node [shape = box];\n");
        for addr in self.index.keys() {
            out.push_str(&format!("  \"{addr}\";\n"));
        }
        let mut edges: Vec<(String, String)> = self
            .graph
            .edge_indices()
            .filter_map(|e| self.graph.edge_endpoints(e))
            .map(|(a, b)| (self.graph[a].to_string(), self.graph[b].to_string()))
            .collect();
        edges.sort();
        for (a, b) in edges {
            out.push_str(&format!("  \"{a}\" -> \"{b}\";\n"));
        }
        out.push_str("}\n");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn loc() -> SourceLoc {
        SourceLoc {
            file: PathBuf::from("a.pkr.hcl"),
            line: 1,
            col: 1,
        }
    }

    #[test]
    fn orders_parents_first_and_finds_cycles() {
        let a: ImageAddr = "null.a".parse().unwrap();
        let b: ImageAddr = "null.b".parse().unwrap();
        let c: ImageAddr = "null.c".parse().unwrap();
        let none = BTreeMap::new();
        let b_refs = BTreeMap::from([(c.clone(), loc())]);
        let g = ImageGraph::build([(&a, &none), (&b, &b_refs), (&c, &none)]).unwrap();
        assert_eq!(g.topo_order(), vec![a.clone(), c.clone(), b.clone()]);
        assert_eq!(g.with_ancestors(&b).len(), 2);

        let a_refs = BTreeMap::from([(b.clone(), loc())]);
        let b_refs = BTreeMap::from([(a.clone(), loc())]);
        let err = ImageGraph::build([(&a, &a_refs), (&b, &b_refs)]).unwrap_err();
        assert!(
            err[0].summary.contains("null.a → null.b"),
            "{}",
            err[0].summary
        );
    }
}

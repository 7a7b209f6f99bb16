//! The dependency graph (petgraph): nodes and sources, edges from parent to child.
//!
//! Building it fails with a diagnostic that prints the whole cycle, file by file.

use std::collections::{BTreeSet, VecDeque};

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use smol_str::SmolStr;

use crate::diag::{Diagnostic, Location};
use crate::manifest::Manifest;

pub struct Dag {
    /// Node weights are the unique ids, added in sorted order: a node's index is its position
    /// among the sorted ids, found by binary search (no second map of 50,000 id copies).
    graph: DiGraph<SmolStr, ()>,
    /// Node index → position in a stable topological order.
    order: Vec<usize>,
}

impl Dag {
    pub fn build(m: &Manifest) -> Result<Dag, Diagnostic> {
        // Nodes are added in unique_id order, so a node index orders as its id does: the
        // topological sort below then keeps its ready set as indices, not strings.
        // Node ids are shared with the manifest's keys, not copied.
        let mut ids: Vec<SmolStr> = m
            .sources
            .keys()
            .map(SmolStr::from)
            .chain(m.nodes.keys().cloned())
            .chain(m.exposures.keys().map(SmolStr::from))
            .collect();
        // Three sorted runs: a stable sort merges them in one pass.
        ids.sort();
        ids.dedup();
        let mut graph = DiGraph::with_capacity(ids.len(), ids.len());
        // The edges' ends are looked up by hash: a large project's 100,000 edges searched
        // in a map ordered by long, alike ids cost tens of milliseconds.
        let mut lookup: rustc_hash::FxHashMap<&str, NodeIndex> = Default::default();
        lookup.reserve(ids.len());
        for id in &ids {
            lookup.insert(id.as_str(), graph.add_node(id.clone()));
        }
        // The lookups on every core, in parts; the edges added in order.
        let dependencies: Vec<(&str, &[SmolStr])> = m.dependencies().collect();
        let parts: Vec<_> = dependencies.chunks(2048).collect();
        let edges = crate::parallel::map(&parts, 1, |part| {
            let mut edges = Vec::new();
            for (id, deps) in part.iter() {
                let Some(&ci) = lookup.get(id) else {
                    continue;
                };
                edges.extend(
                    deps.iter()
                        .filter_map(|p| Some((*lookup.get(p.as_str())?, ci))),
                );
            }
            edges
        });
        for (pi, ci) in edges.into_iter().flatten() {
            graph.add_edge(pi, ci, ());
        }
        drop(lookup);
        // Kahn's algorithm with a sorted ready set: a stable, readable order. A node left
        // unordered lies on a cycle or below one: only then are the strongly connected
        // components looked for, to name the cycle (a third of building a large DAG).
        let mut indeg: Vec<usize> = graph
            .node_indices()
            .map(|i| graph.neighbors_directed(i, Direction::Incoming).count())
            .collect();
        let mut ready: BTreeSet<NodeIndex> = graph
            .node_indices()
            .filter(|i| indeg[i.index()] == 0)
            .collect();
        let mut order = vec![usize::MAX; graph.node_count()];
        let mut next = 0;
        while let Some(first) = ready.pop_first() {
            order[first.index()] = next;
            next += 1;
            for c in graph.neighbors_directed(first, Direction::Outgoing) {
                let d = &mut indeg[c.index()];
                *d -= 1;
                if *d == 0 {
                    ready.insert(c);
                }
            }
        }
        if next < graph.node_count() {
            let sccs = petgraph::algo::tarjan_scc(&graph);
            if let Some(cycle) = sccs
                .iter()
                .find(|c| c.len() > 1 || graph.contains_edge(c[0], c[0]))
            {
                return Err(cycle_diagnostic(m, &graph, cycle));
            }
        }
        Ok(Dag { graph, order })
    }

    fn find(&self, id: &str) -> Option<NodeIndex> {
        self.graph
            .raw_nodes()
            .binary_search_by(|n| n.weight.as_str().cmp(id))
            .ok()
            .map(NodeIndex::new)
    }

    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_some()
    }

    /// Every id, in sorted order.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.graph.node_weights().map(SmolStr::as_str)
    }

    /// Direct parents or children.
    pub fn neighbors(&self, id: &str, up: bool) -> Vec<String> {
        let Some(i) = self.find(id) else {
            return vec![];
        };
        let dir = if up {
            Direction::Incoming
        } else {
            Direction::Outgoing
        };
        self.graph
            .neighbors_directed(i, dir)
            .map(|n| self.graph[n].to_string())
            .collect()
    }

    /// Ancestors (`up`) or descendants within `depth` steps (`None`: unlimited), without `id`.
    pub fn walk(&self, id: &str, up: bool, depth: Option<usize>) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut queue = VecDeque::from([(id.to_string(), 0usize)]);
        while let Some((cur, d)) = queue.pop_front() {
            if depth.is_some_and(|max| d >= max) {
                continue;
            }
            for n in self.neighbors(&cur, up) {
                if out.insert(n.clone()) {
                    queue.push_back((n, d + 1));
                }
            }
        }
        out
    }

    /// Sorts ids in topological order (stable: ties by unique_id).
    pub fn sort(&self, ids: impl IntoIterator<Item = String>) -> Vec<String> {
        let mut v: Vec<String> = ids.into_iter().collect();
        // One lookup per id, not one per comparison.
        v.sort_by_cached_key(|id| self.find(id).map_or(usize::MAX, |i| self.order[i.index()]));
        v
    }
}

fn cycle_diagnostic(m: &Manifest, graph: &DiGraph<SmolStr, ()>, scc: &[NodeIndex]) -> Diagnostic {
    // Walk the cycle inside the strongly connected component from its smallest member.
    let members: BTreeSet<NodeIndex> = scc.iter().copied().collect();
    let start = *members.iter().min_by_key(|i| graph[**i].clone()).unwrap();
    let mut path = vec![start];
    let mut cur = start;
    loop {
        let next = graph
            .neighbors_directed(cur, Direction::Outgoing)
            .filter(|n| members.contains(n))
            .min_by_key(|n| {
                (
                    if *n == start { 0 } else { 1 },
                    path.contains(n),
                    graph[*n].clone(),
                )
            })
            .unwrap();
        if next == start || path.contains(&next) {
            path.push(next);
            break;
        }
        path.push(next);
        cur = next;
    }
    let describe = |i: &NodeIndex| {
        let id = &graph[*i];
        match m.nodes.get(id.as_str()) {
            Some(n) => format!("{} ({})", n.name, n.original_file_path),
            None => id.to_string(),
        }
    };
    let chain: Vec<String> = path.iter().map(describe).collect();
    let first = &m.nodes[graph[start].as_str()];
    let second = m.nodes.get(graph[path[1]].as_str());
    let needle = second.map(|_| first.name.as_str()).unwrap_or("");
    let loc = match second {
        Some(s) => Location::find(&s.original_file_path, s.raw_code.clone(), needle),
        None => Location::file(&first.original_file_path, first.raw_code.clone()),
    };
    Diagnostic::error("cycle", format!("found a cycle: {}", chain.join(" → ")))
        .at(loc)
        .label("this ref closes the cycle")
        .hint(
            "a model cannot depend on itself, directly or through others: remove one of these refs",
        )
}

//! The dependency graph of a bundle: one node per entry plus one virtual barrier between
//! Foundation and workloads, longest-path steps, cycles, and dry-run checks.

use std::collections::BTreeMap;

use super::annotation::{self, Target};
use super::error::{CycleLink, PlanError};
use super::{Because, Category, Check, Entry, GroupKind, category};
use crate::object::ObjectRef;

/// Why an edge exists (A → B: B waits for A).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    /// A is the CRD defining B's kind.
    Definition,
    /// A is B's namespace.
    Namespace,
    /// Foundation → barrier, or barrier → workload.
    Barrier,
    /// B's annotation names A.
    Declared,
}

impl Why {
    fn text(self) -> &'static str {
        match self {
            Why::Definition => "instances wait for their CRD",
            Why::Namespace => "objects wait for their namespace",
            Why::Barrier => "workloads wait for config, RBAC, services and policies",
            Why::Declared => "declared in ferry.dev/depends-on",
        }
    }
}

/// The graph over `entries.len() + 1` nodes; the last is the barrier.
pub(super) struct Graph<'a> {
    /// Successors of each node, with why.
    succ: Vec<Vec<(usize, Why)>>,
    /// The barrier's node index.
    barrier: usize,
    /// Namespace entries by name.
    namespaces: BTreeMap<&'a str, Vec<usize>>,
    /// CRD entries by the kind they define.
    definitions: BTreeMap<&'a GroupKind, Vec<usize>>,
}

impl<'a> Graph<'a> {
    /// Builds every implicit and declared edge.
    ///
    /// # Errors
    /// Annotation errors: malformed, unknown target, ambiguous.
    pub(super) fn build(entries: &'a [Entry]) -> Result<Self, PlanError> {
        let mut graph = Graph {
            succ: vec![Vec::new(); entries.len() + 1],
            barrier: entries.len(),
            namespaces: BTreeMap::new(),
            definitions: BTreeMap::new(),
        };
        for (i, entry) in entries.iter().enumerate() {
            if category(&entry.group, &entry.id.kind) == Category::Namespaces {
                graph.namespaces.entry(&entry.id.name).or_default().push(i);
            }
            if let Some(defines) = &entry.defines {
                graph.definitions.entry(defines).or_default().push(i);
            }
        }
        for (i, entry) in entries.iter().enumerate() {
            graph.implicit_edges(i, entry);
        }
        let by_name = index_by_kind_and_name(entries);
        for (i, entry) in entries.iter().enumerate() {
            if let Some(value) = &entry.depends_on {
                graph.declared_edges(entries, &by_name, i, value)?;
            }
        }
        Ok(graph)
    }

    fn edge(&mut self, from: usize, to: usize, why: Why) {
        self.succ[from].push((to, why));
    }

    /// Namespace → entry, CRD → instance, Foundation → barrier → workload.
    fn implicit_edges(&mut self, i: usize, entry: &Entry) {
        let namespaces = entry
            .id
            .namespace
            .as_deref()
            .and_then(|ns| self.namespaces.get(ns))
            .cloned()
            .unwrap_or_default();
        for n in namespaces.into_iter().filter(|&n| n != i) {
            self.edge(n, i, Why::Namespace);
        }
        let kind = GroupKind {
            group: entry.group.clone(),
            kind: entry.id.kind.clone(),
        };
        let crds = self.definitions.get(&kind).cloned().unwrap_or_default();
        for c in crds.into_iter().filter(|&c| c != i) {
            self.edge(c, i, Why::Definition);
        }
        match category(&entry.group, &entry.id.kind) {
            Category::Foundation => self.edge(i, self.barrier, Why::Barrier),
            Category::Workloads => self.edge(self.barrier, i, Why::Barrier),
            Category::Definitions | Category::Namespaces | Category::Extensions => {}
        }
    }

    /// One edge per target of entry `i`'s annotation.
    fn declared_edges(
        &mut self,
        entries: &[Entry],
        by_name: &ByName<'_>,
        i: usize,
        value: &str,
    ) -> Result<(), PlanError> {
        let entry = &entries[i];
        let targets = annotation::parse(value).map_err(|problem| PlanError::BadAnnotation {
            object: Box::new(entry.id.clone()),
            template: entry.template.clone(),
            value: value.to_string(),
            problem,
        })?;
        for target in &targets {
            let from = resolve(entries, by_name, entry, target)?;
            self.edge(from, i, Why::Declared);
        }
        Ok(())
    }

    /// The step of each entry: the longest path from the roots, the barrier adding none.
    ///
    /// # Errors
    /// [`PlanError::Cycle`] when some entries wait for each other.
    pub(super) fn steps(&self, entries: &[Entry]) -> Result<Vec<usize>, PlanError> {
        let nodes = self.succ.len();
        let mut indegree = vec![0usize; nodes];
        for (to, _) in self.succ.iter().flatten() {
            indegree[*to] += 1;
        }
        let mut ready: Vec<usize> = (0..nodes).filter(|&v| indegree[v] == 0).collect();
        let mut level = vec![0usize; nodes];
        let mut done = 0;
        while let Some(u) = ready.pop() {
            done += 1;
            let out = if u == self.barrier {
                level[u]
            } else {
                level[u] + 1
            };
            for &(v, _) in &self.succ[u] {
                level[v] = level[v].max(out);
                indegree[v] -= 1;
                if indegree[v] == 0 {
                    ready.push(v);
                }
            }
        }
        if done < nodes {
            return Err(self.cycle(entries, &indegree));
        }
        level.truncate(entries.len());
        Ok(level)
    }

    /// Finds one cycle among the nodes Kahn's algorithm could not place (`indegree > 0`),
    /// walking back from the first of them; every such node has an unplaced predecessor.
    fn cycle(&self, entries: &[Entry], indegree: &[usize]) -> PlanError {
        let stuck = |v: usize| indegree[v] > 0;
        let mut preds: Vec<Option<(usize, Why)>> = vec![None; self.succ.len()];
        for (u, succ) in self.succ.iter().enumerate().filter(|(u, _)| stuck(*u)) {
            for &(v, why) in succ {
                if stuck(v) && preds[v].is_none() {
                    preds[v] = Some((u, why));
                }
            }
        }
        let start = (0..entries.len())
            .filter(|&v| stuck(v))
            .min_by(|&a, &b| entries[a].sort_key().cmp(&entries[b].sort_key()))
            .unwrap_or(self.barrier);
        // Walk back: each node waits for its predecessor, until a node repeats.
        let mut path: Vec<(usize, Why)> = Vec::new();
        let mut position = BTreeMap::new();
        let mut node = start;
        while let (None, Some((pred, why))) = (position.get(&node), preds[node]) {
            position.insert(node, path.len());
            path.push((node, why));
            node = pred;
        }
        let from = position.get(&node).copied().unwrap_or(0);
        let mut ring = without_barrier(&path[from..], self.barrier);
        // Start from the ring's first object in plan order, whatever order entries came in.
        if let Some(first) = (0..ring.len()).min_by(|&a, &b| {
            entries[ring[a].0]
                .sort_key()
                .cmp(&entries[ring[b].0].sort_key())
        }) {
            ring.rotate_left(first);
        }
        cycle_error(entries, &ring)
    }

    /// When the server can dry-run each entry.
    pub(super) fn checks(&self, entries: &[Entry], step_of: &[usize]) -> Vec<Check> {
        entries
            .iter()
            .enumerate()
            .map(|(i, entry)| self.check(i, entry, step_of))
            .collect()
    }

    fn check(&self, i: usize, entry: &Entry, step_of: &[usize]) -> Check {
        let latest = |indices: &[usize]| {
            indices
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| step_of[j])
                .max()
        };
        let namespace = entry.id.namespace.as_deref().and_then(|ns| {
            let step = latest(self.namespaces.get(ns)?)?;
            Some((step, Because::Namespace(ns.to_string())))
        });
        let kind = GroupKind {
            group: entry.group.clone(),
            kind: entry.id.kind.clone(),
        };
        let defined = self
            .definitions
            .get(&kind)
            .and_then(|crds| latest(crds))
            .map(|step| (step, Because::Kind(kind)));
        match (namespace, defined) {
            (Some(ns), Some(kind)) if ns.0 > kind.0 => after(ns),
            (_, Some(kind)) => after(kind),
            (Some(ns), None) => after(ns),
            (None, None) => Check::UpFront,
        }
    }
}

fn after((step, because): (usize, Because)) -> Check {
    Check::After { step, because }
}

/// Entries by (kind, name).
type ByName<'a> = BTreeMap<(&'a str, &'a str), Vec<usize>>;

fn index_by_kind_and_name(entries: &[Entry]) -> ByName<'_> {
    let mut by_name: ByName<'_> = BTreeMap::new();
    for (i, entry) in entries.iter().enumerate() {
        by_name
            .entry((&entry.id.kind, &entry.id.name))
            .or_default()
            .push(i);
    }
    by_name
}

/// The one entry `target` (declared by `entry`) names: in the namespace written, else in the
/// declarer's namespace, else a cluster-scoped one.
fn resolve(
    entries: &[Entry],
    by_name: &ByName<'_>,
    entry: &Entry,
    target: &Target,
) -> Result<usize, PlanError> {
    let candidates: Vec<usize> = by_name
        .get(&(target.kind.as_str(), target.name.as_str()))
        .map(|found| {
            found
                .iter()
                .copied()
                .filter(|&j| target.group.as_ref().is_none_or(|g| *g == entries[j].group))
                .collect()
        })
        .unwrap_or_default();
    let in_namespace = |ns: Option<&str>| -> Vec<usize> {
        candidates
            .iter()
            .copied()
            .filter(|&j| entries[j].id.namespace.as_deref() == ns)
            .collect()
    };
    let matches = match (&target.namespace, &entry.id.namespace) {
        (Some(ns), _) => in_namespace(Some(ns)),
        (None, Some(own)) => {
            let here = in_namespace(Some(own));
            if here.is_empty() {
                in_namespace(None)
            } else {
                here
            }
        }
        (None, None) => in_namespace(None),
    };
    match matches.as_slice() {
        [one] => Ok(*one),
        [] => Err(PlanError::UnknownTarget {
            object: Box::new(entry.id.clone()),
            template: entry.template.clone(),
            target: target.written.clone(),
            looked_for: looked_for(entry, target),
        }),
        _ => {
            let mut found: Vec<ObjectRef> =
                matches.iter().map(|&j| entries[j].id.clone()).collect();
            found.sort();
            Err(PlanError::Ambiguous {
                object: Box::new(entry.id.clone()),
                template: entry.template.clone(),
                target: target.written.clone(),
                matches: found,
            })
        }
    }
}

/// The objects `target` could have meant, for the message.
fn looked_for(entry: &Entry, target: &Target) -> String {
    let kind = match &target.group {
        Some(group) if !group.is_empty() => format!("{}.{group}", target.kind),
        _ => target.kind.clone(),
    };
    let name = &target.name;
    match (&target.namespace, &entry.id.namespace) {
        (Some(ns), _) => format!("{kind} {ns}/{name}"),
        (None, Some(own)) => format!("{kind} {own}/{name} or a cluster-scoped {kind} {name}"),
        (None, None) => format!("a cluster-scoped {kind} {name}"),
    }
}

/// The ring of (node, why it waits for the next) with the barrier merged into the edge
/// through it: `w waits for barrier, barrier waits for f` becomes `w waits for f`.
fn without_barrier(ring: &[(usize, Why)], barrier: usize) -> Vec<(usize, Why)> {
    ring.iter()
        .copied()
        .filter(|&(v, _)| v != barrier)
        .collect()
}

/// The cycle error, starting from the ring's first node.
fn cycle_error(entries: &[Entry], ring: &[(usize, Why)]) -> PlanError {
    let (first, _) = ring[0];
    let links = ring
        .iter()
        .enumerate()
        .map(|(k, &(_, why))| {
            let (next, _) = ring[(k + 1) % ring.len()];
            CycleLink {
                object: entries[next].id.clone(),
                template: entries[next].template.clone(),
                because: why.text(),
                declared: why == Why::Declared,
            }
        })
        .collect();
    PlanError::Cycle {
        object: Box::new(entries[first].id.clone()),
        template: entries[first].template.clone(),
        links,
    }
}

//! The dependency graph of the committed transactions (Adya's, as Elle
//! infers it from list-append reads), and the cycles that are anomalies.
//!
//! Edges, per key with version order `e1 e2 … en`:
//! - `ww`: the writer of `ei` → the writer of `e(i+1)`;
//! - `wr`: the writer of the last element a read saw → the reader;
//! - `rw`: a reader that saw `e1 … ei` → the writer of `e(i+1)` (it
//!   overwrote what the reader saw); a reader of the whole order → the one
//!   committed writer of elements nobody read, when there is exactly one;
//! - `rt`: a transaction that completed → each transaction invoked after
//!   that (kept transitively reduced by a sweep over the history, so the
//!   graph stays linear in the history).
//!
//! Only reads made before their transaction appended to the key count, and
//! transactions that failed are not in the graph (reading their elements is
//! G1a). An info transaction is in it when someone read what it appended.
//!
//! Cycles are searched per strongly connected component, the worst kind
//! first, as Elle does: `ww` alone (G0), `ww`+`wr` (G1c), exactly one `rw`
//! (G-single), any data edges (G2); then with `rt` edges, the same kinds
//! `-realtime`, which break strict serializability only.

use std::collections::VecDeque;

use super::AnomalyKind;
use super::history::{Outcome, Txn};
use super::infer::Facts;

pub const WW: u8 = 1;
pub const WR: u8 = 2;
pub const RW: u8 = 4;
pub const RT: u8 = 8;
pub const DATA: u8 = WW | WR | RW;

pub fn edge_name(kind: u8) -> &'static str {
    match kind {
        WW => "ww",
        WR => "wr",
        RW => "rw",
        _ => "rt",
    }
}

pub struct Graph {
    /// Per transaction: (target, kinds), one entry per target.
    pub out: Vec<Vec<(u32, u8)>>,
}

impl Graph {
    pub fn edges(&self) -> usize {
        self.out.iter().map(Vec::len).sum()
    }

    pub fn kinds(&self, from: usize, to: usize) -> u8 {
        self.out[from].iter().find(|e| e.0 as usize == to).map_or(0, |e| e.1)
    }
}

/// Builds the graph.
pub(super) fn build(txns: &[Txn], facts: &Facts) -> Graph {
    let mut out: Vec<Vec<(u32, u8)>> = vec![Vec::new(); txns.len()];
    let committed = |t: usize| txns[t].outcome != Outcome::Fail;
    let add = |from: usize, to: usize, kind: u8, out: &mut Vec<Vec<(u32, u8)>>| {
        if from != to && committed(from) && committed(to) {
            out[from].push((to as u32, kind));
        }
    };
    for (k, order) in facts.orders.iter().enumerate() {
        for i in 1..order.len() {
            if let (Some(a), Some(b)) = (facts.writer_at(k as u32, i - 1), facts.writer_at(k as u32, i)) {
                add(a, b, WW, &mut out);
            }
        }
    }
    // The one committed writer of elements nobody read, per key, if one.
    let unread: Vec<Option<usize>> = facts
        .elements
        .iter()
        .map(|elements| {
            let mut writers = elements
                .values()
                .filter(|e| e.pos.is_none() && txns[e.writer].outcome == Outcome::Ok)
                .map(|e| e.writer);
            let first = writers.next()?;
            writers.all(|w| w == first).then_some(first)
        })
        .collect();
    for r in facts.reads.iter().filter(|r| r.external && r.consistent) {
        if r.len > 0
            && let Some(w) = facts.writer_at(r.key, r.len - 1)
        {
            add(w, r.txn, WR, &mut out);
        }
        let next = if r.len < facts.orders[r.key as usize].len() {
            facts.writer_at(r.key, r.len)
        } else {
            unread[r.key as usize]
        };
        if let Some(w) = next {
            add(r.txn, w, RW, &mut out);
        }
    }
    realtime(txns, &mut out);
    for edges in &mut out {
        edges.sort_unstable_by_key(|e| e.0);
        edges.dedup_by(|b, a| {
            if a.0 == b.0 {
                a.1 |= b.1;
                true
            } else {
                false
            }
        });
    }
    Graph { out }
}

/// `rt` edges: at each invocation, from every committed transaction that
/// completed before it and is not already before another such one.
fn realtime(txns: &[Txn], out: &mut [Vec<(u32, u8)>]) {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(txns.len() * 2);
    for t in txns.iter().filter(|t| t.outcome != Outcome::Fail) {
        events.push((t.invoke_index, true, t.id));
        if let (Outcome::Ok, Some(done)) = (t.outcome, t.complete_index) {
            events.push((done, false, t.id));
        }
    }
    events.sort_unstable();
    let mut frontier: Vec<usize> = Vec::new();
    for (_, invoke, t) in events {
        if invoke {
            for &f in &frontier {
                out[f].push((t as u32, RT));
            }
        } else {
            let invoked = txns[t].invoke_index;
            // Those that completed before `t` began are before it, hence
            // before everything after it.
            frontier.retain(|&f| txns[f].complete_index.is_some_and(|c| c > invoked));
            frontier.push(t);
        }
    }
}

/// Strongly connected components (iterative Tarjan) of the nodes in
/// `nodes` (all when `None`) over edges of the kinds in `mask`; only
/// components of two or more nodes. Work is linear in the nodes and edges
/// looked at, not in the whole graph.
pub fn components(g: &Graph, mask: u8, nodes: Option<&[usize]>) -> Vec<Vec<usize>> {
    // Local numbering of the nodes searched: the graph's own for all of it.
    let numbering: Option<std::collections::HashMap<usize, u32>> =
        nodes.map(|ns| ns.iter().enumerate().map(|(i, &v)| (v, i as u32)).collect());
    let local = |w: usize| match &numbering {
        None => Some(w),
        Some(m) => m.get(&w).map(|&i| i as usize),
    };
    let all: Vec<usize>;
    let nodes = match nodes {
        Some(ns) => ns,
        None => {
            all = (0..g.out.len()).collect();
            &all
        }
    };
    let n = nodes.len();
    const UNSEEN: u32 = u32::MAX;
    let mut index = vec![UNSEEN; n];
    let mut low = vec![0u32; n];
    let mut on_stack = vec![false; n];
    let mut stack = Vec::new();
    let mut next = 0u32;
    let mut found = Vec::new();
    for root in 0..n {
        if index[root] != UNSEEN {
            continue;
        }
        let mut work: Vec<(usize, usize)> = vec![(root, 0)];
        index[root] = next;
        low[root] = next;
        next += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&mut (v, ref mut i)) = work.last_mut() {
            if let Some(&(w, kinds)) = g.out[nodes[v]].get(*i) {
                *i += 1;
                if kinds & mask == 0 {
                    continue;
                }
                let Some(w) = local(w as usize) else { continue };
                if index[w] == UNSEEN {
                    index[w] = next;
                    low[w] = next;
                    next += 1;
                    stack.push(w);
                    on_stack[w] = true;
                    work.push((w, 0));
                } else if on_stack[w] {
                    low[v] = low[v].min(index[w]);
                }
            } else {
                work.pop();
                if let Some(&(parent, _)) = work.last() {
                    low[parent] = low[parent].min(low[v]);
                }
                if low[v] == index[v] {
                    let mut component = Vec::new();
                    loop {
                        let w = stack.pop().expect("on the stack");
                        on_stack[w] = false;
                        component.push(nodes[w]);
                        if w == v {
                            break;
                        }
                    }
                    if component.len() > 1 {
                        found.push(component);
                    }
                }
            }
        }
    }
    found
}

/// The shortest path from `from` to `to` over edges of `mask` among `inside`
/// nodes, as (node, kind of the edge into the next node) steps ending at
/// `to`; `None` when there is none within `limit` visited nodes.
fn path(
    g: &Graph,
    from: usize,
    to: usize,
    mask: u8,
    inside: &std::collections::HashSet<usize>,
    limit: usize,
) -> Option<Vec<(usize, u8)>> {
    let mut parent: std::collections::HashMap<usize, (usize, u8)> = std::collections::HashMap::new();
    let mut queue = VecDeque::from([from]);
    let mut visited = 0;
    while let Some(v) = queue.pop_front() {
        visited += 1;
        if visited > limit {
            return None;
        }
        for &(w, kinds) in &g.out[v] {
            let w = w as usize;
            let usable = kinds & mask;
            if usable == 0 || !inside.contains(&w) || w == from || parent.contains_key(&w) {
                continue;
            }
            parent.insert(w, (v, usable));
            if w == to {
                let mut steps = vec![];
                let mut at = to;
                while at != from {
                    let (p, k) = parent[&at];
                    steps.push((p, best_kind(k)));
                    at = p;
                }
                steps.reverse();
                return Some(steps);
            }
            queue.push_back(w);
        }
    }
    None
}

/// The kind an edge is explained by: data dependencies before real time,
/// and `ww` before `wr` before `rw`.
fn best_kind(kinds: u8) -> u8 {
    [WW, WR, RW, RT].into_iter().find(|k| kinds & k != 0).unwrap_or(RT)
}

/// A cycle: each step is a transaction and the kind of the edge to the next
/// (the last step's edge closes the cycle at the first).
pub type Cycle = Vec<(usize, u8)>;

/// How much of a component a search may visit per attempt: a huge
/// component is sampled, never searched to exhaustion.
const VISIT_LIMIT: usize = 200_000;
const RW_ATTEMPTS: usize = 64;

/// The worst cycle in component `scc` (of the graph over every kind), and
/// its class: G0, G1c, G-single, G2, or one of them `-realtime`.
pub fn worst_cycle(g: &Graph, scc: &[usize]) -> Option<(AnomalyKind, Cycle)> {
    let inside: std::collections::HashSet<usize> = scc.iter().copied().collect();
    let cycle_in = |mask: u8, limit: usize| -> Option<Cycle> {
        let sub = components(g, mask, Some(scc));
        let c = sub.first()?;
        let sub_inside: std::collections::HashSet<usize> = c.iter().copied().collect();
        let start = c[0];
        // Back to `start` from any node it has an edge to.
        for &(w, kinds) in &g.out[start] {
            let w = w as usize;
            if kinds & mask == 0 || !sub_inside.contains(&w) {
                continue;
            }
            if let Some(mut steps) = path(g, w, start, mask, &sub_inside, limit) {
                steps.insert(0, (start, best_kind(kinds & mask)));
                return Some(steps);
            }
        }
        None
    };
    if let Some(c) = cycle_in(WW, VISIT_LIMIT) {
        return Some((AnomalyKind::G0, c));
    }
    if let Some(c) = cycle_in(WW | WR, VISIT_LIMIT) {
        return Some((AnomalyKind::G1c, c));
    }
    // Exactly one rw edge: from its target back to its source over ww/wr.
    let mut attempts = 0;
    'rw: for &a in scc {
        for &(b, kinds) in &g.out[a] {
            let b = b as usize;
            if kinds & RW == 0 || !inside.contains(&b) {
                continue;
            }
            attempts += 1;
            if attempts > RW_ATTEMPTS {
                break 'rw;
            }
            if let Some(mut steps) = path(g, b, a, WW | WR, &inside, VISIT_LIMIT) {
                steps.insert(0, (a, RW));
                // `path` ends at `a`; the cycle is a -rw-> b … -> a.
                return Some((AnomalyKind::GSingle, steps));
            }
        }
    }
    if let Some(c) = cycle_in(DATA, VISIT_LIMIT) {
        return Some((AnomalyKind::G2, c));
    }
    // The component is strongly connected over every kind: this search,
    // unbounded (linear in the component), always finds a cycle, so no
    // component goes unreported.
    let c = cycle_in(DATA | RT, usize::MAX)?;
    let rws = c.iter().filter(|s| s.1 == RW).count();
    let wrs = c.iter().filter(|s| s.1 == WR).count();
    let class = match (rws, wrs) {
        (0, 0) => AnomalyKind::G0Realtime,
        (0, _) => AnomalyKind::G1cRealtime,
        (1, _) => AnomalyKind::GSingleRealtime,
        _ => AnomalyKind::G2Realtime,
    };
    Some((class, c))
}

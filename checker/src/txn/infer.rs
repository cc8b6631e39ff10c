//! What the reads of a list-append history say, before any graph: each
//! key's version order (the longest list read, of which every other read
//! must be a prefix, since appends only add at the end), who wrote each
//! element, and the anomalies a single read or transaction shows alone:
//! duplicate, phantom, aborted (G1a) and intermediate (G1b) reads, orders
//! that contradict each other, transactions inconsistent with themselves,
//! and acknowledged appends missing from a read that began after them.

use std::collections::{HashMap, HashSet};

use super::history::{ElementId, KeyId, Mop, Outcome, Transactions};
use super::{Anomaly, AnomalyKind};

/// An element of a key's list.
pub(super) struct Element {
    /// The transaction that appended it.
    pub writer: usize,
    /// Its place in the key's version order (`None`: never read).
    pub pos: Option<usize>,
    /// Its writer appended another element to the key after it: no other
    /// transaction should see it last.
    pub intermediate: bool,
}

/// One read of a committed transaction.
pub(super) struct Read {
    pub txn: usize,
    pub mop: usize,
    pub key: KeyId,
    pub len: usize,
    /// Before its transaction appended to the key (only such reads say
    /// something of other transactions).
    pub external: bool,
    /// A prefix of the key's version order.
    pub consistent: bool,
}

pub(super) struct Facts {
    /// Per key: the version order, and every element appended to it.
    pub orders: Vec<Vec<ElementId>>,
    pub elements: Vec<HashMap<ElementId, Element>>,
    pub reads: Vec<Read>,
}

impl Facts {
    pub fn writer_at(&self, key: KeyId, pos: usize) -> Option<usize> {
        let order = &self.orders[key as usize];
        order.get(pos).and_then(|e| self.elements[key as usize].get(e)).map(|e| e.writer)
    }

    pub fn writer_of(&self, key: KeyId, e: ElementId) -> Option<&Element> {
        self.elements[key as usize].get(&e)
    }
}

/// The list a read returned.
pub(super) fn list_of(h: &Transactions, txn: usize, mop: usize) -> &[ElementId] {
    match &h.txns[txn].mops[mop] {
        Mop::Read { list: Some(l), .. } => l,
        _ => &[],
    }
}

/// Learns the facts, and reports the anomalies they show.
pub(super) fn infer(h: &Transactions, found: &mut Vec<Anomaly>) -> Result<Facts, String> {
    let keys = h.keys.len();
    let mut elements: Vec<HashMap<ElementId, Element>> = (0..keys).map(|_| HashMap::new()).collect();
    let mut reads = Vec::new();
    let mut longest: Vec<Option<(usize, usize)>> = vec![None; keys];
    for t in &h.txns {
        let mut appended: HashMap<KeyId, ElementId> = HashMap::new();
        for (m, mop) in t.mops.iter().enumerate() {
            let k = mop.key();
            match mop {
                Mop::Append { element, .. } => {
                    let e = Element { writer: t.id, pos: None, intermediate: false };
                    if let Some(other) = elements[k as usize].insert(*element, e) {
                        return Err(format!(
                            "T{} and T{} both append {} to {}: elements must be unique per key for the version order to be inferred",
                            other.writer,
                            t.id,
                            h.element(*element),
                            h.key(k)
                        ));
                    }
                    if let Some(previous) = appended.insert(k, *element) {
                        elements[k as usize].get_mut(&previous).expect("inserted").intermediate = true;
                    }
                }
                Mop::Read { list: Some(list), .. } if t.outcome == Outcome::Ok => {
                    let external = !appended.contains_key(&k);
                    reads.push(Read { txn: t.id, mop: m, key: k, len: list.len(), external, consistent: true });
                    if longest[k as usize].is_none_or(|(lt, lm)| list_of(h, lt, lm).len() < list.len()) {
                        longest[k as usize] = Some((t.id, m));
                    }
                }
                Mop::Read { .. } => {}
            }
        }
    }
    let orders = longest.iter().map(|l| l.map_or_else(Vec::new, |(t, m)| list_of(h, t, m).to_vec())).collect();
    let mut facts = Facts { orders, elements, reads };
    place_elements(h, &mut facts, &longest, found);
    judge_reads(h, &mut facts, found);
    internal(h, found);
    lost_appends(h, &facts, found);
    Ok(facts)
}

/// Numbers each key's elements by the version order; an element read twice
/// there, or that nobody appended, is an anomaly of the longest read.
fn place_elements(h: &Transactions, facts: &mut Facts, longest: &[Option<(usize, usize)>], found: &mut Vec<Anomaly>) {
    for (k, order) in facts.orders.iter().enumerate() {
        let Some((t, _)) = longest[k] else { continue };
        let key = h.key(k as KeyId);
        for (pos, &e) in order.iter().enumerate() {
            match facts.elements[k].get_mut(&e) {
                Some(el) if el.pos.is_some() => found.push(Anomaly::new(
                    AnomalyKind::DuplicateElements,
                    vec![t],
                    format!(
                        "T{t} read {key} = {}, which holds {} twice: each element was appended once",
                        h.list(order),
                        h.element(e)
                    ),
                )),
                Some(el) => el.pos = Some(pos),
                None => found.push(Anomaly::new(
                    AnomalyKind::PhantomElement,
                    vec![t],
                    format!(
                        "T{t} read {key} = {}, whose element {} no transaction ever appended",
                        h.list(order),
                        h.element(e)
                    ),
                )),
            }
        }
    }
}

/// Each read against its key's order and the writers of what it saw.
fn judge_reads(h: &Transactions, facts: &mut Facts, found: &mut Vec<Anomaly>) {
    let mut aborted_seen: HashSet<(KeyId, ElementId)> = HashSet::new();
    for r in facts.reads.iter_mut() {
        let list = list_of(h, r.txn, r.mop);
        let order = &facts.orders[r.key as usize];
        let key = h.key(r.key);
        if list.len() > order.len() || list[..] != order[..list.len()] {
            r.consistent = false;
            found.push(Anomaly::new(
                AnomalyKind::IncompatibleOrder,
                vec![r.txn],
                format!(
                    "T{} read {key} = {}, which is not a prefix of {} read elsewhere: appends only add at the end, so no single order of {key} explains both",
                    r.txn,
                    h.list(list),
                    h.list(order)
                ),
            ));
            continue;
        }
        for &e in list {
            let Some(el) = facts.elements[r.key as usize].get(&e) else { continue };
            if h.txns[el.writer].outcome == Outcome::Fail && aborted_seen.insert((r.key, e)) {
                found.push(Anomaly::new(
                    AnomalyKind::G1a,
                    vec![el.writer, r.txn],
                    format!(
                        "T{} read {key} = {}, which holds {}, appended by T{}, which failed (an aborted read)",
                        r.txn,
                        h.list(list),
                        h.element(e),
                        el.writer
                    ),
                ));
            }
        }
        if r.external
            && let Some(&last) = list.last()
            && let Some(el) = facts.elements[r.key as usize].get(&last)
            && el.intermediate
            && el.writer != r.txn
        {
            let e = h.element(last);
            found.push(Anomaly::new(
                AnomalyKind::G1b,
                vec![el.writer, r.txn],
                format!(
                    "T{} read {key} = {}, ending in {e}, but T{} appended more to {key} after {e}: T{} saw a state T{} was only half-way through (an intermediate read)",
                    r.txn,
                    h.list(list),
                    el.writer,
                    r.txn,
                    el.writer
                ),
            ));
        }
    }
}

/// Within one committed transaction, a read must show the previous read of
/// the key plus the transaction's own appends since, or (with no previous
/// read) end with the transaction's own appends.
fn internal(h: &Transactions, found: &mut Vec<Anomaly>) {
    for t in h.txns.iter().filter(|t| t.outcome == Outcome::Ok) {
        // Per key: the state known so far (Some), or the own appends (suffix).
        let mut known: HashMap<KeyId, (Option<Vec<ElementId>>, Vec<ElementId>)> = HashMap::new();
        for mop in &t.mops {
            let (state, suffix) = known.entry(mop.key()).or_default();
            match mop {
                Mop::Append { element, .. } => match state {
                    Some(s) => s.push(*element),
                    None => suffix.push(*element),
                },
                Mop::Read { list: Some(list), key } => {
                    let expected = match state {
                        Some(s) => (s != list).then(|| h.list(s)),
                        None => (!list.ends_with(suffix)).then(|| format!("a list ending in {}", h.list(suffix))),
                    };
                    if let Some(expected) = expected {
                        found.push(Anomaly::new(
                            AnomalyKind::Internal,
                            vec![t.id],
                            format!(
                                "T{} read {} = {}, but its own earlier operations say it must be {expected}",
                                t.id,
                                h.key(*key),
                                h.list(list)
                            ),
                        ));
                    }
                    *state = Some(list.clone());
                }
                Mop::Read { .. } => {}
            }
        }
    }
}

/// An acknowledged append missing from a read invoked after the append's
/// transaction completed: under strict serializability the read must see it.
fn lost_appends(h: &Transactions, facts: &Facts, found: &mut Vec<Anomaly>) {
    // Per key: committed appends by completion (index, place or MAX, writer, element).
    let mut appends: Vec<Vec<(u64, usize, usize, ElementId)>> = vec![Vec::new(); facts.orders.len()];
    for (k, elements) in facts.elements.iter().enumerate() {
        for (&e, el) in elements {
            let t = &h.txns[el.writer];
            if let (Outcome::Ok, Some(done)) = (t.outcome, t.complete_index) {
                appends[k].push((done, el.pos.unwrap_or(usize::MAX), el.writer, e));
            }
        }
    }
    // Per key, the running maximum of the place (and which append has it),
    // so that each read asks one binary search.
    let mut best: Vec<Vec<(usize, usize)>> = Vec::with_capacity(appends.len());
    for list in &mut appends {
        list.sort_unstable_by_key(|a| a.0);
        let mut max: Option<(usize, usize)> = None;
        best.push(
            list.iter()
                .enumerate()
                .map(|(i, &(_, pos, _, _))| {
                    if max.is_none_or(|m| pos > m.0) {
                        max = Some((pos, i));
                    }
                    max.expect("set")
                })
                .collect(),
        );
    }
    for r in facts.reads.iter().filter(|r| r.consistent) {
        let k = r.key as usize;
        let invoked = h.txns[r.txn].invoke_index;
        let before = appends[k].partition_point(|a| a.0 < invoked);
        if before == 0 {
            continue;
        }
        let (pos, i) = best[k][before - 1];
        if pos >= r.len {
            let (_, _, writer, e) = appends[k][i];
            let key = h.key(r.key);
            found.push(Anomaly::new(
                AnomalyKind::LostAppend,
                vec![writer, r.txn],
                format!(
                    "T{writer} appended {} to {key} and completed; T{} began after that and read {key} = {}, without it",
                    h.element(e),
                    r.txn,
                    h.list(list_of(h, r.txn, r.mop))
                ),
            ));
        }
    }
}

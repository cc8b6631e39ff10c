//! The nodes' Raft logs, read after the final heal (the `Log` Cluster RPC;
//! the servers keep the entries their snapshots cover, `--keep-compacted-log`).
//! Two uses, as etcd's robustness suite makes of its WAL:
//!
//! - **An audit** ([`examine`]): entries committed on several nodes must be
//!   the same entry (Raft's State Machine Safety), and no acknowledged write
//!   may be missing from every log where a majority's logs reach down to
//!   the indexes it could have had (it was on a majority when it committed,
//!   and a correct node never drops a committed entry). A log that lost or
//!   replaced a committed entry fails the run even when no client read the
//!   difference.
//! - **Settling info writes** ([`examine`], from logs that pass the audit):
//!   every write carries its client id and sequence number (the history's
//!   `write_id`). An info write found committed at index `i` took effect
//!   before the completion of any acknowledged write at a later index; one
//!   in no log, where a majority's logs (or the newest leader's) reach down
//!   to every index it could have had, never took effect. This takes a
//!   committed write to have taken effect: the state machine refuses only
//!   commands the harness never sends (an append past 16 MiB, a command it
//!   cannot decode), and a write whose session it evicted, which cannot
//!   happen while fewer sessions were opened than a node keeps
//!   ([`capukv::state_machine::MAX_SESSIONS`]; the log says how many were:
//!   past that, no committed write is taken to have taken effect). The
//!   checker takes them so ([`checker::settlement`], which argues why that
//!   is sound).
//!
//! The indexes an info write `w` could have had: a write acknowledged
//! before `w` was invoked was committed at index `j` first, and a leader
//! appends `w` after what it committed, so `w` (if ever committed) is above
//! every such `j`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use capukv::proto::LoggedWrite;
use checker::settlement::{Settled, Settlement};
use checker::{History, Input, Output, WriteId};
use serde::Serialize;

use super::{Finding, Outcome};
use crate::runtime::Runtime;

/// Pages asked of one node at most (10,000 entries each).
const MAX_PAGES: usize = 1_000;
/// Disagreements and lost writes listed in the finding.
const LISTED: usize = 10;

/// One node's log as it answered.
#[derive(Clone, Debug)]
pub struct NodeLog {
    pub node: String,
    /// Its term, and whether it said it leads (asked before the log).
    pub term: u64,
    pub leader: bool,
    /// The first index it holds; entries up to `commit` are committed.
    pub first: u64,
    pub commit: u64,
    /// In index order.
    pub entries: Vec<LoggedWrite>,
}

/// Reads every running node's whole log, within `within` in all. A node
/// that does not answer is left out.
pub async fn read(runtime: &dyn Runtime, within: Duration) -> Vec<NodeLog> {
    let deadline = Instant::now() + within;
    let mut logs = Vec::new();
    for node in runtime.nodes() {
        if !runtime.is_running(node.id) {
            continue;
        }
        let Ok(mut client) = runtime.access().client([node.api_addr.clone()]) else { continue };
        client.timeout = Duration::from_secs(5);
        let Ok(status) = client.status_of(&node.api_addr).await else { continue };
        let mut log: Option<NodeLog> = None;
        let mut from = 0;
        let mut complete = false;
        for _ in 0..MAX_PAGES {
            if Instant::now() >= deadline {
                log = None;
                break;
            }
            let Ok(page) = client.log_of(&node.api_addr, from).await else {
                log = None;
                break;
            };
            let l = log.get_or_insert_with(|| NodeLog {
                node: node.name.clone(),
                term: status.term,
                leader: status.role == "leader",
                first: page.first_index,
                commit: page.commit_index,
                entries: Vec::new(),
            });
            // A snapshot received between pages replaced the log: it now
            // starts later, and only from there does it reach.
            l.first = l.first.max(page.first_index);
            let Some(next) = page.entries.last().map(|e| e.index + 1) else {
                complete = true;
                break;
            };
            l.entries.extend(page.entries);
            from = next;
        }
        if !complete {
            // Pages ran out: a log read in part proves nothing absent.
            tracing::warn!(node = %node.name, "the node's Raft log was not read to its end; left out");
            log = None;
        }
        if let Some(l) = log {
            tracing::info!(node = %l.node, first = l.first, commit = l.commit, entries = l.entries.len(), "read the node's Raft log");
            logs.push(l);
        }
    }
    logs
}

fn id_of(e: &LoggedWrite) -> Option<WriteId> {
    (e.seq > 0).then_some(WriteId { client: e.client_id, seq: e.seq })
}

/// What the logs say together: the committed entries they agree on (or
/// where they disagree), and what they hold at all.
struct Merged {
    /// Each committed write's first index.
    committed: HashMap<WriteId, u64>,
    /// Every write some log holds, committed there or not.
    anywhere: HashSet<WriteId>,
    /// Where each log starts (the indexes below are gone from it).
    starts: Vec<u64>,
    /// Nodes in the cluster, and so how many make a majority.
    majority: usize,
    /// Where the log of the leader of the highest term any read node knows
    /// starts: that log holds every committed entry from there on.
    leader_from: Option<u64>,
    disagreements: Vec<String>,
    shared: usize,
    /// Sessions opened in the committed log, when it is known from index 1
    /// on without a gap.
    sessions_opened: Option<usize>,
}

fn merge(logs: &[NodeLog], cluster_size: usize) -> Merged {
    let mut by_index: BTreeMap<u64, (&str, u64, Option<WriteId>, bool)> = BTreeMap::new();
    let majority = cluster_size / 2 + 1;
    let mut m = Merged {
        committed: HashMap::new(),
        anywhere: HashSet::new(),
        starts: logs.iter().map(|l| l.first.max(1)).collect(),
        majority,
        // The newest term among a majority's is the newest there is: a
        // later leader would have needed one of them to accept its term.
        leader_from: (logs.len() >= majority)
            .then(|| {
                let newest = logs.iter().map(|l| l.term).max().unwrap_or(0);
                logs.iter().find(|l| l.leader && l.term == newest).map(|l| l.first.max(1))
            })
            .flatten(),
        disagreements: Vec::new(),
        shared: 0,
        sessions_opened: None,
    };
    for log in logs {
        for e in &log.entries {
            let id = id_of(e);
            m.anywhere.extend(id);
            if e.index > log.commit {
                continue;
            }
            match by_index.get(&e.index) {
                None => {
                    by_index.insert(e.index, (&log.node, e.term, id, e.opens_session));
                }
                Some(&(other, term, other_id, _)) => {
                    m.shared += 1;
                    if (term, other_id) != (e.term, id) {
                        let show = |t: u64, id: Option<WriteId>| match id {
                            Some(w) => format!("term {t}, write {}/{}", w.client, w.seq),
                            None => format!("term {t}, no write"),
                        };
                        m.disagreements.push(format!(
                            "committed entry {}: {other} has {}, {} has {}",
                            e.index,
                            show(term, other_id),
                            log.node,
                            show(e.term, id)
                        ));
                    }
                }
            }
        }
    }
    for (&index, &(_, _, id, _)) in &by_index {
        if let Some(id) = id {
            m.committed.entry(id).or_insert(index);
        }
    }
    let gapless = by_index.keys().enumerate().all(|(i, &index)| index == i as u64 + 1);
    m.sessions_opened = gapless.then(|| by_index.values().filter(|e| e.3).count());
    m
}

impl Merged {
    /// Whether a write that could only be at index `from` or above, and is
    /// in none of the logs, was never committed. A correct node never drops
    /// a committed entry from its log (the servers keep even what snapshots
    /// cover; a snapshot received replaces the whole log, and then the log
    /// starts past it). A committed entry was on a majority of the nodes, so
    /// if a majority's logs reach down to `from`, one of them would hold it;
    /// and the leader of the newest term holds every committed entry
    /// (Raft's Leader Completeness), so its log alone does too.
    fn would_hold(&self, from: u64) -> bool {
        let from = from.max(1);
        self.leader_from.is_some_and(|first| first <= from)
            || self.starts.iter().filter(|&&first| first <= from).count() >= self.majority
    }
}

/// A write of the history: its id, its invocation and how it ended.
struct Write {
    id: WriteId,
    invoke_index: u64,
    /// `Some(index of the ok completion)`, `None` for info (or unfinished).
    ok_at: Option<u64>,
    cas: bool,
}

/// The history's writes that carry an id, paired as the checker pairs
/// them (failed writes are gone; a cas that found a mismatch is skipped: it
/// was applied and changed nothing).
fn writes(history: &History) -> Vec<Write> {
    // A history the checker cannot pair fails the check itself.
    let Ok(ops) = checker::operation::pair(history) else { return Vec::new() };
    ops.by_key
        .values()
        .flatten()
        .filter_map(|op| {
            let id = history.events.get(op.call as usize)?.write_id?;
            let ok_at = match op.output {
                Output::Unknown => None,
                Output::Read(_) | Output::CasMismatch => return None,
                _ => op.complete_index,
            };
            Some(Write { id, invoke_index: op.invoke_index, ok_at, cas: matches!(op.input, Input::Cas(..)) })
        })
        .collect()
}

/// Acknowledged writes found in the log: `(index, ok completion)`, and for
/// each write the lowest index it could have had.
struct Acknowledged {
    by_index: Vec<(u64, u64)>,
    /// Suffix minima of the completions, by index.
    earliest_after: Vec<u64>,
    /// `(completion, index)` in completion order, with prefix maxima of the index.
    by_completion: Vec<(u64, u64)>,
}

impl Acknowledged {
    fn new(writes: &[Write], merged: &Merged) -> Acknowledged {
        let mut by_index: Vec<(u64, u64)> =
            writes.iter().filter_map(|w| Some((*merged.committed.get(&w.id)?, w.ok_at?))).collect();
        by_index.sort_unstable();
        let mut earliest_after = vec![u64::MAX; by_index.len() + 1];
        for i in (0..by_index.len()).rev() {
            earliest_after[i] = earliest_after[i + 1].min(by_index[i].1);
        }
        let mut by_completion: Vec<(u64, u64)> = by_index.iter().map(|&(i, c)| (c, i)).collect();
        by_completion.sort_unstable();
        let mut highest = 0;
        for entry in &mut by_completion {
            highest = highest.max(entry.1);
            entry.1 = highest;
        }
        Acknowledged { by_index, earliest_after, by_completion }
    }

    /// The first acknowledgement of a write at an index above `index`.
    fn first_ack_after(&self, index: u64) -> Option<u64> {
        let later = self.by_index.partition_point(|&(i, _)| i <= index);
        Some(self.earliest_after[later]).filter(|&c| c != u64::MAX)
    }

    /// The lowest index a write invoked at history index `invoked` could have.
    fn lowest_index(&self, invoked: u64) -> u64 {
        let before = self.by_completion.partition_point(|&(c, _)| c < invoked);
        before.checked_sub(1).map_or(1, |i| self.by_completion[i].1 + 1)
    }
}

/// The audit's finding, and the settlement with its figures. Nothing is
/// settled from logs the audit finds wanting (committed entries that differ,
/// or an acknowledged write missing): the settlement trusts that the log is
/// the record of what the nodes applied, and such logs are not.
pub fn examine(history: &History, logs: &[NodeLog], cluster_size: usize) -> (Finding, Settlement, Figures) {
    const CHECK: &str = "raft-log";
    let source = format!("raft log of {}", logs.iter().map(|l| l.node.as_str()).collect::<Vec<_>>().join(", "));
    let settlement = Settlement { source, settled: Vec::new() };
    let writes = writes(history);
    let mut figures =
        Figures { info_writes: writes.iter().filter(|w| w.ok_at.is_none()).count(), ..Figures::default() };
    if logs.is_empty() {
        let why = "no node's log could be read";
        figures.not_settled = Some(why.into());
        return (Finding::new(CHECK, Outcome::Skipped, why, Vec::new()), settlement, figures);
    }
    let merged = merge(logs, cluster_size);
    let acked = Acknowledged::new(&writes, &merged);
    let lost: Vec<String> = writes
        .iter()
        .filter(|w| w.ok_at.is_some() && !merged.anywhere.contains(&w.id))
        .filter(|w| merged.would_hold(acked.lowest_index(w.invoke_index)))
        .map(|w| {
            format!(
                "acknowledged write {}/{} (history index {}) is in no node's log",
                w.id.client, w.id.seq, w.invoke_index
            )
        })
        .collect();
    let nodes = logs.iter().map(|l| format!("{} {}..={}", l.node, l.first, l.commit)).collect::<Vec<_>>().join(", ");
    if !merged.disagreements.is_empty() || !lost.is_empty() {
        let mut details: Vec<String> = merged.disagreements.iter().take(LISTED).cloned().collect();
        details.extend(lost.iter().take(LISTED).cloned());
        let summary = format!(
            "{} committed entries differ between nodes, {} acknowledged writes are in no node's log ({nodes})",
            merged.disagreements.len(),
            lost.len()
        );
        figures.not_settled = Some(format!("the logs fail the audit: {}", details[0]));
        return (Finding::new(CHECK, Outcome::Failed, summary, details), settlement, figures);
    }
    let summary = format!(
        "{} nodes' committed logs agree ({} entries held by more than one), every acknowledged write found ({nodes})",
        logs.len(),
        merged.shared
    );
    let finding = Finding::new(CHECK, Outcome::Passed, summary, Vec::new());
    let (settlement, figures) = settle(&writes, &merged, &acked, settlement, figures);
    (finding, settlement, figures)
}

/// What settling did, for results.json and the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Figures {
    /// Info writes of the history (each with its write id).
    pub info_writes: usize,
    /// Committed, and bounded by a later acknowledged write: made ok.
    pub took_effect: usize,
    /// Committed, but no acknowledged write came later: left info.
    pub committed_unbounded: usize,
    /// A committed cas: whether it matched is not in the log; left info.
    pub committed_cas: usize,
    /// Committed, but the store may have refused it: more sessions were
    /// opened than a node keeps (or the log does not say how many), so its
    /// session may have been evicted; left info.
    pub session_may_have_expired: usize,
    /// Never committed: removed.
    pub never: usize,
    /// Not in the log, which does not cover where it could be (or a node
    /// still held it uncommitted): left info.
    pub unresolved: usize,
    /// Why nothing was settled, when nothing was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_settled: Option<String>,
}

/// Settles the info writes from logs that passed the audit.
fn settle(
    writes: &[Write],
    merged: &Merged,
    acked: &Acknowledged,
    mut settlement: Settlement,
    mut figures: Figures,
) -> (Settlement, Figures) {
    for w in writes.iter().filter(|w| w.ok_at.is_none()) {
        let before_index = match merged.committed.get(&w.id) {
            Some(_) if w.cas => {
                figures.committed_cas += 1;
                continue;
            }
            Some(_) if merged.sessions_opened.is_none_or(|n| n > capukv::state_machine::MAX_SESSIONS) => {
                figures.session_may_have_expired += 1;
                continue;
            }
            // An acknowledgement before this write was invoked, at a later
            // index, would be a log that broke Raft: bound nothing by it.
            Some(&index) => match acked.first_ack_after(index).filter(|&ack| ack > w.invoke_index) {
                Some(ack) => {
                    figures.took_effect += 1;
                    Some(ack)
                }
                None => {
                    figures.committed_unbounded += 1;
                    continue;
                }
            },
            None if !merged.anywhere.contains(&w.id) && merged.would_hold(acked.lowest_index(w.invoke_index)) => {
                figures.never += 1;
                None
            }
            None => {
                figures.unresolved += 1;
                continue;
            }
        };
        settlement.settled.push(Settled { invoke_index: w.invoke_index, before_index });
    }
    (settlement, figures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use checker::{Event, EventType, Process};
    use serde_json::json;

    fn event(index: u64, kind: EventType, process: u64, f: &str, write_id: Option<(u64, u64)>) -> Event {
        let mut e = Event::new(index, kind, Process::Client(process), f, Some("k".into()), json!(1), index);
        e.write_id = write_id.map(|(client, seq)| WriteId { client, seq });
        e
    }

    fn entry(index: u64, term: u64, id: (u64, u64)) -> LoggedWrite {
        LoggedWrite { index, term, client_id: id.0, seq: id.1, opens_session: false }
    }

    fn log(node: &str, first: u64, commit: u64, entries: Vec<LoggedWrite>) -> NodeLog {
        NodeLog { node: node.into(), term: 1, leader: false, first, commit, entries }
    }

    /// Writes: A ok (index 2), B info, C ok (index 4), D info invoked after
    /// C completed, E info invoked first.
    fn history() -> History {
        use EventType::*;
        let events = vec![
            event(0, Invoke, 5, "write", Some((9, 1))), // E
            event(1, Info, 5, "write", None),
            event(2, Invoke, 1, "write", Some((1, 1))), // A
            event(3, Ok, 1, "write", None),
            event(4, Invoke, 2, "write", Some((2, 1))), // B
            event(5, Info, 2, "write", None),
            event(6, Invoke, 3, "write", Some((3, 1))), // C
            event(7, Ok, 3, "write", None),
            event(8, Invoke, 4, "write", Some((4, 1))), // D
            event(9, Info, 4, "write", None),
        ];
        History { events, ..History::default() }
    }

    #[test]
    fn a_committed_write_is_not_taken_to_have_taken_effect_once_its_session_may_have_been_evicted() {
        use capukv::state_machine::MAX_SESSIONS;
        // A (ok), B (info), C (ok) at 1, 2, 3 in a log that then opens
        // `opened` sessions; the writes' sessions are older than all of them.
        let with_opens = |opened: usize| {
            let mut entries = vec![entry(1, 1, (1, 1)), entry(2, 1, (2, 1)), entry(3, 1, (3, 1))];
            for i in 0..opened as u64 {
                entries.push(LoggedWrite { opens_session: true, ..entry(4 + i, 1, (0, 0)) });
            }
            let last = entries.len() as u64;
            log("n1", 1, last, entries)
        };
        let (_, _, f) = examine(&history(), &[with_opens(MAX_SESSIONS)], 1);
        assert_eq!(
            (f.took_effect, f.session_may_have_expired),
            (1, 0),
            "as many sessions as a node keeps: none evicted"
        );
        let (_, s, f) = examine(&history(), &[with_opens(MAX_SESSIONS + 1)], 1);
        assert_eq!((f.took_effect, f.session_may_have_expired), (0, 1), "one more: B's may have been evicted");
        assert!(!s.settled.iter().any(|x| x.invoke_index == 4), "B stays in doubt");
        // A log that does not reach index 1 cannot say how many were opened.
        let mut late = with_opens(0);
        late.first = 2;
        late.entries.remove(0);
        let (_, _, f) = examine(&history(), &[late], 1);
        assert_eq!(f.session_may_have_expired, 1);
    }

    #[test]
    fn committed_info_writes_are_bounded_by_later_acknowledgements_and_missing_ones_removed_where_a_majority_reaches() {
        // Three nodes. B committed at 3, between A (2) and C (4). D could
        // only be above 4, where both logs reach: a majority, never
        // committed. E could be anywhere from 1, where only n1 reaches.
        let n1 =
            log("n1", 1, 4, vec![entry(1, 1, (0, 0)), entry(2, 1, (1, 1)), entry(3, 1, (2, 1)), entry(4, 1, (3, 1))]);
        let n2 = log("n2", 3, 5, vec![entry(3, 1, (2, 1)), entry(4, 1, (3, 1)), entry(5, 2, (0, 0))]);
        let (finding, s, f) = examine(&history(), &[n1.clone(), n2.clone()], 3);
        let by: HashMap<u64, Option<u64>> = s.settled.iter().map(|x| (x.invoke_index, x.before_index)).collect();
        assert_eq!(by.get(&4), Some(&Some(7)), "B took effect before C's acknowledgement");
        assert_eq!(by.get(&8), Some(&None), "D never committed");
        assert_eq!(by.get(&0), None, "E stays in doubt");
        assert_eq!((f.info_writes, f.took_effect, f.never, f.unresolved), (3, 1, 1, 1));
        assert_eq!(finding.outcome, Outcome::Passed);

        // Of five nodes, two logs are no majority: D stays in doubt too...
        let (_, s, f) = examine(&history(), &[n1.clone(), n2.clone()], 5);
        assert!(!s.settled.iter().any(|x| x.before_index.is_none()));
        assert_eq!((f.took_effect, f.never, f.unresolved), (1, 0, 2));

        // ...unless, of three logs read (a majority of five, so their newest
        // term is the newest), one is that term's leader, which holds every
        // committed entry: n2, from its first index 3 on (D)...
        let leader = |mut l: NodeLog, term| {
            (l.leader, l.term) = (true, term);
            l
        };
        let n3 = log("n3", 6, 5, Vec::new());
        let (_, _, f) = examine(&history(), &[n1.clone(), leader(n2.clone(), 2), n3.clone()], 5);
        assert_eq!((f.never, f.unresolved), (1, 1));
        // ...n1 from 1 on (D and E)...
        let (_, _, f) = examine(&history(), &[leader(n1.clone(), 2), n2.clone(), n3.clone()], 5);
        assert_eq!((f.never, f.unresolved), (2, 0));
        // ...but not a leader of a term older than another node knows...
        let mut newer = n2.clone();
        newer.term = 3;
        let (_, _, f) = examine(&history(), &[leader(n1.clone(), 2), newer, n3], 5);
        assert_eq!((f.never, f.unresolved), (0, 2));
        // ...nor one among a minority of the logs: a newer term may be elsewhere.
        let (_, _, f) = examine(&history(), &[leader(n1, 2), n2], 5);
        assert_eq!((f.never, f.unresolved), (0, 2));
    }

    #[test]
    fn a_write_some_log_holds_uncommitted_stays_in_doubt() {
        // D at 5, past both nodes' commit index: it may yet commit.
        let entries = vec![entry(2, 1, (1, 1)), entry(3, 1, (2, 1)), entry(4, 1, (3, 1)), entry(5, 1, (4, 1))];
        let (n1, n2) = (log("n1", 1, 4, entries.clone()), log("n2", 1, 4, entries));
        let (_, s, f) = examine(&history(), &[n1, n2], 3);
        assert!(!s.settled.iter().any(|x| x.invoke_index == 8));
        assert_eq!((f.unresolved, f.never), (1, 1), "D in doubt, E never committed");
    }

    #[test]
    fn logs_that_disagree_settle_nothing_and_fail_the_audit() {
        let n1 = log("n1", 1, 4, vec![entry(2, 1, (1, 1)), entry(3, 1, (2, 1)), entry(4, 1, (3, 1))]);
        let n2 = log("n2", 1, 4, vec![entry(2, 1, (1, 1)), entry(3, 2, (7, 7)), entry(4, 1, (3, 1))]);
        let (finding, s, f) = examine(&history(), &[n1, n2], 3);
        assert!(s.settled.is_empty());
        assert!(f.not_settled.unwrap().contains("committed entry 3"));
        assert_eq!(finding.outcome, Outcome::Failed);
        assert!(
            finding.details[0].contains("n1 has term 1, write 2/1, n2 has term 2, write 7/7"),
            "{:?}",
            finding.details
        );
    }

    #[test]
    fn an_acknowledged_write_no_majority_log_holds_fails_the_audit() {
        // C (3/1) was acknowledged, but index 4 holds another write on both
        // nodes of three: a majority lost it.
        let entries = vec![entry(2, 1, (1, 1)), entry(3, 1, (2, 1)), entry(4, 1, (8, 8))];
        let (n1, n2) = (log("n1", 1, 4, entries.clone()), log("n2", 1, 4, entries));
        let (finding, s, f) = examine(&history(), &[n1.clone(), n2], 3);
        assert_eq!(finding.outcome, Outcome::Failed);
        assert!(finding.details.iter().any(|d| d.contains("write 3/1")), "{:?}", finding.details);
        assert!(s.settled.is_empty() && f.not_settled.is_some(), "a log that lost a write settles nothing");
        // One node of three proves nothing: the write may be on the others.
        assert_eq!(examine(&history(), &[n1], 3).0.outcome, Outcome::Passed);
    }
}

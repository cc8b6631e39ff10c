//! Operation statistics: a run whose operations mostly failed, or in which
//! some kind of operation never once succeeded, cannot show a bug in what
//! did not happen. Such a run is vacuous rather than valid.

use std::collections::BTreeMap;

use checker::{Event, EventType, Process};

use super::{Finding, Outcome};

/// Process ids from here on are the harness's final reads, not the
/// workload's clients (whose ids grow by the concurrency after each info:
/// 2^48 is out of their reach in any run, see `run::next_process`).
pub const FINAL_READ_PROCESSES: u64 = 1 << 48;

/// Counts the workload's operations by `f` and flags the run as vacuous when
/// an `f` that was invoked never completed ok, or when fewer than
/// `min_ok_share` of all invocations did.
pub fn check(events: &[Event], min_ok_share: f64) -> Finding {
    let mut by_f: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for e in events {
        let Process::Client(p) = e.process else { continue };
        if p >= FINAL_READ_PROCESSES {
            continue;
        }
        let slot = by_f.entry(e.f.as_str()).or_default();
        match e.kind {
            EventType::Invoke => slot.0 += 1,
            EventType::Ok => slot.1 += 1,
            _ => {}
        }
    }
    let (invoked, ok) = by_f.values().fold((0, 0), |(i, o), &(a, b)| (i + a, o + b));
    let details: Vec<String> = by_f.iter().map(|(f, (i, o))| format!("{f}: {o} ok of {i} invoked")).collect();
    let never: Vec<&str> = by_f.iter().filter(|(_, (i, o))| *i > 0 && *o == 0).map(|(f, _)| *f).collect();
    let share = if invoked == 0 { 0.0 } else { ok as f64 / invoked as f64 };
    let (outcome, summary) = if invoked == 0 {
        (Outcome::Vacuous, "no operation was invoked".to_string())
    } else if !never.is_empty() {
        (Outcome::Vacuous, format!("no {} ever succeeded", never.join(" or ")))
    } else if share < min_ok_share {
        (
            Outcome::Vacuous,
            format!(
                "only {:.1}% of operations succeeded (at least {:.0}% needed)",
                share * 100.0,
                min_ok_share * 100.0
            ),
        )
    } else {
        (Outcome::Passed, format!("{ok} of {invoked} operations succeeded ({:.1}%)", share * 100.0))
    };
    Finding::new("operation-stats", outcome, summary, details)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(kind: EventType, process: u64, f: &str) -> Event {
        Event::new(0, kind, Process::Client(process), f, Some("k".into()), json!(null), 0)
    }

    #[test]
    fn a_kind_that_never_succeeded_makes_the_run_vacuous() {
        use EventType::*;
        let mut events = vec![event(Invoke, 1, "read"), event(Ok, 1, "read")];
        assert_eq!(check(&events, 0.1).outcome, Outcome::Passed);
        events.extend([event(Invoke, 2, "write"), event(Info, 2, "write")]);
        let f = check(&events, 0.1);
        assert_eq!(f.outcome, Outcome::Vacuous);
        assert!(f.summary.contains("no write ever succeeded"), "{}", f.summary);
        // The harness's final reads do not count for the workload.
        let finals = vec![event(Invoke, FINAL_READ_PROCESSES, "read"), event(Ok, FINAL_READ_PROCESSES, "read")];
        assert_eq!(check(&finals, 0.1).outcome, Outcome::Vacuous);
    }

    #[test]
    fn too_small_a_share_of_successes_is_vacuous() {
        use EventType::*;
        let mut events = Vec::new();
        for p in 0..20 {
            events.push(event(Invoke, p, "write"));
            events.push(event(if p == 0 { Ok } else { Fail }, p, "write"));
        }
        assert_eq!(check(&events, 0.1).outcome, Outcome::Vacuous);
        assert_eq!(check(&events, 0.05).outcome, Outcome::Passed);
    }
}

//! Failpoints: named places in the server where a test can make it crash,
//! stall or fail on purpose, exactly in the windows the Raft simulation
//! already crashes in (tikv's `fail` crate, as TiKV and etcd's robustness
//! suite use theirs).
//!
//! The places are compiled into every build, but they do nothing unless the
//! cargo feature `failpoints` is on (the `fail` crate's macro is then
//! empty). With the feature, a failpoint is armed at startup (`capukv server
//! --failpoint NAME=ACTIONS`) or at run time through the Cluster service's
//! `Failpoint` call (`capukv failpoint`), with the `fail` crate's action
//! syntax: `panic`, `sleep(MS)`, `return` (an injected error), `off`, with
//! counts and chances such as `1*panic` or `20%sleep(500)`.
//!
//! A panic anywhere in the server ends the process ([`install_panic_hook`]):
//! a failpoint's `panic` is a crash exactly there, not a thread that quietly
//! stops. Every line the server writes because of a failpoint names it with
//! the word `failpoint`, so the harness's log scan can excuse what it caused.

/// A failpoint: its name and the window it opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Failpoint {
    pub name: &'static str,
    pub window: &'static str,
}

/// Before the Raft loop writes a batch (entries, hard state, snapshot).
pub const RAFT_BEFORE_PERSIST: &str = "raft-before-persist";
/// After the batch is durable, before the messages that waited for it go out.
pub const RAFT_AFTER_PERSIST: &str = "raft-after-persist";
/// A leader sent its new entries and has not yet written them itself.
pub const RAFT_AFTER_SEND_BEFORE_PERSIST: &str = "raft-after-send-before-persist";
/// Committed entries are durable here and not yet applied.
pub const APPLY_BEFORE_ENTRIES: &str = "apply-before-entries";
/// Entries applied, their proposals not yet answered.
pub const APPLY_AFTER_ENTRIES: &str = "apply-after-entries";
/// Before the apply thread's snapshot is taken and flushed.
pub const SNAPSHOT_BEFORE_SAVE: &str = "snapshot-before-save";
/// The snapshot is taken and the state machine flushed; the log is not yet compacted.
pub const SNAPSHOT_AFTER_SAVE: &str = "snapshot-after-save";
/// Before the Raft loop compacts the log to a snapshot.
pub const RAFT_BEFORE_COMPACT: &str = "raft-before-compact";
/// Before a leader streams a snapshot to a follower.
pub const SNAPSHOT_BEFORE_SEND: &str = "snapshot-before-send";
/// After the follower took the whole snapshot, before the leader hears of it.
pub const SNAPSHOT_AFTER_SEND: &str = "snapshot-after-send";
/// A follower received a whole snapshot, before its Raft loop sees it.
pub const SNAPSHOT_AFTER_RECEIVE: &str = "snapshot-after-receive";
/// Before a follower writes a received snapshot over its log.
pub const SNAPSHOT_BEFORE_INSTALL: &str = "snapshot-before-install";
/// The snapshot is written, not yet restored into the state machine.
pub const SNAPSHOT_AFTER_INSTALL: &str = "snapshot-after-install";
/// A read was confirmed (ReadIndex), before it reads the state machine.
pub const READ_BEFORE_ANSWER: &str = "read-before-answer";

/// Every failpoint, in the order a write and a snapshot pass them.
pub const ALL: [Failpoint; 14] = [
    Failpoint { name: RAFT_AFTER_SEND_BEFORE_PERSIST, window: "a leader sent new entries it has not written itself" },
    Failpoint {
        name: RAFT_BEFORE_PERSIST,
        window: "before the Raft loop writes a batch (entries, term, vote, snapshot)",
    },
    Failpoint { name: RAFT_AFTER_PERSIST, window: "the batch is durable; the replies that waited for it are not sent" },
    Failpoint { name: APPLY_BEFORE_ENTRIES, window: "committed entries are durable and not applied" },
    Failpoint { name: APPLY_AFTER_ENTRIES, window: "entries are applied; their clients are not answered" },
    Failpoint { name: READ_BEFORE_ANSWER, window: "a read is confirmed and has not read the state machine" },
    Failpoint { name: SNAPSHOT_BEFORE_SAVE, window: "before a snapshot of the state machine is taken and flushed" },
    Failpoint { name: SNAPSHOT_AFTER_SAVE, window: "the snapshot is saved; the log is not compacted" },
    Failpoint { name: RAFT_BEFORE_COMPACT, window: "before the log is compacted to the snapshot" },
    Failpoint { name: SNAPSHOT_BEFORE_SEND, window: "before a leader streams a snapshot to a follower" },
    Failpoint { name: SNAPSHOT_AFTER_SEND, window: "the follower has the snapshot; the leader has not heard" },
    Failpoint { name: SNAPSHOT_AFTER_RECEIVE, window: "a follower received a snapshot; its Raft loop has not seen it" },
    Failpoint { name: SNAPSHOT_BEFORE_INSTALL, window: "before a follower writes a snapshot over its log" },
    Failpoint { name: SNAPSHOT_AFTER_INSTALL, window: "the snapshot is written, not restored into the state machine" },
];

/// Why a failpoint could not be armed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailpointError {
    #[error(
        "this capukv has no failpoints compiled in: build it with the cargo feature `failpoints` (capukv-planted has them)"
    )]
    NotCompiled,
    #[error("no failpoint {0:?} (`capukv failpoints` lists them)")]
    Unknown(String),
    #[error("failpoint {name}: actions {actions:?}: {reason}")]
    BadActions { name: String, actions: String, reason: String },
    #[error("--failpoint {0:?}: expected NAME=ACTIONS, e.g. raft-before-persist=1*panic")]
    BadSpec(String),
}

/// Whether any failpoint may be armed: async sites skip their trip to a
/// blocking thread while none is.
static ANY_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this build has working failpoints.
pub const fn compiled() -> bool {
    cfg!(feature = "failpoints")
}

/// The failpoint called `name`.
pub fn find(name: &str) -> Result<&'static Failpoint, FailpointError> {
    ALL.iter().find(|f| f.name == name).ok_or_else(|| FailpointError::Unknown(name.to_string()))
}

/// Arms `name` with `actions` (the `fail` crate's syntax); empty actions or
/// `off` disarm it.
pub fn arm(name: &str, actions: &str) -> Result<(), FailpointError> {
    find(name)?;
    if !compiled() {
        return Err(FailpointError::NotCompiled);
    }
    let actions = actions.trim();
    tracing::warn!(failpoint = name, actions, "failpoint armed on request");
    #[cfg(feature = "failpoints")]
    {
        if actions.is_empty() || actions == "off" {
            fail::remove(name);
            return Ok(());
        }
        fail::cfg(name, actions).map_err(|reason| FailpointError::BadActions {
            name: name.to_string(),
            actions: actions.to_string(),
            reason,
        })?;
        ANY_ARMED.store(true, std::sync::atomic::Ordering::Release);
    }
    Ok(())
}

/// Arms `NAME=ACTIONS`, as `--failpoint` gives it.
pub fn arm_spec(spec: &str) -> Result<(), FailpointError> {
    let (name, actions) = spec.split_once('=').ok_or_else(|| FailpointError::BadSpec(spec.to_string()))?;
    arm(name.trim(), actions)
}

/// The failpoints armed now, with their actions.
pub fn armed() -> Vec<(String, String)> {
    #[cfg(feature = "failpoints")]
    {
        fail::list()
    }
    #[cfg(not(feature = "failpoints"))]
    {
        Vec::new()
    }
}

/// Passes failpoint `name` from async code, off the async threads (its
/// `sleep` would stall them); its `return` action is an error naming it.
pub async fn pass(name: &'static str) -> Result<(), String> {
    if !compiled() || !ANY_ARMED.load(std::sync::atomic::Ordering::Acquire) {
        return Ok(());
    }
    tracing::trace!(failpoint = name, "passing");
    let hit = move || -> Result<(), String> {
        fail::fail_point!(name, |_| Err(format!("failpoint {name}: an injected failure")));
        Ok(())
    };
    tokio::task::spawn_blocking(hit).await.map_err(|e| e.to_string())?
}

/// Makes a panic on any thread end the process, after the panic message is
/// written: a server whose Raft or apply thread died must not go on
/// answering from the threads left (and a failpoint's `panic` is then the
/// crash it stands for).
pub fn install_panic_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message =
            payload.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| payload.downcast_ref::<String>().cloned());
        match message {
            // One line that names the failpoint, for the harness's log scan.
            Some(m) if m.starts_with("failpoint ") => {
                let thread = std::thread::current();
                let place = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                eprintln!("{m}: thread '{}' panicked at {place} on purpose", thread.name().unwrap_or("?"));
            }
            _ => default(info),
        }
        std::process::abort();
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_every_constant_is_listed() {
        let names: std::collections::BTreeSet<_> = ALL.iter().map(|f| f.name).collect();
        assert_eq!(names.len(), ALL.len());
        let source = include_str!("failpoints.rs");
        let constants = source.matches(": &str = \"").count();
        assert_eq!(constants, ALL.len(), "a failpoint constant missing from ALL");
    }

    #[test]
    fn arming_refuses_unknown_names_and_malformed_specs() {
        assert_eq!(arm("no-such-point", "panic"), Err(FailpointError::Unknown("no-such-point".into())));
        assert!(matches!(arm_spec("raft-before-persist"), Err(FailpointError::BadSpec(_))));
        if compiled() {
            let err = arm(SNAPSHOT_BEFORE_SEND, "explode(3)").unwrap_err();
            assert!(matches!(err, FailpointError::BadActions { .. }), "{err}");
            arm(SNAPSHOT_BEFORE_SEND, "1*sleep(1)").unwrap();
            assert!(armed().iter().any(|(n, _)| n == SNAPSHOT_BEFORE_SEND));
            arm(SNAPSHOT_BEFORE_SEND, "off").unwrap();
            assert!(!armed().iter().any(|(n, _)| n == SNAPSHOT_BEFORE_SEND));
        } else {
            assert_eq!(arm(RAFT_BEFORE_PERSIST, "panic"), Err(FailpointError::NotCompiled));
        }
    }
}

//! The namespace undo log: directory-entry changes not yet made durable by fsync of their directory.
//!
//! Entries name directories by inode and entries by name (not by full path), so that a directory renamed
//! later, durably or not, is found where it is at undo time. The log is undone newest first, which puts
//! every name back where the older entries expect it.

use std::ffi::{OsStr, OsString};

use crate::inodes::Ino;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NsOp {
    /// `parent/name` was created (create, mknod, mkdir, symlink, or link); undo removes it, recursively.
    Created { parent: Ino, name: OsString, ino: Ino },
    /// `from` was renamed to `to`. If that replaced an entry, the replaced inode is kept in the stash
    /// under `replaced` until the rename is durable.
    Renamed { from: (Ino, OsString), to: (Ino, OsString), ino: Ino, replaced: Option<OsString> },
    /// `parent/name` was unlinked or rmdir'ed; the inode sits in the stash under `stash` until then.
    Unlinked { parent: Ino, name: OsString, ino: Ino, stash: OsString },
}

#[derive(Debug)]
struct Entry {
    op: NsOp,
    /// Directories still to be fsynced before this change is durable.
    pending: Vec<Ino>,
}

#[derive(Debug, Default)]
pub(crate) struct NamespaceLog {
    entries: Vec<Entry>,
}

impl NsOp {
    /// The stash entry this change keeps, if any.
    pub(crate) fn stash(&self) -> Option<&OsStr> {
        match self {
            NsOp::Unlinked { stash, .. } | NsOp::Renamed { replaced: Some(stash), .. } => Some(stash),
            NsOp::Renamed { replaced: None, .. } | NsOp::Created { .. } => None,
        }
    }
}

impl NamespaceLog {
    pub(crate) fn push(&mut self, op: NsOp) {
        let mut pending = match &op {
            NsOp::Created { parent, .. } | NsOp::Unlinked { parent, .. } => vec![*parent],
            NsOp::Renamed { from, to, .. } => vec![from.0, to.0],
        };
        pending.dedup();
        self.entries.push(Entry { op, pending });
    }

    /// `dir` was fsynced: the changes in it are durable. Returns the ones that became fully durable,
    /// so the caller can delete the stash entries they kept.
    pub(crate) fn fsync_dir(&mut self, dir: Ino) -> Vec<NsOp> {
        let mut durable = Vec::new();
        self.entries.retain_mut(|e| {
            e.pending.retain(|&d| d != dir);
            if e.pending.is_empty() {
                durable.push(e.op.clone());
                false
            } else {
                true
            }
        });
        durable
    }

    /// Directory `dir` was deleted for good: the changes in it can neither become durable nor be undone.
    /// Removes and returns them, so the caller can delete the stash entries they kept.
    pub(crate) fn drop_dir(&mut self, dir: Ino) -> Vec<NsOp> {
        let mut dropped = Vec::new();
        self.entries.retain(|e| {
            let inside = match &e.op {
                NsOp::Created { parent, .. } | NsOp::Unlinked { parent, .. } => *parent == dir,
                NsOp::Renamed { from, to, .. } => from.0 == dir || to.0 == dir,
            };
            if inside {
                dropped.push(e.op.clone());
            }
            !inside
        });
        dropped
    }

    /// Takes all entries, newest first: the order to undo them in.
    pub(crate) fn drain_newest_first(&mut self) -> Vec<NsOp> {
        self.entries.drain(..).rev().map(|e| e.op).collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rename_needs_both_directories_synced() {
        let mut log = NamespaceLog::default();
        log.push(NsOp::Renamed { from: (2, "a".into()), to: (3, "b".into()), ino: 9, replaced: None });
        log.push(NsOp::Created { parent: 2, name: "c".into(), ino: 10 });
        assert_eq!(log.fsync_dir(3), vec![]);
        assert_eq!(log.len(), 2);
        let durable = log.fsync_dir(2);
        assert_eq!(durable.len(), 2);
        assert_eq!(log.len(), 0);
    }
}

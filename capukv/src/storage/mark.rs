//! The durability mark: a small record, beside RocksDB's files, of how far
//! the Raft log and the hard state were made durable. It lets a restarted
//! node tell a log that lost what it had synced (a truncated or rolled-back
//! WAL, a MANIFEST that lost a flush) from a log whose unsynced tail a crash
//! took, which RocksDB's own recovery cannot: both end early, and only the
//! first may have been acknowledged. A node whose log ends below its mark
//! refuses to start rather than vote or serve with acknowledged entries
//! gone (docs/corruption.md).
//!
//! The contract that makes it sound: the mark never claims more than is
//! durable. It is raised only after the WAL sync it describes, without a
//! sync of its own (a crash may keep an older mark, which only weakens the
//! check), and it is lowered, synced, before any write that legitimately
//! shortens the log (a conflicting suffix replaced, a snapshot installed).
//! A mark that is missing or unreadable (a data directory from before it, a
//! torn mark) checks nothing.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::raft::{Index, NodeId, Term};

/// The mark's file name in the data directory.
pub const FILE: &str = "CAPUKV-DURABLE";
const MAGIC: &[u8; 4] = b"CKDM";
const LEN: usize = 4 + 8 * 4 + 8;

/// What was durable when the mark was written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mark {
    pub last_index: Index,
    pub last_term: Term,
    pub term: Term,
    pub vote: Option<NodeId>,
}

/// FNV-1a: stable across Rust versions and platforms, unlike std's hasher.
pub(crate) fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl Mark {
    fn encode(&self) -> [u8; LEN] {
        let mut out = [0u8; LEN];
        out[..4].copy_from_slice(MAGIC);
        for (i, word) in [self.last_index, self.last_term, self.term, self.vote.unwrap_or(0)].into_iter().enumerate() {
            out[4 + i * 8..12 + i * 8].copy_from_slice(&word.to_le_bytes());
        }
        let sum = fnv(&out[..LEN - 8]);
        out[LEN - 8..].copy_from_slice(&sum.to_le_bytes());
        out
    }

    fn decode(raw: &[u8]) -> Option<Mark> {
        if raw.len() != LEN || &raw[..4] != MAGIC || fnv(&raw[..LEN - 8]).to_le_bytes() != raw[LEN - 8..] {
            return None;
        }
        let word = |i: usize| u64::from_le_bytes(raw[4 + i * 8..12 + i * 8].try_into().expect("8 bytes"));
        Some(Mark { last_index: word(0), last_term: word(1), term: word(2), vote: Some(word(3)).filter(|&v| v != 0) })
    }
}

/// The mark file of one data directory, kept open.
pub struct MarkFile {
    path: PathBuf,
    file: File,
    current: Mark,
}

impl MarkFile {
    /// Opens (or creates) the mark in `dir`; returns it with what it held
    /// (`None`: no mark, or one that cannot be read).
    pub fn open(dir: &Path) -> std::io::Result<(MarkFile, Option<Mark>)> {
        let path = dir.join(FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        let mut raw = Vec::new();
        file.read_to_end(&mut raw)?;
        let found = Mark::decode(&raw);
        if found.is_none() && !raw.is_empty() {
            tracing::warn!(path = %path.display(), "the durability mark is unreadable; this start checks the log against nothing");
        }
        let current = found.unwrap_or_default();
        Ok((MarkFile { path, file, current }, found))
    }

    fn write(&mut self, mark: Mark, sync: bool) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&mark.encode())?;
        if sync {
            self.file.sync_data()?;
        }
        self.current = mark;
        Ok(())
    }

    /// After a WAL sync made `mark` durable: raised, unsynced.
    pub fn raise(&mut self, mark: Mark) -> std::io::Result<()> {
        if mark == self.current {
            return Ok(());
        }
        self.write(mark, false)
    }

    /// Before a write that may end the log at `last_index` or below:
    /// lowered, and synced, so that no crash leaves a mark above the log.
    pub fn lower_to(&mut self, last_index: Index) -> std::io::Result<()> {
        if self.current.last_index <= last_index {
            return Ok(());
        }
        let lowered = Mark { last_index, last_term: 0, ..self.current };
        self.write(lowered, true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_round_trips_and_a_damaged_one_reads_as_none() {
        let m = Mark { last_index: 90, last_term: 3, term: 4, vote: Some(2) };
        assert_eq!(Mark::decode(&m.encode()), Some(m));
        let mut raw = m.encode();
        raw[9] ^= 1;
        assert_eq!(Mark::decode(&raw), None, "a flipped bit");
        assert_eq!(Mark::decode(&m.encode()[..20]), None, "a torn write");
        assert_eq!(Mark::decode(&[]), None);
        let none = Mark { vote: None, ..m };
        assert_eq!(Mark::decode(&none.encode()), Some(none));
    }
}

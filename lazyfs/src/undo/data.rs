//! Undo record of one file's data since its last fsync.
//!
//! The record holds the file's length at the last sync and the original bytes of every range below that
//! length that has been changed since. Bytes are saved the first time they are about to change and never
//! again, and saved ranges are kept merged, so an append (the common case) costs nothing but the length,
//! and rewriting a file costs at most its synced size.
//!
//! Invariant that makes saving cheap: every byte below `synced_len` is either saved here or still holds
//! its original value in the backing file (a shrink saves the bytes it cuts before cutting them).

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// What rolling one file back did.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Rollback {
    /// Whether the file differed from its synced state at all.
    pub(crate) changed: bool,
    pub(crate) bytes_discarded: u64,
    /// Whether a non-empty prefix of the last write was kept (a torn write).
    pub(crate) torn: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct DataUndo {
    synced_len: u64,
    /// Current length as far as this record knows (maintained for cheap `pending()` accounting).
    cur_len: u64,
    /// Original bytes by offset: disjoint, never adjacent (adjacent ranges are merged).
    saved: BTreeMap<u64, Vec<u8>>,
    saved_bytes: u64,
    /// (offset, len) of the last write(), the one a torn write keeps part of.
    last_write: Option<(u64, u64)>,
}

impl DataUndo {
    /// Starts a record for a file whose current (and therefore synced) length is `len`.
    pub(crate) fn new(len: u64) -> Self {
        DataUndo { synced_len: len, cur_len: len, saved: BTreeMap::new(), saved_bytes: 0, last_write: None }
    }

    /// Must be called before bytes `[start, end)` of the file change. `read_original(offset, buf)` fills
    /// `buf` from the file as it is now, which for unsaved bytes below the synced length is the original.
    pub(crate) fn before_change(
        &mut self,
        start: u64,
        end: u64,
        mut read_original: impl FnMut(u64, &mut [u8]) -> io::Result<()>,
    ) -> io::Result<()> {
        let end = end.min(self.synced_len);
        if start >= end {
            return Ok(());
        }
        // Saved ranges overlapping or adjacent to [start, end): they get merged with the new bytes.
        let mut keys: Vec<u64> =
            self.saved.range(..=end).rev().take_while(|(k, v)| *k + v.len() as u64 >= start).map(|(k, _)| *k).collect();
        keys.reverse();

        let mut merged_start = start;
        let mut buf = Vec::new();
        let mut pos = start;
        let mut pieces = keys.into_iter().filter_map(|k| self.saved.remove(&k).map(|v| (k, v))).peekable();
        // Reuse the leftmost piece's buffer when it starts at or before `start`, so that rewriting a file
        // front to back appends to one buffer instead of copying it on every write.
        if let Some((k, _)) = pieces.peek()
            && *k <= start
            && let Some((k, v)) = pieces.next()
        {
            merged_start = k;
            pos = k + v.len() as u64;
            buf = v;
        }
        let mut added = 0u64;
        for (k, v) in pieces {
            if k > pos {
                added += read_into(&mut buf, pos, k, &mut read_original)?;
            }
            pos = pos.max(k + v.len() as u64);
            buf.extend_from_slice(&v);
        }
        if pos < end {
            added += read_into(&mut buf, pos, end, &mut read_original)?;
        }
        self.saved_bytes += added;
        self.saved.insert(merged_start, buf);
        Ok(())
    }

    /// Records a completed write of `len` bytes at `offset`.
    pub(crate) fn after_write(&mut self, offset: u64, len: u64) {
        self.cur_len = self.cur_len.max(offset + len);
        if len > 0 {
            self.last_write = Some((offset, len));
        }
    }

    /// Records that the file's length is now `len` (truncate, or fallocate that extended it).
    pub(crate) fn after_set_len(&mut self, len: u64) {
        self.cur_len = len;
    }

    /// The length the file had at its last sync.
    pub(crate) fn synced_len(&self) -> u64 {
        self.synced_len
    }

    /// Whether rolling back would change anything.
    pub(crate) fn is_dirty(&self) -> bool {
        self.saved_bytes > 0 || self.cur_len != self.synced_len
    }

    /// Bytes that a rollback would discard: everything past the synced length plus the overwritten bytes.
    pub(crate) fn unsynced_bytes(&self) -> u64 {
        self.cur_len.saturating_sub(self.synced_len) + self.saved_bytes
    }

    /// Puts the file back as it was at its last sync. With `torn = Some(draw)`, `draw(n)` picks how many
    /// bytes (in `[0, n)`) of the last write survive, and those are written back over the restored file.
    pub(crate) fn restore(&self, file: &File, torn: Option<&mut dyn FnMut(u64) -> u64>) -> io::Result<Rollback> {
        // The actual length, not `cur_len`: a write that failed half-way (ENOSPC) may have grown the file.
        let len_now = file.metadata()?.len();
        // Read the last write's bytes before restoring overwrites them. A later truncate may have cut
        // them; what is gone is gone.
        let kept = match (torn, self.last_write) {
            (Some(draw), Some((offset, len))) => {
                let keep = draw(len);
                let available = len_now.saturating_sub(offset).min(keep);
                let mut bytes = vec![0; usize::try_from(available).map_err(io::Error::other)?];
                file.read_exact_at(&mut bytes, offset)?;
                Some((offset, bytes))
            }
            _ => None,
        };
        for (&offset, bytes) in &self.saved {
            file.write_all_at(bytes, offset)?;
        }
        file.set_len(self.synced_len)?;
        let mut rollback = Rollback {
            changed: len_now != self.synced_len || self.saved_bytes > 0,
            bytes_discarded: len_now.saturating_sub(self.synced_len) + self.saved_bytes,
            torn: false,
        };
        if let Some((offset, bytes)) = kept
            && !bytes.is_empty()
        {
            file.write_all_at(&bytes, offset)?;
            rollback.bytes_discarded = rollback.bytes_discarded.saturating_sub(bytes.len() as u64);
            rollback.torn = true;
        }
        Ok(rollback)
    }

    #[cfg(test)]
    fn saved_ranges(&self) -> Vec<(u64, Vec<u8>)> {
        self.saved.iter().map(|(k, v)| (*k, v.clone())).collect()
    }
}

/// Appends the original bytes `[from, to)` to `buf`; returns how many.
fn read_into(
    buf: &mut Vec<u8>,
    from: u64,
    to: u64,
    read_original: &mut impl FnMut(u64, &mut [u8]) -> io::Result<()>,
) -> io::Result<u64> {
    let old = buf.len();
    let n = usize::try_from(to - from).map_err(io::Error::other)?;
    buf.resize(old + n, 0);
    read_original(from, &mut buf[old..])?;
    Ok(to - from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs `before_change` against an in-memory file and counts how many bytes it asked for.
    fn change(rec: &mut DataUndo, file: &[u8], start: u64, end: u64) -> u64 {
        let mut asked = 0;
        rec.before_change(start, end, |off, buf| {
            asked += buf.len() as u64;
            let off = off as usize;
            buf.copy_from_slice(&file[off..off + buf.len()]);
            Ok(())
        })
        .unwrap();
        asked
    }

    #[test]
    fn appends_save_nothing() {
        let mut rec = DataUndo::new(10);
        assert_eq!(change(&mut rec, &[0; 10], 10, 4096), 0);
        rec.after_write(10, 4086);
        assert!(rec.saved_ranges().is_empty());
        assert_eq!(rec.unsynced_bytes(), 4086);
    }

    #[test]
    fn overlapping_overwrites_save_each_byte_once_and_merge() {
        let file: Vec<u8> = (0..100).collect();
        let mut rec = DataUndo::new(100);
        assert_eq!(change(&mut rec, &file, 10, 20), 10);
        assert_eq!(change(&mut rec, &file, 30, 40), 10);
        assert_eq!(rec.saved_ranges().len(), 2);
        // Covers both and the gap between: only the gap and the new ends are read.
        assert_eq!(change(&mut rec, &file, 5, 45), 5 + 10 + 5);
        assert_eq!(rec.saved_ranges(), vec![(5, file[5..45].to_vec())]);
        // Fully inside: nothing new.
        assert_eq!(change(&mut rec, &file, 12, 44), 0);
        // Adjacent on both sides: merged into one range.
        assert_eq!(change(&mut rec, &file, 45, 50), 5);
        assert_eq!(change(&mut rec, &file, 0, 5), 5);
        assert_eq!(rec.saved_ranges(), vec![(0, file[0..50].to_vec())]);
        assert_eq!(rec.unsynced_bytes(), 50);
    }

    #[test]
    fn only_bytes_below_the_synced_length_are_saved() {
        let file = vec![7u8; 64];
        let mut rec = DataUndo::new(16);
        assert_eq!(change(&mut rec, &file, 8, 64), 8);
        assert_eq!(rec.saved_ranges(), vec![(8, vec![7; 8])]);
    }
}

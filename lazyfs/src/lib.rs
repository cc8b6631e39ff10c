//! `lazyfs`: a FUSE passthrough filesystem with power-loss semantics, after Jepsen's LazyFS.
//!
//! [`Mount::mount`] shows a backing directory at a mount point. Programs use the mount point as an
//! ordinary filesystem; [`Mount::lose_unsynced`] then forgets every change that was not made durable,
//! exactly as a power failure on a strict POSIX filesystem would.
//!
//! # Durability contract
//!
//! Every operation is applied to the backing directory at once, so reads always see every write (as
//! they would through a page cache). What survives [`Mount::lose_unsynced`]:
//!
//! * **File data and length** are durable as of the file's last `fsync` or `fdatasync` (or, for a file
//!   opened with `O_SYNC`/`O_DSYNC`, as of each write's return). A loss restores every byte that was
//!   overwritten since and truncates the file back to its length at that sync. Truncation and
//!   `fallocate` are covered the same way. Data is tracked per inode, so renames do not matter.
//! * **Directory entries** (created by `create`, `mknod`, `mkdir`, `symlink`, `link`; removed by `unlink`,
//!   `rmdir`; moved by `rename`) are durable once the directory holding them has been fsynced after the
//!   change; a rename needs both its source and its target directory fsynced. A loss undoes the
//!   non-durable entry changes newest first: created entries disappear with everything in them (even a
//!   file whose own data was fsynced: its name never was), renames move back and put back the entry they
//!   replaced, unlinked entries come back.
//! * With [`Options::torn_writes`], the last unsynced `write` to each rolled-back file is kept in part:
//!   a prefix of a seeded random length in `[0, len)` of its bytes stays (a torn write).
//!
//! Not modelled, i.e. always durable at once: mode, ownership and timestamps, `sync(2)`/`syncfs(2)`
//! (which make nothing durable here), and extended attributes (not supported). The stash that keeps
//! unlinked entries until their directory is fsynced lives in the backing directory as
//! `.lazyfs-stash/`; the mount hides it.
//!
//! The durable state is also the state of the backing directory after a loss or a clean unmount, so the
//! harness can inspect the backing directory directly then.
//!
//! `fsync` is not passed on to the backing filesystem: durability is what the undo log says, and the
//! backing disk does not lose power in a test, so passing it on would only add latency.
//!
//! RocksDB fsyncs its DB directory after creating files in it, but not the DB directory's own parent:
//! a DB directory created by RocksDB on the mount is itself lost on the first loss. Create the data
//! directory durably before starting the server (mkdir, then fsync its parent), or in the backing
//! directory before mounting.
//!
//! # Example
//!
//! ```no_run
//! use std::path::Path;
//!
//! let mount = lazyfs::Mount::mount(Path::new("/var/lib/node1"), Path::new("/mnt/node1"), Default::default())?;
//! // ... start the server with its data directory under /mnt/node1, run the workload, SIGKILL it ...
//! let loss = mount.lose_unsynced()?;
//! println!("power loss: {loss:?}");
//! // ... restart the server on the same directory and check what it still has ...
//! mount.unmount()?;
//! # Ok::<(), lazyfs::LazyFsError>(())
//! ```

mod error;
mod fs;
mod inodes;
mod mount;
mod undo;

pub use error::LazyFsError;
pub use mount::{FS_NAME, Mount, force_unmount, mounts};

/// How losses behave.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// On loss, keep a seeded random prefix of the last unsynced write of each file (a torn write) instead
    /// of none of it.
    pub torn_writes: bool,
    /// Seed of the torn-write lengths: the same seed and the same operations give the same losses.
    pub seed: u64,
}

/// What one [`Mount::lose_unsynced`] undid.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Loss {
    /// Files whose data or length differed from their last sync and were put back.
    pub files_rolled_back: u64,
    /// Bytes written past the synced length plus synced bytes overwritten (or cut), less torn-write bytes
    /// kept, over the rolled-back files.
    pub bytes_discarded: u64,
    /// Entries created since their directory's last fsync that were removed (a directory counts once).
    pub files_removed: u64,
    /// Renames moved back.
    pub renames_undone: u64,
    /// Unlinked (or rmdir'ed) entries put back.
    pub unlinks_undone: u64,
    /// Files where a non-empty prefix of the last unsynced write was kept.
    pub torn_writes: u64,
}

/// What is not durable right now.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pending {
    /// Files whose data or length differs from their last sync.
    pub dirty_files: u64,
    /// Bytes a loss would discard from those files (before any torn write keeps some).
    pub unsynced_bytes: u64,
    /// Directory-entry changes (creations, renames, unlinks) not yet made durable.
    pub unsynced_entries: u64,
}

//! Errors of the public API. Each variant names what failed and on which path.

use std::io;
use std::path::PathBuf;

/// An error of [`Mount`](crate::Mount) or [`force_unmount`](crate::force_unmount).
#[derive(Debug, thiserror::Error)]
pub enum LazyFsError {
    /// The backing directory or the mount point is missing or not a directory.
    #[error("{what} {path} is not an existing directory")]
    NotADirectory {
        /// Which argument it was ("backing directory" or "mount point").
        what: &'static str,
        /// The path as given.
        path: PathBuf,
    },

    /// The mount point has entries in it (or is a stale mount: see [`force_unmount`](crate::force_unmount)).
    #[error("mount point {path} is not empty")]
    MountpointNotEmpty {
        /// The mount point.
        path: PathBuf,
    },

    /// The mount point is inside the backing directory or the other way round.
    #[error("mount point {mountpoint} and backing directory {backing} must not contain each other")]
    Overlap {
        /// The backing directory (canonical).
        backing: PathBuf,
        /// The mount point (canonical).
        mountpoint: PathBuf,
    },

    /// An operation on the backing directory failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done, e.g. "restore saved bytes of".
        op: &'static str,
        /// The path in the backing directory it was done to.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Mounting the FUSE filesystem failed.
    #[error("mount FUSE filesystem at {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Unmounting failed.
    #[error("unmount {path}: {reason}")]
    Unmount {
        /// The mount point.
        path: PathBuf,
        /// What `fusermount3` (or the kernel) said.
        reason: String,
    },

    /// `lose_unsynced` was called while files or directories on the mount were still open.
    #[error("{open} handles still open on {path}; stop every process using the mount before losing unsynced data")]
    Busy {
        /// The mount point.
        path: PathBuf,
        /// How many file and directory handles were open.
        open: usize,
    },
}

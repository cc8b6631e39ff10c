//! The FUSE layer: translates kernel requests into [`UndoFs`] calls, and I/O errors into errnos.
//!
//! Two settings here are part of the loss semantics, not tuning: every open uses `FOPEN_DIRECT_IO`, so
//! the kernel page cache never holds file data that a loss rolls back underneath it, and attribute and
//! entry TTLs are zero, so the kernel asks again instead of serving sizes or names from before a loss.
//! POSIX locks are not implemented on purpose: the kernel then keeps them locally, which is all that
//! RocksDB's `LOCK` file needs.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use tracing::{debug, error, trace};

use crate::undo::{SetAttr, SetTime, UndoFs};

/// Zero: the kernel must not cache attributes or names across a loss.
const TTL: Duration = Duration::ZERO;

/// Our inode numbers are never reused, so the generation is always the same.
const GENERATION: Generation = Generation(0);

/// Locks the shared state. A panic while it was held leaves it poisoned; the state is still the best
/// description of the backing directory there is, so keep serving rather than fail every request.
pub(crate) fn lock(state: &Mutex<UndoFs>) -> MutexGuard<'_, UndoFs> {
    state.lock().unwrap_or_else(|poisoned| {
        error!("lazyfs state lock poisoned by a panic; continuing");
        poisoned.into_inner()
    })
}

fn errno(op: &'static str, e: &io::Error) -> Errno {
    debug!(op, error = %e, "request failed");
    match e.raw_os_error() {
        Some(code) => Errno::from_i32(code),
        None => Errno::EIO,
    }
}

fn system_time(secs: i64, nsecs: i64) -> SystemTime {
    let nsecs = u32::try_from(nsecs).unwrap_or(0);
    match u64::try_from(secs) {
        Ok(secs) => UNIX_EPOCH + Duration::new(secs, nsecs),
        Err(_) => UNIX_EPOCH - Duration::new(secs.unsigned_abs(), 0) + Duration::new(0, nsecs),
    }
}

fn kind(ft: std::fs::FileType) -> FileType {
    FileType::from_std(ft).unwrap_or(FileType::RegularFile)
}

fn attr(state: &UndoFs, ino: u64, md: &std::fs::Metadata) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: md.size(),
        blocks: md.blocks(),
        atime: system_time(md.atime(), md.atime_nsec()),
        mtime: system_time(md.mtime(), md.mtime_nsec()),
        ctime: system_time(md.ctime(), md.ctime_nsec()),
        crtime: UNIX_EPOCH,
        kind: kind(md.file_type()),
        perm: (md.mode() & 0o7777) as u16,
        nlink: u32::try_from(state.visible_nlink(ino, md)).unwrap_or(u32::MAX),
        uid: md.uid(),
        gid: md.gid(),
        // FUSE carries the old 32-bit device encoding.
        rdev: md.rdev() as u32,
        blksize: u32::try_from(md.blksize()).unwrap_or(4096),
        flags: 0,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => SetTime::At(t),
    })
}

/// The filesystem handed to fuser; all state is behind the mutex shared with [`crate::Mount`].
pub(crate) struct LazyFs {
    state: Arc<Mutex<UndoFs>>,
}

impl LazyFs {
    pub(crate) fn new(state: Arc<Mutex<UndoFs>>) -> Self {
        LazyFs { state }
    }

    /// Runs `f` on the state and replies with the entry it made or found, all under one lock.
    fn entry_op(
        &self,
        op: &'static str,
        reply: ReplyEntry,
        f: impl FnOnce(&mut UndoFs) -> io::Result<(u64, std::fs::Metadata)>,
    ) {
        let mut state = lock(&self.state);
        match f(&mut state) {
            Ok((ino, md)) => reply.entry(&TTL, &attr(&state, ino, &md), GENERATION),
            Err(e) => reply.error(errno(op, &e)),
        }
    }
}

fn reply_empty(op: &'static str, result: io::Result<()>, reply: ReplyEmpty) {
    match result {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, &e)),
    }
}

impl Filesystem for LazyFs {
    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.entry_op("lookup", reply, |s| s.lookup(parent.0, name));
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        lock(&self.state).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        let state = lock(&self.state);
        match state.getattr(ino.0, fh.map(|fh| fh.0)) {
            Ok(md) => reply.attr(&TTL, &attr(&state, ino.0, &md)),
            Err(e) => reply.error(errno("getattr", &e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = SetAttr { mode, uid, gid, size, atime: set_time(atime), mtime: set_time(mtime) };
        let mut state = lock(&self.state);
        match state.setattr(ino.0, fh.map(|fh| fh.0), change) {
            Ok(md) => reply.attr(&TTL, &attr(&state, ino.0, &md)),
            Err(e) => reply.error(errno("setattr", &e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match lock(&self.state).readlink(ino.0) {
            Ok(target) => reply.data(target.as_os_str().as_bytes()),
            Err(e) => reply.error(errno("readlink", &e)),
        }
    }

    fn mknod(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        // The kernel has applied the umask to `mode` already (we do not ask for FUSE_DONT_MASK).
        self.entry_op("mknod", reply, |s| s.mknod(parent.0, name, mode, rdev));
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        self.entry_op("mkdir", reply, |s| s.mkdir(parent.0, name, mode));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty("unlink", lock(&self.state).unlink(parent.0, name), reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        reply_empty("rmdir", lock(&self.state).rmdir(parent.0, name), reply);
    }

    fn symlink(&self, _req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.entry_op("symlink", reply, |s| s.symlink(parent.0, link_name, target));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        // RENAME_EXCHANGE (and WHITEOUT) would need their own undo; nothing RocksDB does uses them.
        if flags.difference(RenameFlags::RENAME_NOREPLACE).bits() != 0 {
            debug!(%flags, "rename: unsupported flags");
            reply.error(Errno::EINVAL);
            return;
        }
        let noreplace = flags.contains(RenameFlags::RENAME_NOREPLACE);
        reply_empty("rename", lock(&self.state).rename(parent.0, name, newparent.0, newname, noreplace), reply);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.entry_op("link", reply, |s| s.link(ino.0, newparent.0, newname));
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match lock(&self.state).open(ino.0, flags.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(errno("open", &e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match lock(&self.state).read(fh.0, offset, size) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(errno("read", &e)),
        }
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        trace!(fh = fh.0, offset, len = data.len(), "write");
        match lock(&self.state).write(fh.0, offset, data) {
            // The kernel never sends more than max_write (far below 4 GiB) in one request.
            Ok(n) => reply.written(u32::try_from(n).unwrap_or(u32::MAX)),
            Err(e) => reply.error(errno("write", &e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Writes went to the backing file already; close() has nothing to flush.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        lock(&self.state).release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // fsync and fdatasync alike make data and length durable; no metadata we model differs.
        lock(&self.state).fsync(ino.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match lock(&self.state).opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("opendir", &e)),
        }
    }

    fn readdir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let mut state = lock(&self.state);
        match state.readdir(fh.0, offset) {
            Ok(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    // The offset of an entry is where the next readdir continues: one past it.
                    if reply.add(INodeNo(e.ino), offset + i as u64 + 1, kind(e.kind), &e.name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno("readdir", &e)),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        lock(&self.state).releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply_empty("fsyncdir", lock(&self.state).fsyncdir(ino.0), reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match lock(&self.state).statfs() {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                u32::try_from(s.block_size()).unwrap_or(4096),
                u32::try_from(s.name_max()).unwrap_or(255),
                u32::try_from(s.fragment_size()).unwrap_or(4096),
            ),
            Err(e) => reply.error(errno("statfs", &e)),
        }
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        reply_empty("access", lock(&self.state).access(ino.0, mask.bits()), reply);
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let mut state = lock(&self.state);
        match state.create(parent.0, name, mode, flags) {
            Ok((ino, md, fh)) => {
                let attr = attr(&state, ino, &md);
                reply.created(&TTL, &attr, GENERATION, FileHandle(fh), FopenFlags::FOPEN_DIRECT_IO);
            }
            Err(e) => reply.error(errno("create", &e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        reply_empty("fallocate", lock(&self.state).fallocate(fh.0, offset, length, mode), reply);
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        match lock(&self.state).lseek(fh.0, offset, whence) {
            Ok(off) => reply.offset(off),
            Err(e) => reply.error(errno("lseek", &e)),
        }
    }
}

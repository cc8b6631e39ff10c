//! The core: a write-through view of the backing directory that remembers how to undo every change that
//! is not durable yet (see the crate docs for the durability contract).
//!
//! [`UndoFs`] does each operation on the backing directory at once and records its undo first: original
//! bytes and synced lengths per file ([`data`]), directory-entry changes per directory ([`namespace`]).
//! Unlinked and replaced inodes are not deleted but moved into a hidden stash directory inside the backing
//! directory, from where a loss puts them back and a directory fsync deletes them. Nothing here knows
//! about FUSE: the FUSE layer ([`crate::fs`]) only translates requests and errors, so all of the semantics
//! are tested here on a plain temporary directory.
//!
//! The backing directory must not be changed by anyone else while mounted: several operations check and
//! then act (e.g. "does the rename target exist?"), which is only sound because every change to the
//! backing directory is made by this type under one lock.

pub(crate) mod data;
pub(crate) mod namespace;

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions, Permissions};
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::FallocateFlags;
use nix::sys::stat::{Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use tracing::{debug, info, warn};

use self::data::DataUndo;
use self::namespace::{NamespaceLog, NsOp};
use crate::inodes::{Ino, InodeTable, ROOT};
use crate::{LazyFsError, Loss, Options, Pending};

/// Name of the stash directory in the backing root; hidden from the mount.
pub(crate) const STASH: &str = ".lazyfs-stash";

/// A time to set in `setattr`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SetTime {
    Now,
    At(SystemTime),
}

/// The attribute changes of one `setattr`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct SetAttr {
    pub(crate) mode: Option<u32>,
    pub(crate) uid: Option<u32>,
    pub(crate) gid: Option<u32>,
    pub(crate) size: Option<u64>,
    pub(crate) atime: Option<SetTime>,
    pub(crate) mtime: Option<SetTime>,
}

/// One entry of a directory listing.
#[derive(Debug, Clone)]
pub(crate) struct DirEntry {
    pub(crate) ino: Ino,
    pub(crate) kind: fs::FileType,
    pub(crate) name: OsString,
}

#[derive(Debug)]
struct OpenFile {
    ino: Ino,
    file: File,
    /// Whether `file` can be read (needed to save original bytes; write-only opens fall back to the path).
    readable: bool,
    /// Opened with O_SYNC or O_DSYNC: every write is durable when it returns.
    sync_writes: bool,
}

#[derive(Debug)]
struct OpenDir {
    ino: Ino,
    /// Snapshot taken at the first readdir (and again at offset 0, as rewinddir expects), so offsets
    /// stay stable while listing.
    entries: Option<Vec<DirEntry>>,
}

/// Deterministic generator for torn-write lengths (splitmix64: tiny, and stable across versions).
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Debug)]
pub(crate) struct UndoFs {
    root: PathBuf,
    torn_writes: bool,
    rng: SplitMix64,
    inodes: InodeTable,
    /// By inode; a BTreeMap so that a loss visits files (and draws torn lengths) in a stable order.
    data: BTreeMap<Ino, DataUndo>,
    ns: NamespaceLog,
    stash_seq: u64,
    files: HashMap<u64, OpenFile>,
    dirs: HashMap<u64, OpenDir>,
    next_fh: u64,
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

fn exists(path: &Path) -> io::Result<bool> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> LazyFsError {
    let path = path.to_path_buf();
    move |source| LazyFsError::Io { op, path, source }
}

/// Deletes a file, symlink, special file or whole directory tree; a missing one is not an error.
fn remove_any(path: &Path) -> io::Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn timespec(t: SetTime) -> io::Result<TimeSpec> {
    match t {
        SetTime::Now => Ok(TimeSpec::UTIME_NOW),
        SetTime::At(t) => t.duration_since(UNIX_EPOCH).map(TimeSpec::from).map_err(|_| errno(libc::EINVAL)),
    }
}

/// Saves what `[start, end)` of file `ino` holds before it changes, starting the file's undo record if
/// it has none (recording the current length as the synced one). A file with no name left (deleted while
/// open) needs no undo: after a loss it does not exist either.
fn save_before_change(
    data: &mut BTreeMap<Ino, DataUndo>,
    ino: Ino,
    handle: Option<(&File, bool)>,
    path: Option<&Path>,
    start: u64,
    end: u64,
) -> io::Result<()> {
    let Some(path) = path else { return Ok(()) };
    let rec = match data.entry(ino) {
        std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
        std::collections::btree_map::Entry::Vacant(v) => {
            let len = match handle {
                Some((file, _)) => file.metadata()?.len(),
                None => fs::metadata(path)?.len(),
            };
            v.insert(DataUndo::new(len))
        }
    };
    if start >= end.min(rec.synced_len()) {
        return Ok(()); // appending past the synced length: nothing to save
    }
    let mut reader: Option<File> = None;
    rec.before_change(start, end, |offset, buf| match handle {
        Some((file, true)) => file.read_exact_at(buf, offset),
        _ => {
            let file = match &mut reader {
                Some(file) => file,
                None => reader.insert(File::open(path)?),
            };
            file.read_exact_at(buf, offset)
        }
    })
}

impl UndoFs {
    /// Takes `root` as it is now as the durable state. A stash left behind by an earlier run (a crashed
    /// harness) held only deleted entries, so it is emptied.
    pub(crate) fn new(root: &Path, options: &Options) -> Result<Self, LazyFsError> {
        let root = root.canonicalize().map_err(io_err("resolve backing directory", root))?;
        let md = fs::metadata(&root).map_err(io_err("stat backing directory", &root))?;
        if !md.is_dir() {
            return Err(LazyFsError::NotADirectory { what: "backing directory", path: root });
        }
        let stash = root.join(STASH);
        if exists(&stash).map_err(io_err("stat stash", &stash))? {
            warn!(path = %stash.display(), "emptying a stash left behind by an earlier run");
            fs::remove_dir_all(&stash).map_err(io_err("empty stale stash", &stash))?;
        }
        fs::create_dir(&stash).map_err(io_err("create stash", &stash))?;
        Ok(UndoFs {
            inodes: InodeTable::new(&md),
            root,
            torn_writes: options.torn_writes,
            rng: SplitMix64(options.seed),
            data: BTreeMap::new(),
            ns: NamespaceLog::default(),
            stash_seq: 0,
            files: HashMap::new(),
            dirs: HashMap::new(),
            next_fh: 1,
        })
    }

    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn rel_of(&self, ino: Ino) -> io::Result<PathBuf> {
        self.inodes.path(ino).map(Path::to_path_buf).ok_or_else(|| errno(libc::ENOENT))
    }

    /// Path of an existing entry `name` in `parent`. The stash does not exist as far as the mount knows.
    fn existing_child(&self, parent: Ino, name: &OsStr) -> io::Result<PathBuf> {
        if parent == ROOT && name == STASH {
            return Err(errno(libc::ENOENT));
        }
        Ok(self.rel_of(parent)?.join(name))
    }

    /// Path for a new entry `name` in `parent`; the stash's name is reserved.
    fn new_child(&self, parent: Ino, name: &OsStr) -> io::Result<PathBuf> {
        if parent == ROOT && name == STASH {
            return Err(errno(libc::EPERM));
        }
        Ok(self.rel_of(parent)?.join(name))
    }

    fn alloc_fh(&mut self) -> u64 {
        let fh = self.next_fh;
        self.next_fh += 1;
        fh
    }

    fn next_stash_name(&mut self) -> OsString {
        self.stash_seq += 1;
        OsString::from(self.stash_seq.to_string())
    }

    fn stash_rel(name: &OsStr) -> PathBuf {
        Path::new(STASH).join(name)
    }

    /// Stats a new or looked-up entry, binds it in the inode table and counts the kernel's reference.
    fn entry(&mut self, rel: &Path) -> io::Result<(Ino, Metadata)> {
        let md = fs::symlink_metadata(self.abs(rel))?;
        let ino = self.inodes.bind(rel, &md);
        self.inodes.add_lookup(ino);
        Ok((ino, md))
    }

    /// Forgets a name deleted for good (and everything below it), the undo records of inodes left
    /// without a name, and the changes inside directories that are gone, deleting the stash entries
    /// those changes kept (which can free more directories, hence the work list).
    fn forget_path(&mut self, rel: &Path) -> io::Result<()> {
        let mut gone = vec![rel.to_path_buf()];
        while let Some(rel) = gone.pop() {
            for ino in self.inodes.remove(&rel) {
                self.data.remove(&ino);
                for op in self.ns.drop_dir(ino) {
                    if let Some(stash) = op.stash() {
                        let stash_rel = Self::stash_rel(stash);
                        remove_any(&self.abs(&stash_rel))?;
                        gone.push(stash_rel);
                    }
                }
            }
        }
        Ok(())
    }

    // ----- lookups and attributes -----

    pub(crate) fn lookup(&mut self, parent: Ino, name: &OsStr) -> io::Result<(Ino, Metadata)> {
        let rel = self.existing_child(parent, name)?;
        self.entry(&rel)
    }

    pub(crate) fn forget(&mut self, ino: Ino, n: u64) {
        self.inodes.forget(ino, n);
        if !self.inodes.contains(ino) {
            self.data.remove(&ino);
        }
    }

    pub(crate) fn getattr(&self, ino: Ino, fh: Option<u64>) -> io::Result<Metadata> {
        // Through the handle if there is one: that works for files unlinked while open.
        if let Some(h) = fh.and_then(|fh| self.files.get(&fh)).filter(|h| h.ino == ino) {
            return h.file.metadata();
        }
        fs::symlink_metadata(self.abs(&self.rel_of(ino)?))
    }

    /// The link count the mount should report: stash entries are not names as far as the mount knows.
    pub(crate) fn visible_nlink(&self, ino: Ino, md: &Metadata) -> u64 {
        let stashed = self.inodes.paths(ino).iter().filter(|p| p.starts_with(STASH)).count() as u64;
        md.nlink().saturating_sub(stashed)
    }

    pub(crate) fn setattr(&mut self, ino: Ino, fh: Option<u64>, attr: SetAttr) -> io::Result<Metadata> {
        let fh = fh.filter(|fh| self.files.get(fh).is_some_and(|h| h.ino == ino));
        let path = self.inodes.path(ino).map(|p| self.abs(p));
        let handle = fh.and_then(|fh| self.files.get(&fh)).map(|h| &h.file);
        let need_path = || path.clone().ok_or_else(|| errno(libc::ENOENT));
        if let Some(mode) = attr.mode {
            let perm = Permissions::from_mode(mode & 0o7777);
            match handle {
                Some(file) => file.set_permissions(perm)?,
                None => fs::set_permissions(need_path()?, perm)?,
            }
        }
        if attr.uid.is_some() || attr.gid.is_some() {
            match handle {
                Some(file) => std::os::unix::fs::fchown(file, attr.uid, attr.gid)?,
                None => std::os::unix::fs::lchown(need_path()?, attr.uid, attr.gid)?,
            }
        }
        if let Some(size) = attr.size {
            self.set_len(ino, fh, size)?;
        }
        if attr.atime.is_some() || attr.mtime.is_some() {
            let atime = attr.atime.map_or(Ok(TimeSpec::UTIME_OMIT), timespec)?;
            let mtime = attr.mtime.map_or(Ok(TimeSpec::UTIME_OMIT), timespec)?;
            let handle = fh.and_then(|fh| self.files.get(&fh)).map(|h| &h.file);
            match handle {
                Some(file) => nix::sys::stat::futimens(file, &atime, &mtime)?,
                None => nix::sys::stat::utimensat(
                    nix::fcntl::AT_FDCWD,
                    &need_path()?,
                    &atime,
                    &mtime,
                    UtimensatFlags::NoFollowSymlink,
                )?,
            }
        }
        self.getattr(ino, fh)
    }

    /// Truncates or extends file `ino`, recording the cut bytes that lay within its synced length.
    fn set_len(&mut self, ino: Ino, fh: Option<u64>, size: u64) -> io::Result<()> {
        let path = self.inodes.path(ino).map(|p| self.abs(p));
        let owned;
        let (file, readable) = match fh.and_then(|fh| self.files.get(&fh)) {
            Some(h) => (&h.file, h.readable),
            None => {
                let path = path.as_deref().ok_or_else(|| errno(libc::ENOENT))?;
                owned = OpenOptions::new().write(true).open(path)?;
                (&owned, false)
            }
        };
        let len = file.metadata()?.len();
        if size < len {
            save_before_change(&mut self.data, ino, Some((file, readable)), path.as_deref(), size, len)?;
        } else {
            // Extending changes no existing byte, but the record must exist to know the synced length.
            save_before_change(&mut self.data, ino, Some((file, readable)), path.as_deref(), len, len)?;
        }
        file.set_len(size)?;
        if let Some(rec) = self.data.get_mut(&ino) {
            rec.after_set_len(size);
        }
        Ok(())
    }

    pub(crate) fn readlink(&self, ino: Ino) -> io::Result<PathBuf> {
        fs::read_link(self.abs(&self.rel_of(ino)?))
    }

    pub(crate) fn access(&self, ino: Ino, mask: i32) -> io::Result<()> {
        let path = self.abs(&self.rel_of(ino)?);
        Ok(nix::unistd::access(&path, nix::unistd::AccessFlags::from_bits_truncate(mask))?)
    }

    pub(crate) fn statfs(&self) -> io::Result<nix::sys::statvfs::Statvfs> {
        Ok(nix::sys::statvfs::statvfs(&self.root)?)
    }

    // ----- creating entries -----

    /// Records a creation and returns the entry. Modes get our umask applied by the backing syscalls;
    /// the kernel already applied the caller's umask, so the mode is set again exactly.
    fn created(&mut self, parent: Ino, name: &OsStr, rel: &Path, mode: Option<u32>) -> io::Result<(Ino, Metadata)> {
        let (ino, mut md) = self.entry(rel)?;
        // Recorded before anything else can fail, so that a loss removes what exists.
        self.ns.push(NsOp::Created { parent, name: name.to_os_string(), ino });
        debug!(path = %rel.display(), ino, "created");
        if let Some(mode) = mode
            && md.mode() & 0o7777 != mode & 0o7777
        {
            fs::set_permissions(self.abs(rel), Permissions::from_mode(mode & 0o7777))?;
            md = fs::symlink_metadata(self.abs(rel))?;
        }
        Ok((ino, md))
    }

    pub(crate) fn mknod(&mut self, parent: Ino, name: &OsStr, mode: u32, rdev: u32) -> io::Result<(Ino, Metadata)> {
        let rel = self.new_child(parent, name)?;
        let abs = self.abs(&rel);
        let kind = SFlag::from_bits_truncate(mode & libc::S_IFMT);
        if kind == SFlag::S_IFREG || kind.is_empty() {
            OpenOptions::new().write(true).create_new(true).mode(mode & 0o7777).open(&abs)?;
        } else {
            nix::sys::stat::mknod(&abs, kind, Mode::from_bits_truncate(mode & 0o7777), u64::from(rdev))?;
        }
        self.created(parent, name, &rel, Some(mode))
    }

    pub(crate) fn mkdir(&mut self, parent: Ino, name: &OsStr, mode: u32) -> io::Result<(Ino, Metadata)> {
        let rel = self.new_child(parent, name)?;
        DirBuilder::new().mode(mode & 0o7777).create(self.abs(&rel))?;
        self.created(parent, name, &rel, Some(mode))
    }

    pub(crate) fn symlink(&mut self, parent: Ino, name: &OsStr, target: &Path) -> io::Result<(Ino, Metadata)> {
        let rel = self.new_child(parent, name)?;
        std::os::unix::fs::symlink(target, self.abs(&rel))?;
        self.created(parent, name, &rel, None)
    }

    pub(crate) fn link(&mut self, ino: Ino, newparent: Ino, newname: &OsStr) -> io::Result<(Ino, Metadata)> {
        let rel = self.new_child(newparent, newname)?;
        // A name outside the stash: linking an inode that has been unlinked is not possible in POSIX.
        let src = self.inodes.paths(ino).iter().find(|p| !p.starts_with(STASH)).cloned();
        let src = src.ok_or_else(|| errno(libc::ENOENT))?;
        fs::hard_link(self.abs(&src), self.abs(&rel))?;
        self.inodes.add_path(ino, &rel);
        self.created(newparent, newname, &rel, None)
    }

    /// Creates and opens a regular file (open with O_CREAT of a name that does not exist).
    pub(crate) fn create(
        &mut self,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        flags: i32,
    ) -> io::Result<(Ino, Metadata, u64)> {
        let rel = self.new_child(parent, name)?;
        // Read-write whatever the caller asked: the kernel enforces its access mode, and we need to read
        // the file to save original bytes.
        let opened =
            OpenOptions::new().read(true).write(true).create_new(true).mode(mode & 0o7777).open(self.abs(&rel));
        match opened {
            Ok(file) => {
                let (ino, md) = self.created(parent, name, &rel, Some(mode))?;
                let fh = self.alloc_fh();
                let sync_writes = flags & libc::O_DSYNC != 0;
                self.files.insert(fh, OpenFile { ino, file, readable: true, sync_writes });
                Ok((ino, md, fh))
            }
            // The kernel only sends CREATE after a failed lookup, but if the name exists after all,
            // behave like open(2): fail for O_EXCL, otherwise open what is there.
            Err(e) if e.kind() == ErrorKind::AlreadyExists && flags & libc::O_EXCL == 0 => {
                let (ino, md) = self.entry(&rel)?;
                let fh = self.open(ino, flags)?;
                Ok((ino, md, fh))
            }
            Err(e) => Err(e),
        }
    }

    // ----- removing and renaming entries -----

    /// Moves `rel` (named `name` in `parent`) into the stash instead of deleting it.
    fn stash_away(&mut self, parent: Ino, name: &OsStr, rel: &Path, md: &Metadata) -> io::Result<()> {
        let ino = self.inodes.bind(rel, md);
        let stash = self.next_stash_name();
        let stash_rel = Self::stash_rel(&stash);
        fs::rename(self.abs(rel), self.abs(&stash_rel))?;
        self.inodes.rename(rel, &stash_rel);
        self.ns.push(NsOp::Unlinked { parent, name: name.to_os_string(), ino, stash });
        debug!(path = %rel.display(), ino, "unlinked into stash");
        Ok(())
    }

    pub(crate) fn unlink(&mut self, parent: Ino, name: &OsStr) -> io::Result<()> {
        let rel = self.existing_child(parent, name)?;
        let md = fs::symlink_metadata(self.abs(&rel))?;
        if md.is_dir() {
            return Err(errno(libc::EISDIR));
        }
        self.stash_away(parent, name, &rel, &md)
    }

    pub(crate) fn rmdir(&mut self, parent: Ino, name: &OsStr) -> io::Result<()> {
        let rel = self.existing_child(parent, name)?;
        let abs = self.abs(&rel);
        let md = fs::symlink_metadata(&abs)?;
        if !md.is_dir() {
            return Err(errno(libc::ENOTDIR));
        }
        // rename(2) would move a non-empty directory; rmdir(2) must refuse it.
        if fs::read_dir(&abs)?.next().is_some() {
            return Err(errno(libc::ENOTEMPTY));
        }
        self.stash_away(parent, name, &rel, &md)
    }

    /// rename(2), with RENAME_NOREPLACE if `noreplace`. A replaced target is kept in the stash: a file by
    /// a hard link made before the rename (so the rename itself stays atomic), an (empty) directory by
    /// moving it there first.
    pub(crate) fn rename(
        &mut self,
        parent: Ino,
        name: &OsStr,
        newparent: Ino,
        newname: &OsStr,
        noreplace: bool,
    ) -> io::Result<()> {
        let from = self.existing_child(parent, name)?;
        let to = self.new_child(newparent, newname)?;
        let (from_abs, to_abs) = (self.abs(&from), self.abs(&to));
        let from_md = fs::symlink_metadata(&from_abs)?;
        let ino = self.inodes.bind(&from, &from_md);
        let replaced = match fs::symlink_metadata(&to_abs) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                fs::rename(&from_abs, &to_abs)?;
                None
            }
            Err(e) => return Err(e),
            Ok(_) if noreplace => return Err(errno(libc::EEXIST)),
            Ok(to_md) if (to_md.dev(), to_md.ino()) == (from_md.dev(), from_md.ino()) => {
                // Two names of one inode: rename(2) does nothing and succeeds.
                return Ok(());
            }
            Ok(to_md) => {
                // Refuse what rename(2) would refuse before touching the stash.
                match (from_md.is_dir(), to_md.is_dir()) {
                    (true, false) => return Err(errno(libc::ENOTDIR)),
                    (false, true) => return Err(errno(libc::EISDIR)),
                    (true, true) if fs::read_dir(&to_abs)?.next().is_some() => return Err(errno(libc::ENOTEMPTY)),
                    _ => {}
                }
                let target = self.inodes.bind(&to, &to_md);
                let stash = self.next_stash_name();
                let stash_rel = Self::stash_rel(&stash);
                let stash_abs = self.abs(&stash_rel);
                if to_md.is_dir() {
                    fs::rename(&to_abs, &stash_abs)?;
                    if let Err(e) = fs::rename(&from_abs, &to_abs) {
                        fs::rename(&stash_abs, &to_abs)?;
                        return Err(e);
                    }
                    self.inodes.rename(&to, &stash_rel);
                } else {
                    fs::hard_link(&to_abs, &stash_abs)?;
                    if let Err(e) = fs::rename(&from_abs, &to_abs) {
                        fs::remove_file(&stash_abs)?;
                        return Err(e);
                    }
                    self.inodes.add_path(target, &stash_rel);
                }
                Some(stash)
            }
        };
        // Drops `to`'s old name from the replaced inode (it now lives on only in the stash).
        self.inodes.rename(&from, &to);
        self.ns.push(NsOp::Renamed {
            from: (parent, name.to_os_string()),
            to: (newparent, newname.to_os_string()),
            ino,
            replaced,
        });
        debug!(from = %from.display(), to = %to.display(), ino, "renamed");
        Ok(())
    }

    // ----- file I/O -----

    pub(crate) fn open(&mut self, ino: Ino, flags: i32) -> io::Result<u64> {
        let path = self.abs(&self.rel_of(ino)?);
        let acc = flags & libc::O_ACCMODE;
        let write = acc == libc::O_WRONLY || acc == libc::O_RDWR;
        // Not passed on: O_APPEND (the kernel computes append offsets, and pwrite on an O_APPEND fd would
        // ignore them), O_DIRECT (our buffers are not aligned), O_SYNC/O_DSYNC (durability is ours to
        // emulate), O_TRUNC (done below, recorded).
        let (file, readable) = if write {
            match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => (file, true),
                // Write-only access to a file we may not read: original bytes are then read by path.
                Err(e) if e.kind() == ErrorKind::PermissionDenied && acc == libc::O_WRONLY => {
                    (OpenOptions::new().write(true).open(&path)?, false)
                }
                Err(e) => return Err(e),
            }
        } else {
            (File::open(&path)?, true)
        };
        let fh = self.alloc_fh();
        let sync_writes = flags & libc::O_DSYNC != 0;
        self.files.insert(fh, OpenFile { ino, file, readable, sync_writes });
        if write && flags & libc::O_TRUNC != 0 {
            self.set_len(ino, Some(fh), 0)?;
        }
        Ok(fh)
    }

    pub(crate) fn read(&self, fh: u64, offset: u64, size: u32) -> io::Result<Vec<u8>> {
        let h = self.files.get(&fh).ok_or_else(|| errno(libc::EBADF))?;
        let mut buf = vec![0; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match h.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    pub(crate) fn write(&mut self, fh: u64, offset: u64, bytes: &[u8]) -> io::Result<usize> {
        let h = self.files.get(&fh).ok_or_else(|| errno(libc::EBADF))?;
        let path = self.inodes.path(h.ino).map(|p| self.root.join(p));
        let end = offset.saturating_add(bytes.len() as u64);
        save_before_change(&mut self.data, h.ino, Some((&h.file, h.readable)), path.as_deref(), offset, end)?;
        h.file.write_all_at(bytes, offset)?;
        if h.sync_writes {
            self.data.remove(&h.ino);
        } else if let Some(rec) = self.data.get_mut(&h.ino) {
            rec.after_write(offset, bytes.len() as u64);
        }
        Ok(bytes.len())
    }

    /// fallocate(2). Allocation (mode 0 or KEEP_SIZE) changes at most the length; PUNCH_HOLE and
    /// ZERO_RANGE change bytes, which are saved first. Other modes shift data and are refused.
    pub(crate) fn fallocate(&mut self, fh: u64, offset: u64, len: u64, mode: i32) -> io::Result<()> {
        let flags = FallocateFlags::from_bits(mode).ok_or_else(|| errno(libc::EOPNOTSUPP))?;
        let changes_data = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_ZERO_RANGE;
        let allowed = changes_data | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        if !allowed.contains(flags) {
            return Err(errno(libc::EOPNOTSUPP));
        }
        let h = self.files.get(&fh).ok_or_else(|| errno(libc::EBADF))?;
        let path = self.inodes.path(h.ino).map(|p| self.root.join(p));
        let (start, end) = if flags.intersects(changes_data) { (offset, offset.saturating_add(len)) } else { (0, 0) };
        save_before_change(&mut self.data, h.ino, Some((&h.file, h.readable)), path.as_deref(), start, end)?;
        let to_off = |v: u64| libc::off_t::try_from(v).map_err(|_| errno(libc::EFBIG));
        nix::fcntl::fallocate(&h.file, flags, to_off(offset)?, to_off(len)?)?;
        let new_len = h.file.metadata()?.len();
        if let Some(rec) = self.data.get_mut(&h.ino) {
            rec.after_set_len(new_len);
        }
        Ok(())
    }

    /// lseek(2) for SEEK_DATA and SEEK_HOLE (the kernel handles the others itself).
    pub(crate) fn lseek(&self, fh: u64, offset: i64, whence: i32) -> io::Result<i64> {
        use nix::unistd::Whence;
        let h = self.files.get(&fh).ok_or_else(|| errno(libc::EBADF))?;
        let whence = match whence {
            libc::SEEK_SET => Whence::SeekSet,
            libc::SEEK_CUR => Whence::SeekCur,
            libc::SEEK_END => Whence::SeekEnd,
            libc::SEEK_DATA => Whence::SeekData,
            libc::SEEK_HOLE => Whence::SeekHole,
            _ => return Err(errno(libc::EINVAL)),
        };
        Ok(nix::unistd::lseek(&h.file, offset, whence)?)
    }

    pub(crate) fn release(&mut self, fh: u64) {
        self.files.remove(&fh);
    }

    /// fsync/fdatasync of a file: its data and length are durable. (Its name is not: that takes an
    /// fsync of its directory.)
    pub(crate) fn fsync(&mut self, ino: Ino) {
        if let Some(rec) = self.data.remove(&ino) {
            debug!(ino, bytes = rec.unsynced_bytes(), "fsync: data durable");
        }
    }

    // ----- directories -----

    pub(crate) fn opendir(&mut self, ino: Ino) -> io::Result<u64> {
        let path = self.abs(&self.rel_of(ino)?);
        drop(fs::read_dir(path)?); // fail now (ENOTDIR, EACCES, ...) rather than at readdir
        let fh = self.alloc_fh();
        self.dirs.insert(fh, OpenDir { ino, entries: None });
        Ok(fh)
    }

    /// The entries of directory handle `fh` from `offset` on (offset i is entry i).
    pub(crate) fn readdir(&mut self, fh: u64, offset: u64) -> io::Result<&[DirEntry]> {
        let d = self.dirs.get(&fh).ok_or_else(|| errno(libc::EBADF))?;
        if offset == 0 || d.entries.is_none() {
            let entries = self.list(d.ino)?;
            if let Some(d) = self.dirs.get_mut(&fh) {
                d.entries = Some(entries);
            }
        }
        let entries = self.dirs.get(&fh).and_then(|d| d.entries.as_deref()).unwrap_or_default();
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(entries.len());
        Ok(&entries[start..])
    }

    fn list(&mut self, ino: Ino) -> io::Result<Vec<DirEntry>> {
        let rel = self.rel_of(ino)?;
        let abs = self.abs(&rel);
        let dir_type = fs::symlink_metadata(&abs)?.file_type();
        let parent_ino = rel.parent().and_then(|p| self.inodes.ino_at(p)).unwrap_or(ROOT);
        let mut entries = vec![
            DirEntry { ino, kind: dir_type, name: ".".into() },
            DirEntry { ino: parent_ino, kind: dir_type, name: "..".into() },
        ];
        for entry in fs::read_dir(&abs)? {
            let entry = entry?;
            let name = entry.file_name();
            if ino == ROOT && name == STASH {
                continue;
            }
            let child = rel.join(&name);
            let child_ino = match self.inodes.ino_at(&child) {
                Some(i) => i,
                None => match fs::symlink_metadata(entry.path()) {
                    Ok(md) => self.inodes.bind(&child, &md),
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                },
            };
            let kind = entry.file_type()?;
            entries.push(DirEntry { ino: child_ino, kind, name });
        }
        Ok(entries)
    }

    pub(crate) fn releasedir(&mut self, fh: u64) {
        self.dirs.remove(&fh);
    }

    /// fsync of a directory: the creations, renames and unlinks in it are durable; the stash entries of
    /// unlinks and replacing renames that became fully durable are deleted for good.
    pub(crate) fn fsyncdir(&mut self, ino: Ino) -> io::Result<()> {
        let durable = self.ns.fsync_dir(ino);
        debug!(ino, entries = durable.len(), "fsyncdir: entries durable");
        for op in durable {
            if let Some(stash) = op.stash() {
                let rel = Self::stash_rel(stash);
                remove_any(&self.abs(&rel))?;
                self.forget_path(&rel)?;
            }
        }
        Ok(())
    }

    pub(crate) fn open_handles(&self) -> usize {
        self.files.len() + self.dirs.len()
    }

    // ----- power loss -----

    /// What is not durable now.
    pub(crate) fn pending(&self) -> Pending {
        let live = self.data.iter().filter(|(ino, rec)| rec.is_dirty() && self.inodes.path(**ino).is_some());
        let (dirty_files, unsynced_bytes) = live.fold((0, 0), |(n, b), (_, rec)| (n + 1, b + rec.unsynced_bytes()));
        Pending { dirty_files, unsynced_bytes, unsynced_entries: self.ns.len() as u64 }
    }

    /// Undoes everything not durable, as a power failure would: namespace changes newest first, then
    /// the data of every file still there. Afterwards the state is the new durable baseline.
    pub(crate) fn lose(&mut self) -> Result<Loss, LazyFsError> {
        let mut loss = Loss::default();
        for op in self.ns.drain_newest_first() {
            self.undo_ns(op, &mut loss)?;
        }
        let records = std::mem::take(&mut self.data);
        for (ino, rec) in records {
            let Some(rel) = self.inodes.path(ino) else { continue };
            let path = self.abs(rel);
            let file =
                OpenOptions::new().read(true).write(true).open(&path).map_err(io_err("open for rollback", &path))?;
            let rng = &mut self.rng;
            let mut draw = |n: u64| rng.next() % n;
            let torn: Option<&mut dyn FnMut(u64) -> u64> = if self.torn_writes { Some(&mut draw) } else { None };
            let rollback = rec.restore(&file, torn).map_err(io_err("roll back data of", &path))?;
            if rollback.changed {
                loss.files_rolled_back += 1;
                loss.bytes_discarded += rollback.bytes_discarded;
            }
            loss.torn_writes += u64::from(rollback.torn);
        }
        self.empty_stash()?;
        info!(?loss, "lost unsynced changes");
        Ok(loss)
    }

    fn undo_ns(&mut self, op: NsOp, loss: &mut Loss) -> Result<(), LazyFsError> {
        match op {
            NsOp::Created { parent, name, ino } => {
                let Some(rel) = self.child_at_undo(parent, &name, "creation") else { return Ok(()) };
                if self.inodes.ino_at(&rel) != Some(ino) {
                    warn!(path = %rel.display(), "not undoing creation: the name now holds another inode");
                    return Ok(());
                }
                let path = self.abs(&rel);
                remove_any(&path).map_err(io_err("remove unsynced creation", &path))?;
                self.forget_path(&rel).map_err(io_err("forget removed creation", &path))?;
                loss.files_removed += 1;
            }
            NsOp::Renamed { from, to, ino, replaced } => {
                let (Some(from_rel), Some(to_rel)) =
                    (self.child_at_undo(from.0, &from.1, "rename"), self.child_at_undo(to.0, &to.1, "rename"))
                else {
                    return Ok(());
                };
                let (from_abs, to_abs) = (self.abs(&from_rel), self.abs(&to_rel));
                if self.inodes.ino_at(&to_rel) != Some(ino) || exists(&from_abs).unwrap_or(true) {
                    warn!(from = %from_rel.display(), to = %to_rel.display(), "not undoing rename: names changed since");
                    return Ok(());
                }
                fs::rename(&to_abs, &from_abs).map_err(io_err("undo rename to", &to_abs))?;
                self.inodes.rename(&to_rel, &from_rel);
                if let Some(stash) = replaced {
                    let stash_rel = Self::stash_rel(&stash);
                    let stash_abs = self.abs(&stash_rel);
                    fs::rename(&stash_abs, &to_abs).map_err(io_err("restore replaced target from", &stash_abs))?;
                    self.inodes.rename(&stash_rel, &to_rel);
                }
                loss.renames_undone += 1;
            }
            NsOp::Unlinked { parent, name, ino: _, stash } => {
                let Some(rel) = self.child_at_undo(parent, &name, "unlink") else { return Ok(()) };
                let path = self.abs(&rel);
                if exists(&path).unwrap_or(true) {
                    warn!(path = %rel.display(), "not undoing unlink: the name is taken");
                    return Ok(());
                }
                let stash_rel = Self::stash_rel(&stash);
                let stash_abs = self.abs(&stash_rel);
                fs::rename(&stash_abs, &path).map_err(io_err("restore unlinked entry from", &stash_abs))?;
                self.inodes.rename(&stash_rel, &rel);
                loss.unlinks_undone += 1;
            }
        }
        Ok(())
    }

    /// Where `name` in `parent` is now, if `parent` still exists. It may not: its own removal can have
    /// been made durable (and the directory deleted) while changes inside it were not.
    fn child_at_undo(&self, parent: Ino, name: &OsStr, what: &str) -> Option<PathBuf> {
        let path = self.inodes.path(parent).map(|p| p.join(name));
        if path.is_none() {
            warn!(name = %name.to_string_lossy(), what, "not undoing: its directory no longer exists");
        }
        path
    }

    /// Deletes whatever is left in the stash (after a loss: entries whose undo was skipped).
    fn empty_stash(&mut self) -> Result<(), LazyFsError> {
        let stash = self.abs(Path::new(STASH));
        for entry in fs::read_dir(&stash).map_err(io_err("list stash", &stash))? {
            let entry = entry.map_err(io_err("list stash", &stash))?;
            warn!(name = %entry.file_name().to_string_lossy(), "deleting leftover stash entry");
            remove_any(&entry.path()).map_err(io_err("delete stash entry", &entry.path()))?;
            self.forget_path(&Path::new(STASH).join(entry.file_name()))
                .map_err(io_err("forget stash entry", &entry.path()))?;
        }
        Ok(())
    }

    /// A clean shutdown: everything is durable. Deletes the stash so the backing directory is left
    /// as the mount showed it.
    pub(crate) fn settle(&mut self) -> Result<(), LazyFsError> {
        self.ns.drain_newest_first();
        self.data.clear();
        let stash = self.abs(Path::new(STASH));
        fs::remove_dir_all(&stash).map_err(io_err("delete stash", &stash))
    }
}

#[cfg(test)]
mod tests;

//! Mounting, losing, unmounting.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use nix::mount::{MntFlags, umount2};
use tracing::{error, info, warn};

use crate::fs::{LazyFs, lock};
use crate::undo::UndoFs;
use crate::{LazyFsError, Loss, Options, Pending};

/// How long [`Mount::lose_unsynced`] waits for open handles to be released. The kernel sends the
/// RELEASE of a killed process's files asynchronously, a moment after the process is gone.
const RELEASE_GRACE: Duration = Duration::from_secs(2);

/// The filesystem name every lazyfs mount carries (shown by `mount`).
pub const FS_NAME: &str = "capukv-lazyfs";

/// A mounted lazyfs. Unmounts when dropped.
#[derive(Debug)]
pub struct Mount {
    state: Arc<Mutex<UndoFs>>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

// The harness may share a mount between threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Mount>();
};

impl Mount {
    /// Mounts a passthrough of `backing` (an existing directory) at `mountpoint` (an existing empty
    /// directory). The filesystem runs on a background thread of this process.
    ///
    /// The backing directory as it is now is taken as durable. Nothing else may change it while it is
    /// mounted, and neither directory may contain the other.
    ///
    /// # Errors
    ///
    /// [`LazyFsError::NotADirectory`], [`LazyFsError::MountpointNotEmpty`] or [`LazyFsError::Overlap`] for
    /// bad arguments, [`LazyFsError::Io`] if the mount point cannot be listed (a stale mount: see
    /// [`force_unmount`]) or the stash cannot be made, [`LazyFsError::Mount`] if FUSE refuses.
    #[expect(clippy::self_named_constructors, reason = "the harness's API names it Mount::mount")]
    pub fn mount(backing: &Path, mountpoint: &Path, options: Options) -> Result<Mount, LazyFsError> {
        check_dir("mount point", mountpoint)?;
        check_dir("backing directory", backing)?;
        let mut entries = fs::read_dir(mountpoint).map_err(|source| LazyFsError::Io {
            op: "list mount point",
            path: mountpoint.to_path_buf(),
            source,
        })?;
        if entries.next().is_some() {
            return Err(LazyFsError::MountpointNotEmpty { path: mountpoint.to_path_buf() });
        }
        let canonical = |p: &Path| {
            p.canonicalize().map_err(|source| LazyFsError::Io { op: "resolve", path: p.to_path_buf(), source })
        };
        let (backing_abs, mountpoint_abs) = (canonical(backing)?, canonical(mountpoint)?);
        // Either inside the other would make our own backing I/O go through the mount, which this one
        // thread serves: a deadlock.
        if mountpoint_abs.starts_with(&backing_abs) || backing_abs.starts_with(&mountpoint_abs) {
            return Err(LazyFsError::Overlap { backing: backing_abs, mountpoint: mountpoint_abs });
        }

        let state = Arc::new(Mutex::new(UndoFs::new(&backing_abs, &options)?));
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(FS_NAME.to_string()),
            MountOption::Subtype("lazyfs".to_string()),
            // The kernel checks permissions from our attributes; `access` is then never called.
            MountOption::DefaultPermissions,
        ];
        // Only the mounting user (root, in the harness) may use the mount: no allow_other needed. That
        // also rules out AutoUnmount (fusermount3 requires allow_other for it); `force_unmount` is the
        // cleanup for a crashed process instead.
        config.acl = SessionACL::Owner;
        // One thread: requests are serialized by the state lock anyway.
        config.n_threads = Some(1);
        let session = fuser::spawn_mount(LazyFs::new(Arc::clone(&state)), &mountpoint_abs, &config)
            .map_err(|source| LazyFsError::Mount { path: mountpoint_abs.clone(), source })?;
        info!(backing = %backing_abs.display(), mountpoint = %mountpoint_abs.display(), ?options, "lazyfs mounted");
        Ok(Mount { state, session: Some(session), mountpoint: mountpoint_abs })
    }

    /// Forgets everything not made durable, as a power failure would. Call only while no process has files
    /// open on the mount (the harness SIGKILLs the server first). Returns what was lost.
    ///
    /// Waits up to two seconds for the handles of killed processes to be released, then fails with
    /// [`LazyFsError::Busy`] rather than pull data from under a live process.
    ///
    /// # Errors
    ///
    /// [`LazyFsError::Busy`] as above; [`LazyFsError::Io`] if undoing a change in the backing directory
    /// fails (the loss is then partly done: treat the run as broken).
    pub fn lose_unsynced(&self) -> Result<Loss, LazyFsError> {
        let deadline = Instant::now() + RELEASE_GRACE;
        loop {
            let mut state = lock(&self.state);
            let open = state.open_handles();
            if open == 0 {
                return state.lose();
            }
            if Instant::now() >= deadline {
                return Err(LazyFsError::Busy { path: self.mountpoint.clone(), open });
            }
            drop(state); // let the session thread process the releases
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// What is not durable now.
    #[must_use]
    pub fn pending(&self) -> Pending {
        lock(&self.state).pending()
    }

    /// The mount point (absolute).
    #[must_use]
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts (also on drop; errors then are logged). A clean unmount makes everything durable: the
    /// backing directory is left as the mount showed it. If the mount is busy it is detached lazily (it
    /// goes away when its last user closes it) and the pending changes are kept as they are.
    ///
    /// # Errors
    ///
    /// [`LazyFsError::Unmount`] if even the lazy unmount fails, [`LazyFsError::Io`] if the stash cannot
    /// be deleted.
    pub fn unmount(mut self) -> Result<(), LazyFsError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), LazyFsError> {
        let Some(session) = self.session.take() else { return Ok(()) };
        if let Err(reason) = fusermount(&["-u"], &self.mountpoint) {
            warn!(mountpoint = %self.mountpoint.display(), %reason, "unmount failed; detaching lazily");
            fusermount(&["-u", "-z"], &self.mountpoint).map_err(|lazy| LazyFsError::Unmount {
                path: self.mountpoint.clone(),
                reason: format!("{reason}; lazy unmount: {lazy}"),
            })?;
            // Not joined: the detached filesystem still serves its users until they close it, and the
            // session thread ends by itself after that.
            drop(session);
            return Ok(());
        }
        // The kernel has closed the connection, so the session loop ends now.
        session.join().map_err(|e| LazyFsError::Unmount {
            path: self.mountpoint.clone(),
            reason: format!("filesystem thread: {e}"),
        })?;
        lock(&self.state).settle()?;
        info!(mountpoint = %self.mountpoint.display(), "lazyfs unmounted");
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            error!(error = %e, "unmounting lazyfs on drop failed");
        }
    }
}

/// Unmounts a mount a crashed process left behind (fusermount3 -u, lazily if busy). Nothing mounted
/// there is not an error.
///
/// # Errors
///
/// [`LazyFsError::Unmount`] if fusermount3 fails both ways, [`LazyFsError::Io`] if the mount point's
/// parent cannot be resolved or /proc/self/mountinfo read.
pub fn force_unmount(mountpoint: &Path) -> Result<(), LazyFsError> {
    let path = absolute_no_follow(mountpoint).map_err(|source| LazyFsError::Io {
        op: "resolve mount point",
        path: mountpoint.to_path_buf(),
        source,
    })?;
    let mounted = is_mount_point(&path).map_err(|source| LazyFsError::Io {
        op: "read /proc/self/mountinfo for",
        path: path.clone(),
        source,
    })?;
    if !mounted {
        return Ok(());
    }
    if let Err(reason) = fusermount(&["-u"], &path) {
        warn!(mountpoint = %path.display(), %reason, "unmount failed; detaching lazily");
        fusermount(&["-u", "-z"], &path)
            .map_err(|lazy| LazyFsError::Unmount { path: path.clone(), reason: format!("{reason}; lazy: {lazy}") })?;
    }
    info!(mountpoint = %path.display(), "force-unmounted");
    Ok(())
}

/// Fails unless `path` is an existing directory. A dead mount (its server was killed) fails the stat
/// with ENOTCONN, reported as such: [`force_unmount`] clears it.
fn check_dir(what: &'static str, path: &Path) -> Result<(), LazyFsError> {
    match fs::metadata(path) {
        Ok(md) if md.is_dir() => Ok(()),
        Ok(_) => Err(LazyFsError::NotADirectory { what, path: path.to_path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(LazyFsError::NotADirectory { what, path: path.to_path_buf() })
        }
        Err(source) => Err(LazyFsError::Io { op: "stat", path: path.to_path_buf(), source }),
    }
}

/// Runs `fusermount3 ARGS -- PATH`; the error is what it printed. Where fusermount3 is not installed,
/// root can still unmount with the syscall (fuser mounts with it as root, without fusermount3).
fn fusermount(args: &[&str], path: &Path) -> Result<(), String> {
    let out = match Command::new("fusermount3").args(args).arg("--").arg(path).output() {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && nix::unistd::geteuid().is_root() => {
            let flags = if args.contains(&"-z") { MntFlags::MNT_DETACH } else { MntFlags::empty() };
            return umount2(path, flags).map_err(|errno| format!("umount2 (fusermount3 not installed): {errno}"));
        }
        Err(e) => return Err(format!("run fusermount3: {e}")),
    };
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("fusermount3 {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// An absolute path for `p` without resolving `p` itself: stat of a dead FUSE mount fails (ENOTCONN),
/// so only its parent is canonicalized.
fn absolute_no_follow(p: &Path) -> std::io::Result<PathBuf> {
    let p = std::path::absolute(p)?;
    match (p.parent(), p.file_name()) {
        (Some(parent), Some(name)) => Ok(parent.canonicalize()?.join(name)),
        _ => Ok(p),
    }
}

/// Whether `path` (absolute, canonical) is a mount point, from /proc/self/mountinfo.
/// Every lazyfs mounted on this machine now (found by its filesystem name in
/// /proc/self/mountinfo), for cleaning up after a crashed process.
pub fn mounts() -> std::io::Result<Vec<PathBuf>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info
        .lines()
        .filter_map(|line| {
            // Fields: ... mount point (5th) ... " - " fstype source options.
            let (left, right) = line.split_once(" - ")?;
            let source = right.split(' ').nth(1)?;
            let mountpoint = left.split(' ').nth(4)?;
            (source == FS_NAME).then(|| PathBuf::from(unescape_mountinfo(mountpoint)))
        })
        .collect())
}

pub(crate) fn is_mount_point(path: &Path) -> std::io::Result<bool> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    Ok(info.lines().filter_map(|line| line.split(' ').nth(4)).any(|mp| Path::new(&unescape_mountinfo(mp)) == path))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(octal) = field.get(i + 1..i + 4)
            && octal.bytes().all(|b| (b'0'..=b'7').contains(&b))
            && let Ok(code) = u8::from_str_radix(octal, 8)
        {
            out.push(code);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/tmp/a\040b\134c"), r"/tmp/a b\c");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/trailing\04"), r"/trailing\04");
    }

    #[test]
    fn root_is_a_mount_point_and_a_temp_dir_is_not() {
        assert!(is_mount_point(Path::new("/")).unwrap());
        let dir = tempfile::tempdir().unwrap();
        assert!(!is_mount_point(&dir.path().canonicalize().unwrap()).unwrap());
        force_unmount(dir.path()).expect("nothing mounted is not an error");
    }
}

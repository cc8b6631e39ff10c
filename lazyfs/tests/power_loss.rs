//! Power loss through a real FUSE mount, driven with ordinary std::fs calls.
//!
//! Needs root and /dev/fuse. Without them these tests fail with the reason rather than pass silently.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use lazyfs::{LazyFsError, Loss, Mount, Options, Pending, force_unmount};

fn require_fuse() {
    if !nix::unistd::geteuid().is_root() {
        panic!("the lazyfs mount tests need root (the harness mounts as root): rerun cargo test as root");
    }
    if !Path::new("/dev/fuse").exists() {
        panic!("/dev/fuse is missing: load the fuse module (or pass --device /dev/fuse to the container)");
    }
}

/// A mount over a temporary backing directory. Dropping it unmounts (forcibly if need be) and then
/// deletes both directories, also when the test panicked half-way.
struct Guard {
    mount: Option<Mount>,
    mountpoint: PathBuf,
    backing: tempfile::TempDir,
    _mountpoint_dir: tempfile::TempDir,
}

impl Guard {
    fn new(options: Options) -> Guard {
        require_fuse();
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let backing = tempfile::tempdir().unwrap();
        let mountpoint_dir = tempfile::tempdir().unwrap();
        let mount = Mount::mount(backing.path(), mountpoint_dir.path(), options).expect("mount lazyfs");
        Guard {
            mountpoint: mount.mountpoint().to_path_buf(),
            mount: Some(mount),
            backing,
            _mountpoint_dir: mountpoint_dir,
        }
    }

    fn mount(&self) -> &Mount {
        self.mount.as_ref().unwrap()
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.mountpoint.join(rel)
    }

    fn fsync_dir(&self, rel: &str) {
        File::open(self.path(rel)).unwrap().sync_all().unwrap();
    }

    fn names(&self, rel: &str) -> Vec<String> {
        let mut names: Vec<String> =
            fs::read_dir(self.path(rel)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        names
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mount) = self.mount.take()
            && let Err(e) = mount.unmount()
        {
            eprintln!("unmount failed: {e}");
        }
        if let Err(e) = force_unmount(&self.mountpoint) {
            eprintln!("force_unmount failed: {e}");
        }
        // The TempDirs are deleted after this, now that nothing is mounted on them.
    }
}

/// Creates `path` with `content`, fsyncs it and closes it (its directory is the caller's business).
fn write_synced(path: &Path, content: &[u8]) {
    let mut f = File::create(path).unwrap();
    f.write_all(content).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn power_loss_keeps_exactly_what_was_made_durable() {
    let g = Guard::new(Options::default());

    // Durable setup: every file synced, every directory synced after its entries were made.
    let mut log = File::create(g.path("data.log")).unwrap();
    log.write_all(&[b'A'; 4096]).unwrap();
    log.sync_data().unwrap();
    fs::create_dir(g.path("synced")).unwrap();
    fs::create_dir(g.path("unsynced")).unwrap();
    write_synced(&g.path("old_name"), b"renamed content");
    write_synced(&g.path("doomed"), b"unlinked content");
    g.fsync_dir("");
    assert_eq!(g.mount().pending(), Pending::default());

    // Not durable from here on, unless synced.
    log.write_all(&[b'B'; 1000]).unwrap(); // append past the synced part
    log.write_all_at(b"ZZZZ", 10).unwrap(); // overwrite inside it
    drop(log);
    write_synced(&g.path("synced/kept"), b"kept");
    g.fsync_dir("synced");
    write_synced(&g.path("unsynced/lost"), b"lost although fsynced: its directory never was");
    fs::rename(g.path("old_name"), g.path("new_name")).unwrap();
    fs::remove_file(g.path("doomed")).unwrap();
    assert_eq!(g.names(""), ["data.log", "new_name", "synced", "unsynced"], "the stash is hidden");
    assert_eq!(g.mount().pending(), Pending { dirty_files: 1, unsynced_bytes: 1004, unsynced_entries: 3 });

    let loss = g.mount().lose_unsynced().unwrap();

    assert_eq!(
        loss,
        Loss {
            files_rolled_back: 1,
            bytes_discarded: 1004,
            files_removed: 1,
            renames_undone: 1,
            unlinks_undone: 1,
            torn_writes: 0
        }
    );
    assert_eq!(fs::read(g.path("data.log")).unwrap(), vec![b'A'; 4096]);
    assert_eq!(fs::metadata(g.path("data.log")).unwrap().len(), 4096, "no stale size from the kernel");
    assert_eq!(fs::read(g.path("synced/kept")).unwrap(), b"kept");
    assert_eq!(g.names("unsynced"), Vec::<String>::new());
    assert_eq!(fs::read(g.path("old_name")).unwrap(), b"renamed content");
    assert!(!g.path("new_name").exists());
    assert_eq!(fs::read(g.path("doomed")).unwrap(), b"unlinked content");
    assert_eq!(g.names(""), ["data.log", "doomed", "old_name", "synced", "unsynced"]);
    assert_eq!(g.mount().pending(), Pending::default());
    // The backing directory holds the same durable state.
    assert_eq!(fs::read(g.backing.path().join("data.log")).unwrap(), vec![b'A'; 4096]);
    assert_eq!(fs::read_dir(g.backing.path().join(".lazyfs-stash")).unwrap().count(), 0);

    // The mount goes on working after a loss.
    write_synced(&g.path("after"), b"still works");
    assert_eq!(fs::read(g.path("after")).unwrap(), b"still works");
}

#[test]
fn rocksdb_current_file_swap_survives_only_with_the_directory_fsync() {
    let g = Guard::new(Options::default());
    let install = |manifest: &str, fsync_dir: bool| {
        write_synced(&g.path("CURRENT.tmp"), manifest.as_bytes());
        fs::rename(g.path("CURRENT.tmp"), g.path("CURRENT")).unwrap();
        if fsync_dir {
            g.fsync_dir("");
        }
    };

    install("MANIFEST-000001\n", true);
    g.mount().lose_unsynced().unwrap();
    assert_eq!(fs::read_to_string(g.path("CURRENT")).unwrap(), "MANIFEST-000001\n");

    install("MANIFEST-000002\n", false);
    let loss = g.mount().lose_unsynced().unwrap();
    assert_eq!(fs::read_to_string(g.path("CURRENT")).unwrap(), "MANIFEST-000001\n", "rename not durable");
    assert!(!g.path("CURRENT.tmp").exists(), "nor was the creation of CURRENT.tmp");
    assert_eq!((loss.renames_undone, loss.files_removed), (1, 1));

    install("MANIFEST-000003\n", true);
    assert_eq!(g.mount().lose_unsynced().unwrap(), Loss::default());
    assert_eq!(fs::read_to_string(g.path("CURRENT")).unwrap(), "MANIFEST-000003\n");
    assert_eq!(g.names(""), ["CURRENT"]);
}

#[test]
fn torn_write_through_the_mount_keeps_a_strict_prefix() {
    let g = Guard::new(Options { torn_writes: true, seed: 7 });
    write_synced(&g.path("wal"), b"synced|");
    g.fsync_dir("");
    let mut wal = OpenOptions::new().append(true).open(g.path("wal")).unwrap();
    wal.write_all(&[b'x'; 512]).unwrap();
    drop(wal);
    g.mount().lose_unsynced().unwrap();
    let content = fs::read(g.path("wal")).unwrap();
    assert!(content.starts_with(b"synced|"));
    assert!(content.len() < 7 + 512, "a torn write keeps less than the whole write");
    assert!(content[7..].iter().all(|&b| b == b'x'));
}

#[test]
fn loss_waits_for_a_killed_process_and_refuses_while_files_are_open() {
    let g = Guard::new(Options::default());
    write_synced(&g.path("held"), b"");
    g.fsync_dir("");

    // A process writes, keeps the file open and is SIGKILLed: its handle is released asynchronously.
    let script = format!("exec 3>>'{}'; printf unsynced >&3; echo ready; exec sleep 60", g.path("held").display());
    let mut child = Command::new("sh").arg("-c").arg(script).stdout(Stdio::piped()).spawn().unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut ready).unwrap();
    assert_eq!(ready, "ready\n");
    child.kill().unwrap();
    child.wait().unwrap();
    let loss = g.mount().lose_unsynced().unwrap();
    assert_eq!(loss.bytes_discarded, 8);
    assert_eq!(fs::read(g.path("held")).unwrap(), b"");

    // A handle that stays open makes the loss fail instead of pulling data from under it.
    let open = File::open(g.path("held")).unwrap();
    match g.mount().lose_unsynced() {
        Err(LazyFsError::Busy { open, .. }) => assert_eq!(open, 1),
        other => panic!("expected Busy, got {other:?}"),
    }
    drop(open);
    std::thread::sleep(Duration::from_millis(50));
    g.mount().lose_unsynced().unwrap();
}

#[test]
fn mount_refuses_a_non_empty_mount_point_and_nested_directories() {
    // Refused before anything is mounted: runs without root too.
    let backing = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    fs::write(mountpoint.path().join("x"), b"").unwrap();
    assert!(matches!(
        Mount::mount(backing.path(), mountpoint.path(), Options::default()),
        Err(LazyFsError::MountpointNotEmpty { .. })
    ));
    let inner = backing.path().join("inner");
    fs::create_dir(&inner).unwrap();
    assert!(matches!(Mount::mount(backing.path(), &inner, Options::default()), Err(LazyFsError::Overlap { .. })));
}

#[test]
fn unmount_leaves_the_backing_directory_as_the_mount_showed_it() {
    let mut g = Guard::new(Options::default());
    write_synced(&g.path("file"), b"data");
    fs::write(g.path("gone"), b"").unwrap();
    fs::remove_file(g.path("gone")).unwrap();
    g.mount.take().unwrap().unmount().unwrap();
    let names: Vec<_> = fs::read_dir(g.backing.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["file"], "clean unmount: everything durable, stash deleted");
    assert!(fs::read_dir(&g.mountpoint).unwrap().next().is_none(), "mount point is empty again");
}

const CHILD_ENV: &str = "LAZYFS_TEST_CRASHED_CHILD";

/// The child half of `force_unmount_cleans_up_after_a_crashed_process`: mounts, writes, says so, and
/// waits to be SIGKILLed, which leaves a dead mount behind.
#[test]
#[ignore = "child process of force_unmount_cleans_up_after_a_crashed_process, which starts it"]
fn crashed_process_child() {
    let spec = std::env::var(CHILD_ENV).expect("run force_unmount_cleans_up_after_a_crashed_process instead");
    let (backing, mountpoint) = spec.split_once('\n').unwrap();
    let mount = Mount::mount(Path::new(backing), Path::new(mountpoint), Options::default()).unwrap();
    fs::write(mount.mountpoint().join("written-by-child"), b"x").unwrap();
    println!("LAZYFS-CHILD-MOUNTED");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(600));
    drop(mount);
}

/// Kills the child and clears its mount even if the test fails half-way.
struct CrashedChild {
    child: std::process::Child,
    mountpoint: PathBuf,
}

impl Drop for CrashedChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Err(e) = force_unmount(&self.mountpoint) {
            eprintln!("force_unmount failed: {e}");
        }
    }
}

#[test]
fn force_unmount_cleans_up_after_a_crashed_process() {
    require_fuse();
    let backing = tempfile::tempdir().unwrap();
    let mountpoint = tempfile::tempdir().unwrap();
    let spec = format!("{}\n{}", backing.path().display(), mountpoint.path().display());
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crashed_process_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, spec)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = CrashedChild { child, mountpoint: mountpoint.path().to_path_buf() };
    let stdout = std::io::BufReader::new(child.child.stdout.take().unwrap());
    let mounted = std::io::BufRead::lines(stdout).map_while(Result::ok).any(|l| l == "LAZYFS-CHILD-MOUNTED");
    assert!(mounted, "the child did not mount (see its output above)");

    child.child.kill().unwrap();
    child.child.wait().unwrap();
    let dead = fs::read_dir(mountpoint.path()).unwrap_err();
    assert_eq!(dead.raw_os_error(), Some(libc::ENOTCONN), "a killed FUSE server leaves a dead mount");
    match Mount::mount(backing.path(), mountpoint.path(), Options::default()) {
        Err(LazyFsError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOTCONN) => {}
        other => panic!("mounting over a dead mount must fail clearly, got {other:?}"),
    }

    force_unmount(mountpoint.path()).unwrap();
    assert!(fs::read_dir(mountpoint.path()).unwrap().next().is_none());
    force_unmount(mountpoint.path()).expect("nothing mounted any more is fine");

    // The place is usable again, and the child's write went through to the backing directory.
    let mount = Mount::mount(backing.path(), mountpoint.path(), Options::default()).unwrap();
    assert_eq!(fs::read(mount.mountpoint().join("written-by-child")).unwrap(), b"x");
    mount.unmount().unwrap();
}

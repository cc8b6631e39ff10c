//! The loss semantics, exercised on a plain temporary directory (no FUSE).

use std::ffi::OsStr;
use std::fs;
use std::path::Path;

use super::*;

/// A backing directory and the core over it, driven by paths like a program would.
struct Fx {
    dir: tempfile::TempDir,
    fs: UndoFs,
}

impl Fx {
    fn new() -> Fx {
        Fx::with(Options::default())
    }

    fn with(options: Options) -> Fx {
        let dir = tempfile::tempdir().unwrap();
        let fs = UndoFs::new(dir.path(), &options).unwrap();
        Fx { dir, fs }
    }

    /// Looks `path` up component by component, as the kernel does.
    fn ino(&mut self, path: &str) -> Ino {
        let mut ino = ROOT;
        for name in Path::new(path).iter() {
            ino = self.fs.lookup(ino, name).unwrap_or_else(|e| panic!("lookup {path}: {e}")).0;
        }
        ino
    }

    fn split(path: &str) -> (&str, &OsStr) {
        let p = Path::new(path);
        let parent = p.parent().and_then(Path::to_str).unwrap_or("");
        (parent, p.file_name().unwrap())
    }

    /// Creates `path` with `content` and returns the open handle.
    fn create(&mut self, path: &str, content: &[u8]) -> u64 {
        let (parent, name) = Self::split(path);
        let parent = self.ino(parent);
        let (_, _, fh) = self.fs.create(parent, name, 0o644, libc::O_RDWR).unwrap();
        self.fs.write(fh, 0, content).unwrap();
        fh
    }

    fn open(&mut self, path: &str) -> u64 {
        let ino = self.ino(path);
        self.fs.open(ino, libc::O_RDWR).unwrap()
    }

    fn write(&mut self, fh: u64, offset: u64, bytes: &[u8]) {
        assert_eq!(self.fs.write(fh, offset, bytes).unwrap(), bytes.len());
    }

    fn fsync(&mut self, path: &str) {
        let ino = self.ino(path);
        self.fs.fsync(ino);
    }

    fn fsyncdir(&mut self, path: &str) {
        let ino = self.ino(path);
        self.fs.fsyncdir(ino).unwrap();
    }

    fn mkdir(&mut self, path: &str) {
        let (parent, name) = Self::split(path);
        let parent = self.ino(parent);
        self.fs.mkdir(parent, name, 0o755).unwrap();
    }

    fn rename(&mut self, from: &str, to: &str) {
        let ((fp, fname), (tp, tname)) = (Self::split(from), Self::split(to));
        let (fp, tp) = (self.ino(fp), self.ino(tp));
        self.fs.rename(fp, fname, tp, tname, false).unwrap();
    }

    fn unlink(&mut self, path: &str) {
        let (parent, name) = Self::split(path);
        let parent = self.ino(parent);
        self.fs.unlink(parent, name).unwrap();
    }

    /// A durable file: created, written, fsynced, directory fsynced.
    fn durable(&mut self, path: &str, content: &[u8]) {
        let fh = self.create(path, content);
        self.fs.release(fh);
        self.fsync(path);
        let parent = Self::split(path).0.to_string();
        self.fsyncdir(&parent);
    }

    /// Contents of `path` in the backing directory, read directly.
    fn read(&self, path: &str) -> Option<Vec<u8>> {
        fs::read(self.dir.path().join(path)).ok()
    }

    fn exists(&self, path: &str) -> bool {
        fs::symlink_metadata(self.dir.path().join(path)).is_ok()
    }

    fn stash_len(&self) -> usize {
        fs::read_dir(self.dir.path().join(STASH)).unwrap().count()
    }

    fn lose(&mut self) -> Loss {
        let loss = self.fs.lose().unwrap();
        assert_eq!(self.stash_len(), 0, "a loss leaves the stash empty");
        assert_eq!(self.fs.pending(), Pending::default(), "after a loss everything is durable");
        loss
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

#[test]
fn appends_are_lost_unless_fsynced() {
    let mut fx = Fx::new();
    fx.durable("log", b"");
    let fh = fx.open("log");
    fx.write(fh, 0, b"hello");
    fx.fsync("log");
    fx.write(fh, 5, b" world");
    let never = fx.create("never-synced-data", b"abc");
    fx.fsyncdir("");
    fx.fs.release(fh);
    fx.fs.release(never);
    assert_eq!(fx.fs.pending(), Pending { dirty_files: 2, unsynced_bytes: 6 + 3, unsynced_entries: 0 });

    let loss = fx.lose();

    assert_eq!(fx.read("log").unwrap(), b"hello");
    assert_eq!(fx.read("never-synced-data").unwrap(), b"", "created durably, but its data never synced");
    assert_eq!(loss, Loss { files_rolled_back: 2, bytes_discarded: 9, ..Loss::default() });
}

#[test]
fn overwrite_within_synced_length_is_restored_byte_for_byte() {
    let mut fx = Fx::new();
    let original = pattern(4096);
    fx.durable("f", &original);
    let fh = fx.open("f");
    fx.write(fh, 100, &[0xAA; 200]); // [100, 300)
    fx.write(fh, 250, &[0xBB; 350]); // [250, 600), overlapping the first
    fx.write(fh, 4000, &[0xCC; 196]); // up to 4196: 96 bytes inside, 100 appended
    fx.fs.release(fh);
    // Saved once per byte: [100, 600) and [4000, 4096).
    assert_eq!(fx.fs.pending().unsynced_bytes, 500 + 96 + 100);

    let loss = fx.lose();

    assert_eq!(fx.read("f").unwrap(), original);
    assert_eq!(loss.files_rolled_back, 1);
    assert_eq!(loss.bytes_discarded, 696);
}

#[test]
fn truncate_and_extend_are_undone() {
    let mut fx = Fx::new();
    let original = pattern(1000);
    fx.durable("f", &original);
    let ino = fx.ino("f");
    fx.fs.setattr(ino, None, SetAttr { size: Some(10), ..SetAttr::default() }).unwrap();
    assert_eq!(fx.read("f").unwrap(), &original[..10]);
    fx.fs.setattr(ino, None, SetAttr { size: Some(2000), ..SetAttr::default() }).unwrap();
    let fh = fx.open("f");
    fx.write(fh, 1500, b"tail");
    fx.fs.release(fh);

    fx.lose();
    assert_eq!(fx.read("f").unwrap(), original, "cut bytes come back, the extension goes");

    // A synced truncate is durable.
    fx.fs.setattr(ino, None, SetAttr { size: Some(3), ..SetAttr::default() }).unwrap();
    fx.fsync("f");
    fx.lose();
    assert_eq!(fx.read("f").unwrap(), &original[..3]);
}

#[test]
fn created_entries_are_removed_unless_their_directory_was_fsynced() {
    let mut fx = Fx::new();
    fx.mkdir("d");
    fx.fsyncdir("");
    // Directory fsynced after the creation: stays, with its fsynced data.
    let b = fx.create("d/b", b"kept");
    fx.fsync("d/b");
    fx.fs.release(b);
    fx.fsyncdir("d");
    // Fsynced file, directory not fsynced since: the name is not durable, so the file goes.
    let a = fx.create("d/a", b"data");
    fx.fsync("d/a");
    fx.fs.release(a);
    let c = fx.create("d/c", b"late");
    fx.fs.release(c);
    // An unsynced directory goes with everything in it, even a subdirectory that was fsynced.
    fx.mkdir("tree");
    fx.mkdir("tree/sub");
    fx.fsyncdir("tree");
    let x = fx.create("tree/sub/x", b"x");
    fx.fs.release(x);
    fx.fsyncdir("tree/sub");

    let loss = fx.lose();

    assert!(!fx.exists("d/a"));
    assert_eq!(fx.read("d/b").unwrap(), b"kept");
    assert!(!fx.exists("d/c"));
    assert!(!fx.exists("tree"));
    assert_eq!(loss.files_removed, 3, "d/a, d/c and tree");
    assert_eq!(loss.files_rolled_back, 0, "removed files are not also counted as rolled back");
}

#[test]
fn rename_is_undone() {
    let mut fx = Fx::new();
    fx.durable("a", b"content");
    fx.rename("a", "b");
    assert!(fx.exists("b") && !fx.exists("a"));

    let loss = fx.lose();
    assert_eq!(fx.read("a").unwrap(), b"content");
    assert!(!fx.exists("b"));
    assert_eq!(loss, Loss { renames_undone: 1, ..Loss::default() });

    fx.rename("a", "b");
    fx.fsyncdir("");
    assert_eq!(fx.lose(), Loss::default());
    assert_eq!(fx.read("b").unwrap(), b"content");
}

#[test]
fn rename_over_an_existing_target_is_undone_and_the_target_restored() {
    let mut fx = Fx::new();
    fx.durable("CURRENT", b"MANIFEST-000001\n");
    let tmp = fx.create("CURRENT.tmp", b"MANIFEST-000002\n");
    fx.fs.release(tmp);
    fx.fsync("CURRENT.tmp");
    let replaced_ino = fx.ino("CURRENT");
    fx.rename("CURRENT.tmp", "CURRENT");
    assert_eq!(fx.read("CURRENT").unwrap(), b"MANIFEST-000002\n");
    assert_eq!(fx.stash_len(), 1, "the replaced file is kept");
    // Hidden as far as the mount goes: the kernel reports the replaced file as unlinked.
    let md = fs::metadata(fx.dir.path().join(STASH).join("1")).unwrap();
    assert_eq!(fx.fs.visible_nlink(replaced_ino, &md), 0);

    let loss = fx.lose();
    assert_eq!(fx.read("CURRENT").unwrap(), b"MANIFEST-000001\n");
    assert!(!fx.exists("CURRENT.tmp"), "its creation was not durable either");
    assert_eq!(loss, Loss { renames_undone: 1, files_removed: 1, ..Loss::default() });
    assert_eq!(fx.ino("CURRENT"), replaced_ino, "the old inode is back, under its number");

    // The RocksDB sequence with the directory fsync: durable.
    let tmp = fx.create("CURRENT.tmp", b"MANIFEST-000003\n");
    fx.fs.release(tmp);
    fx.fsync("CURRENT.tmp");
    fx.rename("CURRENT.tmp", "CURRENT");
    fx.fsyncdir("");
    assert_eq!(fx.stash_len(), 0, "the durable rename purged the replaced file");
    assert_eq!(fx.lose(), Loss::default());
    assert_eq!(fx.read("CURRENT").unwrap(), b"MANIFEST-000003\n");
}

#[test]
fn rename_noreplace_and_type_mismatches_are_refused_without_side_effects() {
    let mut fx = Fx::new();
    fx.durable("a", b"a");
    fx.durable("b", b"b");
    fx.mkdir("d");
    fx.fsyncdir("");
    let err = fx.fs.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("b"), true).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EEXIST));
    let err = fx.fs.rename(ROOT, OsStr::new("a"), ROOT, OsStr::new("d"), false).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EISDIR));
    assert_eq!(fx.stash_len(), 0);
    assert_eq!(fx.fs.pending().unsynced_entries, 0);
}

#[test]
fn unlink_and_rmdir_are_undone() {
    let mut fx = Fx::new();
    fx.durable("f", b"precious");
    fx.mkdir("empty");
    fx.fsyncdir("");
    fx.unlink("f");
    fx.fs.rmdir(ROOT, OsStr::new("empty")).unwrap();
    assert!(!fx.exists("f") && !fx.exists("empty"));
    assert_eq!(fx.fs.lookup(ROOT, OsStr::new("f")).unwrap_err().raw_os_error(), Some(libc::ENOENT));

    let loss = fx.lose();
    assert_eq!(fx.read("f").unwrap(), b"precious");
    assert!(fs::metadata(fx.dir.path().join("empty")).unwrap().is_dir());
    assert_eq!(loss, Loss { unlinks_undone: 2, ..Loss::default() });
}

#[test]
fn fsyncdir_purges_the_stash_and_makes_the_unlink_durable() {
    let mut fx = Fx::new();
    fx.durable("f", b"doomed");
    fx.unlink("f");
    assert_eq!(fx.stash_len(), 1);
    fx.fsyncdir("");
    assert_eq!(fx.stash_len(), 0);
    assert_eq!(fx.lose(), Loss::default());
    assert!(!fx.exists("f"));
}

#[test]
fn data_undo_follows_the_inode_through_renames_and_unlinks() {
    let mut fx = Fx::new();
    fx.mkdir("d");
    fx.fsyncdir("");
    fx.durable("d/x", b"v1");
    let fh = fx.open("d/x");
    fx.write(fh, 0, b"v2 and more");
    // Durable directory rename, then unlink of the file while it is open, then more writes through it.
    fx.rename("d", "e");
    fx.fsyncdir("");
    fx.unlink("e/x");
    fx.write(fh, 11, b"!");
    fx.fs.release(fh);

    let loss = fx.lose();
    assert_eq!(fx.read("e/x").unwrap(), b"v1", "unlink undone, then the data rolled back by inode");
    assert_eq!(loss.unlinks_undone, 1);
    assert_eq!(loss.files_rolled_back, 1);
}

#[test]
fn undo_of_a_change_inside_a_renamed_directory_finds_it_at_its_new_path() {
    let mut fx = Fx::new();
    fx.mkdir("d");
    fx.fsyncdir("");
    let fh = fx.create("d/new", b"x");
    fx.fs.release(fh);
    fx.rename("d", "e");
    fx.fsyncdir(""); // the rename is durable, the creation in it is not
    fx.lose();
    assert!(fx.exists("e") && !fx.exists("d"));
    assert!(!fx.exists("e/new"));
}

#[test]
fn o_dsync_writes_are_durable_on_return() {
    let mut fx = Fx::new();
    fx.durable("wal", b"");
    let ino = fx.ino("wal");
    let fh = fx.fs.open(ino, libc::O_WRONLY | libc::O_DSYNC).unwrap();
    fx.write(fh, 0, b"record");
    fx.fs.release(fh);
    assert_eq!(fx.fs.pending(), Pending::default());
    fx.lose();
    assert_eq!(fx.read("wal").unwrap(), b"record");
}

#[test]
fn the_stash_is_invisible_and_its_name_reserved() {
    let mut fx = Fx::new();
    let stash = OsStr::new(STASH);
    assert_eq!(fx.fs.lookup(ROOT, stash).unwrap_err().raw_os_error(), Some(libc::ENOENT));
    assert_eq!(fx.fs.mkdir(ROOT, stash, 0o755).unwrap_err().raw_os_error(), Some(libc::EPERM));
    fx.durable("visible", b"");
    let dh = fx.fs.opendir(ROOT).unwrap();
    let names: Vec<_> = fx.fs.readdir(dh, 0).unwrap().iter().map(|e| e.name.clone()).collect();
    assert_eq!(names, [".", "..", "visible"]);
}

/// Writes a synced base and two unsynced appends, loses with torn writes, returns the file.
fn torn_run(seed: u64) -> (Vec<u8>, Loss) {
    let mut fx = Fx::with(Options { torn_writes: true, seed });
    fx.durable("f", b"base");
    let fh = fx.open("f");
    fx.write(fh, 4, &[b'a'; 100]);
    fx.write(fh, 104, &[b'b'; 100]);
    fx.fs.release(fh);
    let loss = fx.fs.lose().unwrap();
    (fx.read("f").unwrap(), loss)
}

#[test]
fn torn_writes_keep_a_prefix_of_the_last_write_only_deterministically() {
    let mut kept_lengths = Vec::new();
    for seed in 1..=8 {
        let (file, loss) = torn_run(seed);
        assert_eq!(torn_run(seed), (file.clone(), loss.clone()), "same seed, same loss");
        assert_eq!(&file[..4], b"base");
        if file.len() == 4 {
            assert_eq!(loss.torn_writes, 0, "an empty prefix is no torn write");
            kept_lengths.push(0);
            continue;
        }
        // The earlier write is gone entirely (a hole of zeros); the last one survives as a strict prefix.
        assert!(file[4..104].iter().all(|&b| b == 0), "seed {seed}: the first write must not survive");
        let kept = file.len() - 104;
        assert!((1..100).contains(&kept), "seed {seed}: kept {kept} bytes of a 100-byte write");
        assert!(file[104..].iter().all(|&b| b == b'b'));
        assert_eq!(loss.torn_writes, 1);
        assert_eq!(loss.bytes_discarded, 200 - kept as u64);
        kept_lengths.push(kept);
    }
    kept_lengths.dedup();
    assert!(kept_lengths.len() > 1, "different seeds tear differently: {kept_lengths:?}");
}

#[test]
fn torn_overwrite_keeps_a_prefix_over_the_restored_bytes() {
    let mut fx = Fx::with(Options { torn_writes: true, seed: 42 });
    fx.durable("f", &[b'o'; 64]);
    let fh = fx.open("f");
    fx.write(fh, 0, &[b'n'; 64]);
    fx.fs.release(fh);
    fx.fs.lose().unwrap();
    let file = fx.read("f").unwrap();
    assert_eq!(file.len(), 64);
    let kept = file.iter().take_while(|&&b| b == b'n').count();
    assert!(kept < 64);
    assert!(file[kept..].iter().all(|&b| b == b'o'));
}

#[test]
fn a_stale_stash_is_emptied_at_start() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join(STASH)).unwrap();
    fs::write(dir.path().join(STASH).join("7"), b"old").unwrap();
    let _fs = UndoFs::new(dir.path(), &Options::default()).unwrap();
    assert_eq!(fs::read_dir(dir.path().join(STASH)).unwrap().count(), 0);
}

#[test]
fn hard_link_creation_is_undone_but_the_original_stays() {
    let mut fx = Fx::new();
    fx.durable("orig", b"shared");
    let ino = fx.ino("orig");
    let (linked, _) = fx.fs.link(ino, ROOT, OsStr::new("alias")).unwrap();
    assert_eq!(linked, ino, "one inode, two names");
    assert_eq!(fx.lose(), Loss { files_removed: 1, ..Loss::default() });
    assert!(!fx.exists("alias"));
    assert_eq!(fx.read("orig").unwrap(), b"shared");
}

#[test]
fn changes_inside_a_durably_deleted_directory_are_dropped_with_their_stash_entries() {
    // What RocksDB's DestroyDB does: unlink every file, rmdir the directory, then fsync only the parent.
    let mut fx = Fx::new();
    fx.mkdir("db");
    fx.fsyncdir("");
    fx.durable("db/CURRENT", b"x");
    fx.unlink("db/CURRENT");
    fx.fs.rmdir(ROOT, OsStr::new("db")).unwrap();
    assert_eq!(fx.stash_len(), 2);
    fx.fsyncdir("");
    assert_eq!(fx.stash_len(), 0, "the unlink inside the deleted directory can never be undone");
    assert_eq!(fx.fs.pending().unsynced_entries, 0);
    assert_eq!(fx.lose(), Loss::default());
    assert!(!fx.exists("db"));
}

#[test]
fn rename_of_a_directory_over_an_empty_one_is_undone_with_its_contents() {
    let mut fx = Fx::new();
    fx.mkdir("src");
    fx.mkdir("dst");
    fx.fsyncdir("");
    fx.durable("src/f", b"f");
    fx.rename("src", "dst");
    let fh = fx.open("dst/f");
    fx.write(fh, 1, b"g");
    fx.fs.release(fh);
    assert_eq!(fx.read("dst/f").unwrap(), b"fg");

    let loss = fx.lose();
    assert_eq!(fx.read("src/f").unwrap(), b"f");
    assert_eq!(fs::read_dir(fx.dir.path().join("dst")).unwrap().count(), 0, "the replaced empty directory is back");
    assert_eq!(loss, Loss { files_rolled_back: 1, bytes_discarded: 1, renames_undone: 1, ..Loss::default() });
}

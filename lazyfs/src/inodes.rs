//! The inode table: our own inode numbers and the relative backing paths that currently name them.
//!
//! Undo records are kept by inode, not by path, so that a file renamed after a write still has its data
//! rolled back. This table is what turns an inode back into a path at undo time; every namespace change
//! (including the moves into and out of the stash) updates it, whole subtrees at once for directories.
//! A node can have several paths (hard links, or a name plus a stash entry).

use std::collections::{BTreeMap, HashMap};
use std::fs::Metadata;
use std::ops::Bound;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Our inode number, as handed to the kernel.
pub(crate) type Ino = u64;

/// The root directory's inode number (FUSE requires 1).
pub(crate) const ROOT: Ino = 1;

/// Identity of a backing inode: (st_dev, st_ino).
type Key = (u64, u64);

#[derive(Debug)]
struct Node {
    /// Paths relative to the backing root that name this inode now; empty once it is deleted.
    paths: Vec<PathBuf>,
    /// Backing identity, used to find the node of a path we have not seen (e.g. a second hard link).
    key: Key,
    /// Kernel lookup count: the node must keep its number until the kernel forgets it.
    lookups: u64,
}

#[derive(Debug)]
pub(crate) struct InodeTable {
    nodes: HashMap<Ino, Node>,
    by_path: BTreeMap<PathBuf, Ino>,
    by_key: HashMap<Key, Ino>,
    next: Ino,
}

impl InodeTable {
    pub(crate) fn new(root: &Metadata) -> Self {
        let key = (root.dev(), root.ino());
        let mut table =
            InodeTable { nodes: HashMap::new(), by_path: BTreeMap::new(), by_key: HashMap::new(), next: ROOT + 1 };
        table.nodes.insert(ROOT, Node { paths: vec![PathBuf::new()], key, lookups: 1 });
        table.by_path.insert(PathBuf::new(), ROOT);
        table.by_key.insert(key, ROOT);
        table
    }

    /// The first path naming `ino`, if it still has one.
    pub(crate) fn path(&self, ino: Ino) -> Option<&Path> {
        self.nodes.get(&ino).and_then(|n| n.paths.first()).map(PathBuf::as_path)
    }

    /// All paths naming `ino`.
    pub(crate) fn paths(&self, ino: Ino) -> &[PathBuf] {
        self.nodes.get(&ino).map_or(&[], |n| n.paths.as_slice())
    }

    pub(crate) fn ino_at(&self, path: &Path) -> Option<Ino> {
        self.by_path.get(path).copied()
    }

    /// Returns the inode for `path`, whose backing metadata is `md`, creating a node if needed.
    pub(crate) fn bind(&mut self, path: &Path, md: &Metadata) -> Ino {
        let key = (md.dev(), md.ino());
        if let Some(&ino) = self.by_path.get(path) {
            // A path we track keeps its inode even if the backing inode number changed (overlayfs copy-up
            // does that); every change to the backing directory goes through us, so the path is the truth.
            if let Some(node) = self.nodes.get_mut(&ino)
                && node.key != key
            {
                if self.by_key.get(&node.key) == Some(&ino) {
                    self.by_key.remove(&node.key);
                }
                node.key = key;
                self.by_key.insert(key, ino);
            }
            return ino;
        }
        let ino = match self.by_key.get(&key) {
            Some(&ino) => ino,
            None => {
                let ino = self.next;
                self.next += 1;
                self.nodes.insert(ino, Node { paths: Vec::new(), key, lookups: 0 });
                self.by_key.insert(key, ino);
                ino
            }
        };
        self.add_path(ino, path);
        ino
    }

    /// Counts one kernel lookup (every entry reply: lookup, create, mkdir, ...).
    pub(crate) fn add_lookup(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups += 1;
        }
    }

    /// The kernel dropped `n` references; a deleted node it no longer knows is freed.
    pub(crate) fn forget(&mut self, ino: Ino, n: u64) {
        if ino == ROOT {
            return;
        }
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(n);
            if node.lookups == 0 && node.paths.is_empty() {
                self.nodes.remove(&ino);
            }
        }
    }

    /// Adds another name for `ino` (a hard link, or its link in the stash).
    pub(crate) fn add_path(&mut self, ino: Ino, path: &Path) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.paths.push(path.to_path_buf());
            self.by_path.insert(path.to_path_buf(), ino);
        }
    }

    /// Moves `from` and everything below it to `to`. Whatever `to` named before is forgotten (the caller
    /// has moved it away first if it is to be kept).
    pub(crate) fn rename(&mut self, from: &Path, to: &Path) -> Vec<Ino> {
        let dropped = self.remove(to);
        let moved: Vec<(PathBuf, Ino)> = self.subtree(from).collect();
        for (old, ino) in moved {
            self.by_path.remove(&old);
            let new = match old.strip_prefix(from) {
                Ok(rest) if rest.as_os_str().is_empty() => to.to_path_buf(),
                Ok(rest) => to.join(rest),
                Err(_) => continue,
            };
            if let Some(node) = self.nodes.get_mut(&ino) {
                for p in node.paths.iter_mut().filter(|p| **p == old) {
                    p.clone_from(&new);
                }
            }
            self.by_path.insert(new, ino);
        }
        dropped
    }

    /// Forgets `path` and everything below it (they were deleted). Returns the inodes that no longer have
    /// any name, so the caller can drop their undo records.
    pub(crate) fn remove(&mut self, path: &Path) -> Vec<Ino> {
        let gone: Vec<(PathBuf, Ino)> = self.subtree(path).collect();
        let mut orphans = Vec::new();
        for (p, ino) in gone {
            if self.unlink_one(&p, ino) {
                orphans.push(ino);
            }
        }
        orphans
    }

    /// Removes one name of `ino`; returns whether that was its last.
    fn unlink_one(&mut self, path: &Path, ino: Ino) -> bool {
        self.by_path.remove(path);
        let Some(node) = self.nodes.get_mut(&ino) else { return false };
        node.paths.retain(|p| p != path);
        if !node.paths.is_empty() {
            return false;
        }
        // A deleted backing inode's number may be reused by the backing filesystem: stop matching it.
        if self.by_key.get(&node.key) == Some(&ino) {
            self.by_key.remove(&node.key);
        }
        if node.lookups == 0 {
            self.nodes.remove(&ino);
        }
        true
    }

    /// `path` and its descendants. `Path` orders by components, so a subtree is one contiguous range.
    fn subtree<'a>(&'a self, path: &'a Path) -> impl Iterator<Item = (PathBuf, Ino)> + 'a {
        self.by_path
            .range::<Path, _>((Bound::Included(path), Bound::Unbounded))
            .take_while(move |(p, _)| p.starts_with(path))
            .map(|(p, &ino)| (p.clone(), ino))
    }

    pub(crate) fn contains(&self, ino: Ino) -> bool {
        self.nodes.contains_key(&ino)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table_with(dir: &Path, rels: &[&str]) -> InodeTable {
        let mut t = InodeTable::new(&std::fs::metadata(dir).unwrap());
        for rel in rels {
            let md = std::fs::symlink_metadata(dir.join(rel)).unwrap();
            t.bind(Path::new(rel), &md);
        }
        t
    }

    #[test]
    fn rename_moves_whole_subtree_and_only_it() {
        let dir = tempfile::tempdir().unwrap();
        for d in ["a", "a/b", "a-b"] {
            std::fs::create_dir(dir.path().join(d)).unwrap();
        }
        std::fs::write(dir.path().join("a/b/f"), b"x").unwrap();
        let mut t = table_with(dir.path(), &["a", "a/b", "a/b/f", "a-b"]);
        let f = t.ino_at(Path::new("a/b/f")).unwrap();
        let sibling = t.ino_at(Path::new("a-b")).unwrap();

        t.rename(Path::new("a"), Path::new("z"));

        assert_eq!(t.path(f), Some(Path::new("z/b/f")));
        assert_eq!(t.ino_at(Path::new("z/b/f")), Some(f));
        assert_eq!(t.ino_at(Path::new("a/b/f")), None);
        assert_eq!(t.path(sibling), Some(Path::new("a-b")), "a-b is not below a");
    }

    #[test]
    fn hard_links_share_a_node_and_removal_reports_orphans() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("one"), b"x").unwrap();
        std::fs::hard_link(dir.path().join("one"), dir.path().join("two")).unwrap();
        let mut t = table_with(dir.path(), &["one", "two"]);
        let ino = t.ino_at(Path::new("one")).unwrap();
        assert_eq!(t.ino_at(Path::new("two")), Some(ino));

        assert!(t.remove(Path::new("one")).is_empty(), "still named by two");
        assert_eq!(t.path(ino), Some(Path::new("two")));
        assert_eq!(t.remove(Path::new("two")), vec![ino]);
        assert!(!t.contains(ino), "never looked up by the kernel, so freed at once");
    }
}

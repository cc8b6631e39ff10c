//! Disk corruption on a stopped node, as Jepsen's file-corruption nemesis
//! does: bits flipped in a file of its data directory, the file cut short,
//! or a chunk of it turned to zeros (a write the disk lost). The node is
//! killed first and started again at the heal.
//!
//! What CapuKV must then do (docs/corruption.md): refuse to start, naming
//! the file, or start with its data intact; never serve or vote on data
//! that is wrong. A node that refuses stays down (until membership changes
//! land, it cannot rejoin empty), and the cluster serves on with the rest.
//! One node per run is the victim, so a minority is never exceeded, unless
//! `--corrupt-nodes` asks for more: a disk that lied on a majority, which no
//! Raft cluster can survive, but which it must not survive silently.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::kind::{Draw, FaultKind};
use super::{Fault, Nemesis};
use crate::options::{NemesisChoice, RunOptions};

/// Which of a node's files is damaged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FileClass {
    /// RocksDB's write-ahead log (`*.log`): the Raft log's newest entries and votes.
    Wal,
    /// Table files (`*.sst`): the older log, snapshots, the state machine.
    Table,
    /// `MANIFEST-*`: which tables make up the database.
    Manifest,
}

/// What is done to the file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "damage", rename_all = "kebab-case")]
pub enum Damage {
    /// `bits` bits flipped within one 4 KiB region.
    FlipBits { bits: u32 },
    /// Cut short, keeping `keep` (0 to 1) of it.
    Truncate { keep: f64 },
    /// `bytes` bytes turned to zeros.
    Zero { bytes: u64 },
}

/// One corruption: which node, which kind of file, what damage; `seed`
/// picks the file and the place in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CorruptFault {
    pub node: u64,
    pub file: FileClass,
    pub damage: Damage,
    pub seed: u64,
}

impl CorruptFault {
    /// A corruption of `node` at random.
    pub fn random(node: u64, rng: &mut SmallRng) -> CorruptFault {
        let file = [FileClass::Wal, FileClass::Wal, FileClass::Table, FileClass::Manifest][rng.random_range(0..4)];
        let damage = match rng.random_range(0..3) {
            0 => Damage::FlipBits { bits: rng.random_range(1..=8) },
            1 => Damage::Truncate { keep: rng.random_range(0.0..0.95) },
            _ => Damage::Zero { bytes: [64, 512, 4096][rng.random_range(0..3)] },
        };
        CorruptFault { node, file, damage, seed: rng.random() }
    }
}

fn matches(class: FileClass, name: &str) -> bool {
    match class {
        FileClass::Wal => name.ends_with(".log") && name != "LOG",
        FileClass::Table => name.ends_with(".sst"),
        FileClass::Manifest => name.starts_with("MANIFEST-"),
    }
}

/// Damages one file of `dir` (a stopped node's data directory) as `fault`
/// says; returns what was done. A class with no file there (a WAL just
/// flushed away) is reported, not forced.
pub fn damage(dir: &Path, fault: &CorruptFault) -> std::io::Result<serde_json::Value> {
    let mut rng = SmallRng::seed_from_u64(fault.seed);
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)?
        .flatten()
        .filter(|e| matches(fault.file, &e.file_name().to_string_lossy()))
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .filter(|(_, len)| *len > 0)
        .collect();
    files.sort();
    let Some((path, len)) = files.choose(&mut rng).cloned() else {
        return Ok(json!({"skipped": format!("no non-empty {:?} file", fault.file)}));
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path)?;
    let done = match fault.damage {
        Damage::FlipBits { bits } => {
            let start = rng.random_range(0..len);
            let region = 4096.min(len - start);
            let mut flipped = Vec::new();
            for _ in 0..bits {
                let at = start + rng.random_range(0..region);
                let mut byte = [0u8];
                file.seek(SeekFrom::Start(at))?;
                file.read_exact(&mut byte)?;
                byte[0] ^= 1 << rng.random_range(0..8);
                file.seek(SeekFrom::Start(at))?;
                file.write_all(&byte)?;
                flipped.push(at);
            }
            json!({"flipped_at": flipped})
        }
        Damage::Truncate { keep } => {
            let to = ((len as f64) * keep.clamp(0.0, 1.0)) as u64;
            file.set_len(to)?;
            json!({"truncated_to": to})
        }
        Damage::Zero { bytes } => {
            let bytes = bytes.min(len);
            let at = rng.random_range(0..=len - bytes);
            file.seek(SeekFrom::Start(at))?;
            file.write_all(&vec![0u8; bytes as usize])?;
            json!({"zeroed_at": at, "bytes": bytes})
        }
    };
    file.sync_all()?;
    Ok(json!({"node": format!("n{}", fault.node), "file": name, "size": len, "damage": fault.damage, "done": done}))
}

pub struct CorruptKind;

impl FaultKind for CorruptKind {
    fn choice(&self) -> NemesisChoice {
        NemesisChoice::Corrupt
    }
    fn name(&self) -> &'static str {
        "corrupt"
    }
    fn events(&self) -> (&'static str, &'static str) {
        ("corrupt-file", "restart-corrupted")
    }
    fn colour(&self) -> &'static str {
        "#5b3a29"
    }
    fn network(&self) -> bool {
        false
    }
    fn in_all(&self, options: &RunOptions) -> bool {
        options.corruption()
    }
    fn draw(&self, ctx: &Draw, _: usize, rng: &mut SmallRng) -> Fault {
        Fault::Corrupt { corrupt: ctx.victims.iter().map(|&v| CorruptFault::random(v, rng)).collect() }
    }
    /// Kills every victim first (one event, as a power failure would be),
    /// then damages each; a victim that refused its data before stays down.
    fn strike(&self, n: &Nemesis, fault: &Fault, _: Option<u64>) -> anyhow::Result<Value> {
        let Fault::Corrupt { corrupt } = fault else { unreachable!("a corrupt fault") };
        let refused = n.refused.lock().expect("not poisoned").clone();
        let (skip, strike): (Vec<&CorruptFault>, Vec<&CorruptFault>) =
            corrupt.iter().partition(|c| refused.contains(&c.node));
        for c in &strike {
            n.runtime.kill(c.node)?;
        }
        let mut done = Vec::new();
        for c in strike {
            let node = c.node;
            let dir = n
                .runtime
                .data_dir(node)
                .ok_or_else(|| anyhow::anyhow!("this runtime does not reach node n{node}'s data directory"))?;
            n.corrupted.lock().expect("not poisoned").insert(node);
            done.push(damage(&dir, c).map_err(|e| anyhow::anyhow!("corrupting {}: {e}", dir.display()))?);
        }
        for c in skip {
            let why = format!("n{} refused its damaged data directory before and stays down", c.node);
            done.push(json!({"node": format!("n{}", c.node), "skipped": why}));
        }
        Ok(json!({"damaged": done}))
    }
    /// Starts the victims again and waits (bounded) to see which refuse: a
    /// refusal is by design, and its reason recorded; such a node then stays
    /// down.
    fn heal(&self, n: &Nemesis, fault: &Fault) -> anyhow::Result<Value> {
        let Fault::Corrupt { corrupt } = fault else { unreachable!("a corrupt fault") };
        let mut outcome = serde_json::Map::new();
        let mut started = Vec::new();
        for c in corrupt {
            let name = format!("n{}", c.node);
            if n.refused.lock().expect("not poisoned").contains(&c.node) {
                outcome.insert(name, json!({"refused": "refused to start before; stays down"}));
            } else if !n.runtime.is_running(c.node) {
                n.runtime.start(c.node)?;
                started.push(c.node);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        // A refusal comes at startup, within a second or so; wait until every
        // restarted victim refused or the time is up.
        while Instant::now() < deadline && started.iter().any(|&id| n.runtime.is_running(id)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        for id in started {
            let name = format!("n{id}");
            if n.runtime.is_running(id) {
                outcome.insert(name, json!({"started": true}));
                continue;
            }
            let log = &n.runtime.nodes()[(id - 1) as usize].log;
            let reason = std::fs::read_to_string(log)
                .ok()
                .and_then(|text| text.lines().rev().find(|l| l.contains("corrupt")).map(str::to_string))
                .unwrap_or_else(|| "exited at startup".into());
            n.refused.lock().expect("not poisoned").insert(id);
            outcome.insert(name, json!({"refused": reason}));
        }
        Ok(Value::Object(outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir_with(files: &[(&str, usize)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, len) in files {
            std::fs::write(dir.path().join(name), vec![0xAAu8; *len]).unwrap();
        }
        dir
    }

    fn fault(file: FileClass, damage: Damage) -> CorruptFault {
        CorruptFault { node: 2, file, damage, seed: 9 }
    }

    #[test]
    fn each_damage_does_what_it_says_to_the_chosen_kind_of_file() {
        let dir = dir_with(&[("000007.log", 10_000), ("000009.sst", 8000), ("MANIFEST-000005", 300), ("LOG", 500)]);
        let done = damage(dir.path(), &fault(FileClass::Wal, Damage::FlipBits { bits: 3 })).unwrap();
        assert_eq!(done["file"], "000007.log");
        let wal = std::fs::read(dir.path().join("000007.log")).unwrap();
        let changed: u32 = wal.iter().map(|b| (b ^ 0xAA).count_ones()).sum();
        assert!((1..=3).contains(&changed), "{changed} bits changed");
        assert_eq!(std::fs::read(dir.path().join("LOG")).unwrap(), vec![0xAA; 500], "RocksDB's info log is no target");

        let done = damage(dir.path(), &fault(FileClass::Table, Damage::Truncate { keep: 0.5 })).unwrap();
        assert_eq!((done["file"].as_str(), done["done"]["truncated_to"].as_u64()), (Some("000009.sst"), Some(4000)));
        assert_eq!(std::fs::metadata(dir.path().join("000009.sst")).unwrap().len(), 4000);

        damage(dir.path(), &fault(FileClass::Manifest, Damage::Zero { bytes: 4096 })).unwrap();
        assert_eq!(std::fs::read(dir.path().join("MANIFEST-000005")).unwrap(), vec![0; 300], "at most the whole file");
    }

    #[test]
    fn the_seed_decides_and_a_missing_kind_of_file_is_reported() {
        let a = dir_with(&[("000001.log", 5000)]);
        let b = dir_with(&[("000001.log", 5000)]);
        let f = fault(FileClass::Wal, Damage::FlipBits { bits: 4 });
        assert_eq!(damage(a.path(), &f).unwrap(), damage(b.path(), &f).unwrap());
        let done = damage(a.path(), &fault(FileClass::Table, Damage::FlipBits { bits: 1 })).unwrap();
        assert!(done["skipped"].as_str().unwrap().contains("Table"), "{done}");
        let mut rng = SmallRng::seed_from_u64(1);
        let drawn: Vec<CorruptFault> = (0..50).map(|_| CorruptFault::random(3, &mut rng)).collect();
        assert!(drawn.iter().all(|f| f.node == 3));
        assert!(drawn.iter().any(|f| matches!(f.damage, Damage::Truncate { .. })));
        assert!(drawn.iter().any(|f| f.file == FileClass::Manifest));
    }
}

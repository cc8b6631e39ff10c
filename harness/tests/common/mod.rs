//! What the end-to-end tests share: the binaries and reading run files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const CHAOS: &str = env!("CARGO_BIN_EXE_capukv-chaos");

/// The `capukv` binary beside `capukv-chaos`, built if this test run did not build it.
pub fn capukv_bin() -> PathBuf {
    let bin = Path::new(CHAOS).parent().unwrap().join("capukv");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo).args(["build", "-p", "capukv", "--bin", "capukv"]).status().unwrap();
        assert!(status.success(), "building capukv failed");
    }
    assert!(bin.is_file(), "no capukv binary at {}", bin.display());
    bin
}

/// A run file (run.json, results.json) as JSON.
pub fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

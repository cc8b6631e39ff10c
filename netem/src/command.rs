//! Running the host's `nft` and `iptables-nft` (inside a namespace when called
//! on an [`crate::namespace::NsWorker`] thread: a child inherits the thread's namespace).

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::{NetemError, Result};

fn package(program: &str) -> &'static str {
    match program {
        "nft" => "nftables",
        p if p.starts_with("iptables") => "iptables",
        _ => "?",
    }
}

/// Runs `program args`, feeding `stdin`, and returns its standard output.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetemError::MissingTool { command: command.clone(), package: package(program), source })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(NetemError::Command {
            command,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

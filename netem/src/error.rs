//! What can go wrong when changing a namespace's network.

use std::io;

/// Errors from fault injection. Each says which step failed and where.
#[derive(Debug, thiserror::Error)]
pub enum NetemError {
    #[error("cannot enter network namespace {target}: {source}")]
    Namespace { target: String, source: io::Error },
    #[error("cannot {action} network namespace {name}: {source}")]
    NamedNamespace { action: &'static str, name: String, source: io::Error },
    #[error("interface {iface:?} not found in {target}")]
    NoInterface { iface: String, target: String },
    #[error("netlink {op} failed: {source}")]
    Netlink { op: &'static str, source: io::Error },
    /// A request about one object: `on` names it (a link, an address).
    #[error("netlink {op} ({on}) failed: {source}")]
    NetlinkOn { op: &'static str, on: String, source: io::Error },
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },
    #[error("`{command}` could not be started: {source} (is it installed? Debian: {package})")]
    MissingTool { command: String, package: &'static str, source: io::Error },
    #[error("invalid fault: {0}")]
    InvalidFault(String),
    #[error("{what} is not supported by the {backend} backend: {why}")]
    Unsupported { what: &'static str, backend: &'static str, why: String },
    #[error("the namespace worker thread for {0} has stopped")]
    WorkerGone(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

pub type Result<T, E = NetemError> = std::result::Result<T, E>;

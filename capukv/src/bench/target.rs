//! What `capukv bench` drives: a CapuKV cluster, or an etcd cluster through
//! the `etcd-client` crate, so that one load generator puts identical keys,
//! values and concurrency on both.

use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::BenchError;
use crate::client::Client;

/// One client's handle on the system under test. Cloning is cheap: an etcd
/// handle shares its HTTP/2 channel, a CapuKV one its [`Client`].
#[derive(Clone)]
pub enum Target {
    CapuKv(Arc<Client>),
    Etcd(Box<etcd_client::KvClient>),
}

/// Fsync counters of one system, summed over what could be read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncCounts {
    /// On the leader (CapuKV: log syncs; etcd: WAL fsyncs).
    pub leader: u64,
    /// Over every node (etcd: WAL fsyncs plus bbolt backend commits).
    pub cluster: u64,
    /// Raft entries made durable on the leader (CapuKV only).
    pub leader_entries: u64,
}

impl Target {
    /// Connects to etcd's leader: the client talks to the leader only, as
    /// CapuKV's does, so neither system pays for forwarding.
    pub async fn etcd(endpoints: &[String]) -> Result<Target, BenchError> {
        let leader = etcd_leader(endpoints).await?;
        let client = etcd_client::Client::connect([leader.as_str()], None).await?;
        Ok(Target::Etcd(Box::new(client.kv_client())))
    }

    pub fn name(&self) -> &'static str {
        match self {
            Target::CapuKv(_) => "capukv",
            Target::Etcd(_) => "etcd",
        }
    }

    pub async fn put(&mut self, key: Bytes, value: &Bytes) -> bool {
        match self {
            // Neither asks for the previous pair (etcd's put returns it
            // only with prev_kv).
            Target::CapuKv(c) => c.set(key, value.clone()).await.is_ok(),
            Target::Etcd(kv) => kv.put(key.to_vec(), value.to_vec(), None).await.is_ok(),
        }
    }

    /// A linearizable read on both (the CapuKV client's read mode decides,
    /// linearizable unless `--read-mode stale`; etcd's default range).
    pub async fn get(&mut self, key: Bytes) -> bool {
        match self {
            Target::CapuKv(c) => c.get(key).await.is_ok(),
            Target::Etcd(kv) => kv.get(key.to_vec(), None).await.is_ok(),
        }
    }

    /// Sync counters now, or None when the leader cannot be identified.
    pub async fn syncs(&self, endpoints: &[String]) -> Option<SyncCounts> {
        match self {
            Target::CapuKv(client) => {
                let mut counts = SyncCounts::default();
                let mut leaders = 0;
                for addr in client.endpoints() {
                    let s = client.status_of(addr).await.ok()?;
                    counts.cluster += s.log_syncs;
                    if s.role == "leader" {
                        leaders += 1;
                        counts.leader = s.log_syncs;
                        counts.leader_entries = s.log_entries_synced;
                    }
                }
                (leaders == 1).then_some(counts)
            }
            Target::Etcd(_) => {
                let leader = etcd_leader(endpoints).await.ok()?;
                let mut counts = SyncCounts::default();
                for e in endpoints {
                    let metrics = http_get(e, "/metrics").await.ok()?;
                    let wal = metric(&metrics, "etcd_disk_wal_fsync_duration_seconds_count")?;
                    let backend = metric(&metrics, "etcd_disk_backend_commit_duration_seconds_count")?;
                    counts.cluster += wal + backend;
                    if *e == leader {
                        counts.leader = wal;
                    }
                }
                Some(counts)
            }
        }
    }
}

/// The endpoint of etcd's current leader, by asking each member's status.
async fn etcd_leader(endpoints: &[String]) -> Result<String, BenchError> {
    let mut last = None;
    for e in endpoints {
        let status = async { etcd_client::Client::connect([e.as_str()], None).await?.status().await };
        match status.await {
            Ok(s) if s.header().is_some_and(|h| h.member_id() == s.leader()) => return Ok(e.clone()),
            Ok(_) => {}
            Err(err) => last = Some(err.to_string()),
        }
    }
    Err(BenchError::NoLeader { endpoints: endpoints.join(","), last })
}

/// A plain HTTP/1.0 GET of etcd's metrics page (`host:port` or `http://host:port`).
async fn http_get(endpoint: &str, path: &str) -> std::io::Result<String> {
    let host = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = tokio::net::TcpStream::connect(host).await?;
    stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await?;
    Ok(body)
}

/// The value of an unlabelled Prometheus metric line `name value`.
fn metric(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        value.trim().parse::<f64>().ok().map(|v| v as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::metric;

    #[test]
    fn reads_a_prometheus_counter_and_not_its_longer_namesakes() {
        let text = "# TYPE etcd_disk_wal_fsync_duration_seconds histogram\n\
                    etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 3\n\
                    etcd_disk_wal_fsync_duration_seconds_count_total 9\n\
                    etcd_disk_wal_fsync_duration_seconds_count 1234\n\
                    etcd_disk_backend_commit_duration_seconds_count 5.6e+01\n";
        assert_eq!(metric(text, "etcd_disk_wal_fsync_duration_seconds_count"), Some(1234));
        assert_eq!(metric(text, "etcd_disk_backend_commit_duration_seconds_count"), Some(56));
        assert_eq!(metric(text, "etcd_missing_count"), None);
    }
}

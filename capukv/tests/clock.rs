//! The clock nemesis's probe: a server started under libfaketime ticks at
//! the rate its faked clock runs (its ticks come from a sleeping ticker
//! thread, which libfaketime scales), and the rate can change while it runs.
//! Needs Debian's libfaketime (the test command installs it).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capukv::Client;

const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// The server and its directory, both gone when the test ends (or fails).
struct Server(Child, std::path::PathBuf);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

async fn ticks(client: &Client, addr: &str) -> u64 {
    client.status_of(addr).await.expect("status").ticks
}

async fn ticks_in_3s(client: &Client, addr: &str) -> u64 {
    let before = ticks(client, addr).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    ticks(client, addr).await - before
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_under_libfaketime_ticks_at_its_clocks_rate() {
    assert!(
        Path::new(FAKETIME).is_file(),
        "{FAKETIME} is missing: install Debian's libfaketime (scripts/test.sh does)"
    );
    let dir = std::env::temp_dir().join(format!("capukv-clock-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let control = dir.join("faketime.rc");
    std::fs::write(&control, "+0 x0.25\n").unwrap();
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let (api, raft) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{}", port + 1));
    let child = Command::new(env!("CARGO_BIN_EXE_capukv"))
        .args(["server", "--id", "1", "--tick-ms", "20", "--api-addr", &api, "--raft-addr", &raft])
        .arg("--dir")
        .arg(dir.join("data"))
        .arg("--peers")
        .arg(format!("1={raft}"))
        .env("LD_PRELOAD", FAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", &control)
        .env("FAKETIME_CACHE_DURATION", "1")
        .env("FAKETIME_XRESET", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child, dir.clone());
    let mut client = Client::new([api.clone()]).unwrap();
    client.timeout = Duration::from_secs(20);
    // Up and leading (one node), and writes work on the skewed clock.
    client.set("k", "v").await.expect("a write on the slow clock");

    // A real clock gives 150 ticks of 20 ms in 3 s.
    let slow = ticks_in_3s(&client, &api).await;
    // Written whole and renamed, as the nemesis does: never read half-written.
    std::fs::write(control.with_extension("tmp"), "+0 x4\n").unwrap();
    std::fs::rename(control.with_extension("tmp"), &control).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await; // re-read within a second
    let fast = ticks_in_3s(&client, &api).await;
    println!("ticks in 3 s: {slow} at x0.25, {fast} at x4 (150 on a real clock)");
    assert!((20..=60).contains(&slow), "x0.25 should give about 37 ticks, got {slow}");
    assert!(fast >= 400, "x4 should give about 600 ticks, got {fast}");
    drop(server);
}

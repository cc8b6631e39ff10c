//! The report and the `serve` index in a real headless browser (Debian's
//! chromium): the pages load with no script errors, the verdict, plots and
//! timeline are in the DOM, and screenshots are written to
//! `$CARGO_TARGET_TMPDIR/screenshots/`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use checker::synth::{Synth, generate};
use checker::{EventType, ModelKind};

const CHAOS: &str = env!("CARGO_BIN_EXE_capukv-chaos");

fn chromium() -> &'static str {
    for candidate in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return candidate;
        }
    }
    panic!("no headless browser: install Debian's `chromium` (scripts/test.sh does)");
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Loads `url` headless; returns the DOM after scripts ran and writes a screenshot.
fn browse(url: &str, screenshot: &Path, height: u32) -> String {
    let profile = tempfile::tempdir().unwrap();
    let common = |cmd: &mut Command| {
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(format!("--window-size=1280,{height}"))
            .arg("--virtual-time-budget=5000");
    };
    let mut dump = Command::new(chromium());
    common(&mut dump);
    let out = dump.args(["--enable-logging=stderr", "--v=0", "--dump-dom", url]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    for line in stderr.lines().filter(|l| l.contains("CONSOLE")) {
        assert!(!line.contains("Uncaught") && !line.contains("Error"), "console error on {url}: {line}");
    }
    let mut shot = Command::new(chromium());
    common(&mut shot);
    let status =
        shot.arg(format!("--screenshot={}", screenshot.display())).arg(url).stderr(Stdio::null()).status().unwrap();
    assert!(status.success() && screenshot.is_file(), "no screenshot of {url}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A generated cas-register history made invalid, with a fault window.
fn invalid_history(path: &Path) {
    let mut cfg = Synth::new(9, ModelKind::CasRegister);
    (cfg.operations, cfg.keys, cfg.concurrency, cfg.values) = (3_000, 4, 8, 5);
    let mut h = generate(&cfg);
    let read = h.events.iter_mut().find(|e| e.f == "read" && e.kind == EventType::Ok).unwrap();
    read.value = serde_json::json!(777);
    let mut out = std::fs::File::create(path).unwrap();
    let mid = h.events.len() / 3;
    let mut index = 0;
    for (i, e) in h.events.iter_mut().enumerate() {
        if i == mid || i == 2 * mid {
            let f = if i == mid { "start-partition" } else { "stop-partition" };
            let line = serde_json::json!({"index": index, "type": "invoke", "process": "nemesis", "f": f, "value": null, "time": e.time});
            writeln!(out, "{line}").unwrap();
            index += 1;
        }
        e.index = index;
        index += 1;
        writeln!(out, "{}", serde_json::to_string(e).unwrap()).unwrap();
    }
}

fn assert_no_script_errors(dom: &str) {
    assert!(!dom.contains("data-script-errors"), "script errors: {}", &dom[..dom.len().min(400)]);
}

#[test]
fn the_report_of_an_invalid_run_loads_cleanly_with_verdict_plots_and_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let history = tmp.path().join("history.jsonl");
    invalid_history(&history);
    let dir = tmp.path().join("report");
    let out = Command::new(CHAOS)
        .args(["check", "--model", "cas-register", "--report"])
        .arg(&dir)
        .arg(&history)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let dom = browse(&format!("file://{}/index.html", dir.display()), &screenshots().join("report-invalid.png"), 2400);
    assert_no_script_errors(&dom);
    assert!(dom.contains("data-timeline=\"ready\""), "the timeline script did not finish");
    assert!(dom.contains(r#"id="verdict" class="verdict invalid""#));
    assert!(dom.contains("Why it is invalid"));
    for plot in ["plot-latency", "plot-throughput", "plot-quantiles"] {
        let at = dom.find(&format!("id=\"{plot}\"")).unwrap_or_else(|| panic!("{plot} missing"));
        assert!(dom[at..].starts_with(&format!("id=\"{plot}\"><svg")), "{plot} holds no svg");
    }
    assert!(dom.contains(">\npartition\n</text>"), "the fault window is labelled in the plots");
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_string(), body.to_string())
}

#[test]
fn serve_lists_runs_newest_first_and_serves_their_files() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    // Two run directories as `run` leaves them (run.json, results.json, history, report).
    let runs = [
        ("20261101T000000Z-register-kill", "20261101T000000Z", "valid", "register", "kill"),
        ("20261102T000000Z-cas-register-partition", "20261102T000000Z", "invalid", "cas-register", "partition"),
    ];
    for (name, started, verdict, workload, nemesis) in runs {
        let dir = reports.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        invalid_history(&dir.join("history.jsonl"));
        let code = Command::new(CHAOS)
            .args(["check", "--model", "cas-register", "--report"])
            .arg(&dir)
            .arg(dir.join("history.jsonl"))
            .output()
            .unwrap();
        assert!(code.status.code().is_some());
        let run = serde_json::json!({
            "options": {"nodes": 3, "time_limit": 10.0, "workload": workload, "nemesis": nemesis, "nemesis_interval": 10.0, "quiet_start": 3.0, "recovery_time": 5.0,
                        "concurrency": 10, "rate": 300.0, "op_timeout": 1.0, "ops_per_key": 200, "read_mode": "linearizable",
                        "client_binding": "node", "runtime": "netns", "seed": 1, "out": null, "reports": "reports", "capukv_bin": null,
                        "tick_ms": 50, "checker_timeout": 120.0, "keep_data": false},
            "seed": 1, "schedule": {"steps": []}, "command": [], "replay": "capukv-chaos replay x", "version": "0.1.0",
            "git_commit": null, "started_at": started,
        });
        std::fs::write(dir.join("run.json"), run.to_string()).unwrap();
        let results =
            serde_json::json!({"verdict": verdict, "operations": {"invoked": 3000, "ok": 2500}, "duration_s": 12.0});
        std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
    }
    let mut child = Command::new(CHAOS)
        .args(["serve", "--addr", "127.0.0.1:0", "--dir"])
        .arg(&reports)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let _server = Server(child);
    let url = line.split_whitespace().find(|w| w.starts_with("http://")).expect("serve prints its address").to_string();
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_string();

    let dom = browse(&url, &screenshots().join("serve-index.png"), 800);
    assert_no_script_errors(&dom);
    let newest = dom.find("20261102T000000Z-cas-register-partition").expect("the newer run is listed");
    let older = dom.find("20261101T000000Z-register-kill").expect("the older run is listed");
    assert!(newest < older, "newest first");
    assert!(dom.contains(r#"class="verdict invalid">INVALID"#) && dom.contains(r#"class="verdict valid">VALID"#));

    let run = "20261102T000000Z-cas-register-partition";
    let report = browse(&format!("{url}{run}/index.html"), &screenshots().join("serve-report.png"), 1600);
    assert!(report.contains("data-timeline=\"ready\""));
    let (status, body) = get(&addr, &format!("/{run}/history.jsonl"));
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.lines().count() > 1000);
    assert_eq!(get(&addr, &format!("/{run}/results.json")).0, "HTTP/1.1 200 OK");
    assert_eq!(get(&addr, "/../../etc/passwd").0, "HTTP/1.1 404 Not Found");
    assert_eq!(get(&addr, "/%2e%2e/%2e%2e/etc/passwd").0, "HTTP/1.1 404 Not Found");
}

/// Every `href` and `src` in an HTML page.
fn links(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["href=\"", "src=\""] {
        let mut rest = html;
        while let Some(at) = rest.find(attr) {
            rest = &rest[at + attr.len()..];
            if let Some(end) = rest.find('"') {
                out.push(rest[..end].to_string());
            }
        }
    }
    out
}

#[test]
fn a_published_site_opens_from_disk_and_every_link_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let reports = tmp.path().join("reports");
    let run = reports.join("20261103T000000Z-cas-register-partition");
    std::fs::create_dir_all(run.join("nodes/n1")).unwrap();
    invalid_history(&run.join("history.jsonl"));
    std::fs::write(run.join("nodes/n1/server.log"), "a log line\n").unwrap();
    let run_json = serde_json::json!({
        "options": {"nodes": 3, "time_limit": 10.0, "workload": "cas-register", "nemesis": "partition", "nemesis_interval": 10.0,
                    "quiet_start": 3.0, "recovery_time": 5.0, "concurrency": 10, "rate": 300.0, "op_timeout": 1.0, "ops_per_key": 200,
                    "read_mode": "stale", "client_binding": "node", "runtime": "netns", "seed": 3, "out": null, "reports": "reports",
                    "capukv_bin": null, "tick_ms": 50, "checker_timeout": 120.0, "keep_data": false},
        "seed": 3, "schedule": {"steps": []}, "command": [], "replay": "capukv-chaos replay x", "version": "0.1.0",
        "git_commit": "abc123", "started_at": "20261103T000000Z",
    });
    std::fs::write(run.join("run.json"), run_json.to_string()).unwrap();
    std::fs::write(
        run.join("results.json"),
        r#"{"verdict":"invalid","operations":{"invoked":3000,"ok":2000},"duration_s":10}"#,
    )
    .unwrap();
    // The run's own report links its raw files, as `run` writes it.
    let history = checker::History::read_file(&run.join("history.jsonl")).unwrap();
    let check = checker::check_history(&history, ModelKind::CasRegister, None, &checker::Budget::default()).unwrap();
    let info = checker::report::RunInfo {
        title: "published run".into(),
        links: harness::site::run_files(&run),
        ..Default::default()
    };
    checker::report::write(&run, &history, Some(&check), &info).unwrap();

    let site = tmp.path().join("site");
    let out = Command::new(CHAOS).args(["publish", "--dir"]).arg(&reports).arg("--out").arg(&site).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));

    // Walk every link from the index, one level into each run's page.
    let mut pages = vec![site.join("index.html")];
    let mut checked = 0;
    while let Some(page) = pages.pop() {
        let html = std::fs::read_to_string(&page).unwrap();
        for link in links(&html) {
            assert!(!link.starts_with("http") && !link.starts_with('/'), "{}: not relative: {link}", page.display());
            let target = page.parent().unwrap().join(&link);
            assert!(target.is_file(), "{}: broken link {link}", page.display());
            checked += 1;
            if link.ends_with("index.html") {
                pages.push(target);
            }
        }
    }
    assert!(checked >= 5, "only {checked} links");
    let index = std::fs::read_to_string(site.join("index.html")).unwrap();
    assert!(index.contains("1: 0 valid, 1 invalid") && index.contains("0.1.0 (abc123)"), "the summary is at the top");

    let dom = browse(&format!("file://{}/index.html", site.display()), &screenshots().join("published-index.png"), 700);
    assert_no_script_errors(&dom);
    assert!(dom.contains("id=\"site-summary\""));
    let report = browse(
        &format!("file://{}/20261103T000000Z-cas-register-partition/index.html", site.display()),
        &screenshots().join("published-report.png"),
        900,
    );
    assert!(report.contains("data-timeline=\"ready\""));
}

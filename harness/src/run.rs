//! One chaos run, start to verdict: cluster up, clients and nemesis at work,
//! final heal, recovery, final reads, teardown, check, results.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use capukv::Client;
use capukv::client::ReadMode;
use checker::{Budget, EventType, History, Process, Verdict, check_settled};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tokio::sync::watch;

use crate::checks;
use crate::exit;
use crate::nemesis::{self, Nemesis, Schedule};
use crate::options::{Binding, ReadModeChoice, RunOptions, RuntimeKind};
use crate::progress::Progress;
use crate::recorder::Recorder;
use crate::rundir::{self, RunRecord};
use crate::runtime::docker::DockerRuntime;
use crate::runtime::netns::{NetnsRuntime, ServerSettings, find_binary};
use crate::runtime::{NodeInfo, Runtime};
use crate::workload::{self, Completion, Op, Workload};

/// How a run ended.
#[derive(Debug)]
pub struct RunOutcome {
    pub dir: PathBuf,
    /// Follows the verdict (0/1/2), or 3 without one; the verdict is in `results`.
    pub exit_code: i32,
    pub results: serde_json::Value,
}

/// What the caller wants besides the options.
pub struct RunSettings {
    /// A recorded schedule to strike instead of planning one (replay).
    pub schedule: Option<Schedule>,
    /// Show the progress display.
    pub progress: bool,
    /// Appended to the run directory's name.
    pub dir_suffix: String,
    /// The command line to record.
    pub command: Vec<String>,
}

struct Shared {
    options: RunOptions,
    seed: u64,
    nodes: Vec<NodeInfo>,
    access: crate::runtime::Access,
    workload: Box<dyn Workload>,
    recorder: Arc<Recorder>,
}

fn client_for(shared: &Shared, slot: usize, mode: ReadMode) -> anyhow::Result<(Client, Option<Client>)> {
    let n = shared.nodes.len();
    let home = slot % n;
    let endpoints: Vec<String> = match shared.options.client_binding {
        Binding::Node => vec![shared.nodes[home].api_addr.clone()],
        Binding::Any => (0..n).map(|i| shared.nodes[(home + i) % n].api_addr.clone()).collect(),
    };
    let timeout = Duration::from_secs_f64(shared.options.op_timeout);
    let mut client = shared.access.client(endpoints)?;
    client.timeout = timeout;
    // An attempt without an answer is sent again within the operation's
    // time, as a real client would: the write id makes that safe, and it is
    // what exercises exactly-once.
    client.attempt_timeout = Some(timeout / 3);
    client.read_mode = ReadMode::Linearizable;
    // Reads start at the client's own node. Stale reads: that is what they
    // are for. Linearizable ones, when clients are bound to their nodes (as
    // in Jepsen): every read asks a follower first, so a follower that
    // answers one itself is caught; the read follows the redirect (or, with
    // the node down, goes on to the others) within itself.
    let reader = match (mode, shared.options.client_binding) {
        (ReadMode::Stale, _) => {
            let mut reader = shared.access.client([shared.nodes[home].api_addr.clone()])?;
            reader.timeout = timeout;
            reader.read_mode = mode;
            Some(reader)
        }
        (ReadMode::Linearizable, Binding::Node) => {
            // The others after it, for when the home node is down.
            let mut reader = shared.access.client((0..n).map(|i| shared.nodes[(home + i) % n].api_addr.clone()))?;
            reader.timeout = timeout;
            reader.attempt_timeout = client.attempt_timeout;
            reader.remember_leader = false;
            Some(reader)
        }
        _ => None,
    };
    Ok((client, reader))
}

/// An operation's invocation, with the id its write will carry in the
/// store's log (reads have none).
fn record_invoke(recorder: &Recorder, process: u64, op: &Op, write_id: Option<(u64, u64)>) {
    let mut event = client_event(EventType::Invoke, process, op, op.value.clone());
    event.write_id = write_id.map(|(client, seq)| checker::WriteId { client, seq });
    recorder.record_event(event);
}

fn record_completion(recorder: &Recorder, process: u64, op: &Op, done: &Completion) {
    let mut event = client_event(done.kind, process, op, done.value.clone());
    (event.error, event.revision, event.mod_revision) = (done.error.clone(), done.revision, done.mod_revision);
    recorder.record_event(event);
}

/// A client event; the recorder gives it its index and time.
fn client_event(kind: EventType, process: u64, op: &Op, value: serde_json::Value) -> checker::Event {
    // A transaction names its keys in its micro-operations.
    let key = (op.f != workload::F::Txn).then(|| op.key.as_str().into());
    checker::Event::new(0, kind, Process::Client(process), op.f.name(), key, value, 0)
}

/// One logical client slot: runs operations until the deadline or `stop`,
/// taking a new process number after every info, as Jepsen does.
async fn worker(
    shared: Arc<Shared>,
    slot: usize,
    deadline: Instant,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let options = &shared.options;
    let mode = if options.read_mode == ReadModeChoice::Stale { ReadMode::Stale } else { ReadMode::Linearizable };
    let mut rng =
        SmallRng::seed_from_u64(shared.seed.wrapping_add(0x9e37_79b9_7f4a_7c15u64.wrapping_mul(slot as u64 + 1)));
    let (mut client, mut reader) = client_for(&shared, slot, mode)?;
    let mut process = slot as u64;
    let interval = if options.rate > 0.0 { options.concurrency as f64 / options.rate } else { 0.0 };
    // Spread the clients' first operations over one interval.
    let mut next = Instant::now() + Duration::from_secs_f64(interval * rng.random::<f64>());
    loop {
        if !nemesis::sleep_until(next, &mut stop).await || Instant::now() >= deadline {
            return Ok(());
        }
        let op = shared.workload.next_op(&mut rng);
        // The id the write will carry (the session it takes is this one). A
        // write whose session cannot be opened is never sent: it failed.
        // A read, or a transaction of reads only, is not in the log.
        let write_id = if op.reads_only() {
            None
        } else {
            match client.next_write_id().await {
                Ok(id) => Some(id),
                Err(e) => {
                    record_invoke(&shared.recorder, process, &op, None);
                    let refused = workload::failed(&op, capukv::ClientError::NoSession(Box::new(e)));
                    record_completion(&shared.recorder, process, &op, &refused);
                    next = (next + Duration::from_secs_f64(interval)).max(Instant::now());
                    continue;
                }
            }
        };
        record_invoke(&shared.recorder, process, &op, write_id);
        let done =
            workload::execute(&client, reader.as_ref().unwrap_or(&client), &op, shared.workload.string_values()).await;
        record_completion(&shared.recorder, process, &op, &done);
        if done.kind == EventType::Info {
            process = next_process(process, options.concurrency);
            // The new process goes on with the old one's idle sessions (a
            // write in doubt took its own with it), so that its writes need
            // not first open one while the cluster may not answer.
            let sessions = client.take_sessions();
            (client, reader) = client_for(&shared, slot, mode)?;
            client.add_sessions(sessions);
        } else if done.kind == EventType::Ok && client.idle_sessions() < SPARE_SESSIONS {
            // Spares, opened while the cluster answers, for the writes in
            // doubt to come: each takes its session out of use.
            let _ = client.reserve_session().await;
        }
        let pause = interval * rng.random_range(0.5..1.5);
        next = (next + Duration::from_secs_f64(pause)).max(Instant::now());
    }
}

/// Idle sessions a client keeps ready, so that a run of writes in doubt
/// (each retiring its session) does not turn the next ones into failures
/// to open a session while the cluster is hurt.
const SPARE_SESSIONS: usize = 4;

/// The process a client slot continues as after an info (as in Jepsen, a
/// process that got an info never acts again). Never one of the final
/// reads' ids, however long the run.
fn next_process(process: u64, concurrency: usize) -> u64 {
    let next = process + concurrency as u64;
    assert!(next < crate::checks::stats::FINAL_READ_PROCESSES, "client process ids ran into the final reads' ids");
    next
}

/// Reads every key until one read succeeds (or `within` passes), each attempt
/// recorded under a fresh process. A transactional workload reads many keys
/// per transaction.
async fn final_reads(shared: &Shared, within: Duration) -> BTreeMap<String, Option<String>> {
    let endpoints: Vec<String> = shared.nodes.iter().map(|n| n.api_addr.clone()).collect();
    let mut reads = BTreeMap::new();
    let deadline = Instant::now() + within;
    let mut process = crate::checks::stats::FINAL_READ_PROCESSES;
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    for (keys, op) in shared.workload.final_reads(&shared.workload.keys()) {
        while Instant::now() < deadline {
            let Ok(mut client) = shared.access.client(endpoints.clone()) else { break };
            client.timeout = Duration::from_secs(3);
            record_invoke(&shared.recorder, process, &op, None);
            let done = workload::execute(&client, &client, &op, shared.workload.string_values()).await;
            record_completion(&shared.recorder, process, &op, &done);
            process += 1;
            if done.kind == EventType::Ok {
                if op.f == workload::F::Txn {
                    // Its reads, in the keys' order: ["r", key, list].
                    for (key, mop) in keys.iter().zip(done.value.as_array().into_iter().flatten()) {
                        reads.insert(key.clone(), text(&mop[2]));
                    }
                } else if let Some(key) = keys.first() {
                    reads.insert(key.clone(), text(&done.value));
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    reads
}

async fn wait_for_leader(runtime: &dyn Runtime, within: Duration) -> anyhow::Result<u64> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(leader) = nemesis::current_leader(runtime).await {
            return Ok(leader);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("no leader elected within {within:?}; see the nodes' logs")
}

fn require_root() -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "chaos runs create network namespaces or enter containers' to inject faults: run capukv-chaos as root (sudo)"
        );
    }
    Ok(())
}

/// The server binary: the real one, or for planted bugs and failpoints its
/// twin built with both.
fn server_binary(options: &RunOptions) -> anyhow::Result<std::path::PathBuf> {
    let given = options.capukv_bin.as_deref();
    if options.failpoints_build() { crate::runtime::netns::planted_binary(given) } else { find_binary(given, "capukv") }
        .map_err(anyhow::Error::msg)
}

/// Asks the server binary a question it answers by its exit status
/// (`planted-bugs --check NAME`, `failpoints --check`), so that a wrong
/// binary fails at once with the server's own words.
fn check_binary(binary: &std::path::Path, args: &[&str], what: &str) -> anyhow::Result<()> {
    let out = std::process::Command::new(binary)
        .args(args)
        .output()
        .with_context(|| format!("running {}", binary.display()))?;
    if !out.status.success() {
        bail!("{what}: {}: {}", binary.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Server arguments every runtime passes on.
fn server_args(options: &RunOptions) -> Vec<String> {
    options.planted_bug.iter().flat_map(|b| ["--planted-bug".to_string(), b.clone()]).collect()
}

/// Carries out a run. Errors are harness failures (exit 3); the directory is
/// in the error's context when it was made.
pub async fn run(mut options: RunOptions, settings: RunSettings) -> anyhow::Result<RunOutcome> {
    options.validate().map_err(anyhow::Error::msg)?;
    let seed = options.seed.unwrap_or_else(rand::random);
    options.seed = Some(seed);
    require_root()?;
    let binary = match options.runtime {
        RuntimeKind::Netns => server_binary(&options)?,
        // The image holds the server.
        RuntimeKind::Docker => std::path::PathBuf::new(),
    };
    if let Some(bug) = &options.planted_bug
        && options.runtime == RuntimeKind::Netns
    {
        check_binary(&binary, &["planted-bugs", "--check", bug], &format!("--planted-bug {bug}"))?;
    }
    if options.failpoints() {
        check_binary(&binary, &["failpoints", "--check"], "failpoints")?;
    }
    if options.runtime == RuntimeKind::Docker && !crate::runtime::docker::available() {
        bail!("--runtime docker: no Docker engine answers (is dockerd running?)");
    }
    let dir = rundir::choose(&options, &settings.dir_suffix);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    rundir::link_latest(&options.reports, &dir);
    let schedule = settings.schedule.clone().unwrap_or_else(|| nemesis::schedule::plan(&options, seed));
    let mut record = RunRecord {
        replay: format!("capukv-chaos replay {}", dir.display()),
        options: options.clone(),
        seed,
        schedule: schedule.clone(),
        command: settings.command.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: Some(env!("CAPUKV_GIT_COMMIT").to_string()).filter(|c| !c.is_empty()),
        started_at: rundir::timestamp(SystemTime::now()),
        runtime: json!(null),
        network_backends: Vec::new(),
        server_knobs: crate::knobs::ServerKnobs::for_run(&options, seed),
    };
    record.write(&dir)?;
    let progress = Arc::new(Progress::new(settings.progress));

    // Ctrl-C and SIGTERM stop the run; what was recorded stays, the rest is removed.
    let (stop_tx, stop_rx) = watch::channel(false);
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let (stop_tx, interrupted) = (stop_tx.clone(), interrupted.clone());
        tokio::spawn(async move {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            let terminated = async {
                match term.as_mut() {
                    Some(t) => t.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminated => {}
            }
            interrupted.store(true, Ordering::SeqCst);
            let _ = stop_tx.send(true);
        });
    }

    progress.phase("starting");
    let creating = Instant::now();
    let knobs = &record.server_knobs;
    let settings_for_servers = ServerSettings {
        binary,
        tick_ms: knobs.tick_ms,
        snapshot_every: knobs.snapshot_every,
        extra_args: [server_args(&options), knobs.args_besides_tick_and_snapshot()].concat(),
        lazyfs: options.lazyfs().then_some(lazyfs::Options { torn_writes: options.torn_writes, seed }),
        faketime: if options.faketime() && options.runtime == RuntimeKind::Netns {
            Some(crate::runtime::netns::find_faketime().map_err(anyhow::Error::msg)?)
        } else {
            None
        },
        tls: options.tls,
    };
    let runtime: Arc<dyn Runtime> = match options.runtime {
        RuntimeKind::Netns => {
            let (nodes, dir2, keep) = (options.nodes, dir.clone(), options.keep_data);
            Arc::new(
                tokio::task::spawn_blocking(move || NetnsRuntime::create(nodes, &dir2, settings_for_servers, keep))
                    .await??,
            )
        }
        RuntimeKind::Docker => {
            let args = [record.server_knobs.args(), server_args(&options)].concat();
            let (nodes, dir2, tick, tls) = (options.nodes, dir.clone(), record.server_knobs.tick_ms, options.tls);
            Arc::new(tokio::task::spawn_blocking(move || DockerRuntime::create(nodes, &dir2, tick, args, tls)).await??)
        }
    };
    record.runtime = runtime.describe();
    record.runtime["create_s"] = json!(creating.elapsed().as_secs_f64());
    record.write(&dir)?;
    let outcome = drive(
        &options,
        seed,
        schedule,
        runtime.clone(),
        &dir,
        progress.clone(),
        stop_tx,
        stop_rx,
        &interrupted,
        &mut record,
    )
    .await;
    progress.phase("teardown");
    let rt = runtime.clone();
    let teardown = tokio::task::spawn_blocking(move || rt.teardown()).await?;
    progress.finish();
    match outcome {
        Ok(results) => {
            teardown.context("tearing the cluster down")?;
            Ok(RunOutcome { dir, ..results })
        }
        Err(e) => {
            let results = json!({
                "seed": seed,
                "verdict": null,
                "harness_failure": format!("{e:#}"),
                "exit_code": exit::HARNESS_FAILED,
            });
            let _ = std::fs::write(dir.join(rundir::RESULTS_JSON), serde_json::to_string_pretty(&results)? + "\n");
            Err(e.context(format!("run directory {}", dir.display())))
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn drive(
    options: &RunOptions,
    seed: u64,
    schedule: Schedule,
    runtime: Arc<dyn Runtime>,
    dir: &std::path::Path,
    progress: Arc<Progress>,
    stop_tx: watch::Sender<bool>,
    stop_rx: watch::Receiver<bool>,
    interrupted: &AtomicBool,
    record: &mut RunRecord,
) -> anyhow::Result<RunOutcome> {
    let started = Instant::now();
    for node in runtime.nodes() {
        runtime.start(node.id)?;
    }
    let leader = wait_for_leader(&*runtime, Duration::from_secs(30)).await?;
    let leader_s = started.elapsed().as_secs_f64();
    tracing::info!(leader, "cluster up");

    let start = Instant::now();
    let recorder = Arc::new(Recorder::create(&dir.join(rundir::HISTORY), start)?);
    let shared = Arc::new(Shared {
        options: options.clone(),
        seed,
        nodes: runtime.nodes().to_vec(),
        access: runtime.access().clone(),
        workload: workload::build(options),
        recorder: recorder.clone(),
    });
    let nemesis = Arc::new(Nemesis::new(runtime.clone(), recorder.clone(), seed));
    let deadline = start + Duration::from_secs_f64(options.time_limit);

    progress.phase("workload");
    let mut workers = tokio::task::JoinSet::new();
    for slot in 0..options.concurrency {
        workers.spawn(worker(shared.clone(), slot, deadline, stop_rx.clone()));
    }
    let (nemesis_stop_tx, nemesis_stop_rx) = watch::channel(false);
    let nemesis_task = tokio::spawn(nemesis.clone().run(schedule, start, nemesis_stop_rx));
    let display = {
        let (progress, recorder, nemesis, limit) =
            (progress.clone(), recorder.clone(), nemesis.clone(), options.time_limit);
        tokio::spawn(async move {
            loop {
                let active = nemesis.active.lock().expect("not poisoned").clone();
                progress.update(start.elapsed(), limit, &recorder.counts, active.as_deref());
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    let mut worker_error = None;
    while let Some(done) = workers.join_next().await {
        if let Err(e) = done.map_err(anyhow::Error::from).and_then(|r| r) {
            worker_error.get_or_insert(e);
            let _ = stop_tx.send(true);
        }
    }
    let workload_s = start.elapsed().as_secs_f64();
    let _ = nemesis_stop_tx.send(true);
    let nemesis_result = nemesis_task.await?;
    progress.phase("healing");
    let n2 = nemesis.clone();
    let healed = tokio::task::spawn_blocking(move || n2.heal_everything()).await?;
    record.network_backends = nemesis.backends.lock().expect("not poisoned").clone();
    record.write(dir)?;

    let interrupted = interrupted.load(Ordering::SeqCst);
    let mut final_values = BTreeMap::new();
    let mut findings = Vec::new();
    let mut raft_logs = Vec::new();
    if !interrupted && worker_error.is_none() && nemesis_result.is_ok() && healed.is_ok() {
        progress.phase("recovering");
        let mut stop = stop_rx.clone();
        nemesis::sleep_until(Instant::now() + Duration::from_secs_f64(options.recovery_time), &mut stop).await;
        progress.phase("final reads");
        final_values = final_reads(&shared, Duration::from_secs(30)).await;
        progress.phase("comparing replicas");
        findings.push(checks::replicas::check(&*runtime, Duration::from_secs(20)).await);
        progress.phase("reading the logs");
        raft_logs = checks::raft_log::read(&*runtime, Duration::from_secs(60)).await;
    }
    display.abort();
    recorder.finish().context("writing the history")?;
    let counts = recorder.counts.snapshot();
    let struck: Vec<String> = nemesis.struck.lock().expect("not poisoned").iter().cloned().collect();
    let mut results = json!({
        "seed": seed,
        "replay": record.replay,
        "duration_s": started.elapsed().as_secs_f64(),
        "operations": {"invoked": counts.0, "ok": counts.1, "fail": counts.2, "info": counts.3},
        // Successful operations per second of the workload (faults included).
        "throughput": {"workload_s": workload_s, "ok_per_s": counts.1 as f64 / workload_s.max(1e-9)},
        "nemesis": {"struck": struck.clone(), "scheduled": record.schedule.steps.len(), "backends": record.network_backends},
        "final_reads": final_values,
        // Creating the namespaces or containers, then starting the servers until one leads.
        "cluster_start": {
            "create_s": record.runtime["create_s"],
            "leader_s": leader_s,
            "total_s": record.runtime["create_s"].as_f64().unwrap_or(0.0) + leader_s,
        },
    });
    // Anything that stopped the run early makes it a harness failure, with the partial history kept.
    let failure = if interrupted {
        Some("interrupted (Ctrl-C or SIGTERM)".to_string())
    } else {
        worker_error
            .map(|e| format!("a client failed: {e:#}"))
            .or_else(|| nemesis_result.err().map(|e| format!("the nemesis failed: {e:#}")))
            .or_else(|| healed.err().map(|e| format!("the final heal failed: {e:#}")))
    };
    if let Some(reason) = failure {
        results["verdict"] = json!(null);
        results["harness_failure"] = json!(reason);
        results["exit_code"] = json!(exit::HARNESS_FAILED);
        std::fs::write(dir.join(rundir::RESULTS_JSON), serde_json::to_string_pretty(&results)? + "\n")?;
        crate::report::write_unchecked(dir, record, &results);
        return Ok(RunOutcome { dir: dir.to_path_buf(), exit_code: exit::HARNESS_FAILED, results });
    }

    progress.phase("checking");
    let history = History::read_file(&dir.join(rundir::HISTORY)).context("reading back the history")?;
    // The cluster is still up: what the history says held at a revision
    // must read so there.
    let probes = checks::versions::probes(&history.events);
    let endpoints: Vec<String> = shared.nodes.iter().map(|n| n.api_addr.clone()).collect();
    findings.push(checks::versions::check(&shared.access, endpoints, &probes, Duration::from_secs(30)).await);
    // A chaos run's report shows every key it could decide, not only the first invalid one.
    let budget =
        Budget { timeout: Duration::from_secs_f64(options.checker_timeout), all_keys: true, ..Budget::default() };
    let model = shared.workload.model();
    // The info writes the nodes' logs settle (written beside the history, so
    // that `check --settlement` repeats the check).
    let (audit, settlement, settled) = checks::raft_log::examine(&history, &raft_logs, shared.nodes.len());
    findings.push(audit);
    std::fs::write(dir.join(rundir::SETTLEMENT), serde_json::to_string(&settlement)? + "\n")?;
    results["settlement"] = json!(settled);
    let transactional = shared.workload.transactional();
    let (report, transactions, history) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let report =
            check_settled(&history, model, None, &budget, Some(&settlement)).context("checking the history")?;
        // Transactions are checked as a whole, for strict serializability.
        let transactions =
            transactional.then(|| checker::txn::check(&history).context("checking the transactions")).transpose()?;
        Ok((report, transactions, history))
    })
    .await??;
    let mut reasons = Vec::new();
    if let Some(t) = &transactions {
        if !t.valid {
            reasons.push(format!("transactions: {}", t.summary()));
        }
        results["transactions"] = serde_json::to_value(t)?;
    }
    if report.invalid_keys > 0 {
        reasons.push(format!("{} of {} keys are not linearizable", report.invalid_keys, report.keys));
    }
    if let Some(r) = report.revisions.as_ref().filter(|r| !r.is_valid()) {
        let broken: Vec<String> = r.counts.iter().map(|(rule, n)| format!("{n} × {}", rule.describe())).collect();
        reasons.push(format!("revisions: {}", broken.join(", ")));
    }
    if let Some(lost) = shared.workload.lost_writes(&history.events, &final_values) {
        if !lost.is_empty() {
            reasons.push(format!("acknowledged writes lost on {} keys", lost.len()));
        }
        results["lost_appends"] = json!(lost);
        results["final_reads_missing"] =
            json!(shared.workload.keys().into_iter().filter(|k| !final_values.contains_key(k)).collect::<Vec<_>>());
    }
    // Docker keeps its containers' logs itself: fetched now, or the scan
    // would find none.
    runtime.collect_logs();
    let logs: Vec<(String, &std::path::Path)> =
        shared.nodes.iter().map(|n| (n.name.clone(), n.log.as_path())).collect();
    // A failpoint's crash or injected error is written with its name; a
    // node whose disk was corrupted on purpose may say so.
    let mut excused = checks::logs::Excuses::default();
    if struck.iter().any(|k| k == "failpoint") {
        excused.everywhere.push("failpoint".into());
    }
    for &node in nemesis.corrupted.lock().expect("not poisoned").iter() {
        for pattern in ["is corrupt", "Corruption", "checksum"] {
            excused.on_node.push((format!("n{node}"), pattern.into()));
        }
    }
    findings.push(checks::logs::check(&logs, &excused));
    findings.push(checks::stats::check(&history.events, options.min_ok_share));
    reasons.extend(
        findings.iter().filter(|f| f.outcome == checks::Outcome::Failed).map(|f| format!("{}: {}", f.check, f.summary)),
    );
    let vacuous = findings.iter().any(|f| f.outcome == checks::Outcome::Vacuous);
    let (verdict, code) = if !reasons.is_empty() {
        ("invalid", exit::INVALID)
    } else if report.verdict == Verdict::Unknown {
        ("unknown", exit::UNKNOWN)
    } else if vacuous {
        ("vacuous", exit::VACUOUS)
    } else {
        ("valid", exit::VALID)
    };
    results["verdict"] = json!(verdict);
    results["invalid_reasons"] = json!(reasons);
    results["checks"] = json!(findings);
    results["detection"] = detection(&history, &report, transactions.as_ref());
    if verdict == "invalid" {
        results["signature"] = json!(signature(&history, &report, transactions.as_ref(), &results));
    }
    results["exit_code"] = json!(code);
    results["check"] = serde_json::to_value(&report)?;
    std::fs::write(dir.join(rundir::RESULTS_JSON), serde_json::to_string_pretty(&results)? + "\n")?;
    progress.phase("report");
    crate::report::write(dir, record, &results, &history, &report);
    Ok(RunOutcome { dir: dir.to_path_buf(), exit_code: code, results })
}

/// The earliest-invoked operation, over every invalid key, that the checker
/// could not place after the longest linearizable prefix (or, where no
/// counterexample was found in time, the one the append inference refuted).
fn first_unplaced(report: &checker::CheckReport) -> Option<&checker::Operation> {
    report
        .results
        .iter()
        .filter_map(|k| match &k.counterexample {
            Some(cx) => cx.unplaced.iter().filter_map(|u| k.ops.get(u.op)).min_by_key(|op| op.invoke_time),
            None => k.refuted_op.and_then(|op| k.ops.get(op)),
        })
        .min_by_key(|op| op.invoke_time)
}

/// A short name for why a run is invalid, the same for runs that failed the
/// same way (so repeated failures group in a suite's summary): the check
/// that failed, what kind of thing failed it, and the fault kinds in force
/// when it was first seen, e.g. `linearizability[read] under partition`.
fn signature(
    history: &History,
    report: &checker::CheckReport,
    transactions: Option<&checker::txn::TxnReport>,
    results: &serde_json::Value,
) -> String {
    let first_unplaced = first_unplaced(report);
    let anomaly = transactions.and_then(|t| t.counts.keys().next().map(|k| (k.name(), t.first_anomaly_time)));
    let failed_check = results["checks"]
        .as_array()
        .and_then(|c| c.iter().find(|f| f["outcome"] == "failed"))
        .and_then(|f| f["check"].as_str());
    let revision =
        report.revisions.as_ref().and_then(|r| r.violations.iter().min_by_key(|v| v.ops.last().map(|o| o.invoke_time)));
    let (what, at) = if let Some((kind, at)) = anomaly {
        (format!("txn[{kind}]"), at)
    } else if let Some(op) = first_unplaced {
        (format!("linearizability[{}]", op.kind()), Some(op.invoke_time))
    } else if let Some(v) = revision {
        (format!("revisions[{}]", v.rule.name()), v.ops.last().map(|o| o.invoke_time))
    } else if results["lost_appends"].as_object().is_some_and(|l| !l.is_empty()) {
        ("lost-append".to_string(), None)
    } else {
        (failed_check.unwrap_or("invalid").to_string(), None)
    };
    let kinds = nemesis::kinds_in_force(&history.events, at);
    if kinds.is_empty() { what } else { format!("{what} under {}", kinds.join("+")) }
}

/// When the first fault struck and when the first operation began that the
/// checker could not place (seconds from the start of the workload): their
/// difference is the run's time to detect.
fn detection(
    history: &History,
    report: &checker::CheckReport,
    transactions: Option<&checker::txn::TxnReport>,
) -> serde_json::Value {
    let seconds = |ns: u64| ns as f64 / 1e9;
    let first_fault = history
        .events
        .iter()
        .find(|e| e.process == Process::Nemesis && e.kind == EventType::Invoke && e.f != "heal-all")
        .map(|e| seconds(e.time));
    // A revision that contradicts real time is detected where it was given.
    let revision = report.revisions.as_ref().and_then(|r| r.first_violation()).map(|o| o.invoke_time);
    let anomaly = transactions.and_then(|t| t.first_anomaly_time);
    let first_unplaced =
        first_unplaced(report).map(|op| op.invoke_time).into_iter().chain(revision).chain(anomaly).min().map(seconds);
    json!({"first_fault_s": first_fault, "first_unplaced_s": first_unplaced})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_process_ids_never_reach_the_final_reads() {
        // A day of a dead cluster: every client gets an info per 100 ms
        // timeout, 1,000 clients (the most --concurrency allows).
        let infos_per_slot = 24 * 3600 * 10;
        let mut process = 999;
        for _ in 0..infos_per_slot {
            process = next_process(process, 1000);
        }
        assert!(process < crate::checks::stats::FINAL_READ_PROCESSES, "{process}");
    }
}

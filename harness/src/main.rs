//! `capukv-chaos`: the chaos harness's command line.

mod cmd;

use clap::{Parser, Subcommand};
use harness::exit;

#[derive(Parser)]
#[command(name = "capukv-chaos", version, about = "Chaos testing and linearizability checking for CapuKV")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a cluster under faults, record the history, check it.
    Run(cmd::run::RunArgs),
    /// Run a recorded run again (same options, seed and faults) and compare verdicts.
    Replay(cmd::replay::ReplayArgs),
    /// Check a recorded history for linearizability.
    Check(cmd::check::CheckArgs),
    /// Remove what a crashed run left behind: namespaces, links, rules, containers, networks, volumes.
    Cleanup(cmd::cleanup::CleanupArgs),
    /// Browse run directories over HTTP: an index of runs, reports, raw files.
    Serve(cmd::serve::ServeArgs),
    /// Run a suite file's matrix of runs within its time budget.
    Suite(cmd::suite::SuiteArgs),
    /// Write a static site of runs: an index and every run's report and files.
    Publish(cmd::publish::PublishArgs),
    /// Write a random concurrent history from a simulated store (valid unless
    /// told to misbehave), to try or time the checker on.
    Synth(cmd::synth::SynthArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn,fuser=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { exit::USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    let code = match cli.command {
        Command::Run(args) => cmd::run::main(args),
        Command::Replay(args) => cmd::replay::main(args),
        Command::Check(args) => cmd::check::run(args),
        Command::Cleanup(args) => cmd::cleanup::main(args),
        Command::Serve(args) => cmd::serve::main(args),
        Command::Suite(args) => cmd::suite::main(args),
        Command::Publish(args) => cmd::publish::main(args),
        Command::Synth(args) => cmd::synth::run(args),
    };
    std::process::exit(code);
}

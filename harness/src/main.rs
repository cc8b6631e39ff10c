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
    /// Check a recorded history for linearizability.
    Check(cmd::check::CheckArgs),
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
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
        Command::Check(args) => cmd::check::run(args),
    };
    std::process::exit(code);
}

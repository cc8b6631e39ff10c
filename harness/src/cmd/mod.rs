//! One module per subcommand.

pub mod check;
pub mod cleanup;
pub mod publish;
pub mod replay;
pub mod run;
pub mod serve;
pub mod suite;
pub mod synth;

/// The async runtime a subcommand runs on; `Err` holds the exit status, the
/// reason already printed.
pub fn async_runtime() -> Result<tokio::runtime::Runtime, i32> {
    tokio::runtime::Runtime::new().map_err(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        harness::exit::HARNESS_FAILED
    })
}

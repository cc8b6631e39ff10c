//! One module per subcommand.

pub mod check;
pub mod cleanup;
pub mod publish;
pub mod replay;
pub mod run;
pub mod serve;
pub mod suite;

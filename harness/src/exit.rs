//! Exit statuses of `capukv-chaos`, a contract scripts rely on.

use checker::Verdict;

pub const VALID: i32 = 0;
pub const INVALID: i32 = 1;
pub const UNKNOWN: i32 = 2;
/// The harness itself failed (a run could not be carried out).
pub const HARNESS_FAILED: i32 = 3;
/// The run proves nothing: too few operations succeeded (see
/// `checks::stats`).
pub const VACUOUS: i32 = 4;
/// Bad command-line usage (sysexits EX_USAGE).
pub const USAGE: i32 = 64;
/// The input (a history) is malformed (sysexits EX_DATAERR).
pub const MALFORMED_INPUT: i32 = 65;
/// The input cannot be opened (sysexits EX_NOINPUT).
pub const NO_INPUT: i32 = 66;

pub fn of_verdict(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Valid => VALID,
        Verdict::Invalid => INVALID,
        Verdict::Unknown => UNKNOWN,
    }
}

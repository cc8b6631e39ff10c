//! `capukv-chaos publish --dir reports --out site/`: a static site of runs,
//! with relative links only, to host anywhere or open from disk.

use std::path::PathBuf;

use clap::Args;
use harness::exit;

#[derive(Args)]
pub struct PublishArgs {
    /// The directory holding run directories.
    #[arg(long, default_value = "reports")]
    pub dir: PathBuf,
    /// Where the site is written.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn main(args: PublishArgs) -> i32 {
    if !args.dir.is_dir() {
        eprintln!("error: {} is not a directory of runs", args.dir.display());
        return exit::NO_INPUT;
    }
    match harness::site::publish(&args.dir, &args.out) {
        Ok(p) => {
            println!("published {} runs ({} files) to {}", p.runs, p.files, args.out.join("index.html").display());
            exit::VALID
        }
        Err(e) => {
            eprintln!("error: cannot publish to {}: {e}", args.out.display());
            exit::HARNESS_FAILED
        }
    }
}

//! `capukv-chaos cleanup`: removes what a crashed run left on the machine
//! (namespaces with their servers, links, firewall rules, found by name;
//! containers, networks and volumes, found by the `capukv.run` label).

use clap::Args;
use harness::exit;

#[derive(Args)]
pub struct CleanupArgs {
    /// Only objects of this run (`capukv-ID`, from run.json's runtime.topology).
    #[arg(long, default_value = "capukv-")]
    pub prefix: String,
}

pub fn main(args: CleanupArgs) -> i32 {
    if !args.prefix.starts_with(netem::topology::PREFIX) {
        eprintln!(
            "error: --prefix must start with {:?}: cleanup only removes what CapuKV made",
            netem::topology::PREFIX
        );
        return exit::USAGE;
    }
    if harness::runtime::docker::available() {
        // A run's label is its id: `capukv-ID` names it.
        let run = args.prefix.strip_prefix("capukv-").filter(|id| !id.is_empty());
        match harness::runtime::docker::remove_labelled(run) {
            Ok(r) => println!("removed {} containers, {} networks, {} volumes", r.containers, r.networks, r.volumes),
            Err(e) => {
                eprintln!("error: docker cleanup failed: {e}");
                return exit::HARNESS_FAILED;
            }
        }
    }
    // lazyfs mounts of crashed runs (data directories of the power nemesis);
    // they carry no run id, so only a cleanup of everything removes them.
    let every_run = args.prefix == netem::topology::PREFIX || args.prefix == "capukv-";
    match lazyfs::mounts().map(|m| if every_run { m } else { Vec::new() }) {
        Ok(mounts) => {
            for m in mounts {
                match lazyfs::force_unmount(&m) {
                    Ok(()) => println!("unmounted lazyfs {}", m.display()),
                    Err(e) => eprintln!("error: cannot unmount lazyfs {}: {e}", m.display()),
                }
            }
        }
        Err(e) => eprintln!("error: cannot list mounts: {e}"),
    }
    match netem::cleanup_prefix(&args.prefix) {
        Ok(removed) => {
            println!(
                "removed {} namespaces, {} links, {} forward rules",
                removed.namespaces.len(),
                removed.links.len(),
                removed.forward_rules
            );
            for ns in removed.namespaces {
                println!("  netns {ns}");
            }
            for link in removed.links {
                println!("  link {link}");
            }
            exit::VALID
        }
        Err(e) => {
            eprintln!("error: cleanup failed: {e}");
            exit::HARNESS_FAILED
        }
    }
}

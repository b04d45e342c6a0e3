//! The `qa` command: `qa bench --out DIR [--area AREA]...` writes the
//! benchmark figures (format in BENCH.md), of every area or those named;
//! `qa cluster` runs three hosted nodes to try until Ctrl-C. Both need root
//! (network namespaces, nftables).

mod bench;
mod cluster;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// QA tools for the appliance: benchmarks and a local cluster.
#[derive(Debug, Parser)]
#[command(name = "qa", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Measures the figures of BENCH.md and writes them as JSON per area plus
    /// a README.md table (run the release build: `make bench`).
    Bench {
        /// Output directory (created when missing).
        #[arg(long, default_value = "out/bench")]
        out: PathBuf,
        /// Runs per figure; the median is reported.
        #[arg(long, default_value_t = 7)]
        runs: usize,
        /// Measures only these areas (repeatable: firewall, applianced,
        /// image, cluster, management); all of them when absent.
        #[arg(long = "area", value_enum)]
        areas: Vec<bench::Area>,
        /// The built image the VM figures boot (`make image`'s output).
        #[arg(long, default_value_os_t = qa::vm::Built::default_out())]
        image: PathBuf,
    },
    /// Starts node-a, node-b and node-c on one LAN plus a client namespace,
    /// prints how to reach them and waits for Ctrl-C, then cleans up.
    Cluster,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !qa::is_root() {
        eprintln!("qa: needs root (it creates network namespaces and nftables rulesets); run it with sudo");
        return ExitCode::FAILURE;
    }
    let result = match cli.command {
        Cmd::Bench {
            out,
            runs,
            areas,
            image,
        } => bench::run(&out, runs.clamp(1, 101), &areas, &image),
        Cmd::Cluster => cluster::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("qa: {e:#}");
            ExitCode::FAILURE
        }
    }
}

//! applianced: the appliance init daemon.
//!
//! Decides once what it is: stage 1 (PID 1 in the initramfs), stage 2 (PID 1
//! on the root filesystem: boot the machine, then the daemon) or hosted (an
//! ordinary process in a network namespace, for tests and trials). The daemon
//! itself ([`daemon`]) is the same in both of the last two.

mod api;
mod args;
mod boot;
mod cluster;
mod daemon;
mod desired;
mod error;
#[cfg(feature = "failpoints")]
mod failpoints;
mod identity;
mod leftovers;
mod logging;
mod mode;
mod nft;
mod node;
mod ready;
mod reconcilers;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing::error;

use crate::args::Args;
use crate::mode::{Mode, Start};

fn main() -> ExitCode {
    let start = Start::detect();
    // Test builds only. PID 1 boots on without a refused entry (the console
    // names it); a hosted test gets an exit status.
    #[cfg(feature = "failpoints")]
    if let Err(e) = failpoints::setup() {
        eprintln!("applianced: {e}");
        if start == Start::Hosted {
            return ExitCode::FAILURE;
        }
    }
    match start {
        Start::Stage1 => boot::stage1::run(),
        Start::Stage2 => boot::stage2::run(),
        Start::Hosted => hosted(),
    }
}

/// Hosted mode: checks, then the daemon until SIGTERM or SIGINT.
fn hosted() -> ExitCode {
    let mut args = Args::parse();
    if let Err(e) = prepare(&mut args) {
        eprintln!("applianced: {}", report(&e));
        return ExitCode::FAILURE;
    }
    // Before any thread exists: unshare acts on the calling thread only.
    if let Err(e) = mode::enter_hosted() {
        eprintln!("applianced: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("applianced: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(daemon::run(args, Mode::Hosted, None)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            let text = report(&e);
            error!("{text}");
            eprintln!("applianced: {text}");
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause once: many errors already
/// quote their source, which the chain would then repeat.
fn report(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain().map(ToString::to_string) {
        if !text.contains(&cause) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&cause);
        }
    }
    text
}

/// Hosted checks, directories and logging, before threads.
fn prepare(args: &mut Args) -> anyhow::Result<()> {
    if !args.allow_host_netns {
        const HOW: &str = "run it inside a network namespace made for it \
             (ip netns add NAME; ip netns exec NAME applianced ...) or pass --allow-host-netns";
        match mode::check_netns(&mode::NetnsPaths::default()) {
            mode::NetnsCheck::Own => {}
            mode::NetnsCheck::Initial => anyhow::bail!(
                "refusing to run in this machine's own network namespace: hosted applianced \
                 would reconfigure its network; {HOW}"
            ),
            mode::NetnsCheck::Unknown(why) => anyhow::bail!(
                "refusing to run: cannot tell whether this is the machine's own network \
                 namespace ({why}), and hosted applianced would reconfigure it; {HOW}"
            ),
        }
    }
    daemon::prepare_common(args, std::io::stderr().is_terminal())
}

#[cfg(test)]
mod tests {
    use super::report;

    #[test]
    fn report_names_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file");
        let quoted = anyhow::Error::new(io).context("cannot read manifest x: No such file");
        let e = quoted.context("loading service manifests from x");
        assert_eq!(
            report(&e),
            "loading service manifests from x: cannot read manifest x: No such file"
        );
    }
}

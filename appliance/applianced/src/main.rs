//! applianced: the appliance init daemon.
//!
//! Decides once what it is: stage 1 (PID 1 in the initramfs), stage 2 (PID 1
//! on the root filesystem: boot the machine, then the daemon) or hosted (an
//! ordinary process in a network namespace, for tests and trials). The daemon
//! itself ([`daemon`]) is the same in both of the last two.
//!
//! # Layers
//!
//! A module imports only from the layers below it, never from above; there
//! are no import loops (`tests/module_layers.rs` fails on one and prints it).
//! From the bottom:
//!
//! 1. leaf helpers: [`time`], [`console`] (the administrator's lines, for the
//!    boot and the daemon alike), [`args`], [`mode`], [`logging`], [`nft`],
//!    [`identity`], `failpoints` (test builds);
//! 2. the desired state: [`desired`] (with [`desired::cluster`], the part the
//!    cluster's membership adds), then [`mod@error`];
//! 3. the node and its reconcilers: [`observations`], [`leftovers`], [`node`],
//!    [`ready`];
//! 4. the cluster side: [`cluster`];
//! 5. the node API: [`api`], and beside it the management plane's
//!    `Admin` service: [`admin`] (accounts, settings, audit trail,
//!    management TLS; served on the same Unix socket only);
//! 6. the daemon: [`daemon`];
//! 7. PID 1's boot ([`boot`]) and this file. The boot hands the daemon what
//!    only PID 1 does ([`daemon::Pid1`]: where the machine id goes, the
//!    first-boot configuration, the power buttons) as values and callbacks.
//!
//! Inside a folder module the same holds: in [`cluster`], `ctx` (shared
//! state) sits below `tasks`, `hooks` and `api`, and `mod.rs` on top.
//!
//! # Where the reconcilers are
//!
//! The design names three reconcilers: network, firewall and services. They
//! are not three modules, because one change of the desired state moves them
//! together as one transaction that undoes itself on failure:
//! `Node::transition` in [`node`] is all three, in this order:
//!
//! 1. network, plan: `appliance_netcfg::plan` against the observed links;
//!    a config that does not fit the machine is refused before anything
//!    is touched;
//! 2. firewall: `Firewall::apply` of `Desired::firewall_spec` (one atomic
//!    nft transaction);
//! 3. network, apply: `Netcfg::apply_from`, then `Node::apply_host`
//!    (hostname, resolv.conf); on failure `Node::undo_network` and
//!    `Node::undo_firewall` restore the previous generation;
//! 4. commit of the desired record to the state database;
//! 5. services: `Supervisor::set_placed` with `Desired::placement`.
//!
//! Each records its last observation in [`observations`] (what `status`
//! shows). Every input (config file, API, cluster membership) enters through
//! `Node::set_config`, `Node::change_peer` or `Node::set_cluster`, which call
//! `transition`. The periodic reconcile, `node::reconcile_loop` (every
//! `--reconcile-interval`), calls `Node::reconcile`: the same `transition`
//! on the current desired state, so drift is repaired and observations stay
//! fresh. The supervisor restarts failed services by itself between runs.

mod admin;
mod api;
mod args;
mod boot;
mod cluster;
mod console;
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
mod observations;
mod ready;
mod time;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing::error;

use crate::args::Args;
use crate::error::report;
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

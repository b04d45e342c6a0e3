//! `appliancectl`: the command-line face of applianced, over the same gRPC API
//! as the console and the web UI. One file per subcommand under `cmd/`.

mod cmd;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::output::Format;

/// Manage an appliance node.
#[derive(Debug, Parser)]
#[command(name = "appliancectl", version, about)]
struct Cli {
    /// applianced's API socket.
    #[arg(long, env = "APPLIANCE_SOCKET", default_value = appliance_api::DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Format::Human, global = true)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Node identity, generation, readiness and reconciler status.
    Status(cmd::status::Args),
    /// Show, check or change the node configuration.
    #[command(subcommand)]
    Config(cmd::config::Command),
    /// List or restart the services placed on this node.
    #[command(subcommand)]
    Services(cmd::services::Command),
    /// Show the firewall ruleset with per-rule counters.
    #[command(subcommand)]
    Firewall(cmd::firewall::Command),
    /// Show the last lines of the node's log.
    Logs(cmd::logs::Args),
    /// List, add or remove cluster peers allowed on internal ports.
    #[command(subcommand)]
    Peers(cmd::peers::Command),
    /// The cluster: status, form, add, remove, roles, discovered.
    #[command(subcommand)]
    Cluster(cmd::cluster::Command),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    restore_sigpipe();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The first message says what failed; the root cause says why.
            // (Middle layers such as the transport repeat their causes.)
            let root = err.root_cause().to_string();
            if err.chain().count() > 1 && !err.to_string().contains(&root) {
                eprintln!("error: {err}: {root}");
            } else {
                eprintln!("error: {err}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Rust ignores SIGPIPE, which turns `appliancectl ... | head` into a panic on
/// the next print; a command-line tool should just end quietly, as others do.
fn restore_sigpipe() {
    use nix::sys::signal::{signal, SigHandler, Signal};
    // SAFETY: called first thing in main, before any other thread exists;
    // SIG_DFL installs no handler code, so nothing can run in signal context.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigDfl) };
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let channel = appliance_api::connect_unix(&cli.socket).await?;
    let client = appliance_api::v1::node_client::NodeClient::new(channel);
    match cli.command {
        Command::Status(args) => cmd::status::run(client, args, cli.output).await,
        Command::Config(c) => cmd::config::run(client, c, cli.output).await,
        Command::Services(c) => cmd::services::run(client, c, cli.output).await,
        Command::Firewall(c) => cmd::firewall::run(client, c, cli.output).await,
        Command::Logs(args) => cmd::logs::run(client, args, cli.output).await,
        Command::Peers(c) => cmd::peers::run(client, c, cli.output).await,
        Command::Cluster(c) => cmd::cluster::run(client, c, cli.output).await,
    }
}

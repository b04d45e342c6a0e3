//! `appliancectl`: the command-line face of applianced, over the same gRPC API
//! as the console and the web UI. One file per subcommand under `cmd/`; on
//! the local socket by default, or with `--server` over a node's management
//! port (managementd), signed in with a token ([`remote`]).

mod cmd;
mod output;
mod remote;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

use crate::output::{Format, StatusError};
use crate::remote::{Bearer, Server, Store, TrustOptions};

/// Manage an appliance node.
#[derive(Debug, Parser)]
#[command(name = "appliancectl", version, about)]
struct Cli {
    /// applianced's API socket.
    #[arg(long, env = "APPLIANCE_SOCKET", default_value = appliance_api::DEFAULT_SOCKET, global = true)]
    socket: PathBuf,
    /// A node's management port instead of the local socket: https://HOST[:PORT] (port 8443 by default).
    #[arg(long, env = "APPLIANCE_SERVER", global = true)]
    server: Option<String>,
    /// With --server: accept the certificate of a server met for the first time without asking.
    #[arg(long, global = true)]
    yes: bool,
    /// With --server: accept a first-met server's certificate only with this SHA-256 fingerprint.
    #[arg(long, value_name = "SHA256", global = true)]
    accept_fingerprint: Option<String>,
    /// With --server: verify the certificate with these CA certificates (PEM) instead of pinning it.
    #[arg(long, value_name = "PEM", global = true)]
    ca_file: Option<PathBuf>,
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
    /// With --server: sign in and keep the token for later commands.
    Login(cmd::session::LoginArgs),
    /// With --server: end the session and delete its token.
    Logout,
    /// With --server: who you are signed in as.
    Whoami,
    /// With --server: the sessions signed in on the node.
    Sessions,
    /// With --server: the administrator and viewer accounts.
    #[command(subcommand)]
    Accounts(cmd::accounts::Command),
    /// With --server: the audit trail.
    Events(cmd::events::Args),
    /// With --server: the cluster-wide settings (DNS, NTP, management networks).
    #[command(subcommand)]
    Settings(cmd::settings::Command),
}

impl Command {
    /// The commands of the `Management` service, served only on the management port.
    fn is_management(&self) -> bool {
        matches!(
            self,
            Self::Login(_)
                | Self::Logout
                | Self::Whoami
                | Self::Sessions
                | Self::Accounts(_)
                | Self::Events(_)
                | Self::Settings(_)
        )
    }
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
    let Some(url) = cli.server.as_deref().filter(|s| !s.is_empty()) else {
        if cli.command.is_management() {
            anyhow::bail!(
                "this command is served on a node's management port: pass --server https://HOST[:PORT] (or set APPLIANCE_SERVER)"
            );
        }
        let channel = appliance_api::connect_unix(&cli.socket).await?;
        return run_node(channel, Bearer::none(), cli.command, cli.output).await;
    };
    let server = Server::parse(url)?;
    let store = Store::from_env()?;
    let trust = TrustOptions {
        yes: cli.yes,
        accept_fingerprint: cli.accept_fingerprint,
        ca_file: cli.ca_file,
    };
    let token = store.token(&server)?;
    let not_signed_in = || {
        anyhow::anyhow!(
            "not signed in to {server}: run appliancectl --server {} login",
            server.url()
        )
    };
    let is_login = matches!(cli.command, Command::Login(_));
    if token.is_none() && !is_login {
        if matches!(cli.command, Command::Logout) {
            return cmd::session::logout(None, &server, &store).await;
        }
        return Err(not_signed_in());
    }
    let channel = remote::connect(&server, &store, &trust).await?;
    let bearer = match &token {
        Some(t) if !is_login => Bearer::token(t)?,
        _ => Bearer::none(),
    };
    let result = run_remote(channel, bearer, cli.command, cli.output, &server, &store).await;
    // A refused token: the session expired, was ended, or managementd restarted.
    match result {
        Err(err)
            if !is_login
                && err
                    .downcast_ref::<StatusError>()
                    .is_some_and(|s| s.code == tonic::Code::Unauthenticated) =>
        {
            Err(err.context(format!(
                "not signed in to {server} (the session expired or was ended): run appliancectl --server {} login",
                server.url()
            )))
        }
        other => other,
    }
}

async fn run_remote(
    channel: Channel,
    bearer: Bearer,
    command: Command,
    format: Format,
    server: &Server,
    store: &Store,
) -> anyhow::Result<()> {
    let mgmt = || {
        appliance_api::v1::management_client::ManagementClient::with_interceptor(
            channel.clone(),
            bearer.clone(),
        )
    };
    match command {
        Command::Login(args) => cmd::session::login(mgmt(), server, store, args, format).await,
        Command::Logout => cmd::session::logout(Some(mgmt()), server, store).await,
        Command::Whoami => cmd::session::whoami(mgmt(), format).await,
        Command::Sessions => cmd::session::sessions(mgmt(), format).await,
        Command::Accounts(c) => cmd::accounts::run(mgmt(), c, format).await,
        Command::Events(args) => cmd::events::run(mgmt(), args, format).await,
        Command::Settings(c) => cmd::settings::run(mgmt(), c, format).await,
        node => run_node(channel.clone(), bearer.clone(), node, format).await,
    }
}

async fn run_node(
    channel: Channel,
    bearer: Bearer,
    command: Command,
    format: Format,
) -> anyhow::Result<()> {
    let client: cmd::Client =
        appliance_api::v1::node_client::NodeClient::new(InterceptedService::new(channel, bearer));
    match command {
        Command::Status(args) => cmd::status::run(client, args, format).await,
        Command::Config(c) => cmd::config::run(client, c, format).await,
        Command::Services(c) => cmd::services::run(client, c, format).await,
        Command::Firewall(c) => cmd::firewall::run(client, c, format).await,
        Command::Logs(args) => cmd::logs::run(client, args, format).await,
        Command::Peers(c) => cmd::peers::run(client, c, format).await,
        Command::Cluster(c) => cmd::cluster::run(client, c, format).await,
        other => anyhow::bail!("{other:?} is served on the management port only"),
    }
}

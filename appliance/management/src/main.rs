//! managementd: the management server of one node (see the library's docs).
//! Connects to applianced's socket (retrying while it is not up), takes the
//! management certificate from it, and serves the management port until
//! SIGTERM or SIGINT.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use appliance_api::v1::StatusRequest;
use appliance_management::auth::limiter::Limiter;
use appliance_management::auth::sessions::Sessions;
use appliance_management::backend::Backend;
use appliance_management::metrics::Metrics;
use appliance_management::server::{self, App, Limits};
use appliance_management::state::AppState;
use appliance_management::tls;
use clap::Parser;
use tonic::transport::Channel;

/// The longest wait between two tries to reach applianced.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug, Parser)]
#[command(
    name = "managementd",
    about = "The web UI and remote API of this appliance, over HTTPS"
)]
struct Args {
    /// Address and port to serve (default [::]:8443, or [::]:$APPLIANCE_MANAGEMENT_PORT).
    #[arg(long, env = "MANAGEMENT_LISTEN")]
    listen: Option<SocketAddr>,
    /// The port when --listen is not given (set by applianced from `[management] port`).
    #[arg(long, env = "APPLIANCE_MANAGEMENT_PORT", default_value_t = 8443)]
    port: u16,
    /// applianced's Unix socket.
    #[arg(long, env = "APPLIANCE_SOCKET", default_value = appliance_api::DEFAULT_SOCKET)]
    socket: PathBuf,
    /// Connections served at once.
    #[arg(long, default_value_t = 512)]
    max_connections: usize,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // The supervisor keeps the log: no colour codes in it.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("managementd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Retries `attempt` with a doubling wait (at most [`MAX_RETRY_WAIT`]),
/// logging each failure, until it succeeds.
async fn retry<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    what: &str,
    mut attempt: impl FnMut() -> F,
) -> T {
    let mut wait = Duration::from_millis(200);
    let mut tries = 1u32;
    loop {
        match attempt().await {
            Ok(v) => return v,
            Err(e) => {
                tracing::warn!(tries, retry_in_ms = wait.as_millis() as u64, "{what}: {e}");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(MAX_RETRY_WAIT);
                tries += 1;
            }
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let listen = args
        .listen
        .unwrap_or_else(|| SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, args.port)));
    let socket = args.socket.clone();
    let channel: Channel = retry("applianced not reachable yet", || {
        appliance_api::connect_unix(&socket)
    })
    .await;
    let backend = Backend::new(channel);
    let state = AppState::new(
        backend.clone(),
        Sessions::new(),
        Limiter::new(),
        Metrics::default(),
    );

    let status = retry("applianced's status not available yet", || {
        let mut node = backend.node();
        async move {
            node.status(StatusRequest {})
                .await
                .map(tonic::Response::into_inner)
        }
    })
    .await;
    state.set_node_name(if status.hostname.is_empty() {
        &status.node_id
    } else {
        &status.hostname
    });

    let resolver = Arc::new(tls::CertResolver::new());
    retry("management certificate not available yet", || {
        tls::refresh(&backend, &resolver)
    })
    .await;
    let config = Arc::new(tls::server_config(resolver.clone())?);
    let watcher = tokio::spawn(tls::watch(backend.clone(), resolver, tls::REFRESH));

    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(%listen, node = %state.node_name(), "managementd serving");
    let limits = Limits {
        max_connections: args.max_connections,
        ..Limits::default()
    };
    server::serve(listener, config, App::new(state), limits, stop_signal()).await;
    watcher.abort();
    tracing::info!("managementd stopped");
    Ok(())
}

/// Completes on SIGTERM (the supervisor's stop) or SIGINT.
async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM"),
                _ = int.recv() => tracing::info!("SIGINT"),
            }
        }
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "cannot watch stop signals; stopping only when killed");
            std::future::pending::<()>().await;
        }
    }
}

//! applianced: the appliance init daemon.
//!
//! Decides once whether it is PID 1 or hosted, sets up logging, opens the
//! node's state, converges on the desired state, serves the node API on a
//! Unix socket, and on SIGTERM stops the services in order and exits.

mod api;
mod args;
mod desired;
mod error;
mod leftovers;
mod logging;
mod mode;
mod nft;
mod node;
mod ready;
mod reconcilers;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use crate::args::Args;
use crate::mode::Mode;

fn main() -> ExitCode {
    let mut args = Args::parse();
    let mode = Mode::detect();
    if let Err(e) = prepare(&mut args, mode) {
        eprintln!("applianced: {}", report(&e));
        return ExitCode::FAILURE;
    }
    // Before any thread exists: unshare acts on the calling thread only.
    if mode == Mode::Hosted {
        if let Err(e) = mode::enter_hosted() {
            eprintln!("applianced: {e}");
            return ExitCode::FAILURE;
        }
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
    match runtime.block_on(run(args, mode)) {
        Ok(()) => ExitCode::SUCCESS,
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

/// Checks and directories that come before logging and threads.
fn prepare(args: &mut Args, mode: Mode) -> anyhow::Result<()> {
    if mode == Mode::Pid1 {
        anyhow::bail!("running as PID 1 needs the boot steps of the image, which this build does not have yet");
    }
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
    for dir in [&args.state_dir, &args.runtime_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Services run with their data directory as working directory: relative
    // paths given here would resolve differently for them.
    for dir in [
        &mut args.state_dir,
        &mut args.runtime_dir,
        &mut args.services_dir,
        &mut args.bin_dir,
    ] {
        *dir =
            std::path::absolute(&*dir).with_context(|| format!("resolving {}", dir.display()))?;
    }
    logging::init(&args.state_dir.join("applianced.log"), &args.log)
        .context("setting up logging")?;
    Ok(())
}

async fn run(args: Args, mode: Mode) -> anyhow::Result<()> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = mode.as_str(),
        "applianced starting"
    );
    let reaper = appliance_supervisor::Reaper::new();
    tokio::spawn(reaper.clone().run());

    let store = appliance_state::Store::open(&args.state_dir.join("db"))?;
    let identity = store.identity()?;
    info!(node_id = %identity.node_id, "node identity");

    let manifests = appliance_supervisor::load_dir(&args.services_dir).with_context(|| {
        format!(
            "loading service manifests from {}",
            args.services_dir.display()
        )
    })?;
    let data_dir = args.state_dir.join("data");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let supervisor =
        appliance_supervisor::Supervisor::new(appliance_supervisor::SupervisorOptions::new(
            args.bin_dir.clone(),
            data_dir,
            reaper.clone(),
        ));
    let netcfg = appliance_netcfg::Netcfg::connect()?;
    let firewall = appliance_firewall::Firewall::new(nft::ReaperNft::new(reaper.clone()));
    let paths = node::Paths {
        config_file: args.state_dir.join("config.toml"),
        log_file: args.state_dir.join("applianced.log"),
        resolv_conf: args.runtime_dir.join("resolv.conf"),
    };
    let node = Arc::new(node::Node::new(node::Parts {
        identity,
        mode,
        paths,
        store,
        manifests,
        supervisor,
        netcfg,
        firewall,
    })?);

    // Serve the API before converging, so a node whose config cannot be
    // applied can still be inspected and fixed.
    let socket = args.socket_path();
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    let readiness = ready::Readiness::default();
    let service = appliance_api::v1::node_server::NodeServer::new(api::Api {
        node: node.clone(),
        readiness: readiness.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );
    info!(socket = %socket.display(), "API listening");

    node.kill_leftovers();
    if let Err(e) = node.boot().await {
        error!("could not converge on the desired state: {e}");
    }
    let watcher = tokio::spawn(ready::watch(
        node.clone(),
        readiness,
        Duration::from_secs(args.ready_timeout),
    ));
    let (stop_reconciling, stop) = tokio::sync::watch::channel(false);
    let reconciler = tokio::spawn(reconcilers::reconcile_loop(
        node.clone(),
        Duration::from_secs(args.reconcile_interval),
        stop,
    ));

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: shutting down"),
        _ = int.recv() => info!("SIGINT: shutting down"),
    }
    watcher.abort();
    let _ = stop_reconciling.send(true);
    let _ = reconciler.await;
    node.supervisor.stop_all().await;
    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    let _ = std::fs::remove_file(&socket);
    info!("applianced stopped");
    Ok(())
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

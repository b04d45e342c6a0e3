//! The daemon, the same in hosted mode and as PID 1: opens the node's state,
//! converges on the desired state, serves the node API on a Unix socket, and
//! when told to stop, stops the services in order and returns why it stopped
//! (PID 1 then powers off or reboots).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::UnixListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::args::Args;
use crate::cluster::{Cluster, ClusterSetup};
use crate::console::announce;
use crate::desired::cluster::PeerPorts;
use crate::identity::{self, MachineIdentity};
use crate::mode::Mode;
use crate::{admin, api, logging, nft, node, ready};

/// The whole shutdown, services to power-off, takes at most this long.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(20);

/// Why the node stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// Hosted: the process exits.
    Exit,
    /// Power off (power button, SIGTERM).
    PowerOff,
    /// Reboot (Ctrl-Alt-Del arrives as SIGINT).
    Reboot,
}

impl StopReason {
    /// The console line announcing it.
    pub fn line(self) -> &'static str {
        match self {
            StopReason::Exit => "applianced: stopping",
            StopReason::PowerOff => "applianced: powering off",
            StopReason::Reboot => "applianced: rebooting",
        }
    }
}

/// What PID 1's boot hands the daemon. The daemon never imports the boot
/// code: what only PID 1 does comes in here, as values and callbacks.
pub struct Pid1 {
    /// Where the machine id is published (`/etc/machine-id` links there).
    pub machine_id_file: PathBuf,
    /// Prepares the first boot's configuration, once the state database is
    /// open and before the node reads its config.
    pub first_boot: Box<dyn FnOnce(FirstBoot<'_>) + Send>,
    /// Starts watching the power buttons, a press sent on the channel;
    /// returns how many are watched.
    pub watch_power_buttons: Box<dyn FnOnce(mpsc::Sender<()>) -> usize + Send>,
}

/// What [`Pid1::first_boot`] is given.
#[derive(Debug, Clone, Copy)]
pub struct FirstBoot<'a> {
    /// The node's state database.
    pub store: &'a appliance_state::Store,
    /// The state directory.
    pub state_dir: &'a Path,
    /// The config file the node applies at boot.
    pub config_file: &'a Path,
    /// The machine id (a default hostname is derived from it).
    pub machine_id: &'a str,
}

/// How the daemon ended.
#[derive(Debug)]
pub struct Stopped {
    /// Why.
    pub reason: StopReason,
    /// When the whole shutdown must be over (PID 1 powers off by then anyway).
    pub deadline: tokio::time::Instant,
}

/// Directories and logging, before any thread: the state and runtime
/// directories exist, every path is absolute, and logging is on.
pub fn prepare_common(args: &mut Args, ansi: bool) -> anyhow::Result<()> {
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
    logging::init(&args.state_dir.join("applianced.log"), &args.log, ansi)
        .context("setting up logging")?;
    Ok(())
}

/// The machine identity; as PID 1 a failure is shown and the node id stands
/// in for the machine id, so the node still boots.
fn machine_identity(
    state_dir: &Path,
    mode: Mode,
    node_id: String,
) -> anyhow::Result<MachineIdentity> {
    match identity::ensure(state_dir) {
        Ok(id) => Ok(id),
        Err(e) if mode == Mode::Pid1 => {
            announce(&format!("applianced: ERROR: {e}"));
            Ok(MachineIdentity {
                machine_id: node_id,
                key_fingerprint: "none".to_owned(),
                created: false,
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Runs the daemon until it is told to stop; returns why. The phases, in
/// order: [`open`] (state, identity, the node), [`serve_api`], [`converge`]
/// (leftovers, the desired state, the cluster side), the background loops
/// (readiness, periodic reconcile), [`wait_for_stop`], [`shut_down`].
pub async fn run(args: Args, mode: Mode, pid1: Option<Pid1>) -> anyhow::Result<Stopped> {
    info!(
        version = env!("CARGO_PKG_VERSION"),
        mode = mode.as_str(),
        "applianced starting"
    );
    let opened = open(&args, mode, pid1)?;
    let node = opened.node;
    let cluster = cluster_side(&args, mode, &node, opened.cluster_store.clone());
    let admin = admin::AdminService::new(admin::AdminSetup {
        node: node.clone(),
        store: opened.cluster_store,
        cluster: cluster.clone(),
    });
    let admin_data = admin.data();
    admin.tls().spawn_console_line();
    seed_first_admin(&args, &admin_data, cluster.as_ref()).await;
    admin_data.prepare_without_cluster().await;

    // Serve the API before converging, so a node whose config cannot be
    // applied can still be inspected and fixed.
    let readiness = ready::Readiness::default();
    let api = serve_api(&args, &node, &readiness, &cluster, admin)?;

    let buttons = opened.watch_power_buttons.map(|watch| {
        let (tx, rx) = mpsc::channel(4);
        if watch(tx) == 0 {
            announce("applianced: no ACPI power button found; power off with SIGTERM");
        }
        rx
    });

    converge(mode, &node, &opened.machine, cluster.as_ref()).await;
    let watcher = tokio::spawn(ready::watch(
        node.clone(),
        readiness,
        Duration::from_secs(args.ready_timeout),
    ));
    let (stop_reconciling, stop) = tokio::sync::watch::channel(false);
    let reconciler = tokio::spawn(node::reconcile_loop(
        node.clone(),
        Duration::from_secs(args.reconcile_interval),
        stop,
    ));

    let reason = wait_for_stop(mode, buttons).await?;
    let deadline = tokio::time::Instant::now() + SHUTDOWN_LIMIT;
    shut_down(
        mode,
        deadline,
        reason,
        Running {
            node,
            cluster,
            api,
            watcher,
            reconciler,
            stop_reconciling,
        },
    )
    .await;
    Ok(Stopped { reason, deadline })
}

/// What [`open`] gives the later phases.
struct Opened {
    node: Arc<node::Node>,
    machine: MachineIdentity,
    /// The state database again, for the cluster side.
    cluster_store: appliance_state::Store,
    /// PID 1 only: starts the power button watchers.
    watch_power_buttons: Option<Box<dyn FnOnce(mpsc::Sender<()>) -> usize + Send>>,
}

/// The first phase: the reaper, the state database, the identities, the
/// service manifests, the kernel interfaces, PID 1's first-boot
/// configuration, and the node built from them.
fn open(args: &Args, mode: Mode, pid1: Option<Pid1>) -> anyhow::Result<Opened> {
    let reaper = appliance_supervisor::Reaper::new();
    tokio::spawn(reaper.clone().run());

    let store = appliance_state::Store::open(&args.state_dir.join("db"))?;
    let identity = store.identity()?;
    let machine = machine_identity(&args.state_dir, mode, identity.node_id.simple().to_string())?;
    info!(
        node_id = %identity.node_id,
        machine_id = %machine.machine_id,
        node_key = %machine.key_fingerprint,
        created = machine.created,
        "node identity"
    );
    if let Some(p) = &pid1 {
        if let Err(e) = identity::publish(&machine, &p.machine_id_file) {
            warn!("{e}");
        }
    }

    let manifests = appliance_supervisor::load_dir(&args.services_dir).with_context(|| {
        format!(
            "loading service manifests from {}",
            args.services_dir.display()
        )
    })?;
    let data_dir = args.state_dir.join("data");
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let mut supervisor_options = appliance_supervisor::SupervisorOptions::new(
        args.bin_dir.clone(),
        data_dir,
        reaper.clone(),
    );
    // Where the API is, for the system services (managementd) that use it.
    supervisor_options.extra_env.insert(
        "APPLIANCE_SOCKET".to_owned(),
        args.socket_path().display().to_string(),
    );
    let supervisor = appliance_supervisor::Supervisor::new(supervisor_options);
    let netcfg = appliance_netcfg::Netcfg::connect()?;
    let firewall = appliance_firewall::Firewall::new(nft::ReaperNft::new(reaper.clone()));
    let paths = node::Paths {
        config_file: args.state_dir.join("config.toml"),
        log_file: args.state_dir.join("applianced.log"),
        resolv_conf: args.runtime_dir.join("resolv.conf"),
    };
    let watch_power_buttons = pid1.map(|p| {
        (p.first_boot)(FirstBoot {
            store: &store,
            state_dir: &args.state_dir,
            config_file: &paths.config_file,
            machine_id: &machine.machine_id,
        });
        p.watch_power_buttons
    });
    let cluster_store = store.clone();
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
    Ok(Opened {
        node,
        machine,
        cluster_store,
        watch_power_buttons,
    })
}

/// The node API being served.
struct ApiServer {
    socket: PathBuf,
    /// Tells the server to stop.
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

/// The first administrator of `--first-admin` (as PID 1: `appliance.admin=`),
/// once, when there is no account. A member's accounts are the cluster's:
/// then it is proposed in the background, once the node is a member again.
async fn seed_first_admin(args: &Args, data: &Arc<admin::DataSource>, cluster: Option<&Cluster>) {
    let Some(account) = args.first_admin.clone() else {
        return;
    };
    if cluster.is_some_and(Cluster::has_stored_membership) {
        let data = data.clone();
        tokio::spawn(async move { admin::accounts::seed_first_admin(&data, account, true).await });
    } else {
        admin::accounts::seed_first_admin(data, account, false).await;
    }
}

/// The group whose members (managementd's user) may use the API socket.
pub const SOCKET_GROUP: &str = "management";

/// Who may use the API socket: root, and the [`SOCKET_GROUP`] group when the
/// system has it (the image does: managementd runs as its user), so
/// `root:management 0660`; else root alone (`0600`; hosted, where the test
/// host has no such group and managementd runs as root).
fn restrict_socket(socket: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let group = nix::unistd::Group::from_name(SOCKET_GROUP).ok().flatten();
    let mode = match &group {
        Some(g) => {
            nix::unistd::chown(socket, None, Some(g.gid))
                .with_context(|| format!("giving {} to group {SOCKET_GROUP}", socket.display()))?;
            0o660
        }
        None => 0o600,
    };
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("setting mode {mode:o} on {}", socket.display()))?;
    info!(
        socket = %socket.display(),
        group = group.as_ref().map_or("(none: root only)", |_| SOCKET_GROUP),
        mode = format!("{mode:o}"),
        "API socket access"
    );
    Ok(())
}

/// Serves the node API and, beside it, the management plane's `Admin`
/// service on the Unix socket (never on the peer port).
fn serve_api(
    args: &Args,
    node: &Arc<node::Node>,
    readiness: &ready::Readiness,
    cluster: &Option<Cluster>,
    admin: admin::AdminService,
) -> anyhow::Result<ApiServer> {
    let socket = args.socket_path();
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).with_context(|| format!("binding {}", socket.display()))?;
    restrict_socket(&socket)?;
    let service = appliance_api::v1::node_server::NodeServer::new(api::Api {
        node: node.clone(),
        readiness: readiness.clone(),
        cluster: cluster.clone(),
    });
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .add_service(admin.server())
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );
    info!(socket = %socket.display(), "API listening");
    Ok(ApiServer {
        socket,
        stop: stop_tx,
        server,
    })
}

/// Converges: kills what a crashed predecessor left, gives the node the
/// cluster's part, applies the desired state, shows the banner (PID 1) and
/// starts the cluster side.
async fn converge(
    mode: Mode,
    node: &node::Node,
    machine: &MachineIdentity,
    cluster: Option<&Cluster>,
) {
    node.kill_leftovers();
    if let Some(c) = cluster {
        c.prepare().await;
    }
    if let Err(e) = node.boot().await {
        error!("could not converge on the desired state: {e}");
        if mode == Mode::Pid1 {
            announce(&format!("applianced: ERROR: {e}"));
        }
    }
    if mode == Mode::Pid1 {
        banner(node, machine).await;
    }
    if let Some(c) = cluster {
        c.start().await;
    }
}

/// What runs until the daemon stops.
struct Running {
    node: Arc<node::Node>,
    cluster: Option<Cluster>,
    api: ApiServer,
    watcher: tokio::task::JoinHandle<()>,
    reconciler: tokio::task::JoinHandle<()>,
    stop_reconciling: tokio::sync::watch::Sender<bool>,
}

/// Stops the loops, the cluster side, the services and the API, in that
/// order; as PID 1 bounded by `deadline`, then closes the state and the log
/// file so `/data` can be unmounted.
async fn shut_down(mode: Mode, deadline: tokio::time::Instant, reason: StopReason, r: Running) {
    let Running {
        node,
        cluster,
        api,
        mut watcher,
        reconciler,
        stop_reconciling,
    } = r;
    let ApiServer {
        socket,
        stop: stop_tx,
        mut server,
    } = api;
    let pid1 = mode == Mode::Pid1;
    if pid1 {
        announce(reason.line());
    }
    let stopping = async {
        watcher.abort();
        let _ = (&mut watcher).await;
        let _ = stop_reconciling.send(true);
        let _ = reconciler.await;
        if let Some(c) = &cluster {
            c.shutdown().await;
        }
        if pid1 {
            announce("applianced: stopping services");
        }
        node.supervisor.stop_all().await;
        if pid1 {
            announce("applianced: services stopped; stopping the API");
        }
        let _ = stop_tx.send(());
        if tokio::time::timeout(Duration::from_secs(5), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    };
    if pid1 {
        if tokio::time::timeout_at(deadline, stopping).await.is_err() {
            announce("applianced: shutdown deadline passed; forcing the rest");
        }
    } else {
        stopping.await;
    }
    let _ = std::fs::remove_file(&socket);
    info!("applianced stopped");
    if pid1 {
        // The store closes its files with the last reference to the node
        // and the cluster side; then the log file, so /data can be unmounted.
        drop(cluster);
        drop(node);
        logging::close_file();
    }
}

/// The cluster side, unless it is off (`--peer-port 0`) or the node key
/// cannot be read (then the node runs alone, and says why).
fn cluster_side(
    args: &Args,
    mode: Mode,
    node: &Arc<node::Node>,
    store: appliance_state::Store,
) -> Option<Cluster> {
    if args.peer_port == 0 {
        info!("the cluster is off (--peer-port 0)");
        return None;
    }
    let setup = ClusterSetup {
        node: node.clone(),
        store,
        state_dir: args.state_dir.clone(),
        ports: PeerPorts {
            peer: args.peer_port,
            beacon: args.beacon_port,
        },
        activation_limit: Duration::from_secs(args.ready_timeout),
    };
    match Cluster::new(setup) {
        Ok(c) => Some(c),
        Err(e) => {
            error!("the cluster is off: cannot read the node key: {e}");
            if mode == Mode::Pid1 {
                announce(&format!(
                    "applianced: ERROR: the cluster is off: cannot read the node key: {e}"
                ));
            }
            None
        }
    }
}

/// Waits for a reason to stop. Hosted: SIGTERM or SIGINT, to exit. PID 1:
/// SIGTERM or the power button to power off, SIGINT (Ctrl-Alt-Del) to reboot.
async fn wait_for_stop(
    mode: Mode,
    buttons: Option<mpsc::Receiver<()>>,
) -> anyhow::Result<StopReason> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let pid1 = mode == Mode::Pid1;
    let button = async {
        if let Some(mut rx) = buttons {
            if rx.recv().await.is_some() {
                return;
            }
        }
        // No button (or its watchers ended): only the signals remain.
        std::future::pending::<()>().await
    };
    Ok(tokio::select! {
        _ = term.recv() => {
            info!("SIGTERM: shutting down");
            if pid1 { StopReason::PowerOff } else { StopReason::Exit }
        }
        _ = int.recv() => {
            if pid1 {
                info!("SIGINT (Ctrl-Alt-Del): rebooting");
                StopReason::Reboot
            } else {
                info!("SIGINT: shutting down");
                StopReason::Exit
            }
        }
        _ = button => {
            info!("power button pressed: powering off");
            StopReason::PowerOff
        }
    })
}

/// The console banner of PID 1: version, hostname, machine, addresses.
async fn banner(node: &node::Node, machine: &MachineIdentity) {
    let desired = node.desired().await;
    let hostname = desired
        .as_ref()
        .map(|d| d.config.hostname.clone())
        .or_else(|| nix::unistd::gethostname().ok()?.into_string().ok())
        .unwrap_or_default();
    let addresses: Vec<String> = desired
        .as_ref()
        .map(|d| {
            d.config
                .interfaces
                .iter()
                .flat_map(|i| i.addresses.iter().map(move |a| format!("{a} ({})", i.name)))
                .collect()
        })
        .unwrap_or_default();
    announce(&format!(
        "applianced {}: {hostname}, machine id {}",
        env!("CARGO_PKG_VERSION"),
        machine.machine_id
    ));
    announce(&format!(
        "applianced: addresses: {}",
        if addresses.is_empty() {
            "none configured".to_owned()
        } else {
            addresses.join(", ")
        }
    ));
    announce(&format!("applianced: node key {}", machine.key_fingerprint));
}

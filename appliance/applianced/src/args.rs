//! Command-line arguments. Every path applianced touches comes in here, so
//! hosted mode and tests point it at their own directories.

use std::path::PathBuf;

use clap::Parser;

/// The appliance init daemon.
#[derive(Debug, Clone, Parser)]
#[command(name = "applianced", version, about)]
pub struct Args {
    /// Durable state: config.toml, the state database, the log, service data.
    #[arg(
        long,
        env = "APPLIANCE_STATE_DIR",
        default_value = "/var/lib/appliance"
    )]
    pub state_dir: PathBuf,
    /// Runtime files: the API socket and resolv.conf.
    #[arg(long, env = "APPLIANCE_RUNTIME_DIR", default_value = "/run/appliance")]
    pub runtime_dir: PathBuf,
    /// Service manifests (*.toml).
    #[arg(
        long,
        env = "APPLIANCE_SERVICES_DIR",
        default_value = "/usr/share/appliance/services"
    )]
    pub services_dir: PathBuf,
    /// Where service commands that are not absolute paths are found.
    #[arg(
        long,
        env = "APPLIANCE_BIN_DIR",
        default_value = "/usr/lib/appliance/bin"
    )]
    pub bin_dir: PathBuf,
    /// API socket; defaults to <runtime-dir>/applianced.sock.
    #[arg(long, env = "APPLIANCE_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Log filter (tracing EnvFilter syntax).
    #[arg(long, env = "APPLIANCE_LOG", default_value = "info")]
    pub log: String,
    /// Allow hosted mode in the machine's initial network namespace. Without
    /// it applianced refuses, since it would reconfigure this machine's network.
    #[arg(long)]
    pub allow_host_netns: bool,
    /// How long to wait for the placed services to become healthy before
    /// reporting "not ready" (seconds).
    #[arg(long, default_value_t = 60)]
    pub ready_timeout: u64,
    /// How often the reconcilers check the live system for drift (seconds).
    #[arg(long, env = "APPLIANCE_RECONCILE_INTERVAL", default_value_t = 30)]
    pub reconcile_interval: u64,
    /// TCP port of the peer side (joining, then cluster mutual TLS), on
    /// every address; 0 turns the cluster off.
    #[arg(long, env = "APPLIANCE_PEER_PORT", default_value_t = appliance_peering::DEFAULT_PEER_PORT)]
    pub peer_port: u16,
    /// UDP port of the discovery beacons.
    #[arg(long, env = "APPLIANCE_BEACON_PORT", default_value_t = appliance_peering::beacon::DEFAULT_BEACON_PORT)]
    pub beacon_port: u16,
    /// The first administrator, NAME:ARGON2ID-PHC-HASH, set at start when
    /// the node has no account at all (never over an existing one). An
    /// appliance takes it from `appliance.admin=` or its seed disk.
    #[arg(long, value_name = "NAME:HASH", value_parser = parse_first_admin)]
    pub first_admin: Option<appliance_cluster::Account>,
}

/// `--first-admin`: the same reading as the kernel parameter `appliance.admin=`.
fn parse_first_admin(text: &str) -> Result<appliance_cluster::Account, String> {
    appliance_cluster::membership::parse_first_admin(
        text,
        crate::time::unix_ms(std::time::SystemTime::now()),
    )
    .map_err(|e| e.to_string())
}

/// The paths of the appliance image, used as PID 1 (whose argv is whatever
/// the kernel passed and is ignored).
pub mod image {
    /// State directory, on the data partition.
    pub const STATE_DIR: &str = "/data/appliance";
    /// Runtime directory.
    pub const RUNTIME_DIR: &str = "/run/appliance";
    /// Service manifests.
    pub const SERVICES_DIR: &str = "/usr/lib/appliance/services";
    /// Service programs.
    pub const BIN_DIR: &str = "/usr/lib/appliance/bin";
}

impl Args {
    /// The arguments of PID 1 in the image; `log` from `appliance.log=`.
    pub fn image(log: Option<String>) -> Self {
        Self {
            state_dir: image::STATE_DIR.into(),
            runtime_dir: image::RUNTIME_DIR.into(),
            services_dir: image::SERVICES_DIR.into(),
            bin_dir: image::BIN_DIR.into(),
            socket: None,
            log: log.unwrap_or_else(|| "info".to_owned()),
            allow_host_netns: false,
            ready_timeout: 60,
            reconcile_interval: 30,
            peer_port: appliance_peering::DEFAULT_PEER_PORT,
            beacon_port: appliance_peering::beacon::DEFAULT_BEACON_PORT,
            first_admin: None,
        }
    }

    /// The API socket path.
    pub fn socket_path(&self) -> PathBuf {
        self.socket
            .clone()
            .unwrap_or_else(|| self.runtime_dir.join("applianced.sock"))
    }
}

//! First-boot configuration: a seed file (the node config TOML format, from
//! the data partition or a vfat "seed disk") overlaid with the kernel
//! parameters `appliance.ip=` and friends ([`first_boot`], pure), and the
//! search for the seed disk ([`find_seed_disk`]). A seed may also name the
//! first administrator (`[admin] name`, `password_hash`: [`seed_admin`]),
//! which is not node configuration and is taken out before the rest is read.
//!
//! Whatever is wrong (a bad seed, a bad parameter, a config that does not
//! validate) is reported naming its source, and the node still gets a
//! configuration: without network settings, so it boots and the administrator
//! can fix the parameters. Such a configuration is marked incomplete and the
//! next boot derives it again.

use std::path::{Path, PathBuf};

use appliance_config::{Interface, NodeConfig, ValidConfig, CONFIG_VERSION};
use nix::mount::MsFlags;

use super::blockdev::BlockDev;
use super::cmdline::ConfigParams;
use super::mounts;

/// The seed file's name on a seed disk.
pub const SEED_DISK_FILE: &str = "appliance.toml";
/// The seed file's name in the state directory (on the data partition).
pub const STATE_SEED_FILE: &str = "seed.toml";
/// Largest seed file read.
const SEED_MAX_BYTES: u64 = 64 * 1024;
/// Mount options tried in turn for a seed disk: the kernel's defaults, then
/// the I/O charsets the image's NLS modules may provide.
const VFAT_OPTIONS: [Option<&str>; 3] = [None, Some("iocharset=iso8859-1"), Some("iocharset=utf8")];
/// Most devices probed for a seed disk.
const SEED_MAX_DEVICES: usize = 16;

/// A seed file and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    /// For messages: `/data/appliance/seed.toml` or `appliance.toml on /dev/vdb`.
    pub source: String,
    /// Its text.
    pub text: String,
}

/// The configuration of a first boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirstBoot {
    /// What to apply; `None` only if even the default configuration is
    /// refused (a broken build), when the node boots unconfigured.
    pub config: Option<ValidConfig>,
    /// False when something was refused and the network settings left out.
    pub complete: bool,
    /// Every refusal, worded for the console.
    pub errors: Vec<String>,
    /// Where the configuration came from, for the log.
    pub sources: Vec<String>,
}

/// The hostname of a node that was given none: `appliance-` and the first six
/// hex digits of its machine id.
pub fn default_hostname(machine_id: &str) -> String {
    let short: String = machine_id.chars().take(6).collect();
    format!("appliance-{short}")
}

fn minimal(hostname: &str) -> NodeConfig {
    NodeConfig {
        version: CONFIG_VERSION,
        hostname: hostname.to_owned(),
        roles: Default::default(),
        management: Default::default(),
        interfaces: Vec::new(),
        gateway4: None,
        gateway6: None,
        routes: Vec::new(),
        dns: Default::default(),
        ntp: Default::default(),
    }
}

fn default_config(hostname: &str) -> NodeConfig {
    // Through the TOML path so the schema's own defaults (roles) apply.
    let text = format!("version = {CONFIG_VERSION}\nhostname = {hostname:?}\n");
    toml::from_str(&text).unwrap_or_else(|_| minimal(hostname))
}

/// Why a seed is refused.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    /// The seed is not TOML, or not a node config.
    #[error("{0}")]
    Toml(String),
    /// The config it holds is not valid.
    #[error("{0}")]
    Invalid(#[from] appliance_config::ConfigError),
    /// The seed file cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The seed file is too big.
    #[error("{} is {bytes} bytes; a seed file may have at most {SEED_MAX_BYTES}", path.display())]
    TooBig {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
}

/// Reads a seed: the node config TOML, where `version` defaults to 1 and
/// `hostname` to `default_hostname`.
pub fn parse_seed(text: &str, default_hostname: &str) -> Result<NodeConfig, SeedError> {
    let mut table: toml::Table =
        toml::from_str(text).map_err(|e: toml::de::Error| SeedError::Toml(e.to_string()))?;
    table.remove(ADMIN_TABLE);
    table
        .entry("version")
        .or_insert(toml::Value::Integer(i64::from(CONFIG_VERSION)));
    table
        .entry("hostname")
        .or_insert(toml::Value::String(default_hostname.to_owned()));
    toml::Value::Table(table)
        .try_into::<NodeConfig>()
        .map_err(|e| SeedError::Toml(e.to_string().trim_end().to_owned()))
}

/// The seed's table naming the first administrator.
pub const ADMIN_TABLE: &str = "admin";

/// The first administrator of a seed's `[admin]` table (`name`,
/// `password_hash`: an Argon2id PHC string), if it has one; why not when
/// the table is there but wrong. The hash is never part of the reason.
pub fn seed_admin(text: &str) -> Result<Option<appliance_cluster::Account>, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct AdminTable {
        name: String,
        password_hash: String,
    }
    let Ok(mut table) = toml::from_str::<toml::Table>(text) else {
        // Not TOML: the configuration's reading says why.
        return Ok(None);
    };
    let Some(value) = table.remove(ADMIN_TABLE) else {
        return Ok(None);
    };
    let t: AdminTable = value.try_into().map_err(|e: toml::de::Error| {
        format!(
            "[{ADMIN_TABLE}] must have exactly name = \"...\" and password_hash = \"$argon2id$...\": {}",
            e.message()
        )
    })?;
    appliance_cluster::membership::parse_first_admin(&format!("{}:{}", t.name, t.password_hash), 0)
        .map(Some)
        .map_err(|e| format!("[{ADMIN_TABLE}] refused: {e}"))
}

/// `cfg` with the kernel parameters' fields replaced.
pub fn overlay(mut cfg: NodeConfig, p: &ConfigParams) -> NodeConfig {
    if let Some(h) = &p.hostname {
        cfg.hostname = h.clone();
    }
    if let Some(r) = &p.roles {
        cfg.roles = r.clone();
    }
    if let Some(ip) = &p.ip {
        let name = p.iface();
        match cfg.interfaces.iter_mut().find(|i| i.name == name) {
            Some(iface) => iface.addresses = ip.clone(),
            None => cfg.interfaces.push(Interface {
                name: name.to_owned(),
                mtu: None,
                addresses: ip.clone(),
            }),
        }
    }
    if let Some(g) = p.gateway4 {
        cfg.gateway4 = Some(g);
    }
    if let Some(g) = p.gateway6 {
        cfg.gateway6 = Some(g);
    }
    if let Some(d) = &p.dns {
        cfg.dns.servers = d.clone();
    }
    cfg
}

/// The first-boot configuration from an optional seed and the kernel
/// parameters (which win), with `param_errors` (the refused parameters)
/// already worded. See the module documentation for what a refusal does.
pub fn first_boot(
    seed: Option<&Seed>,
    params: &ConfigParams,
    param_errors: &[String],
    default_hostname: &str,
) -> FirstBoot {
    let mut errors: Vec<String> = param_errors.to_vec();
    let mut sources = Vec::new();
    let mut base = default_config(default_hostname);
    if let Some(seed) = seed {
        match parse_seed(&seed.text, default_hostname)
            .and_then(|c| appliance_config::validate(c).map_err(SeedError::from))
        {
            Ok(valid) => {
                base = valid.into_inner();
                sources.push(format!("seed {}", seed.source));
            }
            Err(e) => errors.push(format!("seed {} refused, not used: {e}", seed.source)),
        }
    }
    if !params.is_empty() {
        sources.push(format!("kernel parameters {}", params.given.join(" ")));
    }
    let merged = overlay(base.clone(), params);
    match appliance_config::validate(merged) {
        Ok(config) if errors.is_empty() => {
            return FirstBoot {
                config: Some(config),
                complete: true,
                errors,
                sources,
            }
        }
        Ok(_) => {}
        Err(e) => {
            for problem in e.problems() {
                let from = params
                    .source_of(&problem.field)
                    .map(|p| format!("kernel parameter {p}"))
                    .unwrap_or_else(|| "the seed".to_owned());
                errors.push(format!("configuration from {from} refused: {problem}"));
            }
            if e.problems().is_empty() {
                errors.push(format!("configuration refused: {e}"));
            }
        }
    }
    // Without any network settings: the node boots and can be fixed.
    let fallback = NodeConfig {
        hostname: params
            .hostname
            .clone()
            .unwrap_or_else(|| base.hostname.clone()),
        roles: params.roles.clone().unwrap_or_else(|| base.roles.clone()),
        ..default_config(default_hostname)
    };
    let config = appliance_config::validate(fallback)
        .or_else(|_| appliance_config::validate(default_config(default_hostname)))
        .ok();
    FirstBoot {
        config,
        complete: false,
        errors,
        sources,
    }
}

/// True when `sector` (the first 512 bytes of a device) holds a FAT boot sector.
pub fn is_vfat(sector: &[u8]) -> bool {
    sector.len() >= 512
        && sector[510] == 0x55
        && sector[511] == 0xAA
        && (sector[54..59] == *b"FAT12"
            || sector[54..59] == *b"FAT16"
            || sector[82..87] == *b"FAT32")
}

/// Devices that may be a seed disk: every block device not on `root_disk`,
/// not empty, not a RAM or loop device; at most [`SEED_MAX_DEVICES`].
pub fn seed_candidates<'a>(devs: &'a [BlockDev], root_disk: Option<&str>) -> Vec<&'a BlockDev> {
    devs.iter()
        .filter(|d| {
            let disk = d.disk.as_deref().unwrap_or(&d.name);
            Some(disk) != root_disk
                && d.sectors > 0
                && !d.name.starts_with("ram")
                && !d.name.starts_with("loop")
                && !d.name.starts_with("zram")
        })
        .take(SEED_MAX_DEVICES)
        .collect()
}

fn first_sector(dev: &Path) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut buf = vec![0u8; 512];
    std::fs::File::open(dev).ok()?.read_exact(&mut buf).ok()?;
    Some(buf)
}

/// Looks for `appliance.toml` at the root of a vfat filesystem on any block
/// device other than the root's disk, each mounted read-only on `mount_dir`
/// in turn and unmounted again. Returns the first found, and the problems met.
pub fn find_seed_disk(
    devs: &[BlockDev],
    root_disk: Option<&str>,
    mount_dir: &Path,
) -> (Option<Seed>, Vec<String>) {
    let mut problems = Vec::new();
    for dev in seed_candidates(devs, root_disk) {
        let path = dev.dev_path();
        if !first_sector(&path).is_some_and(|s| is_vfat(&s)) {
            continue;
        }
        if let Err(e) = std::fs::create_dir_all(mount_dir) {
            problems.push(format!("cannot create {}: {e}", mount_dir.display()));
            break;
        }
        let shown = path.display().to_string();
        let flags =
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        // The kernel's default FAT charset (ascii) is a module the image may
        // not carry; nothing would load it on request. Try those it may carry.
        let mut failure = None;
        for opts in VFAT_OPTIONS {
            match mounts::mount_fs(&shown, mount_dir, "vfat", flags, opts) {
                Ok(()) => {
                    failure = None;
                    break;
                }
                Err(e) => failure = Some(e),
            }
        }
        if let Some(e) = failure {
            problems.push(format!(
                "seed disk {shown}: {e} (with the charsets ascii, iso8859-1 and utf8 in \
                 turn; is an nls module missing from the image?)"
            ));
            continue;
        }
        let found = read_seed_file(&mount_dir.join(SEED_DISK_FILE));
        let _ = nix::mount::umount2(mount_dir, nix::mount::MntFlags::empty());
        match found {
            Ok(Some(text)) => {
                return (
                    Some(Seed {
                        source: format!("{SEED_DISK_FILE} on {shown}"),
                        text,
                    }),
                    problems,
                )
            }
            Ok(None) => {}
            Err(e) => problems.push(format!("seed disk {shown}: {e}")),
        }
    }
    (None, problems)
}

/// Reads a seed file: `None` when absent, an error when unreadable or too big.
pub fn read_seed_file(path: &Path) -> Result<Option<String>, SeedError> {
    let read = |source| SeedError::Read {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(read(e)),
        Ok(m) if m.len() > SEED_MAX_BYTES => {
            return Err(SeedError::TooBig {
                path: path.to_path_buf(),
                bytes: m.len(),
            })
        }
        Ok(_) => {}
    }
    std::fs::read_to_string(path).map(Some).map_err(read)
}

/// The seed file in the state directory, if any.
pub fn state_seed(state_dir: &Path) -> (Option<Seed>, Option<String>) {
    let path: PathBuf = state_dir.join(STATE_SEED_FILE);
    match read_seed_file(&path) {
        Ok(Some(text)) => (
            Some(Seed {
                source: path.display().to_string(),
                text,
            }),
            None,
        ),
        Ok(None) => (None, None),
        Err(e) => (None, Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests;

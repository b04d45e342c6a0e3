//! The first boot's configuration, as PID 1: when the node has no stored
//! desired state, one is derived from the seed and the kernel parameters
//! ([`super::seed`]) and written to `<state-dir>/config.toml`, which
//! [`crate::node::Node::boot`] then applies as generation 1. Later boots keep
//! the stored state and say so when the kernel parameters differ from it.
//!
//! A configuration derived with errors (network left out) is recorded in
//! [`INCOMPLETE_FILE`]; while the node still runs that very configuration,
//! each boot derives it again, so fixed kernel parameters take effect.

use std::path::{Path, PathBuf};

use appliance_state::Store;
use tracing::{info, warn};

use super::blockdev;
use super::cmdline::BootParams;
use super::seed;
use crate::console::announce;
use crate::desired::{DesiredRecord, DESIRED_KEY};

/// Holds the TOML of a first-boot configuration derived with errors.
pub const INCOMPLETE_FILE: &str = "first-boot-config.incomplete";

/// What the first-boot step needs to know.
#[derive(Debug, Clone)]
pub struct Inputs {
    /// The kernel command line.
    pub params: BootParams,
    /// The disk of the root filesystem (not searched for a seed disk).
    pub root_disk: Option<String>,
    /// Where a seed disk is mounted while it is read.
    pub seed_mount: PathBuf,
    /// The block devices' sysfs class (`/sys/class/block`).
    pub block_class: PathBuf,
}

/// Refused parameters that concern the configuration (not root, log or the
/// first administrator).
fn config_param_errors(params: &BootParams) -> Vec<String> {
    params
        .errors
        .iter()
        .filter(|e| {
            !matches!(
                e.param.as_str(),
                "appliance.root" | "appliance.log" | "appliance.admin"
            )
        })
        .map(ToString::to_string)
        .collect()
}

/// Prepares `config_file` for [`crate::node::Node::boot`] on a first boot
/// (see the module documentation). Problems are shown on the consoles.
pub fn prepare(
    store: &Store,
    state_dir: &Path,
    config_file: &Path,
    machine_id: &str,
    inputs: &Inputs,
) {
    let stored = match store.get::<DesiredRecord>(DESIRED_KEY) {
        Ok(s) => s,
        Err(e) => {
            warn!("cannot read the stored desired state: {e}; leaving the configuration alone");
            return;
        }
    };
    let marker = state_dir.join(INCOMPLETE_FILE);
    let provisional = std::fs::read_to_string(&marker).ok();
    let stored_config = stored
        .as_ref()
        .and_then(|r| appliance_config::parse(&r.config_toml).ok());
    let derive = match (&stored_config, &provisional) {
        (None, _) => true,
        (Some(cfg), Some(text)) => {
            let same = appliance_config::parse(text).is_ok_and(|p| &p == cfg);
            if !same {
                // The administrator has configured the node since.
                let _ = std::fs::remove_file(&marker);
            }
            same
        }
        (Some(_), None) => false,
    };
    if derive {
        derive_config(store, state_dir, config_file, machine_id, inputs, &marker);
        return;
    }
    let (Some(cfg), Some(rec)) = (stored_config, stored) else {
        return;
    };
    // Named one by one: only those that would change something.
    let differing: Vec<&str> = inputs
        .params
        .config
        .given
        .iter()
        .filter(|given| {
            let one = super::cmdline::parse(given).config;
            seed::overlay(cfg.get().clone(), &one) != *cfg.get()
        })
        .map(String::as_str)
        .collect();
    if !differing.is_empty() {
        announce(&format!(
            "applianced: kernel parameters {} ignored: this node keeps its stored \
             configuration (generation {}); change it with `appliancectl config set`",
            differing.join(" "),
            rec.generation
        ));
    }
}

fn derive_config(
    store: &Store,
    state_dir: &Path,
    config_file: &Path,
    machine_id: &str,
    inputs: &Inputs,
    marker: &Path,
) {
    let (mut found, problem) = seed::state_seed(state_dir);
    let mut problems: Vec<String> = problem.into_iter().collect();
    if found.is_none() {
        let devs = blockdev::scan(&inputs.block_class);
        let (disk_seed, disk_problems) =
            seed::find_seed_disk(&devs, inputs.root_disk.as_deref(), &inputs.seed_mount);
        found = disk_seed;
        problems.extend(disk_problems);
    }
    for p in &problems {
        announce(&format!("applianced: ERROR: {p}"));
    }
    if let Some(seed) = &found {
        seed_first_admin(store, seed);
    }
    let param_errors = config_param_errors(&inputs.params);
    let fb = seed::first_boot(
        found.as_ref(),
        &inputs.params.config,
        &param_errors,
        &seed::default_hostname(machine_id),
    );
    // Refused parameters were shown already, when stage 2 read them.
    for e in fb.errors.iter().skip(param_errors.len()) {
        announce(&format!("applianced: ERROR: {e}"));
    }
    let Some(config) = fb.config else {
        announce("applianced: ERROR: no first-boot configuration could be made; the node stays unconfigured");
        return;
    };
    let text = config.to_toml();
    if let Err(e) = appliance_netcfg::write_atomically(config_file, text.as_bytes()) {
        announce(&format!("applianced: ERROR: {e}"));
        return;
    }
    let from = if fb.sources.is_empty() {
        "defaults".to_owned()
    } else {
        fb.sources.join(" and ")
    };
    if fb.complete {
        let _ = std::fs::remove_file(marker);
        info!("first-boot configuration from {from}");
    } else {
        if let Err(e) = appliance_netcfg::write_atomically(marker, text.as_bytes()) {
            warn!("cannot write {}: {e}", marker.display());
        }
        announce(&format!(
            "applianced: ERROR: the first-boot configuration was refused in part; the node \
             boots without network settings (hostname {}); fix the kernel parameters or the \
             seed and reboot",
            config.hostname
        ));
    }
}

/// The seed's first administrator (`[admin]`), into the node's own admin
/// data when it has no account yet; never over an existing one.
fn seed_first_admin(store: &Store, seed: &seed::Seed) {
    let account = match seed::seed_admin(&seed.text) {
        Ok(Some(a)) => a,
        Ok(None) => return,
        Err(e) => {
            announce(&format!("applianced: ERROR: seed {}: {e}", seed.source));
            return;
        }
    };
    let name = account.name.clone();
    let result = crate::cluster::own_admin::load(store).and_then(|mut own| {
        if own.accounts().next().is_some() {
            info!("there are accounts already; the seed's first administrator {name:?} is ignored");
            return Ok(());
        }
        let account = appliance_cluster::Account {
            changed_unix_ms: crate::time::unix_ms(std::time::SystemTime::now()),
            ..account
        };
        own.apply(&appliance_cluster::AdminChange::PutAccount {
            account,
            create: true,
        })?;
        crate::cluster::own_admin::save(store, &own)?;
        info!("first administrator {name:?} from seed {}", seed.source);
        Ok(())
    });
    if let Err(e) = result {
        announce(&format!(
            "applianced: ERROR: the first administrator {name:?} of seed {} is not applied: {e}",
            seed.source
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::boot::cmdline;

    fn inputs(line: &str, dir: &Path) -> Inputs {
        Inputs {
            params: cmdline::parse(line),
            root_disk: None,
            seed_mount: dir.join("seed-mnt"),
            // No block devices: the host's disks are not probed.
            block_class: dir.join("no-block-devices"),
        }
    }

    fn store_config(store: &Store, generation: u64, toml: &str) {
        let rec = DesiredRecord {
            generation,
            config_toml: appliance_config::parse(toml).unwrap().to_toml(),
            peers: Default::default(),
        };
        store.put(DESIRED_KEY, &rec).unwrap();
    }

    #[test]
    fn first_boot_writes_the_config_file_then_keeps_the_stored_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(dir.path().join("seed.toml"), "roles = [\"backend\"]\n").unwrap();
        let inp = inputs(
            "appliance.ip=10.0.2.15/24 appliance.gw=10.0.2.2",
            dir.path(),
        );
        prepare(
            &store,
            dir.path(),
            &cfg,
            "0123456789abcdef0123456789abcdef",
            &inp,
        );
        let written = appliance_config::parse(&std::fs::read_to_string(&cfg).unwrap()).unwrap();
        assert_eq!(written.hostname, "appliance-012345");
        assert_eq!(written.roles, [appliance_config::Role::Backend].into());
        assert_eq!(
            written.interfaces[0].addresses[0].to_string(),
            "10.0.2.15/24"
        );
        assert!(!dir.path().join(INCOMPLETE_FILE).exists());

        // Once stored, other parameters change nothing.
        store_config(&store, 1, &written.to_toml());
        std::fs::remove_file(&cfg).unwrap();
        let inp = inputs("appliance.ip=10.0.2.99/24", dir.path());
        prepare(
            &store,
            dir.path(),
            &cfg,
            "0123456789abcdef0123456789abcdef",
            &inp,
        );
        assert!(!cfg.exists());
    }

    #[test]
    fn an_incomplete_config_is_derived_again_until_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cfg = dir.path().join("config.toml");
        let id = "abcdef0123456789abcdef0123456789";
        prepare(
            &store,
            dir.path(),
            &cfg,
            id,
            &inputs("appliance.ip=10.0.2.300/24", dir.path()),
        );
        let provisional = std::fs::read_to_string(&cfg).unwrap();
        assert!(!provisional.contains("[[interface]]"), "{provisional}");
        assert!(dir.path().join(INCOMPLETE_FILE).exists());

        // The node applied it; the next boot has fixed parameters.
        store_config(&store, 1, &provisional);
        prepare(
            &store,
            dir.path(),
            &cfg,
            id,
            &inputs("appliance.ip=10.0.2.15/24", dir.path()),
        );
        let fixed = std::fs::read_to_string(&cfg).unwrap();
        assert!(fixed.contains("10.0.2.15/24"), "{fixed}");
        assert!(!dir.path().join(INCOMPLETE_FILE).exists());
    }

    #[test]
    fn a_config_set_since_ends_the_incomplete_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cfg = dir.path().join("config.toml");
        let id = "abcdef0123456789abcdef0123456789";
        prepare(
            &store,
            dir.path(),
            &cfg,
            id,
            &inputs("appliance.gw=nope", dir.path()),
        );
        assert!(dir.path().join(INCOMPLETE_FILE).exists());
        store_config(&store, 2, "version = 1\nhostname = \"set-by-admin\"\n");
        std::fs::remove_file(&cfg).unwrap();
        prepare(
            &store,
            dir.path(),
            &cfg,
            id,
            &inputs("appliance.ip=10.0.2.15/24", dir.path()),
        );
        assert!(!cfg.exists());
        assert!(!dir.path().join(INCOMPLETE_FILE).exists());
    }

    #[test]
    fn the_seeds_first_administrator_is_set_once_and_a_bad_admin_parameter_keeps_the_config() {
        const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cfg = dir.path().join("config.toml");
        std::fs::write(
            dir.path().join("seed.toml"),
            format!("[admin]\nname = \"root\"\npassword_hash = \"{HASH}\"\n"),
        )
        .unwrap();
        // A refused appliance.admin= is no reason to leave the network out.
        let inp = inputs(
            "appliance.ip=10.0.2.15/24 appliance.admin=root:bad",
            dir.path(),
        );
        prepare(
            &store,
            dir.path(),
            &cfg,
            "0123456789abcdef0123456789abcdef",
            &inp,
        );
        assert!(!dir.path().join(INCOMPLETE_FILE).exists());
        let own = crate::cluster::own_admin::load(&store).unwrap();
        let root = own.account("root").unwrap();
        assert_eq!(root.password_hash, HASH);
        assert!(root.changed_unix_ms > 0);

        // Derived again (no stored state yet), a different seed changes nothing.
        std::fs::write(
            dir.path().join("seed.toml"),
            format!("[admin]\nname = \"other\"\npassword_hash = \"{HASH}\"\n"),
        )
        .unwrap();
        prepare(
            &store,
            dir.path(),
            &cfg,
            "0123456789abcdef0123456789abcdef",
            &inp,
        );
        let again = crate::cluster::own_admin::load(&store).unwrap();
        assert_eq!(again, own);
    }
}

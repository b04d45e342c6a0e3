//! The node: holds the desired state and moves it from one generation to the
//! next as one transaction over the reconcilers. A change is planned against
//! the live system, applied (firewall, network, hostname, resolver), and only
//! then committed to the state database; any failure undoes what was applied,
//! so a refused change leaves the node and its stored state as they were.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use appliance_config::ValidConfig;
use appliance_firewall::{Firewall, FirewallStatus};
use appliance_netcfg::{NetError, Netcfg, NetworkSpec, Owned};
use appliance_state::{Batch, Identity, StateError, Store};
use appliance_supervisor::{Manifest, Supervisor};
use tokio::sync::Mutex;
use tracing::{debug, error, info, warn};

use crate::desired::cluster::ClusterPart;
use crate::desired::{parse_peer, Desired, DesiredRecord, PeerError, DESIRED_KEY};
use crate::error::NodeError;
use crate::mode::Mode;
use crate::nft::ReaperNft;
use crate::observations::Observations;

/// State database key of the network reconciler's [`Owned`] record.
const OWNED_KEY: &str = "netcfg/owned";

/// Where the node keeps its files.
#[derive(Debug, Clone)]
pub struct Paths {
    /// The admin-editable config file, mirrored on every accepted change.
    pub config_file: PathBuf,
    /// The bounded log file.
    pub log_file: PathBuf,
    /// The resolver file applianced writes.
    pub resolv_conf: PathBuf,
}

/// What a node is built from; `main` wires these up.
pub struct Parts {
    /// Who this node is.
    pub identity: Identity,
    /// PID 1 or hosted.
    pub mode: Mode,
    /// Its files.
    pub paths: Paths,
    /// The state database.
    pub store: Store,
    /// Every service manifest the node knows (placement picks among them).
    pub manifests: Vec<Manifest>,
    /// The service supervisor.
    pub supervisor: Supervisor,
    /// Netlink connection of the node's network namespace.
    pub netcfg: Netcfg,
    /// The firewall reconciler.
    pub firewall: Firewall<ReaperNft>,
}

/// What changes together under the node's lock.
struct Core {
    desired: Option<Desired>,
    /// The cluster's part of the next desired state (the membership as the
    /// cluster module last gave it); applied with the next transition.
    cluster: ClusterPart,
    owned: Owned,
    netcfg: Netcfg,
    firewall: Firewall<ReaperNft>,
}

/// One appliance node.
pub struct Node {
    /// Who this node is.
    pub identity: Identity,
    /// PID 1 or hosted.
    pub mode: Mode,
    /// Its files.
    pub paths: Paths,
    /// When applianced started.
    pub started: Instant,
    /// Reconciler observations.
    pub observations: Observations,
    /// The supervisor of the placed services.
    pub supervisor: Supervisor,
    store: Store,
    manifests: Vec<Manifest>,
    core: Mutex<Core>,
}

impl Node {
    /// A node with nothing applied yet; call [`Node::boot`].
    pub fn new(parts: Parts) -> Result<Self, NodeError> {
        let owned = parts.store.get::<Owned>(OWNED_KEY)?.unwrap_or_default();
        Ok(Self {
            identity: parts.identity,
            mode: parts.mode,
            paths: parts.paths,
            started: Instant::now(),
            observations: Observations::default(),
            supervisor: parts.supervisor,
            store: parts.store,
            manifests: parts.manifests,
            core: Mutex::new(Core {
                desired: None,
                cluster: ClusterPart::default(),
                owned,
                netcfg: parts.netcfg,
                firewall: parts.firewall,
            }),
        })
    }

    /// Converges on the stored desired state, or on the config file when it is
    /// new or was edited; falls back to the stored state when the file's
    /// config cannot be applied.
    pub async fn boot(&self) -> Result<(), NodeError> {
        let stored = self.load_stored()?;
        let from_file = self.load_file();
        let mut core = self.core.lock().await;
        // The stored record has no cluster part: it comes from the membership.
        let stored = stored.map(|s| Desired {
            cluster: core.cluster.clone(),
            ..s
        });
        let target = match (&stored, from_file) {
            (Some(s), Ok(Some(cfg))) if cfg != s.config => Some(Desired {
                generation: s.generation + 1,
                config: cfg,
                peers: s.peers.clone(),
                cluster: core.cluster.clone(),
            }),
            (None, Ok(Some(cfg))) => Some(Desired {
                generation: 1,
                config: cfg,
                peers: BTreeSet::new(),
                cluster: core.cluster.clone(),
            }),
            (_, Err(e)) => {
                error!(
                    "{}: {e}; keeping the stored configuration",
                    self.paths.config_file.display()
                );
                self.observations
                    .record("network", 0, Err(format!("config file refused: {e}")));
                stored.clone()
            }
            _ => stored.clone(),
        };
        let Some(target) = target else {
            return Err(NodeError::NoConfig(
                self.paths.config_file.display().to_string(),
            ));
        };
        match self.transition(&mut core, target.clone()).await {
            Ok(_) => Ok(()),
            Err(e) => match stored {
                Some(s) if s != target => {
                    error!(
                        "applying the config file failed: {e}; falling back to generation {}",
                        s.generation
                    );
                    self.transition(&mut core, s).await.map(|_| ())
                }
                _ => Err(e),
            },
        }
    }

    fn load_stored(&self) -> Result<Option<Desired>, NodeError> {
        let Some(rec) = self.store.get::<DesiredRecord>(DESIRED_KEY)? else {
            return Ok(None);
        };
        let config = appliance_config::parse(&rec.config_toml)?;
        Ok(Some(Desired {
            generation: rec.generation,
            config,
            peers: rec.peers,
            cluster: ClusterPart::default(),
        }))
    }

    fn load_file(&self) -> Result<Option<ValidConfig>, NodeError> {
        match std::fs::read_to_string(&self.paths.config_file) {
            Ok(text) => Ok(Some(appliance_config::parse(&text)?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(NodeError::NoConfig(format!(
                "{} ({e})",
                self.paths.config_file.display()
            ))),
        }
    }

    /// Converges again on the current desired state, repairing whatever drifted
    /// (a flushed firewall, an address removed by hand); a no-op, writing
    /// nothing, when nothing did. A node that never converged retries its boot.
    pub async fn reconcile(&self) -> Result<Vec<String>, NodeError> {
        let current = self.core.lock().await.desired.clone();
        let Some(current) = current else {
            self.boot().await?;
            return Ok(vec!["converged for the first time".to_owned()]);
        };
        let mut core = self.core.lock().await;
        // A change may have landed between the two locks: reconcile that one.
        let mut current = core.desired.clone().unwrap_or(current);
        // A cluster change that could not be applied when it came is tried again.
        if current.cluster != core.cluster {
            current.cluster = core.cluster.clone();
            current.generation += 1;
        }
        self.transition(&mut core, current).await
    }

    /// Follows the cluster: `part` becomes the cluster's share of the
    /// desired state, applied as one transition (the firewall's sets
    /// updated incrementally, services that stay placed left running).
    /// Before the node first converged it is only recorded, for the boot.
    pub async fn set_cluster(&self, part: ClusterPart) -> Result<Vec<String>, NodeError> {
        let mut core = self.core.lock().await;
        // Kept even if the transition fails: the reconcile loop retries it.
        core.cluster = part.clone();
        let Some(current) = core.desired.clone() else {
            return Ok(Vec::new());
        };
        if current.cluster == part {
            return Ok(Vec::new());
        }
        let next = Desired {
            generation: current.generation + 1,
            cluster: part,
            ..current
        };
        self.transition(&mut core, next).await
    }

    /// The applied desired state.
    pub async fn desired(&self) -> Option<Desired> {
        self.core.lock().await.desired.clone()
    }

    /// Validates and applies a new configuration.
    pub async fn set_config(&self, text: &str) -> Result<(Desired, Vec<String>), NodeError> {
        let config = appliance_config::parse(text)?;
        let mut core = self.core.lock().await;
        let current = core
            .desired
            .clone()
            .ok_or_else(|| NodeError::NoConfig(self.paths.config_file.display().to_string()))?;
        if current.config == config {
            return Ok((current, vec!["no change".to_owned()]));
        }
        let next = Desired {
            generation: current.generation + 1,
            config,
            peers: current.peers.clone(),
            cluster: current.cluster.clone(),
        };
        let changes = self.transition(&mut core, next.clone()).await?;
        Ok((next, changes))
    }

    /// Adds (`add`) or removes a peer allowed on internal ports.
    pub async fn change_peer(&self, text: &str, add: bool) -> Result<Desired, NodeError> {
        let mut core = self.core.lock().await;
        let current = core
            .desired
            .clone()
            .ok_or_else(|| NodeError::NoConfig(self.paths.config_file.display().to_string()))?;
        let addr = parse_peer(text, &current.own_addresses())?;
        let mut next = current.clone();
        let changed = if add {
            next.peers.insert(addr)
        } else {
            next.peers.remove(&addr)
        };
        if !changed {
            let what = if add { "already a peer" } else { "not a peer" };
            return Err(
                PeerError::Membership(format!("{addr} is {what}; nothing was changed")).into(),
            );
        }
        next.generation += 1;
        self.transition(&mut core, next.clone()).await?;
        Ok(next)
    }

    /// Moves the node to `next`: firewall, network, hostname and resolver, then
    /// the commit, then the services. Returns what changed.
    async fn transition(&self, core: &mut Core, next: Desired) -> Result<Vec<String>, NodeError> {
        let generation = next.generation;
        let prev = core.desired.clone();
        let placed = next.placement(&self.manifests);
        let fw_spec = next.firewall_spec(&placed);
        let net_spec = NetworkSpec::from_config(&next.config);
        let mut changes = Vec::new();

        // Plan first: a config that does not fit this machine (say, a missing
        // interface) is refused before anything is touched.
        let observed = core.netcfg.observe().await?;
        let plan = appliance_netcfg::plan(&net_spec, &observed, &core.owned)
            .inspect_err(|e| {
                self.observations
                    .record("network", generation, Err(e.to_string()));
            })
            .map_err(NetError::from)?;

        let fw = core.firewall.apply(&fw_spec).await;
        match &fw {
            Ok(r) => {
                self.observations.record(
                    "firewall",
                    generation,
                    Ok(format!("{:?} in {:?}", r.kind, r.elapsed)),
                );
                if r.kind != appliance_firewall::ApplyKind::NoOp {
                    changes.push(format!("firewall: {:?}", r.kind));
                }
            }
            Err(e) => {
                self.observations
                    .record("firewall", generation, Err(e.to_string()));
            }
        }
        fw.map_err(NodeError::FirewallApply)?;

        // Record the intent before acting: after a crash mid-apply, the next
        // boot still knows every address it may have added.
        if !plan.actions.is_empty() {
            self.store.put(OWNED_KEY, &core.owned.union(&plan.intent))?;
        }
        let report = match core
            .netcfg
            .apply_from(&net_spec, observed, &core.owned)
            .await
        {
            Ok(r) => r,
            Err(e) => {
                let owned = owned_after(&e).unwrap_or(&core.owned).clone();
                self.store.put(OWNED_KEY, &owned)?;
                core.owned = owned;
                self.observations
                    .record("network", generation, Err(e.to_string()));
                self.undo_firewall(core, prev.as_ref()).await;
                return Err(e.into());
            }
        };
        changes.extend(report.actions.iter().map(|a| format!("network: {a}")));

        if let Err(e) = self.apply_host(&next, prev.as_ref()) {
            self.observations
                .record("network", generation, Err(e.to_string()));
            self.undo_network(core, prev.as_ref(), report.owned).await;
            self.undo_firewall(core, prev.as_ref()).await;
            return Err(match prev {
                Some(_) => NodeError::RolledBack(Box::new(e)),
                None => NodeError::NotRolledBack(Box::new(e)),
            });
        }

        // A periodic reconcile that found nothing to do writes nothing.
        let unchanged = prev.as_ref() == Some(&next) && core.owned == report.owned;
        if !unchanged {
            let mut batch = Batch::default();
            batch.put(DESIRED_KEY, &next.record())?;
            batch.put(OWNED_KEY, &report.owned)?;
            if let Err(e) = commit_transition(&self.store, batch, &next) {
                self.undo_network(core, prev.as_ref(), report.owned).await;
                self.undo_firewall(core, prev.as_ref()).await;
                return Err(e.into());
            }
        }
        core.owned = report.owned;
        core.desired = Some(next.clone());
        self.observations.record(
            "network",
            generation,
            Ok(format!(
                "{} change(s), {} address(es)",
                report.actions.len(),
                next.own_addresses().len()
            )),
        );
        self.mirror_config_file(&next);

        // Services follow the committed state; their failures are runtime
        // states (backoff, failed), reported by the services reconciler.
        if let Err(e) = self.supervisor.set_placed(placed).await {
            error!("placing services failed: {e}");
            self.observations
                .record("services", generation, Err(e.to_string()));
        }
        if changes.is_empty() && prev.as_ref() == Some(&next) {
            debug!(generation, "reconciled: no drift");
        } else {
            info!(
                generation,
                changes = changes.len(),
                "desired state applied: {}",
                changes.join("; ")
            );
        }
        Ok(changes)
    }

    /// Hostname and resolver of `next`; restores the previous ones on failure.
    fn apply_host(&self, next: &Desired, prev: Option<&Desired>) -> Result<(), NodeError> {
        // Compared with what is live, not with `prev`, so drift is repaired
        // and an unchanged state writes nothing.
        let live = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok());
        if live.as_deref() != Some(next.config.hostname.as_str()) {
            appliance_netcfg::set_hostname(&next.config.hostname)?;
        }
        // The management settings' resolvers, when set, replace the config's.
        let resolv = appliance_netcfg::render_resolv_conf(&next.dns());
        if let Err(e) = appliance_netcfg::write_resolv_conf(&self.paths.resolv_conf, &resolv) {
            if let Some(p) = prev {
                let _ = appliance_netcfg::set_hostname(&p.config.hostname);
            }
            return Err(e.into());
        }
        Ok(())
    }

    async fn undo_network(&self, core: &mut Core, prev: Option<&Desired>, owned: Owned) {
        let Some(prev) = prev else {
            core.owned = owned;
            return;
        };
        let spec = NetworkSpec::from_config(&prev.config);
        match core.netcfg.apply(&spec, &owned).await {
            Ok(r) => core.owned = r.owned,
            Err(e) => {
                error!("restoring the previous network configuration failed: {e}");
                core.owned = owned_after(&e).unwrap_or(&owned).clone();
            }
        }
        if let Err(e) = self.store.put(OWNED_KEY, &core.owned) {
            error!("recording the restored network state failed: {e}");
        }
        let _ = self.apply_host(prev, None);
    }

    async fn undo_firewall(&self, core: &mut Core, prev: Option<&Desired>) {
        let Some(prev) = prev else { return };
        let spec = prev.firewall_spec(&prev.placement(&self.manifests));
        if let Err(e) = core.firewall.apply(&spec).await {
            error!("restoring the previous firewall failed: {e}");
        } else {
            self.observations
                .record("firewall", prev.generation, Ok("restored".to_owned()));
        }
    }

    fn mirror_config_file(&self, next: &Desired) {
        if let Err(e) = write_if_changed(&self.paths.config_file, &next.config.to_toml()) {
            warn!(
                "could not mirror the applied config to {}: {e}",
                self.paths.config_file.display()
            );
        }
    }

    /// The firewall as the kernel has it, and its rendering.
    pub async fn firewall(&self) -> Result<(FirewallStatus, String), NodeError> {
        let core = self.core.lock().await;
        let status = core
            .firewall
            .show()
            .await
            .map_err(NodeError::FirewallRead)?;
        let text = core
            .firewall
            .applied()
            .map(appliance_firewall::render_text)
            .unwrap_or_default();
        Ok((status, text))
    }

    /// Every service manifest the node knows (placement picks among them).
    pub fn manifests(&self) -> &[Manifest] {
        &self.manifests
    }

    /// The ports a service declares, as `8080/tcp public`; a management
    /// port as `management_port` when given (the node's configured one).
    pub fn ports_of(&self, service: &str, management_port: Option<u16>) -> Vec<String> {
        self.manifests
            .iter()
            .filter(|m| m.name == service)
            .map(|m| match management_port {
                Some(port) => crate::desired::management_port_here(m.clone(), port),
                None => m.clone(),
            })
            .flat_map(|m| m.ports)
            .map(|p| format!("{}/{:?} {:?}", p.port, p.protocol, p.exposure).to_lowercase())
            .collect()
    }

    /// Kills the service copies a crashed predecessor left running; once, at start.
    pub fn kill_leftovers(&self) {
        crate::leftovers::kill(&self.store, &self.manifests, std::path::Path::new("/proc"));
    }

    /// Stores the service states, so the last known state survives a restart.
    pub fn persist_services(&self, services: &[appliance_supervisor::ServiceStatus]) {
        if let Err(e) = crate::leftovers::persist(&self.store, services) {
            warn!("could not store service states: {e}");
        }
    }
}

/// Reconciles every `every` until `stop` turns true, so drift is repaired and
/// the status stays a fresh observation. A run is never cancelled half-way:
/// `stop` is only looked at between runs.
pub async fn reconcile_loop(
    node: Arc<Node>,
    every: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every.max(Duration::from_secs(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if *stop.borrow() {
            return;
        }
        match node.reconcile().await {
            Ok(changes) if !changes.is_empty() => warn!("repaired drift: {}", changes.join("; ")),
            Ok(_) => {}
            Err(e) => warn!("reconcile failed: {e}"),
        }
    }
}

/// Replaces `path` atomically with `contents`, unless it already holds them:
/// reconciling an unchanged state writes nothing.
fn write_if_changed(
    path: &std::path::Path,
    contents: &str,
) -> Result<(), appliance_netcfg::ResolvError> {
    if std::fs::read_to_string(path).is_ok_and(|t| t == contents) {
        return Ok(());
    }
    appliance_netcfg::write_atomically(path, contents.as_bytes())
}

/// Commits the batch of the transition to `next`; test builds can fail it
/// with the `applianced-transition-commit` failpoint.
fn commit_transition(store: &Store, batch: Batch, next: &Desired) -> Result<(), StateError> {
    #[cfg(feature = "failpoints")]
    if crate::failpoints::commit_fails(&next.config.to_toml()) {
        return Err(StateError::Injected {
            what: format!("generation {}", next.generation),
            point: crate::failpoints::TRANSITION_COMMIT,
        });
    }
    #[cfg(not(feature = "failpoints"))]
    let _ = next;
    store.commit(batch)
}

/// The owned record a failed network apply asks the caller to keep.
fn owned_after(e: &NetError) -> Option<&Owned> {
    match e {
        NetError::RolledBack { owned, .. }
        | NetError::RollbackIncomplete { owned, .. }
        | NetError::NotConverged { owned, .. } => Some(owned),
        _ => None,
    }
}

//! The cluster side's background tasks, each ended by the cluster's
//! cancellation: the beacon sender (while unjoined) and listeners, the
//! console's join code line, a joined node reporting itself active once
//! its services are healthy, and certificate renewal.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use appliance_cluster::rand_core::OsRng;
use appliance_cluster::{
    Beacon, CertFingerprint, Change, ChangeError, JoinCodeSlot, MemberState, SlotPolicy,
};
use appliance_peering::beacon::{self, BEACON_INTERVAL};
use appliance_peering::{AuthorityError, NodeStatus, PeerError, PeerNode};
use appliance_pki::NODE_CERT_VALIDITY;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::ctx::{lock, ClusterError, Ctx, TypedSlot};
use super::facts::beacon_targets;
use crate::desired::cluster::PeerPorts;
use crate::node::Node;

/// Waiting to be joined: the join code and the beacons it starts and stops.
impl Ctx {
    /// Waits to be joined: a new join code, the join service, the beacons.
    pub(crate) fn wait_for_join(&self) -> Result<(), ClusterError> {
        let ports = self.ports;
        let slot: TypedSlot = Arc::new(Mutex::new(JoinCodeSlot::new(
            OsRng,
            SlotPolicy::default(),
            Instant::now(),
        )));
        let fingerprint = self.peer.become_unjoined(slot.clone())?;
        *lock(&self.slot) = Some(slot);
        self.stop_beacons();
        let token = self.cancel.child_token();
        *lock(&self.beacons) = Some(token.clone());
        let node = self.node.clone();
        let peer = self.peer.clone();
        let sys_net = self.sys_net.clone();
        self.spawn(send_beacons(node, peer, fingerprint, ports, sys_net, token));
        Ok(())
    }

    /// A member now: no more join code or beacons.
    pub(crate) fn stop_waiting(&self) {
        *lock(&self.slot) = None;
        self.stop_beacons();
    }

    fn stop_beacons(&self) {
        if let Some(t) = lock(&self.beacons).take() {
            t.cancel();
        }
    }
}

/// Sends this node's beacon every [`BEACON_INTERVAL`] until `cancel`
/// fires, rebuilt each round from the node's current facts (a new address
/// is announced without a restart).
pub(crate) async fn send_beacons(
    node: Arc<Node>,
    peer: PeerNode,
    fingerprint: CertFingerprint,
    ports: PeerPorts,
    sys_net: std::path::PathBuf,
    cancel: CancellationToken,
) {
    let mut warned = false;
    while !cancel.is_cancelled() {
        let desired = node.desired().await;
        let facts = peer.facts();
        let addresses: Vec<_> = facts
            .addresses
            .iter()
            .copied()
            .filter(|a| !a.is_loopback() && !a.is_unspecified() && !a.is_multicast())
            .take(appliance_cluster::beacon::MAX_ADDRESSES)
            .collect();
        let targets = desired
            .as_ref()
            .map(|d| beacon_targets(d, &sys_net, ports.beacon))
            .unwrap_or_default();
        let beacon = Beacon {
            hostname: facts.hostname,
            addresses,
            version: facts.version,
            fingerprint,
            join_port: ports.peer,
        };
        if !beacon.addresses.is_empty() && !targets.is_empty() {
            // One round: the token given is already cancelled, so the
            // sender returns after sending to every target once.
            let once = CancellationToken::new();
            once.cancel();
            match beacon::send_beacons(&beacon, &targets, BEACON_INTERVAL, once).await {
                Ok(stats) if stats.errors > 0 && !warned => {
                    warned = true;
                    warn!("some beacons could not be sent (is the link down?)");
                }
                Ok(_) => {}
                Err(e) if !warned => {
                    warned = true;
                    warn!("beacons not sent: {e}");
                }
                Err(e) => debug!("beacons not sent: {e}"),
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(BEACON_INTERVAL) => {}
        }
    }
}

/// Hears beacons on `port` (IPv4 and IPv6) into the discovered table.
pub(crate) fn listen_beacons(ctx: &Arc<Ctx>, port: u16) {
    match beacon::bind_listener(port) {
        Ok(sockets) => {
            for socket in sockets {
                let table = ctx.discovered.clone();
                let cancel = ctx.cancel.clone();
                ctx.spawn(async move {
                    beacon::listen_beacons(socket, table, cancel).await;
                });
            }
            info!(port, "listening for discovery beacons");
        }
        Err(e) => warn!("cannot listen for discovery beacons: {e}"),
    }
}

/// `HH:MM UTC` of `t` (the console has no time zone).
pub(crate) fn clock_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let day = secs % 86_400;
    format!("{:02}:{:02} UTC", day / 3600, (day % 3600) / 60)
}

/// The console line of a join code.
pub(crate) fn join_code_line(code: &str, expires: SystemTime) -> String {
    format!("join code: {code} (expires {})", clock_utc(expires))
}

/// Shows the join code on the console (and in the log) whenever it changes.
pub(crate) async fn show_join_code(ctx: Arc<Ctx>) {
    let mut shown: Option<String> = None;
    loop {
        ctx.refresh_facts().await;
        let current = ctx.join_code();
        let code = current.as_ref().map(|(c, _)| c.clone());
        if code != shown {
            if let Some((c, expires)) = &current {
                // The code itself goes to the console only, not into the log.
                info!(
                    "a new join code is shown on the console (expires {})",
                    clock_utc(*expires)
                );
                crate::console::announce(&join_code_line(c, *expires));
            }
            shown = code;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// True when every service placed on `node` runs (healthy, or running
/// without a health check).
async fn services_up(node: &Node) -> bool {
    let Some(desired) = node.desired().await else {
        return false;
    };
    let placed: std::collections::BTreeSet<String> = desired
        .placement(node.manifests())
        .into_iter()
        .map(|m| m.name)
        .collect();
    let status = node.supervisor.status();
    let names: std::collections::BTreeSet<String> = status.iter().map(|s| s.name.clone()).collect();
    names == placed && crate::ready::services_ok(&status)
}

/// A joined node: once its services run, it asks the authority to make it
/// active (the state the cluster waits for). Bounded: it reports active
/// anyway after the activation limit, since a service that keeps failing
/// is a runtime state `status` shows, not a reason to stay joining.
pub(crate) async fn activate(ctx: Arc<Ctx>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !matches!(ctx.peer.status(), NodeStatus::Member { .. }) {
        if Instant::now() >= deadline {
            warn!("not a member 30 s after joining; not reporting active");
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    let mut rx = ctx.node.supervisor.subscribe();
    while !services_up(&ctx.node).await {
        if started.elapsed() >= ctx.activation_limit {
            warn!(
                "the services are not all up after {:?}; reporting active anyway",
                ctx.activation_limit
            );
            break;
        }
        tokio::select! {
            _ = rx.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let change = Change::SetState {
        node: ctx.me,
        state: MemberState::Active,
    };
    for attempt in 1..=5u32 {
        match ctx.peer.apply_change(change.clone()).await {
            Ok(report) => {
                info!(
                    generation = report.state.generation(),
                    after_ms = started.elapsed().as_millis(),
                    "services up: this node is active in the cluster"
                );
                return;
            }
            Err(PeerError::Authority(AuthorityError::Refused(ChangeError::NoChange {
                ..
            }))) => return,
            Err(PeerError::Authority(AuthorityError::Refused(e))) => {
                // Removed meanwhile, say: nothing to retry.
                warn!("could not report active: {e}");
                return;
            }
            Err(e) => {
                warn!(attempt, "could not report active: {e}");
                tokio::time::sleep(Duration::from_secs(u64::from(attempt))).await;
            }
        }
    }
}

/// Renews this node's certificate when a third of its validity is left;
/// checked every hour.
pub(crate) async fn renew_certificate(ctx: Arc<Ctx>) {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
        if !matches!(ctx.peer.status(), NodeStatus::Member { .. }) {
            continue;
        }
        let cert = match ctx.store.membership() {
            Ok(Some(record)) => record.cert(),
            _ => continue,
        };
        let due = cert.is_ok_and(|c| c.needs_renewal(SystemTime::now(), NODE_CERT_VALIDITY / 3));
        if due {
            match ctx.peer.renew_certificate().await {
                Ok(c) => info!(fingerprint = %c.fingerprint(), "certificate renewed"),
                Err(e) => warn!("certificate renewal failed (retried in an hour): {e}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_line_names_the_expiry_in_utc() {
        let t = UNIX_EPOCH + Duration::from_secs(86_400 * 3 + 14 * 3600 + 5 * 60 + 59);
        assert_eq!(
            join_code_line("K7Q2M-XW9RT", t),
            "join code: K7Q2M-XW9RT (expires 14:05 UTC)"
        );
    }
}

//! The discovery beacon on the wire: an unjoined appliance sends its
//! [`Beacon`] every [`BEACON_INTERVAL`] to its subnet's broadcast address and
//! to the all-nodes IPv6 multicast group ([`subnet_targets`]); cluster nodes
//! listen and keep what they hear in a [`Discovered`] table
//! ([`listen_beacons`]). Both run until their cancellation token fires, and
//! every datagram is checked by [`Beacon::decode`] before it is believed.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub use appliance_cluster::beacon::BEACON_INTERVAL;
use appliance_cluster::beacon::MAX_BEACON_LEN;
use appliance_cluster::{Beacon, BeaconError, Discovered};
use ipnet::Ipv4Net;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

/// The UDP port beacons are sent to, unless configured otherwise.
pub const DEFAULT_BEACON_PORT: u16 = 7946;

/// The IPv6 all-nodes link-local multicast group.
pub const ALL_NODES_V6: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// Why beacons cannot be sent or heard.
#[derive(Debug, thiserror::Error)]
pub enum BeaconIoError {
    /// The beacon itself is not valid.
    #[error(transparent)]
    Beacon(#[from] BeaconError),
    /// A socket could not be set up.
    #[error("cannot {action}: {source}")]
    Socket {
        /// What was being done.
        action: String,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
    /// Nowhere to send to.
    #[error("no beacon target: give an IPv4 subnet, an IPv6 interface, or an address")]
    NoTarget,
}

fn socket_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> BeaconIoError {
    let action = action.into();
    move |source| BeaconIoError::Socket { action, source }
}

/// Where an appliance on `subnet` (its IPv4 address and prefix) and on the
/// interface with index `v6_interface` announces itself: the subnet's
/// broadcast address and `ff02::1` on that interface, both on `port`.
pub fn subnet_targets(
    subnet: Option<Ipv4Net>,
    v6_interface: Option<u32>,
    port: u16,
) -> Vec<SocketAddr> {
    let v4 = subnet.map(|n| SocketAddr::new(IpAddr::V4(n.broadcast()), port));
    let v6 =
        v6_interface.map(|scope| SocketAddr::V6(SocketAddrV6::new(ALL_NODES_V6, port, 0, scope)));
    v4.into_iter().chain(v6).collect()
}

/// What a sender did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SendStats {
    /// Rounds sent (one datagram to each target per round).
    pub rounds: u64,
    /// Datagrams the system refused to send.
    pub errors: u64,
}

/// Sends `beacon` to every target every `interval` until `cancel` fires.
pub async fn send_beacons(
    beacon: &Beacon,
    targets: &[SocketAddr],
    interval: Duration,
    cancel: CancellationToken,
) -> Result<SendStats, BeaconIoError> {
    let datagram = beacon.encode()?;
    if targets.is_empty() {
        return Err(BeaconIoError::NoTarget);
    }
    let v4 = if targets.iter().any(SocketAddr::is_ipv4) {
        let s = UdpSocket::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0))
            .await
            .map_err(socket_error("bind an IPv4 UDP socket for beacons"))?;
        s.set_broadcast(true)
            .map_err(socket_error("allow broadcast on the beacon socket"))?;
        Some(s)
    } else {
        None
    };
    let v6 = if targets.iter().any(SocketAddr::is_ipv6) {
        Some(
            UdpSocket::bind(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0))
                .await
                .map_err(socket_error("bind an IPv6 UDP socket for beacons"))?,
        )
    } else {
        None
    };
    let mut stats = SendStats::default();
    loop {
        for target in targets {
            let socket = if target.is_ipv4() { &v4 } else { &v6 };
            let Some(socket) = socket else { continue };
            if let Err(e) = socket.send_to(&datagram, target).await {
                // Logged once per kind of trouble would be nicer; debug keeps a down link quiet.
                tracing::debug!(%target, "beacon not sent: {e}");
                stats.errors += 1;
            }
        }
        stats.rounds += 1;
        tokio::select! {
            _ = cancel.cancelled() => return Ok(stats),
            _ = tokio::time::sleep(interval) => {}
        }
    }
}

/// Binds the sockets a cluster node hears beacons on: `0.0.0.0:port` and
/// `[::]:port` (IPv6 only, so both can bind).
pub fn bind_listener(port: u16) -> Result<Vec<UdpSocket>, BeaconIoError> {
    let mut sockets = Vec::new();
    for (domain, addr) in [
        (
            Domain::IPV4,
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port),
        ),
        (
            Domain::IPV6,
            SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), port),
        ),
    ] {
        let what = format!("listen for beacons on {addr}");
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))
            .map_err(socket_error(what.clone()))?;
        if domain == Domain::IPV6 {
            s.set_only_v6(true).map_err(socket_error(what.clone()))?;
        }
        s.set_reuse_address(true)
            .map_err(socket_error(what.clone()))?;
        s.set_nonblocking(true)
            .map_err(socket_error(what.clone()))?;
        s.bind(&addr.into()).map_err(socket_error(what.clone()))?;
        let std: std::net::UdpSocket = s.into();
        sockets.push(UdpSocket::from_std(std).map_err(socket_error(what))?);
    }
    Ok(sockets)
}

/// What a listener heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListenStats {
    /// Valid beacons recorded.
    pub accepted: u64,
    /// Datagrams refused (not a beacon, or not a valid one).
    pub refused: u64,
}

/// Records every valid beacon heard on `socket` in `table` until `cancel`
/// fires; anything else is counted and dropped.
pub async fn listen_beacons(
    socket: UdpSocket,
    table: Arc<Mutex<Discovered>>,
    cancel: CancellationToken,
) -> ListenStats {
    // One byte more than a beacon may have, so an oversized datagram is seen as such.
    let mut buf = vec![0u8; MAX_BEACON_LEN + 1];
    let mut stats = ListenStats::default();
    loop {
        let received = tokio::select! {
            _ = cancel.cancelled() => return stats,
            r = socket.recv_from(&mut buf) => r,
        };
        let (len, source) = match received {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("beacon socket: {e}");
                // An ICMP error surfacing on the socket; do not spin on it.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        match Beacon::decode(&buf[..len]) {
            Ok(beacon) => {
                let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
                let seen = t.observe(beacon, source.ip(), Instant::now());
                tracing::debug!(%source, ?seen, "beacon heard");
                stats.accepted += 1;
            }
            Err(e) => {
                tracing::debug!(%source, "{e}");
                stats.refused += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_the_broadcast_address_and_all_nodes() {
        let net: Ipv4Net = "10.77.0.11/24".parse().unwrap();
        let t = subnet_targets(Some(net), Some(3), 7946);
        assert_eq!(t[0], "10.77.0.255:7946".parse::<SocketAddr>().unwrap());
        match t[1] {
            SocketAddr::V6(v6) => {
                assert_eq!(*v6.ip(), ALL_NODES_V6);
                assert_eq!(v6.scope_id(), 3);
                assert_eq!(v6.port(), 7946);
            }
            other => panic!("{other}"),
        }
        assert!(subnet_targets(None, None, 1).is_empty());
    }
}

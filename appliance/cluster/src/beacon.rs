//! The discovery beacon an unjoined appliance broadcasts on its subnet, and
//! the [`Discovered`] table cluster nodes keep of the beacons they hear.
//!
//! Beacons are untrusted input from the network: [`Beacon::decode`] checks
//! the size first, then every field, and refuses trailing bytes; nothing is
//! believed because a beacon said it (the join handshake authenticates).
//! The table is bounded and forgets appliances that stop announcing.
//!
//! Wire format (big-endian), at most [`MAX_BEACON_LEN`] bytes:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `APLB` |
//! | 1 | format version, 1 |
//! | 1 | flags, 0 (reserved) |
//! | 2 | join port, not 0 |
//! | 32 | SHA-256 fingerprint of the TLS certificate |
//! | 1 + n | hostname: length 1-63, RFC 1123 |
//! | 1 + n | software version: length 1-32, letters, digits and `.+-_~` |
//! | 1 | address count, 1-8 |
//! | 5 or 17 each | family (4 or 6) and the address; no unspecified, loopback or multicast |

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use appliance_config::hostname::NameError;
use serde::{Deserialize, Serialize};

use crate::identity::CertFingerprint;

/// First four bytes of every beacon.
pub const MAGIC: [u8; 4] = *b"APLB";

/// The format version this code writes and reads.
pub const FORMAT_VERSION: u8 = 1;

/// Largest datagram read as a beacon; anything longer is refused unread.
pub const MAX_BEACON_LEN: usize = 512;

/// Most addresses a beacon may list.
pub const MAX_ADDRESSES: usize = 8;

/// Longest software version string.
pub const MAX_VERSION_LEN: usize = 32;

/// How often an unjoined appliance is expected to announce itself.
pub const BEACON_INTERVAL: Duration = Duration::from_secs(5);

/// How long a heard appliance stays listed without a new beacon (several
/// intervals, so one lost datagram does not make it disappear).
pub const DEFAULT_TTL: Duration = Duration::from_secs(20);

/// Most appliances the table keeps.
pub const DEFAULT_CAPACITY: usize = 256;

/// What an unjoined appliance announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beacon {
    /// Its hostname.
    pub hostname: String,
    /// The addresses it can be reached on.
    pub addresses: Vec<IpAddr>,
    /// The software version it runs.
    pub version: String,
    /// Its TLS certificate's fingerprint (the join handshake checks it).
    pub fingerprint: CertFingerprint,
    /// The TCP port of its join service.
    pub join_port: u16,
}

/// Why bytes are not a beacon (or a beacon cannot be encoded).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BeaconError {
    /// Longer than [`MAX_BEACON_LEN`].
    #[error("beacon refused: {len} bytes, more than the {MAX_BEACON_LEN} allowed")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// Does not start with [`MAGIC`].
    #[error("beacon refused: it does not start with the magic \"APLB\" (not an appliance beacon)")]
    BadMagic,
    /// Another format version.
    #[error(
        "beacon refused: format version {version}, this node reads version {FORMAT_VERSION} \
         (the announcing appliance runs other software)"
    )]
    UnsupportedVersion {
        /// The version found.
        version: u8,
    },
    /// Reserved flags set.
    #[error("beacon refused: reserved flags {flags:#04x} are set")]
    ReservedFlags {
        /// The flags byte.
        flags: u8,
    },
    /// Ends in the middle of a field.
    #[error("beacon refused: it ends inside the {field} field ({len} bytes in all)")]
    Truncated {
        /// The field being read.
        field: &'static str,
        /// The beacon's length.
        len: usize,
    },
    /// Bytes after the last field.
    #[error("beacon refused: {count} unexpected bytes after the last field")]
    TrailingBytes {
        /// How many.
        count: usize,
    },
    /// Join port 0.
    #[error("beacon refused: the join port is 0")]
    ZeroPort,
    /// The hostname is not an RFC 1123 host name.
    #[error("beacon refused: the hostname {hostname:?} {reason}")]
    BadHostname {
        /// The hostname (lossily decoded).
        hostname: String,
        /// Why.
        reason: NameError,
    },
    /// The version string is empty, too long or has odd characters.
    #[error(
        "beacon refused: the software version {version:?} must be 1 to {MAX_VERSION_LEN} \
         letters, digits or .+-_~"
    )]
    BadVersion {
        /// The version (lossily decoded).
        version: String,
    },
    /// No address, or more than [`MAX_ADDRESSES`].
    #[error("beacon refused: it lists {count} addresses; 1 to {MAX_ADDRESSES} are allowed")]
    AddressCount {
        /// How many.
        count: usize,
    },
    /// An address family byte other than 4 or 6.
    #[error("beacon refused: address family {family} is neither 4 nor 6")]
    BadAddressFamily {
        /// The byte.
        family: u8,
    },
    /// An address nobody can be reached on.
    #[error("beacon refused: the address {address} cannot reach an appliance (unspecified, loopback or multicast)")]
    UnusableAddress {
        /// The address.
        address: IpAddr,
    },
}

fn check_version(version: &str) -> Result<(), BeaconError> {
    let ok = !version.is_empty()
        && version.len() <= MAX_VERSION_LEN
        && version
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".+-_~".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(BeaconError::BadVersion {
            version: version.chars().take(MAX_VERSION_LEN * 2).collect(),
        })
    }
}

fn check_hostname(hostname: &str) -> Result<(), BeaconError> {
    appliance_config::hostname::check_hostname(hostname).map_err(|reason| {
        BeaconError::BadHostname {
            hostname: hostname.chars().take(80).collect(),
            reason,
        }
    })
}

fn check_address(address: IpAddr) -> Result<(), BeaconError> {
    if address.is_unspecified() || address.is_loopback() || address.is_multicast() {
        return Err(BeaconError::UnusableAddress { address });
    }
    Ok(())
}

/// A cursor over the datagram that names the field it fails in.
struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], BeaconError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or(BeaconError::Truncated {
                field,
                len: self.bytes.len(),
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self, field: &'static str) -> Result<u8, BeaconError> {
        Ok(self.take(1, field)?[0])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], BeaconError> {
        let s = self.take(N, field)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }
}

impl Beacon {
    /// Checks every field as [`Beacon::decode`] would.
    pub fn validate(&self) -> Result<(), BeaconError> {
        check_hostname(&self.hostname)?;
        check_version(&self.version)?;
        if self.join_port == 0 {
            return Err(BeaconError::ZeroPort);
        }
        if self.addresses.is_empty() || self.addresses.len() > MAX_ADDRESSES {
            return Err(BeaconError::AddressCount {
                count: self.addresses.len(),
            });
        }
        for a in &self.addresses {
            check_address(*a)?;
        }
        Ok(())
    }

    /// The datagram to send; refuses a beacon [`Beacon::decode`] would refuse.
    pub fn encode(&self) -> Result<Vec<u8>, BeaconError> {
        self.validate()?;
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(0);
        out.extend_from_slice(&self.join_port.to_be_bytes());
        out.extend_from_slice(self.fingerprint.as_bytes());
        // Both lengths were checked above (hostname at most 63, version at most 32).
        for text in [&self.hostname, &self.version] {
            out.push(u8::try_from(text.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(text.as_bytes());
        }
        out.push(u8::try_from(self.addresses.len()).unwrap_or(u8::MAX));
        for a in &self.addresses {
            match a {
                IpAddr::V4(v4) => {
                    out.push(4);
                    out.extend_from_slice(&v4.octets());
                }
                IpAddr::V6(v6) => {
                    out.push(6);
                    out.extend_from_slice(&v6.octets());
                }
            }
        }
        Ok(out)
    }

    /// Reads a datagram, refusing anything that is not exactly a valid beacon.
    pub fn decode(bytes: &[u8]) -> Result<Beacon, BeaconError> {
        if bytes.len() > MAX_BEACON_LEN {
            return Err(BeaconError::TooLong { len: bytes.len() });
        }
        let mut r = Reader { bytes, pos: 0 };
        if r.array::<4>("magic").ok() != Some(MAGIC) {
            return Err(BeaconError::BadMagic);
        }
        let version = r.u8("format version")?;
        if version != FORMAT_VERSION {
            return Err(BeaconError::UnsupportedVersion { version });
        }
        let flags = r.u8("flags")?;
        if flags != 0 {
            return Err(BeaconError::ReservedFlags { flags });
        }
        let join_port = u16::from_be_bytes(r.array::<2>("join port")?);
        let fingerprint = CertFingerprint::from_bytes(r.array::<32>("fingerprint")?);
        let n = usize::from(r.u8("hostname length")?);
        let hostname = String::from_utf8_lossy(r.take(n, "hostname")?).into_owned();
        let n = usize::from(r.u8("version length")?);
        let sw_version = String::from_utf8_lossy(r.take(n, "version")?).into_owned();
        let count = usize::from(r.u8("address count")?);
        if count == 0 || count > MAX_ADDRESSES {
            return Err(BeaconError::AddressCount { count });
        }
        let mut addresses = Vec::with_capacity(count);
        for _ in 0..count {
            let address = match r.u8("address family")? {
                4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>("IPv4 address")?)),
                6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>("IPv6 address")?)),
                family => return Err(BeaconError::BadAddressFamily { family }),
            };
            addresses.push(address);
        }
        if r.pos != bytes.len() {
            return Err(BeaconError::TrailingBytes {
                count: bytes.len() - r.pos,
            });
        }
        let beacon = Beacon {
            hostname,
            addresses,
            version: sw_version,
            fingerprint,
            join_port,
        };
        beacon.validate()?;
        Ok(beacon)
    }
}

/// One appliance heard announcing itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredEntry {
    /// Its latest beacon.
    pub beacon: Beacon,
    /// The address the latest beacon came from.
    pub source: IpAddr,
    /// When it was first heard.
    pub first_seen: Instant,
    /// When it was last heard.
    pub last_seen: Instant,
}

/// What [`Discovered::observe`] did with a beacon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation {
    /// A newly heard appliance.
    New,
    /// A known appliance whose beacon or source changed.
    Changed,
    /// A known appliance announcing the same as before.
    Refreshed,
}

/// The appliances heard recently, keyed by certificate fingerprint,
/// bounded in size; entries not refreshed within the time to live expire.
#[derive(Debug, Clone)]
pub struct Discovered {
    entries: BTreeMap<CertFingerprint, DiscoveredEntry>,
    ttl: Duration,
    capacity: usize,
}

impl Default for Discovered {
    fn default() -> Self {
        Discovered::new(DEFAULT_TTL, DEFAULT_CAPACITY)
    }
}

impl Discovered {
    /// An empty table keeping at most `capacity` appliances (at least 1)
    /// for `ttl` after their last beacon.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Discovered {
            entries: BTreeMap::new(),
            ttl,
            capacity: capacity.max(1),
        }
    }

    fn fresh(&self, e: &DiscoveredEntry, now: Instant) -> bool {
        now.saturating_duration_since(e.last_seen) < self.ttl
    }

    /// Records a decoded beacon heard from `source` at `now`. When the
    /// table is full, stale entries go first, then the one heard longest ago.
    pub fn observe(&mut self, beacon: Beacon, source: IpAddr, now: Instant) -> Observation {
        if let Some(e) = self.entries.get_mut(&beacon.fingerprint) {
            let changed = e.beacon != beacon || e.source != source;
            e.beacon = beacon;
            e.source = source;
            e.last_seen = now;
            return if changed {
                Observation::Changed
            } else {
                Observation::Refreshed
            };
        }
        if self.entries.len() >= self.capacity {
            self.expire(now);
        }
        if self.entries.len() >= self.capacity {
            if let Some(oldest) = self
                .entries
                .values()
                .min_by_key(|e| e.last_seen)
                .map(|e| e.beacon.fingerprint)
            {
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            beacon.fingerprint,
            DiscoveredEntry {
                beacon,
                source,
                first_seen: now,
                last_seen: now,
            },
        );
        Observation::New
    }

    /// Removes the entries not heard within the time to live; returns them.
    pub fn expire(&mut self, now: Instant) -> Vec<DiscoveredEntry> {
        let stale: Vec<CertFingerprint> = self
            .entries
            .values()
            .filter(|e| !self.fresh(e, now))
            .map(|e| e.beacon.fingerprint)
            .collect();
        stale
            .iter()
            .filter_map(|fp| self.entries.remove(fp))
            .collect()
    }

    /// The appliances heard within the time to live, by hostname.
    pub fn list(&self, now: Instant) -> Vec<&DiscoveredEntry> {
        let mut v: Vec<&DiscoveredEntry> = self
            .entries
            .values()
            .filter(|e| self.fresh(e, now))
            .collect();
        v.sort_by(|a, b| {
            a.beacon
                .hostname
                .cmp(&b.beacon.hostname)
                .then(a.beacon.fingerprint.cmp(&b.beacon.fingerprint))
        });
        v
    }

    /// One appliance, if heard within the time to live.
    pub fn get(&self, fingerprint: &CertFingerprint, now: Instant) -> Option<&DiscoveredEntry> {
        self.entries.get(fingerprint).filter(|e| self.fresh(e, now))
    }

    /// Forgets an appliance (for example once it has joined).
    pub fn remove(&mut self, fingerprint: &CertFingerprint) -> Option<DiscoveredEntry> {
        self.entries.remove(fingerprint)
    }

    /// Entries held, stale ones included until [`Discovered::expire`] runs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if no entry is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests;

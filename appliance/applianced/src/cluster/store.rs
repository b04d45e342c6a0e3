//! Where the cluster membership is kept: in the node's state database
//! (sled, through appliance-state) the membership record (the CA's and this
//! node's certificates and the last accepted state) and, on the authority,
//! the authority's record; the CA's private key as a 0600 file in the state
//! directory, on back-end nodes only. Also the audit trail's events
//! ([`SledEventLog`]): the node's own while it is not a member, the
//! cluster's on the authority — the same keys, so that the trail of the
//! node that forms a cluster becomes the cluster's.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use std::sync::Arc;

use appliance_peering::{
    AuthorityRecord, ClusterState, Event, EventLog, EventSpan, HookError, Persist,
};
use appliance_pki::{CaCert, NodeCert};
use appliance_state::{Batch, StateError, Store};
use serde::{Deserialize, Serialize};

/// State database key of the [`MembershipRecord`].
pub const MEMBERSHIP_KEY: &str = "cluster/membership";
/// State database key of the authority's [`AuthorityRecord`].
pub const AUTHORITY_KEY: &str = "cluster/authority";
/// State database key of the audit trail's [`EventSpan`].
pub const EVENT_SPAN_KEY: &str = "audit/span";
/// State database key prefix of the audit events, followed by the
/// 20-digit sequence number.
pub const EVENT_KEY_PREFIX: &str = "audit/event/";
/// File name of the CA's private key in the state directory.
pub const CA_KEY_FILE: &str = "cluster-ca-key.pem";

/// Why the membership could not be stored or read.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The state database failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: io::Error,
    },
    /// A stored certificate does not read back.
    #[error("the stored {what} is corrupt: {detail}")]
    Corrupt {
        /// Which one.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

impl From<StoreError> for HookError {
    fn from(e: StoreError) -> Self {
        HookError(e.to_string())
    }
}

/// What a member keeps to be a member again after a restart.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipRecord {
    /// The cluster CA's certificate, PEM.
    pub ca_pem: String,
    /// This node's certificate, PEM.
    pub cert_pem: String,
    /// The last state this node accepted.
    pub state: ClusterState,
}

impl MembershipRecord {
    /// The CA's certificate.
    pub fn ca(&self) -> Result<CaCert, StoreError> {
        CaCert::from_pem(&self.ca_pem).map_err(|e| StoreError::Corrupt {
            what: "cluster CA certificate",
            detail: e.to_string(),
        })
    }

    /// This node's certificate.
    pub fn cert(&self) -> Result<NodeCert, StoreError> {
        NodeCert::from_pem(&self.cert_pem).map_err(|e| StoreError::Corrupt {
            what: "node certificate",
            detail: e.to_string(),
        })
    }
}

/// The membership records of one node.
#[derive(Debug, Clone)]
pub struct ClusterStore {
    store: Store,
    state_dir: PathBuf,
}

impl ClusterStore {
    /// Records in `store`, the CA key in `state_dir`.
    pub fn new(store: Store, state_dir: PathBuf) -> Self {
        ClusterStore { store, state_dir }
    }

    /// The state database itself (the node's own admin data is there too).
    pub fn db(&self) -> &Store {
        &self.store
    }

    /// Where the CA key is.
    pub fn ca_key_path(&self) -> PathBuf {
        self.state_dir.join(CA_KEY_FILE)
    }

    /// The membership, if this node is a member.
    pub fn membership(&self) -> Result<Option<MembershipRecord>, StoreError> {
        Ok(self.store.get(MEMBERSHIP_KEY)?)
    }

    /// Stores the membership (one batch).
    pub fn save_membership(&self, record: &MembershipRecord) -> Result<(), StoreError> {
        Ok(self.store.put(MEMBERSHIP_KEY, record)?)
    }

    /// Replaces the stored state, keeping the certificates.
    pub fn save_state(&self, state: &ClusterState) -> Result<(), StoreError> {
        let mut record = self.membership()?.ok_or_else(|| StoreError::Corrupt {
            what: "membership",
            detail: "a new cluster state came, but no membership is stored".into(),
        })?;
        record.state = state.clone();
        self.save_membership(&record)
    }

    /// Replaces the stored certificate (after a renewal).
    pub fn save_cert(&self, cert: &NodeCert) -> Result<(), StoreError> {
        let mut record = self.membership()?.ok_or_else(|| StoreError::Corrupt {
            what: "membership",
            detail: "a renewed certificate came, but no membership is stored".into(),
        })?;
        record.cert_pem = cert.to_pem();
        self.save_membership(&record)
    }

    /// The authority's record, on the authority.
    pub fn authority(&self) -> Result<Option<AuthorityRecord>, StoreError> {
        Ok(self.store.get(AUTHORITY_KEY)?)
    }

    /// The CA's private key, PEM, if this node holds it.
    pub fn ca_key(&self) -> Result<Option<String>, StoreError> {
        let path = self.ca_key_path();
        match fs::read_to_string(&path) {
            Ok(pem) => Ok(Some(pem)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io {
                what: "cannot read",
                path,
                source,
            }),
        }
    }

    /// Writes the CA's private key, mode 0600, replacing any other.
    pub fn save_ca_key(&self, pem: &str) -> Result<(), StoreError> {
        write_private(&self.ca_key_path(), pem.as_bytes())
    }

    /// Forgets the membership: records and CA key (a node that left).
    pub fn clear(&self) -> Result<(), StoreError> {
        let mut batch = Batch::default();
        batch.remove(MEMBERSHIP_KEY).remove(AUTHORITY_KEY);
        self.store.commit(batch)?;
        let path = self.ca_key_path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Io {
                what: "cannot remove",
                path,
                source,
            }),
        }
    }

    /// The authority's [`Persist`] on this store.
    pub fn persist(&self) -> SledPersist {
        SledPersist {
            store: self.store.clone(),
        }
    }
}

/// The audit trail in sled: one key per event and one for the span,
/// written in one batch per event.
#[derive(Debug, Clone)]
pub struct SledEventLog {
    store: Store,
}

impl SledEventLog {
    /// The events in `store`.
    pub fn new(store: Store) -> Self {
        SledEventLog { store }
    }
}

fn event_key(seq: u64) -> String {
    format!("{EVENT_KEY_PREFIX}{seq:020}")
}

impl EventLog for SledEventLog {
    fn span(&self) -> Result<EventSpan, HookError> {
        self.store
            .get(EVENT_SPAN_KEY)
            .map(Option::unwrap_or_default)
            .map_err(|e| HookError(format!("reading the audit trail: {e}")))
    }

    fn append(&self, event: &Event, keep_from: u64) -> Result<(), HookError> {
        let span = self.span()?;
        let fail = |e: appliance_state::StateError| {
            HookError(format!("storing audit event {}: {e}", event.seq))
        };
        let mut batch = Batch::default();
        batch.put(&event_key(event.seq), event).map_err(fail)?;
        batch
            .put(
                EVENT_SPAN_KEY,
                &EventSpan {
                    first: keep_from,
                    next: event.seq + 1,
                },
            )
            .map_err(fail)?;
        for old in span.first..keep_from.min(event.seq) {
            batch.remove(&event_key(old));
        }
        self.store.commit(batch).map_err(fail)
    }

    fn read(&self, from: u64, to: u64) -> Result<Vec<Event>, HookError> {
        let mut events = Vec::new();
        for seq in from..to {
            let key = event_key(seq);
            match self.store.get::<Event>(&key) {
                Ok(Some(e)) => events.push(e),
                // Dropped meanwhile (the span moved on): not an error.
                Ok(None) => {}
                Err(e) => return Err(HookError(format!("reading audit event {seq}: {e}"))),
            }
        }
        Ok(events)
    }
}

/// The authority's record in sled: one batch per change, written before the
/// change is visible.
#[derive(Debug, Clone)]
pub struct SledPersist {
    store: Store,
}

impl Persist for SledPersist {
    fn save(&self, record: &AuthorityRecord) -> Result<(), HookError> {
        self.store
            .put(AUTHORITY_KEY, record)
            .map_err(|e| HookError(format!("storing the cluster authority's record: {e}")))
    }

    /// The node's own trail's keys: forming a cluster carries the trail.
    fn event_log(&self) -> Option<Arc<dyn EventLog>> {
        Some(Arc::new(SledEventLog::new(self.store.clone())))
    }
}

/// Writes `contents` to `path` readable by its owner only, through a
/// synced temporary file renamed into place.
fn write_private(path: &Path, contents: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension("tmp");
    let io = |what: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io { what, path, source }
    };
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("cannot create", &tmp))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io("cannot rename into place", path))?;
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use appliance_cluster::{CertFingerprint, ClusterConfig, Member, MemberState, NodeId, Role};
    use appliance_pki::RevocationList;
    use uuid::Uuid;

    use super::*;

    fn state() -> ClusterState {
        let founder = Member {
            id: NodeId(Uuid::from_u128(1)),
            hostname: "a".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
            roles: [Role::Frontend, Role::Backend].into_iter().collect(),
            version: "0.1.0".into(),
            fingerprint: CertFingerprint::of_certificate_der(&[1]),
            state: MemberState::Active,
        };
        ClusterState {
            config: ClusterConfig::new(Uuid::from_u128(9), founder).unwrap(),
            revocations: RevocationList::new(),
        }
    }

    #[test]
    fn records_and_the_private_ca_key_are_kept_and_cleared_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cs = ClusterStore::new(store, dir.path().to_path_buf());
        assert!(cs.ca_key().unwrap().is_none());
        // A state without a membership is refused, not invented.
        assert!(matches!(
            cs.save_state(&state()),
            Err(StoreError::Corrupt { .. })
        ));

        cs.save_ca_key("-----BEGIN PRIVATE KEY-----\n").unwrap();
        let mode = fs::metadata(cs.ca_key_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let record = AuthorityRecord {
            state: state(),
            issued: Default::default(),
        };
        cs.persist().save(&record).unwrap();
        assert_eq!(cs.authority().unwrap(), Some(record));

        cs.clear().unwrap();
        assert!(cs.ca_key().unwrap().is_none());
        assert!(cs.membership().unwrap().is_none());
        assert!(cs.authority().unwrap().is_none());
    }

    fn event(action: &str) -> Event {
        Event {
            actor: "admin".into(),
            action: action.into(),
            result: "ok".into(),
            ..Event::default()
        }
    }

    #[tokio::test]
    async fn the_trail_keeps_the_newest_events_in_sled_and_their_numbers_across_a_restart() {
        use appliance_peering::EventTrail;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let trail = EventTrail::new(Arc::new(SledEventLog::new(store.clone())), 3);
        for i in 1..=5u64 {
            assert_eq!(
                trail.record(event(&format!("a{i}")), 1).await.unwrap().seq,
                i
            );
        }
        // The dropped events' keys are gone, not only out of the span.
        let log = SledEventLog::new(store.clone());
        assert_eq!(log.span().unwrap(), EventSpan { first: 3, next: 6 });
        for seq in 1..=2 {
            assert!(store.get::<Event>(&event_key(seq)).unwrap().is_none());
        }
        let kept: Vec<u64> = log.read(1, 6).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(kept, [3, 4, 5]);
        // A new trail on the same database (a restart) goes on numbering.
        let again = EventTrail::new(Arc::new(SledEventLog::new(store)), 3);
        assert_eq!(again.record(event("a6"), 1).await.unwrap().seq, 6);
        let listed: Vec<u64> = again
            .list(0, 0)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(listed, [4, 5, 6]);
    }

    #[tokio::test]
    async fn forming_a_cluster_carries_the_nodes_own_trail_into_the_authoritys() {
        use appliance_peering::{system_clock, Authority, EventTrail, LocalAuthority};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).unwrap();
        let cs = ClusterStore::new(store.clone(), dir.path().to_path_buf());
        // The node's own trail, before it is a member.
        let own = EventTrail::new(Arc::new(SledEventLog::new(store)), 10);
        own.record(event("account.add"), 1).await.unwrap();
        own.record(event("sign-in"), 1).await.unwrap();
        // The authority it becomes, on the same store.
        let ca = appliance_pki::CaKey::create("lab", std::time::SystemTime::now()).unwrap();
        let record = AuthorityRecord {
            state: state(),
            issued: Default::default(),
        };
        let authority = LocalAuthority::new(ca, record, Arc::new(cs.persist()), system_clock());
        let next = authority.record_event(event("cluster.form")).await.unwrap();
        assert_eq!(next.seq, 3);
        let actions: Vec<String> = authority
            .events(0, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert_eq!(actions, ["account.add", "sign-in", "cluster.form"]);
    }
}

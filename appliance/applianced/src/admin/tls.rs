//! The management certificate ([`ManagementTlsSource`]): which certificate
//! and key managementd serves on the management port, as the `Admin`
//! service hands them out, and the console line that shows its fingerprint.
//!
//! In order of precedence:
//! - an administrator's uploaded certificate (the admin data's, the
//!   cluster's while a member), checked on upload by
//!   [`appliance_pki::validate_uploaded`] against every member's hostname
//!   and addresses;
//! - as a member, a certificate the cluster CA signs for the member's
//!   hostname and addresses (asked of the authority with the management
//!   key; until it answers, the self-signed one is served);
//! - the self-signed certificate for the node's hostname and addresses.
//!
//! The management key (ECDSA P-256) is created once, in the state
//! directory (`management-key.pem`, 0600) beside the node key but apart
//! from it: it goes to managementd, the node key never does. The issued
//! certificate is kept in the state database, so its fingerprint (what
//! clients pin) stays the same across restarts until the names change or
//! it nears its end.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use appliance_api::v1::{ManagementTls, SetManagementCertificateRequest};
use appliance_cluster::{AdminChange, MemberState, UploadedCert};
use appliance_pki::{ManagementCert, NodeKey, PkiError};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tonic::Status;
use tracing::{info, warn};

use super::data::DataSource;
use crate::cluster::Cluster;
use crate::node::Node;

/// The management key's file in the state directory.
pub const MANAGEMENT_KEY_FILE: &str = "management-key.pem";
/// State database key of the issued certificate.
const STORE_KEY: &str = "management-tls";
/// A certificate this close to its end is issued anew.
const RENEW_BEFORE: Duration = Duration::from_secs(30 * 24 * 3600);
/// After a failed request to the cluster CA, the next is tried this much later.
const SIGN_RETRY: Duration = Duration::from_secs(30);
/// The longest wait for the authority to sign.
const SIGN_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the console line is brought up to date.
const CONSOLE_EVERY: Duration = Duration::from_secs(5);

/// `source` of a self-signed certificate.
const SELF_SIGNED: &str = "self-signed";
/// `source` of a certificate signed by the cluster CA.
const CLUSTER_CA: &str = "cluster-ca";
/// `source` of an administrator's certificate.
const UPLOADED: &str = "uploaded";

/// The certificate issued for this node (not an uploaded one), as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Issued {
    /// The chain, PEM, leaf first.
    cert_pem: String,
    /// [`SELF_SIGNED`] or [`CLUSTER_CA`].
    source: String,
}

/// What the certificate must name: a hostname and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Names {
    hostname: String,
    addresses: Vec<IpAddr>,
}

/// Where the management certificate comes from; cheap to clone.
#[derive(Clone)]
pub struct ManagementTlsSource {
    inner: Arc<Inner>,
}

struct Inner {
    node: Arc<Node>,
    store: appliance_state::Store,
    cluster: Option<Cluster>,
    data: Arc<DataSource>,
    key_file: PathBuf,
    /// Serializes issuing; holds the next time the cluster CA may be asked.
    issuing: Mutex<Option<Instant>>,
}

impl ManagementTlsSource {
    /// The source of `node`, whose admin data (uploaded certificate,
    /// management networks) `data` gives. The key lives in the state
    /// directory, the one holding the node's `config.toml`.
    pub fn new(
        node: Arc<Node>,
        store: appliance_state::Store,
        cluster: Option<Cluster>,
        data: Arc<DataSource>,
    ) -> ManagementTlsSource {
        let state_dir = node
            .paths
            .config_file
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
        ManagementTlsSource {
            inner: Arc::new(Inner {
                node,
                store,
                cluster,
                data,
                key_file: state_dir.join(MANAGEMENT_KEY_FILE),
                issuing: Mutex::new(None),
            }),
        }
    }

    /// The certificate and key in use (same as [`Self::current`]).
    pub async fn get(&self) -> Result<ManagementTls, Status> {
        self.current().await
    }

    /// Sets the administrator's certificate, or clears it when both fields
    /// are empty.
    pub async fn set(&self, req: SetManagementCertificateRequest) -> Result<ManagementTls, Status> {
        if req.cert_pem.trim().is_empty() && req.key_pem.trim().is_empty() {
            self.inner
                .data
                .change(AdminChange::SetCertificate(None))
                .await?;
            info!("management certificate: the uploaded one cleared");
            return self.current().await;
        }
        self.set_uploaded(req.cert_pem, req.key_pem).await
    }

    /// The certificate and key managementd serves now: the uploaded one,
    /// else the issued one (re-issued first when it no longer fits).
    pub async fn current(&self) -> Result<ManagementTls, Status> {
        let (admin, _) = self.inner.data.current()?;
        let networks: Vec<String> = admin
            .settings()
            .management_networks
            .iter()
            .map(ToString::to_string)
            .collect();
        let port = match self.inner.node.desired().await {
            Some(d) => u32::from(d.config.management.port),
            None => u32::from(appliance_config::DEFAULT_MANAGEMENT_PORT),
        };
        if let Some(up) = admin.certificate() {
            match ManagementCert::from_pem(&up.cert_pem) {
                Ok(cert) => return Ok(reply(&cert, &up.key_pem, UPLOADED, port, networks)),
                // Checked on upload; a stored one that no longer parses is
                // not worth an unreachable management port.
                Err(e) => warn!(
                    "the uploaded management certificate is unusable ({e}); serving the node's own"
                ),
            }
        }
        let (cert, source, key_pem) = self.issued().await?;
        Ok(reply(&cert, &key_pem, &source, port, networks))
    }

    /// Checks an uploaded certificate and key ([`appliance_pki::validate_uploaded`],
    /// against every member's hostname and addresses, or this node's when
    /// it is not a member), then has it set for every node.
    pub async fn set_uploaded(
        &self,
        cert_pem: String,
        key_pem: String,
    ) -> Result<ManagementTls, Status> {
        let (hostnames, addresses) = self.everyone().await?;
        appliance_pki::validate_uploaded(
            &cert_pem,
            &key_pem,
            &hostnames,
            &addresses,
            SystemTime::now(),
        )
        .map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.inner
            .data
            .change(AdminChange::SetCertificate(Some(UploadedCert {
                cert_pem,
                key_pem,
            })))
            .await?;
        let now = self.current().await?;
        info!(fingerprint = %now.fingerprint, "management certificate: an uploaded one set");
        Ok(now)
    }

    /// Keeps the console's management line up to date: the URL and the
    /// certificate's fingerprint, shown again when either changes. Runs
    /// until the source is dropped: it holds only a weak reference between
    /// two looks, so that it never keeps the node and its store open past
    /// the daemon's shutdown (PID 1 unmounts /data once they are dropped).
    pub fn spawn_console_line(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut shown = String::new();
            loop {
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let me = ManagementTlsSource { inner };
                if let Ok(tls) = me.current().await {
                    if let Some(line) = me.console_line(&tls).await {
                        if line != shown {
                            crate::console::announce(&line);
                            shown = line;
                        }
                    }
                }
                drop(me);
                tokio::time::sleep(CONSOLE_EVERY).await;
            }
        });
    }

    /// `management: https://ADDR:PORT  certificate SHA-256 AA:BB:...`, with
    /// the node's first address (brackets for IPv6).
    async fn console_line(&self, tls: &ManagementTls) -> Option<String> {
        let names = self.own_names().await.ok()?;
        let host = match names.addresses.first() {
            Some(IpAddr::V6(a)) => format!("[{a}]"),
            Some(a) => a.to_string(),
            None => names.hostname.clone(),
        };
        Some(format!(
            "management: https://{host}:{}  certificate SHA-256 {}",
            tls.port, tls.fingerprint
        ))
    }

    /// The names this node's certificate must carry: as a member, its
    /// member record's (what the cluster CA signs for); otherwise its
    /// configuration's hostname and addresses.
    async fn own_names(&self) -> Result<Names, Status> {
        if let Some(state) = self
            .inner
            .cluster
            .as_ref()
            .and_then(Cluster::member_peer)
            .and_then(|p| p.cluster_state())
        {
            if let Some(me) = state
                .config
                .member(&appliance_cluster::NodeId(self.inner.node.identity.node_id))
            {
                return Ok(Names {
                    hostname: me.hostname.clone(),
                    addresses: me.addresses.clone(),
                });
            }
        }
        let desired = self
            .inner
            .node
            .desired()
            .await
            .ok_or_else(|| Status::unavailable("the node has no configuration yet"))?;
        Ok(Names {
            hostname: desired.config.hostname.clone(),
            addresses: desired.own_addresses().into_iter().collect(),
        })
    }

    /// Every hostname and address an uploaded certificate must cover: the
    /// members' (those not being removed), or this node's alone.
    async fn everyone(&self) -> Result<(Vec<String>, Vec<IpAddr>), Status> {
        if let Some(state) = self
            .inner
            .cluster
            .as_ref()
            .and_then(Cluster::member_peer)
            .and_then(|p| p.cluster_state())
        {
            let members: Vec<_> = state
                .config
                .members()
                .filter(|m| m.state != MemberState::Removing)
                .collect();
            let hostnames: BTreeSet<String> = members.iter().map(|m| m.hostname.clone()).collect();
            let addresses: BTreeSet<IpAddr> = members
                .iter()
                .flat_map(|m| m.addresses.iter().copied())
                .collect();
            return Ok((
                hostnames.into_iter().collect(),
                addresses.into_iter().collect(),
            ));
        }
        let own = self.own_names().await?;
        Ok((vec![own.hostname], own.addresses))
    }

    /// The node's own certificate: the stored one while it fits, else a
    /// new one (from the cluster CA as a member, when it answers; else
    /// self-signed), stored. Returns it, its source and the key PEM.
    async fn issued(&self) -> Result<(ManagementCert, String, String), Status> {
        let mut next_sign = self.inner.issuing.lock().await;
        let key = load_or_create_key(&self.inner.key_file).map_err(internal)?;
        let key_pem = key.to_pem();
        let names = self.own_names().await?;
        let member = self.inner.cluster.as_ref().and_then(Cluster::member_peer);
        let now = SystemTime::now();
        let stored = self
            .inner
            .store
            .get::<Issued>(STORE_KEY)
            .map_err(|e| internal(e.to_string()))?
            .and_then(|i| Some((ManagementCert::from_pem(&i.cert_pem).ok()?, i.source)))
            .filter(|(cert, _)| fits(cert, &key, &names, now));
        let want_ca = member.is_some();
        match (&stored, want_ca) {
            // The right kind already.
            (Some((cert, source)), _) if (source == CLUSTER_CA) == want_ca => {
                return Ok((cert.clone(), source.clone(), key_pem));
            }
            _ => {}
        }
        if let Some(peer) = member {
            let due = next_sign.is_none_or(|t| Instant::now() >= t);
            if due {
                match self.sign_by_ca(&peer, &key, &names).await {
                    Ok(cert) => {
                        *next_sign = None;
                        self.keep(&cert, CLUSTER_CA)?;
                        info!(fingerprint = %cert.fingerprint, "management certificate: signed by the cluster CA");
                        return Ok((cert, CLUSTER_CA.into(), key_pem));
                    }
                    Err(e) => {
                        warn!(
                            retry_in_s = SIGN_RETRY.as_secs(),
                            "management certificate: the cluster CA did not sign ({e}); serving a self-signed one"
                        );
                        *next_sign = Some(Instant::now() + SIGN_RETRY);
                    }
                }
            }
            // Until the CA signs: a fitting self-signed one (kept as is).
            if let Some((cert, source)) = stored {
                return Ok((cert, source, key_pem));
            }
        }
        let cert = appliance_pki::self_signed_management_cert(
            &key,
            &names.hostname,
            &names.addresses,
            now,
        )
        .map_err(|e| internal(e.to_string()))?;
        self.keep(&cert, SELF_SIGNED)?;
        info!(
            fingerprint = %cert.fingerprint,
            names = ?cert.names(),
            "management certificate: self-signed"
        );
        Ok((cert, SELF_SIGNED.into(), key_pem))
    }

    /// Asks the authority to sign the management key for `names`.
    async fn sign_by_ca(
        &self,
        peer: &appliance_peering::PeerNode,
        key: &NodeKey,
        names: &Names,
    ) -> Result<ManagementCert, String> {
        let csr = appliance_pki::management_csr(key, &names.hostname, &names.addresses)
            .map_err(|e| e.to_string())?;
        let signed = tokio::time::timeout(SIGN_TIMEOUT, peer.sign_management(&csr))
            .await
            .map_err(|_| format!("no answer within {} s", SIGN_TIMEOUT.as_secs()))?
            .map_err(|e| e.to_string())?;
        let chain = format!("{}{}", ensure_newline(&signed.cert_pem), signed.ca_pem);
        ManagementCert::from_pem(&chain).map_err(|e| e.to_string())
    }

    fn keep(&self, cert: &ManagementCert, source: &str) -> Result<(), Status> {
        let issued = Issued {
            cert_pem: cert.cert_pem.clone(),
            source: source.into(),
        };
        self.inner
            .store
            .put(STORE_KEY, &issued)
            .map_err(|e| internal(e.to_string()))
    }
}

fn ensure_newline(pem: &str) -> String {
    if pem.ends_with('\n') {
        pem.to_string()
    } else {
        format!("{pem}\n")
    }
}

/// Whether `cert` still serves: it is `key`'s, names exactly `names`, and is
/// valid now and for more than [`RENEW_BEFORE`].
fn fits(cert: &ManagementCert, key: &NodeKey, names: &Names, now: SystemTime) -> bool {
    let want: BTreeSet<String> = std::iter::once(names.hostname.to_ascii_lowercase())
        .chain(names.addresses.iter().map(ToString::to_string))
        .collect();
    let has: BTreeSet<String> = cert
        .dns_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .chain(cert.addresses.iter().map(ToString::to_string))
        .collect();
    let key_matches =
        appliance_pki::validate_uploaded(&cert.cert_pem, &key.to_pem(), &[], &[], now).is_ok();
    want == has && key_matches && cert.valid_at(now) && now + RENEW_BEFORE < cert.not_after
}

fn reply(
    cert: &ManagementCert,
    key_pem: &str,
    source: &str,
    port: u32,
    management_networks: Vec<String>,
) -> ManagementTls {
    ManagementTls {
        cert_pem: cert.cert_pem.clone(),
        key_pem: key_pem.to_string(),
        fingerprint: cert.fingerprint.clone(),
        source: source.to_string(),
        not_after_unix_ms: crate::time::unix_ms(cert.not_after),
        names: cert.names(),
        port,
        management_networks,
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("management certificate: {e}"))
}

/// The management key from `path`, or a new one written there (0600).
fn load_or_create_key(path: &Path) -> Result<NodeKey, String> {
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            NodeKey::from_pem(&pem).map_err(|e: PkiError| format!("{}: {e}", path.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = NodeKey::generate().map_err(|e| e.to_string())?;
            write_secret(path, key.to_pem().as_bytes())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            info!(path = %path.display(), "management key created");
            Ok(key)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes `contents` to `path` with mode 0600, through a temporary file
/// renamed into place (a crash leaves the old file or none).
fn write_secret(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn names() -> Names {
        Names {
            hostname: "node-1".into(),
            addresses: vec!["10.0.0.1".parse().unwrap()],
        }
    }

    #[test]
    fn the_key_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(MANAGEMENT_KEY_FILE);
        let first = load_or_create_key(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = load_or_create_key(&path).unwrap();
        assert_eq!(first.public_key_der(), again.public_key_der());
        std::fs::write(&path, "garbage").unwrap();
        let e = load_or_create_key(&path).unwrap_err();
        assert!(e.contains(MANAGEMENT_KEY_FILE), "{e}");
    }

    #[test]
    fn a_certificate_fits_while_key_names_and_time_match() {
        let key = NodeKey::generate().unwrap();
        let now = SystemTime::now();
        let n = names();
        let cert = appliance_pki::self_signed_management_cert(&key, &n.hostname, &n.addresses, now)
            .unwrap();
        assert!(fits(&cert, &key, &n, now));
        // Another key: issued anew.
        assert!(!fits(&cert, &NodeKey::generate().unwrap(), &n, now));
        // A new address or hostname: issued anew.
        let mut moved = n.clone();
        moved.addresses.push("10.0.0.9".parse().unwrap());
        assert!(!fits(&cert, &key, &moved, now));
        let renamed = Names {
            hostname: "node-2".into(),
            ..n.clone()
        };
        assert!(!fits(&cert, &key, &renamed, now));
        // Nearing its end: issued anew.
        let late = now + appliance_pki::management::MANAGEMENT_CERT_VALIDITY - RENEW_BEFORE / 2;
        assert!(!fits(&cert, &key, &n, late));
    }
}

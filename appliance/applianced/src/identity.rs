//! The machine's own identity files, created on its first start and never
//! baked into an image: the machine id (128 random bits as 32 hex digits, as
//! systemd writes `/etc/machine-id`) and the node key (ECDSA P-256, PEM,
//! readable by root only). Same code in hosted mode and as PID 1.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// File name of the machine id in the state directory.
pub const MACHINE_ID_FILE: &str = "machine-id";
/// File name of the node key in the state directory.
pub const NODE_KEY_FILE: &str = "node-key.pem";

/// Why the identity files could not be read or created.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
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
    /// An existing file does not hold what it should.
    #[error("{path} is corrupt: {why}; move it away to have a new one created")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The system gave no random bytes.
    #[error("no random bytes for the machine id: {0}")]
    Random(String),
    /// The key could not be generated.
    #[error("cannot generate the node key: {0}")]
    KeyGen(String),
}

/// This machine's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineIdentity {
    /// 32 lowercase hex digits.
    pub machine_id: String,
    /// `SHA256:` and the hex SHA-256 of the node key's SubjectPublicKeyInfo.
    pub key_fingerprint: String,
    /// True when either file was created by this start.
    pub created: bool,
}

/// True for 32 lowercase hex digits, not all zero.
pub fn valid_machine_id(id: &str) -> bool {
    id.len() == 32
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
        && id.chars().any(|c| c != '0')
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> IdentityError + 'a {
    move |source| IdentityError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `contents` to `path` through a temporary file, synced and renamed,
/// with `mode`; a crash leaves the old file or the new one, never half of one.
fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), IdentityError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("cannot create", &tmp))?;
    f.write_all(contents)
        .and_then(|()| f.sync_all())
        .map_err(io_err("cannot write", &tmp))?;
    fs::rename(&tmp, path).map_err(io_err("cannot rename into place", path))?;
    if let Some(dir) = path.parent() {
        let _ = fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

fn machine_id(dir: &Path) -> Result<(String, bool), IdentityError> {
    let path = dir.join(MACHINE_ID_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let id = text.trim();
            if valid_machine_id(id) {
                return Ok((id.to_owned(), false));
            }
            Err(IdentityError::Corrupt {
                path,
                why: format!("{id:?} is not 32 lowercase hex digits"),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 16];
            getrandom::fill(&mut bytes).map_err(|e| IdentityError::Random(e.to_string()))?;
            let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write_new(&path, format!("{id}\n").as_bytes(), 0o444)?;
            Ok((id, true))
        }
        Err(e) => Err(io_err("cannot read", &path)(e)),
    }
}

fn fingerprint(key: &rcgen::KeyPair) -> String {
    use rcgen::PublicKeyData;
    let digest = Sha256::digest(key.subject_public_key_info());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("SHA256:{hex}")
}

fn node_key(dir: &Path) -> Result<(String, bool), IdentityError> {
    let path = dir.join(NODE_KEY_FILE);
    match fs::read_to_string(&path) {
        Ok(pem) => {
            let key = rcgen::KeyPair::from_pem(&pem).map_err(|e| IdentityError::Corrupt {
                path: path.clone(),
                why: e.to_string(),
            })?;
            Ok((fingerprint(&key), false))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
                .map_err(|e| IdentityError::KeyGen(e.to_string()))?;
            write_new(&path, key.serialize_pem().as_bytes(), 0o600)?;
            Ok((fingerprint(&key), true))
        }
        Err(e) => Err(io_err("cannot read", &path)(e)),
    }
}

/// Reads the identity in `state_dir`, creating what is missing.
pub fn ensure(state_dir: &Path) -> Result<MachineIdentity, IdentityError> {
    let (machine_id, new_id) = machine_id(state_dir)?;
    let (key_fingerprint, new_key) = node_key(state_dir)?;
    Ok(MachineIdentity {
        machine_id,
        key_fingerprint,
        created: new_id || new_key,
    })
}

/// Publishes the machine id where the image's `/etc/machine-id` points
/// (`/run/machine-id`). PID 1 only.
pub fn publish(id: &MachineIdentity, path: &Path) -> Result<(), IdentityError> {
    fs::write(path, format!("{}\n", id.machine_id)).map_err(io_err("cannot write", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = ensure(dir.path()).unwrap();
        assert!(first.created);
        assert!(valid_machine_id(&first.machine_id), "{}", first.machine_id);
        assert!(first.key_fingerprint.starts_with("SHA256:"));
        assert_eq!(first.key_fingerprint.len(), 7 + 64);
        let mode = fs::metadata(dir.path().join(NODE_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = fs::read_to_string(dir.path().join(NODE_KEY_FILE)).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");

        let again = ensure(dir.path()).unwrap();
        assert_eq!(
            again,
            MachineIdentity {
                created: false,
                ..first.clone()
            }
        );
        // Another machine: another identity.
        let other = tempfile::tempdir().unwrap();
        let second = ensure(other.path()).unwrap();
        assert_ne!(second.machine_id, first.machine_id);
        assert_ne!(second.key_fingerprint, first.key_fingerprint);
    }

    #[test]
    fn a_corrupt_machine_id_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(MACHINE_ID_FILE), "not-an-id\n").unwrap();
        let err = ensure(dir.path()).unwrap_err().to_string();
        assert!(err.contains("is not 32 lowercase hex digits"), "{err}");
        assert_eq!(
            fs::read_to_string(dir.path().join(MACHINE_ID_FILE)).unwrap(),
            "not-an-id\n"
        );
    }

    #[test]
    fn machine_ids_are_checked() {
        assert!(valid_machine_id("0123456789abcdef0123456789abcdef"));
        assert!(!valid_machine_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!valid_machine_id("00000000000000000000000000000000"));
        assert!(!valid_machine_id("0123"));
    }

    #[test]
    fn published_for_etc_machine_id() {
        let dir = tempfile::tempdir().unwrap();
        let id = ensure(dir.path()).unwrap();
        let run = dir.path().join("run-machine-id");
        publish(&id, &run).unwrap();
        assert_eq!(
            fs::read_to_string(run).unwrap(),
            format!("{}\n", id.machine_id)
        );
    }
}

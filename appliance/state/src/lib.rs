//! The node's durable state: its identity and typed documents (desired
//! state, what the reconcilers own, service states), as one JSON file.
//!
//! Every change rewrites the whole file: written to a temporary file, synced,
//! renamed over the old one, then the directory is synced. A crash at any
//! point leaves either the old or the new file, so every key written together
//! has either its old or its new value, never a mix. The documents are a few
//! KiB, so a full rewrite per change costs less than an embedded database:
//! sled 0.34, used before, allocated and zeroed ~21 MiB of metrics histograms
//! on open even with its metrics off, and ran eight threads: 3/4 of the
//! daemon's resident memory.
//!
//! An exclusive `flock` on `lock` in the directory keeps a second process from
//! opening the same state.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Key of the node identity document.
const IDENTITY_KEY: &str = "node/identity";
/// The documents, and the file a commit writes before renaming it over them.
const FILE: &str = "state.json";
const TMP_FILE: &str = "state.json.tmp";
/// Held locked while the store is open.
const LOCK_FILE: &str = "lock";
/// A file sled 0.34 (the store of earlier builds) keeps in its directory.
const SLED_FILE: &str = "conf";

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The directory or its files could not be opened.
    #[error("cannot open the state database at {path}: {source}")]
    Open {
        /// File or directory involved.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Another process holds the store.
    #[error(
        "the state database at {path} is in use: is another applianced using this state directory?"
    )]
    Locked {
        /// Database directory.
        path: PathBuf,
    },
    /// The directory holds a database of an older build, which this one cannot read.
    #[error("{path} holds a sled database of an older applianced, which this build does not read: move it away to start with a new identity and no configuration")]
    Legacy {
        /// Database directory.
        path: PathBuf,
    },
    /// The file does not parse (it is only ever replaced whole, so this means
    /// outside damage).
    #[error("state file {path} is corrupt: {source}; restore it from a backup or move it away to start anew")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// Parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A write failed; the stored state is unchanged unless `op` is "sync directory".
    #[error(
        "state database {op} of key {key:?} failed: {source} (is the disk full or read-only?)"
    )]
    Io {
        /// The step that failed.
        op: &'static str,
        /// Key involved.
        key: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A stored document does not decode.
    #[error("stored value of key {key:?} is corrupt: {source}")]
    Decode {
        /// Key involved.
        key: String,
        /// Decoding error.
        #[source]
        source: serde_json::Error,
    },
    /// A document does not encode (a bug, not bad input).
    #[error("cannot encode value of key {key:?}: {source}")]
    Encode {
        /// Key involved.
        key: String,
        /// Encoding error.
        #[source]
        source: serde_json::Error,
    },
}

/// Who this node is. Created once, on the first start with an empty state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// Random, unique per node (and per copy of an image).
    pub node_id: Uuid,
    /// Unix time (s) when the identity was created.
    pub created_unix: u64,
}

/// The state database of one node. Clones share it.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    dir: PathBuf,
    /// What the file holds; replaced whole after each successful write.
    docs: Mutex<BTreeMap<String, Value>>,
    _lock: Flock<File>,
}

/// A set of writes applied all together or not at all.
#[derive(Debug, Default)]
pub struct Batch {
    /// In order; `None` removes the key.
    ops: Vec<(String, Option<Value>)>,
}

impl Batch {
    /// Adds a typed document under `key`.
    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<&mut Self, StateError> {
        let value = serde_json::to_value(value).map_err(|source| StateError::Encode {
            key: key.to_owned(),
            source,
        })?;
        self.ops.push((key.to_owned(), Some(value)));
        Ok(self)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.ops.push((key.to_owned(), None));
        self
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let open_err = |path: PathBuf| move |source| StateError::Open { path, source };
        std::fs::create_dir_all(dir).map_err(open_err(dir.to_path_buf()))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(open_err(lock_path))?;
        let lock =
            Flock::lock(lock_file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
                match errno {
                    nix::errno::Errno::EWOULDBLOCK => StateError::Locked {
                        path: dir.to_path_buf(),
                    },
                    other => open_err(dir.join(LOCK_FILE))(other.into()),
                }
            })?;
        let path = dir.join(FILE);
        let docs = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| StateError::Corrupt { path, source })?,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                if dir.join(SLED_FILE).exists() {
                    return Err(StateError::Legacy {
                        path: dir.to_path_buf(),
                    });
                }
                BTreeMap::new()
            }
            Err(e) => return Err(open_err(path)(e)),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                dir: dir.to_path_buf(),
                docs: Mutex::new(docs),
                _lock: lock,
            }),
        })
    }

    /// The node identity, created on first use.
    pub fn identity(&self) -> Result<Identity, StateError> {
        if let Some(id) = self.get::<Identity>(IDENTITY_KEY)? {
            return Ok(id);
        }
        let id = Identity {
            node_id: Uuid::new_v4(),
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        };
        let mut batch = Batch::default();
        batch.put(IDENTITY_KEY, &id)?;
        self.commit(batch)?;
        Ok(id)
    }

    /// Reads a typed document.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StateError> {
        let docs = self.docs();
        docs.get(key)
            .map(|value| {
                T::deserialize(value).map_err(|source| StateError::Decode {
                    key: key.to_owned(),
                    source,
                })
            })
            .transpose()
    }

    /// Writes one document durably.
    pub fn put<T: Serialize>(&self, key: &str, value: &T) -> Result<(), StateError> {
        let mut batch = Batch::default();
        batch.put(key, value)?;
        self.commit(batch)
    }

    /// Applies `batch` atomically and waits until it is on disk.
    pub fn commit(&self, batch: Batch) -> Result<(), StateError> {
        let key = match batch.ops.as_slice() {
            [(key, _)] => key.clone(),
            _ => "<batch>".to_owned(),
        };
        let io = |op: &'static str| {
            let key = key.clone();
            move |source| StateError::Io { op, key, source }
        };
        // Held across the write so commits land in the order they are applied.
        let mut docs = self.docs();
        let mut next = docs.clone();
        for (k, v) in batch.ops {
            match v {
                Some(v) => next.insert(k, v),
                None => next.remove(&k),
            };
        }
        let bytes = serde_json::to_vec_pretty(&next).map_err(|source| StateError::Encode {
            key: key.clone(),
            source,
        })?;
        let tmp = self.inner.dir.join(TMP_FILE);
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create"))?;
        file.write_all(&bytes).map_err(io("write"))?;
        file.sync_all().map_err(io("sync"))?;
        drop(file);
        std::fs::rename(&tmp, self.inner.dir.join(FILE)).map_err(io("rename"))?;
        // The new file is in place: the memory must show it even if the
        // directory sync below fails.
        *docs = next;
        File::open(&self.inner.dir)
            .and_then(|d| d.sync_all())
            .map_err(io("sync directory"))
    }

    /// The documents; a panic elsewhere cannot leave them half-changed, as
    /// they are only ever replaced whole.
    fn docs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Value>> {
        self.inner
            .docs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_created_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap().identity().unwrap();
        let again = Store::open(dir.path()).unwrap().identity().unwrap();
        assert_eq!(first, again);
    }

    #[test]
    fn batch_writes_all_keys_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put("a", &1u32).unwrap();
        let mut batch = Batch::default();
        batch.put("a", &2u32).unwrap().put("b", &"two").unwrap();
        store.commit(batch).unwrap();
        assert_eq!(store.get::<u32>("a").unwrap(), Some(2));
        assert_eq!(store.get::<String>("b").unwrap().as_deref(), Some("two"));
        assert_eq!(store.get::<u32>("missing").unwrap(), None);
        let mut batch = Batch::default();
        batch.remove("a").put("c", &3u32).unwrap();
        store.commit(batch).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get::<u32>("a").unwrap(), None);
        assert_eq!(store.get::<String>("b").unwrap().as_deref(), Some("two"));
        assert_eq!(store.get::<u32>("c").unwrap(), Some(3));
    }

    #[test]
    fn corrupt_value_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put("k", &"text").unwrap();
        let err = store.get::<u64>("k").unwrap_err();
        assert!(err.to_string().contains("\"k\""), "{err}");
    }

    #[test]
    fn second_open_is_refused_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Locked { .. }), "{err}");
        drop(store);
        Store::open(dir.path()).unwrap();
    }

    #[test]
    fn failed_commit_leaves_memory_and_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put("a", &1u32).unwrap();
        // A directory where the temporary file goes makes the write fail.
        std::fs::create_dir(dir.path().join(TMP_FILE)).unwrap();
        let mut batch = Batch::default();
        batch.put("a", &2u32).unwrap().put("b", &2u32).unwrap();
        let err = store.commit(batch).unwrap_err();
        assert!(matches!(err, StateError::Io { op: "create", .. }), "{err}");
        assert_eq!(store.get::<u32>("a").unwrap(), Some(1));
        assert_eq!(store.get::<u32>("b").unwrap(), None);
        std::fs::remove_dir(dir.path().join(TMP_FILE)).unwrap();
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.get::<u32>("a").unwrap(), Some(1));
        // A leftover temporary file from a crash is overwritten, not read.
        std::fs::write(dir.path().join(TMP_FILE), b"garbage").unwrap();
        store.put("b", &5u32).unwrap();
        assert_eq!(store.get::<u32>("b").unwrap(), Some(5));
    }

    #[test]
    fn damaged_file_and_old_sled_database_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(SLED_FILE), b"segment_size: 524288").unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Legacy { .. }), "{err}");
        std::fs::write(dir.path().join(FILE), b"{\"a\": 1").unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
    }
}

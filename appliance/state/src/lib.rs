//! The node's durable state, in `sled`: its identity and typed documents
//! (desired state, what the reconcilers own, service states).
//!
//! Every change is one atomic `sled` batch followed by a flush, so a crash at
//! any point leaves either the old or the new value of every key written
//! together, never a mix.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Key of the node identity document.
const IDENTITY_KEY: &str = "node/identity";

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The database could not be opened.
    #[error("cannot open the state database at {path}: {source} (is another applianced using this state directory?)")]
    Open {
        /// Database directory.
        path: PathBuf,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("state database {op} of key {key:?} failed: {source}")]
    Io {
        /// get, write or flush.
        op: &'static str,
        /// Key involved.
        key: String,
        /// sled's error.
        #[source]
        source: sled::Error,
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
    /// A failpoint refused a write (test builds only: feature `failpoints`).
    #[cfg(feature = "failpoints")]
    #[error("state database write of {what} failed: injected by failpoint {point}")]
    Injected {
        /// What was being written.
        what: String,
        /// The failpoint's name.
        point: &'static str,
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

/// The state database of one node.
#[derive(Debug, Clone)]
pub struct Store {
    db: sled::Db,
}

/// A set of writes applied all together or not at all.
#[derive(Debug, Default)]
pub struct Batch {
    inner: sled::Batch,
}

impl Batch {
    /// Adds a typed document under `key`.
    pub fn put<T: Serialize>(&mut self, key: &str, value: &T) -> Result<&mut Self, StateError> {
        let bytes = serde_json::to_vec(value).map_err(|source| StateError::Encode {
            key: key.to_owned(),
            source,
        })?;
        self.inner.insert(key.as_bytes(), bytes);
        Ok(self)
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) -> &mut Self {
        self.inner.remove(key.as_bytes());
        self
    }
}

impl Store {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            .cache_capacity(4 * 1024 * 1024)
            .open()
            .map_err(|source| StateError::Open {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(Self { db })
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
        let raw = self.db.get(key).map_err(|source| StateError::Io {
            op: "get",
            key: key.to_owned(),
            source,
        })?;
        raw.map(|bytes| {
            serde_json::from_slice(&bytes).map_err(|source| StateError::Decode {
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
        self.db
            .apply_batch(batch.inner)
            .map_err(|source| StateError::Io {
                op: "write",
                key: "<batch>".to_owned(),
                source,
            })?;
        self.db.flush().map_err(|source| StateError::Io {
            op: "flush",
            key: "<batch>".to_owned(),
            source,
        })?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opens `dir` again in this process. sled's flusher thread keeps the
    /// dropped database's file lock until its next wake-up (up to
    /// `flush_every_ms`, longer on a loaded machine), so a reopen right after
    /// a drop can meet `WouldBlock`: retried for at most 10 s.
    fn reopen(dir: &Path) -> Store {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match Store::open(dir) {
                Ok(store) => return store,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("lock"), "{e}");
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn identity_is_created_once_and_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let first = Store::open(dir.path()).unwrap().identity().unwrap();
        let again = reopen(dir.path()).identity().unwrap();
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
    }

    #[test]
    fn corrupt_value_is_reported_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store.put("k", &"text").unwrap();
        let err = store.get::<u64>("k").unwrap_err();
        assert!(err.to_string().contains("\"k\""), "{err}");
    }
}

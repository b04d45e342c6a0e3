//! A node's own admin data (accounts, settings, uploaded certificate) while
//! it is not a cluster member: one record in the state database. A member's
//! admin data is the cluster's, in its configuration; the own record is left
//! as it was while the node is a member (forming a cluster carries it into
//! the new configuration).

use appliance_cluster::{AdminData, AdminError};
use appliance_state::{StateError, Store};

/// State database key of the node's own [`AdminData`].
pub const OWN_ADMIN_KEY: &str = "admin/own";

/// Why the own admin data cannot be read or stored.
#[derive(Debug, thiserror::Error)]
pub enum OwnAdminError {
    /// The state database failed.
    #[error("the node's own admin data ({OWN_ADMIN_KEY}): {0}")]
    State(#[from] StateError),
    /// The stored record breaks a rule (written by hand or by a bug).
    #[error("the node's own admin data ({OWN_ADMIN_KEY}) is refused: {0}")]
    Invalid(#[from] AdminError),
}

/// The node's own admin data; empty when none was ever stored.
pub fn load(store: &Store) -> Result<AdminData, OwnAdminError> {
    let data: AdminData = store.get(OWN_ADMIN_KEY)?.unwrap_or_default();
    data.validate()?;
    Ok(data)
}

/// Stores the node's own admin data.
pub fn save(store: &Store, data: &AdminData) -> Result<(), OwnAdminError> {
    Ok(store.put(OWN_ADMIN_KEY, data)?)
}

#[cfg(test)]
mod tests {
    use appliance_cluster::{Account, AdminChange, AdminRole};

    use super::*;

    #[test]
    fn round_trips_and_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert!(load(&store).unwrap().is_empty());
        let mut data = AdminData::default();
        data.apply(&AdminChange::PutAccount {
            account: Account {
                name: "root".into(),
                role: AdminRole::Administrator,
                password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG".into(),
                changed_unix_ms: 1,
            },
            create: true,
        })
        .unwrap();
        save(&store, &data).unwrap();
        assert_eq!(load(&store).unwrap(), data);
    }
}

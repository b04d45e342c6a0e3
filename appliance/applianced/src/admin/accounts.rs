//! Admin accounts over the `Admin` service: the replies (every account with
//! its hash, for managementd to verify passwords; while there is no
//! administrator, where to set the first one), the changes read from a
//! request, and the first administrator given at start (kernel parameter,
//! seed disk or `--first-admin`), applied once when there is no account.

use std::time::Duration;

use appliance_api::v1::{self, AccountsReply, PutAccountRequest};
use appliance_cluster::{Account, AdminChange, AdminRole};
use tonic::Status;
use tracing::{info, warn};

use super::data::{refused, DataSource, Versioned};

/// Where to set the first administrator, while there is none.
pub const FIRST_ADMIN_HINT: &str = "no administrator yet: set the first one on this appliance's \
     console, or boot it with appliance.admin=NAME:ARGON2ID-HASH (or [admin] in the seed disk)";

/// An account on the wire.
pub fn to_api(a: &Account) -> v1::Account {
    v1::Account {
        name: a.name.clone(),
        role: a.role.to_string(),
        password_hash: a.password_hash.clone(),
        changed_unix_ms: a.changed_unix_ms,
    }
}

/// The reply listing every account of `data`.
pub fn reply((data, generation): &Versioned) -> AccountsReply {
    AccountsReply {
        accounts: data.accounts().map(to_api).collect(),
        first_admin_hint: if data.has_administrator() {
            String::new()
        } else {
            FIRST_ADMIN_HINT.to_owned()
        },
        generation: *generation,
    }
}

/// The change a `PutAccount` asks for, stamped `now_unix_ms` (a request's
/// own time is not trusted).
pub fn put_change(req: PutAccountRequest, now_unix_ms: u64) -> Result<AdminChange, Status> {
    let a = req
        .account
        .ok_or_else(|| Status::invalid_argument("PutAccount needs an account"))?;
    let role: AdminRole = a.role.trim().parse().map_err(refused)?;
    Ok(AdminChange::PutAccount {
        account: Account {
            name: a.name.trim().to_owned(),
            role,
            password_hash: a.password_hash.trim().to_owned(),
            changed_unix_ms: now_unix_ms,
        },
        create: req.create,
    })
}

/// Applies the first administrator `account` once: only when there is no
/// account at all, never over an existing one. On a member (its accounts
/// are the cluster's) it waits, bounded, for the node to be a member again
/// after a start, then asks the authority.
pub async fn seed_first_admin(data: &DataSource, mut account: Account, member: bool) {
    let name = account.name.clone();
    // The kernel parameter is read before the clock matters: stamped here.
    if account.changed_unix_ms == 0 {
        account.changed_unix_ms = crate::time::unix_ms(std::time::SystemTime::now());
    }
    // A member is one again shortly after start; give it up to a minute.
    let tries = if member { 60 } else { 1 };
    for attempt in 0..tries {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let (current, generation) = match data.current() {
            Ok(v) => v,
            // Not a member again yet.
            Err(e) if member && e.code() == tonic::Code::Unavailable => continue,
            Err(e) => {
                warn!(
                    "the first administrator {name:?} is not applied: {}",
                    e.message()
                );
                return;
            }
        };
        if member && generation == 0 {
            continue;
        }
        if current.accounts().next().is_some() {
            info!("there are accounts already; the first administrator {name:?} given at start is ignored");
            return;
        }
        let change = AdminChange::PutAccount {
            account,
            create: true,
        };
        match data.change(change).await {
            Ok(_) => info!("first administrator {name:?} set"),
            Err(e) => warn!(
                "the first administrator {name:?} is not applied: {}",
                e.message()
            ),
        }
        return;
    }
    warn!("the first administrator {name:?} is not applied: this node did not become a cluster member again in time");
}

#[cfg(test)]
mod tests {
    use appliance_cluster::AdminData;

    use super::*;

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$0123456789abcdefghijklmnopqrstuvwxyzABCDEFG";

    #[test]
    fn requests_become_changes_with_the_nodes_time() {
        let req = PutAccountRequest {
            account: Some(v1::Account {
                name: " root ".into(),
                role: "administrator".into(),
                password_hash: HASH.into(),
                changed_unix_ms: 1,
            }),
            create: true,
        };
        let AdminChange::PutAccount { account, create } = put_change(req, 42).unwrap() else {
            panic!("not a put");
        };
        assert!(create);
        assert_eq!(account.name, "root");
        assert_eq!(account.changed_unix_ms, 42);
        let bad_role = PutAccountRequest {
            account: Some(v1::Account {
                name: "root".into(),
                role: "admin".into(),
                ..Default::default()
            }),
            create: true,
        };
        let e = put_change(bad_role, 1).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("\"admin\""), "{}", e.message());
        let e = put_change(PutAccountRequest::default(), 1).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn the_hint_shows_until_there_is_an_administrator() {
        let empty = reply(&(AdminData::default(), 0));
        assert!(empty.accounts.is_empty());
        assert!(empty.first_admin_hint.contains("appliance.admin="));
        let mut d = AdminData::default();
        d.apply(&AdminChange::PutAccount {
            account: Account {
                name: "root".into(),
                role: AdminRole::Administrator,
                password_hash: HASH.into(),
                changed_unix_ms: 3,
            },
            create: true,
        })
        .unwrap();
        let r = reply(&(d, 7));
        assert_eq!(r.first_admin_hint, "");
        assert_eq!(r.generation, 7);
        assert_eq!(r.accounts[0].role, "administrator");
        assert_eq!(r.accounts[0].password_hash, HASH);
    }
}

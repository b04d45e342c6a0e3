//! Account changes as managementd makes them for both faces (the web pages
//! and `Management`): the rules on names, roles and passwords, the Argon2id
//! hash made here, the change stored through `Admin.PutAccount` /
//! `RemoveAccount`, the sessions it ends, and its audit event. Replies never
//! carry hashes ([`without_hashes`]).

use appliance_api::v1::{Account, AccountsReply, PutAccountRequest, RemoveAccountRequest};
use tonic::Status;

use super::password::{check_name, check_password};
use super::{Principal, Role};
use crate::grpc::audit_call;
use crate::state::AppState;

/// `reply` with every password hash emptied.
pub fn without_hashes(mut reply: AccountsReply) -> AccountsReply {
    for a in &mut reply.accounts {
        a.password_hash.clear();
    }
    reply
}

fn refuse(who: &Principal, action: &str) -> Status {
    Status::permission_denied(format!(
        "{action} needs an administrator; account {} is a {}",
        who.name, who.role
    ))
}

/// Creates account `name` (administrators only).
pub async fn add(
    state: &AppState,
    who: &Principal,
    name: &str,
    role: &str,
    password: &str,
) -> Result<AccountsReply, Status> {
    let detail = format!("account {name} role {role}");
    let result = add_inner(state, who, name, role, password).await;
    audit_call(state, who, "account.add", &detail, &result).await;
    result.map(without_hashes)
}

async fn add_inner(
    state: &AppState,
    who: &Principal,
    name: &str,
    role: &str,
    password: &str,
) -> Result<AccountsReply, Status> {
    if !who.can_change() {
        return Err(refuse(who, "adding an account"));
    }
    check_name(name).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let role: Role = role
        .parse()
        .map_err(|e: super::UnknownRole| Status::invalid_argument(e.to_string()))?;
    check_password(password).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let hash = state
        .hasher()
        .hash(password)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let account = Account {
        name: name.to_string(),
        role: role.as_str().to_string(),
        password_hash: hash,
        changed_unix_ms: super::sessions::now_ms(),
    };
    let reply = state
        .backend()
        .admin()
        .put_account(PutAccountRequest {
            account: Some(account),
            create: true,
        })
        .await?;
    Ok(reply.into_inner())
}

/// Removes account `name` (administrators only) and ends its sessions.
pub async fn remove(
    state: &AppState,
    who: &Principal,
    name: &str,
) -> Result<AccountsReply, Status> {
    let detail = format!("account {name}");
    let result = if who.can_change() {
        state
            .backend()
            .admin()
            .remove_account(RemoveAccountRequest {
                name: name.to_string(),
            })
            .await
            .map(tonic::Response::into_inner)
    } else {
        Err(refuse(who, "removing an account"))
    };
    if result.is_ok() {
        let ended = state.sessions().revoke_account(name);
        tracing::info!(name, ended, "account removed; its sessions ended");
    }
    audit_call(state, who, "account.remove", &detail, &result).await;
    result.map(without_hashes)
}

/// Changes the password of `name` (empty: the caller's). One's own needs
/// the current password; anyone else's needs an administrator. Every other
/// session of the account ends.
pub async fn change_password(
    state: &AppState,
    who: &Principal,
    name: &str,
    current: &str,
    new: &str,
) -> Result<AccountsReply, Status> {
    let name = if name.is_empty() {
        who.name.as_str()
    } else {
        name
    };
    let detail = format!("account {name}");
    let result = change_inner(state, who, name, current, new).await;
    if result.is_ok() {
        let ended = state
            .sessions()
            .revoke_account_except(name, &who.session_id);
        tracing::info!(
            name,
            ended,
            "password changed; the account's other sessions ended"
        );
    }
    audit_call(state, who, "account.password", &detail, &result).await;
    result.map(without_hashes)
}

async fn change_inner(
    state: &AppState,
    who: &Principal,
    name: &str,
    current: &str,
    new: &str,
) -> Result<AccountsReply, Status> {
    let own = name == who.name;
    if !own && !who.can_change() {
        return Err(refuse(who, "changing another account's password"));
    }
    check_password(new).map_err(|e| Status::invalid_argument(e.to_string()))?;
    let accounts = state.backend().accounts().await?;
    let account = accounts
        .accounts
        .into_iter()
        .find(|a| a.name == name)
        .ok_or_else(|| Status::not_found(format!("no account {name}")))?;
    if own {
        // The current password, rate-limited as a sign-in is: a stolen
        // session must not be a way to guess it.
        state
            .limiter()
            .check(who.source, Some(name))
            .map_err(|t| Status::resource_exhausted(t.to_string()))?;
        let Some(_attempt) = state.limiter().begin(who.source, Some(name)) else {
            let busy = super::limiter::Throttled { wait_secs: 1 };
            return Err(Status::resource_exhausted(busy.to_string()));
        };
        if !state
            .hasher()
            .verify(current, Some(&account.password_hash))
            .await
        {
            state.limiter().failure(who.source, Some(name));
            return Err(Status::permission_denied("the current password is wrong"));
        }
    }
    let hash = state
        .hasher()
        .hash(new)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let reply = state
        .backend()
        .admin()
        .put_account(PutAccountRequest {
            account: Some(Account {
                password_hash: hash,
                changed_unix_ms: super::sessions::now_ms(),
                ..account
            }),
            create: false,
        })
        .await?;
    Ok(reply.into_inner())
}

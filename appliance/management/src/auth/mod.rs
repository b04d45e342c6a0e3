//! Who is asking: passwords (Argon2id), sessions and API tokens, sign-in
//! rate limits, CSRF, and the extractors the web pages and the gRPC
//! services use.

pub mod accounts;
pub mod limiter;
pub mod pages;
pub mod password;
pub mod sessions;
pub mod web;

use std::fmt;
use std::net::IpAddr;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Administrator,
    /// Reads only.
    Viewer,
}

impl Role {
    /// The name used in the API and the cluster configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Administrator => "administrator",
            Role::Viewer => "viewer",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "administrator" => Ok(Role::Administrator),
            "viewer" => Ok(Role::Viewer),
            other => Err(UnknownRole(other.to_string())),
        }
    }
}

/// A role name that is neither "administrator" nor "viewer".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}: \"administrator\" or \"viewer\"")]
pub struct UnknownRole(pub String);

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account.
    pub name: String,
    pub role: Role,
    /// The session's id (not its token).
    pub session_id: String,
    /// The token a form of this session must carry (web sessions).
    pub csrf: String,
    /// The client's address.
    pub source: IpAddr,
}

impl Principal {
    /// True for administrators.
    pub fn can_change(&self) -> bool {
        self.role == Role::Administrator
    }
}

/// Why a sign-in did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// No administrator exists yet: the hint says where to set one.
    #[error("no administrator yet: {0}")]
    NoAdministrator(String),
    /// applianced did not answer.
    #[error("the appliance's daemon does not answer: {}", .0.message())]
    Unreachable(tonic::Status),
    /// Too many failures: refused before checking the password.
    #[error(transparent)]
    Throttled(#[from] limiter::Throttled),
    /// Unknown account or wrong password (never said which).
    #[error("wrong account name or password")]
    Wrong,
}

/// The typed name as the audit trail records it: quoted, escaped, at most 64
/// characters.
fn typed(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    format!("name {short:?}")
}

/// A refusal by the rate limit: counted, logged, and audited once per wait
/// (see [`limiter::Limiter::first_refusal`]).
async fn refuse(
    state: &crate::state::AppState,
    source: IpAddr,
    name: &str,
    account: Option<&str>,
    t: limiter::Throttled,
) -> SignInError {
    state.metrics().sign_in_throttled();
    let reason = t.to_string();
    if state.limiter().first_refusal(source, account) {
        state
            .audit(
                "",
                source,
                "sign-in",
                &typed(name),
                crate::state::Outcome::Refused(&reason),
            )
            .await;
    } else {
        tracing::info!(%source, detail = %typed(name), %reason, "sign-in refused again (audited once per wait)");
    }
    t.into()
}

/// Signs `name` in with `password` from `source`: the rate limit, Argon2
/// (against a decoy for an unknown account, so both take as long), the
/// session, the audit event and the counters. Shared by the web form and
/// `Management.Login`.
pub async fn sign_in(
    state: &crate::state::AppState,
    name: &str,
    password: &str,
    source: IpAddr,
    kind: sessions::Kind,
) -> Result<(String, Principal), SignInError> {
    use crate::state::Outcome;
    // One action for both faces; the detail says which ("web" or "api").
    let action = "sign-in";
    // The source first: a flood from one address is refused without a
    // call on applianced or an Argon2 run.
    if let Err(t) = state.limiter().check(source, None) {
        return Err(refuse(state, source, name, None, t).await);
    }
    let reply = state
        .backend()
        .accounts()
        .await
        .map_err(SignInError::Unreachable)?;
    if !reply
        .accounts
        .iter()
        .any(|a| a.role == Role::Administrator.as_str())
    {
        return Err(SignInError::NoAdministrator(reply.first_admin_hint));
    }
    let account = reply.accounts.iter().find(|a| a.name == name);
    let role = account.map(|a| a.role.parse::<Role>());
    let account_name = account.map(|a| a.name.as_str());
    if let Err(t) = state.limiter().check(source, account_name) {
        return Err(refuse(state, source, name, account_name, t).await);
    }
    let Some(_attempt) = state.limiter().begin(source, account_name) else {
        let busy = limiter::Throttled { wait_secs: 1 };
        return Err(refuse(state, source, name, account_name, busy).await);
    };
    let ok = state
        .hasher()
        .verify(password, account.map(|a| a.password_hash.as_str()))
        .await;
    match (ok, &role) {
        (true, Some(Ok(role))) => {
            let role = *role;
            state.limiter().success(name);
            let (token, principal) = state.sessions().create(name, role, source, kind);
            state.metrics().sign_in_ok();
            state
                .audit(name, source, action, kind.as_str(), Outcome::Ok)
                .await;
            Ok((token, principal))
        }
        (true, _) | (false, _) => {
            if let Some(Err(e)) = role {
                tracing::warn!(name, error = %e, "account with an unknown role cannot sign in");
            }
            state
                .limiter()
                .failure(source, account.map(|a| a.name.as_str()));
            state.metrics().sign_in_failed();
            state
                .audit(
                    "",
                    source,
                    action,
                    &typed(name),
                    Outcome::Failed("wrong account name or password"),
                )
                .await;
            Err(SignInError::Wrong)
        }
    }
}

//! Who is asking: passwords (Argon2id), sessions and API tokens, sign-in
//! rate limits, CSRF, and the extractors the web pages and the gRPC
//! services use.

pub mod limiter;
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

//! The management plane's data: admin accounts, cluster-wide settings and
//! the uploaded management certificate ([`AdminData`]), and the changes that
//! move it ([`AdminChange`]), checked by [`AdminData::apply`].
//!
//! A member's `AdminData` is part of the [`ClusterConfig`](super::ClusterConfig)
//! (it changes through [`Change::Admin`](super::Change::Admin) and reaches
//! every member with it); a node that is not a member keeps its own, and
//! applianced applies the same changes to it. Passwords never reach this
//! module: accounts carry an Argon2id PHC hash, whose shape is checked here
//! (managementd hashes and verifies).
//!
//! Invariants kept by `apply`: every account name and hash is well formed;
//! once there is an account there is an administrator (the first account
//! must be one, the last one cannot be removed or made a viewer); settings
//! have at most [`MAX_SETTINGS`] entries of each kind, no duplicates, and
//! management networks without host bits.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// At most this many DNS servers, NTP servers and management networks each.
pub const MAX_SETTINGS: usize = 8;

/// Longest account name (the pattern is `[a-z][a-z0-9._-]{0,31}`).
pub const ACCOUNT_NAME_MAX_LEN: usize = 32;

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    /// Everything.
    Administrator,
    /// Reads only.
    Viewer,
}

impl AdminRole {
    /// The role's name on the wire and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            AdminRole::Administrator => "administrator",
            AdminRole::Viewer => "viewer",
        }
    }
}

impl fmt::Display for AdminRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AdminRole {
    type Err = AdminError;
    fn from_str(s: &str) -> Result<Self, AdminError> {
        match s {
            "administrator" => Ok(AdminRole::Administrator),
            "viewer" => Ok(AdminRole::Viewer),
            _ => Err(AdminError::InvalidRole {
                role: s.to_string(),
            }),
        }
    }
}

/// One admin account. Its `Debug` leaves the hash out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// `[a-z][a-z0-9._-]{0,31}`.
    pub name: String,
    /// Administrator or viewer.
    pub role: AdminRole,
    /// Argon2id PHC string (`$argon2id$v=19$m=..,t=..,p=..$salt$hash`).
    pub password_hash: String,
    /// When it was created or last changed (Unix ms, set by the caller).
    pub changed_unix_ms: u64,
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("name", &self.name)
            .field("role", &self.role)
            .field("password_hash", &"<redacted>")
            .field("changed_unix_ms", &self.changed_unix_ms)
            .finish()
    }
}

/// Cluster-wide settings (a non-member's own).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Resolvers for every node; empty: each node keeps its configuration's.
    pub dns_servers: Vec<IpAddr>,
    /// Time servers (host names or addresses).
    pub ntp_servers: Vec<String>,
    /// The networks that may reach the management port; empty: anyone.
    pub management_networks: Vec<IpNet>,
}

impl Settings {
    /// Parses settings as they come on the wire (strings), checking each
    /// entry and the whole ([`Settings::check`]).
    pub fn parse(
        dns_servers: &[String],
        ntp_servers: &[String],
        management_networks: &[String],
    ) -> Result<Settings, AdminError> {
        let dns_servers = dns_servers
            .iter()
            .map(|s| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| AdminError::InvalidDnsServer {
                        value: s.clone(),
                        reason: "is not an IP address (write e.g. 192.0.2.53 or 2001:db8::53)"
                            .into(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let management_networks = management_networks
            .iter()
            .map(|s| parse_network(s))
            .collect::<Result<Vec<_>, _>>()?;
        let settings = Settings {
            dns_servers,
            ntp_servers: ntp_servers.iter().map(|s| s.trim().to_string()).collect(),
            management_networks,
        };
        settings.check()?;
        Ok(settings)
    }

    /// Checks every rule: at most [`MAX_SETTINGS`] of each, no duplicates,
    /// usable resolver addresses, NTP servers that are host names or
    /// addresses, management networks without host bits.
    pub fn check(&self) -> Result<(), AdminError> {
        check_list("DNS servers", &self.dns_servers)?;
        check_list("NTP servers", &self.ntp_servers)?;
        check_list("management networks", &self.management_networks)?;
        for a in &self.dns_servers {
            if a.is_unspecified() || a.is_multicast() {
                return Err(AdminError::InvalidDnsServer {
                    value: a.to_string(),
                    reason: "is not a unicast address a resolver can have".into(),
                });
            }
        }
        for s in &self.ntp_servers {
            if s.parse::<IpAddr>().is_err() {
                appliance_config::hostname::check_domain_name(s).map_err(|e| {
                    AdminError::InvalidNtpServer {
                        value: s.clone(),
                        reason: format!("is neither an IP address nor a host name: it {e}"),
                    }
                })?;
            }
        }
        for n in &self.management_networks {
            if n.trunc() != *n {
                return Err(AdminError::InvalidNetwork {
                    value: n.to_string(),
                    reason: format!("has host bits set; write the network, {}", n.trunc()),
                });
            }
        }
        Ok(())
    }

    /// True if `client` may reach the management port (always, with no
    /// management network set).
    pub fn allows(&self, client: &IpAddr) -> bool {
        self.management_networks.is_empty()
            || self.management_networks.iter().any(|n| n.contains(client))
    }

    /// Refuses settings whose management networks would exclude `client`,
    /// the address of whoever asks for them.
    pub fn check_client(&self, client: &IpAddr) -> Result<(), AdminError> {
        if self.allows(client) {
            return Ok(());
        }
        Err(AdminError::ExcludesClient {
            client: *client,
            networks: self
                .management_networks
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// A network in CIDR form; a bare address is refused (it would be a /32 or
/// /128, which is rarely what is meant, so it must be written out).
fn parse_network(s: &str) -> Result<IpNet, AdminError> {
    let t = s.trim();
    let bad = |reason: &str| AdminError::InvalidNetwork {
        value: s.to_string(),
        reason: reason.to_string(),
    };
    if !t.contains('/') {
        return Err(bad(
            "has no prefix length; write it in CIDR form, e.g. 192.0.2.0/24 (or 192.0.2.7/32 for one address)",
        ));
    }
    t.parse::<IpNet>()
        .map_err(|_| bad("is not a network in CIDR form, e.g. 192.0.2.0/24 or 2001:db8::/32"))
}

fn check_list<T: Ord + fmt::Display>(what: &'static str, items: &[T]) -> Result<(), AdminError> {
    if items.len() > MAX_SETTINGS {
        return Err(AdminError::TooMany {
            what,
            count: items.len(),
        });
    }
    let mut seen = BTreeSet::new();
    for i in items {
        if !seen.insert(i) {
            return Err(AdminError::Duplicate {
                what,
                value: i.to_string(),
            });
        }
    }
    Ok(())
}

/// A certificate and key an administrator uploaded for the management port
/// (validated by the PKI before it gets here). Its `Debug` leaves the key out.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UploadedCert {
    /// The certificate chain, PEM.
    pub cert_pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
}

impl fmt::Debug for UploadedCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UploadedCert")
            .field("cert_pem", &format_args!("<{} bytes>", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The management plane's data: accounts, settings, uploaded certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminData {
    accounts: BTreeMap<String, Account>,
    settings: Settings,
    certificate: Option<UploadedCert>,
}

/// A change to [`AdminData`]; [`AdminData::apply`] accepts or refuses it whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdminChange {
    /// Creates (`create`) or replaces an account.
    PutAccount {
        /// The account as it is to be.
        account: Account,
        /// True: refuse if it exists; false: it must exist (unless there is
        /// no account at all: the first administrator).
        create: bool,
    },
    /// Removes an account.
    RemoveAccount {
        /// Its name.
        name: String,
    },
    /// Replaces the settings.
    SetSettings(Settings),
    /// Sets (or, with `None`, clears) the uploaded certificate.
    SetCertificate(Option<UploadedCert>),
}

/// In a few words, for logs and the audit trail; never a hash or a key.
impl fmt::Display for AdminChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminChange::PutAccount { account, create } => write!(
                f,
                "{} account {} ({})",
                if *create { "add" } else { "change" },
                account.name,
                account.role
            ),
            AdminChange::RemoveAccount { name } => write!(f, "remove account {name}"),
            AdminChange::SetSettings(s) => write!(
                f,
                "set settings ({} DNS, {} NTP, {} management networks)",
                s.dns_servers.len(),
                s.ntp_servers.len(),
                s.management_networks.len()
            ),
            AdminChange::SetCertificate(Some(_)) => f.write_str("set the management certificate"),
            AdminChange::SetCertificate(None) => f.write_str("clear the management certificate"),
        }
    }
}

impl AdminData {
    /// True with no account, default settings and no certificate.
    pub fn is_empty(&self) -> bool {
        self == &AdminData::default()
    }

    /// The accounts, ordered by name.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// One account.
    pub fn account(&self, name: &str) -> Option<&Account> {
        self.accounts.get(name)
    }

    /// True once there is at least one administrator.
    pub fn has_administrator(&self) -> bool {
        self.accounts
            .values()
            .any(|a| a.role == AdminRole::Administrator)
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The uploaded certificate, if any.
    pub fn certificate(&self) -> Option<&UploadedCert> {
        self.certificate.as_ref()
    }

    /// Checks data received from elsewhere (a stored record, a pushed
    /// configuration) against every rule `apply` keeps.
    pub fn validate(&self) -> Result<(), AdminError> {
        for (key, a) in &self.accounts {
            check_account(a)?;
            if key != &a.name {
                return Err(AdminError::InvalidName {
                    name: a.name.clone(),
                    reason: format!("is stored under the name {key:?}"),
                });
            }
        }
        if !self.accounts.is_empty() && !self.has_administrator() {
            return Err(AdminError::FirstMustBeAdministrator {
                name: self.accounts.keys().next().cloned().unwrap_or_default(),
            });
        }
        self.settings.check()?;
        if let Some(c) = &self.certificate {
            check_certificate(c)?;
        }
        Ok(())
    }

    /// Applies `change` in place, or refuses it and leaves `self` as it was.
    pub fn apply(&mut self, change: &AdminChange) -> Result<(), AdminError> {
        match change {
            AdminChange::PutAccount { account, create } => {
                check_account(account)?;
                let existing = self.accounts.get(&account.name);
                match (existing, *create) {
                    (Some(_), true) => {
                        return Err(AdminError::AccountExists {
                            name: account.name.clone(),
                        })
                    }
                    (None, false) if !self.accounts.is_empty() => {
                        return Err(AdminError::NoSuchAccount {
                            name: account.name.clone(),
                        })
                    }
                    _ => {}
                }
                if self.accounts.is_empty() && account.role != AdminRole::Administrator {
                    return Err(AdminError::FirstMustBeAdministrator {
                        name: account.name.clone(),
                    });
                }
                if let Some(e) = existing {
                    if e.role == AdminRole::Administrator
                        && account.role != AdminRole::Administrator
                        && self.administrators() == 1
                    {
                        return Err(AdminError::LastAdministrator {
                            name: account.name.clone(),
                            action: "made a viewer",
                        });
                    }
                }
                self.accounts.insert(account.name.clone(), account.clone());
            }
            AdminChange::RemoveAccount { name } => {
                let Some(existing) = self.accounts.get(name) else {
                    return Err(AdminError::NoSuchAccount { name: name.clone() });
                };
                if existing.role == AdminRole::Administrator && self.administrators() == 1 {
                    return Err(AdminError::LastAdministrator {
                        name: name.clone(),
                        action: "removed",
                    });
                }
                self.accounts.remove(name);
            }
            AdminChange::SetSettings(settings) => {
                settings.check()?;
                self.settings = settings.clone();
            }
            AdminChange::SetCertificate(cert) => {
                if let Some(c) = cert {
                    check_certificate(c)?;
                }
                self.certificate = cert.clone();
            }
        }
        Ok(())
    }

    fn administrators(&self) -> usize {
        self.accounts
            .values()
            .filter(|a| a.role == AdminRole::Administrator)
            .count()
    }
}

fn check_account(a: &Account) -> Result<(), AdminError> {
    check_account_name(&a.name)?;
    check_password_hash(&a.password_hash).map_err(|reason| AdminError::InvalidHash {
        name: a.name.clone(),
        reason,
    })
}

fn check_certificate(c: &UploadedCert) -> Result<(), AdminError> {
    if !c.cert_pem.contains("-----BEGIN CERTIFICATE-----") {
        return Err(AdminError::InvalidCertificate {
            reason: "the certificate is not PEM (no \"-----BEGIN CERTIFICATE-----\" line)".into(),
        });
    }
    if !c.key_pem.contains("-----BEGIN") || !c.key_pem.contains("PRIVATE KEY-----") {
        return Err(AdminError::InvalidCertificate {
            reason:
                "the key is not a PEM private key (no \"-----BEGIN ... PRIVATE KEY-----\" line)"
                    .into(),
        });
    }
    Ok(())
}

/// Reads a first administrator given as `NAME:ARGON2ID-PHC` (the kernel
/// parameter `appliance.admin=` and applianced's `--first-admin`): the
/// account, an administrator, changed at `now_unix_ms`. The hash has no ':',
/// so the first one separates the two.
pub fn parse_first_admin(text: &str, now_unix_ms: u64) -> Result<Account, AdminError> {
    let Some((name, hash)) = text.trim().split_once(':') else {
        return Err(AdminError::InvalidFirstAdmin {
            reason: "has no ':' between the account name and its Argon2id hash".into(),
        });
    };
    let account = Account {
        name: name.to_string(),
        role: AdminRole::Administrator,
        password_hash: hash.to_string(),
        changed_unix_ms: now_unix_ms,
    };
    check_account(&account)?;
    Ok(account)
}

/// Checks an account name against `[a-z][a-z0-9._-]{0,31}`.
pub fn check_account_name(name: &str) -> Result<(), AdminError> {
    let bad = |reason: String| AdminError::InvalidName {
        name: name.to_string(),
        reason,
    };
    let mut chars = name.char_indices();
    match chars.next() {
        None => return Err(bad("is empty".into())),
        Some((_, c)) if !c.is_ascii_lowercase() => {
            return Err(bad(format!("starts with {c:?}, not a letter a-z")))
        }
        Some(_) => {}
    }
    if name.len() > ACCOUNT_NAME_MAX_LEN {
        return Err(bad(format!(
            "is {} characters long, more than {ACCOUNT_NAME_MAX_LEN}",
            name.len()
        )));
    }
    for (pos, c) in chars {
        if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
            return Err(bad(format!("contains {c:?} at byte {pos}")));
        }
    }
    Ok(())
}

/// Checks the shape of an Argon2id PHC string:
/// `$argon2id$v=19$m=<n>,t=<n>,p=<n>$<salt>$<hash>` with salt and hash in
/// unpadded standard base64. Returns why not, never echoing the string.
pub fn check_password_hash(phc: &str) -> Result<(), String> {
    let parts: Vec<&str> = phc.split('$').collect();
    let [empty, alg, version, params, salt, hash] = parts.as_slice() else {
        return Err(format!(
            "has {} '$'-separated fields where an Argon2id PHC string has 5 \
             ($argon2id$v=19$m=..,t=..,p=..$salt$hash)",
            parts.len().saturating_sub(1)
        ));
    };
    if !empty.is_empty() {
        return Err("does not start with '$'".into());
    }
    if *alg != "argon2id" {
        return Err(format!(
            "uses the algorithm {:?}; only argon2id is accepted",
            truncate(alg)
        ));
    }
    if *version != "v=19" {
        return Err(format!(
            "has the version {:?}; only v=19 is accepted",
            truncate(version)
        ));
    }
    let kv: Vec<&str> = params.split(',').collect();
    let [m, t, p] = kv.as_slice() else {
        return Err("must have exactly the parameters m=..,t=..,p=..".into());
    };
    for (field, key) in [(m, "m"), (t, "t"), (p, "p")] {
        let value = field
            .strip_prefix(key)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(|| format!("must have the parameters in the order m, t, p (found {:?} where {key}= belongs)", truncate(field)))?;
        match value.parse::<u32>() {
            Ok(n) if n > 0 && !value.starts_with('0') => {}
            _ => {
                return Err(format!(
                    "has {key}={:?}, not a positive number",
                    truncate(value)
                ))
            }
        }
    }
    check_b64("salt", salt, 8, 64)?;
    check_b64("hash", hash, 16, 128)?;
    Ok(())
}

fn check_b64(what: &str, s: &str, min: usize, max: usize) -> Result<(), String> {
    if s.len() < min || s.len() > max {
        return Err(format!(
            "has a {what} of {} characters; it must have {min} to {max}",
            s.len()
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '+' || *c == '/'))
    {
        return Err(format!(
            "has {c:?} in its {what}; it must be unpadded base64 (A-Z, a-z, 0-9, '+', '/')"
        ));
    }
    Ok(())
}

/// Enough of a field to recognise it in a message, without echoing a long secret.
fn truncate(s: &str) -> String {
    s.chars().take(16).collect()
}

/// Why a change to the admin data is refused. Each message names the input
/// and says what to do; none contains a hash or a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// A bad account name.
    #[error(
        "the account name {name:?} {reason}; a name is a lowercase letter followed by up to 31 \
         lowercase letters, digits, '.', '_' or '-'"
    )]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A role other than administrator or viewer.
    #[error("the role {role:?} does not exist; use \"administrator\" or \"viewer\"")]
    InvalidRole {
        /// The role asked for.
        role: String,
    },
    /// A password hash that is not an Argon2id PHC string.
    #[error(
        "the password hash of account {name:?} {reason}; give the PHC string an Argon2id hasher \
         prints (managementd makes one from a password)"
    )]
    InvalidHash {
        /// The account.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// Creating an account that exists.
    #[error("the account {name:?} already exists; change it instead, or pick another name")]
    AccountExists {
        /// The account.
        name: String,
    },
    /// Changing or removing an account that does not exist.
    #[error("there is no account {name:?}; list the accounts to see their names")]
    NoSuchAccount {
        /// The account.
        name: String,
    },
    /// The first account must be an administrator.
    #[error(
        "there is no administrator yet, so the account {name:?} must be an administrator; \
         add viewers once an administrator exists"
    )]
    FirstMustBeAdministrator {
        /// The account.
        name: String,
    },
    /// The change would leave no administrator.
    #[error(
        "the account {name:?} is the last administrator and cannot be {action}; \
         make another account an administrator first"
    )]
    LastAdministrator {
        /// The account.
        name: String,
        /// "removed" or "made a viewer".
        action: &'static str,
    },
    /// Too many entries of one setting.
    #[error("{count} {what} given; at most {MAX_SETTINGS} are allowed, remove some")]
    TooMany {
        /// The setting.
        what: &'static str,
        /// How many were given.
        count: usize,
    },
    /// The same entry twice.
    #[error("{value} is listed twice in the {what}; list each once")]
    Duplicate {
        /// The setting.
        what: &'static str,
        /// The entry.
        value: String,
    },
    /// A bad DNS server.
    #[error("the DNS server {value:?} {reason}")]
    InvalidDnsServer {
        /// The entry.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad NTP server.
    #[error("the NTP server {value:?} {reason}")]
    InvalidNtpServer {
        /// The entry.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// A bad management network.
    #[error("the management network {value:?} {reason}")]
    InvalidNetwork {
        /// The entry.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// The management networks would lock out whoever sets them.
    #[error(
        "the management networks {networks} do not contain {client}, the address you are \
         connected from, so you would lock yourself out; add a network that contains {client}"
    )]
    ExcludesClient {
        /// The client's address.
        client: IpAddr,
        /// The networks asked for.
        networks: String,
    },
    /// A first administrator not written as `NAME:HASH`.
    #[error(
        "the first administrator {reason}; write it as NAME:HASH, e.g. \
         root:$argon2id$v=19$m=19456,t=2,p=1$SALT$HASH"
    )]
    InvalidFirstAdmin {
        /// What is wrong.
        reason: String,
    },
    /// An uploaded certificate or key that is not PEM.
    #[error("the management certificate is refused: {reason}")]
    InvalidCertificate {
        /// What is wrong.
        reason: String,
    },
}

impl AdminError {
    /// True when the refusal is about the current state (an account that
    /// exists or not, the last administrator) rather than the input's shape:
    /// gRPC `FAILED_PRECONDITION` rather than `INVALID_ARGUMENT`.
    pub fn is_precondition(&self) -> bool {
        matches!(
            self,
            AdminError::AccountExists { .. }
                | AdminError::NoSuchAccount { .. }
                | AdminError::FirstMustBeAdministrator { .. }
                | AdminError::LastAdministrator { .. }
        )
    }
}

#[cfg(test)]
#[path = "admin_tests.rs"]
mod tests;

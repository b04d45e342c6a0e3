//! Sessions and API tokens, in memory (a restart of managementd signs
//! everyone out of this node).
//!
//! A token is 256 random bits shown once to its client; only its SHA-256 is
//! kept, so a dump of this process's memory gives no usable token. Web
//! sessions expire after 30 idle minutes or 12 hours, API tokens after 12
//! hours. At most [`MAX_SESSIONS`] live at once: a new one evicts the
//! oldest, so a flood of sign-ins cannot grow the map.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{Principal, Role};

/// The name of the web session's cookie.
pub const COOKIE: &str = "appliance_session";
/// A web session ends after this long without a request.
pub const WEB_IDLE_MS: u64 = 30 * 60 * 1000;
/// Any session ends this long after it was signed in.
pub const ABSOLUTE_MS: u64 = 12 * 60 * 60 * 1000;
/// The bound on live sessions.
pub const MAX_SESSIONS: usize = 1_000;

/// Where a session is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A browser: the cookie, idle expiry, CSRF tokens in forms.
    Web,
    /// `appliancectl --server`: `authorization: Bearer`.
    Api,
}

impl Kind {
    /// The name used in the API ("web" or "api").
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Web => "web",
            Kind::Api => "api",
        }
    }
}

/// One session as listed (never its token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    /// The session's public id (not its token).
    pub id: String,
    pub name: String,
    pub role: Role,
    /// The address it signed in from.
    pub source: IpAddr,
    pub created_unix_ms: u64,
    /// When it ends if nothing else happens (idle or absolute, the earlier).
    pub expires_unix_ms: u64,
    pub kind: Kind,
}

struct Session {
    id: String,
    name: String,
    role: Role,
    source: IpAddr,
    created: u64,
    last_used: u64,
    kind: Kind,
    csrf: String,
}

impl Session {
    fn expires(&self) -> u64 {
        let absolute = self.created.saturating_add(ABSOLUTE_MS);
        match self.kind {
            Kind::Web => absolute.min(self.last_used.saturating_add(WEB_IDLE_MS)),
            Kind::Api => absolute,
        }
    }

    fn principal(&self, source: IpAddr) -> Principal {
        Principal {
            name: self.name.clone(),
            role: self.role,
            session_id: self.id.clone(),
            csrf: self.csrf.clone(),
            source,
        }
    }

    fn view(&self) -> SessionView {
        SessionView {
            id: self.id.clone(),
            name: self.name.clone(),
            role: self.role,
            source: self.source,
            created_unix_ms: self.created,
            expires_unix_ms: self.expires(),
            kind: self.kind,
        }
    }
}

/// The signed-in sessions of this node, keyed by the SHA-256 of their token.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut buf);
    hex(&buf)
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// No sessions.
    pub fn new() -> Self {
        Self::default()
    }

    /// Signs `name` in: returns the new token (shown once) and the principal.
    pub fn create(
        &self,
        name: &str,
        role: Role,
        source: IpAddr,
        kind: Kind,
    ) -> (String, Principal) {
        self.create_at(name, role, source, kind, now_ms())
    }

    /// [`Sessions::create`] at a given time (tests).
    pub fn create_at(
        &self,
        name: &str,
        role: Role,
        source: IpAddr,
        kind: Kind,
        now: u64,
    ) -> (String, Principal) {
        let token = random_hex(32);
        let session = Session {
            id: random_hex(12),
            name: name.to_string(),
            role,
            source,
            created: now,
            last_used: now,
            kind,
            csrf: random_hex(32),
        };
        let principal = session.principal(source);
        let mut map = self.lock();
        map.retain(|_, s| s.expires() > now);
        while map.len() >= MAX_SESSIONS {
            // Evict the oldest sign-in: the bound holds even under a flood.
            let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) else {
                break;
            };
            if let Some(s) = map.remove(&oldest) {
                tracing::info!(name = %s.name, id = %s.id, "session evicted: too many sessions");
            }
        }
        map.insert(digest(&token), session);
        (token, principal)
    }

    /// The principal of a live session of `kind` for `token`, seen from
    /// `source`; a web session's idle time starts again. Expired sessions
    /// are dropped.
    pub fn check(&self, token: &str, kind: Kind, source: IpAddr) -> Option<Principal> {
        self.check_at(token, kind, source, now_ms())
    }

    /// [`Sessions::check`] at a given time (tests).
    pub fn check_at(&self, token: &str, kind: Kind, source: IpAddr, now: u64) -> Option<Principal> {
        let key = digest(token);
        let mut map = self.lock();
        let session = map.get_mut(&key)?;
        if session.expires() <= now {
            map.remove(&key);
            return None;
        }
        if session.kind != kind {
            return None;
        }
        session.last_used = now;
        Some(session.principal(source))
    }

    /// Ends the session of `token`; true if there was one.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.lock().remove(&digest(token)).is_some()
    }

    /// Ends the session with the public id `id`; true if there was one.
    pub fn revoke_id(&self, id: &str) -> bool {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.id != id);
        map.len() != before
    }

    /// Ends every session of account `name` (removed, password changed or
    /// role changed); returns how many.
    pub fn revoke_account(&self, name: &str) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.name != name);
        before - map.len()
    }

    /// Ends every session of `name` except `keep_id` (a password changed by
    /// its owner keeps the session that changed it).
    pub fn revoke_account_except(&self, name: &str, keep_id: &str) -> usize {
        let mut map = self.lock();
        let before = map.len();
        map.retain(|_, s| s.name != name || s.id == keep_id);
        before - map.len()
    }

    /// The live sessions, oldest first.
    pub fn list(&self) -> Vec<SessionView> {
        self.list_at(now_ms())
    }

    /// [`Sessions::list`] at a given time (tests).
    pub fn list_at(&self, now: u64) -> Vec<SessionView> {
        let mut map = self.lock();
        map.retain(|_, s| s.expires() > now);
        let mut list: Vec<SessionView> = map.values().map(Session::view).collect();
        list.sort_by(|a, b| {
            a.created_unix_ms
                .cmp(&b.created_unix_ms)
                .then(a.id.cmp(&b.id))
        });
        list
    }

    /// How many sessions are held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        // A panic while holding the lock leaves a consistent map (every
        // change is one call on it), so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn tokens_are_256_bits_and_only_their_digest_is_kept() {
        let s = Sessions::new();
        let (token, p) = s.create_at("ann", Role::Administrator, SRC, Kind::Web, 1000);
        assert_eq!(token.len(), 64);
        assert_eq!(p.csrf.len(), 64);
        assert_ne!(p.csrf, token);
        let map = s.lock();
        assert!(map.contains_key(&digest(&token)));
        assert!(map.values().all(|v| v.id != token && v.csrf != token));
    }

    #[test]
    fn web_sessions_expire_when_idle_and_absolutely() {
        let s = Sessions::new();
        let (t, _) = s.create_at("ann", Role::Viewer, SRC, Kind::Web, 0);
        // Used every 29 minutes: alive until 12 hours.
        let mut now = 0;
        while now + 29 * 60_000 < ABSOLUTE_MS {
            now += 29 * 60_000;
            assert!(s.check_at(&t, Kind::Web, SRC, now).is_some(), "at {now}");
        }
        assert!(s.check_at(&t, Kind::Web, SRC, ABSOLUTE_MS).is_none());
        assert!(s.is_empty());

        let (t, _) = s.create_at("ann", Role::Viewer, SRC, Kind::Web, 0);
        assert!(s.check_at(&t, Kind::Web, SRC, WEB_IDLE_MS - 1).is_some());
        assert!(s.check_at(&t, Kind::Web, SRC, 2 * WEB_IDLE_MS).is_none());
    }

    #[test]
    fn api_tokens_last_twelve_hours_without_idle_expiry() {
        let s = Sessions::new();
        let (t, _) = s.create_at("ann", Role::Viewer, SRC, Kind::Api, 0);
        assert!(s.check_at(&t, Kind::Api, SRC, ABSOLUTE_MS - 1).is_some());
        assert!(s.check_at(&t, Kind::Api, SRC, ABSOLUTE_MS).is_none());
    }

    #[test]
    fn a_token_works_only_for_its_kind() {
        let s = Sessions::new();
        let (t, _) = s.create_at("ann", Role::Viewer, SRC, Kind::Api, 0);
        assert!(s.check_at(&t, Kind::Web, SRC, 1).is_none());
        assert!(s.check_at(&t, Kind::Api, SRC, 1).is_some());
        assert!(s.check_at("not-a-token", Kind::Api, SRC, 1).is_none());
    }

    #[test]
    fn revoke_by_token_id_and_account() {
        let s = Sessions::new();
        let (a1, p1) = s.create_at("ann", Role::Administrator, SRC, Kind::Web, 0);
        let (a2, _) = s.create_at("ann", Role::Administrator, SRC, Kind::Api, 1);
        let (b, pb) = s.create_at("bob", Role::Viewer, SRC, Kind::Api, 2);
        assert!(s.revoke_id(&pb.session_id));
        assert!(s.check_at(&b, Kind::Api, SRC, 3).is_none());
        assert_eq!(s.revoke_account_except("ann", &p1.session_id), 1);
        assert!(s.check_at(&a2, Kind::Api, SRC, 3).is_none());
        assert!(s.check_at(&a1, Kind::Web, SRC, 3).is_some());
        assert_eq!(s.revoke_account("ann"), 1);
        assert!(s.is_empty());
        assert!(!s.revoke_token(&a1));
    }

    #[test]
    fn list_shows_name_role_source_times_and_kind() {
        let s = Sessions::new();
        s.create_at("ann", Role::Administrator, SRC, Kind::Web, 10);
        s.create_at("bob", Role::Viewer, SRC, Kind::Api, 20);
        let list = s.list_at(30);
        assert_eq!(list.len(), 2);
        assert_eq!((list[0].name.as_str(), list[0].kind), ("ann", Kind::Web));
        assert_eq!(list[0].expires_unix_ms, 10 + WEB_IDLE_MS);
        assert_eq!((list[1].name.as_str(), list[1].role), ("bob", Role::Viewer));
        assert_eq!(list[1].expires_unix_ms, 20 + ABSOLUTE_MS);
        assert_eq!(list[1].source, SRC);
    }

    #[test]
    fn at_most_max_sessions_the_oldest_evicted() {
        let s = Sessions::new();
        let (first, _) = s.create_at("ann", Role::Viewer, SRC, Kind::Api, 0);
        for i in 1..=MAX_SESSIONS as u64 {
            s.create_at("ann", Role::Viewer, SRC, Kind::Api, i);
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert!(s.check_at(&first, Kind::Api, SRC, 2000).is_none());
    }
}

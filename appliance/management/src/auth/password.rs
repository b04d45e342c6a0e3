//! Passwords: Argon2id (the argon2 crate's defaults: m=19456 KiB, t=2,
//! p=1) in PHC strings, and the rules on names and passwords.
//!
//! Hashing is slow by design, so it runs on the blocking pool behind a
//! two-permit semaphore ([`Hasher`]): a flood of sign-ins queues there
//! instead of starving the server's other work.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use tokio::sync::Semaphore;

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Argon2 computations at once.
pub const CONCURRENT_HASHES: usize = 2;

/// Why a password or name was refused, or a hash could not be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PasswordError {
    /// Shorter than [`MIN_PASSWORD_CHARS`].
    #[error("the password has {0} characters; at least 12 are needed")]
    TooShort(usize),
    /// Not `[a-z][a-z0-9._-]{0,31}`.
    #[error("account name {0:?} is not valid: a lowercase letter, then up to 31 of a-z 0-9 . _ -")]
    BadName(String),
    /// The hasher failed (never expected with valid parameters).
    #[error("cannot hash the password: {0}")]
    Hash(String),
    /// The blocking task did not finish.
    #[error("the password hasher stopped")]
    Stopped,
}

/// Checks an account name: `[a-z][a-z0-9._-]{0,31}`.
pub fn check_name(name: &str) -> Result<(), PasswordError> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && name.len() <= 32
        && chars
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(PasswordError::BadName(name.to_string()))
    }
}

/// Checks a new password's length (in characters).
pub fn check_password(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD_CHARS {
        Err(PasswordError::TooShort(n))
    } else {
        Ok(())
    }
}

/// An Argon2id PHC string of `password` with a fresh salt (blocking).
pub fn hash(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// True if `password` matches the PHC string `phc` (blocking). A hash that
/// does not parse never matches.
pub fn verify(password: &str, phc: &str) -> bool {
    match PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(e) => {
            tracing::warn!(error = %e, "stored password hash does not parse");
            false
        }
    }
}

/// A hash of a password no one has, verified against when the account does
/// not exist so that the answer takes as long as for an existing one.
fn decoy() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash("decoy password, never valid").unwrap_or_default())
}

/// Runs Argon2 on the blocking pool, at most [`CONCURRENT_HASHES`] at once.
#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            permits: Arc::new(Semaphore::new(CONCURRENT_HASHES)),
        }
    }
}

impl Hasher {
    /// A hasher with [`CONCURRENT_HASHES`] permits.
    pub fn new() -> Self {
        Self::default()
    }

    /// Hashes a new password.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = password.to_string();
        self.run(move || hash(&password)).await?
    }

    /// Verifies `password` against `phc`, or against a decoy when `phc` is
    /// `None` (no such account), always costing one Argon2 run.
    pub async fn verify(&self, password: &str, phc: Option<&str>) -> bool {
        let password = password.to_string();
        let phc = phc.map(str::to_string);
        self.run(move || match phc {
            Some(phc) => verify(&password, &phc),
            None => {
                let _ = verify(&password, decoy());
                false
            }
        })
        .await
        .unwrap_or(false)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Stopped)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| PasswordError::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_the_defaults_and_verify() {
        let h = hash("correct horse battery").expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(verify("correct horse battery", &h));
        assert!(!verify("correct horse batterY", &h));
        assert!(!verify("anything", "not a phc string"));
        assert_ne!(h, hash("correct horse battery").expect("hash"), "salted");
    }

    #[test]
    fn names_and_password_lengths() {
        for ok in ["a", "ann", "a.b_c-9", &"a".repeat(32)] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in ["", "Ann", "9a", "a b", "ann!", "é", &"a".repeat(33)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            check_password("elevenchars"),
            Err(PasswordError::TooShort(11))
        );
        assert_eq!(check_password("twelve chars"), Ok(()));
        assert_eq!(
            check_password("ééééééééééé"),
            Err(PasswordError::TooShort(11))
        );
    }

    #[tokio::test]
    async fn hasher_runs_at_most_two_at_once() {
        let h = Hasher::new();
        let phc = h.hash("correct horse battery").await.expect("hash");
        assert!(h.verify("correct horse battery", Some(&phc)).await);
        assert!(!h.verify("correct horse battery", None).await);
        let p1 = h.permits.clone().try_acquire_owned().expect("permit");
        let p2 = h.permits.clone().try_acquire_owned().expect("permit");
        assert!(h.permits.clone().try_acquire_owned().is_err());
        drop((p1, p2));
    }
}

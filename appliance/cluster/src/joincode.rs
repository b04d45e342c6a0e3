//! The one-time join code an unjoined appliance shows on its console, and
//! the [`JoinCodeSlot`] that decides whether an attempt to use it may go on.
//!
//! A code is 48 random bits written as 10 Crockford base32 characters in two
//! groups of 5 (`K7Q2M-XW9RT`). Parsing ignores case, spaces and dashes and
//! reads I and L as 1 and O as 0, the usual misreadings; U is not in the
//! alphabet.
//!
//! The slot holds the current code and enforces its rules:
//! - it expires [`SlotPolicy::lifetime`] (15 minutes) after it was issued, and
//!   a new one replaces it;
//! - it is single use: consumed by the first successful join;
//! - after [`SlotPolicy::max_wrong_attempts`] (5) wrong attempts it is
//!   replaced, so the sixth attempt at it fails;
//! - attempts are spaced: after the n-th wrong attempt the next one may come
//!   only `first_delay * 2^(n-1)` later (capped at `max_delay`); earlier ones
//!   are refused with a "retry after".
//!
//! In the join protocol the code is never sent: the handshake in
//! [`crate::pake`] calls [`JoinCodeSlot::begin`], runs SPAKE2 with the code,
//! and reports the outcome with [`JoinCodeSlot::succeed`] or
//! [`JoinCodeSlot::fail`]. An attempt counts as wrong from the moment it
//! begins (and is refunded on success), so a peer that abandons handshakes
//! halfway cannot try codes for free. [`JoinCodeSlot::check`] compares a typed
//! code directly, in constant time, for local uses.
//!
//! Time comes in as an [`Instant`] argument and randomness as an RNG owned by
//! the slot, so tests are deterministic. Logging refusals is the caller's job.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use data_encoding::{Encoding, Specification, SpecificationError};
use rand_core::{CryptoRng, RngCore};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Characters in a code, without the dash.
pub const CODE_LEN: usize = 10;

/// Random bytes behind a code: 10 base32 characters carry 50 bits, of which
/// the last 2 are zero.
const CODE_BYTES: usize = 6;

/// Crockford's base32 alphabet: digits and letters without I, L, O and U.
const ALPHABET: &str = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The Crockford encoding; built once. Its specification is constant, so
/// building it cannot fail in practice, but the error is carried, not unwrapped.
fn crockford() -> Result<&'static Encoding, JoinCodeError> {
    static ENCODING: OnceLock<Result<Encoding, SpecificationError>> = OnceLock::new();
    ENCODING
        .get_or_init(|| {
            let mut spec = Specification::new();
            spec.symbols.push_str(ALPHABET);
            spec.check_trailing_bits = true;
            spec.encoding()
        })
        .as_ref()
        .map_err(|e| JoinCodeError::Internal(e.to_string()))
}

/// A join code. Its `Debug` form hides it; `Display` shows it as
/// `XXXXX-XXXXX` for the console.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinCode([u8; CODE_BYTES]);

/// Text that is not a join code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinCodeError {
    /// Too few or too many characters (dashes and spaces not counted).
    #[error(
        "the join code typed has {count} characters; a join code has 10, shown as two groups \
         of 5 such as K7Q2M-XW9RT: read it again from the appliance's console"
    )]
    WrongLength {
        /// Characters found, dashes and spaces left out.
        count: usize,
    },
    /// A character outside the alphabet.
    #[error(
        "the join code typed contains {character:?} at position {position}, which join codes \
         never contain (they use digits and the letters A-Z without I, L, O and U); \
         read it again from the appliance's console"
    )]
    InvalidCharacter {
        /// The character.
        character: char,
        /// Its position among the code's characters, from 1.
        position: usize,
    },
    /// Valid characters, but the last one cannot end a code.
    #[error(
        "the join code typed cannot be one this appliance shows (its last character is not \
         possible); read it again from the appliance's console"
    )]
    NotACode,
    /// The base32 encoding could not be built (a bug).
    #[error("internal error building the join code alphabet: {0}")]
    Internal(String),
}

impl JoinCode {
    /// A new random code.
    pub fn generate<R: RngCore + CryptoRng>(rng: &mut R) -> JoinCode {
        let mut bytes = [0u8; CODE_BYTES];
        rng.fill_bytes(&mut bytes);
        JoinCode(bytes)
    }

    /// Reads a code as typed: case, spaces and dashes do not matter, and
    /// I, L and O are read as 1, 1 and 0.
    pub fn parse(typed: &str) -> Result<JoinCode, JoinCodeError> {
        let mut canonical = String::with_capacity(CODE_LEN);
        for c in typed.chars() {
            if c.is_whitespace() || c == '-' {
                continue;
            }
            let c = match c.to_ascii_uppercase() {
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            if !ALPHABET.contains(c) {
                return Err(JoinCodeError::InvalidCharacter {
                    character: c,
                    position: canonical.chars().count() + 1,
                });
            }
            canonical.push(c);
        }
        let count = canonical.chars().count();
        if count != CODE_LEN {
            return Err(JoinCodeError::WrongLength { count });
        }
        let bytes = crockford()?
            .decode(canonical.as_bytes())
            .map_err(|_| JoinCodeError::NotACode)?;
        let arr: [u8; CODE_BYTES] = bytes.try_into().map_err(|_| JoinCodeError::NotACode)?;
        Ok(JoinCode(arr))
    }

    /// The 10 characters without the dash: the form the handshake uses as
    /// its password.
    pub fn canonical(&self) -> String {
        match crockford() {
            Ok(enc) => enc.encode(&self.0),
            // Unreachable with a constant alphabet; hex keeps the code usable.
            Err(_) => data_encoding::HEXUPPER.encode(&self.0),
        }
    }

    /// Compares two codes in constant time.
    pub fn ct_eq(&self, other: &JoinCode) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Display for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = self.canonical();
        let (a, b) = c.split_at(c.len().min(5));
        write!(f, "{a}-{b}")
    }
}

impl fmt::Debug for JoinCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JoinCode(hidden)")
    }
}

/// The slot's rules; [`SlotPolicy::default`] is what the product uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotPolicy {
    /// How long a code is valid after it is issued.
    pub lifetime: Duration,
    /// Wrong attempts after which the code is replaced.
    pub max_wrong_attempts: u32,
    /// The wait imposed after the first wrong attempt; it doubles with each further one.
    pub first_delay: Duration,
    /// The longest wait imposed.
    pub max_delay: Duration,
}

impl Default for SlotPolicy {
    fn default() -> Self {
        SlotPolicy {
            lifetime: Duration::from_secs(15 * 60),
            max_wrong_attempts: 5,
            first_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(60),
        }
    }
}

impl SlotPolicy {
    /// The wait after `wrong` wrong attempts in a row.
    pub fn delay_after(&self, wrong: u32) -> Duration {
        if wrong == 0 {
            return Duration::ZERO;
        }
        let factor = 1u32.checked_shl(wrong - 1).unwrap_or(u32::MAX);
        self.first_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }
}

/// Why an attempt to use the join code was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Refusal {
    /// The code is older than its lifetime; a new one is on the console.
    #[error("the join code has expired; use the new code shown on the appliance's console")]
    Expired,
    /// The code was already used for a successful join.
    #[error("the join code was already used; this appliance has joined a cluster")]
    Used,
    /// The code did not match.
    #[error(
        "the join code did not match (or the connection passes through a device that is not \
         the appliance); {attempts_left} attempts left before the appliance shows a new code"
    )]
    WrongCode {
        /// Attempts left before the code is replaced.
        attempts_left: u32,
    },
    /// Too many wrong attempts: the code was replaced.
    #[error(
        "too many wrong attempts: the appliance replaced its join code; \
         read the new code on its console"
    )]
    TooManyAttempts,
    /// The attempt began against a code that has since been replaced.
    #[error("the join code was replaced while this attempt ran; read the new code on the console")]
    Replaced,
    /// Too soon after a wrong attempt.
    #[error(
        "too soon after a wrong attempt: try again in {} s",
        retry_after.as_secs_f64().ceil()
    )]
    RateLimited {
        /// How long to wait.
        retry_after: Duration,
    },
}

impl Refusal {
    /// The reason as a short snake_case word (the serde tag), for APIs and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::Used => "used",
            Refusal::WrongCode { .. } => "wrong_code",
            Refusal::TooManyAttempts => "too_many_attempts",
            Refusal::Replaced => "replaced",
            Refusal::RateLimited { .. } => "rate_limited",
        }
    }
}

/// An attempt the slot let begin; hand it back to [`JoinCodeSlot::succeed`]
/// or [`JoinCodeSlot::fail`].
#[derive(Debug)]
pub struct Attempt {
    serial: u64,
    code: JoinCode,
}

impl Attempt {
    /// The code to run the handshake with.
    pub fn code(&self) -> &JoinCode {
        &self.code
    }
}

/// The current code and the rules around it.
pub struct JoinCodeSlot<R> {
    rng: R,
    policy: SlotPolicy,
    code: JoinCode,
    /// Bumped with every new code, so an attempt knows which code it ran against.
    serial: u64,
    issued_at: Instant,
    /// Wrong attempts against the current code (begun attempts count until they succeed).
    wrong_on_code: u32,
    /// Wrong attempts in a row across codes: drives the delay, so replacing a
    /// code does not reset the rate limit.
    wrong_in_a_row: u32,
    not_before: Option<Instant>,
    used: bool,
}

impl<R> fmt::Debug for JoinCodeSlot<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinCodeSlot")
            .field("serial", &self.serial)
            .field("wrong_on_code", &self.wrong_on_code)
            .field("used", &self.used)
            .finish_non_exhaustive()
    }
}

impl<R: RngCore + CryptoRng> JoinCodeSlot<R> {
    /// A slot with a fresh code issued at `now`.
    pub fn new(mut rng: R, policy: SlotPolicy, now: Instant) -> Self {
        let code = JoinCode::generate(&mut rng);
        JoinCodeSlot {
            rng,
            policy,
            code,
            serial: 1,
            issued_at: now,
            wrong_on_code: 0,
            wrong_in_a_row: 0,
            not_before: None,
            used: false,
        }
    }

    /// Replaces the code with a new one issued at `now` (an expiry, too many
    /// wrong attempts, or the administrator asking for a new code).
    pub fn renew(&mut self, now: Instant) {
        self.code = JoinCode::generate(&mut self.rng);
        self.serial = self.serial.wrapping_add(1);
        self.issued_at = now;
        self.wrong_on_code = 0;
        self.used = false;
    }

    fn expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.issued_at) >= self.policy.lifetime
    }

    /// The code to show and when it expires, renewing it first if it has
    /// expired; `None` once it has been used.
    pub fn current(&mut self, now: Instant) -> Option<(&JoinCode, Instant)> {
        if self.used {
            return None;
        }
        if self.expired(now) {
            self.renew(now);
        }
        let expires = self
            .issued_at
            .checked_add(self.policy.lifetime)
            .unwrap_or(self.issued_at);
        Some((&self.code, expires))
    }

    /// Wrong attempts against the current code so far.
    pub fn wrong_attempts(&self) -> u32 {
        self.wrong_on_code
    }

    /// True once a join succeeded with the code.
    pub fn is_used(&self) -> bool {
        self.used
    }

    /// Lets an attempt begin, or says why not. The attempt counts as wrong
    /// until [`JoinCodeSlot::succeed`] says otherwise.
    pub fn begin(&mut self, now: Instant) -> Result<Attempt, Refusal> {
        if self.used {
            return Err(Refusal::Used);
        }
        if self.expired(now) {
            self.renew(now);
            return Err(Refusal::Expired);
        }
        if let Some(nb) = self.not_before {
            if now < nb {
                return Err(Refusal::RateLimited {
                    retry_after: nb.saturating_duration_since(now),
                });
            }
        }
        if self.wrong_on_code >= self.policy.max_wrong_attempts {
            // The last permitted attempt never reported back; the code is spent.
            self.renew(now);
            return Err(Refusal::TooManyAttempts);
        }
        self.wrong_on_code += 1;
        self.wrong_in_a_row = self.wrong_in_a_row.saturating_add(1);
        let delay = self.policy.delay_after(self.wrong_in_a_row);
        self.not_before = Some(now.checked_add(delay).unwrap_or(now));
        Ok(Attempt {
            serial: self.serial,
            code: self.code.clone(),
        })
    }

    /// Records that `attempt` proved the code: it is consumed.
    pub fn succeed(&mut self, attempt: Attempt) -> Result<(), Refusal> {
        if attempt.serial != self.serial {
            return Err(Refusal::Replaced);
        }
        if self.used {
            return Err(Refusal::Used);
        }
        self.used = true;
        self.wrong_on_code = self.wrong_on_code.saturating_sub(1);
        self.wrong_in_a_row = self.wrong_in_a_row.saturating_sub(1);
        self.not_before = None;
        Ok(())
    }

    /// Records that `attempt` failed (already counted when it began) and
    /// returns the refusal to report; the fifth failure replaces the code.
    pub fn fail(&mut self, attempt: Attempt, now: Instant) -> Refusal {
        if attempt.serial != self.serial {
            return Refusal::Replaced;
        }
        if self.wrong_on_code >= self.policy.max_wrong_attempts {
            self.renew(now);
            return Refusal::TooManyAttempts;
        }
        Refusal::WrongCode {
            attempts_left: self.policy.max_wrong_attempts - self.wrong_on_code,
        }
    }

    /// Checks a typed code directly (constant-time comparison), with the
    /// same rules as the handshake: begin, compare, succeed or fail.
    pub fn check(&mut self, typed: &JoinCode, now: Instant) -> Result<(), Refusal> {
        let attempt = self.begin(now)?;
        if attempt.code.ct_eq(typed) {
            self.succeed(attempt)
        } else {
            Err(self.fail(attempt, now))
        }
    }
}

#[cfg(test)]
mod tests;

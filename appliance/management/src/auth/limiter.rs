//! Sign-in attempts per source address and per account.

/// Placeholder: see the auth helper.
#[derive(Default)]
pub struct Limiter {}

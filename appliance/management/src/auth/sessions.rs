//! Sessions and API tokens.

/// Placeholder: see the auth helper.
#[derive(Default)]
pub struct Sessions {}

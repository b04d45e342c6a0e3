//! Node configuration: the TOML schema ([`schema`]), parsing, and validation
//! into a [`ValidConfig`], the only form the rest of applianced accepts.
//!
//! Pure: no I/O, no kernel. Every refusal names the field and the value.

pub mod schema;

pub use schema::*;

/// A configuration that passed every check. Construct it with [`parse`] or [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig(NodeConfig);

impl ValidConfig {
    /// The validated configuration.
    pub fn get(&self) -> &NodeConfig {
        &self.0
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = NodeConfig;
    fn deref(&self) -> &NodeConfig {
        &self.0
    }
}

/// Why a configuration was refused. (Stub: the config helper fills this in.)
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The text is not valid TOML for the schema.
    #[error("{0}")]
    Parse(String),
}

/// Parses and validates a TOML configuration.
pub fn parse(text: &str) -> Result<ValidConfig, ConfigError> {
    let cfg: NodeConfig = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
    validate(cfg)
}

/// Validates an already-deserialized configuration.
pub fn validate(cfg: NodeConfig) -> Result<ValidConfig, ConfigError> {
    Ok(ValidConfig(cfg))
}

//! Node configuration: the TOML schema ([`schema`]), parsing, and validation
//! into a [`ValidConfig`], the only form the rest of applianced accepts.
//!
//! Pure: no I/O, no kernel. Every refusal names the field and the value, and
//! lists every problem found, not just the first ([`ConfigError`]).
//!
//! Layout:
//! - [`schema`]: the wire format (serde structs, `deny_unknown_fields`);
//! - [`error`]: [`ConfigError`] and [`Problem`];
//! - [`hostname`]: RFC 1123 name checks;
//! - [`address`]: which addresses may be configured on an interface;
//! - `interfaces`, `routing`, `resolver`: the per-section checks;
//! - `validate`: runs them all.

pub mod address;
pub mod error;
pub mod hostname;
mod interfaces;
mod resolver;
mod routing;
pub mod schema;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, Problem};
pub use interfaces::{IFNAME_MAX_LEN, MTU_MAX, MTU_MIN, MTU_MIN_IPV6};
pub use resolver::{DNS_MAX_SEARCH, DNS_MAX_SERVERS};
pub use schema::*;

/// A configuration that passed every check. Construct it with [`parse`] or [`validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidConfig(NodeConfig);

impl ValidConfig {
    /// The validated configuration.
    pub fn get(&self) -> &NodeConfig {
        &self.0
    }

    /// Gives back the configuration, for example to edit it and validate again.
    pub fn into_inner(self) -> NodeConfig {
        self.0
    }

    /// Renders the configuration as pretty TOML that [`parse`] reads back to
    /// an equal [`ValidConfig`]; what gets stored and shown to the admin.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(&self.0).expect(
            "NodeConfig holds only strings, integers, arrays and tables, all TOML-representable",
        )
    }
}

impl std::ops::Deref for ValidConfig {
    type Target = NodeConfig;
    fn deref(&self) -> &NodeConfig {
        &self.0
    }
}

impl TryFrom<NodeConfig> for ValidConfig {
    type Error = ConfigError;
    fn try_from(cfg: NodeConfig) -> Result<Self, ConfigError> {
        validate(cfg)
    }
}

impl std::str::FromStr for ValidConfig {
    type Err = ConfigError;
    fn from_str(text: &str) -> Result<Self, ConfigError> {
        parse(text)
    }
}

/// Parses and validates a TOML configuration.
///
/// ```
/// let cfg = appliance_config::parse("version = 1\nhostname = \"node-a\"\n")?;
/// assert_eq!(cfg.management.port, 8443);
/// let text = cfg.to_toml();
/// assert!(text.contains("hostname = \"node-a\""), "{text}");
/// assert_eq!(appliance_config::parse(&text)?, cfg);
///
/// let err = appliance_config::parse("version = 1\nhostname = \"-x\"\n").unwrap_err();
/// assert_eq!(err.problems()[0].field, "hostname");
/// # Ok::<(), appliance_config::ConfigError>(())
/// ```
///
/// A `version` other than 1 is refused on its own, before the schema is
/// applied, since another version's fields would only add noise.
pub fn parse(text: &str) -> Result<ValidConfig, ConfigError> {
    let parse_error = |e: toml::de::Error| ConfigError::Parse {
        message: e.to_string().trim_end().to_string(),
    };
    let table: toml::Table = toml::from_str(text).map_err(parse_error)?;
    if let Some(toml::Value::Integer(v)) = table.get("version") {
        if *v != i64::from(CONFIG_VERSION) {
            return Err(ConfigError::Invalid {
                problems: vec![validate::version_problem(*v)],
            });
        }
    }
    // Deserialize from the text, not the table, so errors keep line and column.
    let cfg: NodeConfig = toml::from_str(text).map_err(parse_error)?;
    validate(cfg)
}

/// Validates an already-deserialized configuration, reporting every problem.
pub fn validate(cfg: NodeConfig) -> Result<ValidConfig, ConfigError> {
    let problems = validate::problems(&cfg);
    if problems.is_empty() {
        Ok(ValidConfig(cfg))
    } else {
        Err(ConfigError::Invalid { problems })
    }
}

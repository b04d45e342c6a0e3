//! The error type of this crate: why a configuration was refused.
//!
//! A refusal lists every problem found, each naming the field path as the
//! administrator wrote it (`interface[0].addresses[1]`), the value, what is
//! wrong and what to do instead, so one edit-and-retry fixes them all.

use std::fmt;

/// One thing wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Path of the offending field in TOML terms, for example `interface[0].addresses[1]`.
    pub field: String,
    /// The offending value as written (or rendered back), for example `10.0.0.0/24`.
    pub value: String,
    /// What is wrong and what to do instead.
    pub reason: String,
}

impl Problem {
    /// Builds a problem from anything displayable.
    pub fn new(
        field: impl Into<String>,
        value: impl fmt::Display,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            field: field.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {:?}: {}", self.field, self.value, self.reason)
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The text is not TOML, or does not fit the version 1 schema (unknown
    /// key, wrong type, unparsable address). `message` is the TOML parser's
    /// own report, with line, column and the offending text.
    #[error("config is not valid TOML for format version 1: {message}")]
    Parse {
        /// The parser's message, including line and column.
        message: String,
    },
    /// The text fits the schema but its values are refused.
    #[error("{}", render_problems(.problems))]
    Invalid {
        /// Every problem found, in field order. Never empty.
        problems: Vec<Problem>,
    },
}

impl ConfigError {
    /// The validation problems, or an empty slice for a parse error.
    pub fn problems(&self) -> &[Problem] {
        match self {
            ConfigError::Parse { .. } => &[],
            ConfigError::Invalid { problems } => problems,
        }
    }
}

fn render_problems(problems: &[Problem]) -> String {
    let mut out = match problems.len() {
        1 => "config refused, 1 problem:".to_string(),
        n => format!("config refused, {n} problems:"),
    };
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_lists_every_problem_on_its_own_line() {
        let err = ConfigError::Invalid {
            problems: vec![
                Problem::new("hostname", "-x", "bad start"),
                Problem::new("management.port", 0, "port 0"),
            ],
        };
        assert_eq!(
            err.to_string(),
            "config refused, 2 problems:\n  hostname = \"-x\": bad start\n  management.port = \"0\": port 0"
        );
        assert_eq!(err.problems().len(), 2);
    }

    #[test]
    fn parse_says_toml_version_1() {
        let err = ConfigError::Parse {
            message: "boom".into(),
        };
        assert_eq!(
            err.to_string(),
            "config is not valid TOML for format version 1: boom"
        );
        assert!(err.problems().is_empty());
    }
}

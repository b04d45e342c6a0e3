//! Service manifests: the versioned TOML format, loading, per-file and per-set validation,
//! and the dependency start order. Pure apart from reading files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde::Deserialize;

use crate::manifest_types::{Exposure, Health, HealthCheck, Port, Protocol, Restart, Role, Stop};
pub use crate::order::start_order;

/// The only manifest format version this build understands.
pub const MANIFEST_VERSION: u32 = 1;

/// Why a manifest (or a set of manifests) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("manifest {path} is not valid TOML for this schema: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("{file}: version = {version} is not supported; use version = {MANIFEST_VERSION}")]
    Version { file: String, version: u32 },
    #[error(
        "{file}: name {name:?} is invalid; use 1-32 chars of a-z, 0-9, '-', starting with a letter"
    )]
    Name { file: String, name: String },
    #[error("{file}: command {command:?} must be an absolute path or a plain name in the bin dir")]
    Command { file: String, command: String },
    #[error("{file}: {field} must be greater than zero")]
    Zero { file: String, field: &'static str },
    #[error(
        "{file}: restart.backoff_initial_ms ({initial}) exceeds restart.backoff_max_ms ({max})"
    )]
    Backoff {
        file: String,
        initial: u64,
        max: u64,
    },
    #[error("{file}: stop.signal {signal:?} is not a known signal name (e.g. \"SIGTERM\")")]
    Signal { file: String, signal: String },
    #[error("{file}: health.http.path {path:?} must start with '/' and contain no whitespace")]
    HttpPath { file: String, path: String },
    #[error(
        "{file}: environment variable {key:?} is invalid; names need no '=' or NUL, values no NUL"
    )]
    Environment { file: String, key: String },
    #[error(
        "{file}: port {name:?} has exposure = \"management\"; only one TCP port may, and only in a role = \"system\" service"
    )]
    ManagementPort { file: String, name: String },
    #[error("service name {name:?} is used by both {first} and {second}; rename one")]
    DuplicateName {
        name: String,
        first: String,
        second: String,
    },
    #[error("port {port}/{protocol} is used by both {first} and {second}; pick another port")]
    DuplicatePort {
        port: u16,
        protocol: String,
        first: String,
        second: String,
    },
    #[error("{file}: depends_on names {dependency:?}, which is not in the placed set")]
    UnknownDependency { file: String, dependency: String },
    #[error("dependency cycle: {}; remove one depends_on entry", cycle.join(" -> "))]
    Cycle { cycle: Vec<String> },
}

/// One service, as declared in `<name>.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; must be [`MANIFEST_VERSION`].
    pub version: u32,
    /// Unique service name (also the data directory name).
    pub name: String,
    /// Which tier the service belongs to (placement uses it).
    pub role: Role,
    /// Free text for status displays.
    #[serde(default)]
    pub description: String,
    /// Absolute path, or a plain name resolved in the supervisor's bin dir.
    pub command: String,
    /// Arguments passed to the command.
    #[serde(default)]
    pub args: Vec<String>,
    /// User to run as (resolved when the service starts); `None` keeps the daemon's user.
    #[serde(default)]
    pub user: Option<String>,
    /// Extra environment; the rest of the environment is cleared.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Ports the service listens on (`[[port]]` tables); the firewall opens public ones.
    #[serde(default, rename = "port")]
    pub ports: Vec<Port>,
    /// Optional health check; without one, a live process counts as running.
    #[serde(default)]
    pub health: Option<Health>,
    /// Restart policy and backoff.
    #[serde(default)]
    pub restart: Restart,
    /// Services that must be healthy before this one starts.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How to stop the service.
    #[serde(default)]
    pub stop: Stop,
    /// Where the manifest came from, for error messages; not part of the format.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl Manifest {
    /// Parses and validates one manifest; `source` only labels errors.
    pub fn parse(text: &str, source: &Path) -> Result<Self, ManifestError> {
        let mut manifest: Manifest = toml::from_str(text).map_err(|e| ManifestError::Parse {
            path: source.to_path_buf(),
            source: Box::new(e),
        })?;
        manifest.source = Some(source.to_path_buf());
        manifest.validate()?;
        Ok(manifest)
    }

    /// Reads, parses and validates one manifest file.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        let text = std::fs::read_to_string(path).map_err(|source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Label for error messages: the file, or the service name when built in code.
    pub fn origin(&self) -> String {
        match &self.source {
            Some(path) => path.display().to_string(),
            None => format!("service {}", self.name),
        }
    }

    /// The stop signal; validation guarantees the name parses.
    pub fn stop_signal(&self) -> Signal {
        Signal::from_str(&self.stop.signal).unwrap_or(Signal::SIGTERM)
    }

    /// Checks everything that can be checked within one manifest.
    pub fn validate(&self) -> Result<(), ManifestError> {
        let file = self.origin();
        if self.version != MANIFEST_VERSION {
            return Err(ManifestError::Version {
                file,
                version: self.version,
            });
        }
        if !valid_name(&self.name) {
            return Err(ManifestError::Name {
                file,
                name: self.name.clone(),
            });
        }
        let cmd = &self.command;
        if cmd.is_empty() || (!cmd.starts_with('/') && cmd.contains('/')) || cmd.contains('\0') {
            return Err(ManifestError::Command {
                file,
                command: cmd.clone(),
            });
        }
        if Signal::from_str(&self.stop.signal).is_err() {
            return Err(ManifestError::Signal {
                file,
                signal: self.stop.signal.clone(),
            });
        }
        let r = &self.restart;
        let zero = |field| {
            Err(ManifestError::Zero {
                file: file.clone(),
                field,
            })
        };
        if r.backoff_initial_ms == 0 {
            return zero("restart.backoff_initial_ms");
        }
        if r.backoff_max_ms == 0 {
            return zero("restart.backoff_max_ms");
        }
        if self.stop.timeout_ms == 0 {
            return zero("stop.timeout_ms");
        }
        if r.backoff_initial_ms > r.backoff_max_ms {
            let (initial, max) = (r.backoff_initial_ms, r.backoff_max_ms);
            return Err(ManifestError::Backoff { file, initial, max });
        }
        if let Some(h) = &self.health {
            if h.interval_ms == 0 {
                return zero("health.interval_ms");
            }
            if h.timeout_ms == 0 {
                return zero("health.timeout_ms");
            }
            if h.failures_before_restart == 0 {
                return zero("health.failures_before_restart");
            }
            if let HealthCheck::Http { path, .. } = &h.check {
                if !path.starts_with('/') || path.chars().any(char::is_whitespace) {
                    return Err(ManifestError::HttpPath {
                        file,
                        path: path.clone(),
                    });
                }
            }
        }
        let bad_env = |(k, v): (&String, &String)| {
            k.is_empty() || k.contains(['=', '\0']) || v.contains('\0')
        };
        if let Some((key, _)) = self.environment.iter().find(|kv| bad_env(*kv)) {
            return Err(ManifestError::Environment {
                file,
                key: key.clone(),
            });
        }
        for p in &self.ports {
            if p.port == 0 {
                return zero("port.port");
            }
        }
        // The management port belongs to the appliance itself: one service
        // on every node (role system) listens on it, over TCP.
        let mut management = self
            .ports
            .iter()
            .filter(|p| p.exposure == Exposure::Management);
        if let Some(p) = management.next() {
            if self.role != Role::System
                || p.protocol != Protocol::Tcp
                || management.next().is_some()
            {
                return Err(ManifestError::ManagementPort {
                    file,
                    name: p.name.clone(),
                });
            }
        }
        Ok(())
    }

    /// Grace period after start during which failed health checks do not count.
    pub fn start_period(&self) -> Duration {
        self.health
            .as_ref()
            .map_or(Duration::ZERO, |h| Duration::from_millis(h.start_period_ms))
    }
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some('a'..='z'))
        && name.len() <= 32
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '-'))
}

/// Validates each manifest and the set: unique names, unique ports, known dependencies, no cycles.
pub fn validate_set(manifests: &[Manifest]) -> Result<(), ManifestError> {
    let mut names: BTreeMap<&str, String> = BTreeMap::new();
    let mut ports: BTreeMap<(u16, String), String> = BTreeMap::new();
    for m in manifests {
        m.validate()?;
        if let Some(first) = names.insert(&m.name, m.origin()) {
            let (name, second) = (m.name.clone(), m.origin());
            return Err(ManifestError::DuplicateName {
                name,
                first,
                second,
            });
        }
        for p in &m.ports {
            let key = (p.port, p.protocol.to_string());
            if let Some(first) = ports.insert(key.clone(), m.origin()) {
                let (port, protocol, second) = (key.0, key.1, m.origin());
                return Err(ManifestError::DuplicatePort {
                    port,
                    protocol,
                    first,
                    second,
                });
            }
        }
    }
    for m in manifests {
        if let Some(dep) = m
            .depends_on
            .iter()
            .find(|d| !names.contains_key(d.as_str()))
        {
            let (file, dependency) = (m.origin(), dep.clone());
            return Err(ManifestError::UnknownDependency { file, dependency });
        }
    }
    start_order(manifests).map(|_| ())
}

/// Loads every `*.toml` in `dir` (sorted by file name) and validates the set.
pub fn load_dir(dir: &Path) -> Result<Vec<Manifest>, ManifestError> {
    let read_err = |source| ManifestError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let manifests = paths
        .iter()
        .map(|p| Manifest::load(p))
        .collect::<Result<Vec<_>, _>>()?;
    validate_set(&manifests)?;
    Ok(manifests)
}

#[cfg(test)]
mod tests;
